package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/pin/tftp/v3/netascii"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/internal/hotfile"
	"github.com/rackboot/rackboot/internal/inventory"
)

// Config, New, Serve and the end of each transfer: its log line, metrics and timeline
// event. The package doc (doc.go) says what the service guarantees.

// Store is the part of the inventory the TFTP server needs to put transfers on a
// host's timeline.
type Store interface {
	// HostByIP finds the host holding ip (reservation or lease), or inventory.ErrNotFound.
	HostByIP(ctx context.Context, ip string) (inventory.Host, error)
	// RecordEvents queues events for the inventory's next group commit and returns at
	// once: a storm's events share transactions and fsyncs.
	RecordEvents(ctx context.Context, evs ...inventory.HostEvent) error
}

var _ Store = (*inventory.BoltStore)(nil)

// EventRead is the timeline event type of a TFTP read request, whatever its outcome.
const EventRead = "tftp.read"

// Outcomes, the outcome label of rackboot_tftp_transfers_total.
const (
	OutcomeOK       = "ok"        // the whole file was sent and acknowledged
	OutcomeNotFound = "not_found" // a valid name that the FS does not have
	OutcomeRefused  = "refused"   // a name CleanPath refuses, a directory, a mode not served
	OutcomeError    = "error"     // the file could not be opened or read
	OutcomeFailed   = "failed"    // the transfer started but did not complete
	// OutcomeAborted: the client ended the transfer with TFTP error 8 (RFC 2347 option
	// negotiation refused). UEFI PXE firmware does this on purpose: it asks for a file
	// once only to learn its tsize, then requests it again.
	OutcomeAborted      = "aborted"
	OutcomeWriteRefused = "write_refused" // a write request
)

const (
	// DefaultAddr is where PXE firmware looks for TFTP.
	DefaultAddr    = ":69"
	DefaultTimeout = 5 * time.Second
	DefaultRetries = 5
	// DefaultMaxTransfers bounds transfers in flight: a rack of a few hundred hosts
	// powered on together fetches one small binary each and is done in seconds.
	DefaultMaxTransfers = 256
	// DefaultMaxTransfersPerSource bounds transfers in flight from one address.
	DefaultMaxTransfersPerSource = 4
	// unknownFile is the file label for names that were not served.
	unknownFile = "unknown"
	// maxKeptFile and maxKept bound the files kept in memory (package hotfile).
	maxKeptFile = 32 << 20
	maxKept     = 128 << 20
	// eventTimeout bounds a timeline write after a transfer.
	eventTimeout = 5 * time.Second
)

// Config configures the TFTP server.
type Config struct {
	// Addr is the UDP address to listen on; empty means DefaultAddr.
	Addr string
	// FS holds the files served (ipxe.Binaries or ipxe.OpenBinaries). Required.
	FS fs.FS
	// Logger gets one line per transfer; nil discards.
	Logger *slog.Logger
	// Registerer gets the TFTP metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Store puts transfers on host timelines; nil records none.
	Store Store
	// Timeout is how long to wait for each ACK before resending; 0 means DefaultTimeout.
	// A client may ask for a shorter one (RFC 2349), never a longer one.
	Timeout time.Duration `yaml:"timeout" doc:"wait for each ACK before a block is sent again"`
	// Retries is how many times a block (a window, with windowsize; the OACK) is sent
	// before the transfer fails; 0 means DefaultRetries.
	Retries int `yaml:"retries" doc:"sends of one block before the transfer fails"`
	// MaxTransfers is how many transfers may run at once; 0 means DefaultMaxTransfers.
	MaxTransfers int `yaml:"maxTransfers" doc:"transfers at once; more get \"server busy\""`
	// MaxTransfersPerSource is how many of them may come from one IP address; 0 means
	// DefaultMaxTransfersPerSource.
	MaxTransfersPerSource int `yaml:"maxTransfersPerSource" doc:"transfers at once from one address"`
}

// DefaultConfig is the settings part of Config with every default written out (what
// `rackboot config defaults` prints under tftp).
func DefaultConfig() Config {
	return Config{Timeout: DefaultTimeout, Retries: DefaultRetries, MaxTransfers: DefaultMaxTransfers, MaxTransfersPerSource: DefaultMaxTransfersPerSource}
}

