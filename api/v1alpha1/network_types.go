package v1alpha1

// NetworkSpec is the installed OS's network: NICs (by MAC, or by the kernel name the
// host's inspection found, for a template shared by identical hosts), bonds over them,
// VLANs over either, static routes and DNS. rackboot renders it as cloud-init
// network-config v2 (systemd-networkd units for Ignition images) and checks it against
// the claimed host's NICs when the machine is provisioned; a spec that does not fit
// the host fails the machine with the field named. Without one, the host's own spec
// (`rackboot host edit --network`) applies, else its reserved address as a static
// configuration on the NIC it provisioned through.
type NetworkSpec struct {
	// ethernets are the physical NICs the spec configures or bonds.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	Ethernets []NetworkEthernet `json:"ethernets"`
	// bonds aggregate two or more ethernets.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	Bonds []NetworkBond `json:"bonds,omitempty"`
	// vlans are 802.1Q VLANs on an ethernet or a bond.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	VLANs []NetworkVLAN `json:"vlans,omitempty"`
	// routes are static routes; a default gateway is a route to "default".
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Routes []NetworkRoute `json:"routes,omitempty"`
	// nameservers is the DNS configuration.
	// +optional
	Nameservers NetworkNameservers `json:"nameservers,omitempty,omitzero"`
}

// NetworkEthernet is one physical NIC, given the name name in the installed OS.
// +kubebuilder:validation:XValidation:rule="has(self.mac) != has(self.nic)",message="give mac or nic (the kernel name the host's inspection found), not both"
type NetworkEthernet struct {
	// name is the interface name in the installed OS; bonds and VLANs refer to it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	Name string `json:"name"`
	// mac is the NIC's permanent MAC address.
	// +optional
	// +kubebuilder:validation:Pattern=`^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$`
	MAC string `json:"mac,omitempty"`
	// nic is the NIC's kernel name as the host's inspection found it (e.g. enp1s0),
	// for templates shared by identical hosts.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	NIC string `json:"nic,omitempty"`
	// addresses are static addresses with their prefix length (10.20.0.5/24), or
	// "reserved": the host's reserved address with its subnet's prefix.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	Addresses []string `json:"addresses,omitempty"`
	// dhcp4 asks DHCP for an IPv4 address.
	// +optional
	DHCP4 bool `json:"dhcp4,omitempty"`
	// mtu in bytes; 0 keeps the driver's default.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=9216
	MTU int `json:"mtu,omitempty"`
}

// NetworkBond aggregates ethernets.
type NetworkBond struct {
	// name is the bond's interface name, e.g. bond0.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	Name string `json:"name"`
	// mode is the Linux bonding mode.
	// +required
	// +kubebuilder:validation:Enum=balance-rr;active-backup;balance-xor;broadcast;"802.3ad";balance-tlb;balance-alb
	Mode string `json:"mode"`
	// members are ethernet names; at least two.
	// +required
	// +kubebuilder:validation:MinItems=2
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	Members []string `json:"members"`
	// primary is the member preferred while it is up (active-backup, balance-tlb,
	// balance-alb).
	// +optional
	Primary string `json:"primary,omitempty"`
	// miimon is the link monitoring interval in milliseconds; 0 means 100.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MIIMon int `json:"miimon,omitempty"`
	// lacpRate is slow or fast (802.3ad).
	// +optional
	// +kubebuilder:validation:Enum=slow;fast
	LACPRate string `json:"lacpRate,omitempty"`
	// transmitHashPolicy picks the member a packet leaves by.
	// +optional
	// +kubebuilder:validation:Enum=layer2;"layer2+3";"layer3+4";"encap2+3";"encap3+4"
	TransmitHashPolicy string `json:"transmitHashPolicy,omitempty"`
	// addresses, as on an ethernet.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	Addresses []string `json:"addresses,omitempty"`
	// mtu in bytes.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=9216
	MTU int `json:"mtu,omitempty"`
}

// NetworkVLAN is an 802.1Q VLAN on an ethernet or a bond.
type NetworkVLAN struct {
	// name is LINK.ID (e.g. bond0.100); empty means that.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	Name string `json:"name,omitempty"`
	// id is the VLAN tag.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4094
	ID int `json:"id"`
	// link is the ethernet or bond the VLAN is tagged on.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	Link string `json:"link"`
	// addresses, as on an ethernet.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	Addresses []string `json:"addresses,omitempty"`
	// mtu in bytes.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=9216
	MTU int `json:"mtu,omitempty"`
}

// NetworkRoute is a static route through a gateway.
type NetworkRoute struct {
	// to is the destination network (CIDR) or "default".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	To string `json:"to"`
	// via is the gateway.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Via string `json:"via"`
	// metric is the route's priority, lower wins.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Metric int `json:"metric,omitempty"`
	// interface carries the route; empty: the one whose subnet holds via.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	Interface string `json:"interface,omitempty"`
}

// NetworkNameservers is the DNS configuration.
type NetworkNameservers struct {
	// addresses of DNS servers (at most 3).
	// +optional
	// +kubebuilder:validation:MaxItems=3
	// +listType=atomic
	Addresses []string `json:"addresses,omitempty"`
	// search domains.
	// +optional
	// +kubebuilder:validation:MaxItems=6
	// +listType=atomic
	Search []string `json:"search,omitempty"`
}
