// Package tftp owns rackboot's TFTP service: a read-only server, on
// github.com/pin/tftp/v3, for the iPXE binaries that PXE firmware fetches before it can
// speak HTTP.
//
// What it does and why:
//
//   - Read-only. A write request gets an error packet and is counted; nothing is
//     ever written.
//   - Names are parsed by CleanPath (a pure function, fuzzed) and opened only through
//     the fs.FS in Config (the embedded binaries, possibly with DATA_DIR/ipxe layered
//     over them via os.Root), so no request can reach a file outside it.
//   - Options: blksize (RFC 2348) and tsize (RFC 2349) are negotiated by the library;
//     blksize is clamped to the interface MTU so that a block never fragments. tsize is
//     answered from the file's size. windowsize (RFC 7440) is not supported by
//     pin/tftp v3.2.0: it ignores the option, so clients fall back to one block per
//     ACK, which every PXE ROM handles. The library's non-standard "anticipate" mode
//     (sending several blocks before an ACK without negotiating it) is left off, since
//     firmware does not expect it.
//   - Every transfer ends with one log line, rackboot_tftp_transfers_total{file,outcome},
//     rackboot_tftp_bytes_total, a duration observation and, when the client's address
//     belongs to a host, a tftp.read event on that host's timeline. The file label is
//     the served name, or "unknown" for names that were refused or not found, so a
//     client cannot grow the metric without bound. Packets that are not a valid
//     request are dropped and counted in rackboot_tftp_dropped_packets_total.
//   - Limits: at most MaxTransfers transfers at once, and MaxTransfersPerSource from
//     one client address. A request beyond either gets one TFTP error packet ("server
//     busy", no bigger than the request, so a spoofed source gains nothing), writes no
//     timeline event, and is counted in rackboot_tftp_limited_total{limit}. Without
//     them, 30,000 read requests from one socket held 19,873 file descriptors, and each
//     request made the server resend a data block to a possibly spoofed source for
//     Timeout × Retries (≈180× amplification). A PXE client runs one transfer at a
//     time (UEFI two, briefly: the tsize probe it aborts, then the file).
//   - Shutdown (ctx cancelled) stops accepting requests and waits for transfers in
//     flight; one whose client went silent ends after Timeout × Retries.
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
	"strconv"
	"strings"
	"sync"
	"time"

	tftplib "github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/rackboot/rackboot/internal/inventory"
)

// Store is the part of the inventory the TFTP server needs to put transfers on a
// host's timeline.
type Store interface {
	// HostByIP finds the host holding ip (reservation or lease), or inventory.ErrNotFound.
	HostByIP(ctx context.Context, ip string) (inventory.Host, error)
	AppendEvent(ctx context.Context, hostID string, e inventory.Event) (inventory.Event, error)
}

// EventRead is the timeline event type of a TFTP read request, whatever its outcome.
const EventRead = "tftp.read"

// Outcomes, the outcome label of rackboot_tftp_transfers_total.
const (
	OutcomeOK       = "ok"        // the whole file was sent and acknowledged
	OutcomeNotFound = "not_found" // a valid name that the FS does not have
	OutcomeRefused  = "refused"   // a name CleanPath refuses, or a directory
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
	Timeout time.Duration `yaml:"timeout" doc:"wait for each ACK before a block is sent again"`
	// Retries is how many times a block is sent before the transfer fails; 0 means
	// DefaultRetries.
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
	// onShutdown, when set by a test, runs when shutdown begins.
	onShutdown func()
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

// Listen binds a UDP socket for Serve and asks the kernel, at once, for each packet's
// destination address and interface (IP_PKTINFO). pin/tftp needs those to answer from
// the address the client used and to cap blksize at the interface MTU; it turns them on
// itself, but only once Serve is running, and a request that arrived before then would
// be held to 512-byte blocks.
func Listen(network, addr string) (net.PacketConn, error) {
	conn, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, fmt.Errorf("tftp: listen on %s: %w (is another TFTP server, such as tftpd-hpa or dnsmasq, using the port? stop it or choose another with --tftp-port)", addr, err)
	}
	enablePacketInfo(conn)
	return conn, nil
}

