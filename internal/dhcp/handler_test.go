package dhcp

import (
	"context"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/rackboot/rackboot/internal/inventory"
)

const (
	uuidHex  = "00112233445566778899aabbccddeeff00"
	relayHex = "0104706f72740203737731"
	bcast    = "255.255.255.255:68"
)

// with merges option maps; later ones win, "" deletes.
func with(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	for k, v := range out {
		if v == "" {
			delete(out, k)
		}
	}
	return out
}

// localOpts are what every address reply on the local subnet carries.
func localOpts() map[string]string {
	return map[string]string{
		"mask": "255.255.255.0", "router": "10.0.0.254", "dns": "10.0.0.53", "domain": "rack1.example",
		"lease": "1h0m0s", "t1": "30m0s", "t2": "52m30s", "serverID": "10.0.0.1",
	}
}

func pxeOpts(file string) map[string]string {
	return map[string]string{"class": "PXEClient", "vendor": "060108ff", "uuid": uuidHex, "tftpServer": "10.0.0.1", "bootfile": file}
}

// TestSingleMessage covers one request against a fresh handler: every mode, arch,
// vendor class and relay case, each against the fake store and the bbolt inventory.
func TestSingleMessage(t *testing.T) {
	scriptURL := func(mac string) string { return "http://10.0.0.1:8080/ipxe/boot.ipxe?mac=" + mac }
	cases := []struct {
		name    string
		mutate  func(*Config)
		req     *dhcpv4.DHCPv4
		listen  Listener
		peer    string
		want    *view
		outcome outcome
		check   func(t *testing.T, e *env)
	}{
		{
			name: "BIOS PXE, reserved address",
			req:  msg(dhcpv4.MessageTypeDiscover, macReserved, pxe(iana.INTEL_X86PC)),
			want: &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.11", SIAddr: "10.0.0.1", File: "undionly.kpxe",
				Opts: with(localOpts(), pxeOpts("undionly.kpxe"), map[string]string{"hostname": "node1"})},
			outcome: outReplied,
			check: func(t *testing.T, e *env) {
				l, ok := e.lease(macReserved)
				if !ok || l.IP != "10.0.0.11" || l.State != inventory.LeaseOffered || !l.Expires.Equal(e.clock.Now().Add(time.Minute)) {
					t.Errorf("offer not held: %+v %v", l, ok)
				}
				h, _ := e.store.HostByMAC(context.Background(), macReserved)
				if h.Arch != "x86_64" || h.Firmware != inventory.FirmwareBIOS {
					t.Errorf("arch not recorded: %q %q", h.Arch, h.Firmware)
				}
				if diff := cmp.Diff([]string{"dhcp.discover", "dhcp.offer"}, e.eventTypes("node1")); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
				evs, _ := e.store.Events(context.Background(), "node1", 1)
				if diff := cmp.Diff(map[string]string{"ip": "10.0.0.11", "bootfile": "undionly.kpxe", "arch": "bios"}, evs[0].Fields); diff != "" {
					t.Errorf("offer event fields (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "x86-64 UEFI PXE (arch 7), known host from the pool",
			req:  msg(dhcpv4.MessageTypeDiscover, macKnown, pxe(iana.EFI_X86_64)),
			want: &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.100", SIAddr: "10.0.0.1", File: "snponly.efi",
				Opts: with(localOpts(), pxeOpts("snponly.efi"))},
			outcome: outReplied,
			check: func(t *testing.T, e *env) {
				h, _ := e.store.HostByMAC(context.Background(), macKnown)
				if h.Arch != "x86_64" || h.Firmware != inventory.FirmwareUEFI {
					t.Errorf("arch not recorded: %q %q", h.Arch, h.Firmware)
				}
			},
		},
		{
			name:   "arch 9 with ipxe.efi configured",
			mutate: func(c *Config) { c.Boot.UEFIFile = "ipxe.efi" },
			req:    msg(dhcpv4.MessageTypeDiscover, macKnown, pxe(iana.EFI_BC)),
			want: &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.100", SIAddr: "10.0.0.1", File: "ipxe.efi",
				Opts: with(localOpts(), pxeOpts("ipxe.efi"))},
			outcome: outReplied,
		},
		{
			name: "arch only in the vendor class string",
			req: msg(dhcpv4.MessageTypeDiscover, macKnown,
				dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016"))),
			want: &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.100", SIAddr: "10.0.0.1", File: "snponly.efi",
				Opts: with(localOpts(), pxeOpts("snponly.efi"), map[string]string{"uuid": ""})},
			outcome: outReplied,
		},
		{
			name: "UEFI HTTP boot gets a URL and HTTPClient echoed",
			req:  msg(dhcpv4.MessageTypeDiscover, macReserved, httpClient(iana.EFI_X86_64_HTTP)),
			want: &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.11", SIAddr: "10.0.0.1",
				File: "http://10.0.0.1:8080/ipxe/bin/snponly.efi",
				Opts: with(localOpts(), map[string]string{"hostname": "node1", "class": "HTTPClient",
					"bootfile": "http://10.0.0.1:8080/ipxe/bin/snponly.efi"})},
			outcome: outReplied,
		},
		{
			name: "HTTPClient without option 93 is x86-64 UEFI",
			req:  msg(dhcpv4.MessageTypeDiscover, macReserved, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient"))),
			want: &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.11", SIAddr: "10.0.0.1",
				File: "http://10.0.0.1:8080/ipxe/bin/snponly.efi",
				Opts: with(localOpts(), map[string]string{"hostname": "node1", "class": "HTTPClient",
					"bootfile": "http://10.0.0.1:8080/ipxe/bin/snponly.efi"})},
			outcome: outReplied,
		},
		{
			name: "PXEClient without option 93 is BIOS",
			req:  msg(dhcpv4.MessageTypeDiscover, macKnown, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient"))),
			want: &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.100", SIAddr: "10.0.0.1", File: "undionly.kpxe",
				Opts: with(localOpts(), pxeOpts("undionly.kpxe"), map[string]string{"uuid": ""})},
			outcome: outReplied,
		},
		{
			name: "iPXE by user class gets the script URL",
			req:  msg(dhcpv4.MessageTypeDiscover, macReserved, ipxe(iana.INTEL_X86PC)),
			want: &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.11", SIAddr: "10.0.0.1", File: scriptURL(macReserved),
				Opts: with(localOpts(), pxeOpts(scriptURL(macReserved)), map[string]string{"hostname": "node1", "tftpServer": ""})},
			outcome: outReplied,
		},
		{
			name: "iPXE by option 175 alone",
			req: msg(dhcpv4.MessageTypeDiscover, macKnown, pxe(iana.EFI_X86_64),
				dhcpv4.WithGeneric(dhcpv4.OptionEtherboot, []byte{0xb1, 1, 1})),
			want: &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.100", SIAddr: "10.0.0.1", File: scriptURL(macKnown),
				Opts: with(localOpts(), pxeOpts(scriptURL(macKnown)), map[string]string{"tftpServer": ""})},
			outcome: outReplied,
		},
		{
			name: "not a netboot client: no boot options",
			req:  msg(dhcpv4.MessageTypeDiscover, macReserved, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("udhcp 1.36.1"))),
			want: &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.11",
				Opts: with(localOpts(), map[string]string{"hostname": "node1"})},
			outcome: outReplied,
		},
		{
			name:    "arm64 without an arm64 binary: address only",
			req:     msg(dhcpv4.MessageTypeDiscover, macKnown, pxe(iana.EFI_ARM64)),
			want:    &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.100", Opts: localOpts()},
			outcome: outReplied,
		},
		{
			name:   "arm64 with an arm64 binary",
			mutate: func(c *Config) { c.Boot.ARM64File = "ipxe-arm64.efi" },
			req:    msg(dhcpv4.MessageTypeDiscover, macKnown, pxe(iana.EFI_ARM64)),
			want: &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.100", SIAddr: "10.0.0.1", File: "ipxe-arm64.efi",
				Opts: with(localOpts(), pxeOpts("ipxe-arm64.efi"))},
			outcome: outReplied,
		},
		{
			name:    "unknown MAC, hosts ignored: silence",
			req:     msg(dhcpv4.MessageTypeDiscover, macUnknown, pxe(iana.INTEL_X86PC)),
			outcome: outIgnored,
			check: func(t *testing.T, e *env) {
				if _, ok := e.lease(macUnknown); ok {
					t.Error("a lease was stored for an ignored MAC")
				}
			},
		},
		{
			name:   "unknown PXE MAC, discovery on: pool address and a discovered host",
			mutate: func(c *Config) { c.UnknownHosts = UnknownDiscover },
			req:    msg(dhcpv4.MessageTypeDiscover, macUnknown, pxe(iana.EFI_X86_64)),
			want: &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.100", SIAddr: "10.0.0.1", File: "snponly.efi",
				Opts: with(localOpts(), pxeOpts("snponly.efi"))},
			outcome: outReplied,
			check: func(t *testing.T, e *env) {
				h, err := e.store.HostByMAC(context.Background(), macUnknown)
				if err != nil {
					t.Fatalf("no host enrolled: %v", err)
				}
				want := inventory.Host{ID: "mac-525400999999", MACs: []string{macUnknown}, State: inventory.StateDiscovered, Arch: "x86_64", Firmware: inventory.FirmwareUEFI}
				got := inventory.Host{ID: h.ID, MACs: h.MACs, State: h.State, Arch: h.Arch, Firmware: h.Firmware}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("discovered host (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff([]string{"dhcp.discover", "dhcp.offer"}, e.eventTypes(h.ID)); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
			},
		},
		{
			name:    "unknown non-PXE MAC, discovery on: pool address, no host",
			mutate:  func(c *Config) { c.UnknownHosts = UnknownDiscover },
			req:     msg(dhcpv4.MessageTypeDiscover, macUnknown),
			want:    &view{Type: "OFFER", Dest: bcast, YIAddr: "10.0.0.100", Opts: localOpts()},
			outcome: outReplied,
			check: func(t *testing.T, e *env) {
				if _, err := e.store.HostByMAC(context.Background(), macUnknown); err == nil {
					t.Error("a non-netboot client was enrolled")
				}
			},
		},
		{
			name: "relayed: remote subnet, unicast to the relay, option 82 echoed",
			req:  msg(dhcpv4.MessageTypeDiscover, macRemote, pxe(iana.INTEL_X86PC), relayed("10.0.1.1")),
			want: &view{Type: "OFFER", Dest: "10.0.1.1:67", YIAddr: "10.0.1.11", SIAddr: "10.0.0.1", GIAddr: "10.0.1.1", File: "undionly.kpxe",
				Opts: with(pxeOpts("undionly.kpxe"), map[string]string{
					"mask": "255.255.255.0", "router": "10.0.1.1", "lease": "2h0m0s", "t1": "1h0m0s", "t2": "1h45m0s",
					"serverID": "10.0.0.1", "hostname": "remote1.rack2.example", "relayInfo": relayHex,
					// RFC 3442: width, significant octets, gateway.
					"routes": "10c0a8" + "0a000102" + "00" + "0a000101"})},
			outcome: outReplied,
			check: func(t *testing.T, e *env) {
				evs, _ := e.store.Events(context.Background(), "remote1", 0)
				if len(evs) == 0 || evs[0].Fields["relay"] != "10.0.1.1" {
					t.Errorf("relay not on the event: %+v", evs)
				}
			},
		},
		{
			name: "classless routes only when requested",
			req:  msg(dhcpv4.MessageTypeDiscover, macRemote, relayed("10.0.1.1"), prl(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter)),
			want: &view{Type: "OFFER", Dest: "10.0.1.1:67", YIAddr: "10.0.1.11", GIAddr: "10.0.1.1",
				Opts: map[string]string{"mask": "255.255.255.0", "router": "10.0.1.1", "lease": "2h0m0s", "t1": "1h0m0s", "t2": "1h45m0s",
					"serverID": "10.0.0.1", "hostname": "remote1.rack2.example", "relayInfo": relayHex}},
			outcome: outReplied,
		},
		{
			name:    "relay from an unknown subnet is dropped",
			req:     msg(dhcpv4.MessageTypeDiscover, macKnown, relayed("10.9.9.1")),
			outcome: outDropped,
		},
		{
			name:    "reservation on another subnet than the request's",
			req:     msg(dhcpv4.MessageTypeDiscover, macRemote),
			outcome: outError,
		},
		{
			name: "INIT-REBOOT of the reserved address: ACK",
			req:  msg(dhcpv4.MessageTypeRequest, macReserved, requested("10.0.0.11")),
			want: &view{Type: "ACK", Dest: bcast, YIAddr: "10.0.0.11",
				Opts: with(localOpts(), map[string]string{"hostname": "node1"})},
			outcome: outReplied,
			check: func(t *testing.T, e *env) {
				l, ok := e.lease(macReserved)
				if !ok || l.State != inventory.LeaseBound || l.IP != "10.0.0.11" || !l.Expires.Equal(e.clock.Now().Add(time.Hour)) || l.Hostname != "node1" {
					t.Errorf("lease not bound: %+v", l)
				}
			},
		},
		{
			name: "INIT-REBOOT of a wrong address: NAK broadcast",
			req:  msg(dhcpv4.MessageTypeRequest, macReserved, requested("10.0.0.12")),
			want: &view{Type: "NAK", Dest: bcast,
				Opts: map[string]string{"serverID": "10.0.0.1", "message": "10.0.0.12 is not this host's reserved address"}},
			outcome: outNAK,
			check: func(t *testing.T, e *env) {
				if diff := cmp.Diff([]string{"dhcp.nak"}, e.eventTypes("node1")); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "INIT-REBOOT on the wrong network: NAK",
			req:  msg(dhcpv4.MessageTypeRequest, macReserved, requested("192.168.7.7")),
			want: &view{Type: "NAK", Dest: bcast,
				Opts: map[string]string{"serverID": "10.0.0.1", "message": "192.168.7.7 is not on this network (10.0.0.0/24)"}},
			outcome: outNAK,
		},
		{
			name: "relayed NAK goes to the relay with the broadcast bit",
			req:  msg(dhcpv4.MessageTypeRequest, macRemote, requested("10.0.1.99"), relayed("10.0.1.1")),
			want: &view{Type: "NAK", Dest: "10.0.1.1:67", GIAddr: "10.0.1.1", Broadcast: true,
				Opts: map[string]string{"serverID": "10.0.0.1", "message": "10.0.1.99 is not this host's reserved address", "relayInfo": relayHex}},
			outcome: outNAK,
		},
		{
			name:    "INIT-REBOOT from a client we have no record of: silence",
			mutate:  func(c *Config) { c.UnknownHosts = UnknownDiscover },
			req:     msg(dhcpv4.MessageTypeRequest, macUnknown, requested("10.0.0.100")),
			outcome: outIgnored,
		},
		{
			name:    "REQUEST naming no address is dropped",
			req:     msg(dhcpv4.MessageTypeRequest, macReserved),
			outcome: outDropped,
		},
		{
			name:    "SELECTING another server: silence",
			req:     msg(dhcpv4.MessageTypeRequest, macReserved, sid("10.0.0.2"), requested("10.0.0.11")),
			outcome: outIgnored,
		},
		{
			name:    "SELECTING us for a pool address of a known host",
			req:     msg(dhcpv4.MessageTypeRequest, macKnown, sid("10.0.0.1"), requested("10.0.0.105")),
			want:    &view{Type: "ACK", Dest: bcast, YIAddr: "10.0.0.105", Opts: localOpts()},
			outcome: outReplied,
		},
		{
			name: "SELECTING us for an address outside the range: NAK",
			req:  msg(dhcpv4.MessageTypeRequest, macKnown, sid("10.0.0.1"), requested("10.0.0.50")),
			want: &view{Type: "NAK", Dest: bcast,
				Opts: map[string]string{"serverID": "10.0.0.1", "message": "10.0.0.50 is not in the dynamic range"}},
			outcome: outNAK,
		},
		{
			name: "SELECTING us for another host's reserved address: NAK",
			mutate: func(c *Config) {
				c.Subnets[0].Range = Range{ip("10.0.0.10"), ip("10.0.0.20")}
			},
			req: msg(dhcpv4.MessageTypeRequest, macKnown, sid("10.0.0.1"), requested("10.0.0.11")),
			want: &view{Type: "NAK", Dest: bcast,
				Opts: map[string]string{"serverID": "10.0.0.1", "message": "10.0.0.11 is in use by another client"}},
			outcome: outNAK,
		},
		{
			name: "INFORM: configuration, no address, no lease",
			req:  msg(dhcpv4.MessageTypeInform, macKnown, ciaddr("10.0.0.50")),
			want: &view{Type: "ACK", Dest: "10.0.0.50:68", CIAddr: "10.0.0.50",
				Opts: with(localOpts(), map[string]string{"lease": "", "t1": "", "t2": ""})},
			outcome: outReplied,
		},
		{
			name:    "INFORM from outside our subnets",
			req:     msg(dhcpv4.MessageTypeInform, macKnown, ciaddr("172.16.0.5")),
			outcome: outIgnored,
		},
		{
			name:    "RELEASE without a lease",
			req:     msg(dhcpv4.MessageTypeRelease, macKnown, ciaddr("10.0.0.100"), sid("10.0.0.1")),
			outcome: outIgnored,
		},
		{
			name:    "DECLINE for another server",
			req:     msg(dhcpv4.MessageTypeDecline, macKnown, requested("10.0.0.100"), sid("10.0.0.9")),
			outcome: outIgnored,
		},
		{
			name:    "BOOTP request",
			req:     msg(dhcpv4.MessageTypeDiscover, macKnown, dhcpv4.WithoutOption(dhcpv4.OptionDHCPMessageType)),
			outcome: outIgnored,
		},
		{
			name:    "a server message sent to us",
			req:     msg(dhcpv4.MessageTypeOffer, macKnown),
			outcome: outIgnored,
		},
		{
			name:    "a BOOTREPLY",
			req:     msg(dhcpv4.MessageTypeDiscover, macKnown, func(d *dhcpv4.DHCPv4) { d.OpCode = dhcpv4.OpcodeBootReply }),
			outcome: outIgnored,
		},
		{
			name:    "not Ethernet",
			req:     msg(dhcpv4.MessageTypeDiscover, macKnown, dhcpv4.WithHwAddr([]byte{1, 2, 3, 4, 5, 6, 7, 8})),
			outcome: outIgnored,
		},

		// Proxy mode.
		{
			name:   "proxy: BIOS PXE DISCOVER gets an address-less OFFER",
			mutate: proxyMode,
			req:    msg(dhcpv4.MessageTypeDiscover, macReserved, pxe(iana.INTEL_X86PC)),
			want: &view{Type: "OFFER", Dest: bcast, SIAddr: "10.0.0.1", File: "undionly.kpxe",
				Opts: with(pxeOpts("undionly.kpxe"), map[string]string{"serverID": "10.0.0.1"})},
			outcome: outReplied,
			check: func(t *testing.T, e *env) {
				if _, ok := e.lease(macReserved); ok {
					t.Error("proxy mode stored a lease")
				}
				if diff := cmp.Diff([]string{"dhcp.discover", "dhcp.offer"}, e.eventTypes("node1")); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
			},
		},
		{
			name:   "proxy: UEFI HTTP boot",
			mutate: proxyMode,
			req:    msg(dhcpv4.MessageTypeDiscover, macKnown, httpClient(iana.EFI_X86_64_HTTP)),
			want: &view{Type: "OFFER", Dest: bcast, SIAddr: "10.0.0.1", File: "http://10.0.0.1:8080/ipxe/bin/snponly.efi",
				Opts: map[string]string{"serverID": "10.0.0.1", "class": "HTTPClient", "bootfile": "http://10.0.0.1:8080/ipxe/bin/snponly.efi"}},
			outcome: outReplied,
		},
		{
			name:   "proxy: iPXE gets the script",
			mutate: proxyMode,
			req:    msg(dhcpv4.MessageTypeDiscover, macKnown, ipxe(iana.EFI_X86_64)),
			// The broadcast offer carries no boot file for iPXE, which then asks port
			// 4011 from its address and gets its keyed script URL there.
			want: &view{Type: "OFFER", Dest: bcast,
				Opts: with(pxeOpts(""), map[string]string{"serverID": "10.0.0.1", "tftpServer": "", "bootfile": ""})},
			outcome: outReplied,
		},
		{
			name:    "proxy: non-PXE client ignored",
			mutate:  proxyMode,
			req:     msg(dhcpv4.MessageTypeDiscover, macReserved),
			outcome: outIgnored,
		},
		{
			name:    "proxy: REQUEST on port 67 is the site server's",
			mutate:  proxyMode,
			req:     msg(dhcpv4.MessageTypeRequest, macReserved, pxe(iana.INTEL_X86PC), sid("10.0.0.2"), requested("10.0.0.77")),
			outcome: outIgnored,
		},
		{
			name:    "proxy: unknown MAC ignored",
			mutate:  proxyMode,
			req:     msg(dhcpv4.MessageTypeDiscover, macUnknown, pxe(iana.INTEL_X86PC)),
			outcome: outIgnored,
		},
		{
			name:   "proxy: unknown MAC discovered",
			mutate: func(c *Config) { proxyMode(c); c.UnknownHosts = UnknownDiscover },
			req:    msg(dhcpv4.MessageTypeDiscover, macUnknown, pxe(iana.INTEL_X86PC)),
			want: &view{Type: "OFFER", Dest: bcast, SIAddr: "10.0.0.1", File: "undionly.kpxe",
				Opts: with(pxeOpts("undionly.kpxe"), map[string]string{"serverID": "10.0.0.1"})},
			outcome: outReplied,
			check: func(t *testing.T, e *env) {
				if h, err := e.store.HostByMAC(context.Background(), macUnknown); err != nil || h.State != inventory.StateDiscovered {
					t.Errorf("not enrolled as discovered: %+v %v", h, err)
				}
			},
		},
		{
			name:   "proxy: relayed DISCOVER answered through the relay",
			mutate: proxyMode,
			req:    msg(dhcpv4.MessageTypeDiscover, macReserved, pxe(iana.EFI_X86_64), relayed("172.16.5.1")),
			want: &view{Type: "OFFER", Dest: "172.16.5.1:67", SIAddr: "10.0.0.1", GIAddr: "172.16.5.1", File: "snponly.efi",
				Opts: with(pxeOpts("snponly.efi"), map[string]string{"serverID": "10.0.0.1", "relayInfo": relayHex})},
			outcome: outReplied,
		},
		{
			name:   "proxy: REQUEST on port 4011 gets the boot file, unicast to the peer",
			mutate: proxyMode,
			req:    msg(dhcpv4.MessageTypeRequest, macReserved, pxe(iana.EFI_X86_64), ciaddr("10.0.0.77")),
			listen: ListenerPXE, peer: "10.0.0.77:68",
			want: &view{Type: "ACK", Dest: "10.0.0.77:68", CIAddr: "10.0.0.77", SIAddr: "10.0.0.1", File: "snponly.efi",
				Opts: with(pxeOpts("snponly.efi"), map[string]string{"serverID": "10.0.0.1"})},
			outcome: outReplied,
			check: func(t *testing.T, e *env) {
				if diff := cmp.Diff([]string{"dhcp.ack"}, e.eventTypes("node1")); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
			},
		},
		{
			name:   "proxy: iPXE on port 4011 gets the script",
			mutate: proxyMode,
			req:    msg(dhcpv4.MessageTypeRequest, macReserved, ipxe(iana.INTEL_X86PC), ciaddr("10.0.0.77")),
			listen: ListenerPXE, peer: "10.0.0.77:4011",
			want: &view{Type: "ACK", Dest: "10.0.0.77:4011", CIAddr: "10.0.0.77", SIAddr: "10.0.0.1", File: scriptURL(macReserved),
				Opts: with(pxeOpts(scriptURL(macReserved)), map[string]string{"serverID": "10.0.0.1", "tftpServer": ""})},
			outcome: outReplied,
		},
		{
			name:    "proxy: DISCOVER on port 4011 ignored",
			mutate:  proxyMode,
			req:     msg(dhcpv4.MessageTypeDiscover, macReserved, pxe(iana.INTEL_X86PC)),
			listen:  ListenerPXE,
			peer:    "10.0.0.77:68",
			outcome: outIgnored,
		},
	}
	for _, sk := range storeKinds() {
		t.Run(sk.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					e := newEnv(t, sk.open, tc.mutate)
					meta := Meta{Listener: tc.listen, Peer: netip.MustParseAddrPort("0.0.0.0:68")}
					if tc.peer != "" {
						meta.Peer = netip.MustParseAddrPort(tc.peer)
					}
					got := viewOf(e.h.Handle(context.Background(), tc.req, meta))
					if diff := cmp.Diff(tc.want, got); diff != "" {
						t.Errorf("reply (-want +got):\n%s", diff)
					}
					if n := e.count(typeLabel(tc.req), tc.outcome); n != 1 {
						t.Errorf("rackboot_dhcp_packets_total{type=%q,outcome=%q} = %v, want 1", typeLabel(tc.req), tc.outcome, n)
					}
					if tc.check != nil {
						tc.check(t, e)
					}
				})
			}
		})
	}
}

func proxyMode(c *Config) { c.Mode = ModeProxy; c.Subnets = nil }
