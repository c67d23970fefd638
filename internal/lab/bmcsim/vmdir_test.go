package bmcsim_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rackboot/rackboot/internal/lab"
	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// fakeVM creates a VM directory whose "QEMU" is this test binary acting as fake-qemu.
func fakeVM(t *testing.T, extra ...string) *bmcsim.VMDir {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	argv := append([]string{exe, helperArg, "fake-qemu", "-serial", "file:" + filepath.Join(dir, bmcsim.SerialLog)}, extra...)
	d, err := bmcsim.CreateVMDir(dir, bmcsim.Spec{
		Name:     "fake",
		Argv:     argv,
		Boot:     bmcsim.BootIndexArgs("nic0", "disk0"),
		Firmware: bmcsim.BootLegacy,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bmcsim.ForceOff(dir); err != nil {
			t.Errorf("ForceOff: %v", err)
		}
	})
	return d
}

func power(t *testing.T, d *bmcsim.VMDir, op bmcsim.PowerOp) {
	t.Helper()
	if err := d.Power(t.Context(), op); err != nil {
		t.Fatalf("%s: %v", op, err)
	}
}

func wantState(t *testing.T, d *bmcsim.VMDir, want bmcsim.PowerState) {
	t.Helper()
	got, err := d.PowerState(t.Context())
	if err != nil || got != want {
		t.Fatalf("PowerState = %q, %v; want %q", got, err, want)
	}
}

func pid(t *testing.T, d *bmcsim.VMDir) int {
	t.Helper()
	p, err := d.PID()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// serialLine returns the fake QEMU's argv line from the serial log.
func serialLine(t *testing.T, d *bmcsim.VMDir) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.Path, bmcsim.SerialLog))
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