// Validate checks the limits an operator sets (zeros mean the defaults). Its messages
// start with the setting's name, so the caller can prefix its own path ("tftp.").
func (c Config) Validate() error {
	switch {
	case c.Timeout < 0 || (c.Timeout > 0 && c.Timeout < 100*time.Millisecond) || c.Timeout > time.Minute:
		return fmt.Errorf("timeout: %s: give 100ms-1m (default %s)", c.Timeout, DefaultTimeout)
	case c.Retries < 0 || c.Retries > 100:
		return fmt.Errorf("retries: %d: give 1-100 (default %d)", c.Retries, DefaultRetries)
	case c.MaxTransfers < 0:
		return fmt.Errorf("maxTransfers: %d: give a positive number (default %d)", c.MaxTransfers, DefaultMaxTransfers)
	case c.MaxTransfersPerSource < 0:
		return fmt.Errorf("maxTransfersPerSource: %d: give a positive number (default %d)", c.MaxTransfersPerSource, DefaultMaxTransfersPerSource)
	case c.MaxTransfers > 0 && c.MaxTransfersPerSource > c.MaxTransfers:
		return fmt.Errorf("maxTransfersPerSource: %d is above maxTransfers %d: one client could take every slot", c.MaxTransfersPerSource, c.MaxTransfers)
	}
	return nil
}

// Server is a read-only TFTP server. Build it with New.
type Server struct {
	cfg       Config
	log       *slog.Logger
	transfers *prometheus.CounterVec
	bytes     prometheus.Counter
	duration  prometheus.Histogram
	dropped   prometheus.Counter
	limited   *prometheus.CounterVec
	slots     *slots
	files     *hotfile.Cache // cfg.FS's files, kept in memory; nil (a test) reads each from FS
	// onShutdown, when set by a test, runs when shutdown begins.
	onShutdown func()
	// goroutines, set by a test, runs each transfer in a goroutine of its own
	// (goroutineEngine) where the event loop would.
	goroutines bool
	// eng runs the transfers; ended takes them when they end (Serve).
	eng   engine
	ended chan *active
	// recentTIDs are the ports of the last answers (goroutineEngine.dial).
	recentTIDs [64]uint16
	nextTID    int
}

// New checks cfg, fills defaults and registers the metrics.
func New(cfg Config) (*Server, error) {
	if cfg.FS == nil {
		return nil, errors.New("tftp: Config.FS is nil: pass the iPXE binaries (ipxe.Binaries())")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tftp: %w", err)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.MaxTransfers == 0 {
		cfg.MaxTransfers = DefaultMaxTransfers
	}
	if cfg.MaxTransfersPerSource == 0 {
		cfg.MaxTransfersPerSource = min(DefaultMaxTransfersPerSource, cfg.MaxTransfers)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, slots: newSlots(cfg.MaxTransfers, cfg.MaxTransfersPerSource)}
	// TFTP serves boot loaders, a few MiB at most; anything larger is read from FS.
	// The blocks are copied out of the heap (NoSendfile): no system call per block.
	files, err := hotfile.New(hotfile.Config{FS: cfg.FS, NoSendfile: true, MaxFile: maxKeptFile, MaxTotal: maxKept})
	if err != nil {
		return nil, fmt.Errorf("tftp: %w", err)
	}
	s.files = files
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.transfers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rackboot_tftp_transfers_total",
		Help: "TFTP requests, by file served and outcome.",
	}, []string{"file", "outcome"})
	s.bytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rackboot_tftp_bytes_total",
		Help: "Bytes of file data sent over TFTP.",
	})
	s.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "rackboot_tftp_transfer_duration_seconds",
		Help:    "Time from a TFTP read request to its end.",
		Buckets: prometheus.ExponentialBuckets(0.005, 3, 9), // 5 ms to about 33 s
	})
	s.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rackboot_tftp_dropped_packets_total",
		Help: "Packets to the TFTP port that were not a valid request and were dropped.",
	})
	s.limited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rackboot_tftp_limited_total",
		Help: "TFTP read requests refused because too many transfers were running: limit is global (tftp.maxTransfers) or per_source (tftp.maxTransfersPerSource).",
	}, []string{"limit"})
	for _, l := range []string{limitGlobal, limitPerSource} {
		s.limited.WithLabelValues(l)
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	for _, c := range []prometheus.Collector{s.transfers, s.bytes, s.duration, s.dropped, s.limited} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("tftp: register metrics: %w", err)
		}
	}
	return s, nil
}

