package ipxe

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/trust"
)

// fakeStore is the in-memory Store the handler tests use.
type fakeStore struct {
	mu      sync.Mutex
	hosts   []inventory.Host
	leases  map[string]string // IP -> host ID
	events  map[string][]inventory.Event
	lookups int
}

func newFakeStore(hosts ...inventory.Host) *fakeStore {
	return &fakeStore{hosts: hosts, leases: map[string]string{}, events: map[string][]inventory.Event{}}
}

func (s *fakeStore) HostByMAC(_ context.Context, mac string) (inventory.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups++
	for _, h := range s.hosts {
		if h.HasMAC(mac) {
			return h.Clone(), nil
		}
	}
	return inventory.Host{}, fmt.Errorf("host with MAC %s: %w", mac, inventory.ErrNotFound)
}

func (s *fakeStore) HostByIP(_ context.Context, ip string) (inventory.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups++
	for _, h := range s.hosts {
		if h.IP == ip || s.leases[ip] == h.ID {
			return h.Clone(), nil
		}
	}
	return inventory.Host{}, fmt.Errorf("host with IP %s: %w", ip, inventory.ErrNotFound)
}

func (s *fakeStore) ListHosts(context.Context) ([]inventory.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []inventory.Host
	for _, h := range s.hosts {
		out = append(out, h.Clone())
	}
	return out, nil
}

// newGate is the trust gate over store, as serve builds it in server mode.
func newGate(t testing.TB, store trust.Store) *trust.Gate {
	t.Helper()
	g, err := trust.New(trust.Config{Mode: trust.ModeServer, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (s *fakeStore) AppendEvent(_ context.Context, hostID string, e inventory.Event) (inventory.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.Seq = uint64(len(s.events[hostID]) + 1)
	s.events[hostID] = append(s.events[hostID], e)
	return e, nil
}

func (s *fakeStore) RecordEvents(ctx context.Context, evs ...inventory.HostEvent) error {
	for _, e := range evs {
		if _, err := s.AppendEvent(ctx, e.HostID, e.Event); err != nil {
			return err
		}
	}
	return nil
}

func (s *fakeStore) eventsOf(id string) []inventory.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]inventory.Event(nil), s.events[id]...)
}

func (s *fakeStore) lookupCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups
}

const (
	hostIP   = "10.0.0.5"
	leasedIP = "10.0.0.77"
	otherIP  = "10.0.0.9"
)

type fixture struct {
	store  *fakeStore
	h      *Handler
	reg    *prometheus.Registry
	assets string // DATA_DIR/assets
}

func newFixture(t *testing.T, mod func(*HandlerConfig)) *fixture {
	t.Helper()
	store := newFakeStore(inventory.Host{
		ID: "node-1", MACs: []string{testMAC}, IP: hostIP, State: inventory.StateProvisioning,
		Boot: &inventory.BootProfile{Kernel: "debian/vmlinuz", Initrds: []string{"debian/initrd.gz"}, Cmdline: "console=ttyS0"},
	}, inventory.Host{ID: "node-2", MACs: []string{"52:54:00:00:00:02"}, State: inventory.StateProvisioned})
	store.leases[leasedIP] = "node-1"

	assets := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(assets, "debian"), 0o755))
	must(t, os.WriteFile(filepath.Join(assets, "debian", "vmlinuz"), []byte("0123456789abcdefghij"), 0o644))
	secret := filepath.Join(t.TempDir(), "secret")
	must(t, os.WriteFile(secret, []byte("top secret"), 0o644))
	must(t, os.Symlink(secret, filepath.Join(assets, "escape")))
	root, err := os.OpenRoot(assets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Close() })

	reg := prometheus.NewRegistry()
	cfg := HandlerConfig{
		Store: store, Binaries: Binaries(), Assets: root.FS(), ServerURL: testServerURL, Registerer: reg,
		Gate: newGate(t, store),
	}
	if mod != nil {
		mod(&cfg)
	}
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{store: store, h: h, reg: reg, assets: assets}
}

