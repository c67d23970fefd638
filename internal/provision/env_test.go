package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
)

const (
	hostID    = "node-1"
	hostMAC   = "52:54:00:12:34:56"
	hostIP    = "10.0.0.5"
	otherIP   = "10.0.0.9"
	imageName = "debian-12"
	imageSum  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	serverURL = "http://10.0.0.1:8080"
)

// fakeClock is the provisioner's clock in tests: time moves only when a test says.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeBMC records power and boot-device calls; failures makes the next calls fail.
// state is what PowerStatus reports (on unless set).
type fakeBMC struct {
	mu       sync.Mutex
	calls    []string
	failures int
	state    bmc.PowerState
}

func (b *fakeBMC) PowerStatus(_ context.Context, id string) (bmc.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, id+" status")
	st := b.state
	if st == "" {
		st = bmc.PowerOn
	}
	return bmc.Result{HostID: id, State: st}, nil
}

func (b *fakeBMC) setState(s bmc.PowerState) {
	b.mu.Lock()
	b.state = s
	b.mu.Unlock()
}

func (b *fakeBMC) Power(_ context.Context, id string, a bmc.PowerAction) (bmc.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, id+" power "+string(a))
	if b.failures > 0 {
		b.failures--
		return bmc.Result{}, errors.New("BMC unreachable")
	}
	if a == bmc.ActionOn || a == bmc.ActionCycle {
		b.state = bmc.PowerOn
	}
	return bmc.Result{HostID: id}, nil
}

func (b *fakeBMC) SetBootDevice(_ context.Context, id string, o bmc.BootOptions) (bmc.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, id+" bootdev "+o.String())
	if b.failures > 0 {
		b.failures--
		return bmc.Result{}, errors.New("BMC unreachable")
	}
	return bmc.Result{HostID: id}, nil
}

func (b *fakeBMC) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.calls
	b.calls = nil
	return c
}

// storeImages is Images backed by the store alone (the catalog's file checks are the
// images package's business).
type storeImages struct{ s *inventory.BoltStore }

func (i storeImages) Lookup(ctx context.Context, name string) (inventory.Image, error) {
	return i.s.GetImage(ctx, name)
}

// env is a provisioner on a real bbolt inventory, a fake BMC and a fake clock. The
// agent is played by the test through the HTTP handler.
type env struct {
	t     *testing.T
	dir   string
	store *inventory.BoltStore
	p     *Provisioner
	bmc   *fakeBMC
	clock *fakeClock
	mux   *http.ServeMux
	cfg   Config
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), bmc: &fakeBMC{}, clock: &fakeClock{t: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}}
	e.open()
	ctx := context.Background()
	_, err := e.store.CreateHosts(ctx, inventory.Host{ID: hostID, MACs: []string{hostMAC}, IP: hostIP,
		BMC: &inventory.BMC{URL: "ipmi://admin@10.0.1.5", Password: "secret"}})
	if err != nil {
		t.Fatal(err)
	}
	e.addImage(imageName, imageSum, inventory.ImageReady)
	t.Cleanup(func() { e.store.Close() })
	return e
}

// open (re)opens the inventory and builds a fresh provisioner on it: a restart.
func (e *env) open() {
	e.t.Helper()
	st, err := inventory.Open(filepath.Join(e.dir, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(e.dir, "secret.key")})
	if err != nil {
		e.t.Fatal(err)
	}
	e.store = st
	e.cfg = Config{Store: st, BMC: e.bmc, Images: storeImages{st}, ServerURL: serverURL, Now: e.clock.Now}
	e.p, err = New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.mux = http.NewServeMux()
	e.p.Register(e.mux)
}

// reconfigure builds the provisioner again with mod applied to its Config, on the same
// inventory.
func (e *env) reconfigure(mod func(*Config)) {
	e.t.Helper()
	mod(&e.cfg)
	p, err := New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.p = p
	e.mux = http.NewServeMux()
	p.Register(e.mux)
}

// restart closes the inventory as a crash would leave it and starts over on the file.
func (e *env) restart() {
	e.t.Helper()
	if err := e.store.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
	if err := e.p.Resume(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) addImage(name, sum string, status inventory.ImageStatus) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.store.CreateImage(ctx, inventory.Image{Name: name, Source: "upload", SHA256: sum, Format: inventory.FormatRaw}); err != nil {
		e.t.Fatal(err)
	}
	e.setImage(name, status, "")
}

