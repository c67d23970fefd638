package packaging

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDistDebInstallsIntoFreshRoot installs the .deb for this machine into an empty
// directory tree with dpkg --root (the maintainer scripts run chrooted there, with
// busybox as /bin/sh), checks what landed where, that config.yaml is a conffile dpkg keeps
// across a reinstall, that the installed binary runs, and that systemd-analyze verify
// accepts the unit inside that root.
func TestDistDebInstallsIntoFreshRoot(t *testing.T) {
	dist := needDist(t)
	needRoot(t)
	needTool(t, "dpkg")
	analyze := needTool(t, "systemd-analyze")
	busybox := needTool(t, "busybox")
	version := distVersion(t, dist)
	deb := filepath.Join(dist, fmt.Sprintf("rackboot_%s_%s.deb", strings.TrimPrefix(version, "v"), runtime.GOARCH))

	// The control file, as dpkg-deb reads it.
	for field, want := range map[string]string{"Package": "rackboot", "Version": strings.TrimPrefix(version, "v"), "Architecture": runtime.GOARCH, "Recommends": "ipmitool"} {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "--field", deb, field)); got != want {
			t.Errorf("control %s = %q, want %q", field, got, want)
		}
	}
	if got := strings.TrimSpace(run(t, "dpkg-deb", "--info", deb, "conffiles")); got != "/etc/rackboot/config.yaml" {
		t.Errorf("conffiles = %q, want /etc/rackboot/config.yaml", got)
	}

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "bin", "usr/bin", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The maintainer scripts' shell inside the root.
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"sh", "["} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", l)); err != nil {
			t.Fatal(err)
		}
	}
	dpkg := func(args ...string) string {
		t.Helper()
		return run(t, "dpkg", append([]string{"--root=" + root, "--force-not-root", "--log=/dev/null"}, args...)...)
	}
	dpkg("--install", deb)

	if got := strings.TrimSpace(run(t, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f", "${Status} ${Version}", "rackboot")); got != "install ok installed "+strings.TrimPrefix(version, "v") {
		t.Errorf("dpkg-query status = %q, want installed %s", got, version)
	}
	for path, mode := range map[string]os.FileMode{
		"usr/bin/rackboot":                                  0o755,
		"etc/rackboot/config.yaml":                          0o644,
		"lib/systemd/system/rackboot.service":               0o644,
		"usr/share/bash-completion/completions/rackboot":    0o644,
		"usr/share/zsh/vendor-completions/_rackboot":        0o644,
		"usr/share/fish/vendor_completions.d/rackboot.fish": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("not installed: %v", err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("/%s mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "usr/share/bash-completion/completions/rackboot")); err != nil || !strings.Contains(string(b), "__rackboot") {
		t.Errorf("bash completion is not rackboot's (%v):\n%.200s", err, b)
	}
	if out := run(t, filepath.Join(root, "usr/bin/rackboot"), "version"); !strings.Contains(out, version) {
		t.Errorf("installed rackboot version = %q, want %s", out, version)
	}

	// The operator's edit of the conffile survives reinstalling (and so upgrading to a
	// package whose default did not change).
	conf := filepath.Join(root, "etc/rackboot/config.yaml")
	edited := []byte("dataDir: /var/lib/rackboot\naddress: 10.0.0.2\ndhcp: {mode: proxy}\n")
	if err := os.WriteFile(conf, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg("--install", deb)
	if b, _ := os.ReadFile(conf); string(b) != string(edited) {
		t.Errorf("reinstall replaced the edited conffile:\n%s", b)
	}

	// The unit as systemd reads it, with ExecStart resolved inside the root, beside
	// systemd's own targets, slices and sockets (what the systemd package installs:
	// the unit's default dependencies name them).
	units := filepath.Join(root, "lib/systemd/system")
	for _, pat := range []string{"*.target", "*.slice", "*.socket"} {
		host, _ := filepath.Glob(filepath.Join("/lib/systemd/system", pat))
		for _, f := range host {
			b, err := os.ReadFile(f)
			if err != nil {
				continue // a dangling alias
			}
			if err := os.WriteFile(filepath.Join(units, filepath.Base(f)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	unit := filepath.Join(units, "rackboot.service")
	out := run(t, analyze, "verify", "--man=no", "--root="+root, unit)
	if strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify rackboot.service complained:\n%s", out)
	}
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=notify",
		"ExecStart=/usr/bin/rackboot serve --config /etc/rackboot/config.yaml --data-dir /var/lib/rackboot",
		"StateDirectory=rackboot",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_RAW\n",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_RAW\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("rackboot.service lacks %q", want)
		}
	}

	// Removing keeps the conffile (dpkg's rule); purging takes it.
	dpkg("--remove", "rackboot")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/rackboot")); !os.IsNotExist(err) {
		t.Errorf("binary left after dpkg --remove: %v", err)
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("dpkg --remove took the conffile: %v", err)
	}
	dpkg("--purge", "rackboot")
	if _, err := os.Stat(conf); !os.IsNotExist(err) {
		t.Errorf("conffile left after dpkg --purge: %v", err)
	}
}
