package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/util"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
)

// Config is what the Cluster API controllers of one rack need.
type Config struct {
	// REST talks to the management cluster.
	REST *rest.Config
	// Rack is this instance's rack: the failure domain whose machines it reconciles and
	// the RACK of the providerIDs it sets. Required.
	Rack        string `yaml:"rack" doc:"this rack's name: the failure domain whose machines this rackboot reconciles, and RACK in providerIDs rackboot://RACK/HOST (required with the controllers)"`
	Inventory   Inventory
	Provisioner HostProvisioner
	Logger      *slog.Logger
	// LeaderElection makes one instance per rack active (the Lease is
	// rackboot-RACK in LeaderElectionNamespace); the others wait as hot standbys.
	LeaderElection          bool   `yaml:"leaderElect" doc:"with several rackboot instances for one rack, let one (holding Lease rackboot-RACK) act at a time"`
	LeaderElectionNamespace string `yaml:"leaderElectionNamespace" doc:"namespace of the leader-election Lease"`
	// Namespace limits the controllers to one namespace; empty watches all.
	Namespace string `yaml:"namespace" doc:"reconcile only the RackbootMachines and RackbootClusters of this namespace (empty: all)"`
	// Concurrency is the number of machines reconciled at once (default 10).
	Concurrency int `yaml:"concurrency" doc:"machines reconciled at once"`
	// Poll is how often a host the provisioner works on is re-checked without a
	// HostChanged call (default 15s); machines waiting for a free host are re-checked
	// every 2×Poll.
	Poll time.Duration `yaml:"poll" doc:"re-check of a machine whose host is being worked on (waiting machines: twice this)"`
}

// Defaults of Config.
const (
	DefaultConcurrency             = 10
	DefaultPoll                    = 15 * time.Second
	DefaultLeaderElectionNamespace = "rackboot-system"
)

// DefaultConfig is the settings part of Config with every default written out.
func DefaultConfig() Config {
	return Config{LeaderElection: true, LeaderElectionNamespace: DefaultLeaderElectionNamespace, Concurrency: DefaultConcurrency, Poll: DefaultPoll}
}

// Validate checks the operator's settings (zeros mean the defaults; an empty Rack is
// left to the caller, which knows whether the controllers run). Each message starts
// with the setting's name in the configuration file (rack, poll, ...).
func (c Config) Validate() error {
	var errs []error
	if c.Rack != "" && !rackRe.MatchString(c.Rack) {
		errs = append(errs, fmt.Errorf("rack: %q is invalid: use lower-case letters, digits and '-' (it becomes part of rackboot://RACK/HOST and of a Lease name)", c.Rack))
	}
	if c.LeaderElection && c.LeaderElectionNamespace == "" {
		errs = append(errs, errors.New("leaderElectionNamespace: is empty but leader election is on: name the namespace of the Lease (default rackboot-system), or turn leaderElect off"))
	}
	if c.Concurrency < 0 || c.Concurrency > 1000 {
		errs = append(errs, fmt.Errorf("concurrency: %d: give 1-1000 (default %d)", c.Concurrency, DefaultConcurrency))
	}
	if c.Poll < 0 || (c.Poll > 0 && c.Poll < time.Second) {
		errs = append(errs, fmt.Errorf("poll: %s: give at least 1s (default %s)", c.Poll, DefaultPoll))
	}
	return errors.Join(errs...)
}

var rackRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// NewScheme returns a scheme with the types the controllers read and write.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, clusterv1.AddToScheme, infrav1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Manager runs the RackbootCluster and RackbootMachine controllers of one rack.
type Manager struct {
	mgr      ctrl.Manager
	machines *MachineReconciler
	// namespace and leaseName describe this instance for CheckAPI and CheckLeader.
	namespace, leaseName string
	leaderElection       bool
}

