package adminserver

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/netconfig"
)

// TestNetworkSpec sets a host's network spec through the API (issue 13): a good one is
// stored normalised and shown; bad ones are refused with the field named, on create and
// on edit, and an inspected host's spec must name only NICs its inspection found.
func TestNetworkSpec(t *testing.T) {
	e := newAPI(t, "192.168.50.0/24")
	ctx := context.Background()
	bond := &admin.NetworkSpec{
		Ethernets: []netconfig.Ethernet{{Name: "nic0", MAC: "52-54-00-00-01-01"}, {Name: "nic1", MAC: "52:54:00:00:01:02"}},
		Bonds:     []netconfig.Bond{{Name: "bond0", Mode: "active-backup", Members: []string{"nic0", "nic1"}}},
		VLANs:     []netconfig.VLAN{{ID: 100, Link: "bond0", Addresses: []string{"10.20.0.5/24"}}},
	}
	h, err := e.client.CreateHost(ctx, admin.HostSpec{ID: "n1", MACs: []string{"52:54:00:00:01:01"}, IP: "192.168.50.11", Network: bond})
	if err != nil {
		t.Fatal(err)
	}
	want := netconfig.Normalize(*bond)
	if h.Network == nil || !cmp.Equal(*h.Network, want) || h.Network.Ethernets[0].MAC != "52:54:00:00:01:01" || h.Network.VLANs[0].Name != "bond0.100" {
		t.Fatalf("created host's network = %+v", h.Network)
	}
	if got, err := e.client.GetHost(ctx, "n1"); err != nil || got.Network == nil || !cmp.Equal(*got.Network, want) {
		t.Fatalf("GET: %+v %v", got.Network, err)
	}

	oneMember := &admin.NetworkSpec{
		Ethernets: []netconfig.Ethernet{{Name: "nic0", MAC: "52:54:00:00:01:01"}},
		Bonds:     []netconfig.Bond{{Name: "bond0", Mode: "active-backup", Members: []string{"nic0"}}},
	}
	overlap := &admin.NetworkSpec{Ethernets: []netconfig.Ethernet{
		{Name: "nic0", MAC: "52:54:00:00:01:01", Addresses: []string{"10.1.0.5/24"}},
		{Name: "nic1", MAC: "52:54:00:00:01:02", Addresses: []string{"10.1.0.6/16"}},
	}}
	strange := &admin.NetworkSpec{Ethernets: []netconfig.Ethernet{{Name: "nic9", MAC: "52:54:00:00:09:09", DHCP4: true}}}
	for _, c := range []struct {
		name string
		spec *admin.NetworkSpec
		want string
	}{
		{"bond with one member", oneMember, "network.bonds[0].members: "},
		{"overlapping addresses", overlap, "network.ethernets[1].addresses[0]: "},
	} {
		t.Run("create/"+c.name, func(t *testing.T) {
			before := e.snapshot()
			r := e.raw(http.MethodPost, "/api/v1/hosts", mustJSON(t, admin.HostSpec{ID: "n2", MACs: []string{"52:54:00:00:02:01"}, Network: c.spec}))
			if r.status != http.StatusBadRequest || !strings.Contains(e.errorOf(r), c.want) {
				t.Fatalf("create: %d %s, want 400 with %q", r.status, e.errorOf(r), c.want)
			}
			if diff := cmp.Diff(before, e.snapshot()); diff != "" {
				t.Errorf("a refused create wrote (-before +after):\n%s", diff)
			}
		})
		t.Run("edit/"+c.name, func(t *testing.T) {
			r := e.raw(http.MethodPatch, "/api/v1/hosts/n1", mustJSON(t, admin.HostPatch{Network: c.spec}))
			if r.status != http.StatusBadRequest || !strings.Contains(e.errorOf(r), c.want) {
				t.Fatalf("edit: %d %s, want 400 with %q", r.status, e.errorOf(r), c.want)
			}
		})
	}

	// Not inspected yet: a NIC the rackboot has never seen can be named...
	if _, err := e.client.EditHost(ctx, "n1", admin.HostPatch{Network: strange}); err != nil {
		t.Fatalf("edit of an uninspected host: %v", err)
	}
	// ...once inspected, only the NICs found.
	if _, _, err := e.store.TransitionHost(ctx, "n1", func(host *inventory.Host, ch *inventory.HostChange) error {
		host.Facts = &inventory.HostFacts{Facts: inventory.Facts{NICs: []inventory.NIC{
			{Name: "enp1s0", MAC: "52:54:00:00:01:01", Boot: true}, {Name: "enp2s0", MAC: "52:54:00:00:01:02"}}}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := e.raw(http.MethodPatch, "/api/v1/hosts/n1", mustJSON(t, admin.HostPatch{Network: strange}))
	if want := "network.ethernets[0].mac: 52:54:00:00:09:09 is not one of this host's NICs"; r.status != http.StatusBadRequest || !strings.Contains(e.errorOf(r), want) {
		t.Fatalf("edit naming a NIC the host lacks: %d %s, want 400 with %q", r.status, e.errorOf(r), want)
	}
	h, err = e.client.EditHost(ctx, "n1", admin.HostPatch{Network: bond})
	if err != nil || h.Network == nil || len(h.Network.Bonds) != 1 {
		t.Fatalf("edit with the host's own NICs: %+v %v", h.Network, err)
	}
	evs, err := e.client.Events(ctx, "n1", 0)
	if err != nil || evs[len(evs)-1].Fields["changed"] != "network" {
		t.Errorf("last event %+v %v", evs[len(evs)-1], err)
	}
	// An empty spec goes back to the default.
	if h, err = e.client.EditHost(ctx, "n1", admin.HostPatch{Network: &admin.NetworkSpec{}}); err != nil || h.Network != nil {
		t.Fatalf("clearing: %+v %v", h.Network, err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
