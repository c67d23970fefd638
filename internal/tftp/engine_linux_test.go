package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/ipxe"
	"github.com/rackboot/rackboot/internal/tftp/tftpload"
)

// TestLoopReusesSockets runs enough transfers that the event loop connects kept
// sockets to new clients (more than idleMin answers), with a late packet sent to a
// kept socket between them: every transfer completes whole, each answer comes from a
// port none of the previous len(recentTIDs) answers used, and the sockets kept stay
// within idleMax.
func TestLoopReusesSockets(t *testing.T) {
	// One source address: its limit is raised, so that no request is refused while
	// the transfer before it is still being recorded.
	ts := startServerConfig(t, func(c *Config) { c.MaxTransfersPerSource = 64 }, nil)
	fdsBefore := openFDs(t)
	size := int64(len(embedded(t, ipxe.UndionlyKPXE)))
	run := func(n int) {
		t.Helper()
		res, err := tftpload.Run(context.Background(), tftpload.Config{
			Server: ts.addr, File: ipxe.UndionlyKPXE, Blksize: 1468, TSize: true,
			Clients: 4, Duration: time.Minute, MaxTransfers: n, Size: size,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Transfers != n || res.Failures != 0 {
			t.Fatalf("%d of %d transfers completed: %v", res.Transfers, n, res.Errors)
		}
	}
	run(2 * idleMin)

	// By hand: note the answer's port, finish, then send that port a late ACK and
	// junk, as a slow client's retransmission would arrive.
	rc := dialRaw(t)
	ports := map[int]int{} // port -> index of the answer that used it
	want := embedded(t, ipxe.UndionlyKPXE)
	fetch := func() int {
		t.Helper()
		rc.peer = nil
		rc.send(t, ts.addr, rrq(ipxe.UndionlyKPXE, "octet", "blksize", "1468"))
		if op, p := rc.recv(t); op != opOACK {
			t.Fatalf("opcode %d (%q), want OACK", op, p)
		}
		if got := rc.receiveAll(t, 1468, nil); !bytes.Equal(got, want) {
			t.Fatalf("got %d bytes that differ from the %d embedded ones", len(got), len(want))
		}
		return rc.peer.(*net.UDPAddr).Port
	}
	reused := 0
	for i := range 2*idleMin + 10 {
		port := fetch()
		if j, ok := ports[port]; ok {
			if i-j <= 64 {
				t.Fatalf("answer %d came from port %d, as answer %d did", i, port, j)
			}
			reused++
		}
		ports[port] = i
		ua := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
		_, _ = rc.c.WriteTo(binary.BigEndian.AppendUint16([]byte{0, opACK}, 1), ua)
		_, _ = rc.c.WriteTo([]byte("late junk"), ua)
		if i%16 == 0 {
			// The loop reads and drops them, rather than leaving them for epoll to
			// report again and again. The deadline only bounds a failing test.
			for deadline := time.Now().Add(5 * time.Second); rxQueue(t, port) > 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the kept socket on port %d still holds %d bytes of late packets", port, rxQueue(t, port))
				}
			}
		}
	}
	// Fresh ephemeral ports would repeat about once in these; kept sockets, oldest
	// first, do after the first len(recentTIDs) + 1.
	if reused < idleMin/2 {
		t.Errorf("%d of %d answers came from a port used before, want most: sockets are not reused", reused, 2*idleMin+10)
	}
	run(idleMin)
	if fds := openFDs(t) - fdsBefore; fds > idleMax+8 {
		t.Errorf("%d more file descriptors open after the transfers, want at most %d", fds, idleMax+8)
	}
}

// rxQueue is the bytes waiting in the receive queue of the UDP socket bound to
// 127.0.0.1:port, from /proc/net/udp (0 when there is none).
func rxQueue(t *testing.T, port int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Skipf("cannot read socket queues: %v", err)
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != want {
			continue
		}
		_, rx, _ := strings.Cut(f[4], ":")
		n, err := strconv.ParseInt(rx, 16, 64)
		if err != nil {
			t.Fatalf("/proc/net/udp: %q: %v", line, err)
		}
		return int(n)
	}
	return 0
}
