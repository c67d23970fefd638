package bmcsim_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/rackboot/rackboot/internal/lab"
	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// labVM is a real QEMU guest for the integration tests, on a tap of a lab segment, with a
// blank 1 MiB disk (so a disk boot visibly fails over to the next device).
type labVM struct {
	dir    *bmcsim.VMDir
	serial string
}

// newLabVM writes a VM directory for a guest with a NIC (id nic0) on tap and a disk
// (id disk0), ordered by bootindex through bmcsim.BootIndexArgs. The VM is forced off
// when the test ends: it runs in its own process group, outliving the BMC that started it.
func newLabVM(t *testing.T, tap, mac string, uefi bool) *labVM {
	t.Helper()
	dir := t.TempDir()
	serial := filepath.Join(dir, bmcsim.SerialLog)
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := []string{
		"qemu-system-x86_64", "-name", "bmcsim-" + filepath.Base(dir),
		"-accel", "tcg", "-m", "256", "-smp", "1",
		"-nodefaults", "-vga", "std", "-display", "none",
		"-serial", "file:" + serial, "-monitor", "none", "-no-reboot",
		"-netdev", "tap,id=net0,ifname=" + tap + ",script=no,downscript=no",
		"-drive", "if=none,id=disk0drv,format=raw,file=" + disk,
		"-device", "virtio-blk-pci,drive=disk0drv,id=disk0",
	}
	nic := "virtio-net-pci,netdev=net0,mac=" + mac + ",id=nic0"
	fw := bmcsim.BootLegacy
	if uefi {
		fw = bmcsim.BootUEFI
		vars := filepath.Join(dir, "OVMF_VARS.fd")
		b, err := os.ReadFile(lab.OVMFVars)
		if err != nil {
			t.Fatalf("OVMF vars (apt-get install ovmf): %v", err)
		}
		if err := os.WriteFile(vars, b, 0o644); err != nil {
			t.Fatal(err)
		}
		argv = append(argv, "-machine", "q35",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+lab.OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
		// OVMF's own PXE client, not QEMU's iPXE ROM.
		nic += ",romfile="
	} else {
		argv = append(argv, "-machine", "pc,graphics=off")
	}
	argv = append(argv, "-device", nic)
	d, err := bmcsim.CreateVMDir(dir, bmcsim.Spec{Name: "vm1", Argv: argv, Boot: bmcsim.BootIndexArgs("nic0", "disk0"), Firmware: fw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bmcsim.ForceOff(dir); err != nil {
			t.Errorf("force off VM: %v", err)
		}
		if t.Failed() {
			t.Logf("serial console:\n%s\nQEMU log:\n%s", lab.Tail(serial, 30), lab.Tail(filepath.Join(dir, bmcsim.QEMULog), 30))
		}
	})
	return &labVM{dir: d, serial: serial}
}

// procGone reports whether pid has exited (a zombie counts: its parent may be PID 1).
func procGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || len(b) < i+3 || b[i+2] == 'Z'
}

func (vm *labVM) wantOn(t *testing.T) int {
	t.Helper()
	pid, err := vm.dir.PID()
	if err != nil || pid == 0 || procGone(pid) {
		t.Fatalf("VM is not running: pid %d, %v", pid, err)
	}
	return pid
}

func (vm *labVM) wantOff(t *testing.T, oldPID int) {
	t.Helper()
	if st, err := vm.dir.PowerState(t.Context()); err != nil || st != bmcsim.PowerOff {
		t.Fatalf("power state %q, %v; want off", st, err)
	}
	if oldPID != 0 && !procGone(oldPID) {
		t.Fatalf("QEMU %d still runs after power off", oldPID)
	}
}

// waitSerial waits for the guest's serial console to show what.
func waitSerial(t *testing.T, path, what string, timeout time.Duration) {
	t.Helper()
	lab.WaitFor(t, timeout, "the serial console to show "+strconv.Quote(what), lab.FileContains(path, what))
}

