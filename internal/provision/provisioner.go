package provision

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/images"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
	"github.com/rackboot/rackboot/internal/metadata"
	"github.com/rackboot/rackboot/internal/netconfig"
	"github.com/rackboot/rackboot/internal/trust"
)

// Store is the inventory as the provisioner uses it; *inventory.BoltStore implements it.
type Store interface {
	GetHost(ctx context.Context, id string) (inventory.Host, error)
	ListHosts(ctx context.Context) ([]inventory.Host, error)
	HostByIP(ctx context.Context, ip string) (inventory.Host, error)
	HostByTokenHash(ctx context.Context, hash string) (inventory.Host, error)
	TransitionHost(ctx context.Context, id string, fn func(*inventory.Host, *inventory.HostChange) error) (inventory.Host, []inventory.Event, error)
	StartProvisioning(ctx context.Context, id, image string, fn func(*inventory.Host, inventory.Image, *inventory.HostChange) error) (inventory.Host, []inventory.Event, error)
	AppendEvent(ctx context.Context, hostID string, e inventory.Event) (inventory.Event, error)
	// RecordEvents queues timeline events for the next group commit.
	RecordEvents(ctx context.Context, evs ...inventory.HostEvent) error
	// ProvisionData is the host's sealed cloud-init or Ignition payload (an Ignition
	// plan carries the rendered config).
	ProvisionData(ctx context.Context, hostID string) (inventory.ProvisionData, error)
}

var _ Store = (*inventory.BoltStore)(nil)

// Power is the BMC service as the provisioner uses it; *bmc.Service implements it.
type Power interface {
	PowerStatus(ctx context.Context, hostID string) (bmc.Result, error)
	Power(ctx context.Context, hostID string, a bmc.PowerAction) (bmc.Result, error)
	SetBootDevice(ctx context.Context, hostID string, o bmc.BootOptions) (bmc.Result, error)
}

var _ Power = (*bmc.Service)(nil)

// Images finds an image for a plan; *images.Catalog implements it (Lookup also checks
// the cached file of a ready image).
type Images interface {
	Lookup(ctx context.Context, name string) (inventory.Image, error)
}

// Timeouts is the timeout and retry policy. Zero fields take the defaults.
type Timeouts struct {
	// Boot is how long after powering the host rackboot waits for the agent's hello
	// (firmware POST, PXE, kernel and drivers; 5 minutes is normal for a server).
	Boot time.Duration
	// Stall is how long the agent may stay silent while running its plan.
	Stall time.Duration
	// DiskBoot is how long, after the image is written, the host has to boot it and
	// have cloud-init phone home.
	DiskBoot time.Duration
	// BootAttempts is how many times the agent is booted for one operation before the
	// host fails.
	BootAttempts int
	// PowerAttempts is how many times a failing BMC sequence is tried per boot.
	PowerAttempts int
	// PowerBackoff is the wait before the next BMC try.
	PowerBackoff time.Duration
	// RebootGrace is how long after the image is written a host may be off (the agent
	// rebooting it) before rackboot powers it on to boot its disk; checked again at
	// this interval while rackboot waits for the phone-home.
	RebootGrace time.Duration
}

// Defaults of Timeouts.
const (
	DefaultBootTimeout     = 15 * time.Minute
	DefaultStallTimeout    = 15 * time.Minute
	DefaultDiskBootTimeout = 30 * time.Minute
	DefaultBootAttempts    = 3
	DefaultPowerAttempts   = 3
	DefaultPowerBackoff    = 30 * time.Second
	DefaultRebootGrace     = 30 * time.Second
	DefaultInterval        = 5 * time.Second
	// waitSeconds is how long an agent waits for an image still being downloaded.
	waitSeconds = 15
)

func (t *Timeouts) defaults() {
	if t.Boot <= 0 {
		t.Boot = DefaultBootTimeout
	}
	if t.Stall <= 0 {
		t.Stall = DefaultStallTimeout
	}
	if t.DiskBoot <= 0 {
		t.DiskBoot = DefaultDiskBootTimeout
	}
	if t.BootAttempts <= 0 {
		t.BootAttempts = DefaultBootAttempts
	}
	if t.PowerAttempts <= 0 {
		t.PowerAttempts = DefaultPowerAttempts
	}
	if t.PowerBackoff <= 0 {
		t.PowerBackoff = DefaultPowerBackoff
	}
	if t.RebootGrace <= 0 {
		t.RebootGrace = DefaultRebootGrace
	}
}

