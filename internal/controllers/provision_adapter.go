package controllers

import (
	"context"

	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/metadata"
	"github.com/rackboot/rackboot/internal/provision"
)

// LeaseLookup finds a MAC's DHCP lease; *inventory.BoltStore implements it.
type LeaseLookup interface {
	GetLease(ctx context.Context, mac string) (inventory.Lease, error)
}

// ProvisionAdapter is the HostProvisioner `rackboot serve` gives the controllers: the
// provision package's state machine. It lives here rather than in the command so the
// envtest tests can run the real provisioner behind the real controllers
// (TestRealClusterAPIRealProvisioner) without an import cycle.
type ProvisionAdapter struct {
	Provisioner *provision.Provisioner
	// Leases give a host without a reservation the address it leased.
	Leases LeaseLookup
	// Timeline, when set, tells whether a host booted from its disk has fetched its
	// user-data yet (the step "cloud-init running").
	Timeline EventLister
}

// EventLister reads a host's timeline; *inventory.BoltStore implements it.
type EventLister interface {
	Events(ctx context.Context, hostID string, after uint64) ([]inventory.Event, error)
}

var _ HostProvisioner = ProvisionAdapter{}

func (a ProvisionAdapter) Provision(ctx context.Context, id string, req ProvisionRequest) error {
	r := provision.Request{Image: req.Image, RootDisk: req.RootDisk, Metadata: req.Metadata, Owner: req.Owner, Network: req.Network}
	var err error
	switch req.Format {
	case FormatIgnition:
		r.Ignition, err = IgnitionWithAddition(req.UserData, req.ButaneAddition, metadata.RenderButane)
	default:
		r.UserData, err = CloudConfigWithAddition(req.UserData, req.CloudConfigAddition)
	}
	if err != nil {
		return err
	}
	_, err = a.Provisioner.Provision(ctx, id, r)
	return err
}

func (a ProvisionAdapter) Deprovision(ctx context.Context, id, owner string) error {
	_, err := a.Provisioner.Release(ctx, id, provision.ReleaseOptions{Owner: owner})
	return err
}

func (a ProvisionAdapter) HostStatus(ctx context.Context, id string) (HostStatus, error) {
	h, err := a.Provisioner.Get(ctx, id)
	if err != nil {
		return HostStatus{}, err
	}
	st := HostStatus{State: h.State, Reason: h.StateReason}
	if h.Provision != nil {
		st.ImageOwner = h.Provision.Requester
	}
	st.Step = provision.Step(h, a.userDataFetched(ctx, h))
	st.Addresses = []clusterv1.MachineAddress{{Type: clusterv1.MachineHostName, Address: metadata.Hostname(h)}}
	ip := h.IP
	if ip == "" && a.Leases != nil {
		// No reservation: the address its DHCP lease gives it.
		for _, mac := range h.MACs {
			if l, err := a.Leases.GetLease(ctx, mac); err == nil && l.State == inventory.LeaseBound {
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

// userDataFetched says whether a host booting from its freshly written disk has fetched
// its user-data: a metadata.fetch event of the user-data after the image was written.
func (a ProvisionAdapter) userDataFetched(ctx context.Context, h inventory.Host) bool {
	if a.Timeline == nil || h.Operation == nil || h.Operation.Phase != inventory.PhaseDiskBoot || h.Provision == nil {
		return false
	}
	evs, err := a.Timeline.Events(ctx, h.ID, 0)
	if err != nil {
		return false
	}
	for i := len(evs) - 1; i >= 0 && !evs[i].Time.Before(h.Provision.WrittenAt); i-- {
		if evs[i].Type == metadata.EventFetch && evs[i].Fields["doc"] == metadata.DocUserData {
			return true
		}
	}
	return false
}
