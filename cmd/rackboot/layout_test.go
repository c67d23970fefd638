package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestNoLabCodeInRackboot is issue 12's "the lab emulators move out of the production
// binary": the binary real racks run links none of the lab's packages (the BMC emulators
// are internal/lab/cmd/rackboot-bmcsim), and no command of it, hidden or not, is the lab's.
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
		if p == "github.com/rackboot/rackboot/internal/lab" || strings.HasPrefix(p, "github.com/rackboot/rackboot/internal/lab/") {
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

// TestOnlyPublicPackagesImportable is issue 12's "go list shows only api/, agentapi/ and
// the admin client importable from outside the module": a module of its own (requiring this one
// through a replace, with its go.sum, so nothing is downloaded) imports every library package of
// rackboot, and the real `go list` must refuse all but the public ones.
func TestOnlyPublicPackagesImportable(t *testing.T) {
	public := map[string]bool{
		"github.com/rackboot/rackboot/admin":        true,
		"github.com/rackboot/rackboot/agentapi":     true,
		"github.com/rackboot/rackboot/api/v1alpha1": true,
	}
	out, err := exec.Command("go", "list", "-f", "{{.Name}} {{.ImportPath}}", "github.com/rackboot/rackboot/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rootDir := strings.TrimSpace(string(root))
	sums, err := os.ReadFile(filepath.Join(rootDir, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	write("go.mod", "module example.com/outside\n\ngo 1.26.0\n\nrequire github.com/rackboot/rackboot v0.0.0\n\nreplace github.com/rackboot/rackboot => "+rootDir+"\n")
	write("go.sum", string(sums))
	importer := map[string]string{} // example.com/outside/pN -> the rackboot package it imports
	n := 0
	for line := range strings.Lines(string(out)) {
		name, path, _ := strings.Cut(strings.TrimSpace(line), " ")
		if name == "main" {
			continue
		}
		p := fmt.Sprintf("p%d", n)
		n++
		write(p+"/p.go", "package "+p+"\n\nimport _ \""+path+"\"\n")
		importer["example.com/outside/"+p] = path
	}
	if n < 15 {
		t.Fatalf("go list found only %d library packages in rackboot:\n%s", n, out)
	}
	cmd := exec.Command("go", "list", "-e", "-f", "{{.ImportPath}}\t{{if .Error}}{{.Error.Err}}{{end}}{{range .DepsErrors}}{{.Err}} {{end}}", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod -trimpath", "GOPROXY=off", "GOSUMDB=off")
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list from outside the module: %v\n%s", err, res)
	}
	var importable []string
	for line := range strings.Lines(string(res)) {
		imp, msg, _ := strings.Cut(strings.TrimRight(line, "\n"), "\t")
		path, ok := importer[imp]
		if !ok {
			t.Fatalf("unexpected go list line %q", line)
		}
		delete(importer, imp)
		switch {
		case msg == "":
			importable = append(importable, path)
			if !public[path] {
				t.Errorf("%s is importable from another module: move it under internal/", path)
			}
		case public[path]:
			t.Errorf("%s is public but another module cannot import it: %s", path, msg)
		case !strings.Contains(msg, "use of internal package"):
			t.Errorf("importing %s from another module failed, but not because it is internal: %s", path, msg)
		}
	}
	if len(importer) > 0 {
		t.Errorf("go list said nothing about %v", importer)
	}
	slices.Sort(importable)
	if want := slices.Sorted(maps.Keys(public)); !slices.Equal(importable, want) {
		t.Errorf("importable from outside: %v, want %v", importable, want)
	}
}
