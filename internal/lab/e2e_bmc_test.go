package lab

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Serial console lines that show which device a firmware boots (QEMU 7.2, SeaBIOS 1.16.2,
// OVMF 2022.11, Debian's iPXE).
var (
	seabiosDiskRe = regexp.MustCompile(`Booting from Hard Disk`)
	seabiosNICRe  = regexp.MustCompile(`Booting from ROM`)
	diskBootRe    = regexp.MustCompile(MarkerDiskBoot)
	// OVMF tries the disk's boot option, which has no EFI system partition.
	ovmfDiskRe = regexp.MustCompile(`failed to load Boot[0-9A-F]+ "UEFI Misc Device`)
	// OVMF's own network boot (PXE or HTTP), or the banner of QEMU's iPXE EFI ROM.
	ovmfNetRe = regexp.MustCompile(`>>Start (PXE|HTTP Boot) over IPv4|iPXE [^\n]* -- Open Source Network Boot Firmware`)
)

// TestQEMUBMCStockClients is issue 3 "done when" 2 through the lab harness: VMs made by
// Segment.StartBMCVM are driven by stock clients run inside the segment's namespace
// (never from the root namespace: the BMC addresses exist only in the lab).
//
//	ipmitool-seabios: ipmitool -I lanplus -C 3 against ipmi_sim with rackboot's
//	  chassis-control: bootdev disk + power on boots the boot-sector disk; bootdev pxe +
//	  power reset restarts QEMU into the NIC's iPXE; power off ends QEMU.
//	sushy-ovmf-ipxe: Debian's python3-sushy (Ironic's client) against `rackboot-bmcsim
//	  redfish`, UEFI with QEMU's iPXE ROM on the NIC (the bootindex variant bmcsim's own
//	  tests leave out): Pxe once + On starts iPXE first; Hdd continuous + ForceRestart
//	  tries the disk first; ForceOff ends QEMU.
func TestQEMUBMCStockClients(t *testing.T) {
	Require(t, "qemu-system-x86_64", "ipmi_sim", "ipmitool")
	requireSushy(t)
	t.Parallel()
	logs := logDir(t)
	seg := newSegment(t, "bmcdirect", "10.77.0.1/24")
	if _, err := BMCSimBinary(); err != nil { // the BMCs' binary, built once before the subtests
		t.Fatal(err)
	}

	t.Run("ipmitool-seabios", func(t *testing.T) {
		t.Parallel()
		v := startBMCVM(t, seg, logs, VM{Name: "ipmi-seabios", MAC: "52:54:00:16:01:01", Firmware: SeaBIOS}, IPMI)
		ipmitool := func(want string, args ...string) {
			t.Helper()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			start := time.Now()
			out, err := seg.NS.Exec(ctx, v.BMC.IPMIToolArgs(args...)...)
			if err != nil || !strings.Contains(string(out), want) {
				t.Fatalf("ipmitool %s = %q, %v; want %q", strings.Join(args, " "), out, err, want)
			}
			t.Logf("ipmitool %-26s %5d ms  %s", strings.Join(args, " "), time.Since(start).Milliseconds(), strings.TrimSpace(string(out)))
		}
		ipmitool("Chassis Power is off", "power", "status")
		ipmitool("Set Boot Device to disk", "chassis", "bootdev", "disk")
		ipmitool("Force Boot from default Hard-Drive", "chassis", "bootparam", "get", "5")
		ipmitool("Chassis Power Control: Up/On", "power", "on")
		pid := wantOn(t, v)
		ipmitool("Chassis Power is on", "power", "status")
		console := waitSerialMatch(t, v, diskBootRe, 60*time.Second)
		before(t, console, seabiosDiskRe, seabiosNICRe)

		// The once override was used by that power-on; pxe for the next one. A reset
		// restarts QEMU (-no-reboot; boot order is fixed per process) into iPXE.
		ipmitool("Set Boot Device to pxe", "chassis", "bootdev", "pxe")
		ipmitool("Chassis Power Control: Reset", "power", "reset")
		if p := wantOn(t, v); p == pid {
			t.Fatalf("power reset kept QEMU %d: the new boot device needs a new process", pid)
		} else {
			pid = p
		}
		console = waitSerialMatch(t, v, seabiosNICRe, 60*time.Second)
		before(t, console, seabiosNICRe, seabiosDiskRe)

		ipmitool("Chassis Power Control: Down/Off", "power", "off")
		wantOff(t, v, pid)
		ipmitool("Chassis Power is off", "power", "status")

		// What a caller in the root namespace (bmclib in a test) runs instead of
		// ipmitool reaches the BMC through the namespace.
		wrapper := filepath.Join(t.TempDir(), "ipmitool-in-lab")
		if err := seg.NS.WriteIPMIToolWrapper(wrapper); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, wrapper, v.BMC.IPMIToolArgs("power", "status")[1:]...)
		cmd.Env = []string{} // bmclib gives it no PATH either
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Chassis Power is off") {
			t.Errorf("ipmitool wrapper from the root namespace = %q, %v; want the power state", out, err)
		}
	})

	t.Run("sushy-ovmf-ipxe", func(t *testing.T) {
		t.Parallel()
		v := startBMCVM(t, seg, logs, VM{Name: "redfish-ovmf-ipxe", MAC: "52:54:00:16:01:02", Firmware: OVMFIPXE}, Redfish)
		sushy := func(cmds ...string) sushyState {
			t.Helper()
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			start := time.Now()
			out, err := seg.NS.Exec(ctx, append([]string{debianPython, "-c", sushyLabScript,
				v.BMC.Endpoint(), v.BMC.Username, v.BMC.PasswordFile, v.BMC.SystemID}, cmds...)...)
			if err != nil {
				t.Fatalf("sushy %v: %v", cmds, err)
			}
			var st sushyState
			if err := json.Unmarshal(out, &st); err != nil {
				t.Fatalf("sushy %v printed %q: %v", cmds, out, err)
			}
			t.Logf("sushy %-22s %5d ms  %+v", strings.Join(cmds, " "), time.Since(start).Milliseconds(), st)
			return st
		}
		want := func(got, want sushyState) {
			t.Helper()
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("system as sushy sees it (-want +got):\n%s", diff)
			}
		}
		want(sushy("status"), sushyState{Power: "Off", Target: "None", Enabled: "Disabled", Mode: "UEFI"})
		want(sushy("pxe-once", "on"), sushyState{Power: "On", Target: "None", Enabled: "Disabled", Mode: "UEFI"})
		pid := wantOn(t, v)
		console := waitSerialMatch(t, v, ovmfNetRe, 120*time.Second)
		before(t, console, ovmfNetRe, ovmfDiskRe)

		want(sushy("hdd-continuous", "force-restart"), sushyState{Power: "On", Target: "Hdd", Enabled: "Continuous", Mode: "UEFI"})
		if p := wantOn(t, v); p == pid {
			t.Fatalf("ForceRestart to a new boot device kept QEMU %d", pid)
		} else {
			pid = p
		}
		console = waitSerialMatch(t, v, ovmfDiskRe, 120*time.Second)
		before(t, console, ovmfDiskRe, ovmfNetRe)

		want(sushy("force-off"), sushyState{Power: "Off", Target: "Hdd", Enabled: "Continuous", Mode: "UEFI"})
		wantOff(t, v, pid)
	})
}

