package controllers

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/rackboot/rackboot/internal/inventory"
)

// blockingInventory holds every claim until the reconcile's context ends, so a test
// can stop a manager while reconciles are in flight.
type blockingInventory struct {
	Inventory
	entered chan string // the owner of each claim that started
}

func (b blockingInventory) ClaimHost(ctx context.Context, req inventory.ClaimRequest) (inventory.Host, error) {
	select {
	case b.entered <- req.Owner:
	case <-ctx.Done():
	}
	<-ctx.Done()
	return inventory.Host{}, ctx.Err()
}

// TestStopWithReconcilesInFlight: a manager stops when its context ends even while
// reconciles are running, their keys are queued again, and idle workers wait on the
// queue. That is the shape of TestRacks' teardown that used to hang until the 30 s
// grace period ran out: controller-runtime's priority queue (v0.24) deadlocked in
// exactly this state (kubernetes-sigs/controller-runtime#3538), so ctrlConfig turns
// it off. Several rounds, because the deadlock needed a scheduling race.
func TestStopWithReconcilesInFlight(t *testing.T) {
	f := newFixture(t, "stop")
	const inFlight = 6
	store := newStore(t, "h", inFlight, nil)
	keys := make([]types.NamespacedName, inFlight)
	for i := range keys {
		keys[i] = types.NamespacedName{Namespace: f.ns, Name: fmt.Sprintf("m%d", i)}
		f.machine(keys[i].Name, "r1", nil)
	}
	for round := range 30 {
		inv := blockingInventory{Inventory: store, entered: make(chan string, 64)}
		// Eight workers: six busy, two idle on the queue.
		m, stop := startManager(t, Config{REST: shared.cfg, Rack: "r1", Inventory: inv, Provisioner: newFakeProvisioner(store), Namespace: f.ns, Concurrency: 8})
		busy := map[string]bool{}
		for len(busy) < inFlight {
			select {
			case o := <-inv.entered:
				busy[o] = true
			case <-time.After(60 * time.Second):
				t.Fatalf("round %d: only %v are being reconciled", round, busy)
			}
		}
		// Keep the queue busy through the shutdown, as watch events and the
		// provisioner's kicks do: the blocked machines are queued again (a key being
		// reconciled stays queued until its reconcile is done) and the idle workers
		// churn through machines that do not exist.
		kicking, stopKicking := context.WithCancel(context.Background())
		kicked := make(chan struct{})
		go func() {
			defer close(kicked)
			for i := 0; kicking.Err() == nil; i++ {
				for _, k := range keys {
					m.machines.enqueue(k)
				}
				m.machines.enqueue(types.NamespacedName{Namespace: f.ns, Name: fmt.Sprintf("ghost-%d", i%64)})
				runtime.Gosched()
			}
		}()
		stop() // reports a manager that outlives its grace period, with its goroutines
		stopKicking()
		<-kicked
		if t.Failed() {
			t.Fatalf("round %d: the manager did not stop cleanly", round)
		}
	}
}
