package main

import (
	"bytes"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	env := &cliEnv{stdout: &out, stderr: &out, getenv: func(string) string { return "" }}
	root := newRootCmd(env)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// The agent wipes disks when told to: outside the boot environment it refuses to run
// without --force.
func TestAgentCmdNeedsForce(t *testing.T) {
	_, err := runCLI(t, "agent")
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("rackboot agent = %v, want a refusal naming --force", err)
	}
	// With --force and a command line without rackboot.url it stops before touching
	// anything.
	_, err = runCLI(t, "agent", "--force", "--root", t.TempDir(), "--cmdline", "console=ttyS0 quiet")
	if err == nil || !strings.Contains(err.Error(), "rackboot.url") {
		t.Errorf("rackboot agent --force = %v, want an error naming rackboot.url", err)
	}
}

func TestBootenvImportNeedsDeb(t *testing.T) {
	_, err := runCLI(t, "bootenv", "import", "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "deb") {
		t.Errorf("bootenv import without --deb = %v", err)
	}
	_, err = runCLI(t, "bootenv", "import", "--data-dir", t.TempDir(), "--deb", "/nonexistent.deb", "--agent", "/nonexistent")
	if err == nil {
		t.Error("bootenv import of a missing file succeeded")
	}
}
