package trust

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ratelimit"
)

// Mode is the DHCP mode, which decides how a host can receive its boot key.
type Mode string

const (
	ModeServer Mode = "server"
	ModeProxy  Mode = "proxy"
	ModeOff    Mode = "off"
)

// Defaults for Config.
const (
	DefaultKeyTTL      = 10 * time.Minute
	DefaultMaxKeys     = 4096
	DefaultRejectRate  = 1.0 // rejected events per second per source address
	DefaultRejectBurst = 10
	keyBytes           = 18
	maxKeysPerMAC      = 8
	eventTimeout       = 5 * time.Second
)

// Store is what the gate reads and writes in the inventory.
type Store interface {
	// HostByIP finds the host holding ip: its reservation, or an unexpired lease of ours.
	HostByIP(ctx context.Context, ip string) (inventory.Host, error)
	ListHosts(ctx context.Context) ([]inventory.Host, error)
	AppendEvent(ctx context.Context, hostID string, e inventory.Event) (inventory.Event, error)
}

var _ Store = (*inventory.BoltStore)(nil)

// Config configures a Gate. Mode and Store are required.
type Config struct {
	Mode  Mode
	Store Store
	// KeyTTL is how long a boot key from DHCP may be used (default 10m).
	KeyTTL time.Duration `yaml:"keyTTL" doc:"how long a boot key handed out with a DHCP answer may be used to fetch the iPXE script"`
	// MaxKeys bounds the keys held in memory (default 4096); the oldest go first.
	MaxKeys int `yaml:"maxKeys" doc:"boot keys held in memory; the oldest go first"`
	// RejectRate and RejectBurst bound the rejected events one source address may write
	// (defaults 1/s, burst 10); refusals beyond them are only counted.
	RejectRate  float64 `yaml:"rejectRate" doc:"refusal events one source address may write per second; beyond, refusals are only counted"`
	RejectBurst int     `yaml:"rejectBurst" doc:"refusal events one source address may write at once"`
	Logger      *slog.Logger
	// Registerer gets rackboot_trust_* metrics; nil keeps them private.
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// DefaultConfig is the settings part of Config with every default written out.
func DefaultConfig() Config {
	return Config{KeyTTL: DefaultKeyTTL, MaxKeys: DefaultMaxKeys, RejectRate: DefaultRejectRate, RejectBurst: DefaultRejectBurst}
}

// Validate checks the operator's settings (zeros mean the defaults). Each message
// starts with the setting's name in the configuration file (keyTTL, ...), so the
// caller can prefix its own path ("trust.").
func (c Config) Validate() error {
	var errs []error
	if c.KeyTTL < 0 || (c.KeyTTL > 0 && c.KeyTTL < 10*time.Second) || c.KeyTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("keyTTL: %s: give 10s-24h (default %s; a key is used once, seconds after the DHCP answer)", c.KeyTTL, DefaultKeyTTL))
	}
	if c.MaxKeys < 0 || c.MaxKeys > 1<<20 {
		errs = append(errs, fmt.Errorf("maxKeys: %d: give 1-1048576 (default %d)", c.MaxKeys, DefaultMaxKeys))
	}
	if c.RejectRate < 0 {
		errs = append(errs, fmt.Errorf("rejectRate: %g: give a positive rate (default %g)", c.RejectRate, DefaultRejectRate))
	}
	if c.RejectBurst < 0 {
		errs = append(errs, fmt.Errorf("rejectBurst: %d: give a positive number (default %d)", c.RejectBurst, DefaultRejectBurst))
	}
	return errors.Join(errs...)
}

// Gate decides who is asking on every boot route. It is safe for concurrent use.
type Gate struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	keys  map[string][]key // by MAC
	order []keyRef         // issue order, for eviction
	nkeys int

	events *ratelimit.Limiter

	rejected   *prometheus.CounterVec
	suppressed prometheus.Counter
	issued     prometheus.Counter

	// seen remembers WhoForTimeline's answers (package doc of WhoForTimeline).
	seenMu sync.Mutex
	seen   map[netip.Addr]seenHost
}

// seenHost is a remembered answer of Who: the host's ID, "" for nobody's address.
type seenHost struct {
	id string
	at time.Time
}

