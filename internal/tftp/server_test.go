package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	tftplib "github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
)

// fakeStore maps 127.0.0.1 to host node-1 and keeps its events.
type fakeStore struct {
	mu     sync.Mutex
	events []inventory.Event
}

func (s *fakeStore) HostByIP(_ context.Context, ip string) (inventory.Host, error) {
	if ip == "127.0.0.1" {
		return inventory.Host{ID: "node-1", IP: ip}, nil
	}
	return inventory.Host{}, fmt.Errorf("host with IP %s: %w", ip, inventory.ErrNotFound)
}

// RecordEvents keeps the events at once; the inventory's group commit would within
// milliseconds.
func (s *fakeStore) RecordEvents(_ context.Context, evs ...inventory.HostEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, he := range evs {
		if he.HostID != "node-1" {
			continue // BoltStore drops the events of hosts it does not have
		}
		e := he.Event
		e.Seq = uint64(len(s.events) + 1)
		s.events = append(s.events, e)
	}
	return nil
}

func (s *fakeStore) all() []inventory.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]inventory.Event(nil), s.events...)
}

type testServer struct {
	addr  string
	store *fakeStore
	reg   *prometheus.Registry
	srv   *Server
	stop  func() error // cancels and waits for Serve to return
}

// startServer serves ipxe.Binaries on 127.0.0.1:0. Events are final once stop returns.
func startServer(t testing.TB, mod func(*Server)) *testServer {
	t.Helper()
	return startServerConfig(t, nil, mod)
}

// startServerConfig is startServer with the Config changed by cfg first.
func startServerConfig(t testing.TB, cfg func(*Config), mod func(*Server)) *testServer {
	t.Helper()
	store := &fakeStore{}
	reg := prometheus.NewRegistry()
	c := Config{FS: ipxe.Binaries(), Store: store, Registerer: reg, Timeout: 2 * time.Second, Retries: 3}
	if cfg != nil {
		cfg(&c)
	}
	srv, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(srv)
	}
	conn, err := Listen("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(30 * time.Second):
				serveErr = errors.New("Serve did not return 30 s after its context was cancelled")
			}
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return &testServer{addr: conn.LocalAddr().String(), store: store, reg: reg, srv: srv, stop: stop}
}

func (ts *testServer) port() string {
	_, p, _ := net.SplitHostPort(ts.addr)
	return p
}

