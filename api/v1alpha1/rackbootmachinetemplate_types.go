package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

// RackbootMachineTemplateSpec holds the machine spec that MachineDeployments and
// KubeadmControlPlanes stamp out.
type RackbootMachineTemplateSpec struct {
	// +required
	Template RackbootMachineTemplateResource `json:"template"`
}

// RackbootMachineTemplateResource is one templated RackbootMachine.
type RackbootMachineTemplateResource struct {
	// metadata is copied onto each RackbootMachine.
	// +optional
	ObjectMeta clusterv1.ObjectMeta `json:"metadata,omitempty,omitzero"`
	// spec is immutable, as Cluster API's contract asks of machine templates:
	// MachineDeployments and KubeadmControlPlanes roll machines out only when pointed
	// at another template, so an edit in place would reach only the machines created
	// after it. metadata stays mutable.
	//
	// The rule is CEL because rackboot runs no admission webhook. A webhook could let
	// the topology controller's dry-run (annotation topology.cluster.x-k8s.io/dry-run)
	// through, which ClusterClass needs to rotate a changed template; CEL cannot see
	// that annotation. rackboot ships no ClusterClass; one that uses this template
	// needs that webhook first.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.template.spec is immutable: create a new RackbootMachineTemplate and point the MachineDeployment or KubeadmControlPlane at it (Cluster API then rolls the machines out)"
	Spec RackbootMachineSpec `json:"spec"`
}

// +kubebuilder:object:root=true
// +kubebuilder:resource:path=rackbootmachinetemplates,scope=Namespaced,categories=cluster-api,shortName=rbmt
// +kubebuilder:storageversion
// +kubebuilder:metadata:labels="cluster.x-k8s.io/v1beta2=v1alpha1"
// +kubebuilder:printcolumn:name="Image",type="string",JSONPath=".spec.template.spec.image"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"

// RackbootMachineTemplate is the template of RackbootMachines.
type RackbootMachineTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec RackbootMachineTemplateSpec `json:"spec,omitempty"`
}

// +kubebuilder:object:root=true

// RackbootMachineTemplateList is a list of RackbootMachineTemplates.
type RackbootMachineTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RackbootMachineTemplate `json:"items"`
}
