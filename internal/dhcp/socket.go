package dhcp

// This file is the socket loop: Server opens the sockets, reads packets into the queue
// (queue.go), runs the workers that call the Handler, and writes replies.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/rackboot/rackboot/internal/udpbatch"
)

// packetTimeout bounds the inventory work for one packet; a client retransmits long
// before a reply this late would be useful.
const packetTimeout = 5 * time.Second

// DHCPDISCOVER's and DHCPREQUEST's option 53 values, as peek reads them.
const (
	discoverType = 1
	requestType  = 3
)

// batchLen bounds the packets one recvmmsg reads and the replies one sendmmsg sends.
const batchLen = 64

// A quiet server reads at most every coalesce (interrupt moderation, as NICs do): at
// rates below coalesceBelow packets per second (measured over rateWindow), after a read
// that emptied the socket the reader sleeps for coalesce before the next one, so a
// trickle of packets is handled a handful at a time. Each wakeup of an idle Go process
// costs more than the packet: the runtime's monitor thread (sysmon), woken by the first
// system call, polls every 20 µs for a millisecond before it sleeps again, which was
// 31 % of rackboot's CPU at 1,000 DORA/s (perf, 2026-12-03). With coalescing, CPU per
// DORA there fell from 0.15-0.16 to 0.10-0.13 ms (5 and 10 ms alike within the noise).
// 10 ms later is nothing to a DHCP client (it retransmits after 4 s); at the threshold
// a read carries about 50 packets, and a busy server never sleeps.
const (
	coalesce      = 10 * time.Millisecond
	coalesceBelow = 5000
	rateWindow    = 100 * time.Millisecond
)

// maxPacket is the read buffer: larger than any UDP datagram, so nothing is truncated
// into a misleading parse error.
const maxPacket = 65535

// Server runs the DHCP service: it owns the sockets and hands packets to a Handler.
type Server struct {
	cfg     Config
	h       *Handler
	log     *slog.Logger
	conn    net.PacketConn // Port (67)
	pxeConn net.PacketConn // ProxyPort (4011), proxy mode only
	// frames sends replies that carry a boot key to the client's MAC only; nil when
	// the server was given its sockets (tests), which then get them like any reply.
	frames *frameSender
	ready  chan struct{}
	once   sync.Once
}

// Option adjusts a Server.
type Option func(*Server)

// WithConn makes the server use c instead of opening Config.Port on Config.Interface
// (tests pass a socket pair or loopback socket). The server closes c when it stops.
func WithConn(c net.PacketConn) Option { return func(s *Server) { s.conn = c } }

// WithPXEConn is WithConn for the PXE boot server port (Config.ProxyPort).
func WithPXEConn(c net.PacketConn) Option { return func(s *Server) { s.pxeConn = c } }

