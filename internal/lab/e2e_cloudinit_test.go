package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/agent"
	"github.com/rackboot/rackboot/internal/inventory"
)

// TestQEMUProvisionCloudInit is issue 4's main job end to end, driven only through
// rackboot's CLI: two hosts — SeaBIOS behind an IPMI BMC and OVMF (UEFI HTTP boot)
// behind a Redfish BMC — are provisioned with the lab's Debian image (make lab-image),
// each with user-data of its own. For each host:
//
//   - the agent streams the zstd image to the VM's disk and writes the cloud-init drop-in;
//   - rackboot sets the boot device to disk and powers the VM on; it boots its own disk;
//   - cloud-init fetches that host's NoCloud documents from rackboot, runs its user-data
//     (a marker on the serial console) and phones home through vendor-data;
//   - the host is provisioned, and its timeline shows each step in order.
//
// Each host is then shut down softly through its BMC (ACPI) and its disk read: the
// cloud-init drop-in names the host's seed. A third enrolled host's address asks for the first host's user-data with the real
// token (403, and an event on the first host), and with a wrong token (404).
func TestQEMUProvisionCloudInit(t *testing.T) {
	Require(t, append([]string{"qemu-system-x86_64", "ipmi_sim", "ipmitool", "apt-get", "dpkg-deb", "debugfs"}, LabImageTools()...)...)
	t.Parallel()
	ctx := t.Context()
	logs := logDir(t)

	bin := staticRackboot(t)
	seg := newSegment(t, "cloudinit", "10.77.46.1/24")
	if _, err := seg.StartRouterAdvertisements(t, filepath.Join(logs, "ra.log")); err != nil {
		t.Fatal(err)
	}
	rb := startWithLabImage(t, bin, seg.NS, logs, "10.77.46.1",
		"--dhcp-mode", "server", "--dhcp-range", "10.77.46.100-10.77.46.149", "--dhcp-router", "10.77.46.1", "--unknown-hosts", "ignore")
	cli := func(args ...string) string { t.Helper(); return mustLogged(t, rb, args...) }
	// An enrolled host without a VM: its address is "another host's address".
	const bystanderIP, bystanderMAC = "10.77.46.29", "52:54:00:46:00:29"
	cli("host", "add", "--id", "bystander", "--mac", bystanderMAC, "--ip", bystanderIP)

	hosts := []struct {
		id    string
		fw    Firmware
		proto BMCProtocol
		mac   string
		ip    string
	}{
		{"ci-ipmi-seabios", SeaBIOS, IPMI, "52:54:00:46:00:01", "10.77.46.21"},
		{"ci-redfish-ovmf", OVMFHTTP, Redfish, "52:54:00:46:00:02", "10.77.46.22"},
	}
	seeds := make([]string, len(hosts))
	t.Run("provision", func(t *testing.T) {
		for i, hc := range hosts {
			t.Run(hc.id, func(t *testing.T) {
				t.Parallel()
				seeds[i] = provisionWithCloudInit(t, rb, seg, logs, bin, LabImageName, hc.id, hc.mac, hc.ip, hc.fw, hc.proto)
			})
		}
	})
	if t.Failed() {
		return
	}
	// Both hosts have a reservation in the DHCP subnet rackboot serves: their installed
	// network is decided static (provisionWithCloudInit then checks it in the guest).
	for _, hc := range hosts {
		var h admin.Host
		if err := json.Unmarshal(rb.mustCLI("host", "show", hc.id, "-o", "json"), &h); err != nil {
			t.Fatal(err)
		}
		if h.Provision == nil || h.Provision.InstallNetwork == nil || len(h.Provision.InstallNetwork.Ethernets) != 1 ||
			h.Provision.InstallNetwork.Ethernets[0].Addresses[0] != hc.ip+"/24" {
			t.Errorf("%s's installed network is not its reservation, static: %+v", hc.id, h.Provision)
		}
	}

	// The first host's user-data, asked for from the bystander's address.
	seed := seeds[0]
	peer, err := seg.AddClient(t, "bystander", mustMAC(t, bystanderMAC))
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.IP("addr", "add", bystanderIP+"/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	get := func(url string) (int, string) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		resp, err := peer.HTTPClient().Do(req)
		if err != nil {
			t.Fatalf("GET %s from %s: %v", url, bystanderIP, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(seed + "user-data"); code != http.StatusForbidden {
		t.Errorf("user-data of %s from %s: %d %q, want 403", hosts[0].id, bystanderIP, code, body)
	}
	wrong := regexp.MustCompile(`/metadata/[^/]+/`).ReplaceAllString(seed, "/metadata/"+strings.Repeat("x", 43)+"/")
	if code, body := get(wrong + "user-data"); code != http.StatusNotFound && code != http.StatusForbidden {
		t.Errorf("user-data with a wrong token: %d %q, want 404 or 403", code, body)
	}
	rb.waitTimeline(hosts[0].id, 10*time.Second, []eventStep{
		{Type: "metadata.rejected", Fields: map[string]string{"doc": "user-data", "ip": bystanderIP}},
	})
}

// startWithLabImage runs rackboot in ns at addr with flags, with the agent's boot
// environment imported and the lab image added (built first when it is not cached).
func startWithLabImage(t *testing.T, bin string, ns *Netns, logs, addr string, flags ...string) *rackboot {
	t.Helper()
	s, err := NewServer(t, ServerConfig{Bin: bin, NS: ns, Dir: logs, Addr: addr, Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ImportBootEnv(t.Context(), io.Discard); err != nil {
		t.Fatal(err)
	}
	rb := &rackboot{Server: s, t: t, dataDir: s.DataDir}
	rb.start()
	// A cold build of the image takes minutes.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	if err := s.AddLabImage(ctx, io.Discard); err != nil {
		t.Fatal(err)
	}
	return rb
}

// provisionWithCloudInit takes one BMC-backed VM from enrolled to provisioned with
// image (a build of the lab image) and returns the NoCloud seed URL the agent wrote
// into its disk.
func provisionWithCloudInit(t *testing.T, rb *rackboot, seg *Segment, logs, bin, image, id, mac, ip string, fw Firmware, proto BMCProtocol) string {
	ctx := t.Context()
	dir := vmDirFor(t, logs, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A blank disk larger than the image, as on a real host: cloud-init grows the root.
	diskPath := filepath.Join(dir, "disk.img")
	if err := WriteBlankDisk(diskPath, 4<<30); err != nil {
		t.Fatal(err)
	}
	// 1 GiB: the agent verifies an image that fits in half the free memory before it
	// touches the disk, and the lab image is ≈175 MiB compressed.
	v, err := seg.StartBMCVM(ctx, t, BMCVMConfig{
		VM:  VM{Name: id, MAC: mac, Firmware: fw, MemoryMB: 1024, Disk: diskPath},
		Dir: dir, BMC: BMCConfig{Protocol: proto},
	})
	if err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) string { t.Helper(); return mustLogged(t, rb, args...) }
	cli("host", "add", "--id", id, "--mac", mac, "--ip", ip, "--hostname", id,
		"--bmc", v.BMC.URL(), "--bmc-password-file", v.BMC.PasswordFile)

	marker := fmt.Sprintf("RACKBOOT-USERDATA-%s-%d", id, time.Now().UnixNano())
	userData := filepath.Join(dir, "user-data")
	// The second command shows the installed system's network on the console: a host
	// with a reservation and no network spec gets its address as a static
	// configuration (issue 13): no DHCP lifetime, no DHCP client.
	ud := "#cloud-config\nruncmd:\n  - echo " + marker + " > /dev/ttyS0\n" +
		"  - sh -c 'echo RACKBOOT-NET-BEGIN; ip -o -4 addr show scope global; pgrep -a dhclient || echo RACKBOOT-NO-DHCP-CLIENT; echo RACKBOOT-NET-END' > /dev/ttyS0\n"
	if err := os.WriteFile(userData, []byte(ud), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cli("host", "inspect", id)
	if err := rb.WaitHosts(ctx, []string{id}, 10*time.Minute, id+" to be inspected",
		func(h admin.Host) bool { return h.State == inventory.StateAvailable }, nil); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, Tail(v.SerialLog(), 40))
	}
	t.Logf("%s inspected in %v", id, time.Since(start).Round(time.Second))
	start = time.Now()
	cli("host", "provision", id, "--image", image, "--user-data", userData)

	var provisioned admin.Host
	err = rb.WaitHosts(ctx, []string{id}, 25*time.Minute, id+" to be provisioned",
		func(h admin.Host) bool { provisioned = h; return h.State == inventory.StateProvisioned }, nil)
	if err != nil {
		evs, _ := rb.events(id)
		t.Fatalf("%v\ntimeline:\n%s\nconsole:\n%s", err, formatEvents(evs), Tail(v.SerialLog(), 60))
	}
	t.Logf("%s provisioned %v after `host provision`", id, time.Since(start).Round(time.Second))

	// The marker came from this host's user-data, run by cloud-init on the installed
	// system (the agent's initramfs never runs cloud-init).
	console, err := os.ReadFile(v.SerialLog())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(console), marker) {
		t.Errorf("the serial console lacks the user-data marker %s:\n%s", marker, Tail(v.SerialLog(), 60))
	}
	// With a reservation in a subnet rackboot serves, the installed system gets it
	// statically; in proxy and off modes rackboot knows no subnet and the site's DHCP
	// keeps the address.
	if provisioned.Provision != nil && provisioned.Provision.InstallNetwork != nil {
		checkStaticAddress(t, string(console), ip)
	} else {
		checkDHCPAddress(t, string(console), ip)
	}
	evs := rb.waitTimeline(id, 10*time.Second, []eventStep{
		{Type: "provision.request"},
		{Type: "bmc.bootdev", Fields: map[string]string{"device": "pxe"}},
		{Type: "agent.hello"},
		{Type: "image.fetch"},
		{Type: "agent.result"},
		{Type: "bmc.bootdev", Fields: map[string]string{"device": "disk"}},
		{Type: "metadata.fetch", Fields: map[string]string{"doc": "meta-data", "ip": ip}},
		{Type: "metadata.fetch", Fields: map[string]string{"doc": "user-data", "ip": ip}},
		{Type: "boot.phonehome"},
		{Type: "state.changed", Fields: map[string]string{"to": string(inventory.StateProvisioned)}},
	})
	t.Logf("timeline of %s:\n%s", id, formatEvents(evs))

	// Shut down the way an operator would (ACPI through the BMC), so the root
	// filesystem is clean when the test reads it: the drop-in on the installed disk
	// names this host's NoCloud seed.
	cli("host", "power", id, "soft")
	waitPowerOff(t, v)
	dropIn := readRootFile(t, diskPath, "/"+agent.DropInPath)
	m := regexp.MustCompile(`seedfrom: (\S+)`).FindStringSubmatch(dropIn)
	if m == nil {
		t.Fatalf("drop-in on %s has no seedfrom:\n%s", diskPath, dropIn)
	}
	return m[1]
}

// checkStaticAddress checks the network report the user-data printed on the console
// (RACKBOOT-NET-BEGIN ... END): ip, with the DHCP subnet's /24, on the NIC the host
// provisioned through (named boot0), valid forever and not "dynamic", and no DHCP
// client running: the installed system does not depend on DHCP for its address.
func checkStaticAddress(t *testing.T, console, ip string) {
	t.Helper()
	_, rest, ok := strings.Cut(console, "RACKBOOT-NET-BEGIN")
	report, _, ok2 := strings.Cut(rest, "RACKBOOT-NET-END")
	if !ok || !ok2 {
		t.Errorf("the console has no network report from the installed system")
		return
	}
	var line string
	for l := range strings.Lines(report) {
		if strings.Contains(l, " inet "+ip+"/") {
			line = l
		}
	}
	switch {
	case line == "":
		t.Errorf("the installed system does not have %s:\n%s", ip, report)
	case !strings.Contains(line, " boot0 ") || !strings.Contains(line, " inet "+ip+"/24 "):
		t.Errorf("%s is not on boot0 with the subnet's /24: %s", ip, line)
	case strings.Contains(line, "dynamic") || !strings.Contains(line, "valid_lft forever"):
		t.Errorf("%s has a DHCP lifetime: %s", ip, line)
	}
	t.Logf("the installed system's network:\n%s", strings.TrimSpace(report))
	if !strings.Contains(report, "RACKBOOT-NO-DHCP-CLIENT") {
		t.Errorf("a DHCP client runs on the installed system:\n%s", report)
	}
}

// checkDHCPAddress checks the console's network report of a host rackboot gave no
// static configuration (proxy or off mode): ip, from the site's DHCP server.
func checkDHCPAddress(t *testing.T, console, ip string) {
	t.Helper()
	_, rest, _ := strings.Cut(console, "RACKBOOT-NET-BEGIN")
	report, _, ok := strings.Cut(rest, "RACKBOOT-NET-END")
	if !ok || !strings.Contains(report, " inet "+ip+"/") {
		t.Errorf("the installed system does not have %s:\n%s", ip, report)
		return
	}
	t.Logf("the installed system's network (DHCP):\n%s", strings.TrimSpace(report))
}

// readRootFile reads a file from the root filesystem (second MBR partition) of a raw
// disk with debugfs, without mounting it.
func readRootFile(t *testing.T, disk, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, rootPartition(t, disk)).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s from %s: %v", path, disk, err)
	}
	return string(out)
}
