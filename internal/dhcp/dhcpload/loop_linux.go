//go:build linux

package dhcpload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/rackboot/rackboot/internal/udpbatch"
)

// An exchange's state.
const (
	stDiscover uint8 = iota + 1 // DISCOVER sent, waiting for an OFFER
	stRequest                   // REQUEST sent, waiting for an ACK
	stDone                      // ACKed or NAKed
	stLost                      // an answer took longer than Drop
)

type exchange struct {
	t0, t1 int64 // DISCOVER and REQUEST sent, ns since the run began
	state  uint8
}

// overdue reports whether e waits for an answer (an OFFER or an ACK) longer than drop
// after its packet left.
func (e *exchange) overdue(now, drop int64) bool {
	return e.state == stDiscover && now-e.t0 > drop || e.state == stRequest && now-e.t1 > drop
}

const batch = 64

// Run runs cfg's load from conn, a UDP socket bound to the relay's IPv4 address (port
// 67 for a real server: servers answer a relay on it), which goes into every packet's
// giaddr. It returns when every exchange started has ended (ACKed, NAKed or lost) or
// ctx is done. conn is left open; its buffers are enlarged.
func Run(ctx context.Context, conn *net.UDPConn, cfg Config) (Result, error) {
	if err := cfg.check(); err != nil {
		return Result{}, err
	}
	local, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return Result{}, fmt.Errorf("dhcpload: %v is no UDP address", conn.LocalAddr())
	}
	gi := local.AddrPort().Addr().Unmap()
	if !gi.Is4() || gi.IsUnspecified() {
		return Result{}, fmt.Errorf("dhcpload: bind the relay's socket to its IPv4 address, not %v: it goes into giaddr", gi)
	}
	t, err := newTemplates(gi)
	if err != nil {
		return Result{}, err
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return Result{}, err
	}
	l := &loop{cfg: cfg, t: t, srv: cfg.Server.Addr().As4(), base: rand.Uint32()}
	var res Result
	var runErr error
	// The loop calls the socket's (non-blocking) fd directly and never through Go's
	// poller, which holds the fd open meanwhile.
	if err := rc.Control(func(fd uintptr) { res, runErr = l.run(ctx, int(fd)) }); err != nil {
		return res, err
	}
	res.finish()
	return res, runErr
}

type loop struct {
	cfg  Config
	t    *templates
	srv  [4]byte
	base uint32 // exchange i's transaction ID is base+i

	fd      int
	sendErr error // a failed send of a full batch of REQUESTs, for the loop to return
	hdr     udpbatch.Headers
	res     Result
	ex      []exchange
	out     []udpbatch.Datagram // REQUESTs or DISCOVERs to send
	bufs    [batch][]byte
	start   time.Time
}

func (l *loop) now() int64 { return int64(time.Since(l.start)) }

func (l *loop) run(ctx context.Context, fd int) (Result, error) {
	l.fd = fd
	// Room for a few hundred milliseconds of replies: the load must not be where they
	// are dropped.
	udpbatch.SetBuffers(fd, 8<<20, 4<<20)
	rd := make([]udpbatch.Datagram, batch)
	for i := range rd {
		rd[i].B = make([]byte, 1500)
	}
	for i := range l.bufs {
		l.bufs[i] = make([]byte, max(len(l.t.discover), len(l.t.request)))
	}
	l.out = make([]udpbatch.Datagram, 0, batch)
	rate, dur, drop := int64(l.cfg.Rate), int64(l.cfg.Duration), int64(l.cfg.Drop)
	l.ex = make([]exchange, 0, min(int64(l.cfg.MaxExchanges), rate*dur/1e9+batch))
	var first, last int64 = -1, 0
	lo := 0 // every exchange before lo has ended
	l.start = time.Now()
	for ctx.Err() == nil {
		// Replies first: each OFFER's REQUEST leaves in the same batch as its peers'.
		read := false
		for range 16 {
			n, err := l.hdr.RecvFD(fd, rd)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return l.res, fmt.Errorf("dhcpload: read: %w", err)
			}
			if n == 0 {
				break
			}
			read = true
			now := l.now()
			for _, d := range rd[:n] {
				l.answer(d.B[:d.N], now)
			}
			if err := errors.Join(l.sendErr, l.flushRequests()); err != nil {
				return l.res, err
			}
			if n < len(rd) {
				break
			}
		}
		// DISCOVERs that are due: exchange k is due at k/Rate seconds.
		now := l.now()
		sending := now < dur && len(l.ex) < l.cfg.MaxExchanges
		if sending {
			due := min(int(now*rate/1e9)+1, l.cfg.MaxExchanges) - len(l.ex)
			for due > 0 {
				sent, err := l.discover(min(due, batch), now)
				if err != nil {
					return l.res, err
				}
				if sent > 0 {
					if first < 0 {
						first = now
					}
					last = now
				}
				if sent < min(due, batch) {
					break // the send buffer is full: wait for room below
				}
				due -= sent
			}
		}
		// Retire what has ended or timed out, oldest first.
		for lo < len(l.ex) {
			e := &l.ex[lo]
			if e.overdue(now, drop) {
				e.state = stLost
			}
			if e.state != stDone && e.state != stLost {
				break
			}
			lo++
		}
		if !sending && lo == len(l.ex) {
			break
		}
		if read {
			continue
		}
		// Wait for a reply, up to the next DISCOVER's time (no less than 250 µs, so
		// they leave in batches) or, once sending is over, the oldest exchange's
		// timeout.
		var wait int64
		if sending {
			next := (int64(len(l.ex))*1e9 + rate - 1) / rate
			wait = min(max(next-now, 250_000), 1_000_000)
		} else {
			wait = 10_000_000
		}
		ts := unix.NsecToTimespec(wait)
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Ppoll(pfd, &ts, nil); err != nil && !errors.Is(err, unix.EINTR) {
			return l.res, fmt.Errorf("dhcpload: poll: %w", err)
		}
	}
	if first >= 0 {
		l.res.Sending = time.Duration(last - first)
	}
	return l.res, nil
}

