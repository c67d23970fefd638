//go:build linux

package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is the kernel's struct mmsghdr (Go pads it as C does).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// ErrAddrFamily: a destination the socket's family cannot reach.
var ErrAddrFamily = errors.New("udpbatch: destination address does not fit the socket's family")

// Headers are the kernel's message headers for batches on one socket, kept from one
// batch to the next so that a batch allocates nothing. Not safe for concurrent use.
type Headers struct {
	Inet6 bool // an AF_INET6 socket: IPv4 peers are v4-mapped
	hs    []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // room for either family's address
}

// prepare points the first len(ds) headers at ds' buffers (and, to send, addresses); it
// returns how many it prepared: fewer with ErrAddrFamily for the one after them.
func (h *Headers) prepare(ds []Datagram, send bool) (int, error) {
	n := len(ds)
	if cap(h.hs) < n {
		h.hs = make([]mmsghdr, n)
		h.iovs = make([]unix.Iovec, n)
		h.names = make([]unix.RawSockaddrInet6, n)
	}
	h.hs, h.iovs, h.names = h.hs[:n], h.iovs[:n], h.names[:n]
	for i := range ds {
		h.iovs[i] = unix.Iovec{}
		if len(ds[i].B) > 0 {
			h.iovs[i].Base = &ds[i].B[0]
		}
		h.iovs[i].SetLen(len(ds[i].B))
		m := &h.hs[i]
		*m = mmsghdr{}
		m.hdr.Iov = &h.iovs[i]
		m.hdr.SetIovlen(1)
		m.hdr.Name = (*byte)(unsafe.Pointer(&h.names[i]))
		m.hdr.Namelen = uint32(unsafe.Sizeof(h.names[i]))
		if send {
			l, ok := h.putAddr(&h.names[i], ds[i].Addr)
			if !ok {
				return i, ErrAddrFamily
			}
			m.hdr.Namelen = l
		}
	}
	return n, nil
}

// putAddr writes a as the socket's family's sockaddr into sa and returns its length.
func (h *Headers) putAddr(sa *unix.RawSockaddrInet6, a netip.AddrPort) (uint32, bool) {
	ip := a.Addr()
	port := a.Port()
	if h.Inet6 {
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

// recv makes one recvmmsg call on fd for the first n prepared headers.
func (h *Headers) recv(fd uintptr, n int) (int, syscall.Errno) {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&h.hs[0])), uintptr(n), 0, 0, 0)
		if e != unix.EINTR {
			return int(r), e
		}
	}
}

// fill sets the first got datagrams' N and Addr from the headers.
func (h *Headers) fill(ds []Datagram, got int) {
	for i := range got {
		ds[i].N = int(h.hs[i].n)
		ds[i].Addr = addrOf(&h.names[i])
	}
}

// send makes sendmmsg calls on fd for headers from..n-1 until all are sent, one fails
// or the socket is full; it returns how many of them it sent.
func (h *Headers) send(fd uintptr, from, n int) (int, syscall.Errno) {
	sent := from
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&h.hs[sent])), uintptr(n-sent), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case 0:
			if sent += int(r); sent < n && r > 0 {
				continue
			}
		}
		return sent - from, e
	}
}

// RecvFD reads the datagrams waiting on the non-blocking socket fd into ds, up to
// len(ds), with one recvmmsg, and sets each one's N and Addr. It returns 0 and no
// error when none was waiting.
func (h *Headers) RecvFD(fd int, ds []Datagram) (int, error) {
	n, _ := h.prepare(ds, false)
	got, e := h.recv(uintptr(fd), n)
	runtime.KeepAlive(ds)
	switch e {
	case 0:
	case unix.EAGAIN:
		return 0, nil
	default:
		return 0, &net.OpError{Op: "recvmmsg", Net: "udp", Err: e}
	}
	h.fill(ds, got)
	return got, nil
}

// SendFD sends ds (each its B to its Addr) on the non-blocking socket fd and returns
// how many it sent: fewer than len(ds) with an error about the first one not sent
// (unix.EAGAIN when the socket's send buffer was full).
func (h *Headers) SendFD(fd int, ds []Datagram) (int, error) {
	n, aerr := h.prepare(ds, true)
	sent := 0
	var e syscall.Errno
	if n > 0 {
		sent, e = h.send(uintptr(fd), 0, n)
	}
	runtime.KeepAlive(ds)
	switch {
	case e != 0:
		return sent, &net.OpError{Op: "sendmmsg", Net: "udp", Err: e}
	case sent < len(ds):
		return sent, aerr
	}
	return sent, nil
}

// SocketInet6 says whether fd is an AF_INET6 socket; ok is false for a socket that is
// neither AF_INET nor AF_INET6.
func SocketInet6(fd int) (inet6, ok bool) {
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || (domain != unix.AF_INET && domain != unix.AF_INET6) {
		return false, false
	}
	return domain == unix.AF_INET6, true
}

// Conn reads and writes batches of datagrams on one UDP socket of Go's net package,
// waiting for it through Go's poller.
type Conn struct {
	rc syscall.RawConn
	h  Headers
}

// NewConn returns c's batch reader and writer, or nil if c is not a UDP socket.
func NewConn(c net.PacketConn) *Conn {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return nil
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	var inet6, ok6 bool
	if err := rc.Control(func(fd uintptr) { inet6, ok6 = SocketInet6(int(fd)) }); err != nil || !ok6 {
		return nil
	}
	return &Conn{rc: rc, h: Headers{Inet6: inet6}}
}

// ReadBatch reads at least one datagram into ds (waiting for one, up to the socket's
// read deadline) and as many more as are queued, up to len(ds); it sets each one's N
// and Addr and returns how many it read.
func (c *Conn) ReadBatch(ds []Datagram) (int, error) {
	n, _ := c.h.prepare(ds, false)
	var got int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		got, errno = c.h.recv(fd, n)
		return errno != unix.EAGAIN // EAGAIN: the poller waits for a datagram
	})
	runtime.KeepAlive(ds)
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, &net.OpError{Op: "recvmmsg", Net: "udp", Err: errno}
	}
	c.h.fill(ds, got)
	return got, nil
}

// WriteBatch sends ds (each its B to its Addr) and returns how many it sent: fewer
// than len(ds) with an error about the first one not sent. A full socket is waited
// for.
func (c *Conn) WriteBatch(ds []Datagram) (int, error) {
	n, aerr := c.h.prepare(ds, true)
	if n == 0 {
		return 0, aerr
	}
	sent := 0
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		var k int
		k, errno = c.h.send(fd, sent, n)
		sent += k
		return errno != unix.EAGAIN // EAGAIN: the poller waits for room
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

// SetBuffers asks for a receive buffer of rcv bytes and a send buffer of snd bytes on
// the socket fd (0 leaves one as it is): past net.core.rmem_max and wmem_max where the
// process may force them (SO_RCVBUFFORCE, SO_SNDBUFFORCE: root or CAP_NET_ADMIN), else
// as large as those maximums allow. The socket works either way, so nothing is
// reported.
func SetBuffers(fd, rcv, snd int) {
	for _, o := range []struct{ force, plain, size int }{
		{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, rcv},
		{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, snd},
	} {
		if o.size > 0 && unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.force, o.size) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.plain, o.size)
		}
	}
}
