package tftp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// The event loop that serves the port and runs every transfer on Linux (doc.go says
// why). One goroutine owns an epoll(7) set of the server port, every transfer's socket
// and an eventfd that ctx's end pokes. It waits for that set through Go's own netpoller
// (the epoll descriptor is itself pollable), so it never blocks a thread in a system
// call: when nothing is ready it parks like any goroutine reading a socket, and the
// rest of rackboot runs meanwhile on the same CPU. For each ready socket it reads one
// packet and sends what it calls for, from the same goroutine. Timeouts are found by a
// sweep of all transfers' deadlines every sweepEvery, through the read deadline of the
// epoll descriptor: one timer, not one per packet. Transfers' sockets are the kernel's,
// not Go's net package's: non-blocking, in this epoll set only (level-triggered), and
// read and written with plain system calls, so a packet costs one read and one write,
// with no goroutine switch, timer or read that finds nothing.

// sweepEvery is how often the loop looks for transfers whose ACK is overdue, when any
// are running: a retransmission comes at most this much after its timeout.
const sweepEvery = 10 * time.Millisecond

// requestsPerWake bounds the requests read from the server port before the transfers'
// packets ready meanwhile get their turn.
const requestsPerWake = 16

// serve runs the event loop on conn, or a goroutine per transfer when a test asks for
// it or conn is not a socket the loop can wait on.
func (s *Server) serve(ctx context.Context, conn net.PacketConn, network string) error {
	sc, ok := conn.(syscall.Conn)
	if s.goroutines || !ok {
		return s.serveGoroutines(ctx, conn, network)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return s.serveGoroutines(ctx, conn, network)
	}
	l, err := newLoop(s, network == "udp6")
	if err != nil {
		// A sandbox that forbids epoll, say: serve all the same, at a higher cost.
		s.log.Warn("TFTP: no event loop, running a goroutine per transfer", "err", err)
		return s.serveGoroutines(ctx, conn, network)
	}
	defer l.closeFDs()
	s.eng = l
	return l.serve(ctx, conn, raw)
}

// loop is the event loop: the engine that runs transfers, and the server port's reader.
// Only its goroutine touches it once serve runs.
type loop struct {
	s      *Server
	v6     bool
	epfd   int
	epoll  *os.File        // epfd as Go's netpoller sees it
	epRaw  syscall.RawConn // to wait on epoll
	wake   int             // an eventfd that ctx's end pokes
	active map[int32]*active
	waitTo time.Time // the read deadline set on epoll
	// idle are the sockets kept for reuse, by local address (keep); closing says
	// serve is ending and keeps no more.
	idle    map[string][]*fdConn
	closing bool
	now     time.Time // of the loop's last wake-up
	kept    time.Time // when a socket was last kept
}

func newLoop(s *Server, v6 bool) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	l := &loop{s: s, v6: v6, epfd: epfd, wake: wake, active: map[int32]*active{}, idle: map[string][]*fdConn{}}
	fail := func(err error) (*loop, error) {
		l.closeFDs()
		return nil, err
	}
	if err := l.add(wake); err != nil {
		return fail(err)
	}
	// Non-blocking, so that os.NewFile hands it to Go's netpoller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		return fail(fmt.Errorf("epoll: %w", err))
	}
	l.epoll = os.NewFile(uintptr(epfd), "epoll")
	if err := l.epoll.SetReadDeadline(time.Time{}); err != nil {
		return fail(fmt.Errorf("epoll is not pollable: %w", err))
	}
	if l.epRaw, err = l.epoll.SyscallConn(); err != nil {
		return fail(fmt.Errorf("epoll: %w", err))
	}
	return l, nil
}

func (l *loop) closeFDs() {
	if l.epoll != nil {
		_ = l.epoll.Close()
	} else {
		_ = unix.Close(l.epfd)
	}
	_ = unix.Close(l.wake)
}

// add puts fd in the epoll set, level-triggered: a socket with a packet left is
// reported again.
func (l *loop) add(fd int) error {
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	return nil
}

// fdConn is a transfer's socket: non-blocking, connected to the client.
type fdConn struct {
	fd     int
	local  uint16
	pool   *loop  // takes it back at Close; nil: closed for good
	key    string // the local address it is bound to, its pool's key
	polled bool   // in the epoll set
}

func (c *fdConn) port() uint16 { return c.local }

