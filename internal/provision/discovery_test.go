package provision

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"testing"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
)

// TestDiscoveryIsNotEnrolment: a discovered host boots the agent once, is inspected and
// stays discovered (facts shown); it boots no agent again, cannot be provisioned, and
// becomes available only when accepted. An operator's inspection of a discovered host
// ends discovered too.
func TestDiscoveryIsNotEnrolment(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.setState(inventory.StateDiscovered)

	inspect := func() {
		t.Helper()
		tok := e.boot()
		if plan := e.mustHello(tok); plan.Action != agentapi.ActionInspect {
			t.Fatalf("plan %s, want inspect", plan.Action)
		}
		if code := e.result(tok, agentapi.Result{Action: agentapi.ActionInspect, OK: true}); code != 204 {
			t.Fatalf("result: %d", code)
		}
	}
	inspect()
	h := e.wantState(inventory.StateDiscovered, "")
	if h.Facts == nil {
		t.Fatal("no facts after inspection")
	}
	if _, err := e.p.AgentArgs(ctx, h, hostMAC, netip.MustParseAddr(hostIP)); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("an inspected discovered host got another agent token: %v", err)
	}
	if _, err := e.p.Provision(ctx, hostID, Request{Image: imageName}); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("provisioning a discovered host: %v, want a conflict", err)
	}

	// The operator inspects it again: still discovered at the end.
	if _, err := e.p.Inspect(ctx, hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	inspect()
	e.wantState(inventory.StateDiscovered, "")

	if _, err := e.p.Accept(ctx, hostID, "test"); err != nil {
		t.Fatal(err)
	}
	e.wantState(inventory.StateAvailable, "")
	if !hasEvent(e.events(), EventAccepted, "") {
		t.Errorf("no %s event:\n%s", EventAccepted, dumpEvents(e.events()))
	}
	if _, err := e.p.Accept(ctx, hostID, "test"); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("accepting an available host: %v, want a conflict", err)
	}
	if _, err := e.p.Provision(ctx, hostID, Request{Image: imageName}); err != nil {
		t.Errorf("provisioning the accepted host: %v", err)
	}
}

// TestAcceptSerials: a discovered host whose inspection reports a serial on the
// operator's list becomes available at once; another stays discovered.
func TestAcceptSerials(t *testing.T) {
	for _, tc := range []struct {
		serials []string
		want    inventory.State
	}{
		{[]string{"SN-OTHER", "SN-1234"}, inventory.StateAvailable},
		{[]string{"SN-OTHER"}, inventory.StateDiscovered},
		{nil, inventory.StateDiscovered},
	} {
		e := newEnv(t)
		e.reconfigure(func(c *Config) { c.AcceptSerials = tc.serials })
		e.setState(inventory.StateDiscovered)
		tok := e.boot()
		facts := testFacts()
		facts.System.Serial = "SN-1234"
		rec := e.call(agentapi.PathHello, tok, hostIP, agentapi.Hello{MAC: hostMAC, AgentVersion: "test", BootID: "b1", Facts: facts})
		if rec.Code != http.StatusOK {
			t.Fatalf("hello: %d %s", rec.Code, rec.Body)
		}
		if code := e.result(tok, agentapi.Result{Action: agentapi.ActionInspect, OK: true}); code != http.StatusNoContent {
			t.Fatalf("result: %d", code)
		}
		if h := e.wantState(tc.want, ""); (tc.want == inventory.StateAvailable) != hasEvent(e.events(), EventAccepted, "rule") {
			t.Errorf("serials %v: state %s, accepted-by-rule event %v", tc.serials, h.State, !(tc.want == inventory.StateAvailable))
		}
	}
}
