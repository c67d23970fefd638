package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
	"github.com/rackboot/rackboot/internal/controllers"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/lab"
	"github.com/rackboot/rackboot/internal/lab/promcheck"
	"github.com/rackboot/rackboot/internal/provision"
)

func TestCAPIFlags(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: m, cluster: {server: "https://10.0.0.1:6443"}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: m, context: {cluster: m, user: u}}]
current-context: m
`), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }
	inPod := func(k string) string {
		if k == "KUBERNETES_SERVICE_HOST" {
			return "10.96.0.1"
		}
		return ""
	}
	cases := []struct {
		name    string
		args    []string
		getenv  func(string) string
		enabled bool
		wantErr string
	}{
		{name: "Off", getenv: noEnv},
		{name: "KubeconfigAndRack", args: []string{"--kubeconfig", kubeconfig, "--rack", "rack-a"}, getenv: noEnv, enabled: true},
		{name: "KubeconfigWithoutRack", args: []string{"--kubeconfig", kubeconfig}, getenv: noEnv, wantErr: "capi.rack: is required"},
		{name: "RackWithoutCluster", args: []string{"--rack", "rack-a"}, getenv: noEnv, wantErr: "give capi.kubeconfig (--kubeconfig)"},
		{name: "MissingKubeconfig", args: []string{"--kubeconfig", kubeconfig + ".nope", "--rack", "a"}, getenv: noEnv, wantErr: "capi.kubeconfig:"},
		// In a pod without a service account mount the in-cluster config cannot load.
		{name: "InPodWithoutServiceAccount", args: []string{"--rack", "a"}, getenv: inPod, wantErr: "in-cluster"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadArgs(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			s, err := cfg.CAPI.resolve(tc.getenv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (s.REST != nil) != tc.enabled {
				t.Fatalf("controllers enabled = %v, want %v", s.REST != nil, tc.enabled)
			}
			if tc.enabled && (s.REST.Host != "https://10.0.0.1:6443" || s.Rack != "rack-a" || !s.LeaderElect || s.LeaderElectionNamespace != "rackboot-system") {
				t.Fatalf("settings %+v host %s", s, s.REST.Host)
			}
		})
	}
}

// storeImages looks images up in the inventory alone (the catalog's files are not
// needed to start a provisioning).
type storeImages struct{ s *inventory.BoltStore }

func (i storeImages) Lookup(ctx context.Context, name string) (inventory.Image, error) {
	return i.s.GetImage(ctx, name)
}

// TestCAPIProvisionerAdapter drives the real provisioner through the adapter the
// controllers use: the host a machine claimed goes provisioning with the bootstrap
// data (plus the operator's addition) sealed as its user-data and the provider ID in
// its meta-data; asking again changes nothing; only the claim owner may deprovision.
func TestCAPIProvisionerAdapter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := inventory.Open(filepath.Join(dir, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(dir, "secret.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.CreateHosts(ctx, inventory.Host{ID: "h1", MACs: []string{"52:54:00:00:00:01"}, IP: "10.0.0.11", State: inventory.StateAvailable}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateImage(ctx, inventory.Image{Name: "debian-13", Source: "upload", SHA256: strings.Repeat("ab", 32), Format: inventory.FormatRaw}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ClaimHost(ctx, inventory.ClaimRequest{Owner: "ns/m1"}); err != nil {
		t.Fatal(err)
	}
	p, err := provision.New(provision.Config{Store: store, Images: storeImages{store}, ServerURL: "http://10.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	a := controllers.ProvisionAdapter{Provisioner: p, Leases: store}

	bootstrap := []byte("## template: jinja\n#cloud-config\nruncmd:\n- kubeadm init\n")
	req := controllers.ProvisionRequest{
		Owner: "ns/m1", Image: "debian-13", UserData: bootstrap, Format: controllers.FormatCloudConfig,
		CloudConfigAddition: "#cloud-config\nruncmd:\n- echo extra\n",
		Metadata:            map[string]string{"provider_id": "rackboot://r1/h1"},
	}
	if err := a.Provision(ctx, "h1", req); err != nil {
		t.Fatal(err)
	}
	st, err := a.HostStatus(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	want := controllers.HostStatus{State: inventory.StateProvisioning, Reason: st.Reason, Step: "powering on", ImageOwner: "ns/m1", Addresses: []clusterv1.MachineAddress{
		{Type: clusterv1.MachineHostName, Address: "h1"}, {Type: clusterv1.MachineInternalIP, Address: "10.0.0.11"},
	}}
	if d := cmp.Diff(want, st); d != "" {
		t.Fatalf("status after Provision (-want +got):\n%s", d)
	}
	data, err := store.ProvisionData(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	wantData, _ := controllers.CloudConfigWithAddition(bootstrap, req.CloudConfigAddition)
	if !bytes.Equal(data.UserData, wantData) || data.Kind != inventory.ConfigCloudConfig {
		t.Fatalf("stored user-data (%s):\n%s\nwant:\n%s", data.Kind, data.UserData, wantData)
	}
	h, _ := store.GetHost(ctx, "h1")
	if h.Provision == nil || h.Provision.Metadata["provider_id"] != "rackboot://r1/h1" {
		t.Fatalf("meta-data: %+v", h.Provision)
	}
	if err := a.Provision(ctx, "h1", req); err != nil {
		t.Fatalf("asking again: %v", err)
	}
	if err := a.Deprovision(ctx, "h1", "ns/intruder"); !errors.Is(err, inventory.ErrConflict) {
		t.Fatalf("deprovision by another owner: %v, want ErrConflict", err)
	}
	if err := a.Deprovision(ctx, "h1", "ns/m1"); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.HostStatus(ctx, "h1"); st.State != inventory.StateDeprovisioning {
		t.Fatalf("after Deprovision: %s", st.State)
	}
	if err := a.Deprovision(ctx, "h1", "ns/m1"); err != nil {
		t.Fatalf("deprovisioning twice: %v", err)
	}
	if _, err := a.HostStatus(ctx, "nope"); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("unknown host: %v, want ErrNotFound", err)
	}
}

// TestCAPIMetricsGatherer: /metrics takes from controller-runtime's registry only the
// controllers' families. Its Go and process collectors describe the same process as
// rackboot's and, gathered twice, make the whole page fail.
func TestCAPIMetricsGatherer(t *testing.T) {
	own := prometheus.NewRegistry()
	own.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ownCounter := prometheus.NewCounter(prometheus.CounterOpts{Name: "rackboot_test_total", Help: "rackboot's own"})
	own.MustRegister(ownCounter)
	ownCounter.Inc()

	// controller-runtime's registry, as its packages' init fill it.
	cr := prometheus.NewRegistry()
	cr.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsAll)), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reconciles := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_reconcile_total", Help: "h"}, []string{"controller", "result"})
	depth := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "workqueue_depth", Help: "h"}, []string{"name", "controller", "priority"})
	leader := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "leader_election_master_status", Help: "h"}, []string{"name"})
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rest_client_requests_total", Help: "h"}, []string{"code", "method", "host"})
	certs := prometheus.NewCounter(prometheus.CounterOpts{Name: "certwatcher_read_certificate_total", Help: "h"})
	cr.MustRegister(reconciles, depth, leader, requests, certs)
	reconciles.WithLabelValues("rackbootmachine", "success").Inc()
	depth.WithLabelValues("rackbootmachine", "rackbootmachine", "").Set(2)
	leader.WithLabelValues("rackboot-r1").Set(1)
	requests.WithLabelValues("200", "GET", "10.0.0.1:6443").Inc()

	if _, err := (prometheus.Gatherers{own, cr}).Gather(); err == nil {
		t.Fatal("rackboot's and controller-runtime's registries gathered together without a clash: the filter may be unneeded, check")
	}
	names := func(mfs []*dto.MetricFamily) []string {
		var out []string
		for _, mf := range mfs {
			out = append(out, mf.GetName())
		}
		return out
	}
	ownFamilies, err := own.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got, err := prometheus.Gatherers{own, controllerMetrics(cr)}.Gather()
	if err != nil {
		t.Fatalf("gathering rackboot's registry with the controllers' metrics: %v", err)
	}
	want := append(names(ownFamilies), "controller_runtime_reconcile_total", "leader_election_master_status", "rest_client_requests_total", "workqueue_depth")
	slices.Sort(want)
	if d := cmp.Diff(want, names(got)); d != "" {
		t.Fatalf("families on /metrics (-want +got):\n%s", d)
	}
}

// TestCAPIMetrics runs `rackboot serve` with the Cluster API controllers against an
// envtest management cluster (kube-apiserver and etcd from `make envtest`) and reads
// its /metrics: controller-runtime's reconcile, workqueue and leader-election metrics
// of the rackbootmachine controller are there next to rackboot's own, each family
// once, and serve stops cleanly with the controllers running.
func TestCAPIMetrics(t *testing.T) {
	assets := lab.EnvtestAssets(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	capiDir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/cluster-api").Output()
	if err != nil {
		t.Fatalf("locating sigs.k8s.io/cluster-api in the module cache: %v", err)
	}
	capiCRDs := filepath.Join(strings.TrimSpace(string(capiDir)), "core/config/crd/bases")
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDInstallOptions: envtest.CRDInstallOptions{Paths: []string{
			filepath.Join(root, "config/crd/bases"),
			filepath.Join(capiCRDs, "cluster.x-k8s.io_clusters.yaml"),
			filepath.Join(capiCRDs, "cluster.x-k8s.io_machines.yaml"),
		}},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() { env.Stop() })
	scheme, err := controllers.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "metrics-"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "rackboot.yaml")
	if err := os.WriteFile(config, []byte(`dataDir: `+filepath.Join(dir, "data")+`
