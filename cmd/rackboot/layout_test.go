package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestNoLabCodeInRackboot is issue 12's "the lab emulators move out of the production
// binary": the binary real racks run links none of the lab's packages (the BMC emulators
// are lab/cmd/rackboot-bmcsim), and no command of it, hidden or not, is the lab's.
func TestNoLabCodeInRackboot(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/rackboot/rackboot/cmd/rackboot").Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/rackboot: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps ./cmd/rackboot listed only %d packages: %q", len(deps), deps)
	}
	for _, p := range deps {
		if p == "github.com/rackboot/rackboot/lab" || strings.HasPrefix(p, "github.com/rackboot/rackboot/lab/") {
			t.Errorf("rackboot links %s, a lab package", p)
		}
	}

	var help bytes.Buffer
	root := newRootCmd(&cliEnv{stdout: &help, stderr: &help, getenv: func(string) string { return "" }})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "lab" || strings.Contains(sub.Short, "lab") && strings.Contains(sub.Short, "emulat") {
				t.Errorf("rackboot has the lab's command %q (hidden: %v)", sub.CommandPath(), sub.Hidden)
			}
			walk(sub)
		}
	}
	walk(root)
	if len(root.Commands()) < 5 {
		t.Fatalf("rackboot has only %d commands", len(root.Commands()))
	}
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(help.String(), "serve") {
		t.Fatalf("rackboot --help does not list serve:\n%s", help.String())
	}
	for _, line := range strings.Split(help.String(), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "lab" {
			t.Errorf("rackboot --help lists a lab command: %q", line)
		}
	}
}
