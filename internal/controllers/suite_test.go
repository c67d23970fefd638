package controllers

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/lab"
	"github.com/rackboot/rackboot/internal/lab/mgmt"
)

// The envtest control plane (kube-apiserver and etcd built by `make envtest`) is
// shared by the tests of this package: starting one costs seconds. Each test works in
// its own namespace with its own managers, whose caches are limited to it.
type sharedEnv struct {
	once sync.Once
	env  *envtest.Environment
	cfg  *rest.Config
	c    client.Client
	err  error
}

var shared sharedEnv

func TestMain(m *testing.M) {
	// controller-runtime and envtest log through a process-wide logger; tests keep it
	// to warnings so a failure's output stays readable.
	logf.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	code := m.Run()
	if shared.env != nil {
		shared.env.Stop()
	}
	os.Exit(code)
}

// repoRoot is the module root (two directories up: internal/controllers).
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}

// capiDir is where the module cache holds sigs.k8s.io/cluster-api (its CRDs and
// webhook manifests).
func capiDir(t testing.TB) string {
	t.Helper()
	dir, err := mgmt.CAPIDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// loadCRDs reads CRD manifests (mgmt.LoadCRDs: with Cluster API's contract labels).
func loadCRDs(t testing.TB, files ...string) []*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	crds, err := mgmt.LoadCRDs(files...)
	if err != nil {
		t.Fatal(err)
	}
	return crds
}

// env starts (once) the shared control plane with rackboot's CRDs and Cluster API's
// Cluster and Machine CRDs.
func env(t *testing.T) (*rest.Config, client.Client) {
	t.Helper()
	assets := lab.EnvtestAssets(t)
	shared.once.Do(func() {
		root := repoRoot(t)
		capi := capiDir(t)
		crds := loadCRDs(t,
			filepath.Join(root, "config/crd/bases/infrastructure.cluster.x-k8s.io_rackbootclusters.yaml"),
			filepath.Join(root, "config/crd/bases/infrastructure.cluster.x-k8s.io_rackbootmachines.yaml"),
			filepath.Join(root, "config/crd/bases/infrastructure.cluster.x-k8s.io_rackbootmachinetemplates.yaml"),
			filepath.Join(capi, "core/config/crd/bases/cluster.x-k8s.io_clusters.yaml"),
			filepath.Join(capi, "core/config/crd/bases/cluster.x-k8s.io_machines.yaml"),
		)
		shared.env = &envtest.Environment{BinaryAssetsDirectory: assets, CRDs: crds, ErrorIfCRDPathMissing: true}
		start := time.Now()
		shared.cfg, shared.err = shared.env.Start()
		if shared.err != nil {
			return
		}
		scheme, err := NewScheme()
		if err != nil {
			shared.err = err
			return
		}
		shared.c, shared.err = client.New(shared.cfg, client.Options{Scheme: scheme})
		t.Logf("envtest control plane up in %v", time.Since(start).Round(time.Millisecond))
	})
	if shared.err != nil {
		t.Fatalf("starting envtest: %v", shared.err)
	}
	return shared.cfg, shared.c
}

