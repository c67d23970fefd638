package netconfig

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// messages splits Validate's joined error into its messages, checking that each is a
// *FieldError.
func messages(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Validate returned %T, not errors.Join's error: %v", err, err)
	}
	var out []string
	for _, e := range joined.Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Errorf("%T is not a *FieldError: %v", e, e)
		}
		out = append(out, e.Error())
	}
	return out
}

// lab returns labSpec changed by edit.
func lab(edit func(*Spec)) Spec {
	s := labSpec()
	edit(&s)
	return s
}

// static is one NIC with a static address and a default route, changed by edit.
func static(edit func(*Spec)) Spec {
	s := Spec{
		Ethernets: []Ethernet{{Name: "eno1", MAC: "3c:ec:ef:00:00:01", Addresses: []string{"10.0.0.5/24"}}},
		Routes:    []Route{{To: "default", Via: "10.0.0.1"}},
	}
	edit(&s)
	return s
}

func TestValidate(t *testing.T) {
	labNICs := []NIC{{Name: "ens3", MAC: "52:54:00:00:01:01"}, {Name: "ens4", MAC: "52:54:00:00:01:02"}}
	for _, c := range []struct {
		name string
		spec Spec
		nics []NIC
		want []string
	}{
		{name: "lab", spec: labSpec(), nics: labNICs},
		{name: "not inspected: MACs unchecked", spec: labSpec()},
		{
			name: "MACs in any case and form",
			spec: lab(func(s *Spec) { s.Ethernets[0].MAC = "52-54-00-00-01-01"; s.Ethernets[1].MAC = "5254.0000.0102" }),
			nics: []NIC{{Name: "ens3", MAC: "52:54:00:00:01:01"}, {Name: "ens4", MAC: "52:54:00:00:01:02"}},
		},
		{
			name: "MAC not on the host",
			spec: labSpec(),
			nics: []NIC{{Name: "ens3", MAC: "52:54:00:00:01:01"}, {Name: "ens5", MAC: "52:54:00:00:01:09"}, {Name: "ens2", MAC: "52:54:00:00:00:ff"}},
			want: []string{"network.ethernets[1].mac: 52:54:00:00:01:02 is not one of this host's NICs (52:54:00:00:00:ff, 52:54:00:00:01:01, 52:54:00:00:01:09)"},
		},
		{
			name: "bad MACs",
			spec: static(func(s *Spec) {
				s.Ethernets = append(s.Ethernets,
					Ethernet{Name: "eno2", MAC: "52:54:00:zz:00:01"},
					Ethernet{Name: "eno3"},
					Ethernet{Name: "eno4", MAC: "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"},
					Ethernet{Name: "eno5", MAC: "01:00:5e:00:00:01"},
					Ethernet{Name: "eno6", MAC: "3C:EC:EF:00:00:01"},
				)
			}),
			want: []string{
				`network.ethernets[1].mac: "52:54:00:zz:00:01" is not a MAC address`,
				"network.ethernets[2].mac: a MAC is required: the NIC is found by it",
				"network.ethernets[3].mac: 00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01 is not a 6-byte Ethernet MAC",
				"network.ethernets[4].mac: 01:00:5e:00:00:01 is a multicast address, not a NIC's",
				"network.ethernets[5].mac: 3c:ec:ef:00:00:01 is already network.ethernets[0]'s MAC",
			},
		},
		{
			name: "duplicate names",
			spec: lab(func(s *Spec) {
				s.Ethernets = append(s.Ethernets, Ethernet{Name: "nic0", MAC: "52:54:00:00:01:03", DHCP4: true})
				s.Bonds = append(s.Bonds, Bond{Name: "nic1", Mode: ModeBalanceRR, Members: []string{"nic0", "nic1"}})
				s.VLANs = append(s.VLANs, VLAN{Name: "bond0.100", ID: 100, Link: "bond0"})
			}),
			want: []string{
				`network.ethernets[2].name: "nic0" is already the name of network.ethernets[0]`,
				`network.bonds[1].name: "nic1" is already the name of network.ethernets[1]`,
				"network.bonds[1].members[0]: nic0 is already a member of bond0 (network.bonds[0])",
				"network.bonds[1].members[1]: nic1 is already a member of bond0 (network.bonds[0])",
				"network.vlans[1].id: VLAN 100 on bond0 is already network.vlans[0]",
				`network.vlans[1].name: "bond0.100" is already the name of network.vlans[0]`,
			},
		},
		{
			name: "bond of one",
			spec: lab(func(s *Spec) { s.Bonds[0].Members = []string{"nic0"}; s.Ethernets[1].DHCP4 = true }),
			want: []string{"network.bonds[0].members: a bond needs at least 2 members, got 1"},
		},
		{
			name: "member in two bonds",
			spec: lab(func(s *Spec) {
				s.Ethernets = append(s.Ethernets, Ethernet{Name: "nic2", MAC: "52:54:00:00:01:03"})
				s.Bonds = append(s.Bonds, Bond{Name: "bond1", Mode: ModeActiveBackup, Members: []string{"nic2", "nic1"}, Addresses: []string{"10.21.0.5/24"}})
			}),
			want: []string{"network.bonds[1].members[1]: nic1 is already a member of bond0 (network.bonds[0])"},
		},
		{
			name: "members with addresses, DHCP or an MTU of their own",
			spec: lab(func(s *Spec) {
				s.Ethernets[0].Addresses = []string{"10.19.0.5/24"}
				s.Ethernets[1].DHCP4 = true
				s.Ethernets[1].MTU = 9000
			}),
			want: []string{
				"network.ethernets[0].addresses: nic0 is a member of bond0 (network.bonds[0]) and has no address of its own: put the addresses on bond0",
				"network.ethernets[1].dhcp4: nic1 is a member of bond0 (network.bonds[0]) and takes no DHCP of its own",
				"network.ethernets[1].mtu: nic1 is a member of bond0 (network.bonds[0]), which sets its members' MTU: set mtu on bond0 instead",
			},
		},
		{
			name: "unknown and wrong-kind members",
			spec: lab(func(s *Spec) {
				s.Bonds[0].Members = []string{"nic0", "nic9", "bond0.100", "nic0", "nic1"}
			}),
			want: []string{
				`network.bonds[0].members[1]: "nic9" is not the name of an ethernet (nic0, nic1)`,
				"network.bonds[0].members[2]: bond0.100 is a VLAN; bond members are ethernets",
				"network.bonds[0].members[3]: nic0 is listed twice",
			},
		},
		{
			name: "bond options",
			spec: lab(func(s *Spec) {
				s.Bonds[0].Mode = "lacp"
				s.Bonds[0].Primary = "nic2"
				s.Bonds[0].MIIMon = -1
				s.Bonds[0].LACPRate = "quick"
				s.Bonds[0].TransmitHashPolicy = "layer4"
			}),
			want: []string{
				`network.bonds[0].mode: "lacp" is not a bond mode: one of balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb`,
				`network.bonds[0].primary: "nic2" is not one of bond0's members (nic0, nic1)`,
				"network.bonds[0].miimon: -1 is out of range: 1..60000 milliseconds (0 means 100)",
				`network.bonds[0].lacpRate: "quick" is not slow or fast`,
				`network.bonds[0].transmitHashPolicy: "layer4" is not one of layer2, layer2+3, layer3+4, encap2+3, encap3+4`,
			},
		},
		{
			name: "bond options that do not apply to the mode",
			spec: lab(func(s *Spec) {
				s.Bonds[0].Mode = ModeBalanceRR
				s.Bonds[0].LACPRate = "fast"
				s.Bonds[0].TransmitHashPolicy = "layer3+4"
			}),
			want: []string{
				"network.bonds[0].primary: a primary member applies to active-backup, balance-tlb, balance-alb bonds, not balance-rr",
				"network.bonds[0].lacpRate: lacpRate applies to 802.3ad bonds only, not balance-rr",
				"network.bonds[0].transmitHashPolicy: transmitHashPolicy applies to 802.3ad, balance-xor, balance-tlb bonds, not balance-rr",
			},
		},
		{
			name: "bond without a mode",
			spec: lab(func(s *Spec) { s.Bonds[0].Mode = "" }),
			want: []string{"network.bonds[0].mode: a mode is required: one of balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb"},
		},
		{
			name: "VLAN links",
			spec: lab(func(s *Spec) {
				s.VLANs = append(s.VLANs,
					VLAN{ID: 101, Link: "bond9"},
					VLAN{ID: 102, Link: "nic0"},
					VLAN{ID: 103, Link: "bond0.100"},
					VLAN{ID: 104},
				)
			}),
			want: []string{
				`network.vlans[1].link: "bond9" is not the name of an ethernet or bond (nic0, nic1, bond0)`,
				"network.vlans[2].link: nic0 is a member of bond0 (network.bonds[0]): put the VLAN on bond0",
				"network.vlans[3].link: bond0.100 is a VLAN; a VLAN's link is an ethernet or a bond",
				"network.vlans[4].link: a link is required: the ethernet or bond the VLAN is tagged on",
			},
		},
		{
			name: "VLAN ids",
			spec: lab(func(s *Spec) {
				s.VLANs = append(s.VLANs, VLAN{Link: "bond0"}, VLAN{ID: 4095, Link: "bond0"}, VLAN{ID: -1, Link: "bond0"})
			}),
			want: []string{
				"network.vlans[1].id: a VLAN id is required (1..4094)",
				"network.vlans[2].id: 4095 is out of range: 1..4094",
				"network.vlans[3].id: -1 is out of range: 1..4094",
			},
		},
		{
			name: "VLAN names",
			spec: Spec{
				Ethernets: []Ethernet{
					{Name: "storage-uplink", MAC: "3c:ec:ef:00:00:01"},
					{Name: "eno2", MAC: "3c:ec:ef:00:00:02"},
				},
				VLANs: []VLAN{
					{ID: 100, Link: "storage-uplink", Addresses: []string{"10.0.0.5/24"}},
					{Name: "storage", ID: 200, Link: "eno2"},
					{Name: "eno2.0300", ID: 300, Link: "eno2"},
				},
			},
			want: []string{
				"network.vlans[0].name: storage-uplink.100 (LINK.ID) is 18 bytes; a Linux interface name is at most 15: shorten storage-uplink's name",
				`network.vlans[1].name: "storage" must be eno2.200 (LINK.ID, or empty): Debian's ifupdown creates a VLAN only from a name of that form`,
				`network.vlans[2].name: "eno2.0300" must be eno2.300 (LINK.ID, or empty): Debian's ifupdown creates a VLAN only from a name of that form`,
			},
		},
		{
			name: "interface names",
			spec: static(func(s *Spec) {
				for _, n := range []string{"", "a-very-long-nic0", "eth/0", "eth 0", "eth0.1", "eth0:1", "lo", "nic+1"} {
					s.Ethernets = append(s.Ethernets, Ethernet{Name: n, MAC: "3c:ec:ef:00:01:0" + string(rune('0'+len(s.Ethernets)))})
				}
			}),
			want: []string{
				"network.ethernets[1].name: a name is required",
				`network.ethernets[2].name: "a-very-long-nic0" is 16 bytes; a Linux interface name is at most 15`,
				`network.ethernets[3].name: "eth/0" has '/', which a Linux interface name cannot have`,
				`network.ethernets[4].name: "eth 0" has ' ', which a Linux interface name cannot have`,
				`network.ethernets[5].name: "eth0.1" has a '.', which ifupdown reads as a VLAN (LINK.ID); only VLANs are named so`,
				`network.ethernets[6].name: "eth0:1" has a ':', which ifupdown reads as an alias (NAME:N)`,
				"network.ethernets[7].name: lo is the loopback interface",
				`network.ethernets[8].name: "nic+1" has '+': use letters, digits, '-' and '_'`,
			},
		},
		{
			name: "bad addresses",
			spec: static(func(s *Spec) {
				s.Ethernets[0].Addresses = append(s.Ethernets[0].Addresses,
					"10.0.0.6", "10.0.0.500/24", "10.0.0.0/24", "10.0.0.255/24", "127.0.0.2/8", "224.0.0.5/24", "::ffff:10.0.0.7/120", "2001:db8::5", "10.0.0.5/25")
			}),
			want: []string{
				"network.ethernets[0].addresses[1]: 10.0.0.6 has no prefix length: write the subnet's, e.g. 10.0.0.6/24",
				`network.ethernets[0].addresses[2]: "10.0.0.500/24" is not an address with a prefix length, e.g. 10.20.0.5/24`,
				"network.ethernets[0].addresses[3]: 10.0.0.0 is the network address of 10.0.0.0/24; a host address is needed",
				"network.ethernets[0].addresses[4]: 10.0.0.255 is the broadcast address of 10.0.0.0/24; a host address is needed",
				"network.ethernets[0].addresses[5]: 127.0.0.2/8 is not a unicast address a NIC can have",
				"network.ethernets[0].addresses[6]: 224.0.0.5/24 is not a unicast address a NIC can have",
				"network.ethernets[0].addresses[7]: ::ffff:10.0.0.7/120 is an IPv4-mapped IPv6 address: write it as IPv4",
				"network.ethernets[0].addresses[8]: 2001:db8::5 has no prefix length: write the subnet's, e.g. 2001:db8::5/64",
				"network.ethernets[0].addresses[9]: 10.0.0.5 is already network.ethernets[0].addresses[0]",
			},
		},
		{
			// /31 and /32 have no network or broadcast address; two addresses of one
			// subnet on one interface are fine.
			name: "point-to-point and secondary addresses",
			spec: static(func(s *Spec) {
				s.Ethernets[0].Addresses = append(s.Ethernets[0].Addresses, "10.0.0.6/24", "192.0.2.0/31", "198.51.100.7/32")
			}),
		},
		{
			name: "overlapping subnets on two interfaces",
			spec: lab(func(s *Spec) {
				s.Bonds[0].Addresses = []string{"10.20.0.0/16"}
				s.Ethernets = append(s.Ethernets, Ethernet{Name: "nic2", MAC: "52:54:00:00:01:03", Addresses: []string{"10.20.0.5/25", "10.20.1.6/24"}})
			}),
			want: []string{
				"network.bonds[0].addresses[0]: 10.20.0.0 is the network address of 10.20.0.0/16; a host address is needed",
				"network.vlans[0].addresses[0]: 10.20.0.5 is already the address of nic2 (network.ethernets[2].addresses[0])",
			},
		},
		{
			name: "overlapping subnets",
			spec: lab(func(s *Spec) {
				s.Ethernets = append(s.Ethernets, Ethernet{Name: "nic2", MAC: "52:54:00:00:01:03", Addresses: []string{"10.20.0.130/25"}})
			}),
			want: []string{
				"network.vlans[0].addresses[0]: 10.20.0.5/24 overlaps 10.20.0.130/25 on nic2 (network.ethernets[2].addresses[0]): subnets on two interfaces must not overlap, or the kernel sends the subnet's traffic out of one of them only and replies to the other leave by the wrong interface",
			},
		},
		{
			name: "unreachable gateways",
			spec: lab(func(s *Spec) {
				s.Ethernets = append(s.Ethernets, Ethernet{Name: "nic2", MAC: "52:54:00:00:01:03", DHCP4: true})
				s.Routes = append(s.Routes,
					Route{To: "172.16.0.0/12", Via: "10.21.0.1"},
					Route{To: "172.17.0.0/16", Via: "10.21.0.1", Interface: "bond0.100"},
					Route{To: "172.18.0.0/16", Via: "10.21.0.1", Interface: "bond0"},
					Route{To: "172.19.0.0/16", Via: "10.21.0.1", Interface: "nic2"}, // DHCP: unchecked
				)
			}),
			want: []string{
				"network.routes[1].via: 10.21.0.1 is not in any configured subnet (10.20.0.0/24 on bond0.100); for a gateway reached through a DHCP interface, set interface",
				"network.routes[2].via: 10.21.0.1 is not in a subnet of bond0.100 (10.20.0.0/24)",
				"network.routes[3].via: bond0 has no address or dhcp4, so 10.21.0.1 is not reachable through it",
			},
		},
		{
			name: "bad routes",
			spec: static(func(s *Spec) {
				s.Routes = append(s.Routes,
					Route{To: "172.16.0.1/12", Via: "10.0.0.1"},
					Route{To: "172.16.0.1", Via: "10.0.0.1"},
					Route{To: "everywhere", Via: "10.0.0.1"},
					Route{To: "2001:db8::/32", Via: "10.0.0.1"},
					Route{Via: "10.0.0.1"},
					Route{To: "172.16.0.0/12"},
					Route{To: "default", Via: "gw"},
					Route{To: "172.20.0.0/16", Via: "10.0.0.5"},
					Route{To: "172.21.0.0/16", Via: "10.0.0.1", Metric: -1},
					Route{To: "0.0.0.0/0", Via: "10.0.0.254"},
					Route{To: "172.22.0.0/16", Via: "10.0.0.1", Interface: "eno9"},
					Route{To: "172.23.0.0/16", Via: "0.0.0.0"},
				)
			}),
			want: []string{
				"network.routes[1].to: 172.16.0.1/12 has host bits set: the network is 172.16.0.0/12",
				"network.routes[2].to: 172.16.0.1 has no prefix length: write 172.16.0.1/32 for that one address",
				`network.routes[3].to: "everywhere" is not a network (CIDR) or default`,
				"network.routes[4].via: 10.0.0.1 is IPv4 but to (2001:db8::/32) is IPv6",
				"network.routes[5].to: a destination is required: a network (CIDR) or default",
				"network.routes[6].via: a gateway is required",
				`network.routes[7].via: "gw" is not an IP address`,
				"network.routes[8].via: 10.0.0.5 is this host's own address (network.ethernets[0].addresses[0])",
				"network.routes[9].metric: -1 is out of range: 0..4294967295",
				"network.routes[10].to: 0.0.0.0/0 with metric 0 is already network.routes[0]: the kernel keeps one route per destination and metric",
				`network.routes[11].interface: "eno9" is not the name of an ethernet, bond or VLAN (eno1)`,
				"network.routes[12].via: 0.0.0.0 is not a unicast address a gateway can have",
			},
		},
		{
			name: "a second default route with another metric",
			spec: static(func(s *Spec) {
				s.Routes = append(s.Routes, Route{To: "default", Via: "10.0.0.254", Metric: 200})
			}),
		},
		{
			name: "route on a bond member",
			spec: lab(func(s *Spec) { s.Routes[0].Interface = "nic1" }),
			want: []string{"network.routes[0].interface: nic1 is a member of bond0: routes go on bond0"},
		},
		{
			name: "MTUs",
			spec: lab(func(s *Spec) {
				s.Bonds[0].MTU = 100
				s.VLANs[0].MTU = 9000
				s.VLANs = append(s.VLANs, VLAN{ID: 200, Link: "bond0", MTU: 9300})
			}),
			want: []string{
				"network.bonds[0].mtu: 100 is out of range: 576..9216 (0 leaves the default, 1500)",
				"network.vlans[0].mtu: 9000 is larger than bond0's MTU (100): raise bond0's mtu too",
				"network.vlans[1].mtu: 9300 is out of range: 576..9216 (0 leaves the default, 1500)",
			},
		},
		{
			name: "a VLAN above the default MTU",
			spec: lab(func(s *Spec) { s.VLANs[0].MTU = 9000 }),
			want: []string{"network.vlans[0].mtu: 9000 is larger than bond0's MTU (1500): raise bond0's mtu too"},
		},
		{
			name: "jumbo frames",
			spec: lab(func(s *Spec) { s.Bonds[0].MTU = 9000; s.VLANs[0].MTU = 9000 }),
		},
		{
			name: "nameservers",
			spec: static(func(s *Spec) {
				s.Nameservers = Nameservers{
					Addresses: []string{"10.0.0.2", "dns.example", "10.0.0.2", "224.0.0.251"},
					Search:    []string{"example.com", "bad_label-.example", "-x.example", "a..b", "example.com", "corp.example."},
				}
			}),
			want: []string{
				`network.nameservers.addresses[1]: "dns.example" is not an IP address`,
				"network.nameservers.addresses[2]: 10.0.0.2 is listed twice",
				"network.nameservers.addresses[3]: 224.0.0.251 is not a unicast address a nameserver can have",
				"network.nameservers.addresses: 4 nameservers; the C library's resolver (resolv.conf) uses only the first 3",
				`network.nameservers.search[1]: "bad_label-.example" is not a DNS domain name`,
				`network.nameservers.search[2]: "-x.example" is not a DNS domain name`,
				`network.nameservers.search[3]: "a..b" is not a DNS domain name`,
				"network.nameservers.search[4]: example.com is listed twice",
			},
		},
		{
			name: "search domains without nameservers",
			spec: static(func(s *Spec) { s.Nameservers.Search = []string{"example.com"} }),
			want: []string{"network.nameservers.search: search domains need nameservers (addresses): cloud-init refuses a nameservers entry without addresses"},
		},
		{
			name: "empty",
			spec: Spec{},
			want: []string{"network.ethernets: at least one ethernet is required"},
		},
		{
			name: "no address anywhere",
			spec: lab(func(s *Spec) { s.VLANs[0].Addresses = nil; s.Routes = nil }),
			want: []string{"network: no interface has an address or dhcp4, so the host would have no network"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := messages(t, Validate(c.spec, c.nics))
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

// Validate reads a spec, it does not change it.
func TestValidateLeavesSpecAlone(t *testing.T) {
	s := lab(func(s *Spec) { s.Ethernets[0].MAC = "52-54-00-00-01-01" })
	before := lab(func(s *Spec) { s.Ethernets[0].MAC = "52-54-00-00-01-01" })
	if err := Validate(s, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, s); diff != "" {
		t.Errorf("Validate changed its argument (-before +after):\n%s", diff)
	}
}
