package bmc_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/lab"
	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// labBMCs is a network namespace holding lab BMCs: ipmi_sim instances configured by
// internal/lab/bmcsim (with a small chassis_control script standing in for QEMU) and internal/lab/bmcsim
// Redfish emulators over in-memory machines. rackboot's bmc client reaches them the way
// the lab's rackboot does: ipmitool runs inside the namespace (through a wrapper, since
// bmclib execs ipmitool itself) and TCP/UDP sockets are opened there.
type labBMCs struct {
	ns       *lab.Netns
	dir      string
	ipmitool string
	next     int
}

// requireLab skips (or, with RACKBOOT_REQUIRE_LAB=1, fails) without root, namespaces or
// the tools; -short skips too, for `make unit`.
func requireLab(t testing.TB, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("network-namespace test: skipped with -short")
	}
	lab.Require(t, tools...)
}

func newLabBMCs(t testing.TB) *labBMCs {
	t.Helper()
	ns, err := lab.NewNetns(t, "bmc")
	if err != nil {
		t.Fatal(err)
	}
	l := &labBMCs{ns: ns, dir: t.TempDir()}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	tool, err := exec.LookPath("ipmitool")
	if err != nil {
		t.Fatal(err)
	}
	// bmclib runs ipmitool with only IPMITOOL_PASSWORD in its environment, so
	// absolute paths; `ip netns exec` passes the environment through and execs.
	l.ipmitool = filepath.Join(l.dir, "ipmitool-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s \"$@\"\n", ip, ns.Name, tool)
	if err := os.WriteFile(l.ipmitool, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return l
}

// addr gives the next lab address, 10.77.210.N/32 on the namespace's loopback.
func (l *labBMCs) addr(t testing.TB) netip.Addr {
	t.Helper()
	l.next++
	a := netip.AddrFrom4([4]byte{10, 77, 210, byte(10 + l.next)})
	if err := l.ns.IP("addr", "add", a.String()+"/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	return a
}

// chassisScript is ipmi_sim's chassis_control stand-in for a VM: power and boot device
// in files under the state directory given as its first argument, every call logged.
// "shutdown" (ACPI soft-off) is obeyed at once, as by a cooperative OS.
const chassisScript = `#!/bin/sh
dir=$1; shift
op=$1; shift
echo "$op $*" >> "$dir/log"
case $op in
get)
  for p in "$@"; do
    case $p in
    power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)";;
    boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)";;
    *) echo "cannot get $p"; exit 1;;
    esac
  done;;
set)
  while [ $# -ge 2 ]; do
    case $1 in
    power) echo "$2" > "$dir/power";;
    reset) echo reset >> "$dir/resets";;
    shutdown) echo 0 > "$dir/power";;
    boot) echo "$2" > "$dir/boot";;
    identify) ;;
    *) echo "cannot set $1"; exit 1;;
    esac
    shift 2
  done;;
esac
`

// ipmiBMC is one running ipmi_sim.
type ipmiBMC struct {
	Addr  netip.AddrPort
	State string // the chassis script's directory: power, boot, log
}

func (b ipmiBMC) URL(user string) string { return fmt.Sprintf("ipmi://%s@%s", user, b.Addr) }

func (b ipmiBMC) file(name string) string {
	v, _ := os.ReadFile(filepath.Join(b.State, name))
	return strings.TrimSpace(string(v))
}

// addIPMI starts an ipmi_sim with user/password and waits until stock ipmitool
// (lanplus, suite 3) gets an answer from it.
func (l *labBMCs) addIPMI(t testing.TB, user, password string) ipmiBMC {
	t.Helper()
	a := netip.AddrPortFrom(l.addr(t), 623)
	dir := filepath.Join(l.dir, "ipmi-"+a.Addr().String())
	state := filepath.Join(dir, "chassis")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "chassis-control.sh")
	if err := os.WriteFile(script, []byte(chassisScript), 0o755); err != nil {
		t.Fatal(err)
	}
	args, err := bmcsim.WriteIPMI(bmcsim.IPMIConfig{
		Dir: dir, Name: "bmc-" + a.Addr().String(), Addr: a, Username: user, Password: password,
		ChassisControl: []string{"/bin/sh", script, state},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.ns.Start(t, filepath.Join(dir, "ipmi_sim.log"), args...); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, 10*time.Second, "ipmi_sim on "+a.String(), func(ctx context.Context) (bool, error) {
		out, err := l.ns.Exec(ctx, "env", "IPMITOOL_PASSWORD="+password, "ipmitool", "-I", "lanplus", "-C", "3",
			"-H", a.Addr().String(), "-p", "623", "-U", user, "-E", "-N", "1", "-R", "1", "chassis", "power", "status")
		if err != nil {
			return false, fmt.Errorf("%w: %v", lab.ErrNotYet, err)
		}
		return strings.Contains(string(out), "Chassis Power is"), nil
	})
	return ipmiBMC{Addr: a, State: state}
}

// addRedfish starts an emulator on a lab address and returns its URL.
func (l *labBMCs) addRedfish(t testing.TB, user, password string, machine bmcsim.Machine) string {
	t.Helper()
	a := netip.AddrPortFrom(l.addr(t), 8000)
	ln, err := l.ns.Listen("tcp", a.String())
	if err != nil {
		t.Fatal(err)
	}
	bmcsim.ServeRedfishTB(t, ln, user, password, machine)
	return fmt.Sprintf("redfish+http://%s@%s", user, a)
}

// libConfig reaches the namespace's BMCs.
func (l *labBMCs) libConfig() bmc.LibConfig {
	return bmc.LibConfig{IPMITool: l.ipmitool, Dial: l.ns.DialContext}
}

// openStore is a real inventory with its secret key, in a temporary directory.
func openStore(t testing.TB) *inventory.BoltStore {
	t.Helper()
	dir := t.TempDir()
	s, err := inventory.Open(filepath.Join(dir, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(dir, "secret.key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// addHost enrols host id with a BMC URL and password.
func addHost(t testing.TB, s *inventory.BoltStore, i int, id, url, password string) {
	t.Helper()
	mac := fmt.Sprintf("52:54:00:bb:%02x:%02x", i/256, i%256)
	if _, err := s.CreateHosts(context.Background(), inventory.Host{ID: id, MACs: []string{mac}, BMC: &inventory.BMC{URL: url, Password: password}}); err != nil {
		t.Fatal(err)
	}
}

// startService runs a bmc.Service until the test ends.
func startService(t testing.TB, cfg bmc.Config) *bmc.Service {
	t.Helper()
	svc, err := bmc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-svc.Ready():
	case err := <-done:
		t.Fatalf("bmc service stopped: %v", err)
	}
	return svc
}
