package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// installPhoneHomeAssets copies the boot fixtures into DATA_DIR/assets/phonehome.
func installPhoneHomeAssets(t testing.TB, rb *rackboot) {
	t.Helper()
	k, initrd := bootFixtures(t)
	if err := rb.InstallPhoneHome(k, initrd); err != nil {
		t.Fatal(err)
	}
}

// addBootHost enrols mac with a reserved ip and the phone-home boot profile.
func addBootHost(t testing.TB, rb *rackboot, id, mac, ip string) {
	t.Helper()
	args := append([]string{"host", "add", "--mac", mac, "--hostname", id, "--ip", ip}, PhoneHomeProfileArgs()...)
	rb.mustCLI(args...)
}

// bootSteps is the timeline of a network boot into the phone-home kernel: the firmware's
// DHCP (arch as rackboot reports it), its extra fetches (TFTP or HTTP of the iPXE binary),
// iPXE's DHCP for the script URL, the script, the kernel and initrd and Linux's own DHCP,
// all from the reserved address (the fixture's phone-home, a GET of /healthz, writes no
// event: waitPhoneHome reads it on the console).
func bootSteps(mac, ip, arch string, firmwareFetch []eventStep) []eventStep {
	steps := []eventStep{
		{Type: "dhcp.offer", Fields: map[string]string{"ip": ip, "arch": arch}},
		{Type: "dhcp.ack", Fields: map[string]string{"ip": ip, "arch": arch}},
	}
	if len(firmwareFetch) > 0 {
		steps = append(steps, firmwareFetch...)
		steps = append(steps, eventStep{Type: "dhcp.ack", Fields: map[string]string{"ip": ip, "bootfile": "http://10.77.0.1:8080/ipxe/boot.ipxe?mac=" + mac}})
	}
	return append(steps,
		eventStep{Type: "http.script", Fields: map[string]string{"ip": ip, "mac": mac, "action": "profile"}},
		eventStep{Type: "http.asset", Fields: map[string]string{"file": "phonehome/vmlinuz", "ip": ip, "code": "200"}},
		eventStep{Type: "http.asset", Fields: map[string]string{"file": "phonehome/initrd.gz", "ip": ip, "code": "200"}},
		eventStep{Type: "dhcp.ack", Fields: map[string]string{"ip": ip}},
	)
}

// TestQEMURackbootNetboot is issue 2 "done when" 4: TCG guests network-boot from rackboot
// (server mode) into the phone-home kernel, and each host's timeline shows every step.
//
//	seabios:   DHCP (iPXE ROM) → HTTP script → kernel, initrd → DHCP (Linux) → phone-home
//	ovmf-pxe:  DHCP (arch 7) → TFTP snponly.efi → DHCP (iPXE) → HTTP script → … → phone-home
//	ovmf-http: DHCP (HTTPClient) → HTTP snponly.efi → DHCP (iPXE) → HTTP script → … → phone-home
//	ovmf-ipxe: DHCP (iPXE EFI ROM, arch 7) → HTTP script → … → phone-home
//
// The guests boot in parallel; the segment sends router advertisements so the 2019 iPXE
// does not wait 13 s for IPv6 on each DHCP.
func TestQEMURackbootNetboot(t *testing.T) {
	Require(t, "qemu-system-x86_64", "dnsmasq")
	t.Parallel()
	dir := logDir(t)
	seg := newSegment(t, "boot", "10.77.0.1/24")
	if _, err := seg.StartRouterAdvertisements(t, filepath.Join(dir, "ra.log")); err != nil {
		t.Fatal(err)
	}
	rb := startRackboot(t, seg.NS, dir, serverIP,
		"--dhcp-mode", "server",
		"--dhcp-range", "10.77.0.100-10.77.0.149",
		"--dhcp-router", "10.77.0.1",
		"--dhcp-dns", "10.77.0.53",
		"--unknown-hosts", "ignore")
	installPhoneHomeAssets(t, rb)

	snponly, err := os.Stat(filepath.Join(ipxeDir, "snponly.efi"))
	if err != nil {
		t.Fatal(err)
	}
	snponlySize := strconv.FormatInt(snponly.Size(), 10)
	for i, tt := range []struct {
		fw    Firmware
		steps func(mac, ip string) []eventStep
	}{
		{SeaBIOS, func(mac, ip string) []eventStep {
			// The iPXE ROM's first DHCP already gets the script URL.
			return bootSteps(mac, ip, "bios", nil)
		}},
		{OVMFPXE, func(mac, ip string) []eventStep {
			return bootSteps(mac, ip, "x86_64-uefi", []eventStep{
				{Type: "tftp.read", Fields: map[string]string{"file": "snponly.efi", "outcome": "ok", "bytes": snponlySize, "ip": ip}}})
		}},
		{OVMFHTTP, func(mac, ip string) []eventStep {
			return bootSteps(mac, ip, "x86_64-uefi-http", []eventStep{
				{Type: "http.binary", Fields: map[string]string{"file": "snponly.efi", "code": "200", "bytes": snponlySize, "ip": ip}}})
		}},
		{OVMFIPXE, func(mac, ip string) []eventStep {
			// QEMU's iPXE EFI ROM boots before OVMF's PXE: its first DHCP is already iPXE's.
			return bootSteps(mac, ip, "x86_64-uefi", nil)
		}},
	} {
		id := "boot-" + string(tt.fw)
		mac := fmt.Sprintf("52:54:00:14:00:%02x", i+1)
		ip := fmt.Sprintf("10.77.0.%d", 10+i)
		steps := tt.steps(mac, ip)
		addBootHost(t, rb, id, mac, ip)
		t.Run(string(tt.fw), func(t *testing.T) {
			t.Parallel()
			tap, err := seg.AddTap()
			if err != nil {
				t.Fatal(err)
			}
			vm := VM{Name: id, MAC: mac, Tap: tap, Firmware: tt.fw, SerialLog: filepath.Join(dir, id+".serial"),
				UUID: fmt.Sprintf("8f6cbd2c-5fa4-4d6a-9a7b-3b2f1e0d0c%02x", i+1)}
			start := time.Now()
			qemu, err := seg.NS.StartVM(t, vm)
			if err != nil {
				t.Fatal(err)
			}
			gotIP := waitPhoneHome(t, vm, qemu, 3*time.Minute)
			t.Logf("%s: phoned home from %s %v after QEMU start", tt.fw, gotIP, time.Since(start).Round(100*time.Millisecond))
			if gotIP != ip {
				t.Errorf("guest booted with %s, want its reservation %s", gotIP, ip)
			}
			evs := rb.waitTimeline(id, 15*time.Second, steps)
			t.Logf("timeline of %s:\n%s", id, formatEvents(evs))
		})
	}
}

