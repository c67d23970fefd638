package adminserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

// fuzzEnv is one handler over one real BoltStore, shared by a fuzz target's inputs (a
// store per input would make fuzzing crawl). It holds one host, web1, for inputs to
// collide with.
type fuzzEnv struct {
	store   *inventory.BoltStore
	handler http.Handler
}

func newFuzzEnv(f *testing.F) *fuzzEnv {
	store := openTestStore(f)
	h, err := NewHandler(Config{Store: store, Token: testToken, Subnets: []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")}})
	if err != nil {
		f.Fatal(err)
	}
	_, err = store.CreateHosts(context.Background(), inventory.Host{ID: "web1", MACs: []string{"52:54:00:00:00:01"}, IP: "192.168.50.11",
		BMC: &inventory.BMC{URL: "ipmi://admin@10.0.0.1", Password: "fuzz-secret"}})
	if err != nil {
		f.Fatal(err)
	}
	return &fuzzEnv{store: store, handler: h}
}

func (e *fuzzEnv) snapshot(t *testing.T) snapshot {
	ctx := context.Background()
	hosts, err := e.store.ListHosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := snapshot{Hosts: hosts, Events: map[string][]inventory.Event{}}
	for _, h := range hosts {
		if s.Events[h.ID], err = e.store.Events(ctx, h.ID, 0); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// check sends body and asserts the API's invariants: no 5xx, JSON replies, no password
// in any reply, and nothing written by a request that failed. It returns the reply.
func (e *fuzzEnv) check(t *testing.T, method, path string, body []byte) *httptest.ResponseRecorder {
	before := e.snapshot(t)
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)

	if rec.Code >= 500 {
		t.Fatalf("%s %s %q: status %d: %s", method, path, body, rec.Code, rec.Body)
	}
	if rec.Code != http.StatusNoContent && !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("reply is not JSON: %q", rec.Body)
	}
	if strings.Contains(rec.Body.String(), "fuzz-secret") || strings.Contains(rec.Body.String(), `"password"`) {
		t.Fatalf("reply carries a BMC password: %s", rec.Body)
	}
	if b := strings.ToLower(rec.Body.String()); strings.Contains(b, `hash"`) || strings.Contains(b, `token"`) {
		t.Fatalf("reply carries token material: %s", rec.Body)
	}
	if rec.Code >= 400 {
		var er admin.ErrorResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || er.Error == "" {
			t.Fatalf("error reply %q has no message", rec.Body)
		}
		if d := cmp.Diff(before, e.snapshot(t)); d != "" {
			t.Fatalf("failed request (%d %s) changed the inventory (-before +after):\n%s", rec.Code, er.Error, d)
		}
	}
	return rec
}

// cleanup removes every host but web1 so inputs do not pile up.
func (e *fuzzEnv) cleanup(t *testing.T) {
	hosts, err := e.store.ListHosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if h.ID != "web1" {
			if err := e.store.DeleteHost(context.Background(), h.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func FuzzCreateHost(f *testing.F) {
	for _, s := range []string{
		`{"macs":["52:54:00:00:00:02"]}`,
		`{"id":"db1","macs":["52-54-00-AA-BB-02","525400aabb03"],"hostname":"db1.rack1","ip":"192.168.50.12","labels":{"role":"db","example.com/rack":"r1"}}`,
		`{"macs":["52:54:00:00:00:02"],"bmc":{"url":"redfish://root@10.0.0.2","password":"pw"},"boot":{"kernel":"debian/vmlinuz","initrds":["debian/initrd.img"],"cmdline":"console=ttyS0"}}`,
		`{"macs":["52:54:00:00:00:01"]}`,
		`{"macs":["52:54:00:00:00:02"],"ip":"192.168.50.11"}`,
		`{"macs":["52:54:00:00:00:02"],"ip":"10.0.0.1"}`,
		`{"macs":["zz"]}`,
		`{"macs":["01:00:5e:00:00:01"]}`,
		`{"macs":["ff:ff:ff:ff:ff:ff"]}`,
		`{"macs":["00:00:00:00:00:00"]}`,
		`{"macs":[]}`,
		`{"macs":"x"}`,
		`{"macs":["52:54:00:00:00:02"],"state":"available"}`,
		`{"macs":["52:54:00:00:00:02"],"boot":{"kernel":"a\nb"}}`,
		`{"macs":["52:54:00:00:00:02"],"labels":{"":""}}`,
		`{"id":"-x-","macs":["52:54:00:00:00:02"]}`,
		`{"macs":[null],"labels":null,"bmc":null}`,
		`[]`, `null`, `{`, ``, `"x"`, `{}{}`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := e.check(t, "POST", "/api/v1/hosts", body)
		if rec.Code == http.StatusCreated {
			var h inventory.Host
			if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil || h.ID == "" || len(h.MACs) == 0 {
				t.Fatalf("201 with host %q: %v", rec.Body, err)
			}
			if _, err := e.store.GetHost(context.Background(), h.ID); err != nil {
				t.Fatalf("201 but host %s is not stored: %v", h.ID, err)
			}
		}
		e.cleanup(t)
	})
}

func FuzzImport(f *testing.F) {
	for _, s := range []string{
		`{"hosts":[{"macs":["52:54:00:00:00:02"]},{"macs":["52:54:00:00:00:03"],"ip":"192.168.50.13"}]}`,
		`{"hosts":[{"macs":["52:54:00:00:00:02"]},{"macs":["52:54:00:00:00:01"]}]}`,
		`{"hosts":[{"macs":["52:54:00:00:00:02"]},{"macs":["52-54-00-00-00-02"]}]}`,
		`{"hosts":[{"id":"a","macs":["52:54:00:00:00:02"]},{"id":"a","macs":["52:54:00:00:00:03"]}]}`,
		`{"hosts":[{"macs":["52:54:00:00:00:02"],"ip":"192.168.50.11"}]}`,
		`{"hosts":[{"macs":["52:54:00:00:00:02"],"ip":"192.168.50.255"}]}`,
		`{"hosts":[]}`, `{"hosts":null}`, `{"hosts":[null]}`, `{"hosts":{}}`, `[{"macs":["52:54:00:00:00:02"]}]`,
		`{"hosts":[{"macs":["52:54:00:00:00:02"]}],"extra":1}`,
	} {
		f.Add([]byte(s))
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		before := e.snapshot(t)
		rec := e.check(t, "POST", "/api/v1/hosts/import", body)
		if rec.Code == http.StatusCreated {
			var out admin.ImportResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || len(out.Hosts) == 0 {
				t.Fatalf("201 with %q: %v", rec.Body, err)
			}
			after := e.snapshot(t)
			if len(after.Hosts) != len(before.Hosts)+len(out.Hosts) {
				t.Fatalf("imported %d hosts but the inventory went from %d to %d", len(out.Hosts), len(before.Hosts), len(after.Hosts))
			}
		}
		e.cleanup(t)
	})
}

// FuzzHostUpdates drives the label and boot routes of an existing host.
func FuzzHostUpdates(f *testing.F) {
	for _, s := range []struct {
		route uint8
		body  string
	}{
		{0, `{"set":{"role":"web"},"remove":["old"]}`},
		{0, `{"set":{"a":"1"},"remove":["a"]}`},
		{0, `{}`},
		{0, `{"set":{"bad key":"x"}}`},
		{0, `{"remove":[""]}`},
		{1, `{"kernel":"http://10.0.0.1/vmlinuz","initrds":["initrd.img"],"cmdline":"console=ttyS0"}`},
		{1, `{"kernel":"../x"}`},
		{1, `{"kernel":"vmlinuz","cmdline":"x\r\ny"}`},
		{1, `{"cmdline":"x"}`},
		{2, ``},
	} {
		f.Add(s.route, []byte(s.body))
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		switch route % 3 {
		case 0:
			e.check(t, "POST", "/api/v1/hosts/web1/labels", body)
		case 1:
			e.check(t, "PUT", "/api/v1/hosts/web1/boot", body)
		case 2:
			e.check(t, "DELETE", "/api/v1/hosts/web1/boot", body)
		}
	})
}

// FuzzParseHostFile: any file either fails with an error or yields hosts that the server
// would accept on their own (validation is shared), never a panic.
func FuzzParseHostFile(f *testing.F) {
	f.Add("hosts.yaml", []byte("hosts:\n  - id: web1\n    macs: ['52:54:00:00:00:01']\n    labels: {role: web}\n"))
	f.Add("hosts.yaml", []byte("- &a {macs: ['52:54:00:00:00:01'], id: a}\n- <<: *a\n  id: b\n  macs: ['52:54:00:00:00:02']\n"))
	f.Add("hosts.yaml", []byte("- macs: [525400000001]\n  boot: {kernel: vmlinuz}\n"))
	f.Add("hosts.json", []byte(`{"hosts":[{"macs":["52:54:00:00:00:01"]}]}`))
	f.Add("hosts.csv", []byte("mac,ip,hostname,labels\n52:54:00:00:00:01,10.0.0.1,web1,role=web;rack=r1\n"))
	f.Add("hosts", []byte("mac,boot_kernel,boot_initrds\n52:54:00:00:00:01,vmlinuz,a;b\n"))
	f.Add("hosts.csv", []byte("mac\n\"52:54:00:00:00:01\n"))
	f.Add("hosts.yaml", []byte("a: &a [*a]\n"))
	f.Add("hosts.yaml", []byte("--- \n...\n---\n"))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		specs, lines, err := admin.ParseHostFile(name, data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if len(specs) == 0 || len(lines) != len(specs) {
			t.Fatalf("no error, %d hosts, %d lines", len(specs), len(lines))
		}
		for i, s := range specs {
			if _, err := s.Host(); err != nil {
				t.Fatalf("host %d passed the file check but not validation: %v", i, err)
			}
		}
	})
}
