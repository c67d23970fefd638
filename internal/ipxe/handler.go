package ipxe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/internal/hotfile"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ratelimit"
	"github.com/rackboot/rackboot/internal/trust"
)

// Store is the part of the inventory the HTTP boot routes need.
type Store interface {
	HostByMAC(ctx context.Context, mac string) (inventory.Host, error)
	// HostByIP finds the host holding ip (reservation or unexpired lease), or
	// inventory.ErrNotFound.
	HostByIP(ctx context.Context, ip string) (inventory.Host, error)
	// AppendEvent writes a timeline event at once (scripts).
	AppendEvent(ctx context.Context, hostID string, e inventory.Event) (inventory.Event, error)
	// RecordEvents queues timeline events for the inventory's next group commit and
	// returns at once (binaries and assets).
	RecordEvents(ctx context.Context, evs ...inventory.HostEvent) error
}

// AgentTokens issues a fresh agent token for one boot of host through mac, bound to
// addr, and returns the kernel arguments carrying it; *provision.Provisioner implements
// it.
type AgentTokens interface {
	AgentArgs(ctx context.Context, host inventory.Host, mac string, addr netip.Addr) (string, error)
}

// Gate decides who is asking (*trust.Gate).
type Gate interface {
	// ScriptBinding returns the address an agent token for this fetch is bound to, or
	// why the fetch gets none.
	ScriptBinding(host *inventory.Host, mac, key string, src netip.Addr) (netip.Addr, error)
	// WhoForTimeline is the ID of the host at src, for the timeline (an answer up to
	// a second old).
	WhoForTimeline(ctx context.Context, src netip.Addr) (string, bool)
	// Reject counts a refusal and records it on the host's timeline within src's budget.
	Reject(hostID, route, eventType string, src netip.Addr, err error, fields map[string]string)
}

// Event types this package records (see the inventory's event contract).
const (
	EventScript         = "http.script"
	EventScriptRejected = "http.script.rejected"
	EventBinary         = "http.binary"
	EventAsset          = "http.asset"
)

// Route labels of rackboot_http_requests_total for this package's routes.
const (
	RouteScript = "script"
	RouteBinary = "binary"
	RouteAsset  = "asset"
)

// scriptEventRate and scriptEventBurst bound the script events one source address
// writes without a key (a host fetches its script a few times per boot).
const (
	scriptEventRate  = 1.0
	scriptEventBurst = 20
)

// Defaults for HandlerConfig's timeouts.
const (
	DefaultScriptTimeout = 30 * time.Second
	DefaultStallTimeout  = 60 * time.Second
	// eventTimeout bounds a timeline write, which outlives the request on purpose: a
	// client that hangs up must still leave its trace.
	eventTimeout = 5 * time.Second
)

// HandlerConfig configures the HTTP boot routes.
type HandlerConfig struct {
	// Store finds hosts and records events. Required.
	Store Store
	// Binaries are the iPXE binaries served under /ipxe/bin/ (Binaries or
	// OpenBinaries). Required.
	Binaries fs.FS
	// Assets is DATA_DIR/assets, opened through os.Root (root.FS()), so that neither
	// ".." nor a symlink can leave it. Nil serves no assets (404).
	Assets fs.FS
	// ServerURL is the base URL put in scripts, e.g. "http://10.0.0.1:8080". Empty
	// means the address the request came in on (its Host header, else the local
	// address), which is right for a host on the provisioning network.
	ServerURL string
	// Discovery is the unknown-hosts policy: true for "discover", false for "ignore".
	Discovery bool
	// BootEnv is the agent's boot environment; nil until provisioning provides one.
	BootEnv *BootEnv
	// BootEnvs, when set, is asked at each script request for the agent's boot
	// environment and replaces BootEnv (provision.BootEnvs.Current, which follows
	// `rackboot bootenv import` while serve runs); nil from it means none.
	BootEnvs func() *BootEnv
	// AgentTokens issues the per-boot agent token put on the agent's kernel line
	// (the provisioner); nil boots the agent without one.
	AgentTokens AgentTokens
	// Gate decides whether a script fetch may boot the agent and whose fetches the
	// binaries and assets are. Required with AgentTokens.
	Gate Gate
	// Logger gets a line per request; nil discards.
	Logger *slog.Logger
	// Registerer gets the HTTP metrics unless Metrics is set; nil keeps them private.
	Registerer prometheus.Registerer
	// Metrics, when set, is shared with other routes of the same server.
	Metrics *HTTPMetrics
	// ScriptTimeout is the write deadline for a script or phone-home answer.
	ScriptTimeout time.Duration `yaml:"scriptTimeout" doc:"write deadline of one iPXE script answer"`
	// StallTimeout is how long a binary or asset transfer may make no progress before
	// the connection is dropped; the whole transfer has no deadline.
	StallTimeout time.Duration `yaml:"stallTimeout" doc:"an iPXE binary or asset transfer making no progress this long is dropped (the whole transfer has no deadline)"`
}

