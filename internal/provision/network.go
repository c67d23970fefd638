package provision

import (
	"net/netip"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/netconfig"
)

// Subnet is what rackboot's DHCP configuration says about the subnet holding a host's
// reserved address: the installed OS gets the same prefix, router and DNS as a static
// configuration (netconfig.Default).
type Subnet struct {
	Prefix netip.Prefix
	Router netip.Addr
	DNS    []netip.Addr
	// Domain becomes the DNS search domain.
	Domain string
}

// installNetwork is the network the installed OS of h gets, decided when its plan is
// made (bootMAC is the NIC its agent booted through): the provisioning's own spec (a
// RackbootMachine's spec.network), else the host's (host edit --network), else the
// default: the boot NIC with the host's reserved address and its subnet's router and
// DNS, static. A spec is resolved for the host (NIC names, "reserved") and checked
// against its NICs; an error is why the provisioning fails. nil (the metadata service
// then serves DHCP on the boot NIC) for a host with no spec and no reservation in a
// subnet rackboot serves (proxy mode, or a dynamic lease).
func installNetwork(h *inventory.Host, bootMAC string, subnetOf func(netip.Addr) (Subnet, bool)) (*netconfig.Spec, error) {
	var spec *netconfig.Spec
	switch {
	case h.Provision != nil && h.Provision.Network != nil:
		spec = h.Provision.Network
	case h.Network != nil:
		spec = h.Network
	}
	if spec != nil {
		n, err := resolveNetwork(h, *spec, subnetOf)
		if err != nil {
			return nil, err
		}
		return &n, nil
	}
	sub, ok := reservedSubnet(h, subnetOf)
	if !ok || bootMAC == "" {
		return nil, nil
	}
	gw := ""
	if sub.Router.IsValid() {
		gw = sub.Router.String()
	}
	var dns, search []string
	for _, d := range sub.DNS {
		dns = append(dns, d.String())
	}
	if sub.Domain != "" && len(dns) > 0 {
		search = []string{sub.Domain}
	}
	n := netconfig.Normalize(netconfig.Default(bootMAC, netip.PrefixFrom(h.Addr(), sub.Prefix.Bits()).String(), gw, dns, search))
	return &n, nil
}

// reservedSubnet is the served subnet holding h's reserved address.
func reservedSubnet(h *inventory.Host, subnetOf func(netip.Addr) (Subnet, bool)) (Subnet, bool) {
	addr := h.Addr()
	if !addr.IsValid() || subnetOf == nil {
		return Subnet{}, false
	}
	sub, ok := subnetOf(addr)
	if !ok || !sub.Prefix.Contains(addr) {
		return Subnet{}, false
	}
	return sub, true
}

// resolveNetwork makes spec concrete for h (netconfig.Resolve: its NICs by name, its
// reserved address) and checks it against the NICs h's inspection found.
func resolveNetwork(h *inventory.Host, spec netconfig.Spec, subnetOf func(netip.Addr) (Subnet, bool)) (netconfig.Spec, error) {
	reserved := ""
	if sub, ok := reservedSubnet(h, subnetOf); ok {
		reserved = netip.PrefixFrom(h.Addr(), sub.Prefix.Bits()).String()
	}
	nics := h.InspectedNICs()
	r, err := netconfig.Resolve(spec, nics, reserved)
	if err != nil {
		return netconfig.Spec{}, err
	}
	if err := netconfig.Validate(r, nics); err != nil {
		return netconfig.Spec{}, err
	}
	return netconfig.Normalize(r), nil
}