func boot(t *testing.T, d *bmcsim.VMDir) bmcsim.BootOverride {
	t.Helper()
	o, err := d.BootOverride(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func setBoot(t *testing.T, d *bmcsim.VMDir, target bmcsim.BootTarget, p bmcsim.BootPersistence) {
	t.Helper()
	if err := d.SetBootOverride(t.Context(), bmcsim.BootOverride{Target: target, Persistence: p}); err != nil {
		t.Fatal(err)
	}
}

const (
	pxeFirst  = "-set device.nic0.bootindex=1 -set device.disk0.bootindex=2"
	diskFirst = "-set device.disk0.bootindex=1 -set device.nic0.bootindex=2"
)

// TestVMDirPowerAndBootOverride walks the power operations and the stored boot device
// through a stand-in QEMU: which arguments each start gets, when once is consumed, and
// when a reset restarts the process or resets it in place.
func TestVMDirPowerAndBootOverride(t *testing.T) {
	t.Parallel()
	d := fakeVM(t)
	wantState(t, d, bmcsim.PowerOff)
	if diff := cmp.Diff(bmcsim.BootOverride{Target: bmcsim.BootNone, Persistence: bmcsim.BootOnce, Mode: bmcsim.BootLegacy}, boot(t, d)); diff != "" {
		t.Errorf("initial boot override (-want +got):\n%s", diff)
	}

	// once pxe: used by this power-on, then gone.
	setBoot(t, d, bmcsim.BootPXE, bmcsim.BootOnce)
	power(t, d, bmcsim.OpOn)
	wantState(t, d, bmcsim.PowerOn)
	first := pid(t, d)
	if line := serialLine(t, d); !strings.Contains(line, pxeFirst) {
		t.Errorf("started with %q, want the pxe boot args %q", line, pxeFirst)
	}
	if got := boot(t, d).Target; got != bmcsim.BootNone {
		t.Errorf("once override after power-on = %q, want none (consumed)", got)
	}
	power(t, d, bmcsim.OpOn) // idempotent
	if p := pid(t, d); p != first {
		t.Errorf("On when on started a new QEMU (pid %d, was %d)", p, first)
	}
	power(t, d, bmcsim.OpOff)
	wantState(t, d, bmcsim.PowerOff)
	if _, err := os.Stat(filepath.Join(d.Path, bmcsim.PIDFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PID file after Off: %v, want it removed", err)
	}
	power(t, d, bmcsim.OpOff) // idempotent

	// No override: the default boot order (disk first, then network).
	power(t, d, bmcsim.OpCycle)
	if line := serialLine(t, d); !strings.Contains(line, diskFirst) {
		t.Errorf("default boot: started with %q, want %q", line, diskFirst)
	}

	// persistent disk: a reset keeps the process (QMP system_reset), the override stays.
	setBoot(t, d, bmcsim.BootDisk, bmcsim.BootPersistent)
	power(t, d, bmcsim.OpCycle)
	p := pid(t, d)
	power(t, d, bmcsim.OpReset)
	if got := pid(t, d); got != p {
		t.Errorf("reset with nothing pending restarted QEMU (pid %d → %d), want system_reset in place", p, got)
	}
	if b, _ := os.ReadFile(filepath.Join(d.Path, bmcsim.SerialLog)); !strings.Contains(string(b), "qmp system_reset") {
		t.Errorf("serial log has no system_reset:\n%s", b)
	}
	if got := boot(t, d); got.Target != bmcsim.BootDisk || got.Persistence != bmcsim.BootPersistent {
		t.Errorf("persistent override after cycle and reset = %+v, want disk persistent", got)
	}

	// A pending change: reset restarts QEMU so the new boot order applies.
	setBoot(t, d, bmcsim.BootPXE, bmcsim.BootOnce)
	power(t, d, bmcsim.OpReset)
	if got := pid(t, d); got == p {
		t.Error("reset with a pending pxe override kept the old QEMU")
	}
	if line := serialLine(t, d); !strings.Contains(line, pxeFirst) {
		t.Errorf("after reset: started with %q, want %q", line, pxeFirst)
	}

	// Soft off asks the guest; the stand-in guest obeys and QEMU exits.
	power(t, d, bmcsim.OpSoft)
	lab.WaitFor(t, 5*time.Second, "the guest to power off after ACPI shutdown", func(ctx context.Context) (bool, error) {
		st, err := d.PowerState(ctx)
		return st == bmcsim.PowerOff, err
	})
	power(t, d, bmcsim.OpSoft) // off: nothing to do
}

// TestVMDirResetNoRebootRestarts: with -no-reboot QEMU exits on system_reset, so Reset
// must restart it rather than leave the machine off.
func TestVMDirResetNoRebootRestarts(t *testing.T) {
	t.Parallel()
	d := fakeVM(t, "-no-reboot")
	power(t, d, bmcsim.OpReset) // off → on
	p := pid(t, d)
	power(t, d, bmcsim.OpReset)
	wantState(t, d, bmcsim.PowerOn)
	if got := pid(t, d); got == p {
		t.Error("reset with -no-reboot kept the same process; QEMU would have exited")
	}
}

// TestVMDirStartFailure: a QEMU that exits while starting is an error carrying its
// output, and the machine stays off with its override unconsumed.
func TestVMDirStartFailure(t *testing.T) {
	t.Parallel()
	d := fakeVM(t, "-fake-fail")
	setBoot(t, d, bmcsim.BootPXE, bmcsim.BootOnce)
	err := d.Power(t.Context(), bmcsim.OpOn)
	if err == nil || !strings.Contains(err.Error(), "failing as asked") {
		t.Fatalf("On with a failing QEMU = %v, want an error quoting its log", err)
	}
	wantState(t, d, bmcsim.PowerOff)
	if got := boot(t, d).Target; got != bmcsim.BootPXE {
		t.Errorf("override after a failed start = %q, want pxe still pending", got)
	}
}

// TestVMDirOffKillsWedgedQEMU: a QEMU that does not quit is killed.
func TestVMDirOffKillsWedgedQEMU(t *testing.T) {
	t.Parallel()
	d := fakeVM(t, "-fake-ignore-quit", "-fake-ignore-acpi")
	power(t, d, bmcsim.OpOn)
	power(t, d, bmcsim.OpSoft) // ignored by the guest
	wantState(t, d, bmcsim.PowerOn)
	power(t, d, bmcsim.OpOff)
	wantState(t, d, bmcsim.PowerOff)
}

// TestVMDirQMPWithArguments: a command with arguments reaches QEMU as a JSON object
// (set_link, as the lab pulls a NIC's cable), QEMU's error comes back as the error, and
// a VM that is off is said to be off.
func TestVMDirQMPWithArguments(t *testing.T) {
	t.Parallel()
	d := fakeVM(t)
	link := func(name string, up bool) error {
		_, err := d.QMP(t.Context(), "set_link", map[string]any{"name": name, "up": up})
		return err
	}
	if err := link("nic1", false); err == nil || !strings.Contains(err.Error(), "off") {
		t.Errorf("set_link on a VM that is off = %v, want an error saying it is off", err)
	}
	power(t, d, bmcsim.OpOn)
	if err := link("nic1", false); err != nil {
		t.Fatalf("set_link nic1 down: %v", err)
	}
	if err := link("nic1", true); err != nil {
		t.Fatalf("set_link nic1 up: %v", err)
	}
	if err := link("nic7", false); err == nil || !strings.Contains(err.Error(), "DeviceNotFound") {
		t.Errorf("set_link on a missing NIC = %v, want QEMU's DeviceNotFound", err)
	}
	b, err := os.ReadFile(filepath.Join(d.Path, bmcsim.SerialLog))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`qmp set_link {"name":"nic1","up":false}`, `qmp set_link {"name":"nic1","up":true}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("fake QEMU did not see %s:\n%s", want, b)
		}
	}
}

// TestVMDirConcurrentCallers: callers in this process and in other processes (the
// chassis-control helper, as ipmi_sim runs it) all switching the same VM on get one QEMU.
func TestVMDirConcurrentCallers(t *testing.T) {
	t.Parallel()
	d := fakeVM(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() { errs <- d.Power(context.Background(), bmcsim.OpOn) })
		wg.Go(func() {
			out, err := exec.Command(exe, helperArg, "chassis-control", "--dir", d.Path, "set", "power", "1").CombinedOutput()
			if err != nil {
				err = errors.Join(err, errors.New(string(out)))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	log, err := os.ReadFile(filepath.Join(d.Path, bmcsim.QEMULog))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), ": power on,"); n != 1 {
		t.Errorf("%d QEMU starts for 8 concurrent power-ons, want 1:\n%s", n, log)
	}
	wantState(t, d, bmcsim.PowerOn)
}

func TestCreateVMDirValidates(t *testing.T) {
	t.Parallel()
	ok := bmcsim.Spec{Name: "vm", Argv: []string{"qemu-system-x86_64"}, Firmware: bmcsim.BootUEFI}
	for name, tc := range map[string]struct {
		dir  string
		spec func(bmcsim.Spec) bmcsim.Spec
		want string
	}{
		"no argv":     {spec: func(s bmcsim.Spec) bmcsim.Spec { s.Argv = nil; return s }, want: "argv"},
		"firmware":    {spec: func(s bmcsim.Spec) bmcsim.Spec { s.Firmware = "bios"; return s }, want: "firmware"},
		"daemonize":   {spec: func(s bmcsim.Spec) bmcsim.Spec { s.Argv = append(s.Argv, "-daemonize"); return s }, want: "-daemonize"},
		"socket path": {dir: strings.Repeat("d", 100), spec: func(s bmcsim.Spec) bmcsim.Spec { return s }, want: "too long"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), tc.dir)
			_, err := bmcsim.CreateVMDir(dir, tc.spec(ok))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CreateVMDir = %v, want an error about %q", err, tc.want)
			}
		})
	}
	if _, err := bmcsim.OpenVMDir(t.TempDir()); err == nil {
		t.Error("OpenVMDir of a directory without vm.json succeeded")
	}
}

func TestBootIndexArgs(t *testing.T) {
	t.Parallel()
	got := bmcsim.BootIndexArgs("net0", "")
	want := bmcsim.BootArgs{PXE: []string{"-set", "device.net0.bootindex=1"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("diskless (-want +got):\n%s", diff)
	}
	got = bmcsim.BootIndexArgs("net0", "vda")
	want = bmcsim.BootArgs{
		PXE:     []string{"-set", "device.net0.bootindex=1", "-set", "device.vda.bootindex=2"},
		Disk:    []string{"-set", "device.vda.bootindex=1", "-set", "device.net0.bootindex=2"},
		Default: []string{"-set", "device.vda.bootindex=1", "-set", "device.net0.bootindex=2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("with disk (-want +got):\n%s", diff)
	}
}
