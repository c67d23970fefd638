package lab

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestQEMUBMCRackbootPower is issue 3 "done when" 1: through rackboot's CLI (run in the
// lab namespace, talking to `rackboot serve` there, which reaches the BMCs from there),
// a lab host behind an IPMI BMC (SeaBIOS) and one behind a Redfish BMC (OVMF, UEFI HTTP
// boot) are enrolled with their BMCs and the phone-home boot profile, set to PXE and
// power-cycled, and network-boot from rackboot to the phone-home kernel; their
// timelines show the BMC actions, then DHCP, HTTP and the phone-home. Then `bootdev
// disk` and `power on` boot the disk first, `power status` says on, and `power off`
// ends QEMU and `power status` says off.
//
// Each VM has a boot-sector disk (WriteBootDisk): SeaBIOS boots it and halts, OVMF finds
// no EFI system partition on it and fails over to the network. Before the disk step the
// boot profile is cleared, so that failover gets "exit" from rackboot instead of
// booting the phone-home kernel again, which would power the VM off by itself and race
// the `power off` under test.
func TestQEMUBMCRackbootPower(t *testing.T) {
	Require(t, "qemu-system-x86_64", "dnsmasq", "ipmi_sim", "ipmitool")
	t.Parallel()
	logs := logDir(t)
	seg := newSegment(t, "bmcpower", "10.77.0.1/24")
	if _, err := seg.StartRouterAdvertisements(t, filepath.Join(logs, "ra.log")); err != nil {
		t.Fatal(err)
	}
	rb := startRackboot(t, seg.NS, logs, serverIP,
		"--dhcp-mode", "server",
		"--dhcp-range", "10.77.0.100-10.77.0.149",
		"--dhcp-router", "10.77.0.1",
		"--unknown-hosts", "ignore")
	installPhoneHomeAssets(t, rb)
	snponly, err := os.Stat(filepath.Join(ipxeDir, "snponly.efi"))
	if err != nil {
		t.Fatal(err)
	}

	for i, tt := range []struct {
		name  string
		fw    Firmware
		proto BMCProtocol
		// arch and firmwareFetch are the netboot's timeline (bootSteps).
		arch          string
		firmwareFetch func(ip string) []eventStep
		// diskFirst is what the console shows when the firmware tries the disk; network
		// what it shows for a network boot, which must not come before.
		diskFirst, network *regexp.Regexp
		// diskBooted, if set, shows the disk's boot sector ran.
		diskBooted *regexp.Regexp
	}{
		{
			name: "ipmi-seabios", fw: SeaBIOS, proto: IPMI, arch: "bios",
			firmwareFetch: func(string) []eventStep { return nil },
			diskFirst:     seabiosDiskRe, network: seabiosNICRe, diskBooted: diskBootRe,
		},
		{
			name: "redfish-ovmf-http", fw: OVMFHTTP, proto: Redfish, arch: "x86_64-uefi-http",
			firmwareFetch: func(ip string) []eventStep {
				return []eventStep{{Type: "http.binary", Fields: map[string]string{
					"file": "snponly.efi", "code": "200", "bytes": strconv.FormatInt(snponly.Size(), 10), "ip": ip}}}
			},
			diskFirst: ovmfDiskRe, network: ovmfNetRe,
		},
	} {
		id := "bmc-" + tt.name
		mac := fmt.Sprintf("52:54:00:16:02:%02x", i+1)
		ip := fmt.Sprintf("10.77.0.%d", 20+i)
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := startBMCVM(t, seg, logs, VM{Name: id, MAC: mac, Firmware: tt.fw}, tt.proto)
			cli := func(want string, args ...string) string {
				t.Helper()
				start := time.Now()
				out, err := rb.cli(args...)
				if err != nil || !strings.Contains(string(out), want) {
					t.Fatalf("rackboot %s = %q, %v; want %q", strings.Join(args, " "), out, err, want)
				}
				t.Logf("rackboot %-32s %5d ms  %s", strings.Join(args, " "), time.Since(start).Milliseconds(), strings.TrimSpace(string(out)))
				return string(out)
			}
			add := append([]string{"host", "add", "--id", id, "--mac", mac, "--ip", ip, "--hostname", id,
				"--bmc", v.BMC.URL(), "--bmc-password-file", v.BMC.PasswordFile}, PhoneHomeProfileArgs()...)
			cli(id, add...)
			// The password went in by file and never comes back out.
			if show := cli(id, "host", "show", id, "-o", "json"); strings.Contains(show, v.BMC.Password) {
				t.Errorf("host show prints the BMC password:\n%s", show)
			}

			// PXE, power cycle: the VM boots from rackboot to the phone-home kernel.
			cli("power is off", "host", "power", id, "status")
			cli("boots from pxe", "host", "bootdev", id, "pxe")
			start := time.Now()
			cli("power cycle done", "host", "power", id, "cycle")
			waitNewQEMU(t, v, 0, 30*time.Second)
			gotIP := waitBMCPhoneHome(t, v, 3*time.Minute)
			t.Logf("%s: phoned home from %s %v after power cycle", id, gotIP, time.Since(start).Round(100*time.Millisecond))
			if gotIP != ip {
				t.Errorf("guest booted with %s, want its reservation %s", gotIP, ip)
			}
			console, _ := os.ReadFile(v.SerialLog())
			before(t, string(console), tt.network, tt.diskFirst)
			steps := append([]eventStep{
				{Type: "bmc.bootdev", Fields: map[string]string{"device": "pxe"}},
				{Type: "bmc.power", Fields: map[string]string{"action": "cycle"}},
			}, bootSteps(mac, ip, tt.arch, tt.firmwareFetch(ip))...)
			evs := rb.waitTimeline(id, 15*time.Second, steps)
			t.Logf("timeline of %s:\n%s", id, formatEvents(evs))

			// Disk: tried first, and (SeaBIOS) booted; then power off is obeyed.
			cli("cleared", "host", "boot", id, "--clear")
			cli("boots from disk", "host", "bootdev", id, "disk")
			cli("power on done", "host", "power", id, "on")
			pid := wantOn(t, v)
			re := tt.diskFirst
			if tt.diskBooted != nil {
				re = tt.diskBooted
			}
			console2 := waitSerialMatch(t, v, re, 2*time.Minute)
			before(t, console2, tt.diskFirst, tt.network)
			cli("power is on", "host", "power", id, "status")
			if p := wantOn(t, v); p != pid {
				t.Fatalf("QEMU changed from %d to %d while booting from disk", pid, p)
			}
			cli("power off done", "host", "power", id, "off")
			wantOff(t, v, pid)
			cli("power is off", "host", "power", id, "status")
			evs = rb.waitTimeline(id, 15*time.Second, append(steps,
				eventStep{Type: "bmc.bootdev", Fields: map[string]string{"device": "disk"}},
				eventStep{Type: "bmc.power", Fields: map[string]string{"action": "on"}},
				eventStep{Type: "bmc.power", Fields: map[string]string{"action": "off"}},
				eventStep{Type: "bmc.power", Fields: map[string]string{"state": "off"}},
			))
			for _, e := range evs {
				if e.Type == "bmc.error" {
					t.Errorf("timeline has a BMC error: %s %v", e.Message, e.Fields)
				}
			}
			// rackboot stored the password sealed and logged it nowhere.
			for _, f := range append(filesUnder(t, rb.dataDir), rb.proc.Log) {
				if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(v.BMC.Password)) {
					t.Errorf("%s holds the BMC password in clear", f)
				}
			}
		})
	}
}

// filesUnder lists the regular files under dir.
func filesUnder(t testing.TB, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
