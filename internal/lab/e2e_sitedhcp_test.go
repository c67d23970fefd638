package lab

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQEMUProxyAndOffModeProvision is issue 10's "done when" 2: beside a site DHCP
// server (dnsmasq, which gives every address from a dhcp-host mapping), a SeaBIOS VM
// behind an IPMI BMC is inspected, provisioned with the lab image and user-data of its
// own, boots its disk, runs the user-data (a marker on its console) and is provisioned,
// through the CLI only, in two sites booting in parallel:
//
//   - proxy: `rackboot serve --dhcp-mode proxy`; dnsmasq knows nothing about booting.
//     iPXE takes its script URL, with this boot's key, from rackboot's port-4011 answer,
//     and the agent's script is fetched with that key from the address dnsmasq gave.
//   - off: `rackboot serve --dhcp-mode off`; dnsmasq is configured as the README tells
//     an operator (next-server and undionly.kpxe, and the script URL for clients whose
//     user class is iPXE). There is no key: the host's reservation in rackboot, the
//     same address as dnsmasq's dhcp-host, is the binding, and rackboot sends no DHCP.
func TestQEMUProxyAndOffModeProvision(t *testing.T) {
	Require(t, append([]string{"qemu-system-x86_64", "dnsmasq", "ipmi_sim", "ipmitool", "apt-get", "dpkg-deb", "debugfs"}, LabImageTools()...)...)
	t.Parallel()
	bin := staticRackboot(t)
	start := time.Now()
	for _, mode := range []string{"proxy", "off"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			provisionBesideSiteDHCP(t, bin, mode)
		})
	}
	t.Cleanup(func() { t.Logf("both sites provisioned in %v", time.Since(start).Round(time.Second)) })
}

// provisionBesideSiteDHCP runs one site of TestQEMUProxyAndOffModeProvision: its own
// segment, dnsmasq at .1, rackboot at .2 in mode, and one host reserved at .60 in both.
func provisionBesideSiteDHCP(t *testing.T, bin, mode string) {
	logs := logDir(t)
	n := map[string]int{"proxy": 47, "off": 48}[mode]
	pre := fmt.Sprintf("10.77.%d.", n)
	rbIP, ip := pre+"2", pre+"60"
	id, mac := "site-"+mode, fmt.Sprintf("52:54:00:%d:00:01", n)
	seg := newSegment(t, "site"+mode, pre+"1/24")
	if err := seg.NS.IP("addr", "add", rbIP+"/24", "dev", seg.Bridge); err != nil {
		t.Fatal(err)
	}
	if _, err := seg.StartRouterAdvertisements(t, filepath.Join(logs, "ra.log")); err != nil {
		t.Fatal(err)
	}
	site := []string{"--no-ping",
		"--dhcp-range=" + pre + "50," + pre + "99,255.255.255.0,1h",
		"--dhcp-host=" + mac + "," + ip}
	scriptURL := "http://" + rbIP + ":8080/ipxe/boot.ipxe?mac="
	if mode == "off" {
		// As the README's "Beside an existing DHCP server" says: firmware PXE gets
		// undionly.kpxe from rackboot's TFTP, iPXE (user class "iPXE") the script URL,
		// with ${mac} filled in by iPXE.
		site = append(site,
			"--dhcp-userclass=set:ipxe,iPXE",
			"--dhcp-boot=tag:!ipxe,undionly.kpxe,,"+rbIP,
			"--dhcp-boot=tag:ipxe,"+scriptURL+"${mac}")
	}
	startDnsmasq(t, seg.NS, logs, seg.Bridge, site...)

	rb := startWithLabImage(t, bin, seg.NS, logs, rbIP, "--dhcp-mode", mode, "--unknown-hosts", "ignore")
	seed := provisionWithCloudInit(t, rb, seg, logs, bin, LabImageName, id, mac, ip, SeaBIOS, IPMI)
	if want := "http://" + rbIP + ":8080/metadata/"; !strings.HasPrefix(seed, want) {
		t.Errorf("the installed disk's seed is %s, want one under %s", seed, want)
	}

	// How the agent's boot was bound to this host after `host provision`.
	var steps []eventStep
	switch mode {
	case "proxy":
		steps = []eventStep{
			{Type: "provision.request"},
			{Type: "dhcp.offer", Fields: map[string]string{"mode": "proxy", "bootfile": scriptURL + mac}},
			{Type: "dhcp.ack", Fields: map[string]string{"mode": "proxy", "ip": ip, "bootfile": scriptURL + mac}},
			{Type: "http.script", Fields: map[string]string{"ip": ip, "mac": mac, "action": "agent", "keyed": "true", "bound": ip}},
			{Type: "agent.hello"},
		}
	case "off":
		steps = []eventStep{
			{Type: "provision.request"},
			{Type: "http.script", Fields: map[string]string{"ip": ip, "mac": mac, "action": "agent", "keyed": "false", "bound": ip}},
			{Type: "agent.hello"},
		}
	}
	evs := rb.waitTimeline(id, 10*time.Second, steps)
	fetches := 0
	for _, e := range evs {
		if mode == "off" && strings.HasPrefix(e.Type, "dhcp.") {
			t.Errorf("rackboot in off mode answered DHCP: %s %v %s", e.Type, e.Fields, e.Message)
		}
		if e.Type == "http.script" && e.Fields["ip"] == ip {
			fetches++
		}
	}
	// A real host asks for its script once per network boot (a script that fails waits
	// 10 s and leaves to the next boot device), here twice: well inside the default
	// per-source limit (http.rateLimits.script: 2/s, bursts of 20).
	if n := scriptsRateLimited(t, seg.NS, rbIP); n != 0 {
		t.Errorf("%v of the host's script fetches were rate-limited (429)", n)
	}
	if fetches < 2 || fetches > 10 {
		t.Errorf("%s fetched its script %d times for two network boots (inspect, provision), want 2 and well under the burst of 20", id, fetches)
	}
	t.Logf("%s fetched its iPXE script %d times, none rate-limited", id, fetches)
}
