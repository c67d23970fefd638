package netconfig

import "slices"

// The types below are embedded in rackboot's JSON APIs and in a Kubernetes CRD
// (RackbootMachine's template), so they hold only strings, ints, bools, slices and
// structs: addresses are strings parsed by Validate, never netip values, and a zero value
// means "not set".

// Spec is a host's network: its NICs (matched by MAC), bonds over them, VLANs over
// either, routes and DNS. It is what the installed OS configures, not the provisioning
// network (that one is always DHCP).
type Spec struct {
	Ethernets   []Ethernet  `json:"ethernets,omitempty"`
	Bonds       []Bond      `json:"bonds,omitempty"`
	VLANs       []VLAN      `json:"vlans,omitempty"`
	Routes      []Route     `json:"routes,omitempty"`
	Nameservers Nameservers `json:"nameservers,omitempty"`
}

// Ethernet is one physical NIC, found by its MAC and given Name in the installed OS.
type Ethernet struct {
	// Name is the interface name the NIC gets (cloud-init's set-name, a .link file's
	// Name=); bonds and VLANs refer to the NIC by it.
	Name string `json:"name"`
	// MAC is the NIC's permanent MAC address.
	MAC string `json:"mac,omitempty"`
	// NIC is the NIC's kernel name as the host's inspection found it (e.g. enp1s0),
	// instead of MAC: for a spec shared by identical hosts (a RackbootMachine template),
	// whose NICs have the same names and different MACs. Resolve turns it into the MAC.
	NIC string `json:"nic,omitempty"`
	// Addresses are static addresses with their prefix length, e.g. 10.20.0.5/24, or
	// "reserved": the host's reserved address with its DHCP subnet's prefix (Resolve).
	Addresses []string `json:"addresses,omitempty"`
	// DHCP4 asks DHCP for an IPv4 address.
	DHCP4 bool `json:"dhcp4,omitempty"`
	// MTU in bytes; 0 leaves the driver's default (1500).
	MTU int `json:"mtu,omitempty"`
}

// Bond aggregates two or more Ethernets.
type Bond struct {
	Name string `json:"name"`
	// Mode is the Linux bonding mode: balance-rr, active-backup, balance-xor, broadcast,
	// 802.3ad, balance-tlb or balance-alb.
	Mode string `json:"mode"`
	// Members are Ethernet names. A member has no address, DHCP or MTU of its own.
	Members []string `json:"members"`
	// Primary is the member preferred while it is up (active-backup, balance-tlb,
	// balance-alb).
	Primary string `json:"primary,omitempty"`
	// MIIMon is the link monitoring interval in milliseconds; 0 means 100.
	MIIMon int `json:"miimon,omitempty"`
	// LACPRate is how often the partner is asked for LACPDUs: slow or fast (802.3ad).
	LACPRate string `json:"lacpRate,omitempty"`
	// TransmitHashPolicy picks the member a packet leaves by: layer2, layer2+3,
	// layer3+4, encap2+3 or encap3+4 (802.3ad, balance-xor, balance-tlb).
	TransmitHashPolicy string   `json:"transmitHashPolicy,omitempty"`
	Addresses          []string `json:"addresses,omitempty"`
	MTU                int      `json:"mtu,omitempty"`
}

// VLAN is an 802.1Q VLAN on an Ethernet or a Bond.
type VLAN struct {
	// Name is LINK.ID (e.g. bond0.100), the only form Debian's ifupdown can create a VLAN
	// from; empty means that.
	Name string `json:"name,omitempty"`
	// ID is the VLAN tag, 1..4094.
	ID int `json:"id"`
	// Link is the Ethernet or Bond the VLAN is tagged on.
	Link      string   `json:"link"`
	Addresses []string `json:"addresses,omitempty"`
	MTU       int      `json:"mtu,omitempty"`
}

