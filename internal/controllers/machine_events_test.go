package controllers

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
)

// machineAt is a RackbootMachine whose status is state and step on host h-01 of rack
// r1, with conditions type=reason:message.
func machineAt(state infrav1.MachineState, step string, conds ...metav1.Condition) *infrav1.RackbootMachine {
	rm := &infrav1.RackbootMachine{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "m", UID: "u1"},
		Spec:       infrav1.RackbootMachineSpec{Image: "debian-13"},
		Status:     infrav1.RackbootMachineStatus{State: state, Step: step, Conditions: conds},
	}
	if state != infrav1.StatePending && state != infrav1.StateWaitingForHost {
		rm.Status.Host, rm.Status.FailureDomain = "h-01", "r1"
	}
	return rm
}

func cond(typ, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: metav1.ConditionFalse, Reason: reason, Message: msg}
}

func TestTransitions(t *testing.T) {
	failedMsg := "host h-01 failed: agent: no disk matches the root disk hint"
	for _, tc := range []struct {
		name          string
		before, after *infrav1.RackbootMachine
		want          []string
	}{
		{
			name:   "claim and first step",
			before: machineAt(infrav1.StatePending, ""),
			after:  machineAt(infrav1.StateProvisioning, "powering on"),
			want:   []string{"Normal HostClaimed Claim: claimed host h-01 of rack r1", "Normal Provisioning Provision: host h-01: powering on"},
		},
		{
			name:   "claim before the provisioner names a step",
			before: machineAt(infrav1.StatePending, ""),
			after:  machineAt(infrav1.StateProvisioning, ""),
			want:   []string{"Normal HostClaimed Claim: claimed host h-01 of rack r1", "Normal Provisioning Provision: host h-01: provisioning image debian-13"},
		},
		{
			name:   "a new step",
			before: machineAt(infrav1.StateProvisioning, "booting the agent"),
			after:  machineAt(infrav1.StateProvisioning, "writing image 3%"),
			want:   []string{"Normal Provisioning Provision: host h-01: writing image"},
		},
		{
			name:   "progress within a step says nothing",
			before: machineAt(infrav1.StateProvisioning, "writing image 3%"),
			after:  machineAt(infrav1.StateProvisioning, "writing image 97%"),
		},
		{
			name:   "a retried step is a new step",
			before: machineAt(infrav1.StateProvisioning, "powering on"),
			after:  machineAt(infrav1.StateProvisioning, "powering on (attempt 2)"),
			want:   []string{"Normal Provisioning Provision: host h-01: powering on (attempt 2)"},
		},
		{
			name:   "provisioned",
			before: machineAt(infrav1.StateProvisioning, "cloud-init running"),
			after:  machineAt(infrav1.StateProvisioned, "phoned home"),
			want:   []string{"Normal Provisioned Provision: host h-01 runs image debian-13"},
		},
		{
			name:   "nothing changed",
			before: machineAt(infrav1.StateProvisioned, "phoned home"),
			after:  machineAt(infrav1.StateProvisioned, "phoned home"),
		},
		{
			name:   "failed: one warning for Ready and HostProvisioned alike",
			before: machineAt(infrav1.StateProvisioning, "writing image 40%", cond(clusterv1.ReadyCondition, infrav1.ReasonProvisioning, "")),
			after: machineAt(infrav1.StateFailed, "failed",
				cond(infrav1.HostProvisionedCondition, infrav1.ReasonHostFailed, failedMsg),
				cond(clusterv1.ReadyCondition, infrav1.ReasonHostFailed, failedMsg)),
			want: []string{"Warning HostFailed Provision: " + failedMsg},
		},
		{
			name:   "still failed",
			before: machineAt(infrav1.StateFailed, "failed", cond(clusterv1.ReadyCondition, infrav1.ReasonHostFailed, failedMsg)),
			after:  machineAt(infrav1.StateFailed, "failed", cond(clusterv1.ReadyCondition, infrav1.ReasonHostFailed, failedMsg)),
		},
		{
			name:   "no host free",
			before: machineAt(infrav1.StatePending, "", cond(clusterv1.ReadyCondition, infrav1.ReasonWaitingForBootstrapData, "")),
			after:  machineAt(infrav1.StateWaitingForHost, "", cond(clusterv1.ReadyCondition, infrav1.ReasonNoHostAvailable, "rack r1: 0 of 3 hosts match")),
			want:   []string{"Warning NoHostAvailable Claim: rack r1: 0 of 3 hosts match"},
		},
		{
			name:   "deletion starts the wipe",
			before: machineAt(infrav1.StateProvisioned, "phoned home"),
			after:  machineAt(infrav1.StateDeprovisioning, "wiping"),
			want:   []string{"Normal Deprovisioning Deprovision: host h-01: wiping"},
		},
		{
			name:   "a failed wipe is a warning, not a step",
			before: machineAt(infrav1.StateDeprovisioning, "wiping"),
			after:  machineAt(infrav1.StateDeprovisioning, "failed", cond(clusterv1.ReadyCondition, infrav1.ReasonHostFailed, "wiping host h-01 failed (BMC unreachable): retrying")),
			want:   []string{"Warning HostFailed Deprovision: wiping host h-01 failed (BMC unreachable): retrying"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, e := range transitions(observe(tc.before), observe(tc.after), tc.after) {
				got = append(got, fmt.Sprintf("%s %s %s: %s", e.Type, e.Reason, e.Action, e.Note))
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
		})
	}
}

// recorder keeps the events it is given.
type recorder struct {
	mu  sync.Mutex
	got []string
}

var _ events.EventRecorder = (*recorder)(nil)

func (r *recorder) Eventf(_, _ runtime.Object, typ, reason, action, note string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, typ+" "+reason+" "+fmt.Sprintf(note, args...))
}

