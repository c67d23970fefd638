package controllers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
	"github.com/rackboot/rackboot/lab"
)

// capiProvider is one of the real Cluster API controllers, built by `make envtest`
// from the module proxy and run as a process against envtest.
type capiProvider struct {
	bin string // in KUBEBUILDER_ASSETS
	dir string // its directory in the cluster-api module (CRDs, webhook manifests)
}

var capiProviders = []capiProvider{
	{"capi-core", "core"},
	{"capi-bootstrap-kubeadm", "bootstrap/kubeadm"},
	{"capi-controlplane-kubeadm", "controlplane/kubeadm"},
}

// TestRealClusterAPI runs the real Cluster API core, kubeadm bootstrap and kubeadm
// control-plane controllers against envtest (with their admission webhooks) beside
// rackboot's controllers, and applies config/templates/cluster-template.yaml: a
// Cluster with a KubeadmControlPlane and a MachineDeployment. Its Machines' RackbootMachines
// claim hosts, and the provisioner receives, for each host, the bootstrap data CABPK
// wrote for that Machine: kubeadm init for the control plane; kubeadm join for the
// workers once the control plane is initialized.
//
// The workload cluster is envtest itself: the Cluster's kubeconfig secret points
// there, so KCP finds the kubeadm-config ConfigMap the test creates (what kubeadm init
// would leave) and calls the control plane initialized, and Cluster API matches the
// Nodes the test registers (as kubelets would, with the provider ID from meta-data)
// to the Machines by providerID.
func TestRealClusterAPI(t *testing.T) {
	rc := startRealCAPI(t)
	ctx := context.Background()
	ns := newNamespace(t, rc.c, "capi")
	store := newStore(t, "cp", 1, map[string]string{"role": "control-plane"})
	addTestHosts(t, store, "wk", 0, 2, map[string]string{"role": "worker"})
	prov := newFakeProvisioner(store)
	mgr, _ := startManager(t, Config{REST: rc.cfg, Rack: "r1", Inventory: store, Provisioner: prov, Namespace: ns, Poll: 5 * time.Second})
	prov.notify = func(id string) { mgr.HostChanged(ctx, id) }
	c, start := rc.c, rc.start
	rc.applyCluster(t, ns, "demo", 1, 2, "debian-13")

	// The control-plane machine: real `kubeadm init` bootstrap data reaches its host.
	cpHost := waitProvisioned(t, c, prov, ns, "cp-", "kubeadm init", 3*time.Minute)
	t.Logf("control-plane host %s provisioned with CABPK's init data after %v", cpHost, time.Since(start).Round(time.Millisecond))

	// What kubeadm init leaves behind, and the node the kubelet registers.
	initControlPlane(t, c)
	registerNode(t, c, cpHost)

	// Workers: join data only exists once the control plane is initialized.
	for range 2 {
		waitProvisioned(t, c, prov, ns, "wk-", "kubeadm join", 3*time.Minute)
	}
	t.Logf("both workers provisioned with CABPK's join data after %v", time.Since(start).Round(time.Millisecond))

	// Cluster API surfaces providerID and addresses on the Machines and, through the
	// Node registered with that provider ID, links the Machine to its Node.
	eventually(t, 2*time.Minute, "the control-plane Machine to carry providerID, addresses and its Node", func() (bool, string) {
		var ms clusterv1.MachineList
		if err := c.List(ctx, &ms, client.InNamespace(ns), client.HasLabels{clusterv1.MachineControlPlaneLabel}); err != nil || len(ms.Items) != 1 {
			return false, fmt.Sprint(len(ms.Items), err)
		}
		m := ms.Items[0]
		ok := m.Spec.ProviderID == "rackboot://r1/"+cpHost && len(m.Status.Addresses) == 2 && m.Status.NodeRef.Name == cpHost
		return ok, fmt.Sprintf("providerID %q addresses %v nodeRef %q phase %s", m.Spec.ProviderID, m.Status.Addresses, m.Status.NodeRef.Name, m.Status.Phase)
	})
}

// realCAPI is an envtest control plane with the real Cluster API core, kubeadm
// bootstrap and kubeadm control-plane controllers (and their webhooks) running
// against it, for as long as the test runs.
type realCAPI struct {
	cfg        *rest.Config
	c          client.Client
	kubeconfig []byte // of an admin user, for the controllers and the workload cluster
	root       string // the module root
	start      time.Time
}

