package lab

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// StandinEnv enables TestQEMUStandinNetboot, which network-boots the lab's VM firmware
// configurations from dnsmasq instead of rackboot. It checks the lab itself (QEMU flags,
// OVMF PXE and HTTP boot) independently of rackboot, and costs about two minutes, so
// `make test` leaves it off; the rackboot boot tests cover the same paths.
const StandinEnv = "RACKBOOT_LAB_STANDIN"

// TestQEMUStandinNetboot boots each firmware path with dnsmasq as DHCP+TFTP server and a
// Go handler as the HTTP server, the way rackboot is meant to answer: BIOS → iPXE ROM →
// HTTP script; UEFI PXE → TFTP snponly.efi → HTTP script; UEFI HTTP boot → HTTP
// snponly.efi → HTTP script; then kernel + phone-home initramfs over HTTP.
func TestQEMUStandinNetboot(t *testing.T) {
	if os.Getenv(StandinEnv) != "1" {
		t.Skipf("set %s=1 to boot the lab firmware paths from dnsmasq (checks the lab, not rackboot)", StandinEnv)
	}
	Require(t, "qemu-system-x86_64", "dnsmasq")
	k, initrd := bootFixtures(t)
	dir := logDir(t)
	tftpRoot := filepath.Join(dir, "tftp")
	if err := os.MkdirAll(tftpRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"undionly.kpxe", "snponly.efi", "ipxe.efi"} {
		if err := copyFile(filepath.Join("/usr/lib/ipxe", f), filepath.Join(tftpRoot, f)); err != nil {
			t.Fatal(err)
		}
	}
	seg := newSegment(t, "standin", "10.77.0.1/24")
	const base = "http://10.77.0.1:8080"
	startDnsmasq(t, seg.NS, dir, seg.Bridge,
		"--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h", "--no-ping",
		"--enable-tftp", "--tftp-root="+tftpRoot,
		"--dhcp-userclass=set:ipxe,iPXE",
		"--dhcp-match=set:ipxe,175",
		"--dhcp-match=set:efi64,option:client-arch,7",
		"--dhcp-match=set:efi64,option:client-arch,9",
		"--dhcp-match=set:http,option:client-arch,16",
		"--dhcp-vendorclass=set:http,HTTPClient",
		"--dhcp-option-force=tag:http,60,HTTPClient",
		"--dhcp-boot=tag:ipxe,"+base+"/boot.ipxe",
		"--dhcp-boot=tag:!ipxe,tag:http,"+base+"/snponly.efi",
		"--dhcp-boot=tag:!ipxe,tag:!http,tag:efi64,snponly.efi",
		"--dhcp-boot=tag:!ipxe,tag:!http,tag:!efi64,undionly.kpxe",
	)
	if os.Getenv("RACKBOOT_LAB_NO_RA") != "1" {
		if _, err := seg.StartRouterAdvertisements(t, filepath.Join(dir, "ra.log")); err != nil {
			t.Fatal(err)
		}
	}
	var rec phoneHomeRecorder
	mux := http.NewServeMux()
	mux.Handle("/healthz", &rec)
	mux.HandleFunc("/boot.ipxe", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "#!ipxe\nkernel %s/vmlinuz console=ttyS0 quiet initrd=initrd rackboot.url=%s\ninitrd --name initrd %s/initrd\nboot\n", base, base, base)
	})
	mux.HandleFunc("/vmlinuz", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, k.Vmlinuz) })
	mux.HandleFunc("/initrd", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, initrd) })
	mux.HandleFunc("/snponly.efi", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(tftpRoot, "snponly.efi"))
	})
	serveInNetns(t, seg.NS, "10.77.0.1:8080", mux)

	for i, fw := range []Firmware{SeaBIOS, OVMFPXE, OVMFHTTP} {
		t.Run(string(fw), func(t *testing.T) {
			t.Parallel()
			tap, err := seg.AddTap()
			if err != nil {
				t.Fatal(err)
			}
			vm := VM{
				Name: "standin-" + string(fw), MAC: fmt.Sprintf("52:54:00:77:01:%02x", i+1), Tap: tap,
				Firmware: fw, SerialLog: filepath.Join(dir, string(fw)+".serial"),
			}
			start := time.Now()
			qemu, err := seg.NS.StartVM(t, vm)
			if err != nil {
				t.Fatal(err)
			}
			ip := waitPhoneHome(t, vm, qemu, 3*time.Minute)
			t.Logf("%s: phoned home from %s after %v", fw, ip, time.Since(start).Round(100*time.Millisecond))
		})
	}
}
