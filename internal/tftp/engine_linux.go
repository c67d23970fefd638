package tftp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/rackboot/rackboot/internal/udpbatch"
)

// The event loop that serves the port and runs every transfer on Linux (doc.go says
// why). One goroutine owns an epoll(7) set of the server port, the shared ports that
// answer the transfers (one per local address) and an eventfd that ctx's end pokes. It
// waits for that set through Go's own netpoller (the epoll descriptor is itself
// pollable), so it never blocks a thread in a system call: when nothing is ready it
// parks like any goroutine reading a socket, and the rest of rackboot runs meanwhile on
// the same CPU. It reads a shared port's packets a batch at a time, hands each to its
// transfer, and sends what they wrote in one batch once the wake-up is handled.
// Timeouts are found by a sweep of all transfers' deadlines every sweepEvery, through
// the read deadline of the epoll descriptor: one timer, not one per packet. The
// sockets are the kernel's, not Go's net package's: non-blocking, in this epoll set
// only (level-triggered), and read and written with raw system calls, so there is no
// goroutine switch, timer or read that finds nothing per packet.

// sweepEvery is how often the loop looks for transfers whose ACK is overdue, when any
// are running: a retransmission comes at most this much after its timeout.
const sweepEvery = 10 * time.Millisecond

// batchIn is how many packets one recvmmsg reads from a shared port, and readsPerWake
// how many such reads one wake-up makes before the other sockets get their turn.
const (
	batchIn      = 64
	readsPerWake = 4
)

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
	s       *Server
	v6      bool
	epfd    int
	epoll   *os.File        // epfd as Go's netpoller sees it
	epRaw   syscall.RawConn // to wait on epoll
	wake    int             // an eventfd that ctx's end pokes
	ports   map[string]*sharedPort
	byFD    map[int32]*sharedPort
	running int              // transfers in flight, in the ports' peers
	hdr     udpbatch.Headers // for sendmmsg and recvmmsg (one at a time: the loop's goroutine)
	waitTo  time.Time        // the read deadline set on epoll
	now     time.Time        // of the loop's last wake-up
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
	l := &loop{s: s, v6: v6, epfd: epfd, wake: wake, ports: map[string]*sharedPort{}, byFD: map[int32]*sharedPort{}}
	l.hdr.Inet6 = v6
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
	for _, sp := range l.ports {
		_ = unix.Close(sp.fd)
	}
}

// add puts fd in the epoll set, level-triggered: a socket with a packet left is
// reported again.
func (l *loop) add(fd int) error {
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	return nil
}

// sharedPort is the socket that every transfer answered from one local address sends
// from and reads its client's packets on: bound to that address and a port the kernel
// chose, never connected. The transfers' clients tell them apart (peers), and their
// packets come and go a batch per system call (doc.go says why).
type sharedPort struct {
	fd    int
	peers map[netip.AddrPort]*active // by client address: each transfer's other TID
	out   []udpbatch.Datagram        // packets queued to be sent
	slots [][]byte                   // out's buffers, kept from one batch to the next
}

// outMax bounds the packets queued on a port before they are sent.
const outMax = 64

// Socket buffers of a shared port: a storm's ACKs and a batch of blocks to every
// client must fit. The kernel caps them at net.core.[rw]mem_max unless the server may
// force them (it runs as root to serve port 69).
const (
	sharedRcvBuf = 1 << 20
	sharedSndBuf = 4 << 20
)

// peerConn is one answer's view of a shared port: what it writes is queued for the
// client.
type peerConn struct {
	l  *loop
	sp *sharedPort
	to netip.AddrPort
}

// Write queues one datagram to the client. Sending happens once the loop has handled
// what woke it (or outMax are queued); a send that finds the socket's buffer full loses
// the rest, as a full link would: the client's timeout or its ACK of an earlier block
// brings them again.
func (c *peerConn) Write(p []byte) (int, error) {
	c.l.queue(c.sp, c.to, p)
	return len(p), nil
}

// Close ends the answer: the client's packets are no longer taken for it.
func (c *peerConn) Close() error {
	if a := c.sp.peers[c.to]; a != nil && a.conn == answerConn(c) {
		delete(c.sp.peers, c.to)
	}
	return nil
}

// queue adds p for to to sp's next batch.
func (l *loop) queue(sp *sharedPort, to netip.AddrPort, p []byte) {
	if len(sp.out) == outMax {
		l.flush(sp)
	}
	i := len(sp.out)
	if i == len(sp.slots) {
		sp.slots = append(sp.slots, nil)
	}
	if cap(sp.slots[i]) < len(p) {
		sp.slots[i] = make([]byte, len(p), max(len(p), 4+defaultBlksize))
	}
	b := append(sp.slots[i][:0], p...)
	sp.out = append(sp.out, udpbatch.Datagram{B: b, Addr: to})
}

// flush sends what is queued on sp. A packet the kernel refuses (no route to its
// client, say) is skipped; a full socket drops the rest.
func (l *loop) flush(sp *sharedPort) {
	for i := 0; i < len(sp.out); {
		n, err := l.hdr.SendFD(sp.fd, sp.out[i:])
		i += n
		if err == nil {
			continue
		}
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ENOBUFS) {
			break
		}
		i++
	}
	clear(sp.out)
	sp.out = sp.out[:0]
}

// flushAll sends what every shared port has queued.
func (l *loop) flushAll() {
	for _, sp := range l.ports {
		if len(sp.out) > 0 {
			l.flush(sp)
		}
	}
}

