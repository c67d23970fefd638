package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

const (
	// MachineFinalizer holds a RackbootMachine until its host is wiped and released.
	MachineFinalizer = "rackbootmachine.infrastructure.cluster.x-k8s.io"

	// RackLabel records which rack took an unplaced machine (one whose Machine has no
	// failure domain). The first rackboot instance with a free matching host sets it,
	// guarded by the object's resourceVersion, so exactly one rack owns the machine.
	RackLabel = "infrastructure.cluster.x-k8s.io/rackboot-rack"

	// ProviderIDPrefix starts every providerID: rackboot://RACK/HOST.
	ProviderIDPrefix = "rackboot://"
)

// RackbootMachineSpec says what host a machine wants and what to put on it.
type RackbootMachineSpec struct {
	// providerID is rackboot://RACK/HOST, set by rackboot once the host is claimed. The
	// kubelet gets the same value through the host's cloud-init meta-data
	// (metadata.provider_id); see config/templates/cluster-template.yaml.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	ProviderID string `json:"providerID,omitempty"`

	// hostSelector picks hosts by their inventory labels (`rackboot host label`). An
	// empty selector matches every host of the rack.
	// +optional
	HostSelector metav1.LabelSelector `json:"hostSelector,omitempty,omitzero"`

	// image is the OS image to write: a name from the rack's image catalog
	// (`rackboot image add`).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Image string `json:"image"`

	// rootDiskHint chooses the disk the image is written to; without one the agent
	// takes the smallest disk that fits the image.
	// +optional
	RootDiskHint RootDiskHint `json:"rootDiskHint,omitempty,omitzero"`

	// userDataAdditions are merged with the bootstrap data the kubeadm bootstrap
	// provider writes.
	// +optional
	UserDataAdditions UserDataAdditions `json:"userDataAdditions,omitempty,omitzero"`

	// network is the installed OS's network (NICs, bonds, VLANs, static addresses,
	// routes, DNS). Unset: the host's own spec, else its reserved address, static.
	// +optional
	Network *NetworkSpec `json:"network,omitempty"`
}

// RootDiskHint narrows the choice of the root disk; every field set must match.
// +kubebuilder:validation:MinProperties=1
type RootDiskHint struct {
	// deviceName is the kernel name, e.g. sda or nvme0n1 (with or without /dev/).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	DeviceName string `json:"deviceName,omitempty"`
	// serial is the disk's serial number.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Serial string `json:"serial,omitempty"`
	// wwn is the disk's World Wide Name.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	WWN string `json:"wwn,omitempty"`
	// minSizeGiB is the smallest acceptable size.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MinSizeGiB int32 `json:"minSizeGiB,omitempty"`
	// maxSizeGiB is the largest acceptable size.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxSizeGiB int32 `json:"maxSizeGiB,omitempty"`
	// prefer picks among the disks that match: smallest (the default) or largest.
	// +optional
	// +kubebuilder:validation:Enum=smallest;largest
	Prefer string `json:"prefer,omitempty"`
}

// UserDataAdditions are the operator's additions to a host's user-data.
// +kubebuilder:validation:MinProperties=1
type UserDataAdditions struct {
	// cloudConfig is a #cloud-config document sent as a second part of a MIME
	// multipart user-data beside the bootstrap cloud-config; cloud-init merges them.
	// Used when the bootstrap format is cloud-config.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	CloudConfig string `json:"cloudConfig,omitempty"`
	// butane is a Butane config rendered to Ignition and merged into the bootstrap
	// Ignition config. Used when the bootstrap format is ignition.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	Butane string `json:"butane,omitempty"`
}

// MachineState is the one-word summary in `kubectl get rackbootmachines`.
// +kubebuilder:validation:Enum=Pending;WaitingForHost;Provisioning;Provisioned;Deprovisioning;Failed;Lost
type MachineState string

const (
	// StatePending: waiting for the cluster infrastructure or the bootstrap data.
	StatePending MachineState = "Pending"
	// StateWaitingForHost: no host of the rack is free and matches the selector.
	StateWaitingForHost MachineState = "WaitingForHost"
	// StateProvisioning: a host is claimed and being written.
	StateProvisioning MachineState = "Provisioning"
	// StateProvisioned: the host booted its image with the bootstrap data.
	StateProvisioned MachineState = "Provisioned"
	// StateDeprovisioning: the machine is deleted; its host is being wiped.
	StateDeprovisioning MachineState = "Deprovisioning"
	// StateFailed: the host failed provisioning or later (see the Ready condition).
	StateFailed MachineState = "Failed"
	// StateLost: the claimed host disappeared from the inventory.
	StateLost MachineState = "Lost"
)