// value reads a counter with the given labels from the registry.
func (ts *testServer) value(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func embedded(t testing.TB, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(ipxe.Binaries(), name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pinClient(t testing.TB, addr string, blksize int) *tftplib.Client {
	t.Helper()
	c, err := tftplib.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(3)
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	return c
}

var binaries = []string{ipxe.UndionlyKPXE, ipxe.SNPOnlyEFI, ipxe.IPXEEFI}

// TestPinClientFetchesEachBinary fetches every embedded binary with blksize 1468 and
// tsize over real UDP and compares the bytes, the tsize, the metrics and the events,
// with the platform's engine (the event loop on Linux) and with a goroutine per
// transfer.
func TestPinClientFetchesEachBinary(t *testing.T) {
	for _, goroutines := range []bool{false, true} {
		t.Run(fmt.Sprintf("goroutines=%v", goroutines), func(t *testing.T) {
			ts := startServer(t, func(s *Server) { s.goroutines = goroutines })
			c := pinClient(t, ts.addr, 1468)
			var total int
			for _, name := range binaries {
				want := embedded(t, name)
				total += len(want)
				for _, req := range []string{name, "/" + name} {
					wt, err := c.Receive(req, "octet")
					if err != nil {
						t.Fatalf("%s: %v", req, err)
					}
					if n, ok := wt.(tftplib.IncomingTransfer).Size(); !ok || n != int64(len(want)) {
						t.Errorf("%s: tsize %d (sent %v), want %d", req, n, ok, len(want))
					}
					var buf bytes.Buffer
					if _, err := wt.WriteTo(&buf); err != nil {
						t.Fatalf("%s: %v", req, err)
					}
					if !bytes.Equal(buf.Bytes(), want) {
						t.Errorf("%s: got %d bytes that differ from the %d embedded ones", req, buf.Len(), len(want))
					}
				}
			}
			if err := ts.stop(); err != nil {
				t.Fatal(err)
			}
			for _, name := range binaries {
				if got := ts.value(t, "rackboot_tftp_transfers_total", map[string]string{"file": name, "outcome": OutcomeOK}); got != 2 {
					t.Errorf("transfers{file=%s,outcome=ok} = %v, want 2", name, got)
				}
			}
			if got := ts.value(t, "rackboot_tftp_bytes_total", nil); got != float64(2*total) {
				t.Errorf("bytes_total = %v, want %d", got, 2*total)
			}
			evs := ts.store.all()
			if len(evs) != 6 {
				t.Fatalf("%d events, want 6", len(evs))
			}
			// A transfer's event is written after the client's last ACK, so the next transfer
			// may be recorded first: find the event by file rather than by position.
			var got inventory.Event
			for _, e := range evs {
				if e.Fields["file"] == ipxe.UndionlyKPXE {
					got = e
				}
			}
			if diff := cmp.Diff(inventory.Event{
				Type: EventRead, Message: "TFTP read of undionly.kpxe: ok",
				Fields: map[string]string{"file": "undionly.kpxe", "ip": "127.0.0.1", "outcome": "ok", "bytes": "74213", "size": "74213"},
			}, got, cmpopts.IgnoreFields(inventory.Event{}, "Seq")); diff != "" {
				t.Errorf("event of undionly.kpxe (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBlksizeNegotiation speaks raw TFTP to see the OACK and block sizes on the wire:
// blksize and tsize as PXE firmware asks them, with and without windowsize.
func TestBlksizeNegotiation(t *testing.T) {
	ts := startServer(t, nil)
	want := embedded(t, ipxe.SNPOnlyEFI)
	for _, tc := range []struct {
		opts     []string
		wantOACK map[string]string
		window   int
	}{
		{
			opts:     []string{"blksize", "1468", "tsize", "0"},
			wantOACK: map[string]string{"blksize": "1468", "tsize": strconv.Itoa(len(want))},
			window:   1,
		},
		{
			opts:     []string{"blksize", "1468", "tsize", "0", "windowsize", "16"},
			wantOACK: map[string]string{"blksize": "1468", "tsize": strconv.Itoa(len(want)), "windowsize": "16"},
			window:   16,
		},
		{
			// Upper case names (RFC 2347: case-insensitive), a window above the cap,
			// a timeout longer than the server's (2 s): not taken, so not echoed.
			opts:     []string{"BLKSIZE", "1468", "WindowSize", "1000", "timeout", "9", "x-unknown", "1"},
			wantOACK: map[string]string{"blksize": "1468", "windowsize": strconv.Itoa(MaxWindowSize)},
			window:   MaxWindowSize,
		},
	} {
		t.Run(strings.Join(tc.opts, " "), func(t *testing.T) {
			rc := dialRaw(t)
			rc.send(t, ts.addr, rrq(ipxe.SNPOnlyEFI, "octet", tc.opts...))
			op, payload := rc.recv(t)
			if op != opOACK {
				t.Fatalf("got opcode %d (%q), want OACK", op, payload)
			}
			if diff := cmp.Diff(tc.wantOACK, parseOpts(payload)); diff != "" {
				t.Errorf("OACK options (-want +got):\n%s", diff)
			}
			got := rc.receiveWindowed(t, 1468, tc.window)
			if !bytes.Equal(got, want) {
				t.Errorf("received %d bytes that differ from the %d embedded", len(got), len(want))
			}
		})
	}
}

// TestStockClients fetches with curl (blksize 1468) and tftp-hpa, as an operator or a
// PXE ROM would. tftp-hpa's client sends no options, so it exercises plain RFC 1350
// 512-byte blocks.
func TestStockClients(t *testing.T) {
	ts := startServer(t, nil)
	dir := t.TempDir()
	t.Run("curl", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("curl not installed (apt-get install curl); make test installs it")
		}
		for _, name := range binaries {
			out := filepath.Join(dir, "curl-"+name)
			runTool(t, curl, "-sS", "--tftp-blksize", "1468", "-o", out, "tftp://"+ts.addr+"/"+name)
			compareFile(t, out, embedded(t, name))
		}
	})
	t.Run("tftp-hpa", func(t *testing.T) {
		tftp, err := exec.LookPath("tftp")
		if err != nil {
			t.Skip("tftp (tftp-hpa) not installed (apt-get install tftp-hpa); make test installs it")
		}
		for _, name := range binaries {
			out := filepath.Join(dir, "hpa-"+name)
			runTool(t, tftp, "-v", "-m", "binary", "127.0.0.1", ts.port(), "-c", "get", name, out)
			compareFile(t, out, embedded(t, name))
		}
	})
	t.Run("curl traversal", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("curl not installed")
		}
		out := filepath.Join(dir, "passwd")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// --path-as-is keeps curl from resolving the dot segments itself.
		b, err := exec.CommandContext(ctx, curl, "-sS", "--path-as-is", "-o", out, "tftp://"+ts.addr+"/../../../../etc/passwd").CombinedOutput()
		if err == nil {
			t.Fatalf("curl fetched ../../../../etc/passwd: %s", b)
		}
		if st, err := os.Stat(out); err == nil && st.Size() > 0 {
			t.Errorf("curl wrote %d bytes of a refused file", st.Size())
		}
	})
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
}

func compareFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes that differ from the %d embedded", path, len(got), len(want))
	}
}

func TestRefusedRequests(t *testing.T) {
	ts := startServer(t, nil)
	c := pinClient(t, ts.addr, 1468)
	tests := []struct {
		name, wantErr, outcome string
	}{
		{"../etc/passwd", "refused", OutcomeRefused},
		{"/../etc/passwd", "refused", OutcomeRefused},
		{`..\..\etc\passwd`, "backslash", OutcomeRefused},
		{"a/../../" + ipxe.SNPOnlyEFI, "refused", OutcomeRefused},
		{"/", "refused", OutcomeRefused},
		{strings.Repeat("x", 400), "longer than", OutcomeRefused},
		{"pxelinux.0", "file not found", OutcomeNotFound},
		{"/etc/passwd", "file not found", OutcomeNotFound}, // rooted at the FS, not at /
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wt, err := c.Receive(tc.name, "octet")
			if err == nil {
				var buf bytes.Buffer
				_, err = wt.WriteTo(&buf)
				if err == nil {
					t.Fatalf("received %d bytes, want an error packet", buf.Len())
				}
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q, want one containing %q", err, tc.wantErr)
			}
		})
	}
	t.Run("write", func(t *testing.T) {
		rf, err := c.Send("upload.bin", "octet")
		if err == nil {
			_, err = rf.ReadFrom(strings.NewReader("data"))
		}
		if err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Fatalf("write: err = %v, want a read-only refusal", err)
		}
	})
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	for outcome, want := range map[string]float64{OutcomeRefused: 6, OutcomeNotFound: 2, OutcomeWriteRefused: 1} {
		if got := ts.value(t, "rackboot_tftp_transfers_total", map[string]string{"file": unknownFile, "outcome": outcome}); got != want {
			t.Errorf("transfers{file=unknown,outcome=%s} = %v, want %v", outcome, got, want)
		}
	}
	// Reads are on the timeline whatever their outcome; refused writes are not reads.
	evs := ts.store.all()
	if len(evs) != 8 {
		t.Fatalf("%d events, want 8", len(evs))
	}
	// Transfers end in any order (each in its own goroutine), so events are found by
	// the name asked for, not by position.
	var traversal map[string]string
	for _, e := range evs {
		if e.Fields["file"] == "../etc/passwd" {
			traversal = e.Fields
		}
		if f := e.Fields["file"]; len(f) > MaxPathLen+3 {
			t.Errorf("a %d-byte requested name reached the timeline unbounded (%d bytes)", 400, len(f))
		}
	}
	if traversal == nil || traversal["outcome"] != OutcomeRefused || traversal["error"] == "" {
		t.Errorf("traversal event fields %v (events %v)", traversal, evs)
	}
}

