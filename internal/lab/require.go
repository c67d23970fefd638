package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireEnv names the environment variable that turns a missing lab prerequisite from a
// skip into a failure. The Makefile's test target sets it, so CI cannot pass by skipping
// every end-to-end test.
const RequireEnv = "RACKBOOT_REQUIRE_LAB"

// Check reports why the lab cannot run here: not root, no network namespaces, or one of
// tools missing from PATH. nil means it can.
func Check(tools ...string) error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("not running as root: network namespaces, bridges and taps need root (run the tests with sudo, or in CI as root)"))
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			errs = append(errs, fmt.Errorf("%s is not installed: %s", tool, installHint(tool)))
		}
	}
	if len(errs) == 0 {
		// Root in an unprivileged container cannot create namespaces; find out now
		// rather than half-way through a test.
		if err := probeNetns(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Require skips t with the reason when the lab cannot run here, or fails it when
// RACKBOOT_REQUIRE_LAB=1 (as `make test` sets), so CI notices a missing tool instead of
// silently skipping. tools are looked up in PATH in addition to ip(8).
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if testing.Short() {
		// make unit: the fast tests only, whoever runs them.
		t.Skip("lab test: skipped with -short")
	}
	err := Check(tools...)
	if err == nil {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("lab prerequisites missing and %s=1:\n%v", RequireEnv, err)
	}
	t.Skipf("skipping lab test (set %s=1 to make this a failure):\n%v", RequireEnv, err)
}

// EnvtestAssets is the directory of the envtest binaries `make envtest` builds
// (KUBEBUILDER_ASSETS, else ~/.cache/rackboot-envtest), checked to hold kube-apiserver,
// etcd and bins. A missing one skips t, or fails it when RACKBOOT_REQUIRE_LAB=1.
func EnvtestAssets(t testing.TB, bins ...string) string {
	t.Helper()
	dir, err := EnvtestDir(bins...)
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return dir
}

// EnvtestDir is EnvtestAssets for programs: the directory, or an error naming the
// missing binary and `make envtest`.
func EnvtestDir(bins ...string) (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".cache", "rackboot-envtest")
		}
	}
	for _, b := range append([]string{"kube-apiserver", "etcd"}, bins...) {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("envtest binary %s not found in %s (KUBEBUILDER_ASSETS): run make envtest", b, dir)
		}
	}
	return dir, nil
}

func installHint(tool string) string {
	pkg := map[string]string{
		"ip":                 "iproute2",
		"qemu-system-x86_64": "qemu-system-x86",
		"dnsmasq":            "dnsmasq-base",
		"busybox":            "busybox-static",
		"tftp":               "tftp-hpa",
		"curl":               "curl",
		"dhclient":           "isc-dhcp-client",
		"dhcrelay":           "isc-dhcp-relay",
		"apt-get":            "apt",
		"dpkg-deb":           "dpkg",
		"ipmi_sim":           "openipmi",
		"ipmitool":           "ipmitool",
	}[tool]
	if pkg == "" {
		return "install it"
	}
	return "apt-get install " + pkg
}

func probeNetns() error {
	name, err := uniqueName("probe")
	if err != nil {
		return err
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("cannot create a network namespace (ip netns add: %v: %s): the lab needs CAP_SYS_ADMIN and CAP_NET_ADMIN", err, out)
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, out)
	}
	return nil
}
