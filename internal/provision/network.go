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
// DNS, static. nil (the metadata service then serves DHCP on the boot NIC) for a host
// with no spec and no reservation in a subnet rackboot serves (proxy mode, or a
// dynamic lease).
func installNetwork(h *inventory.Host, bootMAC string, subnetOf func(netip.Addr) (Subnet, bool)) *netconfig.Spec {
	switch {
	case h.Provision != nil && h.Provision.Network != nil:
		n := netconfig.Normalize(*h.Provision.Network)
		return &n
	case h.Network != nil:
		n := netconfig.Normalize(*h.Network)
		return &n
	}
	addr := h.Addr()
	if !addr.IsValid() || subnetOf == nil || bootMAC == "" {
		return nil
	}
	sub, ok := subnetOf(addr)
	if !ok || !sub.Prefix.Contains(addr) {
		return nil
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
	n := netconfig.Normalize(netconfig.Default(bootMAC, netip.PrefixFrom(addr, sub.Prefix.Bits()).String(), gw, dns, search))
	return &n
}
