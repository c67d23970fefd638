package controllers

import (
	"context"

	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/netconfig"
)

// HostProvisioner is what the machine controller needs from rackboot's provisioner
// (the host state machine of the provision package). The controller never drives the
// agent or the BMC itself.
//
// Every method must record its effect in the inventory before it returns (the host's
// State moves to provisioning or deprovisioning in the same call), so the next
// HostStatus already shows it; the work itself (power, agent, wipe) runs afterwards.
// A host missing from the inventory is reported as an error wrapping
// inventory.ErrNotFound.
type HostProvisioner interface {
	// Provision starts writing req.Image to the host with req's user-data. Calling it
	// again with a request of the same Owner while the host is provisioning or
	// provisioned for that owner is a no-op.
	Provision(ctx context.Context, hostID string, req ProvisionRequest) error
	// Deprovision starts wiping the host and powering it off, on behalf of owner (the
	// claim owner: a host claimed by someone else is refused). It is a no-op while the
	// host is already deprovisioning, and when it is available and holds no image.
	Deprovision(ctx context.Context, hostID, owner string) error
	// HostStatus says where the host is.
	HostStatus(ctx context.Context, hostID string) (HostStatus, error)
}

// UserDataFormat is the bootstrap secret's "format" key, as the Cluster API bootstrap
// contract defines it.
type UserDataFormat string

const (
	FormatCloudConfig UserDataFormat = "cloud-config"
	FormatIgnition    UserDataFormat = "ignition"
)

// ProvisionRequest is one machine's wish for its host.
type ProvisionRequest struct {
	// Owner is the claim owner, "NAMESPACE/NAME" of the RackbootMachine.
	Owner string
	// Image names an image of the rack's catalog.
	Image    string
	RootDisk agentapi.RootDiskHint
	// UserData is the bootstrap data secret's "value", verbatim: kubeadm init/join
	// secrets, so it must reach this host and no other.
	UserData []byte
	// Format says whether UserData is a cloud-config (served as NoCloud user-data) or
	// Ignition JSON (served to Ignition).
	Format UserDataFormat
	// CloudConfigAddition (cloud-config format) becomes a second part of a MIME
	// multipart user-data; ButaneAddition (ignition format) is rendered with Butane and
	// merged into the Ignition config.
	CloudConfigAddition string
	ButaneAddition      string
	// Metadata is served in the host's NoCloud meta-data under "metadata": provider_id
	// (rackboot://RACK/HOST), which the cluster template hands to the kubelet as
	// --provider-id through CABPK's Jinja template
	// {{ ds.meta_data.metadata.provider_id }}, and the machine and cluster names.
	Metadata map[string]string
	// Network is the RackbootMachine's spec.network: the installed OS's network; nil
	// keeps the host's own, or the default.
	Network *netconfig.Spec
}

// HostStatus is where a host is, as far as a machine cares.
type HostStatus struct {
	State inventory.State
	// Reason explains State (always set for failed).
	Reason string
	// Step says where the host is in its operation ("writing image 42%", "cloud-init
	// running"), shown as the RackbootMachine's status.step.
	Step string
	// ImageOwner is the Owner of the request whose image the host holds or is getting;
	// empty once the host is wiped.
	ImageOwner string
	// Addresses are the host's hostname and IP addresses.
	Addresses []clusterv1.MachineAddress
}

// Inventory is the part of the inventory the controllers use; *inventory.BoltStore
// implements it.
type Inventory interface {
	ClaimHost(ctx context.Context, req inventory.ClaimRequest) (inventory.Host, error)
	HostByOwner(ctx context.Context, owner string) (inventory.Host, error)
	ReleaseHost(ctx context.Context, id, owner string) (inventory.Host, error)
	GetHost(ctx context.Context, id string) (inventory.Host, error)
}

var _ Inventory = (*inventory.BoltStore)(nil)