// Config configures a Provisioner. Store and Images are required.
type Config struct {
	Store Store
	// BMC powers hosts and sets their boot device; nil means no host has power control
	// (each must be booted by hand).
	BMC    Power
	Images Images
	// ServerURL is rackboot's base URL as hosts reach it (http://ADDRESS:PORT), used in
	// plans; empty takes the agent request's Host header.
	ServerURL string
	Timeouts  Timeouts
	// Interval between reconcile passes (default 5s); a change triggers one at once.
	Interval time.Duration
	// Gate says who is asking on the agent, image and boot environment routes; nil
	// builds one for DHCP server mode over Store (tests).
	Gate *trust.Gate
	// AcceptSerials is the operator's rule for discovered hosts: one whose inspection
	// reports one of these SMBIOS system serials (the machines bought for this rack)
	// becomes available without `host accept`. Empty: every discovered host waits for
	// an operator. The serial is the host's own word, so the rule is as good as the
	// list is private.
	AcceptSerials []string
	// CloudInit is how the agent points an installed system at its cloud-init
	// (default dropin, which works with stock cloud images). Hosts provisioned with
	// Butane or Ignition take ignition whatever this says.
	CloudInit agentapi.CloudInitMode
	// NoAgent, when set, is why this rackboot cannot boot the agent (no boot
	// environment built): Inspect, Provision and Release are refused with it rather
	// than left to time out.
	NoAgent string
	// AgentReady, when set, is asked at each Inspect, Provision and Release: NoAgent
	// refuses them only while it returns false (provision.BootEnvs.Ready, so a boot
	// environment imported while serve runs lifts the refusal). Without it NoAgent
	// alone decides.
	AgentReady func() bool
	Logger     *slog.Logger
	// Registerer gets the provisioner's metrics; Metrics the agent routes' HTTP ones.
	Registerer prometheus.Registerer
	Metrics    *ipxe.HTTPMetrics
	// OnTransition, when set, is called with a host's ID after each change of its
	// state, once the change is committed: the Cluster API controllers' HostChanged,
	// so a machine sees its host provisioned (or wiped, or failed) at once rather than
	// at its next poll. It runs on the goroutine that made the change (an agent
	// request, a reconcile pass, an API call) and must not block.
	OnTransition func(hostID string)
	// SubnetOf says which subnet rackboot's DHCP serves a reserved address from, so a
	// host without a network spec of its own gets its reserved address as a static
	// configuration (installNetwork). nil: such hosts keep DHCP (proxy mode).
	SubnetOf func(netip.Addr) (Subnet, bool)
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Provisioner runs the host state machine. Its methods are safe for concurrent use.
type Provisioner struct {
	cfg   Config
	store Store
	log   *slog.Logger
	now   func() time.Time
	t     Timeouts
	http  *ipxe.HTTPMetrics
	gate  *trust.Gate

	kick chan struct{}
	mu   sync.Mutex
	// changed is closed and replaced on every transition, waking Watch.
	changed chan struct{}
	// busy holds hosts with a BMC sequence running, so passes do not overlap on one.
	busy map[string]bool

	m metrics
}

type metrics struct {
	transitions *prometheus.CounterVec
	timeouts    *prometheus.CounterVec
	hosts       *prometheus.GaugeVec
	operations  *prometheus.HistogramVec
}

// operationBuckets fit operations that take minutes: a TCG VM inspects in about a
// minute, a server's firmware alone takes several, and an image write over a slow
// link or a run of retries (three boots of 15 minutes at most, by default) takes
// most of an hour.
var operationBuckets = []float64{30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200}

// Gate is the trust gate the provisioner asks who is calling (Config.Gate, or its own).
func (p *Provisioner) Gate() *trust.Gate { return p.gate }

// New checks cfg and returns a Provisioner; Start runs its reconcile loop.
func New(cfg Config) (*Provisioner, error) {
	if cfg.Store == nil {
		return nil, errors.New("provision: no inventory store configured")
	}
	if cfg.Images == nil {
		return nil, errors.New("provision: no image catalog configured")
	}
	if cfg.ServerURL != "" {
		cfg.ServerURL = strings.TrimSuffix(cfg.ServerURL, "/")
	}
	cfg.Timeouts.defaults()
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.CloudInit == "" {
		cfg.CloudInit = agentapi.CloudInitDropIn
	}
	p := &Provisioner{
		cfg: cfg, store: cfg.Store, log: cfg.Logger, now: cfg.Now, t: cfg.Timeouts, http: cfg.Metrics,
		kick: make(chan struct{}, 1), changed: make(chan struct{}), busy: map[string]bool{},
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.gate = cfg.Gate; p.gate == nil {
		g, err := trust.New(trust.Config{Mode: trust.ModeServer, Store: cfg.Store, Logger: p.log, Now: p.now})
		if err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
		p.gate = g
	}
	if p.http == nil {
		m, err := ipxe.NewHTTPMetrics(cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
		p.http = m
	}
	p.m = metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackboot_host_transitions_total",
			Help: "Host state changes made by the provisioner, by the state entered.",
		}, []string{"to"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackboot_provision_timeouts_total",
			Help: "Operation phases that timed out, by state and phase.",
		}, []string{"state", "phase"}),
		hosts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rackboot_hosts",
			Help: "Hosts in the inventory by state, as of the last reconcile pass.",
		}, []string{"state"}),
		operations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rackboot_host_operation_duration_seconds",
			Help:    "Time from the start of an inspection, provisioning or release (or its retry) to its end, by operation (inspect, provision, release) and result (succeeded, failed, aborted).",
			Buckets: operationBuckets,
		}, []string{"operation", "result"}),
	}
	// Every series these can have exists from the start, at zero: a panel or an
	// alert on a rare timeout or a first provisioning has a series to read.
	for _, st := range []inventory.State{inventory.StateInspecting, inventory.StateProvisioning, inventory.StateDeprovisioning} {
		for _, ph := range []inventory.OpPhase{inventory.PhaseBooting, inventory.PhaseAgent} {
			p.m.timeouts.WithLabelValues(string(st), string(ph))
		}
		for _, r := range []string{"succeeded", "failed", "aborted"} {
			p.m.operations.WithLabelValues(operationNames[st], r)
		}
	}
	p.m.timeouts.WithLabelValues(string(inventory.StateProvisioning), string(inventory.PhaseDiskBoot))
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{p.m.transitions, p.m.timeouts, p.m.hosts, p.m.operations} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("provision: registering metrics: %w", err)
			}
		}
	}
	return p, nil
}