// TestMalformedPacketsDropped sends packets that are not requests: each is dropped and
// counted, and the server keeps serving.
func TestMalformedPacketsDropped(t *testing.T) {
	ts := startServer(t, nil)
	rc := dialRaw(t)
	for _, p := range [][]byte{
		{0x00},                   // too short
		{0x00, 0x09, 'x', 0x00},  // unknown opcode
		{0x00, 0x04, 0x00, 0x01}, // an ACK to the server port
		{0x00, 0x01, 'a'},        // RRQ without mode
	} {
		rc.send(t, ts.addr, p)
	}
	// Packets on the server port are handled in order, so once this transfer is
	// answered, all of the above have been.
	rc.send(t, ts.addr, rrq(ipxe.UndionlyKPXE, "octet"))
	got := rc.receiveAll(t, 512, nil)
	if !bytes.Equal(got, embedded(t, ipxe.UndionlyKPXE)) {
		t.Fatal("transfer after malformed packets returned the wrong bytes")
	}
	if got := ts.value(t, "rackboot_tftp_dropped_packets_total", nil); got != 4 {
		t.Errorf("dropped_packets_total = %v, want 4", got)
	}
}

// TestShutdownWaitsForTransfers cancels the server mid-transfer: the transfer still
// completes, and Serve returns only after it has, event recorded.
func TestShutdownWaitsForTransfers(t *testing.T) {
	shutdown := make(chan struct{})
	ts := startServer(t, func(s *Server) { s.onShutdown = func() { close(shutdown) } })
	rc := dialRaw(t)
	rc.send(t, ts.addr, rrq(ipxe.SNPOnlyEFI, "octet", "blksize", "1468"))
	if op, _ := rc.recv(t); op != opOACK {
		t.Fatalf("opcode %d, want OACK", op)
	}
	stopped := make(chan error, 1)
	got := rc.receiveAll(t, 1468, func(block uint16) {
		if block == 3 {
			go func() { stopped <- ts.stop() }()
			<-shutdown
		}
	})
	if !bytes.Equal(got, embedded(t, ipxe.SNPOnlyEFI)) {
		t.Fatalf("transfer across shutdown: %d bytes that differ from the embedded", len(got))
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	evs := ts.store.all()
	if len(evs) != 1 || evs[0].Fields["outcome"] != OutcomeOK {
		t.Fatalf("events when Serve returned: %+v, want the completed read", evs)
	}
	// The server port is closed: a new request is refused by the kernel (ICMP port
	// unreachable, seen as ECONNREFUSED on a connected socket).
	c, err := net.Dial("udp4", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(rrq(ipxe.SNPOnlyEFI, "octet")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 600)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("request after shutdown: %v, want connection refused", err)
	}
}

// TestIPv6 serves over IPv6 loopback with each engine: the event loop makes its own
// sockets, IPv6 ones here.
func TestIPv6(t *testing.T) {
	for _, goroutines := range []bool{false, true} {
		t.Run(fmt.Sprintf("goroutines=%v", goroutines), func(t *testing.T) {
			conn, err := Listen("udp6", "[::1]:0")
			if err != nil {
				t.Skipf("no IPv6 loopback: %v", err)
			}
			srv, err := New(Config{FS: ipxe.Binaries(), Timeout: 2 * time.Second, Retries: 3})
			if err != nil {
				t.Fatal(err)
			}
			srv.goroutines = goroutines
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, conn) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			want := embedded(t, ipxe.UndionlyKPXE)
			wt, err := pinClient(t, conn.LocalAddr().String(), 1468).Receive(ipxe.UndionlyKPXE, "octet")
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := wt.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("got %d bytes that differ from the %d embedded ones", buf.Len(), len(want))
			}
		})
	}
}