// do serves one request from source address ip without a socket.
func (f *fixture) do(method, target, ip string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = net.JoinHostPort(ip, "40000")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

// counterValue reads an unlabelled counter from the fixture's registry.
func (f *fixture) counterValue(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

// counter reads rackboot_http_requests_total{route,code}.
func (f *fixture) counter(t *testing.T, route, code string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rackboot_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func eventTypes(evs []inventory.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func TestScriptRoutes(t *testing.T) {
	f := newFixture(t, nil)
	want, err := RenderScript(ScriptInput{Host: &f.store.hosts[0], MAC: testMAC, ServerURL: testServerURL})
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{
		"/ipxe/boot.ipxe?mac=52:54:00:12:34:56",
		"/ipxe/boot.ipxe?mac=52-54-00-12-34-56", // iPXE's ${mac:hexhyp}
		"/ipxe/525400123456/boot.ipxe",
		"/ipxe/52-54-00-12-34-56/boot.ipxe",
	} {
		t.Run(target, func(t *testing.T) {
			w := f.do("GET", target, hostIP)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if diff := cmp.Diff(string(want.Body), w.Body.String()); diff != "" {
				t.Errorf("script (-want +got):\n%s", diff)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	evs := f.store.eventsOf("node-1")
	if len(evs) != 4 {
		t.Fatalf("events %v, want 4 http.script", eventTypes(evs))
	}
	if diff := cmp.Diff(map[string]string{
		"mac": testMAC, "ip": hostIP, "action": "profile", "state": "provisioning", "keyed": "false", "bound": "",
	}, evs[0].Fields); diff != "" {
		t.Errorf("event fields (-want +got):\n%s", diff)
	}
	if evs[0].Type != EventScript {
		t.Errorf("event type %q", evs[0].Type)
	}
	if got := f.counter(t, RouteScript, "200"); got != 4 {
		t.Errorf("script 200 counter = %v, want 4", got)
	}

	// From an address that is not the host's, a script that boots no agent is still
	// served: it holds no secret.
	w := f.do("GET", "/ipxe/boot.ipxe?mac="+testMAC, otherIP)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
}

func TestScriptRequestErrors(t *testing.T) {
	tests := []struct {
		name        string
		discovery   bool
		target      string
		wantCode    int
		wantLookups bool
		wantBody    string
	}{
		{name: "missing MAC", target: "/ipxe/boot.ipxe", wantCode: 400, wantBody: "not a MAC"},
		{name: "garbage MAC", target: "/ipxe/boot.ipxe?mac=../../etc", wantCode: 400},
		{name: "garbage path MAC", target: "/ipxe/zz:zz/boot.ipxe", wantCode: 400},
		{name: "other file under a MAC", target: "/ipxe/525400123456/other.ipxe", wantCode: 404},
		{name: "unknown MAC, discovery off", target: "/ipxe/boot.ipxe?mac=02:00:00:00:00:01", wantCode: 404, wantLookups: true},
		{name: "unknown MAC, discovery on", discovery: true, target: "/ipxe/boot.ipxe?mac=02:00:00:00:00:01", wantCode: 200, wantLookups: true, wantBody: "discovery is on"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *HandlerConfig) { c.Discovery = tc.discovery })
			w := f.do("GET", tc.target, otherIP)
			if w.Code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.wantCode, w.Body)
			}
			if !strings.Contains(w.Body.String(), tc.wantBody) {
				t.Errorf("body %q lacks %q", w.Body, tc.wantBody)
			}
			if got := f.store.lookupCount() > 0; got != tc.wantLookups {
				t.Errorf("store consulted = %v, want %v (a MAC is validated before any lookup)", got, tc.wantLookups)
			}
		})
	}
}

func TestBinaryRoute(t *testing.T) {
	overlay := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(overlay, "arm64-efi"), 0o755))
	must(t, os.WriteFile(filepath.Join(overlay, ARM64SNPOnlyEFI), []byte("arm64 ipxe"), 0o644))
	bins, err := OpenBinaries(overlay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bins.Close() })
	f := newFixture(t, func(c *HandlerConfig) { c.Binaries = bins })

	for _, name := range []string{UndionlyKPXE, SNPOnlyEFI, IPXEEFI} {
		want, err := fs.ReadFile(Binaries(), name)
		if err != nil {
			t.Fatal(err)
		}
		w := f.do("GET", "/ipxe/bin/"+name, hostIP)
		if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), want) {
			t.Errorf("%s: status %d, %d bytes; want 200 and the %d embedded bytes", name, w.Code, w.Body.Len(), len(want))
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("%s: Content-Type %q", name, ct)
		}
	}
	w := f.do("GET", "/ipxe/bin/"+ARM64SNPOnlyEFI, hostIP)
	if w.Code != 200 || w.Body.String() != "arm64 ipxe" {
		t.Errorf("arm64 from the overlay: status %d body %q", w.Code, w.Body)
	}
	w = f.do("GET", "/ipxe/bin/"+SNPOnlyEFI, hostIP, "Range", "bytes=0-1")
	if w.Code != http.StatusPartialContent || w.Body.String() != "MZ" {
		t.Errorf("Range: status %d body %q, want 206 \"MZ\" (a PE header)", w.Code, w.Body)
	}
	if w := f.do("GET", "/ipxe/bin/nothing.efi", hostIP); w.Code != 404 {
		t.Errorf("missing binary: status %d", w.Code)
	}

	evs := f.store.eventsOf("node-1")
	if len(evs) != 5 {
		t.Fatalf("node-1 events %v, want 5 http.binary", eventTypes(evs))
	}
	if diff := cmp.Diff(map[string]string{
		"file": SNPOnlyEFI, "ip": hostIP, "bytes": "2", "size": "173792", "code": "206", "range": "bytes=0-1",
	}, evs[4].Fields); diff != "" {
		t.Errorf("Range event fields (-want +got):\n%s", diff)
	}
	// An address that belongs to no host leaves no event anywhere.
	f.do("GET", "/ipxe/bin/"+SNPOnlyEFI, otherIP)
	if got := len(f.store.eventsOf("node-1")) + len(f.store.eventsOf("node-2")); got != 5 {
		t.Errorf("%d events after a fetch from an unknown address, want still 5", got)
	}
	// A HEAD (UEFI HTTP boot probes the size first) is answered but is no fetch.
	if w := f.do("HEAD", "/ipxe/bin/"+SNPOnlyEFI, hostIP); w.Code != 200 || w.Header().Get("Content-Length") != "173792" {
		t.Errorf("HEAD: status %d length %q", w.Code, w.Header().Get("Content-Length"))
	}
	if got := len(f.store.eventsOf("node-1")); got != 5 {
		t.Errorf("%d events after a HEAD, want still 5", got)
	}
	if got := f.counter(t, RouteBinary, "200"); got != 6 {
		t.Errorf("binary 200 counter = %v, want 6 (5 GETs and a HEAD)", got)
	}

	// Served from memory with a strong ETag: a client that has the file gets 304, and
	// a resumed download of another version gets the whole file.
	etag := f.do("GET", "/ipxe/bin/"+SNPOnlyEFI, otherIP).Header().Get("Etag")
	if len(etag) != 34 || etag != w.Header().Get("Etag") {
		t.Fatalf("ETag %q, and %q on the Range answer: want one strong ETag", etag, w.Header().Get("Etag"))
	}
	if w := f.do("GET", "/ipxe/bin/"+SNPOnlyEFI, otherIP, "If-None-Match", etag); w.Code != http.StatusNotModified {
		t.Errorf("If-None-Match with the ETag: status %d, want 304", w.Code)
	}
	if w := f.do("GET", "/ipxe/bin/"+SNPOnlyEFI, otherIP, "Range", "bytes=0-1", "If-Range", `"older"`); w.Code != 200 || w.Body.Len() != 173792 {
		t.Errorf("If-Range with another ETag: status %d, %d bytes, want the whole file", w.Code, w.Body.Len())
	}
	if w := f.do("GET", "/ipxe/bin/"+SNPOnlyEFI, otherIP, "Range", "bytes=0-1", "If-Range", etag); w.Code != http.StatusPartialContent {
		t.Errorf("If-Range with the ETag: status %d, want 206", w.Code)
	}
}

