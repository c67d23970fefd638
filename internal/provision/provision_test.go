package provision

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/metadata"
)

func TestInspectLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.p.Inspect(ctx, hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	e.wantState(inventory.StateInspecting, inventory.PhasePower)
	e.reconcile()
	if diff := cmp.Diff([]string{hostID + " bootdev pxe once uefi", hostID + " power cycle"}, e.bmc.take()); diff != "" {
		t.Errorf("BMC calls (-want +got):\n%s", diff)
	}
	e.wantState(inventory.StateInspecting, inventory.PhaseBooting)
	// A second pass while booting does nothing.
	e.reconcile()
	if calls := e.bmc.take(); len(calls) != 0 {
		t.Errorf("BMC calls while booting: %v", calls)
	}
	tok := e.boot()
	plan := e.mustHello(tok)
	if plan.Action != agentapi.ActionInspect || !plan.PowerOff {
		t.Fatalf("plan = %+v, want inspect with power off", plan)
	}
	h := e.wantState(inventory.StateInspecting, inventory.PhaseAgent)
	if h.Facts == nil || h.Facts.System.UUID != testFacts().System.UUID || h.Facts.Memory.InstalledBytes != 2<<30 {
		t.Errorf("facts = %+v", h.Facts)
	}
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionInspect, OK: true, Phase: agentapi.PhaseDone, Next: "poweroff"}); code != http.StatusNoContent {
		t.Fatalf("result: %d", code)
	}
	h = e.wantState(inventory.StateAvailable, "")
	if h.Operation != nil {
		t.Errorf("operation left: %+v", h.Operation)
	}
	if diff := cmp.Diff([]string{"enrolled→inspecting", "inspecting→available"}, e.transitions()); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
	// The token of that boot is dead now.
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionInspect, OK: true}); code != http.StatusUnauthorized {
		t.Errorf("result with a spent token: %d, want 401", code)
	}
}

// provisionToDisk runs a provisioning up to the image written; it returns the agent
// token and the plan.
func provisionToDisk(t *testing.T, e *env, req Request) (string, agentapi.Plan) {
	t.Helper()
	ctx := context.Background()
	e.setState(inventory.StateAvailable)
	if req.Image == "" {
		req.Image = imageName
	}
	if _, err := e.p.Provision(ctx, hostID, req); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	e.bmc.take()
	tok := e.boot()
	plan := e.mustHello(tok)
	if plan.Action != agentapi.ActionProvision {
		t.Fatalf("plan = %+v", plan)
	}
	for _, pr := range []agentapi.Progress{
		{Phase: agentapi.PhaseWipe, Disk: "vda", Message: "quick wipe before writing"},
		{Phase: agentapi.PhaseWrite, Disk: "vda", BytesDone: 1 << 20, BytesTotal: 4 << 20},
		{Phase: agentapi.PhaseWrite, Disk: "vda", BytesDone: 4 << 20, BytesTotal: 4 << 20},
	} {
		if code := e.progress(tok, pr); code != http.StatusNoContent {
			t.Fatalf("progress %+v: %d", pr, code)
		}
	}
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionProvision, OK: true, Phase: agentapi.PhaseDone,
		RootDisk: "vda", ImageSHA256: imageSum, BytesWritten: 4 << 20, Next: "reboot"}); code != http.StatusNoContent {
		t.Fatalf("result: %d", code)
	}
	return tok, plan
}

func TestProvisionLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	userData := "#cloud-config\nruncmd: [touch /root/marker]\n"
	tok, plan := provisionToDisk(t, e, Request{UserData: []byte(userData), Labels: map[string]string{"rack": "r1"}, Metadata: map[string]string{"cluster": "c1"}})

	pv := plan.Provision
	if pv.ImageURL != serverURL+"/images/"+imageName || pv.SHA256 != imageSum || pv.Format != agentapi.FormatRaw || pv.Size != 4<<20 {
		t.Errorf("provision plan = %+v", pv)
	}
	if pv.CloudInit.Mode != agentapi.CloudInitDropIn || !strings.HasPrefix(pv.CloudInit.SeedURL, serverURL+"/metadata/") {
		t.Errorf("cloud-init = %+v", pv.CloudInit)
	}
	h := e.wantState(inventory.StateProvisioning, inventory.PhaseDiskBoot)
	if h.Labels["rack"] != "r1" || h.Provision.WrittenDisk != "vda" || h.Provision.BootMAC != hostMAC {
		t.Errorf("host = labels %v provision %+v", h.Labels, h.Provision)
	}
	// The metadata token in the seed URL names this host; the stored data is the user's.
	metaTok := strings.TrimSuffix(strings.TrimPrefix(pv.CloudInit.SeedURL, serverURL+"/metadata/"), "/")
	if got, err := e.store.HostByTokenHash(ctx, metadata.TokenHash(metaTok)); err != nil || got.ID != hostID {
		t.Fatalf("metadata token lookup: %v %v", got.ID, err)
	}
	d, err := e.store.ProvisionData(ctx, hostID)
	if err != nil || string(d.UserData) != userData || d.ProvisionID != h.Provision.ID {
		t.Fatalf("provision data = %+v, %v", d, err)
	}
	// A retried result (its 204 lost) is still a 204: the agent must reboot, not power off.
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionProvision, OK: true, RootDisk: "vda"}); code != http.StatusNoContent {
		t.Errorf("repeated result: %d, want 204", code)
	}
	// The next pass makes the disk the boot device.
	e.reconcile()
	if diff := cmp.Diff([]string{hostID + " bootdev disk persistent uefi"}, e.bmc.take()); diff != "" {
		t.Errorf("BMC calls (-want +got):\n%s", diff)
	}
	if !e.host().Operation.DiskBootSet {
		t.Error("DiskBootSet not recorded")
	}
	e.reconcile()
	if calls := e.bmc.take(); len(calls) != 0 {
		t.Errorf("boot device set twice: %v", calls)
	}
	if err := e.p.PhoneHome(ctx, hostID, map[string]string{"ip": hostIP}); err != nil {
		t.Fatal(err)
	}
	h = e.wantState(inventory.StateProvisioned, "")
	if h.Operation != nil || h.Provision.PhonedHomeAt.IsZero() {
		t.Errorf("provisioned host: operation %+v, provision %+v", h.Operation, h.Provision)
	}
	// An image in use cannot be removed.
	if err := e.store.DeleteImage(ctx, imageName); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("DeleteImage of an image in use = %v, want ErrConflict", err)
	}

	// Release: the metadata token dies at once, the agent wipes, the host is available.
	if _, err := e.p.Release(ctx, hostID, ReleaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.HostByTokenHash(ctx, metadata.TokenHash(metaTok)); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("metadata token after release: %v, want ErrNotFound", err)
	}
	if _, err := e.store.ProvisionData(ctx, hostID); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("provision data after release: %v, want ErrNotFound", err)
	}
	e.reconcile()
	if diff := cmp.Diff([]string{hostID + " bootdev pxe once uefi", hostID + " power cycle"}, e.bmc.take()); diff != "" {
		t.Errorf("BMC calls (-want +got):\n%s", diff)
	}
	wtok := e.boot()
	wplan := e.mustHello(wtok)
	if wplan.Action != agentapi.ActionDeprovision || wplan.Deprovision.Wipe != agentapi.WipeQuick || !wplan.PowerOff {
		t.Fatalf("wipe plan = %+v", wplan)
	}
	if code := e.result(wtok, agentapi.Result{Action: agentapi.ActionDeprovision, OK: true, Wiped: []string{"vda"}, Next: "poweroff"}); code != http.StatusNoContent {
		t.Fatalf("result: %d", code)
	}
	h = e.wantState(inventory.StateAvailable, "")
	if h.Provision != nil || h.Operation != nil {
		t.Errorf("released host keeps provision %+v operation %+v", h.Provision, h.Operation)
	}
	if err := e.store.DeleteImage(ctx, imageName); err != nil {
		t.Errorf("DeleteImage after release: %v", err)
	}
	want := []string{"enrolled→available", "available→provisioning", "provisioning→provisioned", "provisioned→deprovisioning", "deprovisioning→available"}
	if diff := cmp.Diff(want[1:], e.transitions()); diff != "" {
		t.Errorf("transitions (-want +got):\n%s\n%s", diff, dumpEvents(e.events()))
	}
	evs := e.events()
	for _, typ := range []string{EventRequest, EventPower, EventAgentBoot, EventHello, EventProgress, EventResult, EventDiskBoot, EventPhoneHome} {
		if !hasEvent(evs, typ, "") {
			t.Errorf("no %s event on the timeline:\n%s", typ, dumpEvents(evs))
		}
	}
}

