package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/metadata"
)

const flatcarButane = "variant: flatcar\nversion: 1.1.0\npasswd:\n  users:\n    - name: core\n      ssh_authorized_keys: [\"ssh-ed25519 AAAA ignition-test\"]\n"

// ignitionConfigOf parses the config a plan carries.
func ignitionConfigOf(t *testing.T, plan agentapi.Plan) map[string]any {
	t.Helper()
	if plan.Provision.Ignition == nil {
		t.Fatalf("plan has no Ignition config: %+v", plan.Provision)
	}
	var doc map[string]any
	if err := json.Unmarshal(plan.Provision.Ignition.Config, &doc); err != nil {
		t.Fatalf("the plan's Ignition config is not JSON: %v\n%s", err, plan.Provision.Ignition.Config)
	}
	return doc
}

// phoneHomeURL finds the URL in the unit's ExecStart, inside a JSON string.
var phoneHomeURL = regexp.MustCompile(`-X POST (http://[^\s\\"]+/phonehome)`)

// TestIgnitionPlan provisions with Butane, Ignition or nothing in mode ignition, and
// checks the plan the agent gets: mode ignition, no seed URL, and the config the
// metadata handler would serve this host at .../ignition, byte for byte, whose
// phone-home unit then makes the host provisioned.
func TestIgnitionPlan(t *testing.T) {
	ignitionJSON := `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/hostname","contents":{"source":"data:,node-1"}}]}}`
	for _, tc := range []struct {
		name    string
		req     Request
		def     agentapi.CloudInitMode
		version string
		has     string
	}{
		{"Butane", Request{Butane: []byte(flatcarButane)}, "", "3.4.0", "ignition-test"},
		{"Butane with cidata as the server default", Request{Butane: []byte(flatcarButane)}, agentapi.CloudInitCIData, "3.4.0", "ignition-test"},
		{"Ignition", Request{Ignition: []byte(ignitionJSON)}, "", "3.4.0", "data:,node-1"},
		{"mode ignition and no config", Request{CloudInit: agentapi.CloudInitIgnition}, "", "3.3.0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.def != "" {
				e.reconfigure(func(c *Config) { c.CloudInit = tc.def })
			}
			_, plan := provisionToDisk(t, e, tc.req)
			pv := plan.Provision
			if pv.CloudInit.Mode != agentapi.CloudInitIgnition || pv.CloudInit.SeedURL != "" {
				t.Errorf("cloudInit = %+v, want mode ignition without a seed URL", pv.CloudInit)
			}
			if err := plan.Validate(); err != nil {
				t.Error(err)
			}
			doc := ignitionConfigOf(t, plan)
			if v := doc["ignition"].(map[string]any)["version"]; v != tc.version {
				t.Errorf("ignition.version = %v, want %s", v, tc.version)
			}
			cfg := string(pv.Ignition.Config)
			if !strings.Contains(cfg, tc.has) || !strings.Contains(cfg, metadata.PhoneHomeUnit) {
				t.Errorf("config lacks %q or the phone-home unit:\n%s", tc.has, cfg)
			}
			// The config in the plan is what metadata serves this host under the same
			// token: one rendering, wherever the host takes it from.
			m := phoneHomeURL.FindStringSubmatch(cfg)
			if m == nil {
				t.Fatalf("no phone-home URL in the config:\n%s", cfg)
			}
			seed := strings.TrimSuffix(strings.TrimPrefix(m[1], serverURL), "phonehome")
			md, err := metadata.NewHandler(metadata.Config{Store: e.store, Gate: e.p.Gate(), PhoneHome: e.p, ServerURL: serverURL})
			if err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			md.Register(mux)
			get := func(method, path string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(method, path, nil)
				req.RemoteAddr = hostIP + ":3000"
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, req)
				return rec
			}
			if rec := get("GET", seed+"ignition"); rec.Code != 200 || rec.Body.String() != cfg {
				t.Errorf("metadata's ignition = %d\n%s\nplan's:\n%s", rec.Code, rec.Body, cfg)
			}
			// The timeline says what the agent was told, without the config itself.
			if !hasEvent(e.events(), EventHello, fmt.Sprintf("install its Ignition config (%d bytes)", len(cfg))) {
				t.Errorf("no plan event for the Ignition config:\n%s", dumpEvents(e.events()))
			}
			for _, ev := range e.events() {
				if strings.Contains(ev.Message, "ssh-ed25519") || strings.Contains(ev.Message, "phonehome") {
					t.Errorf("event %s carries the config: %s", ev.Type, ev.Message)
				}
			}
			// The unit the first boot runs phones home: provisioned.
			if rec := get("POST", seed+"phonehome"); rec.Code != 200 {
				t.Fatalf("phone-home: %d %s", rec.Code, rec.Body)
			}
			e.wantState(inventory.StateProvisioned, "")
		})
	}
}

