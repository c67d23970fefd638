package bmcsim_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"

	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/rackboot/rackboot/internal/lab"
	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// rfResponse is a decoded response: status, headers, JSON body.
type rfResponse struct {
	status int
	header http.Header
	body   map[string]any
}

// errorID returns the MessageId of a Redfish error body's first extended message, after
// checking the body has the shape DSP0266 requires.
func (r rfResponse) errorID(t *testing.T) string {
	t.Helper()
	e, ok := r.body["error"].(map[string]any)
	if !ok {
		t.Fatalf("status %d without a Redfish error body: %v", r.status, r.body)
	}
	info, ok := e["@Message.ExtendedInfo"].([]any)
	if !ok || len(info) == 0 {
		t.Fatalf("error body without @Message.ExtendedInfo: %v", e)
	}
	m := info[0].(map[string]any)
	if e["code"] != m["MessageId"] || m["Message"] == "" || m["Resolution"] == "" || m["MessageSeverity"] == "" {
		t.Errorf("malformed error body: %v", e)
	}
	return m["MessageId"].(string)
}

type rfReq struct {
	method, path, body string
	header             map[string]string
	auth               string // "basic" (default), "none", "wrong", or "token:TOKEN"
}

func do(t *testing.T, base string, rq rfReq) rfResponse {
	t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	method := rq.method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(t.Context(), method, base+rq.path, body)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case rq.auth == "" || rq.auth == "basic":
		req.SetBasicAuth(rfUser, rfPass)
	case rq.auth == "wrong":
		req.SetBasicAuth(rfUser, "wrong")
	case strings.HasPrefix(rq.auth, "token:"):
		req.Header.Set("X-Auth-Token", strings.TrimPrefix(rq.auth, "token:"))
	}
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	if rq.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := rfResponse{status: resp.StatusCode, header: resp.Header}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v\n%s", method, rq.path, err, b)
		}
	}
	return r
}

