package provision

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/agentapi"
)

// TestConvertKeepsEverything: what an agent reports survives the trip into the
// inventory's own types and back to the admin API unchanged, and is stored under the
// JSON names inventory.db has always used (a file written when the inventory embedded
// agentapi's types reads back whole).
func TestConvertKeepsEverything(t *testing.T) {
	facts := agentapi.Facts{
		System: agentapi.System{UUID: "8c2e4a4e-0e7a-4f9a-9d51-1f2e3d4c5b6a", Vendor: "Dell Inc.", Product: "PowerEdge R650",
			Serial: "ABC123", BoardVendor: "Dell", BoardProduct: "0X1Y2Z", BoardSerial: "B1", BIOSVendor: "Dell", BIOSVersion: "1.2.3"},
		CPU:    agentapi.CPU{Count: 64, Sockets: 2, Model: "Xeon", Flags: []string{"vmx", "aes"}},
		Memory: agentapi.Memory{InstalledBytes: 256 << 30, UsableBytes: 250 << 30, DIMMs: 8},
		Disks: []agentapi.Disk{{Name: "nvme0n1", SizeBytes: 960 << 30, Model: "PM9A3", Serial: "S1", WWN: "eui.1",
			Rotational: false, Removable: false, ReadOnly: false, LogicalSectorBytes: 4096},
			{Name: "sda", SizeBytes: 16 << 30, Removable: true, ReadOnly: true, Rotational: true, LogicalSectorBytes: 512}},
		NICs: []agentapi.NIC{{Name: "eno1", MAC: "52:54:00:00:00:01", SpeedMbps: 25000, Carrier: true, Driver: "mlx5_core", Boot: true},
			{Name: "eno2", MAC: "52:54:00:00:00:02"}},
		Firmware: "uefi",
		Kernel:   "6.1.0-40-amd64",
	}
	stored := factsFromAgent(facts)
	if diff := cmp.Diff(facts, AgentFacts(stored)); diff != "" {
		t.Errorf("facts after the inventory and back (-reported +shown):\n%s", diff)
	}
	sameJSON(t, "facts", facts, stored)
	facts.CPU.Flags[0] = "changed"
	if stored.CPU.Flags[0] != "vmx" {
		t.Error("the stored facts share the hello's CPU flags")
	}

	pr := agentapi.Progress{Phase: agentapi.PhaseWrite, Disk: "vda", BytesDone: 1 << 20, BytesTotal: 1 << 30, Message: "m"}
	if diff := cmp.Diff(&pr, AgentProgress(progressFromAgent(pr))); diff != "" {
		t.Errorf("progress after the inventory and back (-reported +shown):\n%s", diff)
	}
	sameJSON(t, "progress", pr, progressFromAgent(pr))
	if AgentProgress(nil) != nil {
		t.Error("AgentProgress(nil) is not nil")
	}

	hint := agentapi.RootDiskHint{Name: "sda", Serial: "S", WWN: "W", MinSizeBytes: 1, MaxSizeBytes: 2, Prefer: agentapi.PreferLargest}
	if got := AgentRootDisk(rootDiskFromAgent(hint)); got != hint {
		t.Errorf("root disk hint after the inventory and back: %+v, want %+v", got, hint)
	}
	sameJSON(t, "root disk hint", hint, rootDiskFromAgent(hint))
}

func sameJSON(t *testing.T, what string, wire, stored any) {
	t.Helper()
	w, err := json.Marshal(wire)
	if err != nil {
		t.Fatal(err)
	}
	s, err := json.Marshal(stored)
	if err != nil {
		t.Fatal(err)
	}
	if string(w) != string(s) {
		t.Errorf("%s: stored as\n%s\nbut the agent protocol (and older inventory files) say\n%s", what, s, w)
	}
}
