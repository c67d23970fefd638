package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/rackboot/rackboot/internal/controllers"
	"github.com/rackboot/rackboot/internal/health"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/provision"
)

// capiSettings is the resolved form: REST is nil when the controllers are off.
type capiSettings struct {
	REST                    *rest.Config
	Rack                    string
	LeaderElect             bool
	LeaderElectionNamespace string
	Namespace               string
	Concurrency             int
	Poll                    time.Duration
}

// resolve loads the kubeconfig, or the in-cluster configuration when rackboot runs in
// a pod (KUBERNETES_SERVICE_HOST set) and no kubeconfig is given. Its errors name the
// settings (capi.*), which resolveConfig locates.
func (c capiConfig) resolve(getenv func(string) string) (capiSettings, error) {
	s := capiSettings{Rack: c.Rack, LeaderElect: c.LeaderElection, LeaderElectionNamespace: c.LeaderElectionNamespace,
		Namespace: c.Namespace, Concurrency: c.Concurrency, Poll: c.Poll}
	var err error
	switch {
	case c.Kubeconfig != "":
		s.REST, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			return s, bad("capi.kubeconfig", "%v: give the kubeconfig of the management cluster", err)
		}
	case getenv("KUBERNETES_SERVICE_HOST") != "":
		s.REST, err = rest.InClusterConfig()
		if err != nil {
			return s, bad("capi.kubeconfig", "is empty and the in-cluster Kubernetes configuration does not load: %v: give a kubeconfig", err)
		}
	default:
		if c.Rack != "" {
			return s, errors.New("capi.rack: is set but there is no management cluster: give capi.kubeconfig (--kubeconfig)")
		}
		return s, nil
	}
	if c.Rack == "" {
		return s, errors.New("capi.rack: is required with the Cluster API controllers: name this rack (--rack; it is the failure domain of its machines)")
	}
	return s, nil
}

// addCAPI adds the Cluster API controllers to serve's services when a management
// cluster is configured.
func addCAPI(s capiSettings, store *inventory.BoltStore, prov *provision.Provisioner, w *wiring, log *slog.Logger) error {
	if s.REST == nil {
		return nil
	}
	m, err := controllers.New(controllers.Config{
		REST:                    s.REST,
		Rack:                    s.Rack,
		Inventory:               store,
		Provisioner:             controllers.ProvisionAdapter{Provisioner: prov, Leases: store, Timeline: store},
		Logger:                  log.With("service", "capi", "rack", s.Rack),
		LeaderElection:          s.LeaderElect,
		LeaderElectionNamespace: s.LeaderElectionNamespace,
		Namespace:               s.Namespace,
		Concurrency:             s.Concurrency,
		Poll:                    s.Poll,
	})
	if err != nil {
		return err
	}
	w.capiHook.m.Store(m)
	w.services = append(w.services, service{name: "capi", start: m.Start})
	w.checks = append(w.checks,
		health.Check{Name: "capi", Informational: true, Run: m.CheckAPI},
		health.Check{Name: "capi-leader", Informational: true, Run: m.CheckLeader})
	return nil
}

// capiHook forwards the provisioner's host transitions to the machine controller, so
// a machine sees its host provisioned, wiped or failed at once instead of at its next
// poll. The provisioner is built first; until the controllers exist (or when they are
// off) transitions go nowhere.
type capiHook struct {
	m atomic.Pointer[controllers.Manager]
}

// hostChanged is the provisioner's OnTransition; it never blocks.
func (h *capiHook) hostChanged(hostID string) {
	if m := h.m.Load(); m != nil {
		m.HostChanged(context.Background(), hostID)
	}
}

// metricsGatherer is what /metrics serves: rackboot's registry, and the Cluster API
// controllers' metrics from controller-runtime's registry (controllerMetrics).
//
// Both always, not only when the controllers run: the controller families are
// labelled vectors that have no samples, and so do not appear, until a controller
// starts. Without a management cluster the page is rackboot's alone, and serve need
// not know whether the controllers were configured.
func metricsGatherer(reg *prometheus.Registry) prometheus.Gatherer {
	return prometheus.Gatherers{reg, controllerMetrics(ctrlmetrics.Registry)}
}

// controllerMetrics is the part of controller-runtime's registry that belongs to
// the controllers: reconciles (controller_runtime_reconcile_total, _errors_total,
// _time_seconds, workers), workqueues (depth, adds, latency, retries), leader election
// and client-go's requests to the management cluster. controller-runtime registers
// into that process-wide registry from its packages' init, Go and process collectors
// included; those describe the same process as rackboot's own and would be gathered
// twice (prometheus.Gatherers fails on a duplicate series, and /metrics with it), so
// only the controller families are taken.
func controllerMetrics(g prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		out := mfs[:0]
		for _, mf := range mfs {
			if isControllerFamily(mf.GetName()) {
				out = append(out, mf)
			}
		}
		return out, err
	})
}

func isControllerFamily(name string) bool {
	for _, p := range []string{"controller_runtime_", "workqueue_", "leader_election_", "rest_client_"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
