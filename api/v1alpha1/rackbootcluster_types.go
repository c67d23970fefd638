package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

// ClusterFinalizer lets the RackbootCluster controller see a deletion through.
const ClusterFinalizer = "rackbootcluster.infrastructure.cluster.x-k8s.io"

// RackbootClusterSpec is what the cluster operator sets.
type RackbootClusterSpec struct {
	// controlPlaneEndpoint is where the workload cluster's API server answers: a VIP
	// (kube-vip, keepalived) or a load balancer the operator provides in front of the
	// control-plane hosts. rackboot does not create one; it reports it to Cluster API.
	// +optional
	ControlPlaneEndpoint clusterv1.APIEndpoint `json:"controlPlaneEndpoint,omitempty,omitzero"`

	// racks lists the racks (each served by one `rackboot serve --rack NAME`) this
	// cluster may place machines on. They become the Cluster's failure domains, so
	// KubeadmControlPlane spreads control-plane machines over them. Empty means no
	// failure domains: every machine is unplaced and the first rack with a free
	// matching host takes it (see RackbootMachine).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Racks []string `json:"racks,omitempty"`
}

// RackbootClusterStatus is what rackboot reports.
type RackbootClusterStatus struct {
	// initialization says when the cluster's infrastructure is ready: as soon as the
	// control-plane endpoint is set.
	// +optional
	Initialization RackbootClusterInitializationStatus `json:"initialization,omitempty,omitzero"`

	// failureDomains are the racks of spec.racks, each suitable for control planes.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=100
	FailureDomains []clusterv1.FailureDomain `json:"failureDomains,omitempty"`

	// conditions: Ready and Paused.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// RackbootClusterInitializationStatus is the contract's initialization block.
// +kubebuilder:validation:MinProperties=1
type RackbootClusterInitializationStatus struct {
	// provisioned is true once the control-plane endpoint is known.
	// +optional
	Provisioned *bool `json:"provisioned,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:resource:path=rackbootclusters,scope=Namespaced,categories=cluster-api,shortName=rbc
// +kubebuilder:storageversion
// +kubebuilder:metadata:labels="cluster.x-k8s.io/v1beta2=v1alpha1"
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Cluster",type="string",JSONPath=".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']",description="Cluster to which this RackbootCluster belongs"
// +kubebuilder:printcolumn:name="Endpoint",type="string",JSONPath=".spec.controlPlaneEndpoint.host",description="Control-plane endpoint host"
// +kubebuilder:printcolumn:name="Provisioned",type="boolean",JSONPath=".status.initialization.provisioned",description="Infrastructure is ready"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"

// RackbootCluster is the infrastructure of a Cluster API cluster on rackboot racks.
type RackbootCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RackbootClusterSpec   `json:"spec,omitempty"`
	Status RackbootClusterStatus `json:"status,omitempty"`
}

// GetConditions implements the Cluster API conditions getter.
func (c *RackbootCluster) GetConditions() []metav1.Condition { return c.Status.Conditions }

// SetConditions implements the Cluster API conditions setter.
func (c *RackbootCluster) SetConditions(conds []metav1.Condition) { c.Status.Conditions = conds }

// +kubebuilder:object:root=true

// RackbootClusterList is a list of RackbootClusters.
type RackbootClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RackbootCluster `json:"items"`
}
