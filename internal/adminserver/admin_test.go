package adminserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

const testToken = "test-token-0123456789"

// syncBuffer collects log output written from server goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type apiEnv struct {
	t      *testing.T
	store  *inventory.BoltStore
	srv    *httptest.Server
	client *admin.Client
	reg    *prometheus.Registry
	logs   *syncBuffer
}

// newAPI serves the admin API over a real BoltStore in t.TempDir() on loopback.
func newAPI(t *testing.T, subnets ...string) *apiEnv {
	t.Helper()
	return newAPIWith(t, nil, subnets...)
}

// openTestStore opens a real BoltStore, with its secret key, in a temporary directory.
func openTestStore(tb testing.TB) *inventory.BoltStore {
	tb.Helper()
	dir := tb.TempDir()
	store, err := inventory.Open(filepath.Join(dir, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(dir, "secret.key")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	return store
}

// newAPIWith is newAPI with a BMC controller (nil: BMC routes disabled).
func newAPIWith(t *testing.T, pc PowerController, subnets ...string) *apiEnv {
	t.Helper()
	store := openTestStore(t)
	var prefixes []netip.Prefix
	for _, s := range subnets {
		prefixes = append(prefixes, netip.MustParsePrefix(s))
	}
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	h, err := NewHandler(Config{
		Store:      store,
		Token:      testToken,
		Subnets:    prefixes,
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: reg,
		BMC:        pc,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", h) // as serve mounts it
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &apiEnv{t: t, store: store, srv: srv, reg: reg, logs: logs,
		client: &admin.Client{BaseURL: srv.URL, Token: testToken, HTTPClient: srv.Client()}}
}

type response struct {
	status int
	header http.Header
	body   string
}

// raw sends a request with the test token (unless token is given) and returns the reply.
func (e *apiEnv) raw(method, path, body string, token ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	tok := "Bearer " + testToken
	if len(token) > 0 {
		tok = token[0]
	}
	if tok != "" {
		req.Header.Set("Authorization", tok)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// errorOf decodes a JSON error body, failing the test if the body is not one.
func (e *apiEnv) errorOf(r response) string {
	e.t.Helper()
	var er admin.ErrorResponse
	if err := json.Unmarshal([]byte(r.body), &er); err != nil || er.Error == "" {
		e.t.Fatalf("body %q is not a JSON error", r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("Content-Type = %q", ct)
	}
	return er.Error
}

// snapshot is everything the API can write: hosts (with revisions) and their timelines.
type snapshot struct {
	Hosts  []inventory.Host
	Events map[string][]inventory.Event
}

func (e *apiEnv) snapshot() snapshot {
	e.t.Helper()
	ctx := context.Background()
	hosts, err := e.store.ListHosts(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	s := snapshot{Hosts: hosts, Events: map[string][]inventory.Event{}}
	for _, h := range hosts {
		ev, err := e.store.Events(ctx, h.ID, 0)
		if err != nil {
			e.t.Fatal(err)
		}
		s.Events[h.ID] = ev
	}
	return s
}

func (e *apiEnv) mustCreate(spec admin.HostSpec) admin.Host {
	e.t.Helper()
	h, err := e.client.CreateHost(context.Background(), spec)
	if err != nil {
		e.t.Fatalf("create %+v: %v", spec, err)
	}
	return h
}

func TestAuth(t *testing.T) {
	e := newAPI(t)
	cases := []struct {
		name, path, auth string
		status           int
		wantAuthn, msg   string
	}{
		{"no header", "/api/v1/hosts", "", 401, `Bearer realm="rackboot"`, "missing API token"},
		{"wrong token", "/api/v1/hosts", "Bearer nope", 401, `Bearer realm="rackboot", error="invalid_token"`, "wrong API token"},
		{"token prefix", "/api/v1/hosts", "Bearer " + testToken[:len(testToken)-1], 401, `Bearer realm="rackboot", error="invalid_token"`, "wrong API token"},
		{"basic auth", "/api/v1/hosts", "Basic dXNlcjpwYXNz", 401, `Bearer realm="rackboot", error="invalid_request"`, "not a bearer token"},
		{"unknown route needs auth first", "/api/v1/nothing-here", "", 401, `Bearer realm="rackboot"`, "missing API token"},
		{"host route needs auth", "/api/v1/hosts/web1", "Bearer x", 401, `Bearer realm="rackboot", error="invalid_token"`, "wrong API token"},
		{"right token", "/api/v1/hosts", "Bearer " + testToken, 200, "", ""},
		{"scheme is case-insensitive", "/api/v1/hosts", "bearer " + testToken, 200, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.raw("GET", c.path, "", c.auth)
			if r.status != c.status {
				t.Fatalf("status = %d, want %d; body %s", r.status, c.status, r.body)
			}
			if got := r.header.Get("WWW-Authenticate"); got != c.wantAuthn {
				t.Errorf("WWW-Authenticate = %q, want %q", got, c.wantAuthn)
			}
			if c.msg != "" {
				if msg := e.errorOf(r); !strings.Contains(msg, c.msg) {
					t.Errorf("error %q does not contain %q", msg, c.msg)
				}
			}
		})
	}
}

func TestNewHandlerRefusesBadConfig(t *testing.T) {
	store := openTestStore(t)
	cases := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"no store", Config{Token: "x"}, "no inventory store"},
		{"empty token", Config{Store: store, Token: "  "}, "token is empty"},
		{"IPv6 subnet", Config{Store: store, Token: "x", Subnets: []netip.Prefix{netip.MustParsePrefix("fd00::/64")}}, "not an IPv4 prefix"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewHandler(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want it to contain %q", err, c.msg)
			}
		})
	}
	t.Run("metrics registered twice", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := NewHandler(Config{Store: store, Token: "x", Registerer: reg}); err != nil {
			t.Fatal(err)
		}
		if _, err := NewHandler(Config{Store: store, Token: "x", Registerer: reg}); err == nil {
			t.Fatal("second registration on the same registry succeeded")
		}
	})
}

func TestHostLifecycle(t *testing.T) {
	e := newAPI(t, "192.168.50.0/24")
	ctx := context.Background()

	r := e.raw("POST", "/api/v1/hosts", `{"macs":["52-54-00-AA-BB-01"],"hostname":"web1.rack1","ip":"192.168.50.11","labels":{"role":"web"}}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if loc := r.header.Get("Location"); loc != "/api/v1/hosts/web1" {
		t.Errorf("Location = %q", loc)
	}
	var created admin.Host
	if err := json.Unmarshal([]byte(r.body), &created); err != nil {
		t.Fatal(err)
	}
	want := admin.Host{ID: "web1", MACs: []string{"52:54:00:aa:bb:01"}, Hostname: "web1.rack1", IP: "192.168.50.11",
		Labels: map[string]string{"role": "web"}, State: inventory.StateEnrolled, Revision: 1}
	ignoreTimes := cmpopts.IgnoreFields(admin.Host{}, "CreatedAt", "UpdatedAt")
	if d := cmp.Diff(want, created, ignoreTimes); d != "" {
		t.Fatalf("created (-want +got):\n%s", d)
	}
	if created.CreatedAt.IsZero() {
		t.Error("createdAt not set")
	}

	got, err := e.client.GetHost(ctx, "web1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(created, got); d != "" {
		t.Fatalf("get (-created +got):\n%s", d)
	}
	e.mustCreate(admin.HostSpec{ID: "db1", MACs: []string{"525400aabb02"}})
	list, err := e.client.ListHosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, h := range list {
		ids = append(ids, h.ID)
	}
	if d := cmp.Diff([]string{"db1", "web1"}, ids); d != "" {
		t.Fatalf("list IDs (-want +got):\n%s", d)
	}

	ev, err := e.client.Events(ctx, "web1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 || ev[0].Type != "admin.created" || ev[0].Fields["macs"] != "52:54:00:aa:bb:01" || ev[0].Fields["source"] != "api" {
		t.Fatalf("events after create = %+v", ev)
	}

	if r := e.raw("DELETE", "/api/v1/hosts/web1", ""); r.status != http.StatusNoContent || r.body != "" {
		t.Fatalf("delete: %d %q", r.status, r.body)
	}
	_, err = e.client.GetHost(ctx, "web1")
	if !errors.Is(err, inventory.ErrNotFound) || !strings.Contains(err.Error(), `no host with ID "web1"`) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := e.client.DeleteHost(ctx, "web1"); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// The MAC and IP are free again.
	e.mustCreate(admin.HostSpec{ID: "web1b", MACs: []string{"52:54:00:aa:bb:01"}, IP: "192.168.50.11"})
}

func TestCreateRejectsAndWritesNothing(t *testing.T) {
	e := newAPI(t, "192.168.50.0/24", "10.20.0.0/16")
	e.mustCreate(admin.HostSpec{ID: "web1", MACs: []string{"52:54:00:00:00:01"}, IP: "192.168.50.11"})
	cases := []struct {
		name   string
		body   string
		status int
		msg    string
	}{
		{"invalid MAC", `{"macs":["52:54:00:zz:00:02"]}`, 400, `"52:54:00:zz:00:02" is not a MAC address`},
		{"no MAC", `{"id":"x"}`, 400, "no MAC address"},
		{"IP outside subnets", `{"id":"web2","macs":["52:54:00:00:00:02"],"ip":"172.16.0.5"}`, 400, "host web2: IP 172.16.0.5 is outside the DHCP subnets (192.168.50.0/24, 10.20.0.0/16)"},
		{"network address", `{"id":"web2","macs":["52:54:00:00:00:02"],"ip":"192.168.50.0"}`, 400, "network address of subnet 192.168.50.0/24"},
		{"broadcast address", `{"id":"web2","macs":["52:54:00:00:00:02"],"ip":"10.20.255.255"}`, 400, "broadcast address of subnet 10.20.0.0/16"},
		{"IPv6 address", `{"id":"web2","macs":["52:54:00:00:00:02"],"ip":"fd00::5"}`, 400, "is not an IPv4 address"},
		{"duplicate MAC", `{"id":"web2","macs":["52-54-00-00-00-01"]}`, 409, "MAC 52:54:00:00:00:01 already belongs to host web1"},
		{"duplicate IP", `{"id":"web2","macs":["52:54:00:00:00:02"],"ip":"192.168.50.11"}`, 409, "IP 192.168.50.11 is already reserved for host web1"},
		{"duplicate ID", `{"id":"web1","macs":["52:54:00:00:00:02"]}`, 409, "host web1 already exists"},
		{"bad ID", `{"id":"Web_1","macs":["52:54:00:00:00:02"]}`, 400, `host ID "Web_1" is invalid`},
		{"bad label", `{"macs":["52:54:00:00:00:02"],"labels":{"role":"web server"}}`, 400, `value "web server" is invalid`},
		{"bad hostname", `{"macs":["52:54:00:00:00:02"],"hostname":"web_2"}`, 400, `hostname "web_2" is invalid`},
		{"bad firmware", `{"macs":["52:54:00:00:00:02"],"firmware":"coreboot"}`, 400, `firmware "coreboot" is invalid`},
		{"bad arch", `{"macs":["52:54:00:00:00:02"],"arch":"x86 64"}`, 400, `arch "x86 64" is invalid`},
		{"password in BMC URL", `{"macs":["52:54:00:00:00:02"],"bmc":{"url":"ipmi://admin:hunter2@10.0.0.1"}}`, 400, "put it in bmc.password"},
		{"BMC URL without host", `{"macs":["52:54:00:00:00:02"],"bmc":{"url":"10.0.0.1"}}`, 400, "BMC URL"},
		{"boot without kernel", `{"macs":["52:54:00:00:00:02"],"boot":{"cmdline":"quiet"}}`, 400, "kernel is empty"},
		{"boot cmdline newline", `{"macs":["52:54:00:00:00:02"],"boot":{"kernel":"vmlinuz","cmdline":"quiet\nshell"}}`, 400, "control character"},
		{"boot kernel traversal", `{"macs":["52:54:00:00:00:02"],"boot":{"kernel":"../../etc/shadow"}}`, 400, "clean path relative to the assets directory"},
		{"boot kernel absolute", `{"macs":["52:54:00:00:00:02"],"boot":{"kernel":"/vmlinuz"}}`, 400, "no leading '/'"},
		{"boot kernel scheme", `{"macs":["52:54:00:00:00:02"],"boot":{"kernel":"ftp://h/vmlinuz"}}`, 400, `scheme "ftp"`},
		{"boot initrd space", `{"macs":["52:54:00:00:00:02"],"boot":{"kernel":"vmlinuz","initrds":["a b"]}}`, 400, "initrd 1"},
		{"unknown field", `{"macs":["52:54:00:00:00:02"],"state":"available"}`, 400, `unknown field "state"`},
		{"nested unknown field", `{"macs":["52:54:00:00:00:02"],"boot":{"kernal":"x"}}`, 400, `unknown field "kernal"`},
		{"syntax error", "{\n  \"macs\": [\"52:54:00:00:00:02\",]\n}", 400, "invalid JSON at line 2, column 32"},
		{"wrong type", `{"macs":"52:54:00:00:00:02"}`, 400, "field macs on line 1: got a JSON string, want an array"},
		{"trailing data", `{"macs":["52:54:00:00:00:02"]} {"macs":[]}`, 400, "unexpected data after the JSON value"},
		{"truncated", `{"macs":["52:54:00:00:00:02"`, 400, "truncated"},
		{"empty body", ``, 400, "empty"},
		{"null body", `null`, 400, "no MAC address"},
		{"too large", `{"hostname":"` + strings.Repeat("a", admin.MaxBodyBytes) + `"}`, 413, "larger than 1048576 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			r := e.raw("POST", "/api/v1/hosts", c.body)
			if r.status != c.status {
				t.Fatalf("status = %d, want %d; body %s", r.status, c.status, r.body)
			}
			if msg := e.errorOf(r); !strings.Contains(msg, c.msg) {
				t.Fatalf("error %q does not contain %q", msg, c.msg)
			}
			if d := cmp.Diff(before, e.snapshot()); d != "" {
				t.Fatalf("a failed create changed the inventory (-before +after):\n%s", d)
			}
		})
	}
}

func TestRedaction(t *testing.T) {
	const password = "s3cr3t-Pa55w0rd"
	e := newAPI(t)
	ctx := context.Background()
	var bodies []string
	send := func(method, path, body string) {
		t.Helper()
		r := e.raw(method, path, body)
		if r.status >= 300 {
			t.Fatalf("%s %s: %d %s", method, path, r.status, r.body)
		}
		bodies = append(bodies, r.body)
	}
	send("POST", "/api/v1/hosts", `{"id":"bmc1","macs":["52:54:00:00:00:01"],"bmc":{"url":"ipmi://admin@10.0.0.1:623","password":"`+password+`"}}`)
	send("POST", "/api/v1/hosts/import", `{"hosts":[{"id":"bmc2","macs":["52:54:00:00:00:02"],"bmc":{"url":"redfish://root@10.0.0.2","password":"`+password+`"}}]}`)
	send("GET", "/api/v1/hosts", "")
	send("GET", "/api/v1/hosts/bmc1", "")
	send("POST", "/api/v1/hosts/bmc1/labels", `{"set":{"rack":"r1"}}`)
	send("PUT", "/api/v1/hosts/bmc1/boot", `{"kernel":"vmlinuz"}`)
	send("DELETE", "/api/v1/hosts/bmc1/boot", "")
	send("GET", "/api/v1/hosts/bmc1/events", "")
	send("GET", "/api/v1/hosts/bmc2/events", "")

	for i, b := range bodies {
		if strings.Contains(b, password) {
			t.Errorf("response %d carries the BMC password: %s", i, b)
		}
	}
	if strings.Contains(e.logs.String(), password) {
		t.Errorf("the log carries the BMC password:\n%s", e.logs.String())
	}
	// The API shows that a BMC is configured, just not its secret...
	h, err := e.client.GetHost(ctx, "bmc1")
	if err != nil {
		t.Fatal(err)
	}
	if h.BMC == nil || h.BMC.URL != "ipmi://admin@10.0.0.1:623" || !h.BMC.PasswordSet {
		t.Fatalf("API BMC = %+v", h.BMC)
	}
	// ...and the store still has it (sealed): only BMCCredentials returns it.
	stored, err := e.store.BMCCredentials(ctx, "bmc1")
	if err != nil {
		t.Fatal(err)
	}
	if stored.Password != password || !h.BMC.PasswordSet {
		t.Fatalf("stored BMC = %+v (API says passwordSet=%v), want the password kept", stored, h.BMC.PasswordSet)
	}
}

func TestImport(t *testing.T) {
	ctx := context.Background()
	t.Run("creates all with events", func(t *testing.T) {
		e := newAPI(t, "192.168.50.0/24")
		hosts, err := e.client.ImportHosts(ctx, []admin.HostSpec{
			{ID: "n1", MACs: []string{"52:54:00:00:01:01"}, IP: "192.168.50.21"},
			{ID: "n2", MACs: []string{"52:54:00:00:01:02"}, IP: "192.168.50.22", Labels: map[string]string{"role": "worker"}},
			{MACs: []string{"52:54:00:00:01:03"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, h := range hosts {
			ids = append(ids, h.ID)
			ev, err := e.client.Events(ctx, h.ID, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(ev) != 1 || ev[0].Type != "admin.created" || ev[0].Fields["source"] != "import" {
				t.Errorf("%s events = %+v", h.ID, ev)
			}
		}
		if d := cmp.Diff([]string{"n1", "n2", "mac-525400000103"}, ids); d != "" {
			t.Fatalf("IDs (-want +got):\n%s", d)
		}
	})

	cases := []struct {
		name   string
		body   string
		status int
		msg    string
	}{
		{"conflict with inventory", `{"hosts":[{"id":"n1","macs":["52:54:00:00:01:01"]},{"id":"n2","macs":["52:54:00:00:00:01"]}]}`, 409,
			"MAC 52:54:00:00:00:01 already belongs to host old: nothing was imported"},
		{"IP conflict with inventory", `{"hosts":[{"id":"n1","macs":["52:54:00:00:01:01"],"ip":"192.168.50.5"}]}`, 409,
			"IP 192.168.50.5 is already reserved for host old"},
		{"invalid second host", `{"hosts":[{"id":"n1","macs":["52:54:00:00:01:01"]},{"id":"n2","macs":["nope"]}]}`, 400,
			`hosts[1]: "nope" is not a MAC address`},
		{"IP outside subnet", `{"hosts":[{"id":"n1","macs":["52:54:00:00:01:01"],"ip":"10.9.9.9"}]}`, 400,
			"hosts[0]: host n1: IP 10.9.9.9 is outside the DHCP subnets (192.168.50.0/24)"},
		{"duplicate MAC in batch", `{"hosts":[{"id":"n1","macs":["52:54:00:00:01:01"]},{"id":"n2","macs":["52:54:00:00:01:02"]},{"id":"n3","macs":["52-54-00-00-01-01"]}]}`, 400,
			"hosts[2]: MAC 52:54:00:00:01:01 is also used by hosts[0]: nothing was imported"},
		{"duplicate IP in batch", `{"hosts":[{"id":"n1","macs":["52:54:00:00:01:01"],"ip":"192.168.50.9"},{"id":"n2","macs":["52:54:00:00:01:02"],"ip":"192.168.50.9"}]}`, 400,
			"hosts[1]: IP 192.168.50.9 is also reserved by hosts[0]"},
		{"duplicate ID in batch", `{"hosts":[{"hostname":"n1.a","macs":["52:54:00:00:01:01"]},{"id":"n1","macs":["52:54:00:00:01:02"]}]}`, 400,
			"hosts[1]: host ID n1 is also used by hosts[0]"},
		{"empty", `{"hosts":[]}`, 400, "nothing to import"},
		{"bare list", `[{"macs":["52:54:00:00:01:01"]}]`, 400, "field (top level)"},
		{"unknown field", `{"hosts":[{"macs":["52:54:00:00:01:01"],"revision":3}]}`, 400, `unknown field "revision"`},
		{"too large", `{"hosts":[{"hostname":"` + strings.Repeat("a", admin.MaxImportBodyBytes) + `"}]}`, 413, "larger than 4194304 bytes"},
	}
	e := newAPI(t, "192.168.50.0/24")
	e.mustCreate(admin.HostSpec{ID: "old", MACs: []string{"52:54:00:00:00:01"}, IP: "192.168.50.5"})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			r := e.raw("POST", "/api/v1/hosts/import", c.body)
			if r.status != c.status {
				t.Fatalf("status = %d, want %d; body %s", r.status, c.status, r.body)
			}
			if msg := e.errorOf(r); !strings.Contains(msg, c.msg) {
				t.Fatalf("error %q does not contain %q", msg, c.msg)
			}
			if d := cmp.Diff(before, e.snapshot()); d != "" {
				t.Fatalf("a failed import changed the inventory (-before +after):\n%s", d)
			}
		})
	}
}

func TestImportAtTheLimit(t *testing.T) {
	e := newAPI(t)
	specs := make([]admin.HostSpec, admin.MaxImportHosts+1)
	for i := range specs {
		specs[i] = admin.HostSpec{MACs: []string{fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)}}
	}
	_, err := e.client.ImportHosts(context.Background(), specs)
	if !errors.Is(err, inventory.ErrInvalid) || !strings.Contains(err.Error(), "10001 hosts in one import is more than the 10000 allowed") {
		t.Fatalf("err = %v", err)
	}
	if hs, _ := e.store.ListHosts(context.Background()); len(hs) != 0 {
		t.Fatalf("wrote %d hosts", len(hs))
	}
}

func TestLabels(t *testing.T) {
	e := newAPI(t)
	ctx := context.Background()
	e.mustCreate(admin.HostSpec{ID: "web1", MACs: []string{"52:54:00:00:00:01"}, Labels: map[string]string{"role": "web", "old": "x"}})

	h, err := e.client.UpdateLabels(ctx, "web1", admin.LabelsRequest{Set: map[string]string{"rack": "r1", "role": "db"}, Remove: []string{"old", "absent"}})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"rack": "r1", "role": "db"}, h.Labels); d != "" {
		t.Fatalf("labels (-want +got):\n%s", d)
	}
	if h.Revision != 2 {
		t.Errorf("revision = %d, want 2", h.Revision)
	}
	ev, err := e.client.Events(ctx, "web1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 || ev[0].Type != "admin.labels" || ev[0].Fields["set"] != "rack=r1,role=db" || ev[0].Fields["removed"] != "old,absent" {
		t.Fatalf("events = %+v", ev)
	}
	// Removing every label leaves none (not an empty map).
	h, err = e.client.UpdateLabels(ctx, "web1", admin.LabelsRequest{Remove: []string{"rack", "role"}})
	if err != nil || h.Labels != nil {
		t.Fatalf("labels = %v, %v", h.Labels, err)
	}

	cases := []struct {
		name, path, body string
		status           int
		msg              string
	}{
		{"nothing", "/api/v1/hosts/web1/labels", `{}`, 400, "nothing to change"},
		{"set and remove", "/api/v1/hosts/web1/labels", `{"set":{"a":"1"},"remove":["a"]}`, 400, "both set and removed"},
		{"bad key", "/api/v1/hosts/web1/labels", `{"set":{"-a":"1"}}`, 400, `label key "-a" is invalid`},
		{"bad value", "/api/v1/hosts/web1/labels", `{"set":{"a":"x y"}}`, 400, `value "x y" is invalid`},
		{"bad remove key", "/api/v1/hosts/web1/labels", `{"remove":["a b"]}`, 400, `label key "a b" is invalid`},
		{"unknown host", "/api/v1/hosts/nope/labels", `{"set":{"a":"1"}}`, 404, `no host with ID "nope"`},
		{"invalid ID", "/api/v1/hosts/No_Pe/labels", `{"set":{"a":"1"}}`, 400, `host ID "No_Pe" is invalid`},
		{"unknown field", "/api/v1/hosts/web1/labels", `{"add":{"a":"1"}}`, 400, `unknown field "add"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			r := e.raw("POST", c.path, c.body)
			if r.status != c.status {
				t.Fatalf("status = %d, want %d; body %s", r.status, c.status, r.body)
			}
			if msg := e.errorOf(r); !strings.Contains(msg, c.msg) {
				t.Fatalf("error %q does not contain %q", msg, c.msg)
			}
			if d := cmp.Diff(before, e.snapshot()); d != "" {
				t.Fatalf("inventory changed (-before +after):\n%s", d)
			}
		})
	}
}

func TestBootProfile(t *testing.T) {
	e := newAPI(t)
	ctx := context.Background()
	e.mustCreate(admin.HostSpec{ID: "web1", MACs: []string{"52:54:00:00:00:01"}})

	p := inventory.BootProfile{Kernel: "http://10.0.0.1:8080/assets/vmlinuz", Initrds: []string{"debian/initrd.img", "extra.cpio"}, Cmdline: "console=ttyS0 ip=dhcp"}
	h, err := e.client.SetBoot(ctx, "web1", p)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(&p, h.Boot); d != "" {
		t.Fatalf("boot (-want +got):\n%s", d)
	}
	stored, _ := e.store.GetHost(ctx, "web1")
	if d := cmp.Diff(&p, stored.Boot); d != "" {
		t.Fatalf("stored boot (-want +got):\n%s", d)
	}
	h, err = e.client.ClearBoot(ctx, "web1")
	if err != nil || h.Boot != nil {
		t.Fatalf("after clear: boot %+v, %v", h.Boot, err)
	}
	ev, err := e.client.Events(ctx, "web1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 2 || ev[0].Type != "admin.boot" || ev[0].Fields["kernel"] != p.Kernel || ev[0].Fields["initrds"] != "debian/initrd.img,extra.cpio" ||
		ev[1].Type != "admin.boot" || ev[1].Fields["cleared"] != "true" {
		t.Fatalf("events = %+v", ev)
	}

	cases := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"no kernel", "PUT", "/api/v1/hosts/web1/boot", `{"cmdline":"x"}`, 400, "kernel is empty"},
		{"newline in cmdline", "PUT", "/api/v1/hosts/web1/boot", `{"kernel":"vmlinuz","cmdline":"a\nchain http://evil/"}`, 400, "control character"},
		{"cmdline too long", "PUT", "/api/v1/hosts/web1/boot", `{"kernel":"vmlinuz","cmdline":"` + strings.Repeat("a", admin.MaxCmdline+1) + `"}`, 400, "4097 bytes"},
		{"unknown host", "PUT", "/api/v1/hosts/nope/boot", `{"kernel":"vmlinuz"}`, 404, `no host with ID "nope"`},
		{"clear unknown host", "DELETE", "/api/v1/hosts/nope/boot", ``, 404, `no host with ID "nope"`},
		{"unknown field", "PUT", "/api/v1/hosts/web1/boot", `{"kernel":"vmlinuz","initrd":"x"}`, 400, `unknown field "initrd"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			r := e.raw(c.method, c.path, c.body)
			if r.status != c.status {
				t.Fatalf("status = %d, want %d; body %s", r.status, c.status, r.body)
			}
			if msg := e.errorOf(r); !strings.Contains(msg, c.msg) {
				t.Fatalf("error %q does not contain %q", msg, c.msg)
			}
			if d := cmp.Diff(before, e.snapshot()); d != "" {
				t.Fatalf("inventory changed (-before +after):\n%s", d)
			}
		})
	}
}

func TestEvents(t *testing.T) {
	e := newAPI(t)
	ctx := context.Background()
	e.mustCreate(admin.HostSpec{ID: "web1", MACs: []string{"52:54:00:00:00:01"}})
	for _, typ := range []string{"dhcp.discover", "dhcp.offer", "tftp.read"} {
		if _, err := e.store.AppendEvent(ctx, "web1", inventory.Event{Type: typ, Fields: map[string]string{"file": "undionly.kpxe"}}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := e.client.Events(ctx, "web1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range all {
		types = append(types, fmt.Sprintf("%d:%s", ev.Seq, ev.Type))
	}
	if d := cmp.Diff([]string{"1:admin.created", "2:dhcp.discover", "3:dhcp.offer", "4:tftp.read"}, types); d != "" {
		t.Fatalf("events (-want +got):\n%s", d)
	}
	after, err := e.client.Events(ctx, "web1", 3)
	if err != nil || len(after) != 1 || after[0].Seq != 4 {
		t.Fatalf("after=3: %+v, %v", after, err)
	}
	if r := e.raw("GET", "/api/v1/hosts/web1/events?after=99", ""); r.status != 200 || strings.TrimSpace(r.body) != "[]" {
		t.Fatalf("after=99: %d %s", r.status, r.body)
	}
	r := e.raw("GET", "/api/v1/hosts/web1/events?after=-1", "")
	if msg := e.errorOf(r); r.status != 400 || !strings.Contains(msg, `after="-1" is not an event sequence number`) {
		t.Fatalf("after=-1: %d %s", r.status, msg)
	}
	if _, err := e.client.Events(ctx, "nope", 0); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("unknown host: %v", err)
	}
}

func TestLeases(t *testing.T) {
	e := newAPI(t)
	ctx := context.Background()
	if r := e.raw("GET", "/api/v1/leases", ""); r.status != 200 || strings.TrimSpace(r.body) != "[]" {
		t.Fatalf("no leases: %d %s", r.status, r.body)
	}
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	want := inventory.Lease{MAC: "52:54:00:00:00:09", IP: "192.168.50.100", Hostname: "pxe", State: inventory.LeaseBound, Expires: exp}
	if err := e.store.PutLease(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := e.client.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantView := []admin.Lease{{MAC: want.MAC, IP: want.IP, Hostname: want.Hostname, State: want.State, Expires: want.Expires}}
	if d := cmp.Diff(wantView, got, cmpopts.IgnoreFields(admin.Lease{}, "Updated")); d != "" {
		t.Fatalf("leases (-want +got):\n%s", d)
	}
}

func TestUnmatchedRoutesAnswerJSON(t *testing.T) {
	e := newAPI(t)
	r := e.raw("PUT", "/api/v1/hosts", "")
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, POST" {
		t.Fatalf("PUT /hosts: %d Allow=%q", r.status, r.header.Get("Allow"))
	}
	if msg := e.errorOf(r); !strings.Contains(msg, "PUT /api/v1/hosts is not supported: use GET, POST") {
		t.Fatalf("405 message %q", msg)
	}
	r = e.raw("GET", "/api/v1/hosts/web1/boot", "")
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "PUT, DELETE" {
		t.Fatalf("GET /boot: %d Allow=%q", r.status, r.header.Get("Allow"))
	}
	r = e.raw("GET", "/api/v1/gadgets", "")
	if msg := e.errorOf(r); r.status != http.StatusNotFound || !strings.Contains(msg, "no API route GET /api/v1/gadgets") {
		t.Fatalf("unknown route: %d %s", r.status, msg)
	}
}

func TestMetricsCountRequests(t *testing.T) {
	e := newAPI(t)
	e.raw("GET", "/api/v1/hosts", "")
	e.raw("GET", "/api/v1/hosts", "")
	e.raw("GET", "/api/v1/hosts/x1", "")
	e.raw("GET", "/api/v1/hosts", "", "")
	e.raw("GET", "/api/v1/elsewhere", "")

	got := map[string]float64{}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rackboot_admin_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var route, code string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "route":
					route = l.GetValue()
				case "code":
					code = l.GetValue()
				}
			}
			got[route+" "+code] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"GET /api/v1/hosts 200":      2,
		"GET /api/v1/hosts/{id} 404": 1,
		"GET /api/v1/hosts 401":      1,
		"unmatched 404":              1,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("request counts (-want +got):\n%s", d)
	}
}

func TestClientErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("server message verbatim", func(t *testing.T) {
		e := newAPI(t)
		_, err := e.client.CreateHost(ctx, admin.HostSpec{MACs: []string{"bad"}})
		var ae *admin.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Message != `"bad" is not a MAC address: write six hex bytes, e.g. 52:54:00:12:34:56` || err.Error() != ae.Message {
			t.Fatalf("err = %#v", err)
		}
		if !errors.Is(err, inventory.ErrInvalid) || errors.Is(err, inventory.ErrNotFound) {
			t.Fatal("APIError.Is does not follow the status")
		}
		c := *e.client
		c.Token = "wrong"
		_, err = c.ListHosts(ctx)
		if !errors.As(err, &ae) || ae.StatusCode != 401 || !strings.Contains(err.Error(), "wrong API token") {
			t.Fatalf("wrong token: %v", err)
		}
	})
	t.Run("non-JSON error page", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "<html>upstream down</html>", http.StatusBadGateway)
		}))
		defer srv.Close()
		c := &admin.Client{BaseURL: srv.URL + "/", Token: "x"}
		_, err := c.ListHosts(ctx)
		if err == nil || err.Error() != "HTTP 502 Bad Gateway: <html>upstream down</html>" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("not the API", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello")
		}))
		defer srv.Close()
		c := &admin.Client{BaseURL: srv.URL, Token: "x"}
		_, err := c.ListHosts(ctx)
		if err == nil || !strings.Contains(err.Error(), "is --server pointing at rackboot?") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("no base URL", func(t *testing.T) {
		if _, err := (&admin.Client{}).ListHosts(ctx); err == nil || !strings.Contains(err.Error(), "no server URL") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("IDs are escaped", func(t *testing.T) {
		e := newAPI(t)
		_, err := e.client.GetHost(ctx, "../leases")
		if !errors.Is(err, inventory.ErrInvalid) || !strings.Contains(err.Error(), `host ID "../leases" is invalid`) {
			t.Fatalf("err = %v", err)
		}
	})
}