address: 127.0.0.1
http: {listen: "127.0.0.1:0"}
api: {listen: ["127.0.0.1:0"]}
tftp: {disabled: true}
dhcp: {mode: "off"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := newServeLog()
	var stdout bytes.Buffer
	rackboot := newRootCmd(&cliEnv{stdout: &stdout, stderr: logs, getenv: func(string) string { return "" }})
	rackboot.SetArgs([]string{"serve", "--config", config, "--kubeconfig", kubeconfig, "--rack", "r1",
		"--leader-election-namespace", ns.Name, "--capi-namespace", ns.Name, "--log-format", "json"})
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rackboot.ExecuteContext(sctx) }()
	stopped := false
	t.Cleanup(func() {
		stop()
		if !stopped {
			<-done
		}
	})
	var addr string
	select {
	case addr = <-logs.addr:
	case err := <-done:
		stopped = true
		t.Fatalf("serve ended before serving: %v\nlog:\n%s", err, logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not start within a minute; log:\n%s", logs)
	}

	// A RackbootMachine without an owner Machine: reconciled once ("waiting for the
	// Machine controller"), successfully.
	rm := &infrav1.RackbootMachine{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "m1"}, Spec: infrav1.RackbootMachineSpec{Image: "debian-13"}}
	if err := c.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	series := map[string]string{
		`controller_runtime_reconcile_total{controller="rackbootmachine",result="success"}`: "at least 1",
		`workqueue_adds_total{controller="rackbootmachine",name="rackbootmachine"}`:         "at least 1",
		`leader_election_master_status{name="rackboot-r1"}`:                                 "1",
	}
	var page string
	deadline := time.Now().Add(60 * time.Second)
	for {
		page = getMetrics(t, "http://"+addr+"/metrics")
		values := seriesValues(page)
		missing := ""
		for s := range series {
			if v, ok := values[s]; !ok || v < 1 {
				missing = fmt.Sprintf("%s = %v (want %s)", s, values[s], series[s])
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics after a minute: %s; page:\n%s", missing, page)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// This instance leads its rack (leader_election_master_status is 1), and
	// /readyz?verbose says so, with the API reachable.
	if code, body := getBody(t, "http://"+addr+"/readyz?verbose"); code != http.StatusOK ||
		!strings.Contains(body, "\n[+]capi ok\n") || !strings.Contains(body, "\n[+]capi-leader ok\n") {
		t.Errorf("/readyz?verbose = %d:\n%s\nwant [+]capi ok and [+]capi-leader ok", code, body)
	}

	// The dashboard's Cluster API panels: each query evaluates over two scrapes, and
	// each metric it reads is on the page.
	at := time.Now()
	scrapes := []promcheck.Scrape{{At: at, Page: []byte(page)}, {At: at.Add(15 * time.Second), Page: []byte(getMetrics(t, "http://"+addr+"/metrics"))}}
	rep, err := promcheck.Check(ctx, controllerQueries(t), scrapes, map[string]string{"job": "rackboot", "instance": addr}) // dashboard_test.go
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range rep.Errors {
		t.Error(err)
	}
	for _, m := range rep.Absent {
		t.Errorf("%s is not on /metrics with the controllers running", m)
	}

	// client-go's leader election logs through klog: its lines are JSON records of
	// serve's logger like every other line, not klog's own format.
	recs := jsonRecords(t, logs.String()) // liblogs_test.go
	if findRecord(recs, "Successfully acquired lease") == nil {
		t.Errorf("no JSON record of client-go's \"Successfully acquired lease\" in serve's log:\n%s", logs)
	}

	// docs/metrics.md lists each controller family served, with its type and labels.
	docs := documentedMetrics(t) // metrics_doc_test.go
	cmfs, err := controllerMetrics(ctrlmetrics.Registry).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range cmfs {
		d, ok := docs[mf.GetName()]
		if !ok {
			t.Errorf("%s is served with the controllers but not in docs/metrics.md", mf.GetName())
			continue
		}
		labels := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		if typ := strings.ToLower(mf.GetType().String()); d.Type != typ {
			t.Errorf("docs/metrics.md: %s is a %s, not a %s", mf.GetName(), typ, d.Type)
		}
		if diff := cmp.Diff(slices.Sorted(maps.Keys(labels)), d.Labels); diff != "" {
			t.Errorf("docs/metrics.md: labels of %s (-served +documented):\n%s", mf.GetName(), diff)
		}
	}

	// Each family once, rackboot's own among them, and the Go and process families
	// exactly those of rackboot's own collectors (not controller-runtime's as well).
	seen := map[string]int{}
	var goProc []string
	for _, line := range strings.Split(page, "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ = strings.Cut(name, " ")
			seen[name]++
			if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
				goProc = append(goProc, name)
			}
		}
	}
	for name, n := range seen {
		if n != 1 {
			t.Errorf("family %s appears %d times on /metrics", name, n)
		}
	}
	if seen["rackboot_bmc_calls_in_flight"] != 1 {
		t.Errorf("rackboot's own metrics missing from /metrics; families: %v", slices.Sorted(maps.Keys(seen)))
	}
	ref := prometheus.NewRegistry()
	ref.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	refFamilies, err := ref.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, mf := range refFamilies {
		want = append(want, mf.GetName())
	}
	slices.Sort(want)
	slices.Sort(goProc)
	if d := cmp.Diff(want, goProc); d != "" {
		t.Errorf("Go and process families on /metrics (-rackboot's collectors +served):\n%s", d)
	}

	stop()
	stopped = true
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v\nlog:\n%s", err, logs)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not stop within a minute of its context ending; log:\n%s", logs)
	}
}

func getMetrics(t *testing.T, url string) string {
	t.Helper()
	code, body := getBody(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", url, code, body)
	}
	return body
}

// seriesValues maps each sample line's series (name and labels) to its value.
func seriesValues(page string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(page, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// serveLog collects serve's log and reports the HTTP address from its
// "rackboot serving" line.
type serveLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	once sync.Once
	addr chan string
}

func newServeLog() *serveLog { return &serveLog{addr: make(chan string, 1)} }

var (
	servingRe     = regexp.MustCompile(`msg="rackboot serving".* http=(\S+)`)
	servingJSONRe = regexp.MustCompile(`"msg":"rackboot serving".*"http":"([^"]+)"`)
)

func (l *serveLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for _, re := range []*regexp.Regexp{servingRe, servingJSONRe} {
		if m := re.FindSubmatch(p); m != nil {
			l.once.Do(func() { l.addr <- string(m[1]) })
		}
	}
	return len(p), nil
}

func (l *serveLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