// Bounds of WhoForTimeline's memory.
const (
	seenFor = time.Second
	seenMax = 1 << 16
)

type key struct {
	secret  string
	addr    netip.Addr
	expires time.Time
}

type keyRef struct {
	mac    string
	secret string
}

// New checks cfg and builds a Gate.
func New(cfg Config) (*Gate, error) {
	switch cfg.Mode {
	case ModeServer, ModeProxy, ModeOff:
	default:
		return nil, fmt.Errorf("trust: mode %q is not server, proxy or off", cfg.Mode)
	}
	if cfg.Store == nil {
		return nil, errors.New("trust: Config.Store is nil: pass the inventory")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	if cfg.KeyTTL == 0 {
		cfg.KeyTTL = DefaultKeyTTL
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.RejectRate == 0 {
		cfg.RejectRate = DefaultRejectRate
	}
	if cfg.RejectBurst == 0 {
		cfg.RejectBurst = DefaultRejectBurst
	}
	g := &Gate{cfg: cfg, log: cfg.Logger, now: cfg.Now, keys: map[string][]key{}}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	events, err := ratelimit.New(ratelimit.Config{PerSecond: cfg.RejectRate, Burst: cfg.RejectBurst, Now: g.now})
	if err != nil {
		return nil, fmt.Errorf("trust: rejected events: %w", err)
	}
	g.events = events
	g.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rackboot_trust_rejected_total",
		Help: "Requests on boot routes refused because the asker is not the host it names (route, reason).",
	}, []string{"route", "reason"})
	g.suppressed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rackboot_trust_rejected_events_suppressed_total",
		Help: "Rejected requests not written to a host's timeline because their source exceeded its event rate.",
	})
	g.issued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rackboot_trust_boot_keys_issued_total",
		Help: "Boot keys handed out in DHCP replies.",
	})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{g.rejected, g.suppressed, g.issued} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("trust: register metrics: %w", err)
			}
		}
	}
	return g, nil
}

// Mode returns the DHCP mode the gate was configured for.
func (g *Gate) Mode() Mode { return g.cfg.Mode }

// IssueKey returns the boot key for a DHCP reply that carries mac's script URL to addr.
// The same MAC and address get the same key while it lives, so a retransmitted OFFER
// and its ACK agree. Callers must send the reply only to mac's hardware address and
// addr (see the package documentation); a key handed out otherwise is worth nothing.
func (g *Gate) IssueKey(mac string, addr netip.Addr) string {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	live := g.keys[mac][:0]
	for _, k := range g.keys[mac] {
		if now.Before(k.expires) {
			live = append(live, k)
		}
	}
	g.nkeys -= len(g.keys[mac]) - len(live)
	g.keys[mac] = live
	for i := range live {
		if live[i].addr == addr {
			live[i].expires = now.Add(g.cfg.KeyTTL)
			return live[i].secret
		}
	}
	b := make([]byte, keyBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24)
	s := base64.RawURLEncoding.EncodeToString(b)
	if len(live) >= maxKeysPerMAC {
		live = live[1:]
		g.nkeys--
	}
	g.keys[mac] = append(live, key{secret: s, addr: addr, expires: now.Add(g.cfg.KeyTTL)})
	g.order = append(g.order, keyRef{mac: mac, secret: s})
	g.nkeys++
	for g.nkeys > g.cfg.MaxKeys && len(g.order) > 0 {
		g.drop(g.order[0])
		g.order = g.order[1:]
	}
	if len(g.order) > 2*g.cfg.MaxKeys {
		g.compact()
	}
	g.issued.Inc()
	return s
}

// drop removes one key if it is still held. Callers hold g.mu.
func (g *Gate) drop(r keyRef) {
	ks := g.keys[r.mac]
	for i, k := range ks {
		if k.secret == r.secret {
			g.keys[r.mac] = append(ks[:i:i], ks[i+1:]...)
			g.nkeys--
			break
		}
	}
	if len(g.keys[r.mac]) == 0 {
		delete(g.keys, r.mac)
	}
}

