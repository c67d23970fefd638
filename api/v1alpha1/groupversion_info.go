// Package v1alpha1 holds rackboot's Cluster API infrastructure types in group
// infrastructure.cluster.x-k8s.io: RackbootCluster, RackbootMachine and
// RackbootMachineTemplate. They follow the v1beta2 infrastructure provider contract of
// sigs.k8s.io/cluster-api v1.14: spec.providerID, status.initialization.provisioned,
// status.addresses, status.failureDomain(s), metav1 conditions and the paused
// annotation. The CRDs under config/ are generated from these files by `make generate`.
//
// +kubebuilder:object:generate=true
// +groupName=infrastructure.cluster.x-k8s.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the group and version of these types.
var GroupVersion = schema.GroupVersion{Group: "infrastructure.cluster.x-k8s.io", Version: "v1alpha1"}

// AddToScheme registers these types with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&RackbootCluster{}, &RackbootClusterList{},
		&RackbootMachine{}, &RackbootMachineList{},
		&RackbootMachineTemplate{}, &RackbootMachineTemplateList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