// New builds the controllers; Start runs them.
func New(cfg Config) (*Manager, error) {
	switch {
	case cfg.REST == nil:
		return nil, errors.New("cluster API controllers: no management cluster configuration: give --kubeconfig or run in a pod")
	case !rackRe.MatchString(cfg.Rack):
		return nil, fmt.Errorf("cluster API controllers: rack %q is invalid: use lower-case letters, digits and '-' (it becomes part of rackboot://RACK/HOST and of a Lease name)", cfg.Rack)
	case cfg.Inventory == nil || cfg.Provisioner == nil:
		return nil, errors.New("cluster API controllers: an inventory and a provisioner are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cluster API controllers: %w", err)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.LeaderElection && cfg.LeaderElectionNamespace == "" {
		return nil, errors.New("cluster API controllers: leader election needs a namespace for its Lease (--leader-election-namespace)")
	}
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	logger := logr.FromSlogHandler(cfg.Logger.Handler())
	opts := ctrl.Options{
		Scheme:                  scheme,
		Logger:                  logger,
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		LeaderElection:          cfg.LeaderElection,
		LeaderElectionID:        "rackboot-" + cfg.Rack,
		LeaderElectionNamespace: cfg.LeaderElectionNamespace,
		// Hand the Lease over at once on a clean shutdown instead of after it expires.
		LeaderElectionReleaseOnCancel: true,
		Controller:                    ctrlConfig(cfg.Concurrency),
	}
	if cfg.Namespace != "" {
		opts.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{cfg.Namespace: {}}}
	}
	mgr, err := ctrl.NewManager(cfg.REST, opts)
	if err != nil {
		return nil, fmt.Errorf("cluster API controllers: %w", err)
	}
	m := &Manager{mgr: mgr, machines: &MachineReconciler{
		client:      mgr.GetClient(),
		apiReader:   mgr.GetAPIReader(),
		rack:        cfg.Rack,
		inv:         cfg.Inventory,
		prov:        cfg.Provisioner,
		poll:        cfg.Poll,
		waitingPoll: 2 * cfg.Poll,
		kick:        make(chan event.GenericEvent, 4096),
		waiting:     map[types.NamespacedName]struct{}{},
		observed:    map[types.NamespacedName]observed{},
		// events.k8s.io Events; "From" in kubectl describe names the rack.
		events: mgr.GetEventRecorder("rackboot/" + cfg.Rack),
	}}
	m.namespace, m.leaderElection = cfg.Namespace, cfg.LeaderElection
	m.leaseName = cfg.LeaderElectionNamespace + "/rackboot-" + cfg.Rack
	if err := m.setup(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) setup() error {
	mapper, err := util.ClusterToTypedObjectsMapper(m.mgr.GetClient(), &infrav1.RackbootMachineList{}, m.mgr.GetScheme())
	if err != nil {
		return err
	}
	// Machines labelled for another rack never reach Reconcile; those placed by a
	// Machine's failure domain are filtered there, after reading the Machine.
	otherRack := predicate.NewPredicateFuncs(func(o client.Object) bool {
		l := o.GetLabels()[infrav1.RackLabel]
		return l == "" || l == m.machines.rack
	})
	err = ctrl.NewControllerManagedBy(m.mgr).
		For(&infrav1.RackbootMachine{}, builder.WithPredicates(otherRack)).
		Watches(&clusterv1.Machine{}, handler.EnqueueRequestsFromMapFunc(util.MachineToInfrastructureMapFunc(infrav1.GroupVersion.WithKind("RackbootMachine")))).
		Watches(&clusterv1.Cluster{}, handler.EnqueueRequestsFromMapFunc(mapper)).
		WatchesRawSource(source.Channel(m.machines.kick, &handler.EnqueueRequestForObject{})).
		Named("rackbootmachine").
		Complete(m.machines)
	if err != nil {
		return fmt.Errorf("cluster API controllers: rackbootmachine: %w", err)
	}
	cmapper, err := util.ClusterToTypedObjectsMapper(m.mgr.GetClient(), &infrav1.RackbootClusterList{}, m.mgr.GetScheme())
	if err != nil {
		return err
	}
	err = ctrl.NewControllerManagedBy(m.mgr).
		For(&infrav1.RackbootCluster{}).
		Watches(&clusterv1.Cluster{}, handler.EnqueueRequestsFromMapFunc(cmapper)).
		Named("rackbootcluster").
		Complete(&ClusterReconciler{client: m.mgr.GetClient()})
	if err != nil {
		return fmt.Errorf("cluster API controllers: rackbootcluster: %w", err)
	}
	return nil
}

func ctrlConfig(concurrency int) config.Controller {
	return config.Controller{
		// Several managers may live in one process (tests; several racks served by one
		// binary); controller names need not be unique across them.
		SkipNameValidation: ptr.To(true),
		// client-go's rate-limited workqueue, not controller-runtime's priority queue:
		// the priority queue of v0.24 can deadlock on shutdown
		// (kubernetes-sigs/controller-runtime#3538, fixed in v0.25 by #3540). Its
		// dispatcher hands an item to an idle worker with an unbuffered send while
		// holding the queue's locks; when ShutDown wakes that worker first, the send
		// never completes, and a worker whose reconcile was still running blocks in
		// Done for good, so the controller, and Start, never return (the manager gives
		// up after its 30 s grace period). Priorities buy nothing at one rack's scale.
		// Revisit when controller-runtime is v0.25 or newer.
		UsePriorityQueue: ptr.To(false),
		GroupKindConcurrency: map[string]int{
			"RackbootMachine.infrastructure.cluster.x-k8s.io": concurrency,
		},
	}
}

// Start runs the controllers until ctx ends. With leader election, they act only
// while this instance holds its rack's Lease.
func (m *Manager) Start(ctx context.Context) error { return m.mgr.Start(ctx) }

// HostChanged is the provisioner's hook: call it after a host changes state so the
// owning machine is reconciled at once.
func (m *Manager) HostChanged(ctx context.Context, hostID string) {
	m.machines.HostChanged(ctx, hostID)
}

// Elected is closed when this instance leads its rack (at once without leader election).
func (m *Manager) Elected() <-chan struct{} { return m.mgr.Elected() }

// CheckAPI asks the management cluster, uncached, for one RackbootMachine (of the
// watched namespace): it passes when the API server answers and the CRDs are
// installed (for /readyz?verbose).
func (m *Manager) CheckAPI(ctx context.Context) error {
	opts := []client.ListOption{client.Limit(1)}
	if m.namespace != "" {
		opts = append(opts, client.InNamespace(m.namespace))
	}
	if err := m.mgr.GetAPIReader().List(ctx, &infrav1.RackbootMachineList{}, opts...); err != nil {
		return fmt.Errorf("cannot list RackbootMachines in the management cluster: %w: check --kubeconfig, the network, and that the provider is installed (clusterctl init --infrastructure rackboot)", err)
	}
	return nil
}

// CheckLeader passes while this instance leads its rack (always without leader
// election); a hot standby fails it.
func (m *Manager) CheckLeader(context.Context) error {
	select {
	case <-m.mgr.Elected():
		return nil
	default:
	}
	if !m.leaderElection {
		return errors.New("the controllers have not started yet")
	}
	return fmt.Errorf("standby: another rackboot of this rack holds the Lease %s, or this one has not acquired it yet", m.leaseName)
}

// GetClient is the manager's cached client (for tests and the CLI).
func (m *Manager) GetClient() client.Client { return m.mgr.GetClient() }