// TestFilesFollowTheirDirectory: binaries and assets are kept in memory, and one
// replaced on disk is served within a second (hotfile.DefaultRevalidate).
func TestFilesFollowTheirDirectory(t *testing.T) {
	overlay := t.TempDir()
	must(t, os.WriteFile(filepath.Join(overlay, SNPOnlyEFI), []byte("build one"), 0o644))
	bins, err := OpenBinaries(overlay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bins.Close() })
	f := newFixture(t, func(c *HandlerConfig) { c.Binaries = bins })
	clock := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	f.h.now = func() time.Time { return clock }

	if w := f.do("GET", "/ipxe/bin/"+SNPOnlyEFI, otherIP); w.Body.String() != "build one" {
		t.Fatalf("overlay binary: %d %q", w.Code, w.Body)
	}
	if w := f.do("GET", "/assets/debian/vmlinuz", otherIP); w.Body.String() != "0123456789abcdefghij" {
		t.Fatalf("asset: %d %q", w.Code, w.Body)
	}
	replace := func(path, body string) {
		t.Helper()
		must(t, os.WriteFile(path+".new", []byte(body), 0o644))
		must(t, os.Rename(path+".new", path))
	}
	replace(filepath.Join(overlay, SNPOnlyEFI), "build two")
	replace(filepath.Join(f.assets, "debian", "vmlinuz"), "a new kernel")
	clock = clock.Add(time.Second)
	if w := f.do("GET", "/ipxe/bin/"+SNPOnlyEFI, otherIP); w.Body.String() != "build two" {
		t.Errorf("replaced binary: %d %q", w.Code, w.Body)
	}
	if w := f.do("GET", "/assets/debian/vmlinuz", otherIP); w.Body.String() != "a new kernel" {
		t.Errorf("replaced asset: %d %q", w.Code, w.Body)
	}
	must(t, os.Remove(filepath.Join(overlay, SNPOnlyEFI)))
	clock = clock.Add(time.Second)
	want, _ := fs.ReadFile(Binaries(), SNPOnlyEFI)
	if w := f.do("GET", "/ipxe/bin/"+SNPOnlyEFI, otherIP); !bytes.Equal(w.Body.Bytes(), want) {
		t.Errorf("overlay file removed: %d, %d bytes, want the embedded binary", w.Code, w.Body.Len())
	}
}

