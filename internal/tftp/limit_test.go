package tftp

import (
	"encoding/binary"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/ipxe"
)

// flood sends n read requests from ip, each from a socket (a port) of its own, without
// acknowledging anything, and returns, per request, the opcode of the first packet the
// server answered it with and, for errors, the message.
func flood(t *testing.T, ip net.IP, addr string, n int) (data int, errs []string, bytesIn int) {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	req := rrq(ipxe.UndionlyKPXE, "octet", "blksize", "1468")
	cs := make([]*net.UDPConn, n)
	for i := range cs {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
		if err != nil {
			t.Skipf("no socket on %v: %v", ip, err)
		}
		defer c.Close()
		cs[i] = c
		if _, err := c.WriteTo(req, ua); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 70000)
	for i, c := range cs {
		// Bounds a failing test only: every request is answered at once.
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%d of %d requests answered: %v", i, n, err)
		}
		bytesIn += k
		switch op := binary.BigEndian.Uint16(buf); op {
		case opDATA, opOACK:
			data++
		case opERROR:
			errs = append(errs, strings.TrimRight(string(buf[4:k]), "\x00"))
		default:
			t.Fatalf("opcode %d", op)
		}
	}
	return data, errs, bytesIn
}

// TestTransferLimits floods the server from one address past maxTransfersPerSource,
// then from a second address past maxTransfers while the first one's transfers still
// run: each request beyond a limit gets one small "server busy" error packet and is
// counted; once the transfers time out a client is served again.
func TestTransferLimits(t *testing.T) {
	ts := startServerConfig(t, func(c *Config) {
		c.MaxTransfers, c.MaxTransfersPerSource = 5, 3
		c.Timeout, c.Retries = time.Second, 2
	}, nil)

	data, errs, _ := flood(t, net.IPv4(127, 0, 0, 1), ts.addr, 20)
	if data != 3 || len(errs) != 17 {
		t.Fatalf("from one address: %d transfers started, %d refused; want 3 and 17", data, len(errs))
	}
	for _, e := range errs {
		if e != "server busy: try again later" {
			t.Fatalf("refusal %q", e)
		}
	}
	if got := ts.value(t, "rackboot_tftp_limited_total", map[string]string{"limit": "per_source"}); got != 17 {
		t.Errorf("limited{per_source} = %v, want 17", got)
	}

	// A second address while the three still run: two more slots in all.
	data, errs, _ = flood(t, net.IPv4(127, 0, 0, 2), ts.addr, 5)
	if data != 2 || len(errs) != 3 {
		t.Fatalf("from a second address: %d started, %d refused; want 2 and 3 (global limit 5)", data, len(errs))
	}
	if got := ts.value(t, "rackboot_tftp_limited_total", map[string]string{"limit": "global"}); got != 3 {
		t.Errorf("limited{global} = %v, want 3", got)
	}
	// Refused requests leave no event on the host's timeline (127.0.0.1 is node-1's);
	// only the started transfers will, when they end.
	for _, e := range ts.store.all() {
		if strings.Contains(e.Message, "busy") {
			t.Errorf("a refused request wrote an event: %+v", e)
		}
	}

	// The silent transfers end after Timeout × Retries; then the slots are free again.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c := pinClient(t, ts.addr, 1468)
		wt, err := c.Receive(ipxe.UndionlyKPXE, "octet")
		if err == nil {
			var sb strings.Builder
			if _, err = wt.WriteTo(&sb); err == nil {
				if sb.Len() != len(embedded(t, ipxe.UndionlyKPXE)) {
					t.Fatalf("got %d bytes", sb.Len())
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slots were not released: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFloodIsBounded sends 300 read requests from one address with the default limits
// and measures what the server sent back: the transfers in flight stay at the
// per-source limit and the bytes returned within the first round trip stay close to
// the bytes sent (no amplification beyond the few transfers admitted).
func TestFloodIsBounded(t *testing.T) {
	ts := startServerConfig(t, func(c *Config) { c.Timeout, c.Retries = time.Second, 1 }, nil)
	fdsBefore := openFDs(t)
	// In bursts of 25, so the loopback socket buffers drop none of them; the first
	// burst's transfers run (Timeout × Retries, 1 s) through all the others.
	const n, burst = 300, 25
	var (
		data, in int
		errs     []string
	)
	for range n / burst {
		d, e, b := flood(t, net.IPv4(127, 0, 0, 1), ts.addr, burst)
		data, errs, in = data+d, append(errs, e...), in+b
	}
	if data != DefaultMaxTransfersPerSource || len(errs) != n-DefaultMaxTransfersPerSource {
		t.Fatalf("%d started, %d refused; want %d started", data, len(errs), DefaultMaxTransfersPerSource)
	}
	// The admitted transfers are still running, on the port the server shares among
	// them: none holds a socket of its own.
	fds := openFDs(t) - fdsBefore
	if fds > 2*DefaultMaxTransfersPerSource {
		t.Errorf("%d more file descriptors open during the flood, want at most %d", fds, 2*DefaultMaxTransfersPerSource)
	}
	out := n * len(rrq(ipxe.UndionlyKPXE, "octet", "blksize", "1468"))
	t.Logf("%d requests (%d bytes) answered with %d bytes (%.1fx), %d more file descriptors open", n, out, in, float64(in)/float64(out), fds)
	if in > 2*out {
		t.Errorf("%d bytes sent for %d bytes of requests: amplification %.1fx", in, out, float64(in)/float64(out))
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, c := range []Config{{MaxTransfers: -1}, {MaxTransfersPerSource: -2}, {MaxTransfers: 2, MaxTransfersPerSource: 3}} {
		c.FS = ipxe.Binaries()
		if _, err := New(c); err == nil || !strings.HasPrefix(err.Error(), "tftp: maxTransfers") {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}
