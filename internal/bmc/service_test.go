package bmc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rackboot/rackboot/internal/inventory"
)

// memStore is the part of the inventory the Service uses, in memory.
type memStore struct {
	mu     sync.Mutex
	creds  map[string]inventory.BMC
	events map[string][]inventory.Event
}

func newMemStore() *memStore {
	return &memStore{creds: map[string]inventory.BMC{}, events: map[string][]inventory.Event{}}
}

func (m *memStore) add(id, url, pw string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.creds[id] = inventory.BMC{URL: url, Password: pw, PasswordSet: pw != ""}
}

func (m *memStore) BMCCredentials(_ context.Context, id string) (inventory.BMC, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.creds[id]
	if !ok {
		return inventory.BMC{}, fmt.Errorf("host %s: %w", id, inventory.ErrNotFound)
	}
	return c, nil
}

func (m *memStore) AppendEvent(_ context.Context, id string, e inventory.Event) (inventory.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.Seq = uint64(len(m.events[id]) + 1)
	m.events[id] = append(m.events[id], e)
	return e, nil
}

func (m *memStore) eventsOf(id string) []inventory.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]inventory.Event(nil), m.events[id]...)
}

// fakeBackend answers from per-host behaviour functions; the default is a healthy BMC.
type fakeBackend struct {
	mu       sync.Mutex
	state    map[string]PowerState // by endpoint host
	behave   map[string]func(ctx context.Context, call int) error
	calls    map[string]int
	times    map[string][]time.Time
	running  int
	maxSeen  int
	started  chan string // each call's host, if not nil
	lastBoot map[string]BootOptions
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{state: map[string]PowerState{}, behave: map[string]func(context.Context, int) error{},
		calls: map[string]int{}, times: map[string][]time.Time{}, lastBoot: map[string]BootOptions{}}
}

func (f *fakeBackend) enter(ctx context.Context, t Target) error {
	h := t.Endpoint.Host
	f.mu.Lock()
	f.calls[h]++
	n := f.calls[h]
	f.times[h] = append(f.times[h], time.Now())
	f.running++
	f.maxSeen = max(f.maxSeen, f.running)
	fn := f.behave[h]
	started := f.started
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.running--; f.mu.Unlock() }()
	if started != nil {
		started <- h
	}
	if fn != nil {
		return fn(ctx, n)
	}
	return nil
}

func (f *fakeBackend) PowerState(ctx context.Context, t Target) (PowerState, error) {
	if err := f.enter(ctx, t); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.state[t.Endpoint.Host]; ok {
		return s, nil
	}
	return PowerOff, nil
}

func (f *fakeBackend) SetPower(ctx context.Context, t Target, a PowerAction) error {
	if err := f.enter(ctx, t); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch a {
	case ActionOff, ActionSoft:
		f.state[t.Endpoint.Host] = PowerOff
	default:
		f.state[t.Endpoint.Host] = PowerOn
	}
	return nil
}

func (f *fakeBackend) SetBootDevice(ctx context.Context, t Target, o BootOptions) error {
	if err := f.enter(ctx, t); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastBoot[t.Endpoint.Host] = o
	return nil
}

func (f *fakeBackend) set(host string, fn func(ctx context.Context, call int) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.behave[host] = fn
}

func (f *fakeBackend) callsTo(host string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[host]
}

