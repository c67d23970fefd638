// Package controllers is rackboot's Cluster API infrastructure provider: the
// RackbootCluster and RackbootMachine controllers that run inside `rackboot serve`
// when it is given a management cluster (--kubeconfig, or in a pod).
//
// One rackboot serves one rack and reconciles only the machines placed on its rack:
//
//   - A Machine with a failure domain (Cluster API copies it from the
//     KubeadmControlPlane's spread over RackbootCluster.status.failureDomains, or from a
//     MachineDeployment's template) belongs to the rack of that name.
//   - A Machine without one is unplaced. Every instance tries it; the first that
//     claims a free matching host from its own inventory adopts the machine by setting
//     the label infrastructure.cluster.x-k8s.io/rackboot-rack with an optimistic-lock
//     patch (resourceVersion), so exactly one rack wins; a loser gives its claim back.
//     While no rack has a free host, each instance reports its own count of matching
//     hosts in the HostClaimed condition (several racks take turns writing it).
//
// Claims are the inventory's: "first available host matching the selector becomes
// owned by NAMESPACE/NAME" in one bbolt transaction (inventory.BoltStore.ClaimHost),
// idempotent per owner, so a restarted rackboot finds each machine's host again.
//
// The controllers never drive hosts themselves: a HostProvisioner (the provision
// package's state machine, through ProvisionAdapter) writes the image with the
// bootstrap data as user-data and wipes on deletion; the provisioner's OnTransition
// calls Manager.HostChanged so a machine follows its host without waiting for a poll. The providerID is rackboot://RACK/HOST; the kubelet gets it
// through the host's NoCloud meta-data (metadata.provider_id), which the cluster
// template passes as kubeletExtraArgs provider-id:
// "{{ ds.meta_data.metadata.provider_id }}" (CABPK's cloud-config is a Jinja
// template). Ignition hosts cannot template that: their KubeadmConfig must set the
// provider ID another way (a Butane addition writing a kubelet drop-in), or the Node
// keeps none and Cluster API cannot match it to its Machine.
//
// A host that fails or vanishes from the inventory turns the RackbootMachine's Ready
// condition False with reason HostFailed or HostLost; Cluster API mirrors it as the
// Machine's InfrastructureReady, which a MachineHealthCheck's
// unhealthyMachineConditions (type InfrastructureReady, status False, with a timeout
// longer than a provisioning) remediates by deleting the Machine.
//
// What kubectl shows: the RackbootMachine's printer columns (api/v1alpha1), its
// conditions, whose messages carry the host's current step, and Events
// (machine_events.go) derived from the status changes the controller stores: one per
// claim, step, end and release, never one per poll.
package controllers