func TestAssetRoute(t *testing.T) {
	f := newFixture(t, nil)
	w := f.do("GET", "/assets/debian/vmlinuz", leasedIP)
	if w.Code != 200 || w.Body.String() != "0123456789abcdefghij" {
		t.Fatalf("status %d body %q", w.Code, w.Body)
	}
	w = f.do("GET", "/assets/debian/vmlinuz", leasedIP, "Range", "bytes=10-14")
	if w.Code != http.StatusPartialContent || w.Body.String() != "abcde" {
		t.Fatalf("Range: status %d body %q", w.Code, w.Body)
	}
	evs := f.store.eventsOf("node-1")
	if diff := cmp.Diff([]string{EventAsset, EventAsset}, eventTypes(evs)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{
		"file": "debian/vmlinuz", "ip": leasedIP, "bytes": "5", "size": "20", "code": "206", "range": "bytes=10-14",
	}, evs[1].Fields); diff != "" {
		t.Errorf("event fields (-want +got):\n%s", diff)
	}
}

func TestAssetTraversalRefused(t *testing.T) {
	f := newFixture(t, nil)
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	tests := []struct {
		target   string
		wantCode int
	}{
		{"/assets/escape", http.StatusForbidden}, // symlink out of the root: os.Root refuses
		{"/assets/debian", http.StatusNotFound},  // no directory listings
		{"/assets/..%2f..%2fetc%2fpasswd", http.StatusBadRequest},
		{"/assets/debian%2f..%2f..%2fsecret", http.StatusBadRequest},
		{"/assets/a%5c..%5csecret", http.StatusBadRequest}, // backslashes
		{"/assets/nul%00", http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			w := f.do("GET", tc.target, hostIP)
			if w.Code != tc.wantCode {
				t.Errorf("status %d, want %d: %s", w.Code, tc.wantCode, w.Body)
			}
			if strings.Contains(w.Body.String(), "secret") || strings.Contains(w.Body.String(), "root:") {
				t.Errorf("body leaks a file: %q", w.Body)
			}
		})
	}
	// Over a real connection, with dot segments sent as is: ServeMux cleans the path
	// and redirects out of /assets, so nothing outside DATA_DIR/assets is ever opened.
	for _, raw := range []string{"/assets/../../../../etc/passwd", "/assets/debian/../../escape", "/assets/./../secret"} {
		t.Run("raw "+raw, func(t *testing.T) {
			status, body := rawGET(t, srv.Listener.Addr().String(), raw)
			if strings.HasPrefix(status, "HTTP/1.1 200") || strings.Contains(body, "root:") || strings.Contains(body, "top secret") {
				t.Errorf("%s: %s %q", raw, status, body)
			}
		})
	}
}

