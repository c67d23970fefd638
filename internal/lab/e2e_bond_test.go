package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

// TestQEMUBondVLAN is issue 13's second done-when: a host with two NICs is provisioned
// with an active-backup bond of both carrying a VLAN with a static address; after boot
// it answers on that address over the VLAN, and keeps answering with one NIC's link
// down.
//
// One SeaBIOS VM behind an IPMI BMC, both NICs on the lab segment (a plain bridge: the
// bond's two members are two ports of one switch). rackboot serves DHCP; the host is
// enrolled with both MACs (the first is the PXE one) and its reserved address,
// inspected (its facts list both NICs, and a spec naming a MAC it does not have is
// refused), then given a network spec: nic0 and nic1 by MAC, bond0 active-backup of both
// (primary nic0) with the reserved address untagged (the installed system fetches its
// cloud-init from rackboot and phones home over it), and VLAN 100 on bond0 with
// 10.20.0.5/24. It is provisioned with the lab image; its user-data prints the bond and
// the addresses on the console, and starts a watcher that prints the bond's active
// member whenever it changes.
//
// Then, from a namespace on VLAN 100 of the segment (AddVLANPort; 10.20.0.1/24):
// 10.20.0.5 answers, while a namespace on VLAN 200 and an untagged one with addresses
// of the same subnet get no answer. QMP set_link takes nic0's link down: the guest
// reports nic1 active and 10.20.0.5 still answers. nic0 back up: the bond returns to
// its primary and still answers.
func TestQEMUBondVLAN(t *testing.T) {
	Require(t, append([]string{"bridge", "qemu-system-x86_64", "ipmi_sim", "ipmitool", "apt-get", "dpkg-deb"}, LabImageTools()...)...)
	t.Parallel()
	ctx := t.Context()
	logs := logDir(t)
	const (
		id          = "bond-vlan"
		mac0, mac1  = "52:54:00:64:00:01", "52:54:00:64:00:02"
		hostIP      = "10.77.64.21"
		vlanID      = 100
		vlanAddr    = "10.20.0.5"
		vlanSubnet  = "/24"
		peerVLANIP  = "10.20.0.1"
		failoverMax = 30 * time.Second
	)

	bin := staticRackboot(t)
	seg := newSegment(t, "bond", "10.77.64.1/24")
	if _, err := seg.StartRouterAdvertisements(t, filepath.Join(logs, "ra.log")); err != nil {
		t.Fatal(err)
	}
	rb := startWithLabImage(t, bin, seg.NS, logs, "10.77.64.1",
		"--dhcp-mode", "server", "--dhcp-range", "10.77.64.100-10.77.64.149", "--dhcp-router", "10.77.64.1", "--unknown-hosts", "ignore")
	cli := func(args ...string) string { t.Helper(); return mustLogged(t, rb, args...) }

	dir := vmDirFor(t, logs, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.img")
	if err := WriteBlankDisk(disk, 4<<30); err != nil {
		t.Fatal(err)
	}
	v, err := seg.StartBMCVM(ctx, t, BMCVMConfig{
		VM: VM{Name: id, MAC: mac0, Firmware: SeaBIOS, MemoryMB: 1024, Disk: disk,
			ExtraNICs: []ExtraNIC{{MAC: mac1}}},
		Dir: dir, BMC: BMCConfig{Protocol: IPMI},
	})
	if err != nil {
		t.Fatal(err)
	}
	cli("host", "add", "--id", id, "--mac", mac0, "--mac", mac1, "--ip", hostIP, "--hostname", id,
		"--bmc", v.BMC.URL(), "--bmc-password-file", v.BMC.PasswordFile)

	start := time.Now()
	cli("host", "inspect", id)
	if err := rb.WaitHosts(ctx, []string{id}, 10*time.Minute, id+" to be inspected",
		func(h admin.Host) bool { return h.State == inventory.StateAvailable }, nil); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, Tail(v.SerialLog(), 40))
	}
	t.Logf("inspected in %v", time.Since(start).Round(time.Second))
	api, err := rb.API()
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.GetHost(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	if h.Facts != nil {
		for _, n := range h.Facts.NICs {
			found = append(found, n.MAC)
		}
	}
	for _, m := range []string{mac0, mac1} {
		if !slices.Contains(found, m) {
			t.Fatalf("the inspection did not find NIC %s; it found %v", m, found)
		}
	}

	// The spec is checked against the NICs the inspection found.
	spec := func(nic1MAC string) string {
		return fmt.Sprintf(`ethernets:
  - {name: nic0, mac: "%s"}
  - {name: nic1, mac: "%s"}
bonds:
  - {name: bond0, mode: active-backup, members: [nic0, nic1], primary: nic0, addresses: ["%s/24"]}
vlans:
  - {id: %d, link: bond0, addresses: ["%s%s"]}
`, mac0, nic1MAC, hostIP, vlanID, vlanAddr, vlanSubnet)
	}
	bad := filepath.Join(dir, "network-wrong-mac.yaml")
	good := filepath.Join(dir, "network.yaml")
	if err := os.WriteFile(bad, []byte(spec("52:54:00:64:00:99")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte(spec(mac1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := rb.cli("host", "edit", id, "--network", bad); err == nil || !strings.Contains(err.Error()+string(out), "is not one of this host's NICs") {
		t.Errorf("host edit --network with a MAC the host does not have: err=%v out=%q, want it refused naming the NIC", err, out)
	}
	cli("host", "edit", id, "--network", good)

	userData := filepath.Join(dir, "user-data")
	if err := os.WriteFile(userData, bondUserData(t), 0o600); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	cli("host", "provision", id, "--image", LabImageName, "--user-data", userData)
	waitProvisionedOrStuck(t, rb, v, id, 25*time.Minute)
	t.Logf("provisioned %v after `host provision`", time.Since(start).Round(time.Second))
	rb.waitTimeline(id, 10*time.Second, []eventStep{
		{Type: "metadata.fetch", Fields: map[string]string{"doc": "user-data", "ip": hostIP}},
		{Type: "boot.phonehome"},
	})
	if h, err := api.GetHost(ctx, id); err != nil {
		t.Fatal(err)
	} else if p := h.Provision; p == nil || p.InstallNetwork == nil || len(p.InstallNetwork.Bonds) != 1 || len(p.InstallNetwork.VLANs) != 1 {
		t.Errorf("the provisioning's installed network is not the host's bond and VLAN: %+v", p)
	}

	report := waitConsoleBlock(t, v, "RACKBOOT-BOND-BEGIN", "RACKBOOT-BOND-END", time.Minute)
	t.Logf("the installed system's network, from its console:\n%s", report)
	checkBondReport(t, report, hostIP, vlanAddr+vlanSubnet, vlanID)
	m := regexp.MustCompile(`link/ether (\S+)`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("the report has no MAC for bond0")
	}
	bondMAC := m[1]

	// The VLAN, as a host on a switch's access port for VLAN 100 sees it.
	ip := netip.MustParseAddr
	vl100, err := seg.AddVLANPort(t, "bond-vl100", vlanID, mustMAC(t, "52:54:00:64:01:00"))
	if err != nil {
		t.Fatal(err)
	}
	if err := vl100.NS.IP("addr", "add", peerVLANIP+vlanSubnet, "dev", vl100.Dev); err != nil {
		t.Fatal(err)
	}
	firstAnswer := func(what string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < within {
			res, err := vl100.NS.Ping(ctx, ip(vlanAddr), 3, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Lost() {
				return time.Since(start)
			}
		}
		t.Fatalf("%s: %s does not answer pings from %s on VLAN %d within %v\nconsole:\n%s",
			what, vlanAddr, peerVLANIP, vlanID, within, Tail(v.SerialLog(), 30))
		return 0
	}
	steady := func(what string) {
		t.Helper()
		res, err := vl100.NS.Ping(ctx, ip(vlanAddr), 10, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: ping %s from VLAN %d: %v", what, vlanAddr, vlanID, res)
		if res.Received < res.Sent/2 {
			t.Errorf("%s: %s answered %d of %d pings from VLAN %d, want at least half", what, vlanAddr, res.Received, res.Sent, vlanID)
		}
	}
	firstAnswer("after boot", 30*time.Second)
	steady("after boot")

	// Only over the VLAN: the same subnet on VLAN 200 or untagged reaches nothing.
	vl200, err := seg.AddVLANPort(t, "bond-vl200", 200, mustMAC(t, "52:54:00:64:02:00"))
	if err != nil {
		t.Fatal(err)
	}
	untagged := addClient(t, seg, "bond-untagged", "52:54:00:64:03:00")
	for _, o := range []struct {
		ns   *Netns
		dev  string
		addr string
		what string
	}{{vl200.NS, vl200.Dev, "10.20.0.2", "VLAN 200"}, {untagged, "eth0", "10.20.0.3", "the untagged segment"}} {
		if err := o.ns.IP("addr", "add", o.addr+vlanSubnet, "dev", o.dev); err != nil {
			t.Fatal(err)
		}
		res, err := o.ns.Ping(ctx, ip(vlanAddr), 3, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Lost() {
			t.Errorf("%s answered %s from %s (%s): %v; it must answer on VLAN %d only", vlanAddr, o.addr, o.what, o.ns.Name, res, vlanID)
		}
	}

	// Pull nic0's cable: the bond fails over to nic1 and the address keeps answering.
	active := consoleActive(t, v)
	if active != "nic0" {
		t.Errorf("the bond's active member is %q before the failover, want its primary nic0", active)
	}
	// A ping every 100 ms runs across each link change, to show how long the address
	// was silent; firstAnswer and steady are what the test holds it to.
	across := func(what string, up bool, port string) {
		t.Helper()
		type result struct {
			res PingResult
			err error
		}
		done := make(chan result, 1)
		go func() {
			res, err := vl100.NS.Ping(ctx, ip(vlanAddr), 60, 100*time.Millisecond)
			done <- result{res, err}
		}()
		time.Sleep(time.Second)
		if err := v.SetLink(ctx, 0, up); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		var lost []int
		for seq := 1; seq <= r.res.Sent; seq++ {
			if !slices.Contains(r.res.Answered, seq) {
				lost = append(lost, seq)
			}
		}
		t.Logf("%s (after request 10 of %d, one every 100 ms): requests without an answer: %v", what, r.res.Sent, lost)
		t.Logf("%s: first answer %v after the change", what, firstAnswer(what, failoverMax).Round(100*time.Millisecond))
		steady(what)
		// The switch's view: the replies came in through this NIC's port.
		if got := learnedPort(t, seg, bondMAC); got != port {
			t.Errorf("%s: the segment's bridge learned the bond's MAC %s on %q, want %s (the port of the NIC that should be active)", what, bondMAC, got, port)
		}
	}
	if got := learnedPort(t, seg, bondMAC); got != v.VM.Tap {
		t.Errorf("before the failover the segment's bridge learned the bond's MAC %s on %q, want nic0's port %s", bondMAC, got, v.VM.Tap)
	}
	across("nic0's link down (QMP set_link)", false, v.VM.ExtraNICs[0].Tap)
	waitConsole(t, v, regexp.MustCompile(`RACKBOOT-BOND-ACTIVE nic1\b`), 10*time.Second,
		"the guest to report nic1 as the bond's active member after nic0's link went down")

	// Plug it back: the bond returns to its primary and still answers.
	across("nic0's link back up", true, v.VM.Tap)
	waitConsole(t, v, regexp.MustCompile(`RACKBOOT-BOND-ACTIVE nic1\b[\s\S]*RACKBOOT-BOND-ACTIVE nic0\b`), 10*time.Second,
		"the guest to report nic0 active again once its link was back up")

	for _, p := range []*VLANPort{vl100, vl200} {
		if err := p.Err(); err != nil {
			t.Errorf("VLAN %d port: relay stopped: %v", p.VID, err)
		}
	}
}

// bondUserData is the test host's cloud-config: its network on the console once, then a
// watcher (a transient systemd service, so it outlives cloud-init's final stage) that
// prints the bond's active member each time it changes.
func bondUserData(t *testing.T) []byte {
	t.Helper()
	report := `{ echo RACKBOOT-BOND-BEGIN; cat /etc/network/interfaces.d/50-cloud-init; ip -d link show bond0; ` +
		`cat /proc/net/bonding/bond0; ip -o addr; echo RACKBOOT-BOND-END; } >/dev/ttyS0 2>&1`
	watch := `p=; while :; do a=$(sed -n 's/^Currently Active Slave: //p' /proc/net/bonding/bond0); ` +
		`if [ "$a" != "$p" ]; then echo "RACKBOOT-BOND-ACTIVE $a" >/dev/ttyS0; p=$a; fi; sleep 0.2; done`
	b, err := yaml.Marshal(map[string]any{"runcmd": [][]string{
		{"sh", "-c", report},
		{"systemd-run", "--unit=rackboot-bond-watch", "sh", "-c", watch},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte("#cloud-config\n"), b...)
}

// waitProvisionedOrStuck waits for the host to be provisioned; it gives up early when
// cloud-init on the installed system has finished and no phone-home came (the installed
// network is broken, say), rather than at the timeout.
func waitProvisionedOrStuck(t *testing.T, rb *rackboot, v *BMCVM, id string, timeout time.Duration) {
	t.Helper()
	finished := regexp.MustCompile(`Cloud-init v\. \S+ finished at`)
	var finishedAt time.Time
	err := rb.WaitHosts(t.Context(), []string{id}, timeout, id+" to be provisioned", func(h admin.Host) bool {
		if h.State == inventory.StateProvisioned {
			return true
		}
		if b, err := os.ReadFile(v.SerialLog()); err == nil && finished.Match(b) {
			if finishedAt.IsZero() {
				finishedAt = time.Now()
			} else if time.Since(finishedAt) > time.Minute {
				evs, _ := rb.events(id)
				t.Fatalf("cloud-init finished on the installed system a minute ago and %s never phoned home (is its network up?)\ntimeline:\n%s\nconsole:\n%s",
					id, formatEvents(evs), Tail(v.SerialLog(), 80))
			}
		}
		return false
	}, nil)
	if err != nil {
		evs, _ := rb.events(id)
		t.Fatalf("%v\ntimeline:\n%s\nconsole:\n%s", err, formatEvents(evs), Tail(v.SerialLog(), 80))
	}
}

// waitConsole waits for re on the VM's console.
func waitConsole(t *testing.T, v *BMCVM, re *regexp.Regexp, timeout time.Duration, what string) string {
	t.Helper()
	var m string
	err := Poll(t.Context(), timeout, what, func(context.Context) (bool, error) {
		b, err := os.ReadFile(v.SerialLog())
		if err != nil {
			return false, err
		}
		m = re.FindString(string(b))
		return m != "", nil
	})
	if err != nil {
		t.Errorf("%v\nconsole:\n%s", err, Tail(v.SerialLog(), 30))
	}
	return m
}

// waitConsoleBlock returns the console text between begin and end, once both are there.
func waitConsoleBlock(t *testing.T, v *BMCVM, begin, end string, timeout time.Duration) string {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(begin) + `([\s\S]*?)` + regexp.QuoteMeta(end))
	m := waitConsole(t, v, re, timeout, "the installed system's report "+begin+"…"+end+" on the console")
	if m == "" {
		t.FailNow()
	}
	// The serial console ends its lines with CRLF.
	return strings.ReplaceAll(re.FindStringSubmatch(m)[1], "\r", "")
}

// consoleActive is the bond's active member the watcher printed last ("" if none yet).
func consoleActive(t *testing.T, v *BMCVM) string {
	t.Helper()
	m := waitConsole(t, v, regexp.MustCompile(`RACKBOOT-BOND-ACTIVE \S*`), 30*time.Second, "the bond watcher's first line on the console")
	b, err := os.ReadFile(v.SerialLog())
	if err != nil {
		t.Fatal(err)
	}
	all := regexp.MustCompile(`RACKBOOT-BOND-ACTIVE (\S*)`).FindAllStringSubmatch(string(b), -1)
	if m == "" || len(all) == 0 {
		return ""
	}
	return all[len(all)-1][1]
}

// learnedPort is the bridge port the segment's bridge last saw mac on ("" if none).
func learnedPort(t *testing.T, seg *Segment, mac string) string {
	t.Helper()
	out, err := seg.NS.Exec(t.Context(), "bridge", "fdb", "show", "br", seg.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(out)) {
		if f := strings.Fields(l); len(f) >= 3 && strings.EqualFold(f[0], mac) && f[1] == "dev" && !strings.Contains(l, "permanent") {
			return f[2]
		}
	}
	return ""
}

// checkBondReport checks the installed system's own view of its network: bond0 is an
// active-backup bond of nic0 and nic1, both up, nic0 its primary and active member, with
// the reserved address; bond0.VID is a VLAN on it with vlanAddr.
func checkBondReport(t *testing.T, report, hostIP, vlanAddr string, vid int) {
	t.Helper()
	for _, want := range []struct{ re, what string }{
		{`(?m)^\s*bond mode active-backup .*miimon 100 `, "bond0 is an active-backup bond watching its links every 100 ms"},
		{`(?m)^Bonding Mode: fault-tolerance \(active-backup\)`, "the bonding driver runs bond0 in active-backup mode"},
		{`(?m)^Primary Slave: nic0`, "nic0 is bond0's primary member"},
		{`(?m)^Currently Active Slave: nic0$`, "nic0 is bond0's active member"},
		{`(?m)^Slave Interface: nic0\nMII Status: up`, "nic0 is a member of bond0 and up"},
		{`(?m)^Slave Interface: nic1\nMII Status: up`, "nic1 is a member of bond0 and up"},
		{`(?m)^\d+: bond0\s+inet ` + regexp.QuoteMeta(hostIP) + `/24 `, "bond0 has the reserved address " + hostIP + "/24"},
		{fmt.Sprintf(`(?m)^\d+: bond0\.%d\s+inet %s `, vid, regexp.QuoteMeta(vlanAddr)), fmt.Sprintf("bond0.%d has %s", vid, vlanAddr)},
	} {
		if !regexp.MustCompile(want.re).MatchString(report) {
			t.Errorf("the installed system's report does not show that %s (no match for %s)", want.what, want.re)
		}
	}
	for _, nic := range []string{"nic0", "nic1"} {
		if regexp.MustCompile(`(?m)^\d+: ` + nic + `\s+inet `).MatchString(report) {
			t.Errorf("%s has an address of its own; as a bond member it must have none", nic)
		}
	}
}