// TestIgnitionModeNone: a Butane config with mode none asked for writes the image as it
// is (the image finds its config some other way): no Ignition in the plan.
func TestIgnitionModeNone(t *testing.T) {
	e := newEnv(t)
	_, plan := provisionToDisk(t, e, Request{Butane: []byte(flatcarButane), CloudInit: agentapi.CloudInitNone})
	if pv := plan.Provision; pv.CloudInit != (agentapi.CloudInit{Mode: agentapi.CloudInitNone}) || pv.Ignition != nil {
		t.Errorf("plan = %+v, want mode none and no config", pv)
	}
}

func TestIgnitionRequestRefusals(t *testing.T) {
	// Many short entries: under metadata's input limit compact, over what a plan
	// carries once rendered (indented).
	var keys []string
	for i := range 40000 {
		keys = append(keys, fmt.Sprintf(`"k%d"`, i))
	}
	huge := `{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"core","sshAuthorizedKeys":[` + strings.Join(keys, ",") + `]}]}}`
	if len(huge) > metadata.MaxConfigBytes {
		t.Fatalf("test config of %d bytes is over metadata's limit", len(huge))
	}
	for _, tc := range []struct {
		name string
		def  agentapi.CloudInitMode
		req  Request
		want string
	}{
		{"Butane in dropin mode", "", Request{Butane: []byte(flatcarButane), CloudInit: agentapi.CloudInitDropIn}, "mode dropin is for cloud-init images"},
		{"Ignition in cidata mode", "", Request{Ignition: []byte(`{"ignition":{"version":"3.4.0"}}`), CloudInit: agentapi.CloudInitCIData}, "mode cidata is for cloud-init images"},
		{"user-data in ignition mode", "", Request{UserData: []byte("#cloud-config\n{}\n"), CloudInit: agentapi.CloudInitIgnition}, "not cloud-init user-data"},
		{"user-data with ignition as the server default", agentapi.CloudInitIgnition, Request{UserData: []byte("#cloud-config\n{}\n")}, "not cloud-init user-data"},
		{"unknown mode", "", Request{CloudInit: "ignite"}, "use dropin, cidata, ignition or none"},
		{"too large once rendered", "", Request{Ignition: []byte(huge)}, "renders to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.cfg.CloudInit = tc.def
			p, err := New(e.cfg)
			if err != nil {
				t.Fatal(err)
			}
			e.setState(inventory.StateAvailable)
			tc.req.Image = imageName
			_, err = p.Provision(context.Background(), hostID, tc.req)
			if !errors.Is(err, inventory.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Provision = %v, want ErrInvalid saying %q", err, tc.want)
			}
			if h := e.host(); h.State != inventory.StateAvailable || h.Provision != nil {
				t.Errorf("host after a refused request: %s %+v", h.State, h.Provision)
			}
		})
	}
}

// TestIgnitionConfigMissing: a host in mode ignition whose sealed config is gone (an
// inventory restored from an old backup) fails at hello with the reason, rather than
// having its image written without a config.
func TestIgnitionConfigMissing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.setState(inventory.StateAvailable)
	if _, err := e.p.Provision(ctx, hostID, Request{Image: imageName, Butane: []byte(flatcarButane)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.TransitionHost(ctx, hostID, func(h *inventory.Host, c *inventory.HostChange) error {
		c.ClearData = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	tok := e.boot()
	if _, code := e.hello(tok); code != http.StatusConflict {
		t.Errorf("hello = %d, want 409", code)
	}
	h := e.wantState(inventory.StateFailed, "")
	if !strings.Contains(h.StateReason, "Ignition config of this provisioning is missing") {
		t.Errorf("reason = %q", h.StateReason)
	}
}