func TestStartReportsBusyPort(t *testing.T) {
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	srv, err := New(Config{Addr: busy.LocalAddr().String(), FS: ipxe.Binaries()})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--tftp-port") {
		t.Fatalf("Start on a busy port: %v, want an error naming --tftp-port", err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without FS succeeded")
	}
}

// BenchmarkTFTPTransfer fetches the whole snponly.efi over loopback per iteration.
func BenchmarkTFTPTransfer(b *testing.B) {
	want := embedded(b, ipxe.SNPOnlyEFI)
	ts := startServer(b, func(s *Server) { s.cfg.Store = nil })
	for _, blksize := range []int{512, 1468, 8192} {
		b.Run(fmt.Sprintf("blksize=%d", blksize), func(b *testing.B) {
			c := pinClient(b, ts.addr, blksize)
			var buf bytes.Buffer
			b.ReportAllocs()
			b.SetBytes(int64(len(want)))
			for b.Loop() {
				buf.Reset()
				wt, err := c.Receive(ipxe.SNPOnlyEFI, "octet")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := wt.WriteTo(&buf); err != nil {
					b.Fatal(err)
				}
				if buf.Len() != len(want) {
					b.Fatalf("got %d bytes, want %d", buf.Len(), len(want))
				}
			}
		})
	}
}

// A minimal raw TFTP client, to see exactly what goes over the wire.

type rawConn struct {
	c    *net.UDPConn
	peer net.Addr // the transfer's own port, once it has answered
}

func dialRaw(t *testing.T) *rawConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{c: c}
}

func rrq(name, mode string, opts ...string) []byte {
	p := []byte{0, opRRQ}
	for _, s := range append([]string{name, mode}, opts...) {
		p = append(append(p, s...), 0)
	}
	return p
}

