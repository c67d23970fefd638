// Package udpbatch reads and writes many UDP datagrams per system call (recvmmsg and
// sendmmsg on Linux, one datagram per call elsewhere), for the DHCP server's socket loop
// and senders and the TFTP server's transfer sockets.
//
// Why it is written here: the calls are made as raw system calls, so the Go runtime is
// not told that the goroutine is in one. golang.org/x/net/ipv4's ReadBatch and
// WriteBatch make the same calls through syscall.Syscall6, which hands the goroutine's
// CPU (its P) to another thread when sysmon finds the call still running 20 µs later,
// and keeps sysmon waking every 20 µs while that happens. A send on a veth or a fast
// NIC runs the receiving side's network stack inside the call, so it often lasts that
// long; at 10,000 DORA/s on one CPU sysmon then took 13.5 % of the DHCP server's CPU,
// nearly all of it context switches (perf, 2026-12-04). These calls never block (the
// sockets are non-blocking: with nothing to read or no room to write they return
// EAGAIN, and the caller or the Go poller waits for the socket), so they need none of
// that: CPU per DORA fell 10-20 % (0.072 → 0.061-0.068 ms at 10,000/s, 0.088-0.091 →
// 0.068-0.079 ms at 1,000/s, three A/B runs each). No library offers these calls
// without Syscall6.
//
// On a paravirtualised machine a system call's entry and exit are dear as well (about
// a third of a TFTP storm's CPU went to them with one recvfrom and one sendto per
// block), which is why the TFTP server shares one socket among its transfers and
// moves their blocks a batch at a time (internal/tftp's doc.go).
package udpbatch

import "net/netip"

// Datagram is one datagram of a batch: read into B (N bytes, from Addr), or B sent to
// Addr. IPv4 addresses are plain, never v4-mapped.
type Datagram struct {
	B    []byte
	N    int
	Addr netip.AddrPort
}