// RackbootMachineStatus is what rackboot reports.
type RackbootMachineStatus struct {
	// initialization.provisioned is true once the host runs the image with its
	// bootstrap data.
	// +optional
	Initialization RackbootMachineInitializationStatus `json:"initialization,omitempty,omitzero"`

	// host is the inventory ID of the claimed host.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Host string `json:"host,omitempty"`

	// failureDomain is the rack the machine runs in.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	FailureDomain string `json:"failureDomain,omitempty"`

	// state summarises the conditions.
	// +optional
	State MachineState `json:"state,omitempty"`

	// step says where the host is in its provisioning, from its timeline: claimed,
	// powering on, booting the agent, writing image N%, verifying image, booting from
	// disk, cloud-init running, phoned home; wiping when the machine is deleted.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Step string `json:"step,omitempty"`

	// addresses of the host: its hostname and its IPv4 address.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Addresses []clusterv1.MachineAddress `json:"addresses,omitempty"`

	// conditions: Ready (mirrored by Cluster API as the Machine's InfrastructureReady),
	// HostClaimed, HostProvisioned, Paused. A host that failed or vanished sets Ready
	// False with reason HostFailed or HostLost, which a MachineHealthCheck's
	// unhealthyMachineConditions can act on.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// RackbootMachineInitializationStatus is the contract's initialization block.
// +kubebuilder:validation:MinProperties=1
type RackbootMachineInitializationStatus struct {
	// provisioned is true when the host is provisioned.
	// +optional
	Provisioned *bool `json:"provisioned,omitempty"`
}

// Condition types and reasons of RackbootMachine. Ready is clusterv1.ReadyCondition.
const (
	// HostClaimedCondition: a host of the rack belongs to this machine.
	HostClaimedCondition = "HostClaimed"
	// HostProvisionedCondition: the claimed host runs the image.
	HostProvisionedCondition = "HostProvisioned"

	// ReasonWaitingForClusterInfrastructure: the Cluster's infrastructure is not ready.
	ReasonWaitingForClusterInfrastructure = "WaitingForClusterInfrastructure"
	// ReasonWaitingForBootstrapData: the Machine has no bootstrap data secret yet.
	ReasonWaitingForBootstrapData = "WaitingForBootstrapData"
	// ReasonNoHostAvailable: no free host matches; the message says how many match and
	// what they are doing.
	ReasonNoHostAvailable = "NoHostAvailable"
	// ReasonHostClaimed: a host was claimed.
	ReasonHostClaimed = "HostClaimed"
	// ReasonProvisioning: the host is being provisioned.
	ReasonProvisioning = "Provisioning"
	// ReasonProvisioned: the host is provisioned.
	ReasonProvisioned = "Provisioned"
	// ReasonHostFailed: the provisioner put the host into the failed state.
	ReasonHostFailed = "HostFailed"
	// ReasonHostLost: the claimed host is no longer in the inventory.
	ReasonHostLost = "HostLost"
	// ReasonDeprovisioning: the machine is being deleted and its host wiped.
	ReasonDeprovisioning = "Deprovisioning"
	// ReasonInvalidSpec: the spec cannot be acted on (e.g. a bad selector).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonInternalError: rackboot could not do its part (bootstrap secret unreadable,
	// provisioner error); retried.
	ReasonInternalError = "InternalError"
)

// +kubebuilder:object:root=true
// +kubebuilder:resource:path=rackbootmachines,scope=Namespaced,categories=cluster-api,shortName=rbm
// +kubebuilder:storageversion
// +kubebuilder:metadata:labels="cluster.x-k8s.io/v1beta2=v1alpha1"
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Cluster",type="string",JSONPath=".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']",description="Cluster to which this RackbootMachine belongs"
// +kubebuilder:printcolumn:name="Machine",type="string",JSONPath=".metadata.ownerReferences[?(@.kind==\"Machine\")].name",description="Cluster API Machine that owns this RackbootMachine"
// +kubebuilder:printcolumn:name="Host",type="string",JSONPath=".status.host",description="Inventory ID of the claimed host"
// +kubebuilder:printcolumn:name="Rack",type="string",JSONPath=".status.failureDomain",description="Rack (failure domain) whose rackboot serves the machine"
// +kubebuilder:printcolumn:name="State",type="string",JSONPath=".status.state",description="Where the machine is in its life"
// +kubebuilder:printcolumn:name="Step",type="string",JSONPath=".status.step",description="Where the host is: powering on, writing image N%, booting from disk, cloud-init running, phoned home"
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].status",description="The Ready condition: True once the host runs its image, False while waiting, provisioning, failed or lost"
// +kubebuilder:printcolumn:name="ProviderID",type="string",JSONPath=".spec.providerID",description="rackboot://RACK/HOST"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Reason",type="string",priority=1,JSONPath=".status.conditions[?(@.type==\"Ready\")].reason",description="Reason of the Ready condition (kubectl describe shows its message)"

// RackbootMachine is the infrastructure of one Cluster API Machine: a bare-metal host
// claimed from a rack's inventory.
type RackbootMachine struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RackbootMachineSpec   `json:"spec,omitempty"`
	Status RackbootMachineStatus `json:"status,omitempty"`
}

// GetConditions implements the Cluster API conditions getter.
func (m *RackbootMachine) GetConditions() []metav1.Condition { return m.Status.Conditions }

// SetConditions implements the Cluster API conditions setter.
func (m *RackbootMachine) SetConditions(conds []metav1.Condition) { m.Status.Conditions = conds }

// +kubebuilder:object:root=true

// RackbootMachineList is a list of RackbootMachines.
type RackbootMachineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RackbootMachine `json:"items"`
}
