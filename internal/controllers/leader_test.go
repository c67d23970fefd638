package controllers

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestLeaderElectionPerRack: two rackboot instances for rack r1 and one for r2. Each
// rack has its own Lease (rackboot-RACK); one r1 instance leads, r2 leads its own
// rack regardless, and when the r1 leader stops the standby takes over.
func TestLeaderElectionPerRack(t *testing.T) {
	_, c := env(t)
	ns := newNamespace(t, c, "leader")
	store1, store2 := newStore(t, "a", 1, nil), newStore(t, "b", 1, nil)
	cfg := func(rack string, s Inventory, p HostProvisioner) Config {
		return Config{REST: shared.cfg, Rack: rack, Inventory: s, Provisioner: p, Namespace: ns, LeaderElection: true, LeaderElectionNamespace: ns}
	}
	p1 := newFakeProvisioner(store1)
	a, stopA := startManager(t, cfg("r1", store1, p1))
	b, stopB := startManager(t, cfg("r1", store1, p1))
	r2, _ := startManager(t, cfg("r2", store2, newFakeProvisioner(store2)))

	wait := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(60 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
		}
	}
	wait(r2.Elected(), "r2 to lead its rack")
	var standby *Manager
	select {
	case <-a.Elected():
		standby = b
		defer stopB()
		stopA()
	case <-b.Elected():
		standby = a
		defer stopA()
		stopB()
	case <-time.After(60 * time.Second):
		t.Fatal("no r1 instance was elected")
	}
	for _, rack := range []string{"r1", "r2"} {
		var l coordinationv1.Lease
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "rackboot-" + rack}, &l); err != nil {
			t.Fatalf("lease of rack %s: %v", rack, err)
		}
		if rack == "r2" && ptr.Deref(l.Spec.HolderIdentity, "") == "" {
			t.Fatalf("lease rackboot-r2 has no holder: %+v", l.Spec)
		}
	}
	wait(standby.Elected(), "the r1 standby to take over")
}