func TestBootTimeoutRetriesThenFails(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.setState(inventory.StateAvailable)
	if _, err := e.p.Provision(ctx, hostID, Request{Image: imageName}); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= DefaultBootAttempts; attempt++ {
		e.reconcile() // power
		if calls := e.bmc.take(); len(calls) != 2 {
			t.Fatalf("attempt %d: BMC calls %v", attempt, calls)
		}
		h := e.wantState(inventory.StateProvisioning, inventory.PhaseBooting)
		if h.Operation.Attempt != attempt {
			t.Fatalf("attempt = %d, want %d", h.Operation.Attempt, attempt)
		}
		e.clock.Advance(DefaultBootTimeout - 1)
		e.reconcile()
		e.wantState(inventory.StateProvisioning, inventory.PhaseBooting) // not yet
		e.clock.Advance(1)
		e.reconcile() // timeout
	}
	h := e.wantState(inventory.StateFailed, "")
	if !strings.Contains(h.StateReason, "no hello from the agent") || !strings.Contains(h.StateReason, "3 times") {
		t.Errorf("reason = %q", h.StateReason)
	}
	if h.Operation == nil || h.Operation.State != inventory.StateProvisioning || h.Operation.TokenHash != "" {
		t.Errorf("failed operation = %+v", h.Operation)
	}
	// Retry starts over with the same request.
	if _, err := e.p.Retry(ctx, hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	h = e.wantState(inventory.StateProvisioning, inventory.PhasePower)
	if h.Operation.Attempt != 1 || h.Provision == nil || h.Provision.Image != imageName {
		t.Errorf("retried host: %+v %+v", h.Operation, h.Provision)
	}
}

func TestAgentStallRetries(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.p.Inspect(ctx, hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	tok := e.boot()
	e.mustHello(tok)
	// Progress pushes the deadline out.
	e.clock.Advance(DefaultStallTimeout - 1)
	if code := e.progress(tok, agentapi.Progress{Phase: agentapi.PhaseInspect}); code != http.StatusNoContent {
		t.Fatal(code)
	}
	e.clock.Advance(DefaultStallTimeout - 1)
	e.reconcile()
	e.wantState(inventory.StateInspecting, inventory.PhaseAgent)
	e.clock.Advance(1)
	e.reconcile()
	h := e.wantState(inventory.StateInspecting, inventory.PhasePower)
	if h.Operation.Attempt != 2 || h.Operation.TokenHash != "" {
		t.Errorf("after stall: %+v", h.Operation)
	}
	if !hasEvent(e.events(), EventTimeout, "silent") {
		t.Errorf("no timeout event:\n%s", dumpEvents(e.events()))
	}
	// The silent agent's token is dead.
	if code := e.progress(tok, agentapi.Progress{Phase: agentapi.PhaseInspect}); code != http.StatusUnauthorized {
		t.Errorf("progress with the old token: %d, want 401", code)
	}
}

func TestBMCFailuresBackOffThenFail(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.bmc.failures = 100
	if _, err := e.p.Inspect(ctx, hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	h := e.wantState(inventory.StateInspecting, inventory.PhasePower)
	if h.Operation.PowerTries != 1 || h.Operation.RetryAt.IsZero() {
		t.Fatalf("after a BMC failure: %+v", h.Operation)
	}
	e.bmc.take()
	e.reconcile() // before RetryAt: nothing
	if calls := e.bmc.take(); len(calls) != 0 {
		t.Errorf("BMC called before the backoff passed: %v", calls)
	}
	for range DefaultPowerAttempts - 1 {
		e.clock.Advance(DefaultPowerBackoff)
		e.reconcile()
	}
	h = e.wantState(inventory.StateFailed, "")
	if !strings.Contains(h.StateReason, "BMC failed 3 times") {
		t.Errorf("reason = %q", h.StateReason)
	}
}

func TestNoBMCWaitsForManualBoot(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.UpdateHost(ctx, hostID, func(h *inventory.Host) error { h.BMC = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Inspect(ctx, hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	if calls := e.bmc.take(); len(calls) != 0 {
		t.Errorf("BMC calls for a host without a BMC: %v", calls)
	}
	e.wantState(inventory.StateInspecting, inventory.PhaseBooting)
	if !hasEvent(e.events(), EventPower, "no BMC") {
		t.Errorf("no hint to boot by hand:\n%s", dumpEvents(e.events()))
	}
}

func TestAgentFailureFailsAtOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.setState(inventory.StateAvailable)
	if _, err := e.p.Provision(ctx, hostID, Request{Image: imageName}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	tok := e.boot()
	e.mustHello(tok)
	msg := "image sha256 mismatch: got ffff, want " + imageSum + ": the disk was not written"
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionProvision, OK: false, Phase: agentapi.PhaseVerify, Error: msg}); code != http.StatusNoContent {
		t.Fatal(code)
	}
	h := e.wantState(inventory.StateFailed, "")
	if !strings.Contains(h.StateReason, "sha256 mismatch") || !strings.Contains(h.StateReason, "verify") {
		t.Errorf("reason = %q", h.StateReason)
	}
	// A failed host with an image can be released (wiped) or retried; not inspected.
	if _, err := e.p.Inspect(ctx, hostID, Options{}); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("Inspect of a failed provisioned host = %v, want ErrConflict", err)
	}
	if _, err := e.p.Release(ctx, hostID, ReleaseOptions{Wipe: agentapi.WipeFull}); err != nil {
		t.Fatal(err)
	}
	h = e.wantState(inventory.StateDeprovisioning, inventory.PhasePower)
	if h.Operation.Wipe != inventory.WipeFull {
		t.Errorf("wipe = %q", h.Operation.Wipe)
	}
}

func TestImagePendingThenFailed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.addImage("slow", imageSum, inventory.ImagePending)
	e.setState(inventory.StateAvailable)
	if _, err := e.p.Provision(ctx, hostID, Request{Image: "slow"}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	tok := e.boot()
	plan := e.mustHello(tok)
	if plan.Action != agentapi.ActionWait || plan.WaitSeconds <= 0 {
		t.Fatalf("plan for a pending image = %+v, want wait", plan)
	}
	e.setImage("slow", inventory.ImageFailed, "sha256 mismatch: the catalog says X but the file hashes to Y")
	if _, code := e.hello(tok); code != http.StatusConflict {
		t.Fatalf("hello with a failed image: %d, want 409", code)
	}
	h := e.wantState(inventory.StateFailed, "")
	if !strings.Contains(h.StateReason, "image slow cannot be used") || !strings.Contains(h.StateReason, "sha256 mismatch") {
		t.Errorf("reason = %q", h.StateReason)
	}
}

func TestProvisionRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.addImage("broken", imageSum, inventory.ImageFailed)
	tests := []struct {
		name  string
		setup func()
		req   Request
		want  error
	}{
		{"enrolled host", func() {}, Request{Image: imageName}, inventory.ErrConflict},
		{"unknown image", func() { e.setState(inventory.StateAvailable) }, Request{Image: "nope"}, inventory.ErrNotFound},
		{"failed image", func() {}, Request{Image: "broken"}, inventory.ErrConflict},
		{"bad user-data", func() {}, Request{Image: imageName, UserData: []byte("hello")}, inventory.ErrInvalid},
		{"cloud-config not YAML", func() {}, Request{Image: imageName, UserData: []byte("#cloud-config\n: : :\n")}, inventory.ErrInvalid},
		{"two configs", func() {}, Request{Image: imageName, UserData: []byte("#!/bin/sh\n"), Butane: []byte("variant: fcos\nversion: 1.5.0\n")}, inventory.ErrInvalid},
		{"bad butane", func() {}, Request{Image: imageName, Butane: []byte("variant: fcos\nversion: 9.9.9\n")}, inventory.ErrInvalid},
		{"bad label", func() {}, Request{Image: imageName, Labels: map[string]string{"a b": "c"}}, inventory.ErrInvalid},
		{"claimed by another", func() {
			if _, err := e.store.ClaimHost(ctx, inventory.ClaimRequest{Owner: "ns/m1"}); err != nil {
				t.Fatal(err)
			}
		}, Request{Image: imageName, Owner: "ns/other"}, inventory.ErrConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			before := e.host()
			_, err := e.p.Provision(ctx, hostID, tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if after := e.host(); after.Revision != before.Revision {
				t.Errorf("a refused request wrote the host (revision %d → %d)", before.Revision, after.Revision)
			}
		})
	}
	// The owner itself may provision, and asking twice is not an error.
	for range 2 {
		if _, err := e.p.Provision(ctx, hostID, Request{Image: imageName, Owner: "ns/m1"}); err != nil {
			t.Fatalf("owner's provision: %v", err)
		}
	}
	if n := len(e.transitions()); n != 1 {
		t.Errorf("%d transitions for one provisioning asked twice", n)
	}
}

func TestButaneRenderedAtRequest(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.setState(inventory.StateAvailable)
	bu := "variant: flatcar\nversion: 1.1.0\npasswd:\n  users:\n    - name: core\n      ssh_authorized_keys: [\"ssh-ed25519 AAAA test\"]\n"
	h, err := e.p.Provision(ctx, hostID, Request{Image: imageName, Butane: []byte(bu)})
	if err != nil {
		t.Fatal(err)
	}
	if h.Provision.Config != inventory.ConfigIgnition || h.Provision.CloudInit != inventory.CloudInitIgnition {
		t.Errorf("config kind = %q, cloud-init mode %q", h.Provision.Config, h.Provision.CloudInit)
	}
	d, err := e.store.ProvisionData(ctx, hostID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(d.Ignition), `"version":"3.4.0"`) || !strings.Contains(string(d.Ignition), "ssh-ed25519 AAAA test") {
		t.Errorf("ignition = %s", d.Ignition)
	}
}

func TestAgentAuthentication(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.p.Inspect(ctx, hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	old := e.boot()
	tok := e.boot() // a second script fetch: the first token is replaced
	hello := agentapi.Hello{MAC: hostMAC, BootID: "x", Facts: testFacts()}
	tests := []struct {
		name, token, src string
		want             int
	}{
		{"no token", "", hostIP, http.StatusUnauthorized},
		{"unknown token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", hostIP, http.StatusUnauthorized},
		{"previous boot's token", old, hostIP, http.StatusUnauthorized},
		{"another address", tok, otherIP, http.StatusForbidden},
		{"right token, right address", tok, hostIP, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.call(agentapi.PathHello, tc.token, tc.src, hello)
			if rec.Code != tc.want {
				t.Errorf("code = %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
		})
	}
	if !hasEvent(e.events(), EventRejected, otherIP) {
		t.Errorf("no agent.rejected event for %s:\n%s", otherIP, dumpEvents(e.events()))
	}
	// A hello naming a MAC that is not the host's is refused.
	if rec := e.call(agentapi.PathHello, tok, hostIP, agentapi.Hello{MAC: "52:54:00:00:00:01"}); rec.Code != http.StatusForbidden {
		t.Errorf("foreign MAC: %d, want 403", rec.Code)
	}
}

// TestAgentBoundAtIssue is issue 10's proxy-mode attack: a host with no reservation (no
// lease rackboot knows of) gets its agent token bound to the address of its own script
// fetch. Whoever else speaks first with the token is refused and binds nothing; the
// host's agent then works.
func TestAgentBoundAtIssue(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.UpdateHost(ctx, hostID, func(h *inventory.Host) error { h.IP = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Inspect(ctx, hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	tok := e.boot() // bound to hostIP
	hello := agentapi.Hello{MAC: hostMAC, BootID: "x", Facts: testFacts()}
	if code := e.call(agentapi.PathHello, tok, otherIP, hello).Code; code != http.StatusForbidden {
		t.Errorf("hello from another address first: %d, want 403", code)
	}
	if h := e.host(); h.Operation == nil || h.Operation.AgentIP != hostIP || h.State != inventory.StateInspecting {
		t.Errorf("after a stranger's hello: %+v, want the binding to %s unchanged", h.Operation, hostIP)
	}
	e.mustHello(tok)
	if code := e.call(agentapi.PathProgress, tok, otherIP, agentapi.Progress{Phase: agentapi.PhaseInspect}).Code; code != http.StatusForbidden {
		t.Errorf("progress from another address: %d, want 403", code)
	}
	if code := e.progress(tok, agentapi.Progress{Phase: agentapi.PhaseInspect}); code != http.StatusNoContent {
		t.Errorf("progress from the bound address: %d", code)
	}
	if !hasEvent(e.events(), EventRejected, otherIP) {
		t.Errorf("no agent.rejected event for %s:\n%s", otherIP, dumpEvents(e.events()))
	}
}

func TestReleaseStopsRunningAgent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.setState(inventory.StateAvailable)
	if _, err := e.p.Provision(ctx, hostID, Request{Image: imageName}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	tok := e.boot()
	e.mustHello(tok)
	if _, err := e.p.Release(ctx, hostID, ReleaseOptions{}); err != nil {
		t.Fatal(err)
	}
	// 409 is the answer that makes the agent stop writing (agentapi).
	if code := e.progress(tok, agentapi.Progress{Phase: agentapi.PhaseWrite, BytesDone: 1, BytesTotal: 2}); code != http.StatusConflict {
		t.Errorf("progress of a released host's agent: %d, want 409", code)
	}
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionProvision, OK: true}); code != http.StatusConflict {
		t.Errorf("result of a released host's agent: %d, want 409", code)
	}
	e.wantState(inventory.StateDeprovisioning, inventory.PhasePower)
}

func TestDiskBootTimeout(t *testing.T) {
	e := newEnv(t)
	provisionToDisk(t, e, Request{})
	e.clock.Advance(DefaultDiskBootTimeout)
	e.reconcile()
	h := e.wantState(inventory.StateFailed, "")
	if !strings.Contains(h.StateReason, "did not phone home") {
		t.Errorf("reason = %q", h.StateReason)
	}
}

func TestDiscoveredHostIsInspected(t *testing.T) {
	e := newEnv(t)
	e.setState(inventory.StateDiscovered)
	tok := e.boot() // the host PXE-booted on its own
	plan := e.mustHello(tok)
	if plan.Action != agentapi.ActionInspect {
		t.Fatalf("plan = %+v", plan)
	}
	e.wantState(inventory.StateInspecting, inventory.PhaseAgent)
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionInspect, OK: true}); code != http.StatusNoContent {
		t.Fatal(code)
	}
	// Discovery is not enrolment: inspected, it stays discovered until accepted
	// (TestDiscoveryIsNotEnrolment).
	e.wantState(inventory.StateDiscovered, "")
	if diff := cmp.Diff([]string{"enrolled→discovered", "discovered→inspecting", "inspecting→discovered"}[1:], e.transitions()); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
}

func TestPhoneHomeOutsideProvisioning(t *testing.T) {
	e := newEnv(t)
	if err := e.p.PhoneHome(context.Background(), hostID, map[string]string{"ip": hostIP}); err != nil {
		t.Fatal(err)
	}
	e.wantState(inventory.StateEnrolled, "")
	if !hasEvent(e.events(), EventPhoneHome, "ignored") {
		t.Errorf("phone-home not recorded as ignored:\n%s", dumpEvents(e.events()))
	}
}

func TestWatchWakesOnTransition(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rev := e.host().Revision
	got := make(chan inventory.Host, 1)
	go func() {
		h, err := e.p.Watch(ctx, hostID, rev)
		if err != nil {
			t.Error(err)
		}
		got <- h
	}()
	if _, err := e.p.Inspect(ctx, hostID, Options{}); err != nil {
		t.Fatal(err)
	}
	h := <-got
	if h.Revision <= rev || h.State != inventory.StateInspecting {
		t.Errorf("watch returned revision %d state %s", h.Revision, h.State)
	}
	// A cancelled watch returns the host as it is.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if h, err := e.p.Watch(cctx, hostID, h.Revision); !errors.Is(err, context.Canceled) || h.ID != hostID {
		t.Errorf("cancelled watch = %v, %v", h.ID, err)
	}
}

func TestSeedURLEscapesNothing(t *testing.T) {
	// The seed URL is written into a YAML file by the agent: the plan must pass
	// agentapi's checks, which refuse characters YAML would need quoted.
	e := newEnv(t)
	_, plan := provisionToDisk(t, e, Request{})
	u, err := url.Parse(plan.Provision.CloudInit.SeedURL)
	if err != nil || !strings.HasSuffix(u.Path, "/") {
		t.Fatalf("seed URL %q", plan.Provision.CloudInit.SeedURL)
	}
	if err := plan.Validate(); err != nil {
		t.Error(err)
	}
}

func TestNoAgentRefusesOperations(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.cfg.NoAgent = "no boot environment: run rackboot bootenv import"
	p, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.setState(inventory.StateAvailable)
	if _, err := p.Inspect(ctx, hostID, Options{}); !errors.Is(err, inventory.ErrConflict) || !strings.Contains(err.Error(), "bootenv import") {
		t.Errorf("Inspect = %v", err)
	}
	if _, err := p.Provision(ctx, hostID, Request{Image: imageName}); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("Provision = %v", err)
	}
	if _, err := p.Release(ctx, hostID, ReleaseOptions{}); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("Release = %v", err)
	}
	e.wantState(inventory.StateAvailable, "")
}

