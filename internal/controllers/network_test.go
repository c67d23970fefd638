package controllers

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
	"github.com/rackboot/rackboot/internal/netconfig"
)

// TestNetworkSpecConversion: a RackbootMachine's spec.network with every field set
// becomes the same netconfig.Spec, and back: no field is lost on either side.
func TestNetworkSpecConversion(t *testing.T) {
	in := &infrav1.NetworkSpec{
		Ethernets: []infrav1.NetworkEthernet{
			{Name: "nic0", NIC: "enp1s0"},
			{Name: "nic1", MAC: "52:54:00:00:01:02", Addresses: []string{"10.1.0.5/24"}, DHCP4: true, MTU: 9000},
		},
		Bonds: []infrav1.NetworkBond{{Name: "bond0", Mode: "802.3ad", Members: []string{"nic0", "nic1"}, Primary: "nic0", MIIMon: 50,
			LACPRate: "fast", TransmitHashPolicy: "layer3+4", Addresses: []string{netconfig.Reserved}, MTU: 1500}},
		VLANs:       []infrav1.NetworkVLAN{{Name: "bond0.100", ID: 100, Link: "bond0", Addresses: []string{"10.20.0.5/24"}, MTU: 1500}},
		Routes:      []infrav1.NetworkRoute{{To: "default", Via: "10.20.0.1", Metric: 10, Interface: "bond0.100"}},
		Nameservers: infrav1.NetworkNameservers{Addresses: []string{"10.20.0.1"}, Search: []string{"rack1.example"}},
	}
	got, err := NetworkSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &netconfig.Spec{
		Ethernets: []netconfig.Ethernet{
			{Name: "nic0", NIC: "enp1s0"},
			{Name: "nic1", MAC: "52:54:00:00:01:02", Addresses: []string{"10.1.0.5/24"}, DHCP4: true, MTU: 9000},
		},
		Bonds: []netconfig.Bond{{Name: "bond0", Mode: "802.3ad", Members: []string{"nic0", "nic1"}, Primary: "nic0", MIIMon: 50,
			LACPRate: "fast", TransmitHashPolicy: "layer3+4", Addresses: []string{netconfig.Reserved}, MTU: 1500}},
		VLANs:       []netconfig.VLAN{{Name: "bond0.100", ID: 100, Link: "bond0", Addresses: []string{"10.20.0.5/24"}, MTU: 1500}},
		Routes:      []netconfig.Route{{To: "default", Via: "10.20.0.1", Metric: 10, Interface: "bond0.100"}},
		Nameservers: netconfig.Nameservers{Addresses: []string{"10.20.0.1"}, Search: []string{"rack1.example"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CRD → netconfig (-want +got):\n%s", diff)
	}
	// And back, strictly: every netconfig field has its CRD field.
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var back infrav1.NetworkSpec
	if err := dec.Decode(&back); err != nil {
		t.Fatalf("netconfig → CRD: %v", err)
	}
	if diff := cmp.Diff(in, &back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if n, err := NetworkSpec(nil); n != nil || err != nil {
		t.Errorf("nil spec.network = %v, %v", n, err)
	}
}
