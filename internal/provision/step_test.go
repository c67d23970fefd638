package provision

import (
	"testing"

	"github.com/rackboot/rackboot/internal/inventory"
)

// TestStep: what `kubectl get rackbootmachines` shows for each point of a provisioning.
func TestStep(t *testing.T) {
	op := func(phase inventory.OpPhase, attempt int, pr *inventory.Progress) *inventory.Operation {
		return &inventory.Operation{Phase: phase, Attempt: attempt, Progress: pr}
	}
	cases := []struct {
		name    string
		h       inventory.Host
		fetched bool
		want    string
	}{
		{"power", inventory.Host{State: inventory.StateProvisioning, Operation: op(inventory.PhasePower, 1, nil)}, false, "powering on"},
		{"second boot", inventory.Host{State: inventory.StateProvisioning, Operation: op(inventory.PhaseBooting, 2, nil)}, false, "booting the agent (attempt 2)"},
		{"agent hello", inventory.Host{State: inventory.StateProvisioning, Operation: op(inventory.PhaseAgent, 1, nil)}, false, "agent running"},
		{"writing", inventory.Host{State: inventory.StateProvisioning, Operation: op(inventory.PhaseAgent, 1,
			&inventory.Progress{Phase: inventory.AgentWrite, BytesDone: 42 << 20, BytesTotal: 100 << 20})}, false, "writing image 42%"},
		{"verify", inventory.Host{State: inventory.StateProvisioning, Operation: op(inventory.PhaseAgent, 1, &inventory.Progress{Phase: inventory.AgentVerify})}, false, "verifying image"},
		{"disk boot", inventory.Host{State: inventory.StateProvisioning, Operation: op(inventory.PhaseDiskBoot, 1, nil)}, false, "booting from disk"},
		{"cloud-init", inventory.Host{State: inventory.StateProvisioning, Operation: op(inventory.PhaseDiskBoot, 1, nil)}, true, "cloud-init running"},
		{"provisioned", inventory.Host{State: inventory.StateProvisioned}, true, "phoned home"},
		{"wiping", inventory.Host{State: inventory.StateDeprovisioning, Operation: op(inventory.PhaseAgent, 1, &inventory.Progress{Phase: inventory.AgentWipe})}, false, "wiping"},
		{"wipe boot", inventory.Host{State: inventory.StateDeprovisioning, Operation: op(inventory.PhaseBooting, 1, nil)}, false, "booting the agent"},
		{"failed", inventory.Host{State: inventory.StateFailed, Operation: op(inventory.PhaseAgent, 3, nil)}, false, "failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Step(tc.h, tc.fetched); got != tc.want {
				t.Errorf("Step = %q, want %q", got, tc.want)
			}
		})
	}
}