// New validates cfg and prepares the service. With Mode off it returns a Server whose
// Start just waits for the context.
func New(cfg Config, opts ...Option) (*Server, error) {
	s := &Server{ready: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	if cfg.Mode == ModeOff {
		s.cfg = cfg.withDefaults()
		s.log = s.cfg.Logger
		return s, nil
	}
	if cfg.Interface == "" && s.conn == nil {
		return nil, bad("Interface", "is empty: name the provisioning interface the DHCP service listens on, or set the mode to off")
	}
	h, err := NewHandler(cfg)
	if err != nil {
		return nil, err
	}
	s.h, s.cfg, s.log = h, h.cfg, h.log
	return s, nil
}

// Handler returns the server's packet handler (nil in mode off).
func (s *Server) Handler() *Handler { return s.h }

// Ready is closed once the sockets are open (for /readyz).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Start opens the sockets and serves until ctx ends; it then closes them and returns
// nil. It returns an error if a socket cannot be opened or fails.
func (s *Server) Start(ctx context.Context) error {
	if s.cfg.Mode == ModeOff {
		s.log.Info("dhcp: off: clients must get addresses and boot options elsewhere")
		s.once.Do(func() { close(s.ready) })
		<-ctx.Done()
		return nil
	}
	type listener struct {
		conn net.PacketConn
		kind Listener
	}
	var ls []listener
	closeAll := func() {
		for _, l := range ls {
			l.conn.Close()
		}
	}
	conn := s.conn
	if conn == nil {
		fs, err := openFrameSender(s.cfg.Interface, s.cfg.ServerIP)
		if err != nil {
			return err
		}
		s.frames = fs
		defer fs.Close()
		// Proxy mode shares port 67 with the site's DHCP server if both run on one host.
		if conn, err = listen(ctx, s.cfg.Interface, s.cfg.Port, s.cfg.Mode == ModeProxy); err != nil {
			return err
		}
	}
	ls = append(ls, listener{conn, ListenerDHCP})
	if s.cfg.Mode == ModeProxy {
		pc := s.pxeConn
		if pc == nil {
			var err error
			if pc, err = listen(ctx, s.cfg.Interface, s.cfg.ProxyPort, false); err != nil {
				closeAll()
				return err
			}
		}
		ls = append(ls, listener{pc, ListenerPXE})
	} else if s.pxeConn != nil {
		s.pxeConn.Close()
	}
	for _, l := range ls {
		s.log.Info("dhcp: listening", "mode", string(s.cfg.Mode), "interface", s.cfg.Interface, "addr", l.conn.LocalAddr().String(), "serverIP", s.cfg.ServerIP)
	}
	s.once.Do(func() { close(s.ready) })

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := newQueue(s.cfg.QueueLength, s.h.m, time.Now)
	replies := make(chan ackJob, s.cfg.QueueLength)
	acks := make(chan ackJob, s.cfg.QueueLength)
	var senders sync.WaitGroup
	senders.Go(func() { s.sendReplies(q, replies) })
	senders.Go(func() { s.sendAcks(q, acks) })
	var workers sync.WaitGroup
	for range s.cfg.Workers {
		workers.Go(func() { s.work(ctx, q, replies, acks) })
	}
	errs := make([]error, len(ls))
	var wg sync.WaitGroup
	for i, l := range ls {
		wg.Go(func() {
			errs[i] = s.read(ctx, l.conn, l.kind, q)
			cancel() // one socket failing stops the service
		})
	}
	<-ctx.Done()
	// Unblock the reads, let the workers and the senders finish what they hold (an ACK
	// whose lease is durable still goes out), then close the sockets.
	for _, l := range ls {
		l.conn.SetReadDeadline(time.Unix(1, 0))
	}
	wg.Wait()
	q.close()
	workers.Wait()
	close(replies)
	close(acks)
	senders.Wait()
	closeAll()
	s.log.Info("dhcp: stopped")
	return errors.Join(errs...)
}

// read is the socket loop: it only reads packets and queues them for the workers
// (queue.go decides what is shed under overload), so a slow packet (an ACK waiting for
// its lease's fsync) never stops the reading.
func (s *Server) read(ctx context.Context, conn net.PacketConn, kind Listener, q *queue) error {
	// A UDP socket reads many packets per system call (recvmmsg on Linux); a busy
	// server then pays one call for a burst.
	batch := udpbatch.NewConn(conn)
	n := 1
	if batch != nil {
		n = batchLen
	}
	ds := make([]udpbatch.Datagram, n)
	for i := range ds {
		ds[i].B = make([]byte, maxPacket)
	}
	var windowStart time.Time
	windowCount, quiet := 0, false
	for {
		var got int
		var err error
		if batch != nil {
			got, err = batch.ReadBatch(ds)
		} else {
			var addr net.Addr
			ds[0].N, addr, err = conn.ReadFrom(ds[0].B)
			ds[0].Addr, got = netip.AddrPort{}, 1
			if ua, ok := addr.(*net.UDPAddr); ok {
				ap := ua.AddrPort()
				ds[0].Addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dhcp: read from %s: %w", conn.LocalAddr(), err)
		}
		now := time.Now()
		for _, d := range ds[:got] {
			p := &packet{b: append([]byte(nil), d.B[:d.N]...), peer: d.Addr, kind: kind, conn: conn, at: now}
			p.key, p.dup = peek(p.b)
			p.key.kind = kind
			q.put(p)
		}
		if windowCount += got; now.Sub(windowStart) >= rateWindow {
			quiet = windowCount < coalesceBelow*int(rateWindow/time.Millisecond)/1000
			windowStart, windowCount = now, 0
		}
		if quiet && got < len(ds) {
			time.Sleep(coalesce)
		}
	}
}

// work handles queued packets until the queue closes. Replies go to the senders
// (acks.go): an ACK to the one that sends it once its lease is durable, so the worker
// goes on with the next packet instead of waiting through the commit.
func (s *Server) work(ctx context.Context, q *queue, replies, acks chan<- ackJob) {
	wake := make(chan struct{}, 1)
	for {
		p := q.get(wake)
		if p == nil {
			return
		}
		// Only a message that may wait for a commit pays for the timer of a deadline:
		// not a DISCOVER (its offer is not waited for) nor a REQUEST (its ACK waits in
		// the ACK sender; a REQUEST for another server's offer frees ours, which the
		// committer answers like every change).
		pctx, pcancel := ctx, context.CancelFunc(func() {})
		if p.key.mt != discoverType && p.key.mt != requestType {
			pctx, pcancel = context.WithTimeout(ctx, packetTimeout)
		}
		r := s.h.HandlePacket(pctx, p.b, Meta{Peer: p.peer, Listener: p.kind, deferAck: true})
		pcancel()
		switch {
		case r == nil:
			q.done(p)
		case r.durable != nil:
			acks <- ackJob{r: r, p: p} // q.done once sent
		default:
			replies <- ackJob{r: r, p: p} // q.done once sent
		}
	}
}

// send writes r (see write) with buf as scratch space, which it returns for reuse; a
// failure is counted and logged.
func (s *Server) send(conn net.PacketConn, r *Reply, buf []byte) []byte {
	buf = appendMsg(buf[:0], r.Msg)
	if err := s.write(conn, r, buf); err != nil {
		s.sendFailed(r, err)
	}
	return buf
}

func (s *Server) sendFailed(r *Reply, err error) {
	s.h.m.sendErrors.Inc()
	s.log.Warn("dhcp: could not send reply", "dest", r.Dest.String(), "mac", r.Msg.ClientHWAddr.String(), "xid", r.Msg.TransactionID.String(), "err", err)
}

// write sends the encoded reply b of r: to r's hardware address only when it has one
// (and the server opened its own sockets), else through conn.
func (s *Server) write(conn net.PacketConn, r *Reply, b []byte) error {
	if r.HWDest != nil && s.frames != nil {
		var port uint16
		if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
			port = uint16(ua.Port)
		}
		return s.frames.send(r.HWDest, port, r.Dest, b)
	}
	_, err := conn.WriteTo(b, net.UDPAddrFromAddrPort(r.Dest))
	return err
}

// listen opens a UDP socket on port, bound to iface.
func listen(ctx context.Context, iface string, port int, share bool) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = setSockopts(int(fd), iface, share) }); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			return nil, fmt.Errorf("dhcp: listen on UDP port %d on %s: %w: another DHCP server (dnsmasq, dhcpd, another rackboot) holds it: stop it, or run rackboot with DHCP mode proxy or off", port, iface, err)
		case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
			return nil, fmt.Errorf("dhcp: listen on UDP port %d on %s: %w: run as root or grant CAP_NET_BIND_SERVICE and CAP_NET_RAW", port, iface, err)
		case errors.Is(err, syscall.ENODEV):
			return nil, fmt.Errorf("dhcp: listen on UDP port %d: %w: interface %q does not exist: check the interface name", port, err, iface)
		}
		return nil, fmt.Errorf("dhcp: listen on UDP port %d on %s: %w", port, iface, err)
	}
	return pc, nil
}