// startRealCAPI starts envtest with Cluster API's CRDs and rackboot's, installs the
// three providers' webhooks and runs the providers, and returns once their webhook
// servers listen (the API server calls them on every create).
func startRealCAPI(t *testing.T) *realCAPI {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a control plane and three Cluster API controllers")
	}
	var bins []string
	for _, p := range capiProviders {
		bins = append(bins, p.bin)
	}
	assets := lab.EnvtestAssets(t, bins...)
	root, capi := repoRoot(t), capiDir(t)
	start := time.Now()

	var crdFiles []string
	for _, p := range capiProviders {
		files, err := filepath.Glob(filepath.Join(capi, p.dir, "config/crd/bases/*.yaml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no CRDs under %s/%s: %v", capi, p.dir, err)
		}
		crdFiles = append(crdFiles, files...)
	}
	ours, _ := filepath.Glob(filepath.Join(root, "config/crd/bases/*.yaml"))
	crdFiles = append(crdFiles, ours...)
	e := &envtest.Environment{BinaryAssetsDirectory: assets, CRDs: loadCRDs(t, crdFiles...), ErrorIfCRDPathMissing: true}
	cfg, err := e.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop() })
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := e.AddUser(envtest.User{Name: "capi-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfigFile := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigFile, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	// Each provider serves its webhooks on its own port with its own certificates.
	var ports []int
	for _, p := range capiProviders {
		port := freePort(t)
		mut, val := webhookConfigs(t, filepath.Join(capi, p.dir, "config/webhook/manifests.yaml"), p.bin)
		opts := &envtest.WebhookInstallOptions{
			MutatingWebhooks: mut, ValidatingWebhooks: val,
			LocalServingHost: "127.0.0.1", LocalServingPort: port,
		}
		if err := opts.Install(cfg); err != nil {
			t.Fatalf("%s webhooks: %v", p.bin, err)
		}
		t.Cleanup(func() { opts.Cleanup() })
		runProcess(t, filepath.Join(assets, p.bin), filepath.Join(dir, p.bin+".log"),
			"--kubeconfig="+kubeconfigFile, "--leader-elect=false",
			"--webhook-port="+strconv.Itoa(port), "--webhook-cert-dir="+opts.LocalServingCertDir,
			"--diagnostics-address=0", "--insecure-diagnostics", "--health-addr=0", "--sync-period=1m")
		ports = append(ports, port)
	}
	for i, port := range ports {
		eventually(t, 2*time.Minute, capiProviders[i].bin+"'s webhook server", func() (bool, string) {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
			if err != nil {
				return false, err.Error()
			}
			conn.Close()
			return true, ""
		})
	}
	t.Logf("envtest with Cluster API webhooks and controllers started in %v", time.Since(start).Round(time.Millisecond))
	return &realCAPI{cfg: cfg, c: c, kubeconfig: kubeconfig, root: root, start: start}
}

// applyCluster applies config/templates/cluster-template.yaml in ns: a Cluster named
// cluster with a KubeadmControlPlane of cp machines and a MachineDeployment of
// workers, their hosts provisioned with image. The workload cluster is this envtest:
// the user-provided kubeconfig secret (not of type cluster.x-k8s.io/secret, so KCP
// leaves it alone) points there.
func (rc *realCAPI) applyCluster(t *testing.T, ns, cluster string, cp, workers int, image string) {
	t.Helper()
	server, err := url.Parse(rc.cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	if server.Host == "" {
		server, _ = url.Parse("https://" + rc.cfg.Host)
	}
	if err := rc.c.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cluster + "-kubeconfig", Labels: map[string]string{clusterv1.ClusterNameLabel: cluster}},
		Data:       map[string][]byte{"value": rc.kubeconfig},
	}); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"CLUSTER_NAME": cluster, "NAMESPACE": ns, "KUBERNETES_VERSION": "v1.36.4",
		"CONTROL_PLANE_MACHINE_COUNT": strconv.Itoa(cp), "WORKER_MACHINE_COUNT": strconv.Itoa(workers),
		"CONTROL_PLANE_ENDPOINT_HOST": server.Hostname(), "CONTROL_PLANE_ENDPOINT_PORT": server.Port(),
		"RACKBOOT_IMAGE": image,
	}
	applyTemplate(t, rc.c, filepath.Join(rc.root, "config/templates/cluster-template.yaml"), vars)
}

// initControlPlane creates what kubeadm init leaves behind in the workload cluster,
// so KCP calls the control plane initialized and CABPK writes join data.
func initControlPlane(t *testing.T, c client.Client) {
	t.Helper()
	if err := c.Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kubeadm-config"},
		Data:       map[string]string{"ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"},
	}); err != nil {
		t.Fatal(err)
	}
}

// bootstrapOf finds the RackbootMachine owner ("NAMESPACE/NAME"), its Machine and the
// bootstrap data secret CABPK wrote for that Machine.
func bootstrapOf(t *testing.T, c client.Client, owner string) (*infrav1.RackbootMachine, *clusterv1.Machine, *corev1.Secret) {
	t.Helper()
	ctx := context.Background()
	ns, name, _ := strings.Cut(owner, "/")
	rm := &infrav1.RackbootMachine{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, rm); err != nil {
		t.Fatal(err)
	}
	var machine *clusterv1.Machine
	for _, ref := range rm.OwnerReferences {
		if ref.Kind == "Machine" {
			machine = &clusterv1.Machine{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, machine); err != nil {
				t.Fatal(err)
			}
		}
	}
	if machine == nil || machine.Spec.Bootstrap.DataSecretName == nil {
		t.Fatalf("RackbootMachine %s has no Machine with bootstrap data", rm.Name)
	}
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: *machine.Spec.Bootstrap.DataSecretName}, s); err != nil {
		t.Fatal(err)
	}
	return rm, machine, s
}