type harness struct {
	svc   *Service
	store *memStore
	be    *fakeBackend
	reg   *prometheus.Registry
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// newHarness starts a Service over a fake backend and an in-memory store with hosts
// h0..h(n-1) whose BMCs are ipmi://admin@h<i>.
func newHarness(t *testing.T, n int, cfg Config) *harness {
	t.Helper()
	h := &harness{store: newMemStore(), be: newFakeBackend(), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	for i := 0; i < n; i++ {
		h.store.add(fmt.Sprintf("h%d", i), fmt.Sprintf("ipmi://admin@h%d", i), fmt.Sprintf("pw-secret-%d", i))
	}
	cfg.Store, cfg.Backend, cfg.Registerer = h.store, h.be, h.reg
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	<-svc.started
	return h
}

func (h *harness) counter(protocol string, op Operation, outcome string) float64 {
	return testutil.ToFloat64(h.svc.m.ops.WithLabelValues(protocol, string(op), outcome))
}

func TestPoolBoundsConcurrency(t *testing.T) {
	h := newHarness(t, 10, Config{Workers: 3, Timeout: 10 * time.Second})
	release := make(chan struct{})
	h.be.started = make(chan string, 10)
	for i := 0; i < 10; i++ {
		h.be.set(fmt.Sprintf("h%d", i), func(ctx context.Context, _ int) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := h.svc.Power(context.Background(), fmt.Sprintf("h%d", i), ActionOn)
			errs <- err
		}(i)
	}
	// Three calls start; the other seven wait for a worker.
	for i := 0; i < 3; i++ {
		<-h.be.started
	}
	waitFor(t, "seven operations waiting", func() bool { return testutil.ToFloat64(h.svc.m.waiting) == 7 })
	select {
	case host := <-h.be.started:
		t.Fatalf("a fourth call (%s) started with 3 workers", host)
	default:
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if h.be.maxSeen != 3 {
		t.Fatalf("at most %d calls ran at once, want 3", h.be.maxSeen)
	}
	if got := h.counter("ipmi", "power_on", "ok"); got != 10 {
		t.Fatalf("power_on ok = %v, want 10", got)
	}
}

// TestHungBackendDoesNotBlockOthers: a backend that ignores its context never returns;
// the caller still gets ErrTimeout at the deadline, the worker is free for the next
// host, and other hosts' operations complete while it hangs.
func TestHungBackendDoesNotBlockOthers(t *testing.T) {
	h := newHarness(t, 11, Config{Workers: 1, Timeout: 300 * time.Millisecond, QueueTimeout: 10 * time.Second})
	hung := make(chan struct{})
	t.Cleanup(func() { close(hung) })
	entered := make(chan struct{})
	h.be.set("h0", func(context.Context, int) error {
		close(entered)
		<-hung // ignores ctx: a wedged library call
		return nil
	})
	deadErr := make(chan error, 1)
	go func() {
		_, err := h.svc.PowerStatus(context.Background(), "h0")
		deadErr <- err
	}()
	<-entered
	// With the only worker stuck on h0, these wait for h0's deadline, then all run.
	for i := 1; i <= 10; i++ {
		if _, err := h.svc.Power(context.Background(), fmt.Sprintf("h%d", i), ActionCycle); err != nil {
			t.Fatalf("h%d: %v", i, err)
		}
	}
	err := <-deadErr
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrTimeout) || e.Attempts != 1 || e.HostID != "h0" {
		t.Fatalf("hung host: %#v", err)
	}
	if !strings.Contains(err.Error(), "no answer from the BMC at h0:623 within 300ms") {
		t.Fatalf("message: %v", err)
	}
	if testutil.ToFloat64(h.svc.m.abandoned) != 1 {
		t.Fatal("the abandoned call is not counted")
	}
	if h.counter("ipmi", OpPowerStatus, "timeout") != 1 || h.counter("ipmi", "power_cycle", "ok") != 10 {
		t.Fatal("metrics do not show 1 timeout and 10 cycles")
	}
	ev := h.store.eventsOf("h0")
	if len(ev) != 1 || ev[0].Type != "bmc.error" || ev[0].Fields["outcome"] != "timeout" {
		t.Fatalf("h0 timeline: %+v", ev)
	}
}

func TestRetries(t *testing.T) {
	unreachable := newError(ErrUnreachable, nil, "connection refused")
	cases := []struct {
		name         string
		action       PowerAction // "" = status
		fail         error
		failures     int
		maxAttempts  int
		wantAttempts int
		wantErr      error
	}{
		{"transient then ok", "", unreachable, 2, 0, 3, nil},
		{"transient forever", "", unreachable, 99, 0, 3, ErrUnreachable},
		{"bmc failure retried when idempotent", ActionOff, newError(ErrBMCFailure, nil, "HTTP 503"), 1, 0, 2, nil},
		{"bmc failure not retried for cycle", ActionCycle, newError(ErrBMCFailure, nil, "HTTP 500"), 1, 0, 1, ErrBMCFailure},
		{"unreachable retried for cycle", ActionCycle, unreachable, 1, 0, 2, nil},
		{"auth never retried", ActionOn, newError(ErrAuth, nil, "HTTP 401"), 99, 0, 1, ErrAuth},
		{"rejected never retried", "", newError(ErrRejected, nil, "no"), 99, 0, 1, ErrRejected},
		{"unclassified counts as bmc failure", "", errors.New("weird"), 1, 0, 2, nil},
		{"retries disabled", "", unreachable, 1, 1, 1, ErrUnreachable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			backoff := 20 * time.Millisecond
			h := newHarness(t, 1, Config{Timeout: 10 * time.Second, Backoff: backoff, MaxAttempts: c.maxAttempts})
			h.be.set("h0", func(_ context.Context, call int) error {
				if call <= c.failures {
					return c.fail
				}
				return nil
			})
			var (
				res Result
				err error
			)
			if c.action == "" {
				res, err = h.svc.PowerStatus(context.Background(), "h0")
			} else {
				res, err = h.svc.Power(context.Background(), "h0", c.action)
			}
			if c.wantErr == nil && err != nil || c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			attempts := res.Attempts
			var e *Error
			if errors.As(err, &e) {
				attempts = e.Attempts
			}
			if attempts != c.wantAttempts || h.be.callsTo("h0") != c.wantAttempts {
				t.Fatalf("attempts = %d (backend saw %d), want %d", attempts, h.be.callsTo("h0"), c.wantAttempts)
			}
			// Backoff: each retry waits at least half the current backoff (jitter),
			// doubling each time.
			times := h.be.times["h0"]
			for i := 1; i < len(times); i++ {
				minWait := backoff << (i - 1) / 2
				if gap := times[i].Sub(times[i-1]); gap < minWait {
					t.Fatalf("retry %d came %v after the previous attempt, want at least %v", i, gap, minWait)
				}
			}
			op := OpPowerStatus
			if c.action != "" {
				op = powerOp(c.action)
			}
			if c.wantAttempts == 1 {
				if n := testutil.CollectAndCount(h.svc.m.retries); n != 0 {
					t.Fatalf("retries metric has %d series for a single attempt", n)
				}
			} else if got := testutil.ToFloat64(h.svc.m.retries.WithLabelValues("ipmi", string(op))); got != float64(c.wantAttempts-1) {
				t.Fatalf("retries metric = %v, want %d", got, c.wantAttempts-1)
			}
		})
	}
}

// TestRetryStopsAtDeadline: a BMC that keeps refusing gets retried only while the
// call's deadline allows, and the caller hears about it within that deadline.
func TestRetryStopsAtDeadline(t *testing.T) {
	h := newHarness(t, 1, Config{Timeout: 200 * time.Millisecond, Backoff: 150 * time.Millisecond, MaxAttempts: 10})
	h.be.set("h0", func(context.Context, int) error { return newError(ErrUnreachable, nil, "connection refused") })
	_, err := h.svc.PowerStatus(context.Background(), "h0")
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v", err)
	}
	if e.Attempts >= 10 || e.Elapsed > 200*time.Millisecond {
		t.Fatalf("%d attempts in %v: retries went past the deadline", e.Attempts, e.Elapsed)
	}
}

