package provision

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
)

// TestCrashMidWriteResumes closes the inventory while the agent is writing the image
// (as a killed rackboot leaves it) and opens it again: the host is still provisioning
// with everything it had, the agent's deadline is pushed out, and the same agent
// finishes the job with the same token.
func TestCrashMidWriteResumes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.setState(inventory.StateAvailable)
	if _, err := e.p.Provision(ctx, hostID, Request{Image: imageName, UserData: []byte("#cloud-config\n{}\n")}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	tok := e.boot()
	e.mustHello(tok)
	if code := e.progress(tok, agentapi.Progress{Phase: agentapi.PhaseWrite, Disk: "vda", BytesDone: 1 << 20, BytesTotal: 4 << 20}); code != http.StatusNoContent {
		t.Fatal(code)
	}
	before := e.host()
	nEvents := len(e.events())

	// rackboot is down for 20 minutes, longer than the stall timeout.
	e.clock.Advance(20 * time.Minute)
	e.restart()

	h := e.wantState(inventory.StateProvisioning, inventory.PhaseAgent)
	if h.Provision == nil || h.Provision.ID != before.Provision.ID || h.Facts == nil || h.Operation.TokenHash != before.Operation.TokenHash {
		t.Fatalf("after restart: provision %+v operation %+v", h.Provision, h.Operation)
	}
	if !h.Operation.Deadline.After(e.clock.Now()) {
		t.Errorf("deadline %v not pushed past now %v", h.Operation.Deadline, e.clock.Now())
	}
	evs := e.events()
	if len(evs) != nEvents+1 || evs[len(evs)-1].Type != EventResume {
		t.Errorf("events after restart:\n%s", dumpEvents(evs[nEvents:]))
	}
	if _, err := e.store.ProvisionData(ctx, hostID); err != nil {
		t.Errorf("user-data lost: %v", err)
	}
	// The next pass must not time the agent out.
	e.reconcile()
	e.wantState(inventory.StateProvisioning, inventory.PhaseAgent)
	if code := e.progress(tok, agentapi.Progress{Phase: agentapi.PhaseWrite, Disk: "vda", BytesDone: 4 << 20, BytesTotal: 4 << 20}); code != http.StatusNoContent {
		t.Fatalf("progress after restart: %d", code)
	}
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionProvision, OK: true, RootDisk: "vda", ImageSHA256: imageSum}); code != http.StatusNoContent {
		t.Fatalf("result after restart: %d", code)
	}
	e.wantState(inventory.StateProvisioning, inventory.PhaseDiskBoot)
}

func TestCrashInPowerPhaseReissues(t *testing.T) {
	e := newEnv(t)
	if _, err := e.p.Inspect(context.Background(), hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	e.restart() // before any pass ran the BMC sequence
	e.wantState(inventory.StateInspecting, inventory.PhasePower)
	e.reconcile()
	if calls := e.bmc.take(); len(calls) != 2 {
		t.Errorf("BMC calls after restart: %v", calls)
	}
	e.wantState(inventory.StateInspecting, inventory.PhaseBooting)
}

func TestCrashInDiskBootSetsBootDevice(t *testing.T) {
	e := newEnv(t)
	provisionToDisk(t, e, Request{})
	e.restart() // before the pass that sets the boot device
	e.reconcile()
	calls := e.bmc.take()
	if len(calls) != 1 || !strings.Contains(calls[0], "bootdev disk persistent") {
		t.Errorf("BMC calls after restart: %v", calls)
	}
	e.wantState(inventory.StateProvisioning, inventory.PhaseDiskBoot)
}

func TestCrashBootingDeadlinePassedWhileDown(t *testing.T) {
	e := newEnv(t)
	if _, err := e.p.Inspect(context.Background(), hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	e.clock.Advance(time.Hour)
	e.restart()
	e.reconcile()
	// The host gets a full boot timeout from the restart, not an instant failure.
	h := e.wantState(inventory.StateInspecting, inventory.PhaseBooting)
	if h.Operation.Attempt != 1 {
		t.Errorf("attempt = %d", h.Operation.Attempt)
	}
}

func TestTransientWithoutOperationFailsCleanly(t *testing.T) {
	e := newEnv(t)
	// A host written as provisioning by something else (or an older build).
	e.setState(inventory.StateProvisioning)
	e.restart()
	h := e.wantState(inventory.StateFailed, "")
	if !strings.Contains(h.StateReason, "without its operation record") {
		t.Errorf("reason = %q", h.StateReason)
	}
	if h.Operation == nil || h.Operation.State != inventory.StateProvisioning {
		t.Errorf("operation = %+v", h.Operation)
	}
	hosts, err := e.store.ListHosts(context.Background())
	if err != nil || len(hosts) != 1 {
		t.Errorf("hosts after restart: %d, %v", len(hosts), err)
	}
	// The same check runs in every pass, for a host changed while rackboot runs.
	e.setState(inventory.StateDeprovisioning)
	if _, err := e.store.UpdateHost(context.Background(), hostID, func(h *inventory.Host) error { h.Operation = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	e.wantState(inventory.StateFailed, "")
}

// TestStartLoop runs the real loop: a transition wakes it, it runs the BMC sequence,
// and cancelling the context stops it.
func TestStartLoop(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.p.Start(ctx) }()
	h, err := e.p.Inspect(ctx, hostID, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	for h.Operation == nil || h.Operation.Phase != inventory.PhaseBooting {
		if h, err = e.p.Watch(wctx, hostID, h.Revision); err != nil {
			t.Fatalf("waiting for the loop to power the host: %v (host %+v)", err, h.Operation)
		}
	}
	if calls := e.bmc.take(); len(calls) != 2 {
		t.Errorf("BMC calls = %v", calls)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start = %v", err)
	}
}