// discover sends up to n new exchanges' DISCOVERs at now and returns how many left.
func (l *loop) discover(n int, now int64) (int, error) {
	l.out = l.out[:0]
	k := len(l.ex)
	for j := range n {
		i := k + j
		b := l.bufs[j][:len(l.t.discover)]
		copy(b, l.t.discover)
		l.patch(b, i, l.t.discoverCID)
		l.out = append(l.out, udpbatch.Datagram{B: b, Addr: l.cfg.Server})
		l.ex = append(l.ex, exchange{t0: now, state: stDiscover})
	}
	sent, err := l.hdr.SendFD(l.fd, l.out)
	l.ex = l.ex[:k+sent]
	l.res.Discovers += sent
	l.out = l.out[:0]
	if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
		return sent, fmt.Errorf("dhcpload: send: %w", err)
	}
	if sent < n {
		waitWritable(l.fd)
	}
	return sent, nil
}

// patch writes exchange i's transaction ID and client MAC into packet b, whose client
// identifier's value is at cid.
func (l *loop) patch(b []byte, i, cid int) {
	binary.BigEndian.PutUint32(b[offXID:], l.base+uint32(i))
	c := uint32(i % l.cfg.Clients)
	binary.BigEndian.PutUint32(b[offCHAddr+2:], c)
	binary.BigEndian.PutUint32(b[cid+3:], c)
}

// answer takes one datagram from a server at now: an OFFER queues its REQUEST, an ACK
// or NAK ends its exchange.
func (l *loop) answer(b []byte, now int64) {
	r, ok := parseReply(b)
	if !ok {
		l.res.Stray++
		return
	}
	i := int(r.xid - l.base)
	if i < 0 || i >= len(l.ex) || r.mac[0] != 0x02 || r.mac[1] != 0 ||
		binary.BigEndian.Uint32(r.mac[2:]) != uint32(i%l.cfg.Clients) {
		l.res.Stray++
		return
	}
	e := &l.ex[i]
	switch r.typ {
	case dhcpv4.MessageTypeOffer:
		if !l.awaited(e, stDiscover, now) {
			return
		}
		l.res.Offers++
		b := l.bufs[len(l.out)][:len(l.t.request)]
		copy(b, l.t.request)
		l.patch(b, i, l.t.requestCID)
		copy(b[l.t.reqIP:], r.yi[:])
		srv := r.srvID
		if srv == ([4]byte{}) {
			srv = l.srv
		}
		copy(b[l.t.srvID:], srv[:])
		l.out = append(l.out, udpbatch.Datagram{B: b, Addr: l.cfg.Server})
		e.t1, e.state = now, stRequest
		if len(l.out) == batch && l.sendErr == nil {
			l.sendErr = l.flushRequests() // a full batch goes now
		}
	case dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak:
		if !l.awaited(e, stRequest, now) {
			return
		}
		e.state = stDone
		if r.typ == dhcpv4.MessageTypeNak {
			l.res.Naks++
			return
		}
		l.res.Acks++
		l.res.Latencies = append(l.res.Latencies, time.Duration(now-e.t0))
	default:
		l.res.Stray++
	}
}

// awaited reports whether an answer that came at now is the one e waits for in state
// want. One later than Drop loses e and counts late; any other (a duplicate, an ACK to
// a DISCOVER) counts stray.
func (l *loop) awaited(e *exchange, want uint8, now int64) bool {
	if e.state == want && e.overdue(now, int64(l.cfg.Drop)) {
		e.state = stLost
	}
	switch e.state {
	case want:
		return true
	case stLost:
		l.res.Late++
	default:
		l.res.Stray++
	}
	return false
}

// flushRequests sends the queued REQUESTs, waiting for room in the send buffer up to
// 10 ms; what still does not fit is not sent (its exchange times out).
func (l *loop) flushRequests() error {
	defer func() { l.out = l.out[:0] }()
	for tries, todo := 0, l.out; len(todo) > 0; tries++ {
		sent, err := l.hdr.SendFD(l.fd, todo)
		l.res.Requests += sent
		todo = todo[sent:]
		if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("dhcpload: send: %w", err)
		}
		if len(todo) > 0 {
			if tries == 10 {
				return nil
			}
			waitWritable(l.fd)
		}
	}
	return nil
}

// waitWritable waits up to 1 ms for room in fd's send buffer.
func waitWritable(fd int) {
	ts := unix.NsecToTimespec(1_000_000)
	_, _ = unix.Ppoll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, &ts, nil)
}