// Route is a static route through a gateway. A default gateway is a Route with To
// "default" (or 0.0.0.0/0, ::/0).
type Route struct {
	// To is the destination network (CIDR) or "default".
	To string `json:"to"`
	// Via is the gateway; it must be in a subnet of the route's interface.
	Via string `json:"via"`
	// Metric is the route's priority, lower wins; 0 leaves the kernel's default.
	Metric int `json:"metric,omitempty"`
	// Interface carries the route; empty means the interface whose static subnet holds
	// Via. Set it for a gateway reached through a DHCP interface.
	Interface string `json:"interface,omitempty"`
}

// Nameservers is the host's DNS configuration.
type Nameservers struct {
	Addresses []string `json:"addresses,omitempty"`
	Search    []string `json:"search,omitempty"`
}

// NIC is one of a host's inspected network interfaces.
type NIC struct {
	Name string `json:"name"`
	MAC  string `json:"mac"`
}

// Bond modes (the kernel's names, which cloud-init, netplan, ifenslave and networkd all
// take verbatim).
const (
	ModeBalanceRR    = "balance-rr"
	ModeActiveBackup = "active-backup"
	ModeBalanceXOR   = "balance-xor"
	ModeBroadcast    = "broadcast"
	Mode8023AD       = "802.3ad"
	ModeBalanceTLB   = "balance-tlb"
	ModeBalanceALB   = "balance-alb"
)

// The option values each renderer accepts, as functions rather than package variables.
func bondModes() []string {
	return []string{ModeBalanceRR, ModeActiveBackup, ModeBalanceXOR, ModeBroadcast, Mode8023AD, ModeBalanceTLB, ModeBalanceALB}
}

// primaryModes are the modes with a preferred member (the kernel's "primary" option).
func primaryModes() []string { return []string{ModeActiveBackup, ModeBalanceTLB, ModeBalanceALB} }

// hashPolicyModes are the modes that hash packets onto members (xmit_hash_policy).
func hashPolicyModes() []string { return []string{Mode8023AD, ModeBalanceXOR, ModeBalanceTLB} }

func lacpRates() []string { return []string{"slow", "fast"} }

func transmitHashPolicies() []string {
	return []string{"layer2", "layer2+3", "layer3+4", "encap2+3", "encap3+4"}
}

// defaultMIIMon is the link monitoring interval when a bond sets none: without one a
// bond never notices a dead member (the kernel's own default depends on how the bond is
// created), so every renderer writes it.
const defaultMIIMon = 100

// MTU bounds: 576 is the datagram size every IPv4 host must accept; 9216 is the largest
// jumbo frame common switches pass. Anything outside is a typo rather than a network.
const (
	minMTU     = 576
	maxMTU     = 9216
	defaultMTU = 1500
)

// IsZero reports whether s configures nothing.
func (s Spec) IsZero() bool {
	return len(s.Ethernets) == 0 && len(s.Bonds) == 0 && len(s.VLANs) == 0 && len(s.Routes) == 0 &&
		len(s.Nameservers.Addresses) == 0 && len(s.Nameservers.Search) == 0
}

// Clone returns a deep copy of s: no slice of the copy aliases one of s.
func (s Spec) Clone() Spec {
	c := Spec{
		Ethernets: slices.Clone(s.Ethernets),
		Bonds:     slices.Clone(s.Bonds),
		VLANs:     slices.Clone(s.VLANs),
		Routes:    slices.Clone(s.Routes),
		Nameservers: Nameservers{
			Addresses: slices.Clone(s.Nameservers.Addresses),
			Search:    slices.Clone(s.Nameservers.Search),
		},
	}
	for i := range c.Ethernets {
		c.Ethernets[i].Addresses = slices.Clone(c.Ethernets[i].Addresses)
	}
	for i := range c.Bonds {
		c.Bonds[i].Members = slices.Clone(c.Bonds[i].Members)
		c.Bonds[i].Addresses = slices.Clone(c.Bonds[i].Addresses)
	}
	for i := range c.VLANs {
		c.VLANs[i].Addresses = slices.Clone(c.VLANs[i].Addresses)
	}
	return c
}