// TestQEMURackbootProxyNetboot is "done when" 3 end to end: a SeaBIOS guest whose address
// comes from dnsmasq (the site DHCP, holding a static mapping for it) and whose boot file
// comes from rackboot in proxy mode boots the phone-home kernel. The host's reservation
// in rackboot's inventory matches the site's mapping, so the phone-home is accepted.
func TestQEMURackbootProxyNetboot(t *testing.T) {
	Require(t, "qemu-system-x86_64", "dnsmasq")
	t.Parallel()
	dir := logDir(t)
	seg := newSegment(t, "pxboot", "10.77.0.1/24")
	if err := seg.NS.IP("addr", "add", "10.77.0.2/24", "dev", seg.Bridge); err != nil {
		t.Fatal(err)
	}
	if _, err := seg.StartRouterAdvertisements(t, filepath.Join(dir, "ra.log")); err != nil {
		t.Fatal(err)
	}
	const mac, ip = "52:54:00:15:00:01", "10.77.0.60"
	startDnsmasq(t, seg.NS, dir, seg.Bridge, "--no-ping",
		"--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h",
		"--dhcp-host="+mac+","+ip)
	rb := startRackboot(t, seg.NS, dir, "10.77.0.2", "--dhcp-mode", "proxy", "--unknown-hosts", "ignore")
	installPhoneHomeAssets(t, rb)
	addBootHost(t, rb, "proxied", mac, ip)
	tap, err := seg.AddTap()
	if err != nil {
		t.Fatal(err)
	}
	vm := VM{Name: "proxied", MAC: mac, Tap: tap, Firmware: SeaBIOS, SerialLog: filepath.Join(dir, "proxied.serial")}
	start := time.Now()
	qemu, err := seg.NS.StartVM(t, vm)
	if err != nil {
		t.Fatal(err)
	}
	gotIP := waitPhoneHome(t, vm, qemu, 3*time.Minute)
	t.Logf("phoned home from %s %v after QEMU start", gotIP, time.Since(start).Round(100*time.Millisecond))
	if gotIP != ip {
		t.Errorf("guest got %s, want dnsmasq's mapping %s", gotIP, ip)
	}
	evs := rb.waitTimeline("proxied", 15*time.Second, []eventStep{
		{Type: "dhcp.offer", Fields: map[string]string{"mode": "proxy", "bootfile": "http://10.77.0.2:8080/ipxe/boot.ipxe?mac=" + mac}},
		// iPXE takes its script URL, with its boot key, from the PXE port's answer.
		{Type: "dhcp.ack", Fields: map[string]string{"mode": "proxy", "ip": ip, "bootfile": "http://10.77.0.2:8080/ipxe/boot.ipxe?mac=" + mac}},
		{Type: "http.script", Fields: map[string]string{"ip": ip, "action": "profile", "keyed": "true"}},
		{Type: "http.asset", Fields: map[string]string{"file": "phonehome/vmlinuz", "ip": ip, "code": "200"}},
		{Type: "http.asset", Fields: map[string]string{"file": "phonehome/initrd.gz", "ip": ip, "code": "200"}},
	})
	t.Logf("timeline:\n%s", formatEvents(evs))
}