// newNamespace creates a namespace for one test.
func newNamespace(t *testing.T, c client.Client, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// newStore opens a real bbolt inventory with n available hosts labelled labels, named
// PREFIX-NN with IPs 10.R.0.NN.
func newStore(t *testing.T, prefix string, n int, labels map[string]string) *inventory.BoltStore {
	t.Helper()
	s, err := inventory.Open(filepath.Join(t.TempDir(), "inventory.db"), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	addTestHosts(t, s, prefix, 0, n, labels)
	return s
}

func addTestHosts(t *testing.T, s *inventory.BoltStore, prefix string, from, n int, labels map[string]string) {
	t.Helper()
	// Distinct prefixes give distinct MACs and subnets.
	h := fnv.New32a()
	h.Write([]byte(prefix))
	sum := h.Sum32()
	hosts := make([]inventory.Host, 0, n)
	for i := from; i < from+n; i++ {
		hosts = append(hosts, inventory.Host{
			ID:     fmt.Sprintf("%s-%02d", prefix, i),
			MACs:   []string{fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", sum>>8&0xff, sum&0xff, i/256, i%256)},
			IP:     fmt.Sprintf("10.%d.%d.%d", sum&0xff, i/250, 1+i%250),
			State:  inventory.StateAvailable,
			Labels: labels,
		})
	}
	if _, err := s.CreateHosts(context.Background(), hosts...); err != nil {
		t.Fatal(err)
	}
}

// startManager runs a rack's controllers until the test ends.
func startManager(t *testing.T, cfg Config) (*Manager, context.CancelFunc) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Start(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			// A manager that did not stop within its grace period leaves the goroutines
			// that held it up behind: show where they are stuck.
			var dump strings.Builder
			pprof.Lookup("goroutine").WriteTo(&dump, 1)
			t.Errorf("manager of rack %s: %v\ngoroutines:\n%s", cfg.Rack, err, dump.String())
		}
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(stop) })
	return m, func() { once.Do(stop) }
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// eventually polls cond until it holds or the deadline passes; cond says what it saw.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last seen: %s", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fakeProvisioner is the in-memory HostProvisioner: it moves hosts through the real
// inventory's states the way the provision package does, instantly (auto) or when the
// test says (manual), and records what it was given.
type fakeProvisioner struct {
	store  *inventory.BoltStore
	manual bool
	notify func(hostID string)

	mu       sync.Mutex
	owner    map[string]string // host ID -> owner of the image it holds
	requests map[string]ProvisionRequest
	wipes    map[string]int
	calls    []string
	steps    map[string]string // host ID -> HostStatus.Step (setStep)

	checked []string // hosts a test has already looked at (TestRealClusterAPI)
}

func newFakeProvisioner(s *inventory.BoltStore) *fakeProvisioner {
	return &fakeProvisioner{store: s, owner: map[string]string{}, requests: map[string]ProvisionRequest{}, wipes: map[string]int{}}
}

var _ HostProvisioner = (*fakeProvisioner)(nil)

func (f *fakeProvisioner) setState(ctx context.Context, id string, st inventory.State, reason string) error {
	_, err := f.store.UpdateHost(ctx, id, func(h *inventory.Host) error {
		h.State, h.StateReason = st, reason
		return nil
	})
	return err
}

func (f *fakeProvisioner) Provision(ctx context.Context, id string, req ProvisionRequest) error {
	h, err := f.store.GetHost(ctx, id)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.owner[id] == req.Owner && (h.State == inventory.StateProvisioning || h.State == inventory.StateProvisioned) {
		return nil
	}
	f.calls = append(f.calls, "provision "+id+" "+req.Owner)
	delete(f.steps, id) // a new operation
	f.owner[id] = req.Owner
	f.requests[id] = req
	st := inventory.StateProvisioned
	if f.manual {
		st = inventory.StateProvisioning
	}
	return f.setState(ctx, id, st, "")
}

func (f *fakeProvisioner) Deprovision(ctx context.Context, id, owner string) error {
	h, err := f.store.GetHost(ctx, id)
	if err != nil {
		return err
	}
	if !h.Claim.IsZero() && h.Claim.Owner != owner {
		return fmt.Errorf("%w: host %s is claimed by %s", inventory.ErrConflict, id, h.Claim.Owner)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if h.State == inventory.StateDeprovisioning || (h.State == inventory.StateAvailable && f.owner[id] == "") {
		return nil
	}
	f.calls = append(f.calls, "deprovision "+id)
	delete(f.steps, id)
	f.wipes[id]++
	if f.manual {
		return f.setState(ctx, id, inventory.StateDeprovisioning, "")
	}
	delete(f.owner, id)
	return f.setState(ctx, id, inventory.StateAvailable, "")
}

func (f *fakeProvisioner) HostStatus(ctx context.Context, id string) (HostStatus, error) {
	// State and step are read together, under the lock finish holds while it changes
	// both: the real provisioner never shows a new step with the old state.
	f.mu.Lock()
	defer f.mu.Unlock()
	h, err := f.store.GetHost(ctx, id)
	if err != nil {
		return HostStatus{}, err
	}
	st := HostStatus{State: h.State, Reason: h.StateReason, ImageOwner: f.owner[id], Step: f.steps[id]}
	st.Addresses = []clusterv1.MachineAddress{{Type: clusterv1.MachineHostName, Address: h.ID}}
	if h.IP != "" {
		st.Addresses = append(st.Addresses, clusterv1.MachineAddress{Type: clusterv1.MachineInternalIP, Address: h.IP})
	}
	return st, nil
}

// finish completes a manual operation: provisioning → provisioned, deprovisioning →
// available and wiped.
func (f *fakeProvisioner) finish(t *testing.T, id string, step ...string) {
	t.Helper()
	ctx := context.Background()
	h, err := f.store.GetHost(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	if len(step) > 0 { // the step the operation ends with, set with the new state
		if f.steps == nil {
			f.steps = map[string]string{}
		}
		f.steps[id] = step[0]
	}
	switch h.State {
	case inventory.StateProvisioning:
		err = f.setState(ctx, id, inventory.StateProvisioned, "")
	case inventory.StateDeprovisioning:
		delete(f.owner, id)
		err = f.setState(ctx, id, inventory.StateAvailable, "")
	default:
		err = fmt.Errorf("host %s is %s: nothing to finish", id, h.State)
	}
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if f.notify != nil {
		f.notify(id)
	}
}

// setStep says where the host is in its operation, as the provision package would.
func (f *fakeProvisioner) setStep(id, step string) {
	f.mu.Lock()
	if f.steps == nil {
		f.steps = map[string]string{}
	}
	f.steps[id] = step
	f.mu.Unlock()
	if f.notify != nil {
		f.notify(id)
	}
}

func (f *fakeProvisioner) fail(t *testing.T, id, reason string) {
	t.Helper()
	if err := f.setState(context.Background(), id, inventory.StateFailed, reason); err != nil {
		t.Fatal(err)
	}
	if f.notify != nil {
		f.notify(id)
	}
}

func (f *fakeProvisioner) request(id string) (ProvisionRequest, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.requests[id]
	return r, ok
}

func (f *fakeProvisioner) wipeCount(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wipes[id]
}

func (f *fakeProvisioner) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}
