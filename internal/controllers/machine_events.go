package controllers

import (
	"fmt"
	"regexp"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/util/conditions"

	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
)

// Kubernetes Events on RackbootMachines (`kubectl describe rackbootmachine`, `kubectl
// get events`) tell a machine's story: the claim, each provisioning or wiping step, the
// end (Provisioned, or a Warning with the reason) and the release. They are derived
// from the changes of the status the controller writes, once a patch has stored it,
// so a reconcile that changes nothing says nothing, however often the machine is
// polled. A step is one event however its percentage moves.
//
// Event reasons, beside the condition reasons they repeat (HostFailed, HostLost,
// NoHostAvailable, InvalidSpec, InternalError: Warnings):
const (
	// EventHostClaimed: a host of the rack was claimed for the machine.
	EventHostClaimed = "HostClaimed"
	// EventProvisioning: the host entered a provisioning step.
	EventProvisioning = "Provisioning"
	// EventProvisioned: the host runs the machine's image.
	EventProvisioned = "Provisioned"
	// EventDeprovisioning: the host entered a wiping step.
	EventDeprovisioning = "Deprovisioning"
	// EventHostReleased: the wiped host went back to the rack's inventory.
	EventHostReleased = "HostReleased"
)

// warningReasons are the condition reasons that become Warning events when a
// condition takes them.
var warningReasons = map[string]bool{
	infrav1.ReasonHostFailed:      true,
	infrav1.ReasonHostLost:        true,
	infrav1.ReasonNoHostAvailable: true,
	infrav1.ReasonInvalidSpec:     true,
	infrav1.ReasonInternalError:   true,
}

// observed is what of a machine's status its events are derived from.
type observed struct {
	uid        types.UID
	host, rack string
	state      infrav1.MachineState
	step       string            // without its percentage (stepKind)
	reasons    map[string]string // condition type → reason
}

func observe(rm *infrav1.RackbootMachine) observed {
	o := observed{
		uid: rm.UID, host: rm.Status.Host, rack: rm.Status.FailureDomain,
		state: rm.Status.State, step: stepKind(rm.Status.Step), reasons: map[string]string{},
	}
	for _, c := range rm.Status.Conditions {
		o.reasons[c.Type] = c.Reason
	}
	return o
}

var percent = regexp.MustCompile(`\s+\d+%$`)

// stepKind is a step without its progress: "writing image 42%" is "writing image".
func stepKind(step string) string { return percent.ReplaceAllString(step, "") }

// machineEvent is one Kubernetes Event to record on a RackbootMachine.
type machineEvent struct {
	Type, Reason, Action, Note string
}

// transitions are the events that say how a machine went from before to after (its
// status now, rm's). Pure: table-tested in machine_events_test.go.
func transitions(before, after observed, rm *infrav1.RackbootMachine) []machineEvent {
	var evs []machineEvent
	if after.host != "" && after.host != before.host {
		evs = append(evs, machineEvent{corev1.EventTypeNormal, EventHostClaimed, "Claim",
			fmt.Sprintf("claimed host %s of rack %s", after.host, after.rack)})
	}
	// A Warning for each condition that took a failure reason; the same reason and
	// message on two conditions (Ready mirrors HostProvisioned) is one event.
	seen := map[string]bool{}
	for _, typ := range []string{infrav1.HostClaimedCondition, infrav1.HostProvisionedCondition, clusterv1.ReadyCondition} {
		reason := after.reasons[typ]
		if !warningReasons[reason] || before.reasons[typ] == reason {
			continue
		}
		msg := ""
		if c := conditions.Get(rm, typ); c != nil {
			msg = c.Message
		}
		if seen[reason+"\x00"+msg] {
			continue
		}
		seen[reason+"\x00"+msg] = true
		evs = append(evs, machineEvent{corev1.EventTypeWarning, reason, action(after.state), msg})
	}
	switch after.state {
	case infrav1.StateProvisioning, infrav1.StateDeprovisioning:
		if after.step == "failed" || (after.state == before.state && after.step == before.step) {
			break
		}
		reason, note := EventProvisioning, fmt.Sprintf("host %s: provisioning image %s", after.host, rm.Spec.Image)
		if after.state == infrav1.StateDeprovisioning {
			reason, note = EventDeprovisioning, fmt.Sprintf("host %s: wiping and powering off", after.host)
		}
		if after.step != "" {
			note = fmt.Sprintf("host %s: %s", after.host, after.step)
		}
		evs = append(evs, machineEvent{corev1.EventTypeNormal, reason, action(after.state), note})
	case infrav1.StateProvisioned:
		if before.state != infrav1.StateProvisioned {
			evs = append(evs, machineEvent{corev1.EventTypeNormal, EventProvisioned, "Provision",
				fmt.Sprintf("host %s runs image %s", after.host, rm.Spec.Image)})
		}
	}
	return evs
}

// action is the Event's action: what the controller was doing.
func action(s infrav1.MachineState) string {
	switch s {
	case infrav1.StateDeprovisioning:
		return "Deprovision"
	case infrav1.StatePending, infrav1.StateWaitingForHost:
		return "Claim"
	}
	return "Provision"
}

// lastObserved is the status this controller last stored for rm: the cache can lag
// behind the controller's own patches, and a stale status would repeat the events of
// the last change. A machine not in memory (after a restart or a leader change) starts
// from the cached status, so a restart repeats nothing either.
func (r *MachineReconciler) lastObserved(rm *infrav1.RackbootMachine) observed {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o, ok := r.observed[types.NamespacedName{Namespace: rm.Namespace, Name: rm.Name}]; ok && o.uid == rm.UID {
		return o
	}
	return observe(rm)
}

// recordTransitions records the events from before to rm's status, which a patch has
// just stored, and remembers that status.
func (r *MachineReconciler) recordTransitions(rm *infrav1.RackbootMachine, related runtime.Object, before observed) {
	after := observe(rm)
	for _, e := range transitions(before, after, rm) {
		r.event(rm, related, e)
	}
	key := types.NamespacedName{Namespace: rm.Namespace, Name: rm.Name}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rm.DeletionTimestamp.IsZero() || len(rm.Finalizers) > 0 {
		r.observed[key] = after
	} else {
		delete(r.observed, key)
	}
}

// event records one Event on rm; related (the Machine) may be nil.
func (r *MachineReconciler) event(rm *infrav1.RackbootMachine, related runtime.Object, e machineEvent) {
	if r.events == nil {
		return
	}
	// The note is a format string to the recorder; a step like "writing image 42%" is
	// not.
	r.events.Eventf(rm, related, e.Type, e.Reason, e.Action, "%s", e.Note)
}

func (r *MachineReconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.observed, key)
}