// DefaultHandlerConfig is the settings part of HandlerConfig with every default
// written out.
func DefaultHandlerConfig() HandlerConfig {
	return HandlerConfig{ScriptTimeout: DefaultScriptTimeout, StallTimeout: DefaultStallTimeout}
}

// Validate checks the operator's settings (zeros mean the defaults). Each message
// starts with the setting's name in the configuration file.
func (c HandlerConfig) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"scriptTimeout", c.ScriptTimeout}, {"stallTimeout", c.StallTimeout}} {
		if d.v < 0 || (d.v > 0 && d.v < time.Second) {
			errs = append(errs, fmt.Errorf("%s: %s: give at least 1s", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// Handler serves the iPXE boot routes; see the package documentation.
type Handler struct {
	cfg     HandlerConfig
	log     *slog.Logger
	metrics *HTTPMetrics
	mux     *http.ServeMux
	now     func() time.Time

	script, binary, binaryNested, asset, notFound http.Handler

	// binCache and assetCache keep the files served in memory (package hotfile).
	binCache, assetCache *hotfile.Cache

	// scriptEvents bounds the timeline writes of unauthenticated script fetches per
	// source address: anyone may fetch any host's (secret-free) script, and must not
	// push that host's history out of its timeline.
	scriptEvents *ratelimit.Limiter
	suppressed   prometheus.Counter
}

// NewHandler checks cfg and builds the handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("ipxe: HandlerConfig.Store is nil: pass the inventory store")
	}
	if cfg.Binaries == nil {
		return nil, errors.New("ipxe: HandlerConfig.Binaries is nil: pass ipxe.Binaries() or ipxe.OpenBinaries(DATA_DIR/ipxe)")
	}
	if cfg.AgentTokens != nil && cfg.Gate == nil {
		return nil, errors.New("ipxe: HandlerConfig.Gate is nil: agent tokens go only where the gate says (pass the trust.Gate)")
	}
	if cfg.ServerURL != "" {
		if _, err := checkServerURL(cfg.ServerURL); err != nil {
			return nil, fmt.Errorf("ipxe: %w", err)
		}
	}
	if cfg.ScriptTimeout <= 0 {
		cfg.ScriptTimeout = DefaultScriptTimeout
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	scriptEvents, err := ratelimit.New(ratelimit.Config{PerSecond: scriptEventRate, Burst: scriptEventBurst})
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics, now: time.Now, scriptEvents: scriptEvents,
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rackboot_http_script_events_suppressed_total",
			Help: "Script fetches not written to a host's timeline because their source address exceeded its event rate.",
		}),
	}
	if cfg.Registerer != nil {
		// Handlers on one registry share the counter, as they share the HTTP metrics.
		var are prometheus.AlreadyRegisteredError
		switch err := cfg.Registerer.Register(h.suppressed); {
		case errors.As(err, &are):
			h.suppressed = are.ExistingCollector.(prometheus.Counter)
		case err != nil:
			return nil, fmt.Errorf("ipxe: register metrics: %w", err)
		}
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	// The embedded binaries never change; an overlay directory and the assets are
	// checked once a second, so a file the operator replaces is served at once.
	immutable := false
	switch b := cfg.Binaries.(type) {
	case prefixFS:
		immutable = true
	case *BinaryFS:
		immutable = !b.Overlay()
	}
	if h.binCache, err = hotfile.New(hotfile.Config{FS: cfg.Binaries, Immutable: immutable, Now: h.clock}); err != nil {
		return nil, err
	}
	if cfg.Assets != nil {
		if h.assetCache, err = hotfile.New(hotfile.Config{FS: cfg.Assets, Now: h.clock}); err != nil {
			return nil, err
		}
	}
	if h.metrics == nil {
		m, err := NewHTTPMetrics(cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("ipxe: register HTTP metrics: %w", err)
		}
		h.metrics = m
	}
	h.script = h.metrics.Wrap(RouteScript, http.HandlerFunc(h.serveScript))
	h.binary = h.metrics.Wrap(RouteBinary, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.serveFile(w, r, RouteBinary, r.PathValue("file"))
	}))
	h.binaryNested = h.metrics.Wrap(RouteBinary, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.serveFile(w, r, RouteBinary, r.PathValue("dir")+"/"+r.PathValue("rest"))
	}))
	h.asset = h.metrics.Wrap(RouteAsset, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.serveFile(w, r, RouteAsset, r.PathValue("path"))
	}))
	h.notFound = h.metrics.Wrap(RouteScript, http.NotFoundHandler())
	h.mux = http.NewServeMux()
	h.Register(h.mux)
	return h, nil
}