func (e *env) setImage(name string, status inventory.ImageStatus, msg string) {
	e.t.Helper()
	_, err := e.store.UpdateImage(context.Background(), name, func(im *inventory.Image) error {
		im.Status, im.Error = status, msg
		if status == inventory.ImageReady {
			im.Size = 4 << 20
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) host() inventory.Host {
	e.t.Helper()
	h, err := e.store.GetHost(context.Background(), hostID)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// setState puts the host in a state directly, as an earlier life would have left it.
func (e *env) setState(s inventory.State) {
	e.t.Helper()
	if _, err := e.store.UpdateHost(context.Background(), hostID, func(h *inventory.Host) error { h.State = s; return nil }); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) reconcile() {
	e.t.Helper()
	if err := e.p.Reconcile(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) wantState(s inventory.State, phase inventory.OpPhase) inventory.Host {
	e.t.Helper()
	h := e.host()
	if h.State != s {
		e.t.Fatalf("state = %s (%s), want %s", h.State, h.StateReason, s)
	}
	if phase != "" && (h.Operation == nil || h.Operation.Phase != phase) {
		e.t.Fatalf("operation = %+v, want phase %s", h.Operation, phase)
	}
	return h
}

// boot plays iPXE fetching the host's script: a fresh agent token.
func (e *env) boot() string {
	e.t.Helper()
	args, err := e.p.AgentArgs(context.Background(), e.host(), hostMAC, netip.MustParseAddr(hostIP))
	if err != nil {
		e.t.Fatal(err)
	}
	tok, ok := strings.CutPrefix(args, agentapi.ParamToken+"=")
	if !ok {
		e.t.Fatalf("AgentArgs = %q", args)
	}
	return tok
}

// call posts body to the agent API as if from src with token.
func (e *env) call(path, token, src string, body any) *httptest.ResponseRecorder {
	e.t.Helper()
	buf, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(buf))
	req.RemoteAddr = src + ":40000"
	req.Header.Set("Content-Type", agentapi.ContentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	e.mux.ServeHTTP(rec, req)
	return rec
}

func testFacts() agentapi.Facts {
	return agentapi.Facts{
		System: agentapi.System{UUID: "8c2e4a4e-0e7a-4f9a-9d51-1f2e3d4c5b6a", Vendor: "QEMU", Product: "Standard PC"},
		CPU:    agentapi.CPU{Count: 2},
		Memory: agentapi.Memory{InstalledBytes: 2 << 30, UsableBytes: 1900 << 20},
		Disks:  []agentapi.Disk{{Name: "vda", SizeBytes: 10 << 30}},
		NICs:   []agentapi.NIC{{Name: "eth0", MAC: hostMAC, Carrier: true, Boot: true}},
	}
}

func (e *env) hello(token string) (agentapi.Plan, int) {
	e.t.Helper()
	rec := e.call(agentapi.PathHello, token, hostIP, agentapi.Hello{MAC: hostMAC, AgentVersion: "test", BootID: "b1", IP: hostIP, Facts: testFacts()})
	var p agentapi.Plan
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			e.t.Fatal(err)
		}
	}
	return p, rec.Code
}

func (e *env) mustHello(token string) agentapi.Plan {
	e.t.Helper()
	p, code := e.hello(token)
	if code != http.StatusOK {
		e.t.Fatalf("hello: %d", code)
	}
	return p
}

func (e *env) result(token string, r agentapi.Result) int {
	e.t.Helper()
	return e.call(agentapi.PathResult, token, hostIP, r).Code
}

func (e *env) progress(token string, p agentapi.Progress) int {
	e.t.Helper()
	return e.call(agentapi.PathProgress, token, hostIP, p).Code
}

func (e *env) events() []inventory.Event {
	e.t.Helper()
	evs, err := e.store.Events(context.Background(), hostID, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// transitions lists the state changes on the timeline as "from→to".
func (e *env) transitions() []string {
	var out []string
	for _, ev := range e.events() {
		if ev.Type == EventState {
			out = append(out, ev.Fields["from"]+"→"+ev.Fields["to"])
		}
	}
	return out
}

func hasEvent(evs []inventory.Event, typ, substr string) bool {
	for _, e := range evs {
		if e.Type == typ && strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}

func dumpEvents(evs []inventory.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s %s\n", e.Type, e.Message)
	}
	return b.String()
}