// TestRedfishErrors checks status codes and Base message ids of what a client can get
// wrong, and that nothing beyond the service root answers without credentials.
func TestRedfishErrors(t *testing.T) {
	m := newFakeMachine()
	_, ts := newRedfish(t, map[string]*fakeMachine{"vm1": m})
	const sys = "/redfish/v1/Systems/vm1"
	const reset = sys + "/Actions/ComputerSystem.Reset"
	for _, tc := range []struct {
		name   string
		req    rfReq
		status int
		id     string
	}{
		{"no credentials", rfReq{path: sys, auth: "none"}, 401, "Base.1.16.0.NoValidSession"},
		{"wrong password", rfReq{path: sys, auth: "wrong"}, 401, "Base.1.16.0.NoValidSession"},
		{"unknown token", rfReq{path: sys, auth: "token:deadbeef"}, 401, "Base.1.16.0.NoValidSession"},
		{"unknown path needs auth first", rfReq{path: "/redfish/v1/Nope", auth: "none"}, 401, "Base.1.16.0.NoValidSession"},
		{"login wrong password", rfReq{method: "POST", path: "/redfish/v1/SessionService/Sessions", auth: "none", body: `{"UserName":"admin","Password":"nope"}`}, 401, "Base.1.16.0.AccessDenied"},
		{"login missing password", rfReq{method: "POST", path: "/redfish/v1/SessionService/Sessions", auth: "none", body: `{"UserName":"admin"}`}, 400, "Base.1.16.0.PropertyMissing"},
		{"unknown system", rfReq{path: "/redfish/v1/Systems/vm9"}, 404, "Base.1.16.0.ResourceNotFound"},
		{"unknown path", rfReq{path: "/redfish/v1/Nope"}, 404, "Base.1.16.0.InvalidURI"},
		{"unknown session", rfReq{path: "/redfish/v1/SessionService/Sessions/42"}, 404, "Base.1.16.0.ResourceNotFound"},
		{"DELETE system", rfReq{method: "DELETE", path: sys}, 405, "Base.1.16.0.OperationNotAllowed"},
		{"POST systems", rfReq{method: "POST", path: "/redfish/v1/Systems", body: `{}`}, 405, "Base.1.16.0.OperationNotAllowed"},
		{"GET reset action", rfReq{path: reset}, 405, "Base.1.16.0.OperationNotAllowed"},
		{"PATCH service root", rfReq{method: "PATCH", path: "/redfish/v1/", body: `{}`}, 405, "Base.1.16.0.OperationNotAllowed"},
		{"reset bad type", rfReq{method: "POST", path: reset, body: `{"ResetType":"Nmi"}`}, 400, "Base.1.16.0.ActionParameterValueNotInList"},
		{"reset no type", rfReq{method: "POST", path: reset, body: `{}`}, 400, "Base.1.16.0.ActionParameterMissing"},
		{"reset number", rfReq{method: "POST", path: reset, body: `{"ResetType":1}`}, 400, "Base.1.16.0.ActionParameterValueTypeError"},
		{"reset extra param", rfReq{method: "POST", path: reset, body: `{"ResetType":"On","Delay":5}`}, 400, "Base.1.16.0.ActionParameterUnknown"},
		{"reset bad JSON", rfReq{method: "POST", path: reset, body: `{"ResetType":`}, 400, "Base.1.16.0.MalformedJSON"},
		{"unknown action", rfReq{method: "POST", path: sys + "/Actions/ComputerSystem.Explode", body: `{}`}, 400, "Base.1.16.0.ActionNotSupported"},
		{"boot target not in list", rfReq{method: "PATCH", path: sys, body: `{"Boot":{"BootSourceOverrideTarget":"Cd"}}`}, 400, "Base.1.16.0.PropertyValueNotInList"},
		{"boot enabled not in list", rfReq{method: "PATCH", path: sys, body: `{"Boot":{"BootSourceOverrideEnabled":"Always"}}`}, 400, "Base.1.16.0.PropertyValueNotInList"},
		{"boot mode type", rfReq{method: "PATCH", path: sys, body: `{"Boot":{"BootSourceOverrideMode":true}}`}, 400, "Base.1.16.0.PropertyValueTypeError"},
		{"boot unknown property", rfReq{method: "PATCH", path: sys, body: `{"Boot":{"BootOrder":["Pxe"]}}`}, 400, "Base.1.16.0.PropertyUnknown"},
		{"read-only property", rfReq{method: "PATCH", path: sys, body: `{"PowerState":"On"}`}, 400, "Base.1.16.0.PropertyNotWritable"},
		{"unknown property", rfReq{method: "PATCH", path: sys, body: `{"Colour":"blue"}`}, 400, "Base.1.16.0.PropertyUnknown"},
		{"empty PATCH", rfReq{method: "PATCH", path: sys, body: `{}`}, 400, "Base.1.16.0.EmptyJSON"},
		{"stale ETag", rfReq{method: "PATCH", path: sys, body: `{"Boot":{"BootSourceOverrideTarget":"Pxe"}}`, header: map[string]string{"If-Match": `"0000"`}}, 412, "Base.1.16.0.PreconditionFailed"},
		{"expand query", rfReq{path: "/redfish/v1/Systems?$expand=*"}, 501, "Base.1.16.0.QueryNotSupported"},
		{"huge body", rfReq{method: "PATCH", path: sys, body: `{"Boot":{"BootSourceOverrideTarget":"` + strings.Repeat("x", 70<<10) + `"}}`}, 413, "Base.1.16.0.PayloadTooLarge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, ts.URL, tc.req)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %v", r.status, tc.status, r.body)
			}
			if got := r.errorID(t); got != tc.id {
				t.Errorf("MessageId %q, want %q", got, tc.id)
			}
			if r.status == 401 && tc.req.method != "POST" && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if r.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	if _, _, ops := m.snapshot(); len(ops) != 0 {
		t.Errorf("rejected requests reached the machine: %v", ops)
	}
	if _, b, _ := m.snapshot(); b.Target != bmcsim.BootNone {
		t.Errorf("rejected PATCHes changed the boot override: %+v", b)
	}
}