func TestStatusOf(t *testing.T) {
	e := newEnv(t)
	provisionToDisk(t, e, Request{Owner: ""})
	s := StatusOf(e.host())
	want := Status{State: inventory.StateProvisioning, Busy: true, Image: imageName, Phase: inventory.PhaseDiskBoot,
		Addresses: []string{hostIP}, Hostname: hostID, Reason: "provisioning image " + imageName}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("StatusOf (-want +got):\n%s", diff)
	}
	if err := e.p.PhoneHome(context.Background(), hostID, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if s := StatusOf(e.host()); !s.Provisioned || s.Busy || s.Failed {
		t.Errorf("after phone-home: %+v", s)
	}
}

func TestOwnerProvisionIsIdempotent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.setState(inventory.StateAvailable)
	if _, err := e.store.ClaimHost(ctx, inventory.ClaimRequest{Owner: "ns/m1"}); err != nil {
		t.Fatal(err)
	}
	req := Request{Image: imageName, Owner: "ns/m1"}
	if _, err := e.p.Provision(ctx, hostID, req); err != nil {
		t.Fatal(err)
	}
	_, _, err := e.store.TransitionHost(ctx, hostID, func(h *inventory.Host, c *inventory.HostChange) error {
		h.State, h.Operation = inventory.StateProvisioned, nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Provision(ctx, hostID, req); err != nil {
		t.Errorf("the owner provisioning its provisioned host again = %v", err)
	}
	if _, err := e.p.Provision(ctx, hostID, Request{Image: imageName}); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("someone else = %v, want ErrConflict", err)
	}
	if _, err := e.p.Release(ctx, hostID, ReleaseOptions{}); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("release by someone else = %v, want ErrConflict", err)
	}
	if _, err := e.p.Release(ctx, hostID, ReleaseOptions{Owner: "ns/m1"}); err != nil {
		t.Errorf("release by the owner = %v", err)
	}
}