// TestQEMUIPMISimPowersVM drives a real ipmi_sim with ipmitool (lanplus, cipher suite 3)
// inside a lab namespace: power status/on/off/cycle/reset and chassis bootdev pxe/disk,
// with the boot device visible in a SeaBIOS guest's serial console and power in its PID.
func TestQEMUIPMISimPowersVM(t *testing.T) {
	lab.Require(t, "qemu-system-x86_64", "ipmi_sim", "ipmitool")
	t.Parallel()
	const addr, user, pass = "10.77.41.1", "admin", "lab-ipmi-pw"
	seg, err := lab.NewSegment(t, "ipmi", netip.MustParsePrefix(addr+"/24"))
	if err != nil {
		t.Fatal(err)
	}
	tap, err := seg.AddTap()
	if err != nil {
		t.Fatal(err)
	}
	vm := newLabVM(t, tap, "52:54:00:41:00:01", false)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bmcDir := t.TempDir()
	argv, err := bmcsim.WriteIPMI(bmcsim.IPMIConfig{
		Dir: bmcDir, Name: "vm1", Addr: bmcsim.DefaultIPMIAddr(netip.MustParseAddr(addr)),
		Username: user, Password: pass,
		ChassisControl: []string{exe, helperArg, "chassis-control", "--dir", vm.dir.Path},
	})
	if err != nil {
		t.Fatal(err)
	}
	sim, err := seg.NS.Start(t, filepath.Join(bmcDir, "ipmi_sim.log"), argv...)
	if err != nil {
		t.Fatal(err)
	}
	ipmitool := func(password string, args ...string) (string, time.Duration, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		start := time.Now()
		out, err := seg.NS.Exec(ctx, append([]string{"ipmitool", "-I", "lanplus", "-C", "3",
			"-H", addr, "-p", "623", "-U", user, "-P", password}, args...)...)
		return strings.TrimSpace(string(out)), time.Since(start), err
	}
	run := func(want string, args ...string) {
		t.Helper()
		out, took, err := ipmitool(pass, args...)
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("ipmitool %s = %q, %v; want %q", strings.Join(args, " "), out, err, want)
		}
		t.Logf("ipmitool %-22s %6.0f ms  %s", strings.Join(args, " "), float64(took.Microseconds())/1000, out)
	}
	lab.WaitFor(t, 20*time.Second, "ipmi_sim to answer", lab.Alive(func(context.Context) (bool, error) {
		_, _, err := ipmitool(pass, "-N", "1", "-R", "1", "power", "status")
		return err == nil, nil
	}, sim))

	run("Chassis Power is off", "power", "status")
	run("Set Boot Device to pxe", "chassis", "bootdev", "pxe")
	run("Chassis Power Control: Up/On", "power", "on")
	pid := vm.wantOn(t)
	run("Chassis Power is on", "power", "status")
	// bootindex put the NIC first: SeaBIOS boots its option ROM (iPXE) without trying
	// the disk.
	waitSerial(t, vm.serial, "Booting from ROM", 60*time.Second)
	if b, _ := os.ReadFile(vm.serial); bytes.Contains(b, []byte("Booting from Hard Disk")) {
		t.Errorf("pxe boot tried the disk first:\n%s", b)
	}
	// power soft is an ACPI power button press; iPXE waiting for DHCP ignores it.
	run("Chassis Power Control: Soft", "power", "soft")
	if p := vm.wantOn(t); p != pid {
		t.Errorf("power soft replaced QEMU %d with %d", pid, p)
	}
	run("Chassis Power Control: Down/Off", "power", "off")
	vm.wantOff(t, pid)
	run("Chassis Power is off", "power", "status")

	// disk: the blank disk is tried first and fails over to the network.
	run("Set Boot Device to disk", "chassis", "bootdev", "disk")
	run("Chassis Power Control: Up/On", "power", "on")
	pid = vm.wantOn(t)
	waitSerial(t, vm.serial, "Booting from Hard Disk", 60*time.Second)

	// cycle: ipmi_sim powers off, polls until off, then on about a second later.
	run("Chassis Power Control: Cycle", "power", "cycle")
	lab.WaitFor(t, 20*time.Second, "the VM to come back on with a new QEMU after power cycle", func(context.Context) (bool, error) {
		p, err := vm.dir.PID()
		return p != 0 && p != pid && !procGone(p), err
	})
	if !procGone(pid) {
		t.Errorf("QEMU %d survived the power cycle", pid)
	}
	// The once override was used by the first power-on: the cycle boots the default
	// order (disk first too), and reset (-no-reboot: a restart) does as well.
	pid = vm.wantOn(t)
	run("Chassis Power Control: Reset", "power", "reset")
	if p := vm.wantOn(t); p == pid {
		t.Errorf("power reset kept QEMU %d; with -no-reboot it must restart it", pid)
	}
	run("Chassis Power Control: Down/Off", "power", "off")
	vm.wantOff(t, 0)

	// A wrong password is refused by RAKP, before any chassis command runs.
	if out, _, err := ipmitool("wrong-password", "-N", "1", "-R", "1", "power", "on"); err == nil {
		t.Errorf("ipmitool with a wrong password succeeded: %s", out)
	}
	vm.wantOff(t, 0)
}