// sushyState is what sushyLabScript prints after its commands.
type sushyState struct {
	Power   string `json:"power"`
	Target  string `json:"target"`
	Enabled string `json:"enabled"`
	Mode    string `json:"mode"`
}

// sushyLabScript: python3 -c SCRIPT BASEURL USER PASSWORDFILE SYSTEMID CMD... runs each
// command through sushy (session auth, as Ironic does) and prints the system's state.
const sushyLabScript = `
import json, sys
import sushy

url, user, pwfile, sysid = sys.argv[1:5]
with open(pwfile) as f:
    password = f.read().strip()
s = sushy.Sushy(url + "/redfish/v1", username=user, password=password, verify=False)
system = s.get_system("/redfish/v1/Systems/" + sysid)
resets = {"on": sushy.ResetType.ON, "force-off": sushy.ResetType.FORCE_OFF,
          "force-restart": sushy.ResetType.FORCE_RESTART, "power-cycle": sushy.ResetType.POWER_CYCLE}
for cmd in sys.argv[5:]:
    if cmd == "pxe-once":
        system.set_system_boot_options(sushy.BootSource.PXE, enabled=sushy.BootSourceOverrideEnabled.ONCE,
                                       mode=sushy.BootSourceOverrideMode.UEFI)
    elif cmd == "hdd-continuous":
        system.set_system_boot_options(sushy.BootSource.HDD, enabled=sushy.BootSourceOverrideEnabled.CONTINUOUS)
    elif cmd in resets:
        system.reset_system(resets[cmd])
    elif cmd != "status":
        sys.exit("unknown command " + cmd)
    system.refresh()
value = lambda v: v.value if v is not None else None
print(json.dumps({"power": value(system.power_state), "target": value(system.boot.target),
                  "enabled": value(system.boot.enabled), "mode": value(system.boot.mode)}))
`