// Request asks for a host to be provisioned.
type Request struct {
	// Image names a catalog image (rackboot image list).
	Image string `json:"image"`
	// RootDisk chooses the disk to write; the zero value takes the smallest fixed disk.
	RootDisk agentapi.RootDiskHint `json:"rootDisk,omitzero"`
	// At most one of UserData (cloud-init: #cloud-config, a script, MIME multipart),
	// Butane (rendered to Ignition now) and Ignition (JSON, spec 3.x).
	UserData []byte `json:"userData,omitempty"`
	Butane   []byte `json:"butane,omitempty"`
	Ignition []byte `json:"ignition,omitempty"`
	// Labels are set on the host (and so appear in its meta-data).
	Labels map[string]string `json:"labels,omitempty"`
	// Metadata is served in the host's meta-data under "metadata".
	Metadata map[string]string `json:"metadata,omitempty"`
	// CloudInit overrides Config.CloudInit for this host (dropin, cidata, ignition or
	// none). A Butane or Ignition config takes ignition unless none is asked for (the
	// image finds its config some other way); ignition without one installs a config
	// holding only rackboot's phone-home unit.
	CloudInit agentapi.CloudInitMode `json:"cloudInit,omitempty"`
	// Network is the installed OS's network for this provisioning (a RackbootMachine's
	// spec.network); nil keeps the host's own, or the default. It is checked against the
	// NICs the host's inspection found.
	Network *netconfig.Spec `json:"network,omitempty"`
	// Owner is who asks: a host claimed by another owner is refused (ErrConflict).
	// The CAPI controller passes its claim owner; the CLI passes nothing.
	Owner string `json:"owner,omitempty"`
}

// ReleaseOptions says how to release a host.
type ReleaseOptions struct {
	// Wipe is quick (default: signatures and partition tables) or full (every block).
	Wipe agentapi.WipeMode `json:"wipe,omitempty"`
	// Owner must match the host's claim, unless Force.
	Owner string `json:"owner,omitempty"`
	Force bool   `json:"force,omitempty"`
}

// Options for Inspect and Retry.
type Options struct {
	// Owner must match the host's claim, unless Force.
	Owner string `json:"owner,omitempty"`
	Force bool   `json:"force,omitempty"`
}

// Event types the provisioner records.
const (
	EventState      = "state.changed"
	EventRequest    = "provision.request"
	EventPower      = "provision.power"
	EventTimeout    = "provision.timeout"
	EventRetry      = "provision.retry"
	EventResume     = "provision.resume"
	EventAgentBoot  = "agent.boot"
	EventHello      = "agent.hello"
	EventProgress   = "agent.progress"
	EventResult     = "agent.result"
	EventRejected   = "agent.rejected"
	EventPhoneHome  = "boot.phonehome"
	EventDiskBoot   = "provision.diskboot"
	EventStaleAgent = "agent.stale"
)

func conflict(format string, args ...any) error {
	return fmt.Errorf("%w: %s", inventory.ErrConflict, fmt.Sprintf(format, args...))
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", inventory.ErrInvalid, fmt.Sprintf(format, args...))
}

func checkOwner(h *inventory.Host, owner string, force bool) error {
	if force || h.Claim.IsZero() || h.Claim.Owner == owner {
		return nil
	}
	return conflict("host %s is claimed by %s: only its owner may change it (or force it)", h.ID, h.Claim.Owner)
}

// setState moves h to `to` and records the change.
func (p *Provisioner) setState(h *inventory.Host, c *inventory.HostChange, to inventory.State, reason string, fields map[string]string) {
	from := h.State
	h.State, h.StateReason = to, reason
	f := map[string]string{"from": string(from), "to": string(to)}
	maps.Copy(f, fields)
	msg := fmt.Sprintf("%s → %s", from, to)
	if reason != "" {
		msg += ": " + reason
	}
	c.Events = append(c.Events, inventory.Event{Type: EventState, Message: msg, Fields: f})
}