// enablePacketInfo turns on IP_PKTINFO (or its IPv6 twin). Failure is not fatal: the
// library then answers from the default address with 512-byte blocks at most.
func enablePacketInfo(conn net.PacketConn) {
	uc, ok := conn.(*net.UDPConn)
	if !ok {
		return
	}
	if a, ok := uc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil && len(a.IP) == net.IPv6len {
		_ = ipv6.NewPacketConn(uc).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		return
	}
	_ = ipv4.NewPacketConn(uc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
}

// Serve serves TFTP on conn until ctx ends; it then stops taking requests, waits for
// transfers in flight and closes conn. It returns nil after a clean shutdown.
//
// Use Listen to make conn; a conn made otherwise gets IP_PKTINFO only from here on.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	enablePacketInfo(conn)
	srv := tftplib.NewServer(s.readHandler(ctx), s.writeHandler(ctx))
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(s.cfg.Retries)
	srv.SetHook(hook{s})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(conn) }()
	select {
	case err := <-errc:
		_ = conn.Close()
		if err != nil {
			return fmt.Errorf("tftp: serve on %s: %w", conn.LocalAddr(), err)
		}
		return nil
	case <-ctx.Done():
	}
	if s.onShutdown != nil {
		s.onShutdown()
	}
	// Shutdown closes conn (if the library got as far as recording it) and waits for
	// the transfers in flight; closing conn here as well wakes a Serve that had not.
	srv.Shutdown()
	_ = conn.Close()
	<-errc
	s.log.Info("TFTP server stopped")
	return nil
}

// transfer is what one request leaves behind in the log, the metrics and the timeline.
type transfer struct {
	file    string // as requested
	served  string // the cleaned name, if it was opened
	remote  net.UDPAddr
	outcome string
	bytes   int64
	size    int64
	start   time.Time
	err     error
}

func (s *Server) readHandler(ctx context.Context) func(string, io.ReaderFrom) error {
	return func(filename string, rf io.ReaderFrom) error {
		t := transfer{file: filename, start: time.Now(), size: -1}
		ot, _ := rf.(tftplib.OutgoingTransfer)
		if ot != nil {
			t.remote = ot.RemoteAddr()
		}
		src, _ := netip.AddrFromSlice(t.remote.IP)
		release, limit := s.slots.acquire(src.Unmap())
		if limit != "" {
			// No log line at info, no event: a flood must not cost more than a counter.
			s.limited.WithLabelValues(limit).Inc()
			s.log.Debug("TFTP: request refused, too many transfers", "ip", src.Unmap().String(), "limit", limit)
			return errors.New("server busy: try again later")
		}
		defer release()
		err := s.send(&t, ot, rf)
		t.err = err
		s.finish(ctx, t)
		return err
	}
}

// send opens the file and streams it; the error it returns is what the client reads in
// the error packet, so it names the problem without revealing anything on the server.
func (s *Server) send(t *transfer, ot tftplib.OutgoingTransfer, rf io.ReaderFrom) error {
	name, err := CleanPath(t.file)
	if err != nil {
		t.outcome = OutcomeRefused
		return err
	}
	f, err := s.cfg.FS.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			t.outcome = OutcomeNotFound
			return fmt.Errorf("file not found: %s", name)
		}
		t.outcome = OutcomeError
		s.log.Error("TFTP: cannot open file", "file", name, "err", err)
		return fmt.Errorf("cannot open %s", name)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.outcome = OutcomeError
		return fmt.Errorf("cannot open %s", name)
	}
	if st.IsDir() {
		t.outcome = OutcomeRefused
		return fmt.Errorf("%s is a directory", name)
	}
	t.served, t.size = name, st.Size()
	if ot != nil {
		// tsize from the size we know, whether or not the file can seek.
		ot.SetSize(st.Size())
	}
	n, err := rf.ReadFrom(f)
	t.bytes = n
	if err != nil {
		t.outcome = OutcomeFailed
		if clientAborted(err) {
			t.outcome = OutcomeAborted
		}
		return err
	}
	t.outcome = OutcomeOK
	return nil
}

func (s *Server) writeHandler(ctx context.Context) func(string, io.WriterTo) error {
	return func(filename string, wt io.WriterTo) error {
		t := transfer{file: filename, start: time.Now(), size: -1, outcome: OutcomeWriteRefused}
		if it, ok := wt.(tftplib.IncomingTransfer); ok {
			t.remote = it.RemoteAddr()
		}
		t.err = errors.New("rackboot's TFTP server is read-only: write requests are refused")
		s.finish(ctx, t)
		return t.err
	}
}