// TestQEMURedfishOVMFBootOrder runs the Redfish emulator as a process inside a lab
// namespace (as `rackboot-bmcsim redfish` will) for a UEFI (OVMF) guest, and drives it
// with bmclib's gofish provider over plain http: boot override pxe then disk, power
// on/cycle/off, with OVMF's boot order read from the serial console.
func TestQEMURedfishOVMFBootOrder(t *testing.T) {
	lab.Require(t, "qemu-system-x86_64")
	t.Parallel()
	const addr, port, user, pass = "10.77.42.1", "8000", "admin", "lab-redfish-pw"
	seg, err := lab.NewSegment(t, "redfish", netip.MustParsePrefix(addr+"/24"))
	if err != nil {
		t.Fatal(err)
	}
	tap, err := seg.AddTap()
	if err != nil {
		t.Fatal(err)
	}
	vm := newLabVM(t, tap, "52:54:00:42:00:01", true)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "redfish.log")
	srv, err := seg.NS.Start(t, log, exe, helperArg, "redfish", "--listen", addr+":"+port,
		"--user", user, "--password", pass, "--system", "vm1="+vm.dir.Path)
	if err != nil {
		t.Fatal(err)
	}
	hc := seg.NS.HTTPClient()
	base := "http://" + addr + ":" + port
	lab.WaitFor(t, 20*time.Second, "the Redfish emulator to serve", lab.Alive(lab.HTTPStatus(hc, base+"/redfish/v1/", 200), srv))

	ctx := t.Context()
	// bmclib.WithHTTPClient, not WithRedfishHTTPClient: bmclib v2.3.5's gofish provider
	// ignores the latter and would dial from the root namespace, off the lab.
	cl := bmclib.NewClient("http://"+addr, user, pass, bmclib.WithRedfishPort(port), bmclib.WithHTTPClient(hc))
	cl.Registry.Drivers = cl.Registry.For("gofish")
	if err := cl.Open(ctx); err != nil {
		t.Fatalf("bmclib open: %v", err)
	}
	defer cl.Close(context.Background())

	step := func(what string, fn func() error) {
		t.Helper()
		start := time.Now()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("bmclib %-26s %6.0f ms", what, float64(time.Since(start).Microseconds())/1000)
	}
	powerState := func(want string) {
		t.Helper()
		step("power status", func() error {
			st, err := cl.GetPowerState(ctx)
			if err == nil && !strings.EqualFold(st, want) {
				err = fmt.Errorf("power state %q, want %q", st, want)
			}
			return err
		})
	}
	powerState("off")
	step("bootdev pxe once uefi", func() error { _, err := cl.SetBootDevice(ctx, "pxe", false, true); return err })
	step("power on", func() error { _, err := cl.SetPowerState(ctx, "on"); return err })
	pid := vm.wantOn(t)
	powerState("on")
	// PXE first: OVMF starts its PXE client without trying the disk.
	waitSerial(t, vm.serial, ">>Start PXE over IPv4", 120*time.Second)
	if b, _ := os.ReadFile(vm.serial); bytes.Contains(b, []byte("UEFI Misc Device")) {
		t.Errorf("pxe boot tried the disk first:\n%s", b)
	}

	// Disk, persistent: a cycle (ForceRestart; -no-reboot makes it a restart) boots the
	// disk first; it is blank, so OVMF reports the failure and moves on to PXE.
	step("bootdev disk persistent", func() error { _, err := cl.SetBootDevice(ctx, "disk", true, true); return err })
	step("power cycle", func() error { _, err := cl.SetPowerState(ctx, "cycle"); return err })
	if p := vm.wantOn(t); p == pid {
		t.Errorf("power cycle kept QEMU %d", pid)
	}
	waitSerial(t, vm.serial, `failed to load Boot0001 "UEFI Misc Device"`, 120*time.Second)
	override, err := cl.GetBootDeviceOverride(ctx)
	if err != nil || override.Device != "disk" || !override.IsPersistent || !override.IsEFIBoot {
		t.Errorf("boot override after cycle = %+v, %v; want disk, persistent, EFI", override, err)
	}
	step("power off", func() error { _, err := cl.SetPowerState(ctx, "off"); return err })
	vm.wantOff(t, 0)
	powerState("off")
}