// clock is h.now, which tests may replace after NewHandler.
func (h *Handler) clock() time.Time { return h.now() }

// Register adds the routes to mux (rackboot serve's mux, beside /api, /metrics...).
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("GET /ipxe/boot.ipxe", h.script)
	mux.HandleFunc("GET /ipxe/{seg}/{file}", h.dispatchIPXE)
	mux.Handle("GET /ipxe/bin/{dir}/{rest...}", h.binaryNested)
	mux.Handle("GET /assets/{path...}", h.asset)
}

// ServeHTTP serves the routes Register adds, and 404 for anything else.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// dispatchIPXE splits /ipxe/{seg}/{file} into /ipxe/bin/NAME and /ipxe/MAC/boot.ipxe,
// which ServeMux cannot tell apart by pattern alone (see the package documentation).
func (h *Handler) dispatchIPXE(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.PathValue("seg") == "bin":
		h.binary.ServeHTTP(w, r)
	case r.PathValue("file") == "boot.ipxe":
		h.script.ServeHTTP(w, r)
	default:
		h.notFound.ServeHTTP(w, r)
	}
}

func (h *Handler) serveScript(w http.ResponseWriter, r *http.Request) {
	done := h.fixedDeadline(w)
	defer done()
	src, _ := sourceIP(r)
	ctx := r.Context()
	var mac, hostID string
	// log builds its attributes only for a line that is written: a storm of script
	// fetches at the default level costs no allocation for the levels turned off.
	log := func(level slog.Level, msg string, args ...any) {
		if !h.log.Enabled(ctx, level) {
			return
		}
		attrs := append(make([]any, 0, 8+len(args)), "route", RouteScript, "ip", src.String())
		if mac != "" {
			attrs = append(attrs, "mac", mac)
		}
		if hostID != "" {
			attrs = append(attrs, "hostID", hostID)
		}
		h.log.Log(ctx, level, msg, append(attrs, args...)...)
	}
	mac, key, err := ParseScriptRequest(r.URL.RawQuery, r.PathValue("seg"))
	if err != nil {
		mac = ""
		log(slog.LevelDebug, "invalid script request", "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var host *inventory.Host
	switch hst, err := h.cfg.Store.HostByMAC(ctx, mac); {
	case err == nil:
		host = &hst
		hostID = hst.ID
	case errors.Is(err, inventory.ErrNotFound):
	default:
		log(slog.LevelError, "inventory lookup failed", "err", err)
		http.Error(w, "rackboot cannot read its inventory; see its log", http.StatusInternalServerError)
		return
	}
	bootEnv := h.cfg.BootEnv
	if h.cfg.BootEnvs != nil {
		bootEnv = h.cfg.BootEnvs()
	}
	in := ScriptInput{
		Host: host, MAC: mac, Discovery: h.cfg.Discovery, ServerURL: h.serverURL(r), BootEnv: bootEnv,
	}
	s, err := RenderScript(in)
	var bound netip.Addr
	if err == nil && s.Action == ActionAgent && host != nil && h.cfg.AgentTokens != nil {
		// Only a script that boots the agent costs a token (one write per boot), and
		// only the host itself gets one: anyone else changes nothing.
		var refused error
		if bound, refused = h.cfg.Gate.ScriptBinding(host, mac, key, src); refused != nil {
			h.cfg.Gate.Reject(host.ID, RouteScript, EventScriptRejected, src, refused, map[string]string{"mac": mac})
			http.Error(w, "rackboot: no agent for this request: "+refused.Error(), http.StatusForbidden)
			return
		}
		if in.AgentArgs, err = h.cfg.AgentTokens.AgentArgs(ctx, *host, mac, bound); err == nil {
			s, err = RenderScript(in)
		} else {
			err = fmt.Errorf("issuing the agent's token: %w", err)
		}
	}
	if errors.Is(err, ErrNoScript) {
		log(slog.LevelInfo, "no iPXE script: unknown MAC and unknown hosts are ignored")
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if err != nil {
		log(slog.LevelError, "cannot render iPXE script", "err", err)
		if host != nil {
			h.appendEvent(host.ID, inventory.Event{Type: EventScript, Message: "iPXE script not served: " + err.Error(),
				Fields: map[string]string{"mac": mac, "ip": src.String(), "code": "500"}})
		}
		http.Error(w, "rackboot cannot render this host's iPXE script: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(s.Body)))
	w.Header().Set("Cache-Control", "no-store")
	if _, err := w.Write(s.Body); err != nil {
		log(slog.LevelWarn, "writing iPXE script failed", "err", err)
	}
	log(slog.LevelInfo, "served iPXE script", "action", string(s.Action), "reason", s.Reason)
	// A fetch that booted the agent is the host's own (the gate said so); any other is
	// recorded within its source's budget.
	if host != nil && !bound.IsValid() && !h.scriptEvents.Allow(src) {
		h.suppressed.Inc()
		return
	}
	if host != nil {
		h.appendEvent(host.ID, inventory.Event{Type: EventScript, Message: "iPXE script: " + s.Reason,
			Fields: map[string]string{
				"mac": mac, "ip": src.String(), "action": string(s.Action), "state": string(host.State),
				"keyed": strconv.FormatBool(key != ""), "bound": trust.FormatAddr(bound),
			}})
	}
}

// serveFile serves name from the binaries or the assets, with Range, and records the
// transfer on the timeline of the host the source address belongs to. Files are served
// from memory (package hotfile) unless they are too large to keep.
func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, route, name string) {
	rc, done := h.stallDeadline(w)
	defer done()
	src, _ := sourceIP(r)
	fsys, cache, eventType := h.cfg.Binaries, h.binCache, EventBinary
	if route == RouteAsset {
		fsys, cache, eventType = h.cfg.Assets, h.assetCache, EventAsset
		if fsys == nil {
			http.Error(w, "this rackboot serves no assets: put kernels and initrds in DATA_DIR/assets", http.StatusNotFound)
			return
		}
	}
	if !validFileName(name) {
		h.logFile(r, slog.LevelInfo, "refused file request: invalid path", route, src, name)
		http.Error(w, "invalid path: no \"..\", \".\", empty segments, backslashes or control characters", http.StatusBadRequest)
		return
	}
	if route == RouteBinary {
		w.Header()["Content-Type"] = octetStream
	}
	sw := &statusWriter{ResponseWriter: &progressWriter{ResponseWriter: w, rc: rc, stall: h.cfg.StallTimeout, now: h.now}}
	start := h.now()
	size, err := cache.Serve(sw, r, name)
	switch {
	case errors.Is(err, hotfile.ErrNoSeek):
		h.logFile(r, slog.LevelError, "file cannot seek; cannot serve Range", route, src, name)
		http.Error(w, "rackboot cannot serve this file", http.StatusInternalServerError)
		return
	case err != nil:
		code := openErrorCode(err)
		h.logFile(r, slog.LevelInfo, "file request failed", route, src, name, "code", code, "err", err)
		http.Error(w, http.StatusText(code), code)
		return
	}
	h.logFile(r, slog.LevelInfo, "served file", route, src, name, "method", r.Method, "code", sw.Status(), "bytes", sw.bytes, "duration", h.now().Sub(start))
	// A HEAD (UEFI HTTP boot sends one to learn the size) fetches nothing: only GETs go
	// on the timeline.
	if r.Method != http.MethodGet {
		return
	}
	if hostID, ok := h.hostByIP(r.Context(), src); ok {
		fields := map[string]string{
			"file": name, "ip": src.String(), "bytes": strconv.FormatInt(sw.bytes, 10),
			"size": strconv.FormatInt(size, 10), "code": strconv.Itoa(sw.Status()),
		}
		if rg := r.Header.Get("Range"); rg != "" {
			fields["range"] = rg
		}
		h.event(hostID, inventory.Event{Type: eventType, Message: "fetched " + name + " over HTTP", Fields: fields})
	}
}

// octetStream is the Content-Type of binaries, shared by every response (never
// appended to: net/http only replaces header values).
var octetStream = []string{"application/octet-stream"}

// logFile logs a file request at level; the attributes are built only when the line
// is written, so a boot storm at the default level costs no allocation for it.
func (h *Handler) logFile(r *http.Request, level slog.Level, msg, route string, src netip.Addr, name string, args ...any) {
	if !h.log.Enabled(r.Context(), level) {
		return
	}
	h.log.Log(r.Context(), level, msg, append([]any{"route", route, "ip", src.String(), "file", name}, args...)...)
}

// hostByIP is the ID of the host at src, for a fetch's timeline event.
func (h *Handler) hostByIP(ctx context.Context, src netip.Addr) (string, bool) {
	if h.cfg.Gate == nil || !src.IsValid() {
		return "", false
	}
	return h.cfg.Gate.WhoForTimeline(ctx, src)
}

// appendEvent writes e to the host's timeline at once. Scripts use it: a script that
// boots the agent already costs a write (its token, with the agent.boot event), the
// others are bounded per source (scriptEvents), and the agent's own events, written
// directly, follow at once in tests and must not overtake it on the timeline. A failure
// is logged, never shown to the client, whose boot must not depend on bookkeeping.
func (h *Handler) appendEvent(hostID string, e inventory.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
	defer cancel()
	if _, err := h.cfg.Store.AppendEvent(ctx, hostID, e); err != nil {
		h.log.Warn("cannot record event", "hostID", hostID, "type", e.Type, "err", err)
	}
}

// event queues e for the host's timeline with the inventory's next group commit
// (RecordEvents), committed within about 50 ms in the order queued, behind the DHCP and
// TFTP events of the same boot: a boot storm's binary and asset fetches cost no
// transaction or fsync each. A failure is logged, never shown to the client.
func (h *Handler) event(hostID string, e inventory.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
	defer cancel()
	if err := h.cfg.Store.RecordEvents(ctx, inventory.HostEvent{HostID: hostID, Event: e}); err != nil {
		h.log.Warn("cannot record event", "hostID", hostID, "type", e.Type, "err", err)
	}
}

func (h *Handler) serverURL(r *http.Request) string {
	if h.cfg.ServerURL != "" {
		return h.cfg.ServerURL
	}
	if r.Host != "" {
		return "http://" + r.Host
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return "http://" + a.String()
	}
	return ""
}

// fixedDeadline gives a small response ScriptTimeout to be written. The returned func
// flushes under that deadline and then clears it, because net/http keeps a deadline set
// by a handler for the next request on the same connection when the server has no
// WriteTimeout of its own.
func (h *Handler) fixedDeadline(w http.ResponseWriter) func() {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(h.now().Add(h.cfg.ScriptTimeout))
	return func() {
		_ = rc.Flush()
		_ = rc.SetWriteDeadline(time.Time{})
	}
}

// stallDeadline is fixedDeadline for transfers: progressWriter keeps pushing the
// deadline StallTimeout ahead of the last write.
func (h *Handler) stallDeadline(w http.ResponseWriter) (*http.ResponseController, func()) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(h.now().Add(h.cfg.StallTimeout))
	return rc, func() {
		_ = rc.SetWriteDeadline(h.now().Add(h.cfg.StallTimeout))
		_ = rc.Flush()
		_ = rc.SetWriteDeadline(time.Time{})
	}
}

// progressWriter extends the write deadline before every write, so a transfer is cut
// only when it stalls, however long it takes in total.
type progressWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
	now   func() time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	_ = p.rc.SetWriteDeadline(p.now().Add(p.stall))
	return p.ResponseWriter.Write(b)
}

func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// ReadFrom extends the deadline and passes the copy on (sendfile from a memfd, package
// hotfile), which hands over at most hotfile.WriteChunk per call.
func (p *progressWriter) ReadFrom(src io.Reader) (int64, error) {
	_ = p.rc.SetWriteDeadline(p.now().Add(p.stall))
	if rf, ok := p.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{p.ResponseWriter}, src)
}

// sourceIP is the TCP peer's address, IPv4-mapped addresses unmapped.
func sourceIP(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// validFileName accepts the relative, clean, slash-separated names fs.FS uses, without
// backslashes or control characters (which os.Root would take literally on Linux and a
// Windows build would not).
func validFileName(name string) bool {
	if name == "" || name == "." || !fs.ValidPath(name) || len(name) > 1024 {
		return false
	}
	for _, r := range name {
		if r < ' ' || r == 0x7f || r == '\\' {
			return false
		}
	}
	return true
}

// openErrorCode maps an fs.FS open error to an HTTP status. os.Root reports a symlink
// that leads outside it with an unexported error rather than a sentinel; what sets it
// apart from a real I/O error is that it is not an errno, so such refusals become 403.
func openErrorCode(err error) int {
	var errno syscall.Errno
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return http.StatusNotFound
	case errors.Is(err, fs.ErrPermission):
		return http.StatusForbidden
	case errors.Is(err, fs.ErrInvalid):
		return http.StatusBadRequest
	case errors.As(err, &errno):
		return http.StatusInternalServerError
	default:
		return http.StatusForbidden
	}
}