// clientAborted recognises pin/tftp's report of an error packet with code 8 from the
// client; the library exposes it only as text.
func clientAborted(err error) bool { return strings.Contains(err.Error(), "code=8,") }

// finish logs, counts and records one request.
func (s *Server) finish(ctx context.Context, t transfer) {
	d := time.Since(t.start)
	label := t.served
	if label == "" {
		label = unknownFile
	}
	s.transfers.WithLabelValues(label, t.outcome).Inc()
	s.bytes.Add(float64(t.bytes))
	if t.outcome != OutcomeWriteRefused {
		s.duration.Observe(d.Seconds())
	}
	// The requested name is the client's: bound it before it reaches logs and the
	// timeline (CleanPath already refused anything this long).
	if len(t.file) > MaxPathLen {
		t.file = strings.ToValidUTF8(t.file[:MaxPathLen], "") + "..."
	}
	ip := ""
	if a, ok := netip.AddrFromSlice(t.remote.IP); ok {
		ip = a.Unmap().String()
	}
	attrs := []any{"file", t.file, "ip", ip, "port", t.remote.Port, "outcome", t.outcome, "bytes", t.bytes, "duration", d}
	if t.err != nil {
		attrs = append(attrs, "err", t.err.Error())
	}
	var hostID string
	if s.cfg.Store != nil && ip != "" {
		// The store may be slow or shutting down; the transfer is over either way.
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eventTimeout)
		defer cancel()
		host, err := s.cfg.Store.HostByIP(ectx, ip)
		switch {
		case err == nil:
			hostID = host.ID
		case !errors.Is(err, inventory.ErrNotFound):
			s.log.Warn("TFTP: inventory lookup by IP failed", "ip", ip, "err", err)
		}
		if hostID != "" && t.outcome != OutcomeWriteRefused {
			fields := map[string]string{
				"file": t.file, "ip": ip, "outcome": t.outcome, "bytes": strconv.FormatInt(t.bytes, 10),
			}
			if t.size >= 0 {
				fields["size"] = strconv.FormatInt(t.size, 10)
			}
			msg := fmt.Sprintf("TFTP read of %s: %s", t.file, t.outcome)
			if t.err != nil {
				fields["error"] = t.err.Error()
			}
			if _, err := s.cfg.Store.AppendEvent(ectx, hostID, inventory.Event{Type: EventRead, Message: msg, Fields: fields}); err != nil {
				s.log.Warn("TFTP: cannot record event", "hostID", hostID, "err", err)
			}
		}
	}
	if hostID != "" {
		attrs = append(attrs, "hostID", hostID)
	}
	switch t.outcome {
	case OutcomeOK:
		s.log.Info("TFTP transfer", attrs...)
	case OutcomeError:
		s.log.Error("TFTP transfer", attrs...)
	case OutcomeAborted:
		s.log.Debug("TFTP transfer", attrs...)
	default:
		s.log.Warn("TFTP transfer", attrs...)
	}
}

// Limit labels of rackboot_tftp_limited_total.
const (
	limitGlobal    = "global"
	limitPerSource = "per_source"
)

// slots counts transfers in flight, in all and per source address. The per-source map
// holds only addresses with a transfer running, so it is bounded by max.
type slots struct {
	mu        sync.Mutex
	max, per  int
	total     int
	perSource map[netip.Addr]int
}

func newSlots(max, per int) *slots {
	return &slots{max: max, per: per, perSource: map[netip.Addr]int{}}
}

// acquire takes a slot for src, or says which limit refused it.
func (l *slots) acquire(src netip.Addr) (release func(), limit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perSource[src] >= l.per {
		return nil, limitPerSource
	}
	if l.total >= l.max {
		return nil, limitGlobal
	}
	l.total++
	l.perSource[src]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.perSource[src]--; l.perSource[src] <= 0 {
				delete(l.perSource, src)
			}
		})
	}, ""
}

// hook counts what the library drops before any handler runs: packets on the server
// port that are not a read or write request, or cannot be parsed. Those come with no
// remote address, unlike the failures of transfers, which finish already counts.
type hook struct{ s *Server }

func (h hook) OnSuccess(tftplib.TransferStats) {}

func (h hook) OnFailure(st tftplib.TransferStats, err error) {
	if st.RemoteAddr != nil {
		return
	}
	h.s.dropped.Inc()
	h.s.log.Debug("TFTP: dropped a packet that is not a valid request", "err", err)
}
