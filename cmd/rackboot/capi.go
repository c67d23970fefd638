package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	"github.com/rackboot/rackboot/controllers"
	"github.com/rackboot/rackboot/inventory"
	"github.com/rackboot/rackboot/metadata"
	"github.com/rackboot/rackboot/provision"
)

// capiFlags turn on the Cluster API controllers inside `rackboot serve`.
type capiFlags struct {
	kubeconfig, rack, leaderElectionNamespace, namespace string
	leaderElect                                          bool
}

func (f *capiFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the Cluster API management cluster: runs the RackbootMachine and RackbootCluster controllers (in a pod, the in-cluster configuration is used without it)")
	fs.StringVar(&f.rack, "rack", "", "this rack's name: the failure domain whose machines this rackboot reconciles, and RACK in providerIDs rackboot://RACK/HOST (required with the controllers)")
	fs.BoolVar(&f.leaderElect, "leader-elect", true, "with several rackboot instances for one rack, let one (holding Lease rackboot-RACK) act at a time")
	fs.StringVar(&f.leaderElectionNamespace, "leader-election-namespace", "rackboot-system", "namespace of the leader-election Lease")
	fs.StringVar(&f.namespace, "capi-namespace", "", "reconcile only the RackbootMachines and RackbootClusters of this namespace (default all)")
}

// capiSettings is the resolved form: REST is nil when the controllers are off.
type capiSettings struct {
	REST                    *rest.Config
	Rack                    string
	LeaderElect             bool
	LeaderElectionNamespace string
	Namespace               string
}

// resolve loads the kubeconfig, or the in-cluster configuration when rackboot runs in
// a pod (KUBERNETES_SERVICE_HOST set) and no kubeconfig is given.
func (f capiFlags) resolve(getenv func(string) string) (capiSettings, error) {
	s := capiSettings{Rack: f.rack, LeaderElect: f.leaderElect, LeaderElectionNamespace: f.leaderElectionNamespace, Namespace: f.namespace}
	var err error
	switch {
	case f.kubeconfig != "":
		s.REST, err = clientcmd.BuildConfigFromFlags("", f.kubeconfig)
		if err != nil {
			return s, fmt.Errorf("--kubeconfig: %w", err)
		}
	case getenv("KUBERNETES_SERVICE_HOST") != "":
		s.REST, err = rest.InClusterConfig()
		if err != nil {
			return s, fmt.Errorf("in-cluster Kubernetes configuration: %w (or give --kubeconfig)", err)
		}
	default:
		if f.rack != "" {
			return s, errors.New("--rack is set but there is no management cluster: give --kubeconfig")
		}
		return s, nil
	}
	if f.rack == "" {
		return s, errors.New("--rack is required with the Cluster API controllers: name this rack (it is the failure domain of its machines)")
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
		Provisioner:             capiProvisioner{p: prov, store: store},
		Logger:                  log.With("service", "capi", "rack", s.Rack),
		LeaderElection:          s.LeaderElect,
		LeaderElectionNamespace: s.LeaderElectionNamespace,
		Namespace:               s.Namespace,
	})
	if err != nil {
		return err
	}
	w.services = append(w.services, service{name: "capi", start: m.Start})
	return nil
}

// capiProvisioner adapts the provision package to the controllers' HostProvisioner.
type capiProvisioner struct {
	p     *provision.Provisioner
	store *inventory.BoltStore
}

var _ controllers.HostProvisioner = capiProvisioner{}

func (a capiProvisioner) Provision(ctx context.Context, id string, req controllers.ProvisionRequest) error {
	r := provision.Request{Image: req.Image, RootDisk: req.RootDisk, Metadata: req.Metadata, Owner: req.Owner}
	var err error
	switch req.Format {
	case controllers.FormatIgnition:
		r.Ignition, err = controllers.IgnitionWithAddition(req.UserData, req.ButaneAddition, metadata.RenderButane)
	default:
		r.UserData, err = controllers.CloudConfigWithAddition(req.UserData, req.CloudConfigAddition)
	}
	if err != nil {
		return err
	}
	_, err = a.p.Provision(ctx, id, r)
	return err
}

func (a capiProvisioner) Deprovision(ctx context.Context, id, owner string) error {
	_, err := a.p.Release(ctx, id, provision.ReleaseOptions{Owner: owner})
	return err
}

func (a capiProvisioner) HostStatus(ctx context.Context, id string) (controllers.HostStatus, error) {
	h, err := a.p.Get(ctx, id)
	if err != nil {
		return controllers.HostStatus{}, err
	}
	st := controllers.HostStatus{State: h.State, Reason: h.StateReason}
	if h.Provision != nil {
		st.ImageOwner = h.Provision.Requester
	}
	st.Addresses = []clusterv1.MachineAddress{{Type: clusterv1.MachineHostName, Address: metadata.Hostname(h)}}
	ip := h.IP
	if ip == "" {
		// No reservation: the address its DHCP lease gives it.
		for _, mac := range h.MACs {
			if l, err := a.store.GetLease(ctx, mac); err == nil && l.State == inventory.LeaseBound {
				ip = l.IP
				break
			}
		}
	}
	if ip != "" {
		st.Addresses = append(st.Addresses, clusterv1.MachineAddress{Type: clusterv1.MachineInternalIP, Address: ip})
	}
	return st, nil
}