// Write sends one datagram. A full send buffer loses it, as a full link would: the
// client's timeout or its ACK of an earlier block brings it again.
func (c *fdConn) Write(p []byte) (int, error) {
	// A non-blocking send does not block, so the scheduler need not hear of it.
	// send(2) rather than write(2): a socket call skips the file layer's work
	// (fsnotify, the write checks), a few per cent of a storm's CPU.
	n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(c.fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), 0, 0, 0)
	switch errno {
	case 0:
		return int(n), nil
	case syscall.EAGAIN, syscall.ENOBUFS:
		return len(p), nil
	}
	return 0, &net.OpError{Op: "write", Net: "udp", Err: errno}
}

// read reads one datagram; ok is false when none was waiting.
func (c *fdConn) read(p []byte) (n int, ok bool, err error) {
	r, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(c.fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), 0, 0, 0)
	switch errno {
	case 0:
		return int(r), true, nil
	case syscall.EAGAIN, syscall.EINTR:
		return 0, false, nil
	}
	return 0, false, &net.OpError{Op: "read", Net: "udp", Err: errno}
}

// Close keeps the socket for another answer when the loop has room for it.
func (c *fdConn) Close() error {
	if c.pool != nil && c.pool.keep(c) {
		return nil
	}
	return unix.Close(c.fd)
}

// Sockets of ended answers are kept, by the local address they are bound to, and
// connected to the next client asking that address: a storm then costs no socket,
// bind, close or epoll registration per transfer (a tenth of the server's CPU in the
// profile went to them). They are taken oldest first and only while more than
// idleMin are kept, so a port comes back only after more than len(Server.recentTIDs)
// other answers, as RFC 1350 asks (see Server.dial). Packets that reach a kept socket
// (a late ACK of the transfer it served) are read and dropped; once it is connected
// to another client the kernel no longer hands it the old one's.
const (
	idleMin = 64
	idleMax = 256
	idleTTL = 10 * time.Second
)

// keep takes c back for reuse, or says to close it.
func (l *loop) keep(c *fdConn) bool {
	if c.key == "" || l.closing {
		return false
	}
	q := l.idle[c.key]
	if len(q) >= idleMax {
		return false
	}
	l.idle[c.key] = append(q, c)
	l.kept = l.now
	return true
}

// reuse connects a kept socket bound to local to remote, or returns nil.
func (l *loop) reuse(local net.IP, remote *net.UDPAddr) *fdConn {
	key := string(local.To16())
	q := l.idle[key]
	if len(q) <= idleMin {
		return nil
	}
	c := q[0]
	l.idle[key] = append(q[:0], q[1:]...)
	sa, err := l.sockaddr(remote.IP, remote.Port, remote.Zone)
	if err == nil {
		err = unix.Connect(c.fd, sa)
	}
	if err != nil {
		_ = unix.Close(c.fd)
		return nil
	}
	drain(c.fd)
	return c
}

// drain reads and drops what fd holds.
func drain(fd int) {
	c := fdConn{fd: fd}
	var b [4]byte
	for range 64 {
		if _, ok, err := c.read(b[:]); !ok && err == nil {
			return
		}
	}
}

// closeIdle closes the kept sockets: once the server has had no transfer for idleTTL,
// and for good (final) when serve ends.
func (l *loop) closeIdle(final bool) {
	l.closing = final
	for _, q := range l.idle {
		for _, c := range q {
			_ = unix.Close(c.fd)
		}
	}
	clear(l.idle)
}

func (l *loop) dial(arr arrival) (answerConn, error) {
	if arr.local != nil {
		if c := l.reuse(arr.local, arr.remote); c != nil {
			return c, nil
		}
	}
	family := unix.AF_INET
	if l.v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "udp", Err: err}
	}
	fail := func(op string, err error) (answerConn, error) {
		_ = unix.Close(fd)
		return nil, &net.OpError{Op: op, Net: "udp", Addr: arr.remote, Err: err}
	}
	if arr.local != nil {
		sa, err := l.sockaddr(arr.local, 0, "")
		if err != nil {
			return fail("bind", err)
		}
		if err := unix.Bind(fd, sa); err != nil {
			return fail("bind", err)
		}
	}
	sa, err := l.sockaddr(arr.remote.IP, arr.remote.Port, arr.remote.Zone)
	if err != nil {
		return fail("dial", err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		return fail("dial", err)
	}
	c := &fdConn{fd: fd}
	if arr.local != nil {
		c.key = string(arr.local.To16())
	}
	switch la, err := unix.Getsockname(fd); a := la.(type) {
	case *unix.SockaddrInet4:
		c.local = uint16(a.Port)
	case *unix.SockaddrInet6:
		c.local = uint16(a.Port)
	default:
		return fail("dial", fmt.Errorf("local address %v: %w", la, err))
	}
	return c, nil
}