// newOperation starts an operation in state st at the power phase.
func (p *Provisioner) newOperation(st inventory.State) *inventory.Operation {
	return &inventory.Operation{State: st, Phase: inventory.PhasePower, Attempt: 1, StartedAt: p.now().UTC()}
}

// transition runs fn in one transaction and wakes watchers and the loop when it wrote.
func (p *Provisioner) transition(ctx context.Context, id string, fn func(*inventory.Host, *inventory.HostChange) error) (inventory.Host, error) {
	// The operation the host was in when the transaction read it: when the change
	// ends it, its duration is observed once the change is committed.
	var before opStart
	h, evs, err := p.store.TransitionHost(ctx, id, func(h *inventory.Host, c *inventory.HostChange) error {
		before = opStart{}
		if h.Operation != nil && h.Operation.State == h.State {
			before = opStart{state: h.State, at: h.Operation.StartedAt}
		}
		return fn(h, c)
	})
	if err != nil {
		return h, err
	}
	p.wrote(h, evs)
	p.observeOperation(before, h.State)
	return h, nil
}

// opStart is where and when a host's operation began.
type opStart struct {
	state inventory.State
	at    time.Time
}

// operationNames are the operations rackboot_host_operation_duration_seconds counts,
// by the state each runs in.
var operationNames = map[inventory.State]string{
	inventory.StateInspecting:     "inspect",
	inventory.StateProvisioning:   "provision",
	inventory.StateDeprovisioning: "release",
}

// observeOperation records the duration of the operation a committed change ended:
// one that left the operation's state. A retry starts a new operation (Retry gives
// it a new start), so a retried provisioning is timed from its retry.
func (p *Provisioner) observeOperation(before opStart, now inventory.State) {
	name, ok := operationNames[before.state]
	if !ok || before.at.IsZero() || now == before.state {
		return
	}
	result := "aborted" // e.g. a provisioning released before it ended
	switch {
	case now == inventory.StateFailed:
		result = "failed"
	case before.state == inventory.StateInspecting && (now == inventory.StateAvailable || now == inventory.StateDiscovered),
		before.state == inventory.StateProvisioning && now == inventory.StateProvisioned,
		before.state == inventory.StateDeprovisioning && now == inventory.StateAvailable:
		result = "succeeded"
	}
	p.m.operations.WithLabelValues(name, result).Observe(max(0, p.now().Sub(before.at).Seconds()))
}

func (p *Provisioner) wrote(h inventory.Host, evs []inventory.Event) {
	changed := false
	for _, e := range evs {
		if e.Type == EventState {
			changed = true
			p.m.transitions.WithLabelValues(e.Fields["to"]).Inc()
			p.log.Info("host state changed", "hostID", h.ID, "from", e.Fields["from"], "to", e.Fields["to"], "reason", h.StateReason)
		}
	}
	p.notify()
	if changed && p.cfg.OnTransition != nil {
		p.cfg.OnTransition(h.ID)
	}
}