// Start listens on Config.Addr and serves until ctx ends, then shuts down gracefully.
func (s *Server) Start(ctx context.Context) error {
	network := "udp4"
	if host, _, err := net.SplitHostPort(s.cfg.Addr); err == nil {
		// PXE is IPv4; listen on IPv6 only when explicitly asked to.
		if a, err := netip.ParseAddr(host); err == nil && a.Is6() && !a.Is4In6() {
			network = "udp6"
		}
	}
	conn, err := Listen(network, s.cfg.Addr)
	if err != nil {
		return err
	}
	s.log.Info("TFTP server listening", "addr", conn.LocalAddr().String())
	return s.Serve(ctx, conn)
}

// Serve serves TFTP on conn until ctx ends; it then stops taking requests, closes conn
// and waits for transfers in flight. It returns nil after a clean shutdown, and an
// error if conn fails before.
//
// Use Listen to make conn; a conn made otherwise gets IP_PKTINFO only from here on.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	enablePacketInfo(conn)
	network := "udp4"
	if isIPv6(conn) {
		network = "udp6"
	}
	// Ended transfers are counted and recorded off the goroutine that runs transfers: a
	// store lookup must not hold up other transfers' packets. Slots are given back only
	// after, so at most MaxTransfers are ever queued here and a send never blocks.
	s.ended = make(chan *active, s.cfg.MaxTransfers)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		for a := range s.ended {
			s.finish(ctx, a.t)
			a.release()
		}
	}()
	err := s.serve(ctx, conn, network)
	close(s.ended)
	<-recorded
	if err != nil {
		return fmt.Errorf("tftp: serve on %s: %w", conn.LocalAddr(), err)
	}
	s.log.Info("TFTP server stopped")
	return nil
}

// serveGoroutines serves conn with a goroutine reading requests and a goroutine per
// transfer (goroutineEngine), until ctx ends and the last transfer with it.
func (s *Server) serveGoroutines(ctx context.Context, conn net.PacketConn, network string) error {
	s.eng = newGoroutineEngine(s, network)
	// Cancelling ctx wakes the read below: a deadline in the past fails it at once.
	stop := context.AfterFunc(ctx, func() {
		if s.onShutdown != nil {
			s.onShutdown()
		}
		_ = conn.SetReadDeadline(time.Unix(1, 0))
	})
	defer stop()
	err := s.readRequests(ctx, conn)
	// No request is taken from here on; closing the port makes the kernel refuse new
	// ones at once instead of queueing them unanswered.
	_ = conn.Close()
	s.eng.close()
	return err
}

// readRequests reads the server port until ctx ends, in order: each packet is dropped,
// refused, or started as a transfer before the next is read.
func (s *Server) readRequests(ctx context.Context, conn net.PacketConn) error {
	rr := newRequestReader(conn)
	// A request is at most 512 bytes (RFC 1350); a bigger datagram is cut and then
	// fails to parse.
	buf := make([]byte, 4+defaultBlksize)
	for {
		n, arr, err := rr.read(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return err
			}
			// A deadline set by someone else: only ctx stops the server. Clear it,
			// then look at ctx again, so a cancel in between still wakes the read.
			_ = conn.SetReadDeadline(time.Time{})
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		s.request(ctx, buf[:n], arr)
	}
}

