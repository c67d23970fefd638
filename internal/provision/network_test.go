package provision

import (
	"net/netip"
	"strings"
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
			got, err := installNetwork(&c.host, boot, c.subnetOf)
			if err != nil {
				t.Fatal(err)
			}
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

// TestInstallNetworkTemplate: a spec written for identical hosts (NICs by name, the
// reserved address) is resolved for the host, and refused when it does not fit.
func TestInstallNetworkTemplate(t *testing.T) {
	sub := Subnet{Prefix: netip.MustParsePrefix("10.77.46.0/24"), Router: netip.MustParseAddr("10.77.46.1")}
	subnetOf := func(a netip.Addr) (Subnet, bool) { return sub, sub.Prefix.Contains(a) }
	tmpl := &netconfig.Spec{
		Ethernets: []netconfig.Ethernet{{Name: "nic0", NIC: "enp1s0"}, {Name: "nic1", NIC: "enp2s0"}},
		Bonds:     []netconfig.Bond{{Name: "bond0", Mode: "active-backup", Members: []string{"nic0", "nic1"}, Addresses: []string{netconfig.Reserved}}},
		VLANs:     []netconfig.VLAN{{ID: 100, Link: "bond0", Addresses: []string{"10.20.0.5/24"}}},
	}
	facts := &inventory.HostFacts{Facts: inventory.Facts{NICs: []inventory.NIC{
		{Name: "enp1s0", MAC: "52:54:00:46:00:01", Boot: true}, {Name: "enp2s0", MAC: "52:54:00:46:00:11"}}}}
	h := inventory.Host{IP: "10.77.46.21", Facts: facts, Provision: &inventory.Provision{Network: tmpl}}
	got, err := installNetwork(&h, "52:54:00:46:00:01", subnetOf)
	if err != nil {
		t.Fatal(err)
	}
	if got.Ethernets[0].MAC != "52:54:00:46:00:01" || got.Ethernets[1].MAC != "52:54:00:46:00:11" || got.Ethernets[0].NIC != "" ||
		got.Bonds[0].Addresses[0] != "10.77.46.21/24" {
		t.Fatalf("resolved = %+v", got)
	}
	if _, err := netconfig.CloudInit(*got); err != nil {
		t.Fatalf("the resolved spec does not render: %v", err)
	}

	for _, c := range []struct {
		name string
		host inventory.Host
		want string
	}{
		{"a NIC the host lacks", inventory.Host{IP: "10.77.46.21", Facts: &inventory.HostFacts{Facts: inventory.Facts{NICs: facts.NICs[:1]}},
			Provision: &inventory.Provision{Network: tmpl}}, "network.ethernets[1].nic: the host has no NIC named enp2s0 (it has enp1s0)"},
		{"no reservation", inventory.Host{Facts: facts, Provision: &inventory.Provision{Network: tmpl}},
			"network.bonds[0].addresses[0]: the host has no reserved address"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := installNetwork(&c.host, "52:54:00:46:00:01", subnetOf)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}