// waitProvisioned waits for a RackbootMachine that claimed a host named prefix* to be
// provisioned, and checks the provisioner got exactly that Machine's bootstrap data.
// It returns the host.
func waitProvisioned(t *testing.T, c client.Client, prov *fakeProvisioner, ns, prefix, want string, timeout time.Duration) string {
	t.Helper()
	ctx := context.Background()
	seen := map[string]bool{}
	for _, h := range prov.checked {
		seen[h] = true
	}
	var host string
	eventually(t, timeout, "a "+prefix+" host provisioned", func() (bool, string) {
		var l infrav1.RackbootMachineList
		if err := c.List(ctx, &l, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		var states []string
		for _, rm := range l.Items {
			states = append(states, fmt.Sprintf("%s:%s:%s", rm.Name, rm.Status.State, rm.Status.Host))
			if strings.HasPrefix(rm.Status.Host, prefix) && !seen[rm.Status.Host] && rm.Status.State == infrav1.StateProvisioned {
				host = rm.Status.Host
				return true, ""
			}
		}
		return false, strings.Join(states, " ")
	})
	prov.checked = append(prov.checked, host)
	req, ok := prov.request(host)
	if !ok {
		t.Fatalf("host %s provisioned without a request", host)
	}
	_, machine, s := bootstrapOf(t, c, req.Owner)
	if !bytes.Equal(req.UserData, s.Data["value"]) || req.Format != UserDataFormat(s.Data["format"]) {
		t.Fatalf("host %s got %d bytes (%s), not Machine %s's bootstrap secret %s", host, len(req.UserData), req.Format, machine.Name, s.Name)
	}
	if !bytes.Contains(req.UserData, []byte(want)) || !bytes.Contains(req.UserData, []byte("{{ ds.meta_data.metadata.provider_id }}")) {
		t.Fatalf("host %s bootstrap data lacks %q or the provider-id template:\n%s", host, want, req.UserData)
	}
	if req.Metadata["provider_id"] != "rackboot://r1/"+host {
		t.Fatalf("host %s meta-data provider_id = %q", host, req.Metadata["provider_id"])
	}
	return host
}

// registerNode does what the host's kubelet would: register a Node with the provider
// ID the meta-data gave it.
func registerNode(t *testing.T, c client.Client, host string) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: host}, Spec: corev1.NodeSpec{ProviderID: "rackboot://r1/" + host}}
	if err := c.Create(context.Background(), n); err != nil {
		t.Fatal(err)
	}
}

var tmplVar = regexp.MustCompile(`\$\{([A-Z0-9_]+)(:=([^}]*))?\}`)

// applyTemplate fills a clusterctl template's ${VAR} and ${VAR:=default} and creates
// every object in it, as `clusterctl generate cluster | kubectl apply` would.
func applyTemplate(t *testing.T, c client.Client, path string, vars map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	filled := tmplVar.ReplaceAllStringFunc(string(b), func(m string) string {
		sub := tmplVar.FindStringSubmatch(m)
		if v, ok := vars[sub[1]]; ok {
			return v
		}
		if sub[2] != "" {
			return sub[3]
		}
		missing = append(missing, sub[1])
		return m
	})
	if len(missing) > 0 {
		t.Fatalf("template variables without a value: %v", missing)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(filled), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := c.Create(context.Background(), &u); err != nil {
			t.Fatalf("creating %s %s from the template: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

// webhookConfigs reads a provider's webhook manifests, renaming the configurations
// (every provider calls them the same) so all three can be installed.
func webhookConfigs(t *testing.T, path, prefix string) ([]*admissionv1.MutatingWebhookConfiguration, []*admissionv1.ValidatingWebhookConfiguration) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var mut []*admissionv1.MutatingWebhookConfiguration
	var val []*admissionv1.ValidatingWebhookConfiguration
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		raw, err := u.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		switch u.GetKind() {
		case "MutatingWebhookConfiguration":
			var w admissionv1.MutatingWebhookConfiguration
			if err := utilyaml.Unmarshal(raw, &w); err != nil {
				t.Fatal(err)
			}
			w.Name = prefix + "-" + w.Name
			mut = append(mut, &w)
		case "ValidatingWebhookConfiguration":
			var w admissionv1.ValidatingWebhookConfiguration
			if err := utilyaml.Unmarshal(raw, &w); err != nil {
				t.Fatal(err)
			}
			w.Name = prefix + "-" + w.Name
			val = append(val, &w)
		}
	}
	return mut, val
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runProcess starts a controller, logging to logFile, and stops it (by its PID) when
// the test ends; a failed test shows the end of its log.
func runProcess(t *testing.T, bin, logFile string, args ...string) {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		f.Close()
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", filepath.Base(logFile), tail(logFile, 25))
		}
	})
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
