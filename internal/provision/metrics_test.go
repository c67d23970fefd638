package provision

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
)

// observed is the count and sum of one series of rackboot_host_operation_duration_seconds.
type observed struct {
	Count uint64
	Sum   float64
}

func operationDurations(t *testing.T, p *Provisioner) map[string]observed {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(p.m.operations)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]observed{}
	series := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			series++
			if n := m.GetHistogram().GetSampleCount(); n > 0 {
				got[label(m, "operation")+"/"+label(m, "result")] = observed{n, m.GetHistogram().GetSampleSum()}
			}
		}
	}
	// Every operation and result has a series from the start, at zero.
	if series != 9 {
		t.Errorf("%d series of rackboot_host_operation_duration_seconds, want 9 (3 operations × 3 results)", series)
	}
	return got
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestOperationDurations: each inspection, provisioning and release is timed from its
// start (the request, or a retry) to the state it ends in, by result; a failure is
// counted apart so it does not skew how long a good one takes.
func TestOperationDurations(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	// An inspection of 90 s.
	if _, err := e.p.Inspect(ctx, hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	e.clock.Advance(90 * time.Second)
	tok := e.boot()
	e.mustHello(tok)
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionInspect, OK: true, Phase: agentapi.PhaseDone, Next: "poweroff"}); code != http.StatusNoContent {
		t.Fatalf("result: %d", code)
	}
	e.wantState(inventory.StateAvailable, "")

	// A provisioning of 10 minutes: request to phone-home.
	if _, err := e.p.Provision(ctx, hostID, Request{Image: imageName}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	e.clock.Advance(10 * time.Minute)
	tok = e.boot()
	e.mustHello(tok)
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionProvision, OK: true, Phase: agentapi.PhaseDone,
		RootDisk: "vda", ImageSHA256: imageSum, BytesWritten: 4 << 20, Next: "reboot"}); code != http.StatusNoContent {
		t.Fatalf("result: %d", code)
	}
	if err := e.p.PhoneHome(ctx, hostID, map[string]string{"ip": hostIP}); err != nil {
		t.Fatal(err)
	}
	e.wantState(inventory.StateProvisioned, "")

	// A release whose agent fails after 2 minutes, retried, then done 3 minutes later.
	if _, err := e.p.Release(ctx, hostID, ReleaseOptions{}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	e.clock.Advance(2 * time.Minute)
	tok = e.boot()
	e.mustHello(tok)
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionDeprovision, OK: false, Phase: agentapi.PhaseWipe, Error: "disk vanished"}); code != http.StatusNoContent {
		t.Fatalf("result: %d", code)
	}
	e.wantState(inventory.StateFailed, "")
	e.clock.Advance(time.Hour) // time spent failed is nobody's operation
	if _, err := e.p.Retry(ctx, hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	e.clock.Advance(3 * time.Minute)
	tok = e.boot()
	e.mustHello(tok)
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionDeprovision, OK: true, Wiped: []string{"vda"}, Next: "poweroff"}); code != http.StatusNoContent {
		t.Fatalf("result: %d", code)
	}
	e.wantState(inventory.StateAvailable, "")

	want := map[string]observed{
		"inspect/succeeded":   {1, 90},
		"provision/succeeded": {1, 600},
		"release/failed":      {1, 120},
		"release/succeeded":   {1, 180},
	}
	if d := cmp.Diff(want, operationDurations(t, e.p)); d != "" {
		t.Errorf("rackboot_host_operation_duration_seconds (-want +got):\n%s", d)
	}
}

// TestOperationAborted: a provisioning released before it ends is counted as aborted.
func TestOperationAborted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.setState(inventory.StateAvailable)
	if _, err := e.p.Provision(ctx, hostID, Request{Image: imageName}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(45 * time.Second)
	if _, err := e.p.Release(ctx, hostID, ReleaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]observed{"provision/aborted": {1, 45}}, operationDurations(t, e.p)); d != "" {
		t.Errorf("rackboot_host_operation_duration_seconds (-want +got):\n%s", d)
	}
}
