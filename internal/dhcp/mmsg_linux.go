//go:build linux

package dhcp

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file reads and writes many datagrams per system call (recvmmsg, sendmmsg) on a
// UDP socket, as raw system calls: the Go runtime is not told that the goroutine is in
// one. golang.org/x/net/ipv4's ReadBatch and WriteBatch make the same calls as
// syscall.Syscall6, which hands the goroutine's CPU (its P) to another thread when
// sysmon finds the call still running 20 µs later, and keeps sysmon waking every 20 µs
// while that happens. A send on a veth or a fast NIC runs the receiving side's network
// stack inside the call, so it often lasts that long; at 10,000 DORA/s on one CPU sysmon
// then took 13.5 % of the server's CPU, nearly all of it context switches (perf,
// 2026-12-04). These calls never block (the socket is non-blocking: with nothing to read
// or no room to write they return EAGAIN, and the Go poller waits for the socket), so
// they need none of that: CPU per DORA fell 10-20 % (0.072 → 0.061-0.068 ms at 10,000/s,
// 0.088-0.091 → 0.068-0.079 ms at 1,000/s, three A/B runs each). No library offers
// these calls without Syscall6, hence this file.

// mmsghdr is the kernel's struct mmsghdr (Go pads it as C does).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// mmsgConn reads and writes batches of datagrams on one UDP socket.
type mmsgConn struct {
	rc    syscall.RawConn
	inet6 bool // an AF_INET6 socket: IPv4 peers are v4-mapped
	hs    []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // room for either family's address
}

// newMmsgConn returns c's batch reader and writer, or nil if c has none.
func newMmsgConn(c net.PacketConn) *mmsgConn {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return nil
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	domain := -1
	if err := rc.Control(func(fd uintptr) {
		domain, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil || domain < 0 {
		return nil
	}
	if domain != unix.AF_INET && domain != unix.AF_INET6 {
		return nil
	}
	return &mmsgConn{rc: rc, inet6: domain == unix.AF_INET6}
}

// errAddrFamily: a destination the socket's family cannot reach.
var errAddrFamily = errors.New("dhcp: destination address does not fit the socket's family")

// prepare points the first n headers at ds' buffers (and, to send, addresses).
func (c *mmsgConn) prepare(ds []dgram, send bool) (int, error) {
	n := len(ds)
	if cap(c.hs) < n {
		c.hs = make([]mmsghdr, n)
		c.iovs = make([]unix.Iovec, n)
		c.names = make([]unix.RawSockaddrInet6, n)
	}
	c.hs, c.iovs, c.names = c.hs[:n], c.iovs[:n], c.names[:n]
	for i := range ds {
		c.iovs[i] = unix.Iovec{}
		if len(ds[i].b) > 0 {
			c.iovs[i].Base = &ds[i].b[0]
		}
		c.iovs[i].SetLen(len(ds[i].b))
		h := &c.hs[i]
		*h = mmsghdr{}
		h.hdr.Iov = &c.iovs[i]
		h.hdr.SetIovlen(1)
		h.hdr.Name = (*byte)(unsafe.Pointer(&c.names[i]))
		h.hdr.Namelen = uint32(unsafe.Sizeof(c.names[i]))
		if send {
			l, ok := c.putAddr(&c.names[i], ds[i].addr)
			if !ok {
				return i, errAddrFamily
			}
			h.hdr.Namelen = l
		}
	}
	return n, nil
}

// putAddr writes a as the socket's family's sockaddr into sa and returns its length.
func (c *mmsgConn) putAddr(sa *unix.RawSockaddrInet6, a netip.AddrPort) (uint32, bool) {
	ip := a.Addr()
	port := a.Port()
	if c.inet6 {
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()} // IPv4 v4-mapped
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return uint32(unsafe.Sizeof(*sa)), true
	}
	ip = ip.Unmap()
	if !ip.Is4() {
		return 0, false
	}
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
	*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.As4()}
	p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return uint32(unsafe.Sizeof(*sa4)), true
}

// addrOf reads the sockaddr in sa (either family), IPv4 unmapped.
func addrOf(sa *unix.RawSockaddrInet6) netip.AddrPort {
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port := uint16(p[0])<<8 | uint16(p[1])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// readBatch reads at least one datagram into ds (waiting for one, up to the socket's
// read deadline) and as many more as are queued, up to len(ds); it sets each one's n
// and addr and returns how many it read.
func (c *mmsgConn) readBatch(ds []dgram) (int, error) {
	n, _ := c.prepare(ds, false)
	var got int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.hs[0])), uintptr(n), 0, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // the poller waits for a datagram
			}
			got, errno = int(r), e
			return true
		}
	})
	runtime.KeepAlive(ds)
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, &net.OpError{Op: "recvmmsg", Net: "udp", Err: errno}
	}
	for i := range got {
		ds[i].n = int(c.hs[i].n)
		ds[i].addr = addrOf(&c.names[i])
	}
	return got, nil
}

// writeBatch sends ds (each its b to its addr) and returns how many it sent: fewer
// than len(ds) with an error about the first one not sent.
func (c *mmsgConn) writeBatch(ds []dgram) (int, error) {
	n, aerr := c.prepare(ds, true)
	if n == 0 {
		return 0, aerr
	}
	sent := 0
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.hs[sent])), uintptr(n-sent), 0, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // the poller waits for room
			case 0:
				if sent += int(r); sent < n && r > 0 {
					continue
				}
			}
			errno = e
			return true
		}
	})
	runtime.KeepAlive(ds)
	switch {
	case err != nil:
		return sent, err
	case errno != 0:
		return sent, &net.OpError{Op: "sendmmsg", Net: "udp", Err: errno}
	case sent < len(ds):
		return sent, aerr
	}
	return sent, nil
}