// sharedFor returns the shared port of local (nil: any address), opening it the first
// time.
func (l *loop) sharedFor(local net.IP) (*sharedPort, error) {
	key := string(local.To16())
	if sp := l.ports[key]; sp != nil {
		return sp, nil
	}
	family := unix.AF_INET
	if l.v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "udp", Err: err}
	}
	fail := func(err error) (*sharedPort, error) {
		_ = unix.Close(fd)
		return nil, &net.OpError{Op: "listen", Net: "udp", Addr: &net.UDPAddr{IP: local}, Err: err}
	}
	udpbatch.SetBuffers(fd, sharedRcvBuf, sharedSndBuf)
	// ICMP errors (port unreachable: the client is gone) come back on the error queue,
	// naming the client: its transfer ends at once instead of sending to nobody until
	// it times out, as a connected socket's would.
	if l.v6 {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
	} else {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1)
	}
	if err != nil {
		return fail(err)
	}
	ip := local
	if ip == nil {
		ip = net.IPv4zero
		if l.v6 {
			ip = net.IPv6unspecified
		}
	}
	sa, err := l.sockaddr(ip, 0, "")
	if err != nil {
		return fail(err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail(err)
	}
	sp := &sharedPort{fd: fd, peers: map[netip.AddrPort]*active{}}
	if err := l.add(fd); err != nil {
		return fail(err)
	}
	l.ports[key] = sp
	l.byFD[int32(fd)] = sp
	return sp, nil
}

func (l *loop) dial(arr arrival) (answerConn, error) {
	sp, err := l.sharedFor(arr.local)
	if err != nil {
		return nil, err
	}
	ap := arr.remote.AddrPort()
	return &peerConn{l: l, sp: sp, to: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
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

// errSuperseded ends a transfer whose client asked again from the same port: it
// started over, and the packets from that port are the new transfer's.
var errSuperseded = errors.New("the client asked again from the same port")

// run takes over a, started by request in the loop's goroutine.
func (l *loop) run(a *active) {
	c := a.conn.(*peerConn)
	if old := c.sp.peers[c.to]; old != nil {
		l.remove(old, errSuperseded, l.now)
	}
	c.sp.peers[c.to] = a
	l.running++
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
		events = make([]unix.EpollEvent, 128)
		in     = make([]udpbatch.Datagram, batchIn)
		inBuf  = make([]byte, batchIn*(4+defaultBlksize)) // ACKs are 4 bytes, ERRORs at most 516

		buf       = make([]byte, 4+defaultBlksize) // requests are at most 512 bytes, ACKs 4; longer ones are cut
		expired   []*active
		nextSweep time.Time
		serveErr  error
		accepting = true
	)
	for i := range in {
		in[i].B = inBuf[i*(4+defaultBlksize) : (i+1)*(4+defaultBlksize)]
	}
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
		if !accepting && l.running == 0 {
			return serveErr
		}
		var until time.Time
		if l.running > 0 {
			until = nextSweep
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
				if sp := l.byFD[ev.Fd]; sp != nil {
					if ev.Events&unix.EPOLLERR != 0 {
						l.readErrors(sp, now)
					}
					l.readPort(sp, in, now)
				}
			}
		}
		if now.Before(nextSweep) {
			l.flushAll()
			continue
		}
		nextSweep = now.Add(sweepEvery)
		for _, sp := range l.ports {
			for _, a := range sp.peers {
				if !now.Before(a.x.deadline) {
					expired = append(expired, a)
				}
			}
		}
		for _, a := range expired {
			if err := a.x.expire(a.conn, now); err != nil {
				l.remove(a, err, now)
			}
		}
		clear(expired)
		expired = expired[:0]
		l.flushAll()
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

// readPort reads what sp holds, a batch at a time, and hands each packet to its
// transfer. Packets from no transfer's client (late ones of a transfer that ended, or
// a stranger's) are dropped and counted.
func (l *loop) readPort(sp *sharedPort, in []udpbatch.Datagram, now time.Time) {
	for range readsPerWake {
		n, err := l.hdr.RecvFD(sp.fd, in)
		if err != nil {
			// An ICMP error for an earlier packet: its client is gone.
			l.readErrors(sp, now)
			continue
		}
		for _, d := range in[:n] {
			a := sp.peers[d.Addr]
			if a == nil {
				l.s.dropped.Inc()
				continue
			}
			done, err := a.x.packet(a.conn, d.B[:d.N], now)
			if done || err != nil {
				l.remove(a, err, now)
			}
		}
		if n < len(in) {
			return
		}
	}
}

// errClientGone ends a transfer whose client's port is closed (ICMP port unreachable).
var errClientGone = &net.OpError{Op: "write", Net: "udp", Err: syscall.ECONNREFUSED}

// readErrors reads sp's error queue: each ICMP error names the client a packet was for,
// whose transfer ends.
func (l *loop) readErrors(sp *sharedPort, now time.Time) {
	var b [64]byte
	var oob [512]byte
	for range 64 {
		_, _, _, from, err := unix.Recvmsg(sp.fd, b[:], oob[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != nil {
			return
		}
		var to netip.AddrPort
		switch sa := from.(type) {
		case *unix.SockaddrInet4:
			to = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		case *unix.SockaddrInet6:
			to = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
		}
		if a := sp.peers[to]; a != nil {
			l.remove(a, errClientGone, now)
		}
	}
}

// remove ends a: out of its port's peers before anything else, so that a transfer
// that follows from the same client is not taken for it.
func (l *loop) remove(a *active, err error, now time.Time) {
	_ = a.conn.Close()
	l.running--
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
