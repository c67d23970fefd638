package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

func addClient(t testing.TB, seg *Segment, role, mac string) *Netns {
	t.Helper()
	ns, err := seg.AddClient(t, role, mustMAC(t, mac))
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// listenAt adds a client namespace with mac to seg, gives its eth0 the address prefix
// (such as 10.77.0.2/16) and opens a UDP socket there on that address and port. The
// socket is closed when the test ends.
func listenAt(t testing.TB, seg *Segment, role, mac, prefix string, port int) *net.UDPConn {
	t.Helper()
	ns := addClient(t, seg, role, mac)
	if err := ns.IP("addr", "add", prefix, "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParsePrefix(prefix).Addr()
	pc, err := ns.ListenPacket("udp4", netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

func inRange(ip, first, last string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	return netip.MustParseAddr(first).Compare(a) <= 0 && a.Compare(netip.MustParseAddr(last)) <= 0
}

// TestNetnsRackbootDHCPServer is issue 2 "done when" 1: busybox udhcpc posing as a PXE
// client gets its reserved address, router, DNS and the boot file for its arch; an unknown
// MAC gets a pool address only with --unknown-hosts discover; leases survive a restart
// (checked with a third MAC that must not be handed a leased address, udhcpc asking
// again, and dhclient's INIT-REBOOT REQUEST being ACKed).
func TestNetnsRackbootDHCPServer(t *testing.T) {
	Require(t, "busybox", "dhclient")
	t.Parallel()
	dir := logDir(t)
	seg := newSegment(t, "dhcpsrv", "10.77.0.1/24")
	rb := startRackboot(t, seg.NS, dir, serverIP,
		"--dhcp-mode", "server",
		"--dhcp-range", "10.77.0.100-10.77.0.109",
		"--dhcp-router", "10.77.0.1",
		"--dhcp-dns", "10.77.0.53,10.77.0.54",
		"--unknown-hosts", "ignore")

	const knownMAC = "52:54:00:10:00:01"
	rb.mustCLI("host", "add", "--mac", knownMAC, "--ip", "10.77.0.10", "--hostname", "node1")
	known := addClient(t, seg, "known", knownMAC)

	want := func(bootFile string) map[string]string {
		return map[string]string{
			"ip": "10.77.0.10", "subnet": "255.255.255.0", "router": "10.77.0.1",
			"dns": "10.77.0.53 10.77.0.54", "serverid": serverIP, "boot file": bootFile,
		}
	}
	ipxeScript := "http://10.77.0.1:8080/ipxe/boot.ipxe?mac=" + knownMAC
	for _, tt := range []struct {
		name string
		args []string
		want map[string]string
	}{
		{"bios pxe rom", pxeClientArgs(0), want("undionly.kpxe")},
		{"uefi x64 pxe (arch 7)", pxeClientArgs(7), want("snponly.efi")},
		{"uefi x64 pxe (arch 9)", pxeClientArgs(9), want("snponly.efi")},
		{"ipxe user class", append(pxeClientArgs(0), "-x", "0x4d:69505845"), want(ipxeScript)},
		{"ipxe option 175", append(pxeClientArgs(7), "-x", "0xaf:130101"), want(ipxeScript)},
		{"uefi http boot", []string{"-C", "-V", "HTTPClient:Arch:00016:UNDI:003000", "-x", "0x5d:0010"},
			want("http://10.77.0.1:8080/ipxe/bin/snponly.efi")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lease, err := runUdhcpc(t, known, dir, strings.ReplaceAll(tt.name, " ", "-"), tt.args...)
			if err != nil {
				t.Fatalf("%v\nrackboot log:\n%s", err, Tail(rb.proc.Log, 30))
			}
			got := map[string]string{
				"ip": lease["ip"], "subnet": lease["subnet"], "router": lease["router"],
				"dns": lease["dns"], "serverid": lease["serverid"], "boot file": lease.BootFile(),
			}
			// iPXE's script URL carries this boot's key (package trust): check its
			// shape, then compare the URL without it.
			if strings.HasPrefix(tt.want["boot file"], ipxeScript) {
				u, key, ok := strings.Cut(got["boot file"], "&key=")
				if !ok || len(key) < 16 {
					t.Errorf("iPXE boot file %q carries no boot key", got["boot file"])
				}
				got["boot file"] = u
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lease (-want +got):\n%s", diff)
			}
			// TFTP boot files need next-server; HTTP URLs carry their host.
			if !strings.HasPrefix(tt.want["boot file"], "http") && lease["siaddr"] != serverIP {
				t.Errorf("siaddr = %q, want %s (TFTP next-server)", lease["siaddr"], serverIP)
			}
		})
	}

	unknownA := addClient(t, seg, "unknown-a", "52:54:00:10:00:0a")
	unknownB := addClient(t, seg, "unknown-b", "52:54:00:10:00:0b")
	unknownC := addClient(t, seg, "unknown-c", "52:54:00:10:00:0c")

	t.Run("unknown MAC ignored", func(t *testing.T) {
		if lease, err := runUdhcpc(t, unknownA, dir, "ignored-a", pxeClientArgs(0)...); !errors.Is(err, errNoLease) {
			t.Fatalf("unknown MAC with --unknown-hosts ignore got %v (err %v), want no lease", lease, err)
		}
	})
	if t.Failed() {
		return
	}

	rb.setFlag("--unknown-hosts", "discover")
	rb.restart()

	var ipA, ipB string
	dhclientB := newDHClient(t, unknownB, dir, "dhclient-b")
	t.Run("unknown MAC gets a pool address with discovery", func(t *testing.T) {
		lease, err := runUdhcpc(t, unknownA, dir, "discover-a", pxeClientArgs(0)...)
		if err != nil {
			t.Fatalf("%v\nrackboot log:\n%s", err, Tail(rb.proc.Log, 30))
		}
		ipA = lease["ip"]
		if !inRange(ipA, "10.77.0.100", "10.77.0.109") {
			t.Errorf("unknown MAC A got %q, want an address from the pool 10.77.0.100-109", ipA)
		}
		if lease.BootFile() != "undionly.kpxe" {
			t.Errorf("unknown MAC A boot file = %q, want undionly.kpxe", lease.BootFile())
		}
		// A second real client, ISC dhclient, for MAC B.
		res := dhclientB.run(t)
		ipB = res.ip
		if res.reason != "BOUND" || !inRange(ipB, "10.77.0.100", "10.77.0.109") || ipB == ipA {
			t.Errorf("dhclient for MAC B: reason %s ip %q, want BOUND with another pool address than A's %s", res.reason, ipB, ipA)
		}
	})
	if t.Failed() {
		return
	}

	rb.restart()

	t.Run("leases survive a restart", func(t *testing.T) {
		// A new MAC first: had the leases been lost, it would get A's or B's address.
		lease, err := runUdhcpc(t, unknownC, dir, "restart-c", pxeClientArgs(0)...)
		if err != nil {
			t.Fatal(err)
		}
		if ipC := lease["ip"]; ipC == ipA || ipC == ipB || !inRange(ipC, "10.77.0.100", "10.77.0.109") {
			t.Errorf("new MAC C after restart got %q, want a free pool address (A holds %s, B holds %s)", ipC, ipA, ipB)
		}
		lease, err = runUdhcpc(t, unknownA, dir, "restart-a", pxeClientArgs(0)...)
		if err != nil {
			t.Fatal(err)
		}
		if lease["ip"] != ipA {
			t.Errorf("MAC A after restart got %q, want its lease %s", lease["ip"], ipA)
		}
		// dhclient starts from its lease file: INIT-REBOOT (REQUEST without server ID for
		// the old address). REBOOT means the server ACKed it; a NAK would show as BOUND
		// after a new DISCOVER.
		res := dhclientB.run(t)
		if res.reason != "REBOOT" || res.ip != ipB {
			t.Errorf("dhclient for MAC B after restart: reason %s ip %q, want REBOOT with %s", res.reason, res.ip, ipB)
		}
		lease, err = runUdhcpc(t, known, dir, "restart-known", pxeClientArgs(0)...)
		if err != nil {
			t.Fatal(err)
		}
		if lease["ip"] != "10.77.0.10" {
			t.Errorf("reserved host after restart got %q, want 10.77.0.10", lease["ip"])
		}
	})
}

// dhclient runs ISC dhclient once per run on eth0 of ns, with a lease file that persists
// between runs and a script that records the reason and address instead of configuring.
type dhclient struct {
	ns                        *Netns
	dir, name, leases, script string
	runs                      int
}

type dhclientResult struct{ reason, ip string }

func newDHClient(t testing.TB, ns *Netns, dir, name string) *dhclient {
	return &dhclient{ns: ns, dir: dir, name: name, leases: filepath.Join(dir, name+".leases"), script: filepath.Join(dir, name+".sh")}
}

func (d *dhclient) run(t testing.TB) dhclientResult {
	t.Helper()
	d.runs++
	out := filepath.Join(d.dir, fmt.Sprintf("%s-%d.out", d.name, d.runs))
	// dhclient gives its script a fresh environment, so the output path is written in.
	body := fmt.Sprintf(`#!/bin/sh
case "$reason" in
BOUND|RENEW|REBIND|REBOOT) echo "$reason $new_ip_address" >> %q ;;
esac
exit 0
`, out)
	if err := os.WriteFile(d.script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	// -d keeps it in the foreground, so it is a tracked process; it is stopped as soon as
	// the script reports a lease, before any renewal.
	p, err := d.ns.Start(t, filepath.Join(d.dir, fmt.Sprintf("%s-%d.log", d.name, d.runs)),
		"dhclient", "-4", "-d", "-v", "-1", "-lf", d.leases, "-pf", filepath.Join(d.dir, d.name+".pid"), "-sf", d.script, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	var line []string
	WaitFor(t, 30*time.Second, "dhclient "+d.name+" to get a lease", Alive(FileMatches(out, leaseLineRe, &line), p))
	_ = p.StopWithin(2 * time.Second)
	return dhclientResult{reason: line[1], ip: line[2]}
}

// TestNetnsRackbootDHCPRelay is issue 2 "done when" 2: dhcrelay in a router namespace
// relays a client on 10.77.1.0/24 to rackboot on 10.77.0.0/24 (a second subnet from the
// --config YAML). The client gets its reservation on the relayed subnet, and every reply
// rackboot sends goes by unicast to the relay's giaddr, as an AF_PACKET capture on the
// router's upstream port shows.
func TestNetnsRackbootDHCPRelay(t *testing.T) {
	Require(t, "busybox", "dhcrelay")
	t.Parallel()
	dir := logDir(t)
	srv := newSegment(t, "relay-srv", "10.77.0.1/24")
	// The router's namespace holds the client subnet's bridge; its address there is the
	// relay's giaddr.
	rtr := newSegment(t, "relay-rtr", "10.77.1.1/24")
	if _, err := srv.Attach(rtr.NS, "up", nil); err != nil {
		t.Fatal(err)
	}
	if err := rtr.NS.IP("addr", "add", "10.77.0.2/24", "dev", "up"); err != nil {
		t.Fatal(err)
	}
	if err := srv.NS.IP("route", "add", "10.77.1.0/24", "via", "10.77.0.2"); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "rackboot.yaml")
	if err := os.WriteFile(config, []byte(`dhcp:
  subnets:
    - cidr: 10.77.1.0/24
      range: 10.77.1.100-10.77.1.109
      router: 10.77.1.1
      dns: [10.77.0.53]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	rb := startRackboot(t, srv.NS, dir, serverIP,
		"--config", config,
		"--dhcp-mode", "server",
		"--dhcp-range", "10.77.0.100-10.77.0.109",
		"--dhcp-router", "10.77.0.1",
		"--dhcp-dns", "10.77.0.53",
		"--unknown-hosts", "discover")
	const relayedMAC = "52:54:00:11:00:01"
	rb.mustCLI("host", "add", "--mac", relayedMAC, "--ip", "10.77.1.10")

	capture, err := rtr.NS.CaptureUDP(t, "up", 67)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := rtr.NS.Start(t, filepath.Join(dir, "dhcrelay.log"),
		"dhcrelay", "-d", "-4", "-id", rtr.Bridge, "-iu", "up", serverIP)
	if err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "dhcrelay to listen", Alive(FileContains(relay.Log, "Sending on"), relay))

	client := addClient(t, rtr, "relay-c", relayedMAC)
	lease, err := runUdhcpc(t, client, dir, "relayed", pxeClientArgs(0)...)
	if err != nil {
		t.Fatalf("%v\ndhcrelay:\n%s\nrackboot:\n%s", err, Tail(relay.Log, 20), Tail(rb.proc.Log, 30))
	}
	got := map[string]string{"ip": lease["ip"], "router": lease["router"], "dns": lease["dns"], "serverid": lease["serverid"], "boot file": lease.BootFile()}
	want := map[string]string{"ip": "10.77.1.10", "router": "10.77.1.1", "dns": "10.77.0.53", "serverid": serverIP, "boot file": "undionly.kpxe"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("relayed lease (-want +got):\n%s", diff)
	}

	unknown := addClient(t, rtr, "relay-u", "52:54:00:11:00:02")
	lease, err = runUdhcpc(t, unknown, dir, "relayed-pool", pxeClientArgs(0)...)
	if err != nil {
		t.Fatal(err)
	}
	if !inRange(lease["ip"], "10.77.1.100", "10.77.1.109") || lease["router"] != "10.77.1.1" {
		t.Errorf("relayed unknown MAC got ip %q router %q, want the relayed subnet's pool and router 10.77.1.1", lease["ip"], lease["router"])
	}

	// Every server reply crossing the router's upstream port: unicast to giaddr:67.
	var replies []string
	for _, p := range capture.Packets() {
		if p.Src.Addr().String() != serverIP {
			continue
		}
		m, err := dhcpv4.FromBytes(p.Payload)
		if err != nil {
			t.Errorf("undecodable reply from %s to %s: %v", p.Src, p.Dst, err)
			continue
		}
		replies = append(replies, fmt.Sprintf("%s %s→%s giaddr=%s", m.MessageType(), p.Src, p.Dst, m.GatewayIPAddr))
		if p.Dst.String() != "10.77.1.1:67" {
			t.Errorf("reply %s for %s sent to %s, want unicast to the relay 10.77.1.1:67", m.MessageType(), m.ClientHWAddr, p.Dst)
		}
		if !m.GatewayIPAddr.Equal(net.ParseIP("10.77.1.1")) {
			t.Errorf("reply %s has giaddr %s, want the relay's 10.77.1.1", m.MessageType(), m.GatewayIPAddr)
		}
	}
	t.Logf("server replies seen on the relay's upstream port:\n  %s", strings.Join(replies, "\n  "))
	var offers, acks int
	for _, r := range replies {
		offers += strings.Count(r, "OFFER")
		acks += strings.Count(r, "ACK")
	}
	if offers < 2 || acks < 2 {
		t.Errorf("saw %d OFFERs and %d ACKs from rackboot at the relay, want at least 2 of each (two clients)", offers, acks)
	}
	if err := capture.Err(); err != nil {
		t.Error(err)
	}
}

// TestNetnsRackbootProxyDHCP is issue 2 "done when" 3: dnsmasq is the site DHCP server
// (addresses, no boot options) on 10.77.0.1 and rackboot runs in proxy mode on 10.77.0.2
// in the same namespace. A PXE client's DISCOVER draws an address offer from dnsmasq and
// a boot-only offer from rackboot; the client takes its address from dnsmasq (REQUEST/ACK)
// and its boot file from rackboot.
func TestNetnsRackbootProxyDHCP(t *testing.T) {
	Require(t, "dnsmasq")
	t.Parallel()
	dir := logDir(t)
	seg := newSegment(t, "proxy", "10.77.0.1/24")
	if err := seg.NS.IP("addr", "add", "10.77.0.2/24", "dev", seg.Bridge); err != nil {
		t.Fatal(err)
	}
	const proxyIP = "10.77.0.2"
	const clientMAC = "52:54:00:12:00:01"
	site := startDnsmasq(t, seg.NS, dir, seg.Bridge, "--no-ping",
		"--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h",
		"--dhcp-option=option:dns-server,10.77.0.53")
	rb := startRackboot(t, seg.NS, dir, proxyIP, "--dhcp-mode", "proxy", "--unknown-hosts", "ignore")
	rb.mustCLI("host", "add", "--mac", clientMAC, "--hostname", "proxied")
	client := addClient(t, seg, "proxy-c", clientMAC)

	for _, tt := range []struct {
		name     string
		mods     []dhcpv4.Modifier
		bootFile string
	}{
		{"bios pxe rom", pxeModifiers(0), "undionly.kpxe"},
		{"uefi x64 pxe", pxeModifiers(7), "snponly.efi"},
		// iPXE gets no boot file in the broadcast offer: it asks the PXE port (4011)
		// from its address for its keyed script URL (TestNetnsTrustAttacker/proxy).
		{"ipxe", append(pxeModifiers(0), dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE"))), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newProbe(t, client, clientMAC)
			var offers []*dhcpv4.DHCPv4
			haveBoth := func() bool {
				var site, proxy bool
				for _, o := range offers {
					site = site || o.ServerIdentifier().Equal(net.ParseIP(serverIP))
					proxy = proxy || o.ServerIdentifier().Equal(net.ParseIP(proxyIP)) || o.ServerIPAddr.Equal(net.ParseIP(proxyIP))
				}
				return site && proxy
			}
			discover, err := dhcpv4.NewDiscovery(mustMAC(t, clientMAC), append(tt.mods, dhcpv4.WithBroadcast(true))...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			_, err = c.SendAndRead(ctx, nclient4.DefaultServers, discover, func(m *dhcpv4.DHCPv4) bool {
				if m.MessageType() == dhcpv4.MessageTypeOffer {
					offers = append(offers, m)
				}
				return haveBoth()
			})
			if err != nil {
				t.Fatalf("collecting OFFERs: %v (got %d: %s)\ndnsmasq:\n%s\nrackboot:\n%s", err, len(offers), summarize(offers), Tail(site.Log, 10), Tail(rb.proc.Log, 20))
			}
			var siteOffer, proxyOffer *dhcpv4.DHCPv4
			for _, o := range offers {
				if o.ServerIdentifier().Equal(net.ParseIP(serverIP)) {
					siteOffer = o
				} else {
					proxyOffer = o
				}
			}
			// The site offer: an address, no boot options.
			if !inRange(siteOffer.YourIPAddr.String(), "10.77.0.50", "10.77.0.99") {
				t.Errorf("dnsmasq offered %s, want an address in 10.77.0.50-99", siteOffer.YourIPAddr)
			}
			// The proxy offer: no address, PXEClient, the boot file for this client.
			if !proxyOffer.YourIPAddr.IsUnspecified() {
				t.Errorf("proxy offer carries yiaddr %s, want 0.0.0.0 (proxyDHCP hands out no address)", proxyOffer.YourIPAddr)
			}
			if vc := proxyOffer.ClassIdentifier(); vc != "PXEClient" {
				t.Errorf("proxy offer vendor class = %q, want PXEClient", vc)
			}
			if got := bootFileOf(proxyOffer); got != tt.bootFile {
				t.Errorf("proxy offer boot file = %q, want %q", got, tt.bootFile)
			}
			if tt.bootFile != "" && !strings.HasPrefix(tt.bootFile, "http") && !proxyOffer.ServerIPAddr.Equal(net.ParseIP(proxyIP)) {
				t.Errorf("proxy offer next-server = %s, want %s", proxyOffer.ServerIPAddr, proxyIP)
			}
			// The client takes its address from the site server.
			req, err := dhcpv4.NewRequestFromOffer(siteOffer, append(tt.mods, dhcpv4.WithBroadcast(true))...)
			if err != nil {
				t.Fatal(err)
			}
			ack, err := c.SendAndRead(ctx, nclient4.DefaultServers, req, nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak))
			if err != nil {
				t.Fatalf("REQUEST to dnsmasq: %v", err)
			}
			if ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(siteOffer.YourIPAddr) || !ack.ServerIdentifier().Equal(net.ParseIP(serverIP)) {
				t.Errorf("REQUEST for %s answered %s yiaddr %s by %s, want ACK from dnsmasq %s", siteOffer.YourIPAddr, ack.MessageType(), ack.YourIPAddr, ack.ServerIdentifier(), serverIP)
			}
		})
	}
	if bytes.Contains(mustRead(t, rb.proc.Log), []byte("panic")) {
		t.Errorf("rackboot log mentions a panic:\n%s", Tail(rb.proc.Log, 40))
	}
}

var leaseLineRe = regexp.MustCompile(`(?m)^(BOUND|RENEW|REBIND|REBOOT) (\S+)$`)

// pxeModifiers make a DHCP message look like a PXE ROM's for arch (option 93).
func pxeModifiers(arch uint16) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", arch))),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{byte(arch >> 8), byte(arch)}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, bytes.Repeat([]byte{0x5a}, 16)...)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionBootfileName, dhcpv4.OptionTFTPServerName, dhcpv4.OptionClassIdentifier),
	}
}

// newProbe opens an nclient4 client on eth0 inside ns: raw packet socket, so it works on
// an interface with no address, and it sees every reply (broadcast or unicast).
func newProbe(t testing.TB, ns *Netns, mac string) *nclient4.Client {
	t.Helper()
	var c *nclient4.Client
	err := ns.Do(func() error {
		var err error
		c, err = nclient4.New("eth0", nclient4.WithHWAddr(mustMAC(t, mac)), nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(4))
		return err
	})
	if err != nil {
		t.Fatalf("DHCP probe in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func bootFileOf(m *dhcpv4.DHCPv4) string {
	if m.BootFileName != "" {
		return m.BootFileName
	}
	return m.BootFileNameOption()
}

func summarize(ms []*dhcpv4.DHCPv4) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("[%s from %s yiaddr %s file %q]", m.MessageType(), m.ServerIdentifier(), m.YourIPAddr, bootFileOf(m)))
	}
	return strings.Join(parts, " ")
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
