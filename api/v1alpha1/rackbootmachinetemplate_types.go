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
	// +required
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