func (r *recorder) WithLogger(klog.Logger) events.EventRecorderLogger { return nil }

// TestEventsOncePerChange: the controller's cache can hand a reconcile the status from
// before the controller's last patch; the events of that change are not told again.
// A step holding a percent sign reaches the Event verbatim.
func TestEventsOncePerChange(t *testing.T) {
	rec := &recorder{}
	r := &MachineReconciler{events: rec, observed: map[types.NamespacedName]observed{}}
	stale := machineAt(infrav1.StatePending, "")

	reconcile := func(cached, after *infrav1.RackbootMachine) {
		before := r.lastObserved(cached)
		r.recordTransitions(after, nil, before)
	}
	reconcile(stale, machineAt(infrav1.StateProvisioning, "writing image 5%"))
	reconcile(stale, machineAt(infrav1.StateProvisioning, "writing image 6%")) // the cache lags
	reconcile(machineAt(infrav1.StateProvisioning, "writing image 5%"), machineAt(infrav1.StateProvisioning, "writing image 80%"))
	reconcile(stale, machineAt(infrav1.StateProvisioned, "phoned home"))
	want := []string{
		"Normal HostClaimed claimed host h-01 of rack r1",
		"Normal Provisioning host h-01: writing image",
		"Normal Provisioned host h-01 runs image debian-13",
	}
	if d := cmp.Diff(want, rec.got); d != "" {
		t.Fatalf("events (-want +got):\n%s", d)
	}

	// A machine recreated under the same name starts afresh.
	fresh := machineAt(infrav1.StatePending, "")
	fresh.UID = "u2"
	rec.got = nil
	next := machineAt(infrav1.StateProvisioning, "powering on")
	next.UID = fresh.UID
	reconcile(fresh, next)
	if len(rec.got) != 2 {
		t.Fatalf("recreated machine: events %q, want its claim and step", rec.got)
	}

	r.event(machineAt(infrav1.StateProvisioning, ""), nil, machineEvent{"Normal", "Provisioning", "Provision", "host h-01: writing image 42%"})
	if got := rec.got[len(rec.got)-1]; got != "Normal Provisioning host h-01: writing image 42%" {
		t.Fatalf("note with a percent sign: %q", got)
	}
}