// notify wakes Watch callers and the reconcile loop.
func (p *Provisioner) notify() {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// canBootAgent refuses operations this rackboot could only let time out.
func (p *Provisioner) canBootAgent() error {
	if p.cfg.NoAgent != "" && (p.cfg.AgentReady == nil || !p.cfg.AgentReady()) {
		return conflict("%s", p.cfg.NoAgent)
	}
	return nil
}

// Inspect boots the agent on the host to report its hardware, then powers it off; the
// host ends available. Allowed from enrolled, available (unclaimed or the owner's),
// discovered and failed; inspecting already is not an error.
func (p *Provisioner) Inspect(ctx context.Context, id string, o Options) (inventory.Host, error) {
	if err := p.canBootAgent(); err != nil {
		return inventory.Host{}, err
	}
	return p.transition(ctx, id, func(h *inventory.Host, c *inventory.HostChange) error {
		if err := checkOwner(h, o.Owner, o.Force); err != nil {
			return err
		}
		switch h.State {
		case inventory.StateInspecting:
			return inventory.ErrNoChange
		case inventory.StateEnrolled, inventory.StateAvailable, inventory.StateDiscovered:
		case inventory.StateFailed:
			if h.Provision != nil {
				return conflict("host %s failed holding image %s: release it (rackboot host release %s) or retry it before inspecting it", h.ID, h.Provision.Image, h.ID)
			}
		default:
			return conflict("host %s is %s: only enrolled, available, discovered or failed hosts can be inspected", h.ID, h.State)
		}
		discovered := h.State == inventory.StateDiscovered || (h.Operation != nil && h.Operation.Discovery)
		h.Operation = p.newOperation(inventory.StateInspecting)
		h.Operation.Discovery = discovered
		p.setState(h, c, inventory.StateInspecting, "inspection requested", nil)
		return nil
	})
}

// EventAccepted records that an operator (or a rule) accepted a discovered host.
const EventAccepted = "host.accepted"

// Accept makes a discovered host the operator's: available when it was inspected (its
// facts shown), else enrolled, to be inspected. Until then no claim, CLI or Cluster API,
// can take it: anything that PXE-boots can be discovered, and its facts are its own
// word.
func (p *Provisioner) Accept(ctx context.Context, id string, by string) (inventory.Host, error) {
	return p.transition(ctx, id, func(h *inventory.Host, c *inventory.HostChange) error {
		if h.State != inventory.StateDiscovered {
			return conflict("host %s is %s: only discovered hosts are accepted", h.ID, h.State)
		}
		if by == "" {
			by = "operator"
		}
		c.Events = append(c.Events, inventory.Event{Type: EventAccepted, Message: "accepted by " + by, Fields: map[string]string{"by": by}})
		if h.Facts == nil {
			p.setState(h, c, inventory.StateEnrolled, "accepted before inspection: inspect it (rackboot host inspect "+h.ID+")", nil)
			return nil
		}
		p.setState(h, c, inventory.StateAvailable, "accepted by "+by, nil)
		return nil
	})
}

// Provision writes req.Image to the host and configures it with req's user-data or
// Ignition; the host ends provisioned when its installed system phones home. The host
// must be available; a host claimed by someone other than req.Owner is refused.
func (p *Provisioner) Provision(ctx context.Context, id string, req Request) (inventory.Host, error) {
	if err := p.canBootAgent(); err != nil {
		return inventory.Host{}, err
	}
	if err := inventory.ValidateImageName(req.Image); err != nil {
		return inventory.Host{}, invalidf("%v", err)
	}
	if err := req.RootDisk.Validate(); err != nil {
		return inventory.Host{}, invalidf("%v", err)
	}
	for k, v := range req.Labels {
		if err := inventory.ValidateLabel(k, v); err != nil {
			return inventory.Host{}, invalidf("%v", err)
		}
	}
	for k, v := range req.Metadata {
		if k == "" || len(k) > 253 || len(v) > 4096 {
			return inventory.Host{}, invalidf("metadata %q: keys of 1-253 characters and values of at most 4096, please", k)
		}
	}
	switch req.CloudInit {
	case "", agentapi.CloudInitDropIn, agentapi.CloudInitCIData, agentapi.CloudInitIgnition, agentapi.CloudInitNone:
	default:
		return inventory.Host{}, invalidf("cloud-init mode %q: use dropin, cidata, ignition or none", req.CloudInit)
	}
	given := 0
	for _, b := range [][]byte{req.UserData, req.Butane, req.Ignition} {
		if len(b) > 0 {
			given++
		}
	}
	if given > 1 {
		return inventory.Host{}, invalidf("give at most one of user-data, Butane and Ignition")
	}
	if req.Network != nil {
		if err := netconfig.Validate(*req.Network, nil); err != nil {
			return inventory.Host{}, invalidf("%v", err)
		}
	}
	data := inventory.ProvisionData{}
	switch {
	case len(req.UserData) > 0:
		if err := metadata.CheckUserData(req.UserData); err != nil {
			return inventory.Host{}, invalidf("%v", err)
		}
		data.Kind, data.UserData = inventory.ConfigCloudConfig, req.UserData
	case len(req.Butane) > 0:
		ign, err := metadata.RenderButane(req.Butane)
		if err != nil {
			return inventory.Host{}, invalidf("%v", err)
		}
		data.Kind, data.Ignition = inventory.ConfigIgnition, ign
	case len(req.Ignition) > 0:
		if _, err := metadata.ParseIgnition(req.Ignition); err != nil {
			return inventory.Host{}, invalidf("%v", err)
		}
		data.Kind, data.Ignition = inventory.ConfigIgnition, req.Ignition
	}
	mode, err := installMode(req.CloudInit, p.cfg.CloudInit, &data)
	if err != nil {
		return inventory.Host{}, err
	}
	if mode == agentapi.CloudInitIgnition {
		// The plan carries the rendered config: refuse now what would not fit in one,
		// rather than fail the host when its agent asks.
		tok := strings.Repeat("x", 43)
		cfg, err := metadata.Ignition(metadata.Input{BaseURL: "http://255.255.255.255:65535" + metadata.PathPrefix + tok + "/"}, data)
		if err != nil {
			return inventory.Host{}, invalidf("%v", err)
		}
		if len(cfg) > agentapi.MaxIgnitionBytes-1024 {
			return inventory.Host{}, invalidf("the Ignition config renders to %d bytes, over the %d the agent installs: fetch large files from URLs (storage.files[].contents.source) instead of inlining them", len(cfg), agentapi.MaxIgnitionBytes-1024)
		}
	}
	provID, err := randomID()
	if err != nil {
		return inventory.Host{}, err
	}
	data.ProvisionID = provID
	h, evs, err := p.store.StartProvisioning(ctx, id, req.Image, func(h *inventory.Host, im inventory.Image, c *inventory.HostChange) error {
		if err := checkOwner(h, req.Owner, false); err != nil {
			return err
		}
		if h.State != inventory.StateAvailable {
			if (h.State == inventory.StateProvisioning || h.State == inventory.StateProvisioned) && h.Provision != nil &&
				h.Provision.Image == req.Image && h.Claim.Owner != "" && h.Claim.Owner == req.Owner {
				// The owner asking again (a controller that requeued): under way or done.
				return inventory.ErrNoChange
			}
			return conflict("host %s is %s, not available: %s", h.ID, h.State, availableHint(h))
		}
		if im.Status == inventory.ImageFailed {
			return conflict("image %s failed: %s", im.Name, im.Error)
		}
		if n := cmp.Or(req.Network, h.Network); n != nil {
			// The host's own spec may predate its inspection: resolve it for this host
			// and check it against the NICs found, before anything is written.
			if _, err := resolveNetwork(h, *n, p.cfg.SubnetOf); err != nil {
				return invalidf("host %s: %v", h.ID, err)
			}
		}
		if len(req.Labels) > 0 {
			if h.Labels == nil {
				h.Labels = map[string]string{}
			}
			maps.Copy(h.Labels, req.Labels)
		}
		requester := req.Owner
		if requester == "" {
			requester = "api"
		}
		h.Provision = &inventory.Provision{
			ID: provID, Image: im.Name, ImageSHA256: im.SHA256, RootDisk: rootDiskFromAgent(req.RootDisk),
			CloudInit: inventory.CloudInitMode(mode), Config: data.Kind, Metadata: maps.Clone(req.Metadata),
			Requester: requester, RequestedAt: p.now().UTC(),
		}
		if req.Network != nil {
			n := netconfig.Normalize(*req.Network)
			h.Provision.Network = &n
		}
		h.Operation = p.newOperation(inventory.StateProvisioning)
		c.Data = &data
		fields := map[string]string{"image": im.Name, "sha256": im.SHA256, "rootDisk": req.RootDisk.String(), "config": string(data.Kind), "requester": requester}
		c.Events = append(c.Events, inventory.Event{Type: EventRequest,
			Message: fmt.Sprintf("provision %s with image %s (root disk %s, %s)", h.ID, im.Name, req.RootDisk, configName(data.Kind)), Fields: fields})
		p.setState(h, c, inventory.StateProvisioning, "provisioning image "+im.Name, nil)
		return nil
	})
	if err != nil {
		return h, err
	}
	p.wrote(h, evs)
	return h, nil
}

func configName(k inventory.ConfigKind) string {
	switch k {
	case inventory.ConfigCloudConfig:
		return "cloud-init user-data"
	case inventory.ConfigIgnition:
		return "Ignition"
	}
	return "no user-data"
}

func availableHint(h *inventory.Host) string {
	switch h.State {
	case inventory.StateEnrolled, inventory.StateDiscovered:
		return "inspect it first (rackboot host inspect " + h.ID + ")"
	case inventory.StateProvisioned, inventory.StateProvisioning:
		return "release it first (rackboot host release " + h.ID + ")"
	case inventory.StateFailed:
		return "retry or release it (" + h.StateReason + ")"
	}
	return "wait for it to finish"
}

// Release wipes the host's disks and powers it off; it ends available with no image.
// Allowed from provisioning (the running agent is told to stop), provisioned and
// failed hosts that hold an image; releasing an available host without an image, or
// one being deprovisioned, is not an error.
func (p *Provisioner) Release(ctx context.Context, id string, o ReleaseOptions) (inventory.Host, error) {
	switch o.Wipe {
	case "":
		o.Wipe = agentapi.WipeQuick
	case agentapi.WipeQuick, agentapi.WipeFull:
	default:
		return inventory.Host{}, invalidf("wipe %q: use quick or full", o.Wipe)
	}
	if err := p.canBootAgent(); err != nil {
		return inventory.Host{}, err
	}
	return p.transition(ctx, id, func(h *inventory.Host, c *inventory.HostChange) error {
		if err := checkOwner(h, o.Owner, o.Force); err != nil {
			return err
		}
		switch h.State {
		case inventory.StateDeprovisioning:
			return inventory.ErrNoChange
		case inventory.StateAvailable, inventory.StateEnrolled, inventory.StateDiscovered:
			if h.Provision == nil {
				return inventory.ErrNoChange
			}
		case inventory.StateProvisioning, inventory.StateProvisioned:
		case inventory.StateFailed:
			if h.Provision == nil {
				return conflict("host %s failed while %s and holds no image: nothing to release; inspect it again (rackboot host inspect %s)", h.ID, opState(h), h.ID)
			}
		default:
			return conflict("host %s is %s: wait for it to finish", h.ID, h.State)
		}
		// The installed system's configuration (and its secrets) is no longer served.
		if h.Provision != nil {
			h.Provision.MetadataTokenHash = ""
		}
		op := p.newOperation(inventory.StateDeprovisioning)
		op.Wipe = inventory.WipeMode(o.Wipe)
		if h.Operation != nil && h.State == inventory.StateProvisioning {
			// An agent still writing the image keeps its token until the next boot, so
			// its next progress gets the 409 that stops it rather than a 401 it ignores.
			op.TokenHash, op.Boots = h.Operation.TokenHash, h.Operation.Boots
		}
		h.Operation = op
		c.ClearData = true
		p.setState(h, c, inventory.StateDeprovisioning, "release requested: wipe "+string(o.Wipe), map[string]string{"wipe": string(o.Wipe)})
		return nil
	})
}

func opState(h *inventory.Host) string {
	if h.Operation != nil {
		return string(h.Operation.State)
	}
	return "unknown"
}

// Retry restarts the operation a failed host failed in, from the power phase.
func (p *Provisioner) Retry(ctx context.Context, id string, o Options) (inventory.Host, error) {
	return p.transition(ctx, id, func(h *inventory.Host, c *inventory.HostChange) error {
		if err := checkOwner(h, o.Owner, o.Force); err != nil {
			return err
		}
		if h.State != inventory.StateFailed {
			return conflict("host %s is %s, not failed: nothing to retry", h.ID, h.State)
		}
		if h.Operation == nil {
			return conflict("host %s failed outside an operation (%s): inspect or release it", h.ID, h.StateReason)
		}
		st := h.Operation.State
		if st == inventory.StateProvisioning && h.Provision == nil {
			return conflict("host %s has no provisioning request left to retry: provision it again", h.ID)
		}
		op := p.newOperation(st)
		op.Wipe = h.Operation.Wipe
		h.Operation = op
		c.Events = append(c.Events, inventory.Event{Type: EventRetry, Message: "retry requested after: " + h.StateReason})
		p.setState(h, c, st, "retrying", nil)
		return nil
	})
}

// Get returns the host.
func (p *Provisioner) Get(ctx context.Context, id string) (inventory.Host, error) {
	return p.store.GetHost(ctx, id)
}

// Status is a host's provisioning as a controller needs it.
type Status struct {
	State inventory.State `json:"state"`
	// Provisioned: the image is written and the installed system phoned home.
	Provisioned bool `json:"provisioned"`
	// Busy: rackboot is working on the host (inspecting, provisioning, deprovisioning).
	Busy bool `json:"busy"`
	// Failed, with Reason: waiting for Retry or Release.
	Failed bool   `json:"failed"`
	Reason string `json:"reason,omitempty"`
	// Image is the image the host holds or is getting.
	Image string `json:"image,omitempty"`
	// Phase and Progress say where a busy host is ("agent", "write vda 40%").
	Phase    inventory.OpPhase `json:"phase,omitempty"`
	Progress string            `json:"progress,omitempty"`
	// Addresses are the host's known IPv4 addresses (reservation, the address its
	// agent used) and Hostname its name, for a Machine's status.
	Addresses []string `json:"addresses,omitempty"`
	Hostname  string   `json:"hostname,omitempty"`
}

// StatusOf summarises h.
func StatusOf(h inventory.Host) Status {
	s := Status{State: h.State, Provisioned: h.State == inventory.StateProvisioned, Busy: Transient(h.State),
		Failed: h.State == inventory.StateFailed, Reason: h.StateReason, Hostname: h.Hostname}
	if s.Hostname == "" {
		s.Hostname = h.ID
	}
	if h.Provision != nil {
		s.Image = h.Provision.Image
	}
	if op := h.Operation; op != nil && s.Busy {
		s.Phase = op.Phase
		if pr := op.Progress; pr != nil && op.Phase == inventory.PhaseAgent {
			s.Progress = string(pr.Phase)
			if pr.Disk != "" {
				s.Progress += " " + pr.Disk
			}
			if pr.BytesTotal > 0 {
				s.Progress += fmt.Sprintf(" %d%%", pr.BytesDone*100/pr.BytesTotal)
			}
		}
	}
	seen := map[string]bool{}
	for _, a := range []string{h.IP, provisionIP(h)} {
		if a != "" && !seen[a] {
			seen[a] = true
			s.Addresses = append(s.Addresses, a)
		}
	}
	return s
}

func provisionIP(h inventory.Host) string {
	if h.Provision != nil {
		return h.Provision.HostIP
	}
	return ""
}

// Transient reports whether s is a state the provisioner is working on.
func Transient(s inventory.State) bool {
	switch s {
	case inventory.StateInspecting, inventory.StateProvisioning, inventory.StateDeprovisioning:
		return true
	}
	return false
}

// Watch returns the host as soon as its Revision is above after, or when ctx ends
// (with the host as it is and ctx's error). Changes the provisioner makes wake it at
// once; others (labels through the admin API) within a second.
func (p *Provisioner) Watch(ctx context.Context, id string, after uint64) (inventory.Host, error) {
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		h, err := p.store.GetHost(ctx, id)
		if err != nil {
			return h, err
		}
		if h.Revision > after {
			return h, nil
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return h, ctx.Err()
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

// emptyIgnition is the config installed in mode ignition when none was given: Ignition
// spec 3.3.0, which every Flatcar since 3185 and every Fedora CoreOS reads; rackboot
// adds its phone-home unit to it like to any other.
const emptyIgnition = `{"ignition":{"version":"3.3.0"}}`

// installMode decides how the agent configures the installed system, from the mode
// asked for (empty: the default, def) and the configuration given (data, which it may
// complete). An Ignition config goes with mode ignition, or none when the request says
// the image finds its config by itself; cloud-init modes take cloud-init user-data or
// nothing.
func installMode(asked, def agentapi.CloudInitMode, data *inventory.ProvisionData) (agentapi.CloudInitMode, error) {
	mode := asked
	if mode == "" {
		mode = def
		if data.Kind == inventory.ConfigIgnition {
			mode = agentapi.CloudInitIgnition
		}
	}
	switch {
	case data.Kind == inventory.ConfigIgnition && mode != agentapi.CloudInitIgnition && mode != agentapi.CloudInitNone:
		return "", invalidf("cloud-init mode %s is for cloud-init images; a Butane or Ignition config is installed with mode ignition (or none, when the image finds its config by itself)", mode)
	case data.Kind == inventory.ConfigCloudConfig && mode == agentapi.CloudInitIgnition:
		return "", invalidf("cloud-init mode ignition installs a Butane or Ignition config, not cloud-init user-data: give --butane or an Ignition config, or another mode")
	case data.Kind == inventory.ConfigNone && mode == agentapi.CloudInitIgnition:
		// Nothing of the user's to install, but the host still has to phone home.
		data.Kind, data.Ignition = inventory.ConfigIgnition, []byte(emptyIgnition)
	}
	return mode, nil
}

// planData reads what the plan of a host being provisioned needs from outside the
// host record: the sealed Ignition config, for mode ignition. A missing one is left for
// provisionPlan to fail the host with; any other error is the server's (the agent
// retries).
func (p *Provisioner) planData(ctx context.Context, h inventory.Host) (inventory.ProvisionData, error) {
	if h.State != inventory.StateProvisioning || h.Provision == nil || h.Provision.CloudInit != inventory.CloudInitIgnition {
		return inventory.ProvisionData{}, nil
	}
	d, err := p.store.ProvisionData(ctx, h.ID)
	if errors.Is(err, inventory.ErrNotFound) {
		return inventory.ProvisionData{}, nil
	}
	return d, err
}

// provisionPlan is the plan of host h, whose image im is ready: write the image, then
// point the installed system at its configuration. metaTok is this hello's fresh
// metadata token: the NoCloud seed URL, and the phone-home URL in an Ignition config,
// carry it. For mode ignition the config is rendered here, as metadata serves it at
// .../ignition, and carried in the plan, so the agent writes it on the disk and the
// host's first boot needs no network to find it. An error is why the provisioning
// fails.
func provisionPlan(h inventory.Host, im inventory.Image, base, metaTok string, data inventory.ProvisionData) (agentapi.Plan, error) {
	pv := h.Provision
	seed := base + metadata.PathPrefix + url.PathEscape(metaTok) + "/"
	pr := &agentapi.Provision{
		ImageURL: base + images.URLPath(im.Name), SHA256: im.FileSHA256(), Format: agentapi.Format(im.Format), Size: im.Size,
		RootDisk: AgentRootDisk(pv.RootDisk), CloudInit: agentapi.CloudInit{Mode: agentapi.CloudInitMode(pv.CloudInit)},
	}
	switch pv.CloudInit {
	case inventory.CloudInitNone:
	case inventory.CloudInitIgnition:
		if data.Kind != inventory.ConfigIgnition || data.ProvisionID != pv.ID {
			return agentapi.Plan{}, errors.New("the Ignition config of this provisioning is missing from the inventory: release the host and provision it again")
		}
		cfg, err := metadata.Ignition(metadata.Input{Host: h, BaseURL: seed, BootMAC: pv.BootMAC}, data)
		if err != nil {
			return agentapi.Plan{}, fmt.Errorf("rendering the Ignition config: %w", err)
		}
		if len(cfg) > agentapi.MaxIgnitionBytes {
			// Provision refuses configs near the limit; this is the backstop.
			return agentapi.Plan{}, fmt.Errorf("the Ignition config renders to %d bytes, over the %d the agent installs: make it smaller and provision the host again", len(cfg), agentapi.MaxIgnitionBytes)
		}
		pr.Ignition = &agentapi.Ignition{Config: cfg}
	default:
		pr.CloudInit.SeedURL = seed
	}
	return agentapi.Plan{Action: agentapi.ActionProvision, Message: fmt.Sprintf("rackboot: writing %s to %s", pv.Image, h.ID), Provision: pr}, nil
}

func randomID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("provision: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// diskNames lists the facts' disks for messages.
func diskNames(f agentapi.Facts) string {
	var parts []string
	for _, d := range f.Disks {
		parts = append(parts, d.Name+" "+agentapi.FormatBytes(d.SizeBytes))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "no disks"
	}
	return strings.Join(parts, ", ")
}