// TestDiskBootPowersOnAHostLeftOff covers an agent whose reboot ended as a power-off:
// after the grace, rackboot powers the host on so it boots its disk; a host that is on
// is left alone.
func TestDiskBootPowersOnAHostLeftOff(t *testing.T) {
	e := newEnv(t)
	provisionToDisk(t, e, Request{})
	e.reconcile() // boot device: disk
	e.bmc.take()
	e.reconcile() // within the grace: nothing
	if calls := e.bmc.take(); len(calls) != 0 {
		t.Errorf("BMC calls within the grace: %v", calls)
	}
	e.clock.Advance(DefaultRebootGrace)
	e.reconcile() // on: only a status read
	if diff := cmp.Diff([]string{hostID + " status"}, e.bmc.take()); diff != "" {
		t.Errorf("BMC calls (-want +got):\n%s", diff)
	}
	e.bmc.setState(bmc.PowerOff)
	e.clock.Advance(DefaultRebootGrace)
	e.reconcile()
	if diff := cmp.Diff([]string{hostID + " status", hostID + " power on"}, e.bmc.take()); diff != "" {
		t.Errorf("BMC calls (-want +got):\n%s", diff)
	}
	if !hasEvent(e.events(), EventDiskBoot, "powering it on") {
		t.Errorf("no event for the power-on:\n%s", dumpEvents(e.events()))
	}
	e.wantState(inventory.StateProvisioning, inventory.PhaseDiskBoot)
}