func TestQueueTimeoutIsBusy(t *testing.T) {
	h := newHarness(t, 2, Config{Workers: 1, Timeout: 10 * time.Second, QueueTimeout: 50 * time.Millisecond})
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	h.be.set("h0", func(ctx context.Context, _ int) error {
		entered <- struct{}{}
		<-release
		return nil
	})
	first := make(chan error, 1)
	go func() { _, err := h.svc.Power(context.Background(), "h0", ActionOn); first <- err }()
	<-entered
	// Another host: no free worker.
	_, err := h.svc.Power(context.Background(), "h1", ActionOn)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "all 1 BMC workers stayed busy for 50ms") {
		t.Fatalf("other host: %v", err)
	}
	// The same host: its operation is still running.
	_, err = h.svc.Power(context.Background(), "h0", ActionOff)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "another BMC operation on host h0") {
		t.Fatalf("same host: %v", err)
	}
	// The caller's own cancellation is not "busy".
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.svc.Power(ctx, "h1", ActionOn); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if h.counter("ipmi", "power_on", "busy") != 1 || h.counter("ipmi", "power_off", "busy") != 1 {
		t.Fatal("busy outcomes not counted")
	}
}

func TestSameHostSerialised(t *testing.T) {
	h := newHarness(t, 1, Config{Workers: 4, Timeout: 10 * time.Second})
	h.be.started = make(chan string, 8)
	release := make(chan struct{})
	h.be.set("h0", func(context.Context, int) error { <-release; return nil })
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); h.svc.Power(context.Background(), "h0", ActionOn) }()
	}
	<-h.be.started
	waitFor(t, "three operations queued behind the first", func() bool { return testutil.ToFloat64(h.svc.m.waiting) == 3 })
	close(release)
	wg.Wait()
	if h.be.maxSeen != 1 {
		t.Fatalf("%d calls to one BMC ran at once, want 1", h.be.maxSeen)
	}
}

