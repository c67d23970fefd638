package provision

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/internal/inventory"
)

// TestOnTransitionReportsStateChanges checks the hook the Cluster API controllers use:
// it is called once per change of state (not for phase changes, agent calls or
// progress), and only after the change is committed, so what it reads is the new
// state.
func TestOnTransitionReportsStateChanges(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var mu sync.Mutex
	var seen []string
	e.cfg.OnTransition = func(id string) {
		h, err := e.store.GetHost(ctx, id)
		if err != nil {
			t.Errorf("OnTransition(%s): %v", id, err)
			return
		}
		mu.Lock()
		seen = append(seen, id+" "+string(h.State))
		mu.Unlock()
	}
	p, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.p, e.mux = p, http.NewServeMux()
	p.Register(e.mux)
	calls := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		seen = nil
		return out
	}

	provisionToDisk(t, e, Request{UserData: []byte("#cloud-config\n")})
	// Power, boot, hello, progress and the result change the phase, not the state.
	if d := cmp.Diff([]string{hostID + " provisioning"}, calls()); d != "" {
		t.Fatalf("calls up to the image written (-want +got):\n%s", d)
	}
	e.reconcile()
	if err := e.p.PhoneHome(ctx, hostID, map[string]string{"ip": hostIP}); err != nil {
		t.Fatal(err)
	}
	// A repeated phone-home records an event but changes nothing.
	if err := e.p.PhoneHome(ctx, hostID, map[string]string{"ip": hostIP}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Release(ctx, hostID, ReleaseOptions{}); err != nil {
		t.Fatal(err)
	}
	// Releasing again is a no-op.
	if _, err := e.p.Release(ctx, hostID, ReleaseOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{hostID + " " + string(inventory.StateProvisioned), hostID + " " + string(inventory.StateDeprovisioning)}
	if d := cmp.Diff(want, calls()); d != "" {
		t.Fatalf("calls after the phone-home and release (-want +got):\n%s", d)
	}
}
