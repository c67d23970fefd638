package netconfig

// DefaultName is the name Default gives the provisioning NIC.
const DefaultName = "boot0"

// Default is the network of a host with no spec of its own: the NIC it provisioned
// through (bootMAC), named boot0, with addr, the address rackboot reserved for it
// written with its subnet's prefix length (10.0.0.50/24), as a static address, so that
// the installed node's address never depends on a DHCP server again; a default route
// through gateway, unless gateway is empty; and the nameservers dns and search domains.
// An empty addr (a host with no reservation) gives DHCP on that NIC instead, and then
// the router and nameservers DHCP offers (gateway is not used; dns and search are
// added to DHCP's).
//
// Default does not validate; the renderers, or Validate, check what it returns.
func Default(bootMAC, addr, gateway string, dns, search []string) Spec {
	e := Ethernet{Name: DefaultName, MAC: bootMAC}
	if addr == "" {
		e.DHCP4 = true
	} else {
		e.Addresses = []string{addr}
	}
	s := Spec{Ethernets: []Ethernet{e}}
	if gateway != "" && addr != "" {
		s.Routes = []Route{{To: "default", Via: gateway}}
	}
	if len(dns) > 0 {
		s.Nameservers.Addresses = append([]string(nil), dns...)
	}
	if len(search) > 0 {
		s.Nameservers.Search = append([]string(nil), search...)
	}
	return s
}