// rawGET sends a request line exactly as given, which net/http's client would not.
func rawGET(t *testing.T, addr, target string) (string, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	status, body, _ := strings.Cut(string(b), "\r\n")
	return status, body
}

func TestAssetsNotConfigured(t *testing.T) {
	f := newFixture(t, func(c *HandlerConfig) { c.Assets = nil })
	if w := f.do("GET", "/assets/debian/vmlinuz", hostIP); w.Code != 404 {
		t.Errorf("status %d, want 404", w.Code)
	}
}

// TestPhonehomeRouteGone: /boot/phonehome changed nothing and let anyone write events;
// it is gone (cloud-init phones home to its per-provisioning metadata URL).
func TestPhonehomeRouteGone(t *testing.T) {
	f := newFixture(t, nil)
	for _, m := range []string{"GET", "POST"} {
		if w := f.do(m, "/boot/phonehome?mac="+testMAC, hostIP); w.Code != http.StatusNotFound {
			t.Errorf("%s /boot/phonehome: status %d, want 404", m, w.Code)
		}
	}
	if evs := f.store.eventsOf("node-1"); len(evs) != 0 {
		t.Errorf("events %v, want none", eventTypes(evs))
	}
}

// deadlineRecorder is a ResponseWriter that records the write deadlines the handler
// sets through http.ResponseController.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	deadlines []time.Time
}

func (d *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	d.deadlines = append(d.deadlines, t)
	return nil
}

func TestWriteDeadlines(t *testing.T) {
	f := newFixture(t, func(c *HandlerConfig) { c.ScriptTimeout = 7 * time.Second; c.StallTimeout = time.Minute })
	clock := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	f.h.now = func() time.Time { clock = clock.Add(time.Second); return clock }

	t.Run("script: one fixed deadline, cleared afterwards", func(t *testing.T) {
		d := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
		r := httptest.NewRequest("GET", "/ipxe/boot.ipxe?mac="+testMAC, nil)
		f.h.ServeHTTP(d, r)
		if d.Code != 200 || len(d.deadlines) != 2 {
			t.Fatalf("status %d, deadlines %v", d.Code, d.deadlines)
		}
		if got := d.deadlines[0].Sub(clock); got != 7*time.Second {
			t.Errorf("script deadline %v after the clock, want 7s", got)
		}
		if !d.deadlines[1].IsZero() {
			t.Errorf("deadline left at %v; the next request on the connection would inherit it", d.deadlines[1])
		}
	})
	t.Run("transfer: deadline pushed forward on each write", func(t *testing.T) {
		d := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
		r := httptest.NewRequest("GET", "/ipxe/bin/"+IPXEEFI, nil)
		start := clock
		f.h.ServeHTTP(d, r)
		if d.Code != 200 || d.Body.Len() != 850528 {
			t.Fatalf("status %d, %d bytes", d.Code, d.Body.Len())
		}
		// Served from memory in 256 KiB writes (hotfile.WriteChunk): 850528 bytes is 4
		// of them, each preceded by a fresh deadline, plus the first and the final two.
		if len(d.deadlines) < 4+3 {
			t.Fatalf("%d deadlines set, want one per write", len(d.deadlines))
		}
		for i := 1; i < len(d.deadlines)-1; i++ {
			if !d.deadlines[i].After(d.deadlines[i-1]) {
				t.Fatalf("deadline %d (%v) does not move forward from %v", i, d.deadlines[i], d.deadlines[i-1])
			}
		}
		if got := d.deadlines[0].Sub(start); got != time.Minute+time.Second {
			t.Errorf("first deadline %v after start, want the stall timeout", got)
		}
		if last := d.deadlines[len(d.deadlines)-1]; !last.IsZero() {
			t.Errorf("deadline left at %v", last)
		}
	})
}

