package provision

import (
	"fmt"

	"github.com/rackboot/rackboot/internal/inventory"
)

// Step says in a few words where a host is in its current operation, for people
// watching a machine (`kubectl get rackbootmachines`, the RackbootMachine's conditions):
// "powering on", "booting the agent", "writing image 42%", "booting from disk",
// "cloud-init running", "phoned home", "wiping". userDataFetched tells whether the
// installed system has fetched its user-data since the image was written (a
// metadata.fetch event on the host's timeline): cloud-init is running then.
//
// It is a pure function of the host record, so it never disagrees with the state
// machine that wrote that record.
func Step(h inventory.Host, userDataFetched bool) string {
	op := h.Operation
	switch h.State {
	case inventory.StateProvisioned:
		return "phoned home"
	case inventory.StateFailed:
		return "failed"
	case inventory.StateAvailable:
		return "available"
	case inventory.StateProvisioning, inventory.StateDeprovisioning, inventory.StateInspecting:
	default:
		return string(h.State)
	}
	if op == nil {
		return string(h.State)
	}
	attempt := ""
	if op.Attempt > 1 {
		attempt = fmt.Sprintf(" (attempt %d)", op.Attempt)
	}
	switch op.Phase {
	case inventory.PhasePower:
		return "powering on" + attempt
	case inventory.PhaseBooting:
		return "booting the agent" + attempt
	case inventory.PhaseDiskBoot:
		if userDataFetched {
			return "cloud-init running"
		}
		return "booting from disk"
	case inventory.PhaseAgent:
	default:
		return string(op.Phase)
	}
	if h.State == inventory.StateDeprovisioning {
		return "wiping" + attempt
	}
	pr := op.Progress
	if pr == nil {
		return "agent running" + attempt
	}
	switch pr.Phase {
	case inventory.AgentDownload, inventory.AgentWrite:
		verb := "writing image"
		if pr.Phase == inventory.AgentDownload {
			verb = "downloading image"
		}
		if pr.BytesTotal > 0 {
			return fmt.Sprintf("%s %d%%", verb, pr.BytesDone*100/pr.BytesTotal)
		}
		return verb
	case inventory.AgentVerify:
		return "verifying image"
	case inventory.AgentCloudInit:
		return "writing cloud-init config"
	case inventory.AgentWipe:
		return "wiping"
	case inventory.AgentInspect:
		return "inspecting hardware"
	case inventory.AgentNetwork:
		return "agent: network"
	default:
		return "agent: " + string(pr.Phase)
	}
}
