package lab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// debianPython is Debian's interpreter, where python3-sushy lives (a python3 earlier in
// PATH may be a pyenv shim without it).
const debianPython = "/usr/bin/python3"

// requireSushy skips, or fails under RACKBOOT_REQUIRE_LAB=1, without python3-sushy.
func requireSushy(t testing.TB) {
	t.Helper()
	out, err := exec.Command(debianPython, "-c", "import sushy").CombinedOutput()
	if err == nil {
		return
	}
	msg := "python3-sushy is not installed (apt-get install python3-sushy): " + strings.TrimSpace(string(out))
	if os.Getenv(RequireEnv) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// vmDirFor returns a directory for a BMC-managed VM: under the test's log directory when
// its path leaves room for bmcsim's QMP socket, else a short temporary one.
func vmDirFor(t testing.TB, logs, name string) string {
	t.Helper()
	dir := filepath.Join(logs, name)
	if len(dir)+len("/"+bmcsim.QMPSocket) > 100 {
		dir = filepath.Join(t.TempDir(), name)
		t.Logf("VM directory of %s is %s (the log directory's path is too long for a unix socket)", name, dir)
	}
	return dir
}

// startBMCVM makes a BMC-managed VM on seg with a boot-sector disk (WriteBootDisk), so
// "boot from disk" is visible: SeaBIOS runs it, OVMF tries it and fails over.
func startBMCVM(t testing.TB, seg *Segment, logs string, vm VM, proto BMCProtocol) *BMCVM {
	t.Helper()
	dir := vmDirFor(t, logs, vm.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	vm.Disk = filepath.Join(dir, "disk.img")
	if err := WriteBootDisk(vm.Disk, 1<<20); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	v, err := seg.StartBMCVM(t.Context(), t, BMCVMConfig{VM: vm, Dir: dir, BMC: BMCConfig{Protocol: proto}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s BMC %s ready in %v (VM directory %s)", vm.Name, proto, v.BMC.URL(), time.Since(start).Round(time.Millisecond), v.Dir.Path)
	// The BMC's address exists in the lab namespace only (this goroutine's thread is in
	// the root namespace: Netns.Do never lends a thread out while it is switched).
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == v.BMC.Addr.Addr() {
			t.Fatalf("BMC address %s is on an interface of the root namespace", p.Addr())
		}
	}
	return v
}

// procGone reports whether pid has exited (a zombie counts: QEMU's parent may be PID 1
// after the chassis-control process that started it exited).
func procGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || len(b) < i+3 || b[i+2] == 'Z'
}

// wantOn returns the VM's QEMU PID, failing t if the VM is off.
func wantOn(t testing.TB, v *BMCVM) int {
	t.Helper()
	pid, err := v.PID()
	if err != nil || pid == 0 || procGone(pid) {
		t.Fatalf("VM %s is not running: pid %d, %v", v.VM.Name, pid, err)
	}
	return pid
}

// wantOff fails t unless the VM directory says off and the old QEMU (if any) is gone.
func wantOff(t testing.TB, v *BMCVM, oldPID int) {
	t.Helper()
	if st, err := v.PowerState(t.Context()); err != nil || st != bmcsim.PowerOff {
		t.Fatalf("VM %s: power state %q, %v; want off", v.VM.Name, st, err)
	}
	if oldPID != 0 && !procGone(oldPID) {
		t.Fatalf("VM %s: QEMU %d still runs after power off", v.VM.Name, oldPID)
	}
}

// waitNewQEMU waits until the VM runs a QEMU other than old (a power cycle through IPMI
// completes after ipmitool has returned: ipmi_sim powers on a second later).
func waitNewQEMU(t testing.TB, v *BMCVM, old int, timeout time.Duration) int {
	t.Helper()
	var pid int
	WaitFor(t, timeout, "VM "+v.VM.Name+" to run a new QEMU", func(context.Context) (bool, error) {
		var err error
		pid, err = v.PID()
		return pid != 0 && pid != old && !procGone(pid), err
	})
	return pid
}

// waitSerialMatch waits until the VM's serial console (of the current power-on) matches
// re and returns the whole console then.
func waitSerialMatch(t testing.TB, v *BMCVM, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	err := Poll(t.Context(), timeout, fmt.Sprintf("VM %s's serial console to show %q", v.VM.Name, re), FileMatches(v.SerialLog(), re, nil))
	if err != nil {
		t.Fatalf("%v\nserial console:\n%s\nQEMU log:\n%s", err, Tail(v.SerialLog(), 40), Tail(v.QEMULog(), 10))
	}
	b, _ := os.ReadFile(v.SerialLog())
	return string(b)
}

// before fails t unless first occurs in console and earlier than any of later.
func before(t testing.TB, console string, first *regexp.Regexp, later ...*regexp.Regexp) {
	t.Helper()
	loc := first.FindStringIndex(console)
	if loc == nil {
		t.Fatalf("serial console lacks %q:\n%s", first, console)
	}
	t.Logf("serial console: %q", console[loc[0]:loc[1]])
	for _, re := range later {
		if l := re.FindStringIndex(console); l != nil && l[0] < loc[0] {
			t.Errorf("serial console shows %q before %q: the firmware did not try that first:\n%s", re, first, console)
		}
	}
}

// waitBMCPhoneHome waits for the phone-home marker on a BMC-managed VM's console and
// returns the guest's IP. It fails early when the guest reports failure, or when the VM
// is off (the guest powers off right after phoning home, -no-reboot ends QEMU) without
// the marker.
func waitBMCPhoneHome(t testing.TB, v *BMCVM, timeout time.Duration) string {
	t.Helper()
	var m []string
	err := Poll(t.Context(), timeout, "VM "+v.VM.Name+" ("+string(v.VM.Firmware)+") to phone home",
		func(ctx context.Context) (bool, error) {
			if ok, _ := FileMatches(v.SerialLog(), phoneHomeOKRe, &m)(ctx); ok {
				return true, nil
			}
			if line := grepLine(v.SerialLog(), MarkerPhoneHomeFail); line != "" {
				return false, fmt.Errorf("guest reported: %s", line)
			}
			if st, err := v.PowerState(ctx); err == nil && st == bmcsim.PowerOff {
				// The marker may have landed just before QEMU exited.
				if ok, _ := FileMatches(v.SerialLog(), phoneHomeOKRe, &m)(ctx); ok {
					return true, nil
				}
				return false, fmt.Errorf("VM went off before the guest phoned home")
			}
			return false, nil
		})
	if err != nil {
		t.Fatalf("%v\nserial console (%s):\n%s\nQEMU log:\n%s", err, v.SerialLog(), Tail(v.SerialLog(), 40), Tail(v.QEMULog(), 10))
	}
	return m[2]
}