// TestRedfishPublicResources: the service root and OData documents answer without
// credentials (DSP0266) and lead a client to everything else.
func TestRedfishPublicResources(t *testing.T) {
	_, ts := newRedfish(t, map[string]*fakeMachine{"vm1": newFakeMachine()})
	root := do(t, ts.URL, rfReq{path: "/redfish/v1/", auth: "none"})
	if root.status != 200 || root.header.Get("OData-Version") != "4.0" || root.header.Get("ETag") == "" {
		t.Fatalf("service root: %d %v", root.status, root.header)
	}
	got := map[string]any{}
	for _, k := range []string{"@odata.id", "@odata.type", "RedfishVersion", "Systems", "SessionService", "Links", "Managers", "Chassis"} {
		got[k] = root.body[k]
	}
	want := map[string]any{
		"@odata.id":      "/redfish/v1/",
		"@odata.type":    "#ServiceRoot.v1_15_0.ServiceRoot",
		"RedfishVersion": "1.16.0",
		"Systems":        map[string]any{"@odata.id": "/redfish/v1/Systems"},
		"SessionService": map[string]any{"@odata.id": "/redfish/v1/SessionService"},
		"Managers":       map[string]any{"@odata.id": "/redfish/v1/Managers"},
		"Chassis":        map[string]any{"@odata.id": "/redfish/v1/Chassis"},
		"Links":          map[string]any{"Sessions": map[string]any{"@odata.id": "/redfish/v1/SessionService/Sessions"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("service root (-want +got):\n%s", diff)
	}
	if r := do(t, ts.URL, rfReq{path: "/redfish", auth: "none"}); r.status != 200 || r.body["v1"] != "/redfish/v1/" {
		t.Errorf("/redfish = %d %v", r.status, r.body)
	}
	if r := do(t, ts.URL, rfReq{path: "/redfish/v1/odata", auth: "none"}); r.status != 200 || r.body["value"] == nil {
		t.Errorf("/redfish/v1/odata = %d %v", r.status, r.body)
	}
	if r := do(t, ts.URL, rfReq{path: "/redfish/v1/$metadata", auth: "none"}); r.status != 200 || r.header.Get("Content-Type") != "application/xml" {
		t.Errorf("$metadata = %d %v", r.status, r.header)
	}
	// Every link reachable from the root resolves with credentials.
	for _, p := range []string{"/redfish/v1/Systems", "/redfish/v1/Systems/vm1", "/redfish/v1/Chassis", "/redfish/v1/Chassis/vm1", "/redfish/v1/Managers", "/redfish/v1/Managers/bmc", "/redfish/v1/SessionService", "/redfish/v1/SessionService/Sessions"} {
		if r := do(t, ts.URL, rfReq{path: p}); r.status != 200 || r.body["@odata.id"] != p || r.body["@odata.type"] == nil {
			t.Errorf("GET %s = %d, @odata.id %v", p, r.status, r.body["@odata.id"])
		}
	}
}

// TestRedfishSystemBootAndReset: the ComputerSystem as clients read it, PATCH semantics
// of Boot (with ETag), and each ResetType's power operation.
func TestRedfishSystemBootAndReset(t *testing.T) {
	m := newFakeMachine()
	_, ts := newRedfish(t, map[string]*fakeMachine{"vm1": m, "vm2": newFakeMachine()})
	const sys = "/redfish/v1/Systems/vm1"
	r := do(t, ts.URL, rfReq{path: "/redfish/v1/Systems"})
	if diff := cmp.Diff([]any{map[string]any{"@odata.id": sys}, map[string]any{"@odata.id": "/redfish/v1/Systems/vm2"}}, r.body["Members"]); diff != "" {
		t.Errorf("Systems members (-want +got):\n%s", diff)
	}
	r = do(t, ts.URL, rfReq{path: sys})
	wantBoot := map[string]any{
		"BootSourceOverrideEnabled":                         "Disabled",
		"BootSourceOverrideEnabled@Redfish.AllowableValues": []any{"Disabled", "Once", "Continuous"},
		"BootSourceOverrideTarget":                          "None",
		"BootSourceOverrideTarget@Redfish.AllowableValues":  []any{"None", "Pxe", "Hdd"},
		"BootSourceOverrideMode":                            "UEFI",
		"BootSourceOverrideMode@Redfish.AllowableValues":    []any{"Legacy", "UEFI"},
	}
	if diff := cmp.Diff(wantBoot, r.body["Boot"]); diff != "" {
		t.Errorf("Boot (-want +got):\n%s", diff)
	}
	wantActions := map[string]any{"#ComputerSystem.Reset": map[string]any{
		"target":                            sys + "/Actions/ComputerSystem.Reset",
		"ResetType@Redfish.AllowableValues": []any{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle"},
	}}
	if diff := cmp.Diff(wantActions, r.body["Actions"]); diff != "" {
		t.Errorf("Actions (-want +got):\n%s", diff)
	}
	if r.body["PowerState"] != "Off" || r.body["Id"] != "vm1" || r.body["@odata.type"] != "#ComputerSystem.v1_20_0.ComputerSystem" {
		t.Errorf("system: %v", r.body)
	}

	// PATCH sequences: body → stored override.
	etag := r.header.Get("ETag")
	for _, tc := range []struct {
		body string
		want bmcsim.BootOverride
	}{
		// A target alone, with no override set, is Once (as common BMCs do).
		{`{"Boot":{"BootSourceOverrideTarget":"Pxe"}}`, bmcsim.BootOverride{Target: "pxe", Persistence: "once", Mode: "uefi"}},
		{`{"Boot":{"BootSourceOverrideTarget":"Hdd","BootSourceOverrideEnabled":"Continuous","BootSourceOverrideMode":"Legacy"}}`, bmcsim.BootOverride{Target: "disk", Persistence: "persistent", Mode: "legacy"}},
		// A target alone keeps Continuous once set.
		{`{"Boot":{"BootSourceOverrideTarget":"Pxe"}}`, bmcsim.BootOverride{Target: "pxe", Persistence: "persistent", Mode: "legacy"}},
		{`{"Boot":{"BootSourceOverrideEnabled":"Disabled"}}`, bmcsim.BootOverride{Target: "none", Persistence: "persistent", Mode: "legacy"}},
		{`{"Boot":{"BootSourceOverrideTarget":"Hdd","BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI"},"@odata.etag":"x"}`, bmcsim.BootOverride{Target: "disk", Persistence: "once", Mode: "uefi"}},
	} {
		r := do(t, ts.URL, rfReq{method: "PATCH", path: sys, body: tc.body, header: map[string]string{"If-Match": etag}})
		if r.status != 200 {
			t.Fatalf("PATCH %s: %d %v", tc.body, r.status, r.body)
		}
		if _, got, _ := m.snapshot(); got != tc.want {
			t.Errorf("after PATCH %s: %+v, want %+v", tc.body, got, tc.want)
		}
		if r.header.Get("ETag") == etag {
			t.Errorf("ETag unchanged after PATCH %s", tc.body)
		}
		etag = r.header.Get("ETag")
	}
	// The representation matches the ETag a GET returns.
	if g := do(t, ts.URL, rfReq{path: sys}); g.header.Get("ETag") != etag {
		t.Errorf("GET ETag %q, PATCH response ETag %q", g.header.Get("ETag"), etag)
	}

	for _, tc := range []struct {
		resetType string
		op        bmcsim.PowerOp
		state     string
	}{
		{"On", bmcsim.OpOn, "On"},
		{"GracefulShutdown", bmcsim.OpSoft, "Off"},
		{"PowerCycle", bmcsim.OpCycle, "On"},
		{"ForceRestart", bmcsim.OpReset, "On"},
		{"ForceOff", bmcsim.OpOff, "Off"},
	} {
		r := do(t, ts.URL, rfReq{method: "POST", path: sys + "/Actions/ComputerSystem.Reset", body: `{"ResetType":"` + tc.resetType + `"}`})
		if r.status != 204 {
			t.Fatalf("Reset %s: %d %v", tc.resetType, r.status, r.body)
		}
		_, _, ops := m.snapshot()
		if ops[len(ops)-1] != tc.op {
			t.Errorf("Reset %s ran %q, want %q", tc.resetType, ops[len(ops)-1], tc.op)
		}
		if g := do(t, ts.URL, rfReq{path: sys}); g.body["PowerState"] != tc.state {
			t.Errorf("after %s PowerState %v, want %s", tc.resetType, g.body["PowerState"], tc.state)
		}
	}
	// A failing machine is a 500 with the cause, not a silent success.
	m.mu.Lock()
	m.fail = errors.New("QEMU exited while starting: no such tap")
	m.mu.Unlock()
	r = do(t, ts.URL, rfReq{method: "POST", path: sys + "/Actions/ComputerSystem.Reset", body: `{"ResetType":"On"}`})
	if r.status != 500 || r.errorID(t) != "Base.1.16.0.InternalError" || !strings.Contains(r.body["error"].(map[string]any)["message"].(string), "no such tap") {
		t.Errorf("failing reset: %d %v", r.status, r.body)
	}
}

// TestRedfishSessions: login, use of the token, listing, logout.
func TestRedfishSessions(t *testing.T) {
	_, ts := newRedfish(t, map[string]*fakeMachine{"vm1": newFakeMachine()})
	login := do(t, ts.URL, rfReq{method: "POST", path: "/redfish/v1/SessionService/Sessions", auth: "none", body: `{"UserName":"admin","Password":"correct horse"}`})
	if login.status != 201 {
		t.Fatalf("login: %d %v", login.status, login.body)
	}
	token, loc := login.header.Get("X-Auth-Token"), login.header.Get("Location")
	if token == "" || loc != "/redfish/v1/SessionService/Sessions/1" || login.body["@odata.id"] != loc || login.body["Password"] != nil {
		t.Fatalf("login headers %v body %v", login.header, login.body)
	}
	if strings.Contains(login.header.Get("X-Auth-Token"), rfPass) {
		t.Fatal("token contains the password")
	}
	auth := "token:" + token
	if r := do(t, ts.URL, rfReq{path: "/redfish/v1/Systems/vm1", auth: auth}); r.status != 200 {
		t.Errorf("GET with token: %d", r.status)
	}
	if r := do(t, ts.URL, rfReq{path: "/redfish/v1/SessionService/Sessions", auth: auth}); r.body["Members@odata.count"] != 1.0 {
		t.Errorf("sessions: %v", r.body)
	}
	if r := do(t, ts.URL, rfReq{path: loc, auth: auth}); r.status != 200 || r.body["UserName"] != "admin" {
		t.Errorf("GET own session: %d %v", r.status, r.body)
	}
	if r := do(t, ts.URL, rfReq{method: "DELETE", path: loc, auth: auth}); r.status != 204 {
		t.Errorf("logout: %d %v", r.status, r.body)
	}
	if r := do(t, ts.URL, rfReq{path: "/redfish/v1/Systems/vm1", auth: auth}); r.status != 401 || r.errorID(t) != "Base.1.16.0.NoValidSession" {
		t.Errorf("token after logout: %d %v", r.status, r.body)
	}
}

// newBmclib returns a bmclib client restricted to the gofish (Redfish) provider for the
// emulator at base (http://127.0.0.1:PORT).
func newBmclib(t *testing.T, base, pass string, opts ...bmclib.Option) *bmclib.Client {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	cl := bmclib.NewClient(u.Scheme+"://"+u.Hostname(), rfUser, pass, append([]bmclib.Option{bmclib.WithRedfishPort(u.Port())}, opts...)...)
	cl.Registry.Drivers = cl.Registry.For("gofish")
	return cl
}

// TestRedfishBmclib drives the emulator with bmclib v2.3.5's gofish provider, with
// session and with basic auth: power status/on/off/soft/cycle/reset, boot device.
func TestRedfishBmclib(t *testing.T) {
	for _, basic := range []bool{false, true} {
		t.Run(map[bool]string{false: "session", true: "basic"}[basic], func(t *testing.T) {
			m := newFakeMachine()
			srv, ts := newRedfish(t, map[string]*fakeMachine{"vm1": m})
			ctx := t.Context()
			cl := newBmclib(t, ts.URL, rfPass, bmclib.WithRedfishUseBasicAuth(basic))
			if err := cl.Open(ctx); err != nil {
				t.Fatal(err)
			}
			sessions := func() float64 {
				r := do(t, ts.URL, rfReq{path: "/redfish/v1/SessionService/Sessions"})
				return r.body["Members@odata.count"].(float64)
			}
			if want := map[bool]float64{false: 1, true: 0}[basic]; sessions() != want {
				t.Errorf("%v sessions after Open, want %v", sessions(), want)
			}
			state := func(want string) {
				t.Helper()
				st, err := cl.GetPowerState(ctx)
				if err != nil || st != want {
					t.Fatalf("GetPowerState = %q, %v; want %q", st, err, want)
				}
			}
			set := func(action string) {
				t.Helper()
				if _, err := cl.SetPowerState(ctx, action); err != nil {
					t.Fatalf("SetPowerState(%s): %v", action, err)
				}
			}
			state("Off")
			if _, err := cl.SetBootDevice(ctx, "pxe", false, true); err != nil {
				t.Fatal(err)
			}
			if _, b, _ := m.snapshot(); b != (bmcsim.BootOverride{Target: "pxe", Persistence: "once", Mode: "uefi"}) {
				t.Errorf("after SetBootDevice(pxe, once, efi): %+v", b)
			}
			set("on")
			state("On")
			set("cycle") // ForceRestart
			set("reset") // PowerCycle
			// GracefulShutdown. bmclib v2.3.5 reports soft off as not ok (it cannot know
			// whether the guest obeys), which its client turns into an error.
			if _, err := cl.SetPowerState(ctx, "soft"); err == nil || !strings.Contains(err.Error(), "failed to set power state") {
				t.Errorf("SetPowerState(soft) = %v; bmclib v2.3.5 is expected to report soft off as unconfirmed", err)
			}
			set("on")  // On
			set("off") // ForceOff
			set("off") // already off: bmclib skips the action
			state("Off")
			_, _, ops := m.snapshot()
			if diff := cmp.Diff([]bmcsim.PowerOp{"on", "reset", "cycle", "soft", "on", "off"}, ops); diff != "" {
				t.Errorf("power operations (-want +got):\n%s", diff)
			}
			if _, err := cl.SetBootDevice(ctx, "disk", true, false); err != nil {
				t.Fatal(err)
			}
			o, err := cl.GetBootDeviceOverride(ctx)
			if err != nil || o.Device != "disk" || !o.IsPersistent || o.IsEFIBoot {
				t.Errorf("GetBootDeviceOverride = %+v, %v; want disk, persistent, legacy", o, err)
			}
			if err := cl.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if sessions() != 0 {
				t.Error("bmclib Close left its session open")
			}
			_ = srv
		})
	}
}

// TestRedfishBmclibWrongPassword: bmclib fails to open, and the server's answer is a 401
// with a Redfish error body.
func TestRedfishBmclibWrongPassword(t *testing.T) {
	m := newFakeMachine()
	_, ts := newRedfish(t, map[string]*fakeMachine{"vm1": m})
	for _, basic := range []bool{false, true} {
		cl := newBmclib(t, ts.URL, "wrong", bmclib.WithRedfishUseBasicAuth(basic))
		err := cl.Open(t.Context())
		if basic && err == nil {
			// With basic auth gofish does not log in; the first request is refused.
			_, err = cl.GetPowerState(t.Context())
		}
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("basic=%v: bmclib with a wrong password: %v, want a 401 error", basic, err)
		}
	}
	r := do(t, ts.URL, rfReq{method: "POST", path: "/redfish/v1/SessionService/Sessions", auth: "none", body: `{"UserName":"admin","Password":"wrong"}`})
	if r.status != 401 || r.errorID(t) != "Base.1.16.0.AccessDenied" {
		t.Errorf("login with a wrong password: %d %v", r.status, r.body)
	}
	if _, _, ops := m.snapshot(); len(ops) != 0 {
		t.Errorf("machine saw %v", ops)
	}
}

// TestRedfishTLS: with a certificate, Start serves https; a client trusting that
// certificate (and bmclib with its default insecure TLS) works.
func TestRedfishTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := writeSelfSigned(t, certFile, keyFile)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bmcsim.NewRedfishServer(bmcsim.RedfishConfig{
		Systems:  map[string]bmcsim.Machine{"vm1": newFakeMachine()},
		Username: rfUser, Password: rfPass, TLSCertFile: certFile, TLSKeyFile: keyFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	base := "https://" + l.Addr().String()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	lab.WaitFor(t, 10*time.Second, "https Redfish", lab.HTTPStatus(hc, base+"/redfish/v1/", 200))
	cl := newBmclib(t, base, rfPass)
	if err := cl.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st, err := cl.GetPowerState(t.Context()); err != nil || st != "Off" {
		t.Errorf("over https: %q, %v", st, err)
	}
	cl.Close(t.Context())
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
}

func writeSelfSigned(t *testing.T, certFile, keyFile string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lab bmc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// sushyScript drives the emulator the way OpenStack Ironic's Redfish driver does, with
// Debian's python3-sushy, and prints what it saw as JSON.
const sushyScript = `
import json, sys
import sushy
from sushy import exceptions

url, user, password = sys.argv[1:4]
out = {}
s = sushy.Sushy(url, username=user, password=password, verify=False)
system = s.get_system()
out["identity"] = system.identity
out["power"] = system.power_state.value
out["reset_types"] = sorted(v.value for v in system.get_allowed_reset_system_values())
out["boot_targets"] = sorted(v.value for v in system.get_allowed_system_boot_source_values())
system.set_system_boot_options(sushy.BootSource.PXE,
                               enabled=sushy.BootSourceOverrideEnabled.CONTINUOUS,
                               mode=sushy.BootSourceOverrideMode.UEFI)
system.refresh()
out["boot"] = [system.boot.target.value, system.boot.enabled.value, system.boot.mode.value]
system.reset_system(sushy.ResetType.ON)
system.refresh()
out["power_after_on"] = system.power_state.value
system.reset_system(sushy.ResetType.FORCE_OFF)
system.refresh()
out["power_after_force_off"] = system.power_state.value
out["sessions"] = len(s.get_session_service().sessions.get_members())
try:
    bad = sushy.Sushy(url, username=user, password="wrong", verify=False)
    bad.get_system()
    out["wrong_password"] = "accepted"
except exceptions.AccessError as e:
    out["wrong_password"] = [e.status_code, e.code]
print(json.dumps(out))
`

// TestRedfishSushy: a stock Redfish client from Debian (python3-sushy, Ironic's library)
// reads the system, sets a boot override and resets it, with session auth.
func TestRedfishSushy(t *testing.T) {
	python := "/usr/bin/python3" // Debian's, where python3-sushy lives (not a pyenv shim)
	if out, err := exec.Command(python, "-c", "import sushy").CombinedOutput(); err != nil {
		msg := "python3-sushy is not installed (apt-get install python3-sushy): " + strings.TrimSpace(string(out))
		if os.Getenv(lab.RequireEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	m := newFakeMachine()
	_, ts := newRedfish(t, map[string]*fakeMachine{"vm1": m})
	cmd := exec.CommandContext(t.Context(), python, "-c", sushyScript, ts.URL, rfUser, rfPass)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sushy: %v\n%s", err, stderr.String())
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("sushy output %q: %v", out, err)
	}
	want := map[string]any{
		"identity":              "vm1",
		"power":                 "Off",
		"reset_types":           []any{"ForceOff", "ForceRestart", "GracefulShutdown", "On", "PowerCycle"},
		"boot_targets":          []any{"Hdd", "None", "Pxe"},
		"boot":                  []any{"Pxe", "Continuous", "UEFI"},
		"power_after_on":        "On",
		"power_after_force_off": "Off",
		"sessions":              1.0,
		"wrong_password":        []any{401.0, "Base.1.16.0.NoValidSession"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sushy saw (-want +got):\n%s\nstderr:\n%s", diff, stderr.String())
	}
	if _, b, ops := m.snapshot(); b.Target != bmcsim.BootPXE || b.Persistence != bmcsim.BootPersistent || !cmp.Equal(ops, []bmcsim.PowerOp{"on", "off"}) {
		t.Errorf("machine after sushy: boot %+v, ops %v", b, ops)
	}
}
