package provision

import (
	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
)

// The agent protocol (agentapi) and the inventory's schema are kept apart: this is the
// one place that maps between them, so a change of either is a change here, not a
// silent change of the other.

// factsFromAgent is what the inventory keeps of a hello's facts.
func factsFromAgent(f agentapi.Facts) inventory.Facts {
	out := inventory.Facts{
		System:   inventory.System(f.System),
		CPU:      inventory.CPU{Count: f.CPU.Count, Sockets: f.CPU.Sockets, Model: f.CPU.Model, Flags: append([]string(nil), f.CPU.Flags...)},
		Memory:   inventory.Memory(f.Memory),
		Firmware: f.Firmware,
		Kernel:   f.Kernel,
	}
	for _, d := range f.Disks {
		out.Disks = append(out.Disks, inventory.Disk(d))
	}
	for _, n := range f.NICs {
		out.NICs = append(out.NICs, inventory.NIC(n))
	}
	return out
}

// AgentFacts is f in agentapi's terms, for the admin API's host views.
func AgentFacts(f inventory.Facts) agentapi.Facts {
	out := agentapi.Facts{
		System:   agentapi.System(f.System),
		CPU:      agentapi.CPU{Count: f.CPU.Count, Sockets: f.CPU.Sockets, Model: f.CPU.Model, Flags: append([]string(nil), f.CPU.Flags...)},
		Memory:   agentapi.Memory(f.Memory),
		Firmware: f.Firmware,
		Kernel:   f.Kernel,
	}
	for _, d := range f.Disks {
		out.Disks = append(out.Disks, agentapi.Disk(d))
	}
	for _, n := range f.NICs {
		out.NICs = append(out.NICs, agentapi.NIC(n))
	}
	return out
}

// AgentRootDisk and rootDiskFromAgent map the root disk hint, a plain struct on both
// sides.
func AgentRootDisk(h inventory.RootDiskHint) agentapi.RootDiskHint { return agentapi.RootDiskHint(h) }

func rootDiskFromAgent(h agentapi.RootDiskHint) inventory.RootDiskHint {
	return inventory.RootDiskHint(h)
}

// AgentProgress is p in agentapi's terms (nil stays nil), for the admin API.
func AgentProgress(p *inventory.Progress) *agentapi.Progress {
	if p == nil {
		return nil
	}
	return &agentapi.Progress{Phase: agentapi.Phase(p.Phase), Disk: p.Disk, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal, Message: p.Message}
}

// progressFromAgent is what the inventory keeps of an agent's progress report.
func progressFromAgent(p agentapi.Progress) *inventory.Progress {
	return &inventory.Progress{Phase: inventory.AgentPhase(p.Phase), Disk: p.Disk, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal, Message: p.Message}
}