// TestProvisionConvertedImage: for an image converted on the server (qcow2 → zstd
// raw), the plan carries the served file's sha256 and format, the host's request keeps
// the operator's sum as the image's identity, and the agent's report is checked
// against the file it was sent.
func TestProvisionConvertedImage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	served := strings.Repeat("5e", 32)
	const name = "from-qcow2"
	if _, err := e.store.CreateImage(ctx, inventory.Image{Name: name, Source: "upload", SHA256: imageSum, SourceFormat: inventory.FormatQcow2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UpdateImage(ctx, name, func(im *inventory.Image) error {
		im.Status, im.Format, im.ServedSHA256, im.Size, im.DiskSize = inventory.ImageReady, inventory.FormatZstd, served, 1<<20, 4<<20
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.setState(inventory.StateAvailable)
	if _, err := e.p.Provision(ctx, hostID, Request{Image: name}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	e.bmc.take()
	tok := e.boot()
	plan := e.mustHello(tok)
	if pv := plan.Provision; pv == nil || pv.SHA256 != served || pv.Format != agentapi.FormatZstd || pv.Size != 1<<20 {
		t.Fatalf("plan = %+v", plan.Provision)
	}
	h := e.wantState(inventory.StateProvisioning, inventory.PhaseAgent)
	if h.Provision.ImageSHA256 != imageSum || h.Provision.PlanSHA256 != served {
		t.Errorf("provision record: image sha256 %s, plan sha256 %s", h.Provision.ImageSHA256, h.Provision.PlanSHA256)
	}
	if code := e.result(tok, agentapi.Result{Action: agentapi.ActionProvision, OK: true, Phase: agentapi.PhaseDone,
		RootDisk: "vda", ImageSHA256: served, BytesWritten: 4 << 20, Next: "reboot"}); code != http.StatusNoContent {
		t.Fatalf("result: %d", code)
	}
	h = e.wantState(inventory.StateProvisioning, inventory.PhaseDiskBoot)
	if h.Provision.WrittenSHA256 != served {
		t.Errorf("written sha256 = %s, want the served file's %s", h.Provision.WrittenSHA256, served)
	}
}