func (r *rawConn) send(t *testing.T, addr string, p []byte) {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.WriteTo(p, ua); err != nil {
		t.Fatal(err)
	}
}

func (r *rawConn) ack(t *testing.T, block uint16) {
	t.Helper()
	p := []byte{0, opACK, 0, 0}
	binary.BigEndian.PutUint16(p[2:], block)
	if _, err := r.c.WriteTo(p, r.peer); err != nil {
		t.Fatal(err)
	}
}

// recv returns the next packet's opcode and the rest of it. The deadline only bounds a
// failing test; nothing is timed.
func (r *rawConn) recv(t *testing.T) (uint16, []byte) {
	t.Helper()
	buf := make([]byte, 70000)
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := r.c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("short packet %x", buf[:n])
	}
	r.peer = from
	return binary.BigEndian.Uint16(buf), buf[2:n]
}

// receiveAll acknowledges what has been received so far (the OACK, if any, as block
// 0) and collects DATA until a short block; each block must be blksize long but the
// last. before runs before each block is acknowledged.
func (r *rawConn) receiveAll(t *testing.T, blksize int, before func(block uint16)) []byte {
	t.Helper()
	var out []byte
	var want uint16 = 1
	if r.peer != nil {
		r.ack(t, 0)
	}
	for {
		op, p := r.recv(t)
		switch op {
		case opDATA:
		case opERROR:
			t.Fatalf("error packet: %q", p[2:])
		default:
			t.Fatalf("unexpected opcode %d", op)
		}
		block := binary.BigEndian.Uint16(p)
		if block != want {
			continue // a retransmission of a block already taken
		}
		data := p[2:]
		if len(data) > blksize {
			t.Fatalf("block %d is %d bytes, more than blksize %d", block, len(data), blksize)
		}
		out = append(out, data...)
		if before != nil {
			before(block)
		}
		r.ack(t, block)
		if len(data) < blksize {
			return out
		}
		want++
	}
}

// receiveWindowed is receiveAll for a client that negotiated windowsize: it ACKs the
// OACK, then every window's last block, and checks that the blocks come in order, each
// exactly once, no more than window of them per ACK.
func (r *rawConn) receiveWindowed(t *testing.T, blksize, window int) []byte {
	t.Helper()
	var out []byte
	var want uint16 = 1
	r.ack(t, 0)
	inWindow := 0
	for {
		op, p := r.recv(t)
		if op != opDATA {
			t.Fatalf("opcode %d (%q), want DATA", op, p)
		}
		if block := binary.BigEndian.Uint16(p); block != want {
			t.Fatalf("block %d, want %d: a window was sent again with no loss", block, want)
		}
		data := p[2:]
		if len(data) > blksize {
			t.Fatalf("block %d is %d bytes, more than blksize %d", want, len(data), blksize)
		}
		out = append(out, data...)
		inWindow++
		if len(data) < blksize {
			r.ack(t, want)
			return out
		}
		if inWindow == window {
			r.ack(t, want)
			inWindow = 0
		}
		want++
	}
}

func parseOpts(p []byte) map[string]string {
	parts := strings.Split(strings.TrimSuffix(string(p), "\x00"), "\x00")
	m := map[string]string{}
	for i := 0; i+1 < len(parts); i += 2 {
		m[parts[i]] = parts[i+1]
	}
	return m
}

// TestClientAbortAfterOACK is what UEFI PXE firmware does: ask for the file with tsize
// only to learn its size, then end the transfer with error 8. That is counted as
// "aborted", not as a failed transfer.
func TestClientAbortAfterOACK(t *testing.T) {
	ts := startServer(t, nil)
	rc := dialRaw(t)
	rc.send(t, ts.addr, rrq(ipxe.SNPOnlyEFI, "octet", "tsize", "0", "blksize", "1468"))
	if op, _ := rc.recv(t); op != opOACK {
		t.Fatalf("opcode %d, want OACK", op)
	}
	abort := append([]byte{0, 5, 0, 8}, []byte("User aborted the transfer\x00")...)
	if _, err := rc.c.WriteTo(abort, rc.peer); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for ts.value(t, "rackboot_tftp_transfers_total", map[string]string{"file": ipxe.SNPOnlyEFI, "outcome": OutcomeAborted}) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no aborted transfer counted; failed = %v", ts.value(t, "rackboot_tftp_transfers_total", map[string]string{"file": ipxe.SNPOnlyEFI, "outcome": OutcomeFailed}))
		}
		runtime.Gosched()
	}
}