func TestEventsAndMetrics(t *testing.T) {
	h := newHarness(t, 2, Config{Timeout: 5 * time.Second})
	ctx := context.Background()
	h.store.add("nobmc", "", "")
	h.store.add("badurl", "http://x", "pw")

	must := func(_ Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.svc.PowerStatus(ctx, "h0")) // off: recorded (first observation)
	must(h.svc.PowerStatus(ctx, "h0")) // still off: not recorded
	must(h.svc.Power(ctx, "h0", ActionOn))
	must(h.svc.PowerStatus(ctx, "h0")) // on: recorded
	must(h.svc.SetBootDevice(ctx, "h0", BootOptions{Device: BootPXE, UEFI: true}))
	h.be.set("h0", func(context.Context, int) error { return newError(ErrAuth, nil, "refused user admin") })
	if _, err := h.svc.PowerStatus(ctx, "h0"); !errors.Is(err, ErrAuth) {
		t.Fatal(err)
	}
	if _, err := h.svc.PowerStatus(ctx, "h0"); !errors.Is(err, ErrAuth) { // same failure again: not recorded
		t.Fatal(err)
	}
	if _, err := h.svc.Power(ctx, "h0", ActionOff); !errors.Is(err, ErrAuth) {
		t.Fatal(err)
	}

	type ev struct{ Type, Message, Op, Outcome string }
	var got []ev
	for _, e := range h.store.eventsOf("h0") {
		got = append(got, ev{e.Type, e.Message, e.Fields["operation"], e.Fields["outcome"]})
		if e.Fields["bmc"] != "ipmi://admin@h0:623" {
			t.Errorf("event %q: bmc field %q", e.Message, e.Fields["bmc"])
		}
	}
	want := []ev{
		{"bmc.power", "power is off", "power_status", ""},
		{"bmc.power", "power on: done", "power_on", ""},
		{"bmc.power", "power is on", "power_status", ""},
		{"bmc.bootdev", "next boot: pxe once uefi", "bootdev", ""},
		{"bmc.error", "host h0: power status via ipmi://admin@h0:623: refused user admin", "power_status", "auth"},
		{"bmc.error", "host h0: power off via ipmi://admin@h0:623: refused user admin", "power_off", "auth"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("timeline (-want +got):\n%s", d)
	}

	// Host-level errors.
	if _, err := h.svc.Power(ctx, "nobmc", ActionOn); !errors.Is(err, ErrNoBMC) || !strings.Contains(err.Error(), "rackboot host bmc nobmc --bmc URL") {
		t.Fatalf("no BMC: %v", err)
	}
	if _, err := h.svc.Power(ctx, "badurl", ActionOn); !errors.Is(err, ErrInvalidURL) {
		t.Fatalf("bad URL: %v", err)
	}
	if _, err := h.svc.Power(ctx, "ghost", ActionOn); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("unknown host: %v", err)
	}
	if _, err := h.svc.Power(ctx, "h1", PowerAction("explode")); !errors.Is(err, inventory.ErrInvalid) {
		t.Fatalf("bad action: %v", err)
	}
	if _, err := h.svc.SetBootDevice(ctx, "h1", BootOptions{Device: "floppy"}); !errors.Is(err, inventory.ErrInvalid) {
		t.Fatalf("bad device: %v", err)
	}

	expected := `
# HELP rackboot_bmc_operations_total BMC operations by protocol, operation and outcome (ok, auth, unreachable, timeout, tls, rejected, bmc_error, busy, ...).
# TYPE rackboot_bmc_operations_total counter
rackboot_bmc_operations_total{operation="bootdev",outcome="ok",protocol="ipmi"} 1
rackboot_bmc_operations_total{operation="power_off",outcome="auth",protocol="ipmi"} 1
rackboot_bmc_operations_total{operation="power_on",outcome="invalid_url",protocol="none"} 1
rackboot_bmc_operations_total{operation="power_on",outcome="no_bmc",protocol="none"} 1
rackboot_bmc_operations_total{operation="power_on",outcome="ok",protocol="ipmi"} 1
rackboot_bmc_operations_total{operation="power_status",outcome="auth",protocol="ipmi"} 2
rackboot_bmc_operations_total{operation="power_status",outcome="ok",protocol="ipmi"} 3
`
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(expected), "rackboot_bmc_operations_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(h.svc.m.duration); n != 4 {
		t.Fatalf("%d duration series, want 4 (status, on, bootdev, off)", n)
	}
	if c := histogramCount(t, h.reg, "power_status"); c != 5 {
		t.Fatalf("power_status observations = %d, want 5", c)
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, op string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rackboot_bmc_operation_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" && l.GetValue() == op {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// TestPasswordsNeverLeak: a backend whose error echoes the password (as a careless
// library might) still leaves it out of the returned error, the timeline and the logs.
func TestPasswordsNeverLeak(t *testing.T) {
	h := newHarness(t, 1, Config{Timeout: 5 * time.Second})
	h.be.set("h0", func(context.Context, int) error {
		return newError(ErrRejected, nil, "BMC said: bad request body {\"Password\":\"pw-secret-0\"}")
	})
	_, err := h.svc.Power(context.Background(), "h0", ActionOn)
	if err == nil || !errors.Is(err, ErrRejected) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "pw-secret-0") || !strings.Contains(err.Error(), "REDACTED") {
		t.Fatalf("error: %v", err)
	}
	for _, e := range h.store.eventsOf("h0") {
		if strings.Contains(fmt.Sprint(e), "pw-secret-0") {
			t.Fatalf("event: %+v", e)
		}
	}
	h.be.set("h0", nil)
	if _, err := h.svc.Power(context.Background(), "h0", ActionOn); err != nil {
		t.Fatal(err)
	}
	logs := h.logs.String()
	if strings.Contains(logs, "pw-secret") {
		t.Fatalf("logs carry the password:\n%s", logs)
	}
	if !strings.Contains(logs, "bmc=ipmi://admin@h0:623") {
		t.Fatalf("logs do not name the BMC:\n%s", logs)
	}
}

func TestNotRunning(t *testing.T) {
	store := newMemStore()
	store.add("h0", "ipmi://admin@h0", "pw")
	svc, err := New(Config{Store: store, Backend: newFakeBackend()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PowerStatus(context.Background(), "h0"); !errors.Is(err, ErrStopped) {
		t.Fatalf("before Start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- svc.Start(ctx) }()
	<-svc.started
	if _, err := svc.PowerStatus(context.Background(), "h0"); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if _, err := svc.PowerStatus(context.Background(), "h0"); !errors.Is(err, ErrStopped) {
		t.Fatalf("after stop: %v", err)
	}
	if err := svc.Start(context.Background()); err == nil {
		t.Fatal("second Start accepted")
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a store accepted")
	}
}

// waitFor polls cond; the condition is a state the code under test reaches by itself,
// so the wait is bounded only to fail a broken test instead of hanging it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