// request handles one packet to the server port: it is dropped, refused, or started as
// a transfer (its first packet sent) and handed to the engine.
func (s *Server) request(ctx context.Context, p []byte, arr arrival) {
	req, err := parseRequest(p)
	if err != nil || arr.remote == nil {
		s.dropped.Inc()
		s.log.Debug("TFTP: dropped a packet that is not a valid request", "err", err)
		return
	}
	if req.op == opWRQ {
		s.refuseWrite(ctx, req, arr)
		return
	}
	src, _ := netip.AddrFromSlice(arr.remote.IP)
	release, limit := s.slots.acquire(src.Unmap())
	if limit != "" {
		// No log line at info, no event: a flood must not cost more than a counter
		// and one error packet no bigger than the request.
		s.limited.WithLabelValues(limit).Inc()
		s.log.Debug("TFTP: request refused, too many transfers", "ip", src.Unmap().String(), "limit", limit)
		s.sendError(arr, errUndefined, "server busy: try again later", len(p))
		return
	}
	t := transfer{file: req.file, remote: arr.remote, start: time.Now(), size: -1}
	conn, err := s.eng.dial(arr)
	if err != nil {
		t.outcome, t.err = OutcomeFailed, err
		s.finish(ctx, t)
		release()
		return
	}
	a := &active{t: t, conn: conn, release: release}
	code, err := s.open(a, req, arr)
	if err == nil {
		err = a.x.begin(a.conn, a.t.start)
		if err == nil {
			s.eng.run(a)
			return
		}
		code, err = s.sendFailed(a, err)
	}
	s.end(a, code, err, time.Now())
}

// sendError answers a request with one error packet from the port a transfer's first
// packet would come from, cut to at most limit bytes.
func (s *Server) sendError(arr arrival, code uint16, msg string, limit int) {
	c, err := s.eng.dial(arr)
	if err != nil {
		s.log.Debug("TFTP: cannot answer", "ip", arr.remote.IP.String(), "err", err)
		return
	}
	defer c.Close()
	_, _ = c.Write(appendError(nil, code, msg, limit))
}

// transfer is what one request leaves behind in the log, the metrics and the timeline.
type transfer struct {
	file        string // as requested
	served      string // the cleaned name, if it was opened
	remote      *net.UDPAddr
	outcome     string
	bytes       int64
	size        int64
	window      int
	retransmits int
	start       time.Time
	duration    time.Duration
	err         error
}

// refuseWrite answers a write request: rackboot never writes.
func (s *Server) refuseWrite(ctx context.Context, req request, arr arrival) {
	t := transfer{file: req.file, remote: arr.remote, start: time.Now(), size: -1, outcome: OutcomeWriteRefused}
	t.err = errors.New("rackboot's TFTP server is read-only: write requests are refused")
	s.sendError(arr, errAccess, t.err.Error(), maxErrorMessage+5)
	s.finish(ctx, t)
}

// complete ends a transfer the engine ran: err is nil once the client acknowledged the
// last block. The engine calls it from its own goroutine.
func (s *Server) complete(a *active, err error, now time.Time) {
	var code uint16
	if err == nil {
		a.t.outcome = OutcomeOK
	} else {
		code, err = s.sendFailed(a, err)
	}
	s.end(a, code, err, now)
}

// end closes a's socket and file, after an error packet to the client when the server
// gave up (code and err say what the client reads), and queues it to be counted and
// recorded.
func (s *Server) end(a *active, code uint16, err error, now time.Time) {
	t := &a.t
	t.err = err
	t.bytes, t.retransmits, t.duration = a.x.acked, a.x.retransmits, now.Sub(t.start)
	var ce *clientError
	switch {
	case err == nil:
	case errors.As(err, &ce):
		// The client ended it: no answer. Code 8 is UEFI's tsize probe.
		if ce.code == errOptionRefuse {
			t.outcome = OutcomeAborted
		}
	case t.outcome == OutcomeFailed && !errors.Is(err, errTimeout):
		// The network failed: the client is gone (port unreachable).
	default:
		// What the client reads: it names the problem without revealing anything on
		// the server.
		_, _ = a.conn.Write(appendError(nil, code, err.Error(), maxErrorMessage+5))
	}
	_ = a.conn.Close()
	if a.file != nil {
		_ = a.file.Close()
	}
	s.ended <- a
}

