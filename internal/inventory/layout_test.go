package inventory

import (
	"os/exec"
	"strings"
	"testing"
)

// TestInventoryImportsNoWireTypes: the inventory stores its own types (facts.go), so a
// change of the agent protocol or the admin API cannot change what inventory.db holds.
func TestInventoryImportsNoWireTypes(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/rackboot/rackboot/internal/inventory").Output()
	if err != nil {
		t.Fatalf("go list -deps ./inventory: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps ./inventory listed only %q", deps)
	}
	for _, p := range deps {
		switch p {
		case "github.com/rackboot/rackboot/agentapi", "github.com/rackboot/rackboot/admin":
			t.Errorf("inventory imports %s", p)
		}
	}
}
