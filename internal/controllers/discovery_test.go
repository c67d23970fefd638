package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/inventory"
)

// TestDiscoveredHostNotClaimable is issue 10's "discovery is not enrolment" for the
// Cluster API: a discovered host, inspected and matching an empty selector, is not
// claimed by a RackbootMachine until it is accepted (discovered → available).
func TestDiscoveredHostNotClaimable(t *testing.T) {
	f := newFixture(t, "disc")
	store := newStore(t, "disc", 0, nil)
	ctx := context.Background()
	_, err := store.CreateHosts(ctx, inventory.Host{ID: "stranger", MACs: []string{"52:54:00:de:00:01"}, State: inventory.StateDiscovered})
	if err != nil {
		t.Fatal(err)
	}
	// Inspected: its facts are shown, as the agent reported them.
	if _, _, err := store.TransitionHost(ctx, "stranger", func(h *inventory.Host, _ *inventory.HostChange) error {
		h.Facts = &inventory.HostFacts{Facts: inventory.Facts{Disks: []inventory.Disk{{Name: "sda", SizeBytes: 1 << 30}}}, ReportedAt: time.Now()}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	prov := newFakeProvisioner(store)
	startManager(t, Config{REST: shared.cfg, Rack: "r1", Inventory: store, Provisioner: prov, Namespace: f.ns})
	f.machine("m", "r1", nil)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if h, _ := store.GetHost(ctx, "stranger"); !h.Claim.IsZero() {
			t.Fatalf("a discovered host was claimed by %s", h.Claim.Owner)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rm := f.get("m"); rm.Status.Host != "" {
		t.Fatalf("machine holds %s before any host was accepted", rm.Status.Host)
	}
	// Accepted (what provision.Accept does to an inspected discovered host).
	if _, err := store.UpdateHost(ctx, "stranger", func(h *inventory.Host) error { h.State = inventory.StateAvailable; return nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the accepted host claimed", func() (bool, string) {
		h, _ := store.GetHost(ctx, "stranger")
		return h.Claim.Owner == f.ns+"/m", fmt.Sprintf("claim %q, state %s", h.Claim.Owner, h.State)
	})
}
