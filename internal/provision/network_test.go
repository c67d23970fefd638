package provision

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/netconfig"
)

// TestInstallNetwork: the provisioning's spec wins over the host's, which wins over the
// default; the default is the reserved address, static, with the subnet's router and
// DNS, on the NIC the agent booted through; without a reservation in a served subnet
// there is none (DHCP).
func TestInstallNetwork(t *testing.T) {
	sub := Subnet{Prefix: netip.MustParsePrefix("10.77.0.0/16"), Router: netip.MustParseAddr("10.77.0.1"),
		DNS: []netip.Addr{netip.MustParseAddr("10.77.0.2")}, Domain: "rack1.example"}
	subnetOf := func(a netip.Addr) (Subnet, bool) { return sub, sub.Prefix.Contains(a) }
	hostSpec := &netconfig.Spec{Ethernets: []netconfig.Ethernet{{Name: "e0", MAC: "52:54:00:00:00:09", DHCP4: true}}}
	provSpec := &netconfig.Spec{Ethernets: []netconfig.Ethernet{{Name: "p0", MAC: "52:54:00:00:00:08", Addresses: []string{"10.9.0.5/24"}}}}
	const boot = "52:54:00:00:00:01"
	def := netconfig.Spec{
		Ethernets:   []netconfig.Ethernet{{Name: "boot0", MAC: boot, Addresses: []string{"10.77.5.9/16"}}},
		Routes:      []netconfig.Route{{To: "0.0.0.0/0", Via: "10.77.0.1"}},
		Nameservers: netconfig.Nameservers{Addresses: []string{"10.77.0.2"}, Search: []string{"rack1.example"}},
	}
	for _, c := range []struct {
		name     string
		host     inventory.Host
		subnetOf func(netip.Addr) (Subnet, bool)
		want     *netconfig.Spec
	}{
		{"provisioning's spec", inventory.Host{IP: "10.77.5.9", Network: hostSpec, Provision: &inventory.Provision{Network: provSpec}}, subnetOf, provSpec},
		{"host's spec", inventory.Host{IP: "10.77.5.9", Network: hostSpec, Provision: &inventory.Provision{}}, subnetOf, hostSpec},
		{"default: reserved address, static", inventory.Host{IP: "10.77.5.9", Provision: &inventory.Provision{}}, subnetOf, &def},
		{"no reservation: DHCP", inventory.Host{Provision: &inventory.Provision{}}, subnetOf, nil},
		{"reservation outside the served subnets: DHCP", inventory.Host{IP: "192.168.1.5", Provision: &inventory.Provision{}}, subnetOf, nil},
		{"proxy mode (no subnets): DHCP", inventory.Host{IP: "10.77.5.9", Provision: &inventory.Provision{}}, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := installNetwork(&c.host, boot, c.subnetOf)
			if c.want == nil {
				if got != nil {
					t.Fatalf("got %+v, want none (DHCP)", got)
				}
				return
			}
			if got == nil {
				t.Fatal("got none (DHCP)")
			}
			if diff := cmp.Diff(netconfig.Normalize(*c.want), *got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if err := netconfig.Validate(*got, nil); err != nil {
				t.Errorf("invalid: %v", err)
			}
		})
	}
}