// compact drops references to keys already gone. Callers hold g.mu.
func (g *Gate) compact() {
	held := map[keyRef]bool{}
	for mac, ks := range g.keys {
		for _, k := range ks {
			held[keyRef{mac, k.secret}] = true
		}
	}
	out := g.order[:0]
	for _, r := range g.order {
		if held[r] {
			out = append(out, r)
		}
	}
	g.order = out
}

// keyAddr returns the address a live key of mac is bound to.
func (g *Gate) keyAddr(mac, secret string) (netip.Addr, bool) {
	if secret == "" {
		return netip.Addr{}, false
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range g.keys[mac] {
		if subtle.ConstantTimeCompare([]byte(k.secret), []byte(secret)) == 1 && now.Before(k.expires) {
			return k.addr, true
		}
	}
	return netip.Addr{}, false
}

// Refusal is why a request was refused. Reason is a short, bounded label for metrics.
type Refusal struct {
	Reason string
	Msg    string
}

func (r *Refusal) Error() string { return r.Msg }

// Reasons of refusals (the reason label).
const (
	ReasonNoKey        = "no-key"
	ReasonBadKey       = "bad-key"
	ReasonWrongAddress = "wrong-address"
	ReasonNotReserved  = "not-reserved"
	ReasonNoBinding    = "no-binding"
)

func refuse(reason, format string, args ...any) error {
	return &Refusal{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// ReasonOf is the metrics label of err: a Refusal's reason, else "other".
func ReasonOf(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return "other"
}

// ScriptBinding decides whether a script fetch for host through mac, from src, carrying
// key (empty when none), may boot the agent: it returns the address the agent's token is
// bound to, or a *Refusal.
func (g *Gate) ScriptBinding(host *inventory.Host, mac, key string, src netip.Addr) (netip.Addr, error) {
	if !src.IsValid() {
		return netip.Addr{}, refuse(ReasonWrongAddress, "no source address")
	}
	reserved := host.Addr()
	if g.cfg.Mode == ModeOff {
		// The site's DHCP cannot carry our key: the reservation is the binding.
		if !reserved.IsValid() {
			return netip.Addr{}, refuse(ReasonNotReserved, "DHCP mode off: host %s has no reserved address, so no fetch can prove it is the host; reserve its address (rackboot host set --ip, and the same in the site DHCP)", host.ID)
		}
		if src != reserved {
			return netip.Addr{}, refuse(ReasonWrongAddress, "%s is not host %s's reserved address %s", src, host.ID, reserved)
		}
		return reserved, nil
	}
	if key == "" {
		return netip.Addr{}, refuse(ReasonNoKey, "no boot key: the script URL from rackboot's DHCP reply carries one (key=…); fetch it from the host itself")
	}
	bound, ok := g.keyAddr(mac, key)
	if !ok {
		return netip.Addr{}, refuse(ReasonBadKey, "unknown or expired boot key for %s: boot the host again so DHCP hands it a fresh one", mac)
	}
	if src != bound {
		return netip.Addr{}, refuse(ReasonWrongAddress, "%s is not the address this boot key was given to", src)
	}
	if reserved.IsValid() && bound != reserved {
		return netip.Addr{}, refuse(ReasonNotReserved, "host %s has reserved address %s, but booted with %s: fix the reservation or the DHCP server that gave it that address", host.ID, reserved, bound)
	}
	return bound, nil
}

// Bound checks that src is the address host's credentials are bound to: bound (the
// agent's or the installed system's, recorded when the credential was issued) and, when
// the host has one, its reserved address.
func (g *Gate) Bound(host *inventory.Host, bound string, src netip.Addr) error {
	if !src.IsValid() {
		return refuse(ReasonWrongAddress, "no source address")
	}
	if r := host.Addr(); r.IsValid() && src != r {
		return refuse(ReasonNotReserved, "%s is not host %s's reserved address", src, host.ID)
	}
	b, err := netip.ParseAddr(bound)
	if err != nil {
		if r := host.Addr(); r.IsValid() {
			return nil // credentials from before bindings were recorded: the reservation holds
		}
		return refuse(ReasonNoBinding, "host %s's credentials are bound to no address", host.ID)
	}
	if src != b {
		return refuse(ReasonWrongAddress, "%s is not the address of host %s", src, host.ID)
	}
	return nil
}

// Who is the host at src, for the timeline of unauthenticated fetches (binaries, boot
// environment, assets): the host reserving or leasing src, else the host whose agent or
// installed system is bound to it. ok is false when src is nobody's.
func (g *Gate) Who(ctx context.Context, src netip.Addr) (inventory.Host, bool) {
	if !src.IsValid() {
		return inventory.Host{}, false
	}
	h, err := g.cfg.Store.HostByIP(ctx, src.String())
	if err == nil {
		return h, true
	}
	if !errors.Is(err, inventory.ErrNotFound) {
		g.log.Warn("inventory lookup by IP failed", "ip", src.String(), "err", err)
		return inventory.Host{}, false
	}
	hosts, err := g.cfg.Store.ListHosts(ctx)
	if err != nil {
		g.log.Warn("listing hosts failed", "err", err)
		return inventory.Host{}, false
	}
	s := src.String()
	for _, h := range hosts {
		if (h.Operation != nil && h.Operation.AgentIP == s) || (h.Provision != nil && h.Provision.HostIP == s) {
			return h, true
		}
	}
	return inventory.Host{}, false
}

// WhoForTimeline is Who for a timeline event only: the ID of the host at src ("" and
// false for nobody's address), remembered for a second per address. A boot storm's
// fetches of iPXE binaries and boot files then cost no inventory read each (Who reads
// the host, and for an address no lease or reservation names, every host). Never use
// it to decide what a request may have: a second-old answer is good enough to put a
// fetch on the right timeline, not to hand out a secret.
func (g *Gate) WhoForTimeline(ctx context.Context, src netip.Addr) (string, bool) {
	if !src.IsValid() {
		return "", false
	}
	now := g.now()
	g.seenMu.Lock()
	s, ok := g.seen[src]
	g.seenMu.Unlock()
	if ok && now.Sub(s.at) < seenFor && !now.Before(s.at) {
		return s.id, s.id != ""
	}
	var id string
	if h, ok := g.Who(ctx, src); ok {
		id = h.ID
	}
	g.seenMu.Lock()
	if g.seen == nil || len(g.seen) >= seenMax {
		g.seen = map[netip.Addr]seenHost{} // a flood of addresses: start over
	}
	g.seen[src] = seenHost{id: id, at: now}
	g.seenMu.Unlock()
	return id, id != ""
}

// Reject counts a refused request on route and, within src's event rate, records it on
// the named host's timeline as a rejected event (eventType must end in ".rejected", which
// the inventory keeps apart from the capped timeline). hostID may be empty when the
// request named no host.
func (g *Gate) Reject(hostID, route, eventType string, src netip.Addr, err error, fields map[string]string) {
	reason := ReasonOf(err)
	g.rejected.WithLabelValues(route, reason).Inc()
	g.log.Warn("boot request refused", "route", route, "ip", src.String(), "hostID", hostID, "reason", reason, "err", err)
	if hostID == "" {
		return
	}
	if !g.allowEvent(src) {
		g.suppressed.Inc()
		return
	}
	if fields == nil {
		fields = map[string]string{}
	}
	fields["ip"], fields["route"], fields["reason"] = src.String(), route, reason
	ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
	defer cancel()
	e := inventory.Event{Type: eventType, Message: fmt.Sprintf("%s request from %s refused: %v", route, src, err), Fields: fields}
	if _, err := g.cfg.Store.AppendEvent(ctx, hostID, e); err != nil {
		g.log.Warn("cannot record rejected event", "hostID", hostID, "err", err)
	}
}

func (g *Gate) allowEvent(src netip.Addr) bool { return g.events.Allow(src) }

// RejectedCount is the number of refusals counted on route (all reasons), for tests.
func (g *Gate) RejectedCount(route string) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { g.rejected.Collect(ch); close(ch) }()
	var n float64
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err == nil {
			for _, lp := range pb.GetLabel() {
				if lp.GetName() == "route" && lp.GetValue() == route {
					n += pb.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// FormatAddr is addr as events show it ("" when invalid).
func FormatAddr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
