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

// TestLoopSharedPort: the event loop answers every client from one port of its own
// (not the server port), and tells transfers apart by the client's port. Two clients
// fetched side by side, block for block, each get their own file whole; packets from a
// client whose transfer ended (a late ACK, junk) are read, dropped and counted and do
// not disturb the transfer still running; a client that asks again from the same
// port mid-transfer gets a fresh transfer of the whole file; and hundreds of transfers
// open no socket each.
func TestLoopSharedPort(t *testing.T) {
	ts := startServerConfig(t, func(c *Config) { c.MaxTransfersPerSource = 64 }, nil)
	undionly := embedded(t, ipxe.UndionlyKPXE)
	snp := embedded(t, ipxe.SNPOnlyEFI)

	a, b := dialRaw(t), dialRaw(t)
	a.send(t, ts.addr, rrq(ipxe.UndionlyKPXE, "octet", "blksize", "1468"))
	b.send(t, ts.addr, rrq(ipxe.SNPOnlyEFI, "octet", "blksize", "1468"))
	for _, c := range []*rawConn{a, b} {
		if op, p := c.recv(t); op != opOACK {
			t.Fatalf("opcode %d (%q), want OACK", op, p)
		}
	}
	pa, pb := a.peer.(*net.UDPAddr).Port, b.peer.(*net.UDPAddr).Port
	if pa != pb || strconv.Itoa(pa) == ts.port() {
		t.Fatalf("answers came from ports %d and %d (server port %s): want one port, not the server's", pa, pb, ts.port())
	}
	// Block for block: a's next block is asked for only after b's.
	var gotA, gotB []byte
	doneA, doneB := false, false
	a.ack(t, 0)
	b.ack(t, 0)
	step := func(c *rawConn, got *[]byte, done *bool, want uint16) {
		t.Helper()
		for {
			op, p := c.recv(t)
			if op != opDATA {
				t.Fatalf("opcode %d (%q), want DATA", op, p)
			}
			if binary.BigEndian.Uint16(p) != want {
				continue
			}
			*got = append(*got, p[2:]...)
			*done = len(p[2:]) < 1468
			c.ack(t, want)
			return
		}
	}
	for blk := uint16(1); !doneA || !doneB; blk++ {
		if !doneA {
			step(a, &gotA, &doneA, blk)
		}
		if !doneB {
			step(b, &gotB, &doneB, blk)
		}
		if doneA && !doneB && blk%8 == 0 {
			// a is done: what it sends now is late, and b's transfer goes on.
			_, _ = a.c.WriteTo(binary.BigEndian.AppendUint16([]byte{0, opACK}, blk), a.peer)
			_, _ = a.c.WriteTo([]byte("late junk"), a.peer)
		}
	}
	if !bytes.Equal(gotA, undionly) || !bytes.Equal(gotB, snp) {
		t.Fatalf("side by side: got %d and %d bytes, want %d of %s and %d of %s",
			len(gotA), len(gotB), len(undionly), ipxe.UndionlyKPXE, len(snp), ipxe.SNPOnlyEFI)
	}
	if len(undionly) >= len(snp) {
		t.Fatalf("the test needs %s shorter than %s", ipxe.UndionlyKPXE, ipxe.SNPOnlyEFI)
	}
	// The late packets are read and counted (the loop does not leave them queued).
	for deadline := time.Now().Add(5 * time.Second); ts.value(t, "rackboot_tftp_dropped_packets_total", nil) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("dropped_packets_total = %v, want at least the 2 late packets", ts.value(t, "rackboot_tftp_dropped_packets_total", nil))
		}
	}

	// Asking again from the same port, two blocks in: a new transfer from block 1.
	c := dialRaw(t)
	c.send(t, ts.addr, rrq(ipxe.UndionlyKPXE, "octet", "blksize", "1468"))
	if op, p := c.recv(t); op != opOACK {
		t.Fatalf("opcode %d (%q), want OACK", op, p)
	}
	c.ack(t, 0)
	if op, p := c.recv(t); op != opDATA || binary.BigEndian.Uint16(p) != 1 {
		t.Fatalf("opcode %d block %d, want DATA 1", op, binary.BigEndian.Uint16(p))
	}
	c.ack(t, 1)
	if op, p := c.recv(t); op != opDATA || binary.BigEndian.Uint16(p) != 2 {
		t.Fatalf("opcode %d block %d, want DATA 2", op, binary.BigEndian.Uint16(p))
	}
	c.peer = nil
	c.send(t, ts.addr, rrq(ipxe.UndionlyKPXE, "octet", "blksize", "1468"))
	if op, p := c.recv(t); op != opOACK {
		t.Fatalf("asked again: opcode %d (%q), want OACK", op, p)
	}
	if got := c.receiveAll(t, 1468, nil); !bytes.Equal(got, undionly) {
		t.Fatalf("asked again: got %d bytes that differ from the %d embedded ones", len(got), len(undionly))
	}

	// Many transfers, no socket each.
	fdsBefore := openFDs(t)
	res, err := tftpload.Run(context.Background(), tftpload.Config{
		Server: ts.addr, File: ipxe.UndionlyKPXE, Blksize: 1468, TSize: true,
		Clients: 8, Duration: time.Minute, MaxTransfers: 300, Size: int64(len(undionly)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Transfers != 300 || res.Failures != 0 {
		t.Fatalf("%d of 300 transfers completed: %v", res.Transfers, res.Errors)
	}
	if fds := openFDs(t) - fdsBefore; fds > 4 {
		t.Errorf("%d more file descriptors open after 300 transfers, want none (the load's own aside)", fds)
	}
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	// The transfer asked again for ended as failed; every other one completed.
	if got := ts.value(t, "rackboot_tftp_transfers_total", map[string]string{"file": ipxe.UndionlyKPXE, "outcome": OutcomeFailed}); got != 1 {
		t.Errorf("failed transfers of %s = %v, want 1 (the one asked again)", ipxe.UndionlyKPXE, got)
	}
	if got := ts.value(t, "rackboot_tftp_transfers_total", map[string]string{"file": ipxe.UndionlyKPXE, "outcome": OutcomeOK}); got != 302 {
		t.Errorf("completed transfers of %s = %v, want 302", ipxe.UndionlyKPXE, got)
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