// open opens the file a asks for and settles the transfer's options into a.x. On
// failure it returns the error code and the error whose text the client gets.
func (s *Server) open(a *active, req request, arr arrival) (uint16, error) {
	t := &a.t
	name, err := CleanPath(req.file)
	if err != nil {
		t.outcome = OutcomeRefused
		return errAccess, err
	}
	if req.mode != "octet" && req.mode != "netascii" {
		t.outcome = OutcomeRefused
		return errIllegalOp, fmt.Errorf("transfer mode %q is not supported: use octet", req.mode)
	}
	var (
		ra    io.ReaderAt // the content, when it can be read at any offset
		r     io.Reader   // otherwise, in order
		tsize int64
	)
	// Files come from memory (package hotfile): a block is a copy, and the event loop
	// never waits for a disk. Those too large to keep, and names that are not a file
	// (a directory is refused rather than not found), are opened from FS.
	var hf *hotfile.File
	err = hotfile.ErrTooLarge
	if s.files != nil {
		hf, err = s.files.Get(name)
	}
	switch {
	case err == nil:
		ra, tsize = hf.ReaderAt(), hf.Size()
	case errors.Is(err, hotfile.ErrTooLarge) || errors.Is(err, fs.ErrNotExist):
		f, code, err := s.openFS(t, name)
		if err != nil {
			return code, err
		}
		a.file = f
		if st, serr := f.Stat(); serr == nil {
			tsize = st.Size()
		}
		r = f
		ra, _ = f.(io.ReaderAt)
	default:
		t.outcome = OutcomeError
		s.log.Error("TFTP: cannot open file", "file", name, "err", err)
		return errUndefined, fmt.Errorf("cannot open %s", name)
	}
	t.served, t.size = name, tsize

	var src blockSource
	switch {
	case req.mode == "netascii":
		tsize = -1 // the converted length is not known before the end
		if ra != nil {
			r = io.NewSectionReader(ra, 0, t.size)
		}
		r = netascii.ToReader(r)
	case ra != nil:
		src = readerAtSource{ra}
	}
	p := negotiate(req.opts, tsize, limits{maxBlksize: arr.maxBlksize, maxTimeout: s.cfg.Timeout})
	if src == nil {
		src = &ringSource{r: r, window: p.window, blksize: p.blksize}
	}
	a.x = xfer{src: src, blksize: p.blksize, window: p.window, timeout: s.cfg.Timeout, retries: s.cfg.Retries}
	if p.timeout > 0 {
		a.x.timeout = p.timeout
	}
	if len(p.oack) > 0 {
		a.x.oack = appendOACK(nil, p.oack)
	}
	t.window = p.window
	return 0, nil
}

// openFS opens name from FS, for a file not kept in memory. On failure it returns the
// error code and the error whose text the client gets.
func (s *Server) openFS(t *transfer, name string) (fs.File, uint16, error) {
	f, err := s.cfg.FS.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			t.outcome = OutcomeNotFound
			return nil, errNotFound, fmt.Errorf("file not found: %s", name)
		}
		t.outcome = OutcomeError
		s.log.Error("TFTP: cannot open file", "file", name, "err", err)
		return nil, errUndefined, fmt.Errorf("cannot open %s", name)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		t.outcome = OutcomeError
		return nil, errUndefined, fmt.Errorf("cannot open %s", name)
	}
	if st.IsDir() {
		_ = f.Close()
		t.outcome = OutcomeRefused
		return nil, errAccess, fmt.Errorf("%s is a directory", name)
	}
	return f, 0, nil
}

// sendFailed sets the outcome of a transfer whose sending failed with err, and returns
// the error code and the error whose text the client gets.
func (s *Server) sendFailed(a *active, err error) (uint16, error) {
	var re *readError
	if errors.As(err, &re) {
		a.t.outcome = OutcomeError
		s.log.Error("TFTP: cannot read file", "file", a.t.served, "err", err)
		return errUndefined, fmt.Errorf("cannot read %s", a.t.served)
	}
	a.t.outcome = OutcomeFailed
	return errUndefined, err
}

// finish counts one request and records it (record.go).
func (s *Server) finish(ctx context.Context, t transfer) {
	if t.duration == 0 {
		t.duration = time.Since(t.start)
	}
	label := t.served
	if label == "" {
		label = unknownFile
	}
	s.transfers.WithLabelValues(label, t.outcome).Inc()
	s.bytes.Add(float64(t.bytes))
	if t.outcome != OutcomeWriteRefused {
		s.duration.Observe(t.duration.Seconds())
	}
	s.record(ctx, &t)
}