// TestServeOverTCP runs the handler behind a real http.Server with no WriteTimeout, as
// rackboot serve does, and uses the request's own address as the script's base URL.
func TestServeOverTCP(t *testing.T) {
	f := newFixture(t, func(c *HandlerConfig) { c.ServerURL = "" })
	mux := http.NewServeMux()
	f.h.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ReadHeaderTimeout = 10 * time.Second
	srv.Start()
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/ipxe/boot.ipxe?mac=" + testMAC)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "set base "+srv.URL+"\n") {
		t.Fatalf("status %d, script:\n%s", resp.StatusCode, body)
	}
	resp, err = http.Get(srv.URL + "/ipxe/bin/" + SNPOnlyEFI)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want, _ := fs.ReadFile(Binaries(), SNPOnlyEFI)
	if !bytes.Equal(got, want) {
		t.Errorf("snponly.efi over TCP: %d bytes, want the %d embedded bytes", len(got), len(want))
	}
}

func TestNewHandlerValidates(t *testing.T) {
	for name, cfg := range map[string]HandlerConfig{
		"no store":    {Binaries: Binaries()},
		"no binaries": {Store: newFakeStore()},
		"bad URL":     {Store: newFakeStore(), Binaries: Binaries(), ServerURL: "10.0.0.1:8080"},
	} {
		if _, err := NewHandler(cfg); err == nil {
			t.Errorf("%s: NewHandler succeeded", name)
		}
	}
	// Two handlers on one registry share the metrics instead of failing.
	reg := prometheus.NewRegistry()
	for i := 0; i < 2; i++ {
		if _, err := NewHandler(HandlerConfig{Store: newFakeStore(), Binaries: Binaries(), Registerer: reg}); err != nil {
			t.Fatalf("handler %d: %v", i, err)
		}
	}
}

// TestScriptEventsBudget: anyone may fetch a host's (secret-free) script, but one source
// address writes a bounded number of events to that host's timeline; the rest are
// counted, so a stranger cannot push the host's history out.
func TestScriptEventsBudget(t *testing.T) {
	f := newFixture(t, nil)
	for range 100 {
		if w := f.do("GET", "/ipxe/boot.ipxe?mac="+testMAC, otherIP); w.Code != http.StatusOK {
			t.Fatalf("status %d", w.Code)
		}
	}
	if n := len(f.store.eventsOf("node-1")); n != scriptEventBurst {
		t.Errorf("%d events from 100 fetches, want the burst of %d", n, scriptEventBurst)
	}
	if got := f.counterValue(t, "rackboot_http_script_events_suppressed_total"); got != 100-scriptEventBurst {
		t.Errorf("suppressed counter %v, want %d", got, 100-scriptEventBurst)
	}
	// The host's own fetches have a budget of their own.
	if w := f.do("GET", "/ipxe/boot.ipxe?mac="+testMAC, hostIP); w.Code != http.StatusOK {
		t.Fatal(w.Code)
	}
	if n := len(f.store.eventsOf("node-1")); n != scriptEventBurst+1 {
		t.Errorf("the host's own fetch was not recorded (%d events)", n)
	}
}