// sockaddr is ip:port in the socket's family.
func (l *loop) sockaddr(ip net.IP, port int, zone string) (unix.Sockaddr, error) {
	if !l.v6 {
		ip4 := ip.To4()
		if ip4 == nil {
			return nil, fmt.Errorf("%s is not an IPv4 address", ip)
		}
		return &unix.SockaddrInet4{Port: port, Addr: [4]byte(ip4)}, nil
	}
	ip16 := ip.To16()
	if ip16 == nil {
		return nil, fmt.Errorf("%s is not an IP address", ip)
	}
	sa := &unix.SockaddrInet6{Port: port, Addr: [16]byte(ip16)}
	if zone != "" {
		ifi, err := net.InterfaceByName(zone)
		if err != nil {
			return nil, err
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return sa, nil
}

// run takes over a, started by request in the loop's goroutine.
func (l *loop) run(a *active) {
	c := a.conn.(*fdConn)
	c.pool = l // a transfer's socket is kept for another; an error's is closed
	if !c.polled {
		if err := l.add(c.fd); err != nil {
			l.s.complete(a, err, time.Now())
			return
		}
		c.polled = true
	}
	l.active[int32(c.fd)] = a
}

// close is not needed: serve returns once the last transfer has ended.
func (l *loop) close() {}

// serve reads requests from conn and runs transfers until ctx ends; then it closes conn
// and runs the transfers in flight to their end.
func (l *loop) serve(ctx context.Context, conn net.PacketConn, raw syscall.RawConn) error {
	var port int
	if err := raw.Control(func(fd uintptr) { port = int(fd) }); err != nil {
		return err
	}
	if err := l.add(port); err != nil {
		return err
	}
	rr := newRequestReader(conn)
	rr.raw = raw
	poke := context.AfterFunc(ctx, func() {
		if l.s.onShutdown != nil {
			l.s.onShutdown()
		}
		one := [8]byte{1}
		_, _ = unix.Write(l.wake, one[:])
	})
	defer poke()

	var (
		events    = make([]unix.EpollEvent, 128)
		buf       = make([]byte, 4+defaultBlksize) // requests are at most 512 bytes, ACKs 4; longer ones are cut
		expired   []*active
		nextSweep time.Time
		serveErr  error
		accepting = true
	)
	stopAccepting := func() {
		if accepting {
			// No request is taken from here on; closing the port makes the kernel
			// refuse new ones at once instead of queueing them unanswered.
			_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, port, nil)
			_ = conn.Close()
			accepting = false
		}
	}
	for {
		if accepting && ctx.Err() != nil {
			stopAccepting()
		}
		if !accepting && len(l.active) == 0 {
			l.closeIdle(true)
			return serveErr
		}
		var until time.Time
		switch {
		case len(l.active) > 0:
			until = nextSweep
		case len(l.idle) > 0:
			until = l.kept.Add(idleTTL)
		}
		n, err := l.wait(events, until)
		if err != nil {
			// Not expected of a valid epoll descriptor. Transfers end by their
			// deadlines; the next wait shows whether it lasts.
			l.s.log.Error("TFTP: waiting for packets failed", "err", err)
			serveErr = err
			stopAccepting()
			time.Sleep(sweepEvery)
		}
		now := time.Now()
		l.now = now
		for _, ev := range events[:n] {
			switch fd := int(ev.Fd); fd {
			case l.wake:
				var b [8]byte
				_, _ = unix.Read(l.wake, b[:])
			case port:
				if !accepting {
					continue
				}
				for range requestsPerWake {
					m, arr, ok, err := rr.tryRead(buf)
					if err != nil {
						serveErr = err
						stopAccepting()
						break
					}
					if !ok {
						break
					}
					l.s.request(ctx, buf[:m], arr)
				}
			default:
				a := l.active[ev.Fd]
				if a == nil {
					// A kept socket: what comes to it is late, and a packet left
					// unread would be reported again and again.
					drain(fd)
					continue
				}
				c := a.conn.(*fdConn)
				m, ok, err := c.read(buf)
				if !ok && err == nil {
					continue
				}
				done := false
				if err == nil {
					done, err = a.x.packet(c, buf[:m], now)
				}
				if done || err != nil {
					l.remove(a, err, now)
				}
			}
		}
		if len(l.active) == 0 && len(l.idle) > 0 && now.Sub(l.kept) >= idleTTL {
			l.closeIdle(false)
		}
		if now.Before(nextSweep) {
			continue
		}
		nextSweep = now.Add(sweepEvery)
		for _, a := range l.active {
			if !now.Before(a.x.deadline) {
				expired = append(expired, a)
			}
		}
		for _, a := range expired {
			if err := a.x.expire(a.conn, now); err != nil {
				l.remove(a, err, now)
			}
		}
		clear(expired)
		expired = expired[:0]
	}
}

// wait returns the events ready, waiting for one until until (zero: no bound); it
// returns none at until.
func (l *loop) wait(events []unix.EpollEvent, until time.Time) (int, error) {
	// In a storm most calls find something: ask epoll directly first, without the
	// netpoller's bookkeeping or the scheduler's (timeout 0 never blocks), a few per
	// cent of the CPU in the profile.
	if n, err := epollNow(l.epfd, events); n > 0 || err != nil {
		return n, err
	}
	if !until.Equal(l.waitTo) {
		if err := l.epoll.SetReadDeadline(until); err != nil {
			return 0, err
		}
		l.waitTo = until
	}
	var (
		n    int
		werr error
	)
	err := l.epRaw.Read(func(uintptr) bool {
		// Never blocks: when nothing is ready, Read parks this goroutine until epoll
		// is readable, which it is once one of its sockets is.
		n, werr = epollNow(l.epfd, events)
		return n > 0 || werr != nil
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if err == nil {
		err = werr
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// epollNow returns the events ready on epfd without waiting.
func epollNow(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	switch errno {
	case 0:
		return int(r), nil
	case syscall.EINTR:
		return 0, nil
	}
	return 0, os.NewSyscallError("epoll_pwait", errno)
}

// remove ends a: out of the map before its socket closes (or is kept), so that another
// transfer on a socket of the same number is not taken for it.
func (l *loop) remove(a *active, err error, now time.Time) {
	delete(l.active, int32(a.conn.(*fdConn).fd))
	l.s.complete(a, err, now)
}

// tryRead reads one request if one is waiting, without blocking: ok is false when none
// was. It needs r.raw.
func (r *requestReader) tryRead(buf []byte) (n int, a arrival, ok bool, err error) {
	if r.oob == nil {
		if r.v6 {
			r.oob = ipv6.NewControlMessage(ipv6.FlagDst | ipv6.FlagInterface)
		} else {
			r.oob = ipv4.NewControlMessage(ipv4.FlagDst | ipv4.FlagInterface)
		}
	}
	var (
		oobn int
		from unix.Sockaddr
		rerr error
	)
	err = r.raw.Read(func(fd uintptr) bool {
		n, oobn, _, from, rerr = unix.Recvmsg(int(fd), buf, r.oob, unix.MSG_DONTWAIT)
		return true // never wait: the loop waits
	})
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// A deadline set on conn by someone else: only ctx stops the server.
			_ = r.conn.SetReadDeadline(time.Time{})
			return 0, arrival{}, false, nil
		}
		return 0, arrival{}, false, err
	}
	switch {
	case errors.Is(rerr, unix.EAGAIN) || errors.Is(rerr, unix.EINTR) || errors.Is(rerr, unix.ECONNREFUSED):
		// ECONNREFUSED: an ICMP error for an earlier packet from the port, no request.
		return 0, arrival{}, false, nil
	case rerr != nil:
		return 0, arrival{}, false, &net.OpError{Op: "read", Net: "udp", Addr: r.conn.LocalAddr(), Err: rerr}
	}
	var (
		src     *net.UDPAddr
		dst     net.IP
		ifIndex int
	)
	switch sa := from.(type) {
	case *unix.SockaddrInet4:
		src = &net.UDPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *unix.SockaddrInet6:
		src = &net.UDPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				src.Zone = ifi.Name
			}
		}
	}
	if r.v6 {
		var cm ipv6.ControlMessage
		if cm.Parse(r.oob[:oobn]) == nil {
			dst, ifIndex = cm.Dst, cm.IfIndex
		}
	} else {
		var cm ipv4.ControlMessage
		if cm.Parse(r.oob[:oobn]) == nil {
			dst, ifIndex = cm.Dst, cm.IfIndex
		}
	}
	if src == nil {
		return n, arrival{maxBlksize: defaultBlksize}, true, nil
	}
	return n, r.arrival(src, dst, ifIndex), true, nil
}
