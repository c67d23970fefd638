package packaging

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// distDir is where make dist writes (the repository's dist/); RACKBOOT_DIST names
// another.
func distDir() string {
	if d := os.Getenv("RACKBOOT_DIST"); d != "" {
		return d
	}
	return "../../dist"
}

// requireLab: RACKBOOT_REQUIRE_LAB=1 (make test) turns a missing artifact or tool into a
// failure instead of a skip.
func requireLab() bool { return os.Getenv("RACKBOOT_REQUIRE_LAB") == "1" }

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if requireLab() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// needDist returns the absolute dist directory, or skips (fails under make test) when
// make dist has not run.
func needDist(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(distDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "SHA256SUMS")); err != nil {
		skipOrFail(t, "no dist/SHA256SUMS: run make dist first (%v)", err)
	}
	return dir
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		skipOrFail(t, "%s not installed (make deps installs it): %v", name, err)
	}
	return p
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root (dpkg --root runs the maintainer scripts in a chroot)")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = nil
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out.Bytes(), errb.Bytes())
	}
	return out.String() + errb.String()
}

// distVersion is the release make dist built: the version directory of the provider
// repository.
func distVersion(t *testing.T, dist string) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(dist, "infrastructure-rackboot", "v*"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("want one dist/infrastructure-rackboot/vX.Y.Z, got %v (%v)", dirs, err)
	}
	return filepath.Base(dirs[0])
}

// TestDistBinariesStatic: every binary is static (no ELF interpreter: bootenv import
// refuses a dynamic agent) for its architecture, the host's runs `version` and reports
// the release, and SHA256SUMS verifies with sha256sum -c.
func TestDistBinariesStatic(t *testing.T) {
	dist := needDist(t)
	version := distVersion(t, dist)
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		bin := filepath.Join(dist, "rackboot-linux-"+arch)
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		if f.Machine != machine {
			t.Errorf("%s: ELF machine %v, want %v", bin, f.Machine, machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked (has an ELF interpreter): build with CGO_ENABLED=0", bin)
			}
		}
		f.Close()
	}
	out := run(t, filepath.Join(dist, "rackboot-linux-"+runtime.GOARCH), "version")
	if !strings.Contains(out, version) {
		t.Errorf("rackboot version = %q, want it to name %s", out, version)
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", "SHA256SUMS")
	cmd.Dir = dist
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c SHA256SUMS: %v\n%s", err, b)
	} else {
		for _, want := range []string{"rackboot-linux-amd64: OK", "rackboot-linux-arm64: OK", ".deb: OK", "clusterctl.yaml: OK"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("SHA256SUMS does not cover %q:\n%s", want, b)
			}
		}
	}
}
