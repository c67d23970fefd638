package controllers

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
	"github.com/rackboot/rackboot/internal/lab"
	"github.com/rackboot/rackboot/internal/lab/mgmt"
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
// against it, for as long as the test runs (internal/lab/mgmt).
type realCAPI struct {
	*mgmt.Cluster
	cfg        *rest.Config
	c          client.Client
	kubeconfig []byte // of an admin user, for the controllers and the workload cluster
	root       string // the module root
	start      time.Time
}

// startRealCAPI starts the management cluster with Cluster API's CRDs and rackboot's
// and returns once the providers' webhook servers listen (the API server calls them on
// every create).
func startRealCAPI(t *testing.T) *realCAPI { return startRealCAPIProxy(t, "") }

// startRealCAPIProxy is startRealCAPI with the controllers reaching workload clusters
// through an HTTP CONNECT proxy (a lab namespace's ConnectProxy).
func startRealCAPIProxy(t *testing.T, proxy string) *realCAPI {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a control plane and three Cluster API controllers")
	}
	var bins []string
	for _, p := range mgmt.Providers {
		bins = append(bins, p.Bin)
	}
	assets := lab.EnvtestAssets(t, bins...)
	root, capi := repoRoot(t), capiDir(t)
	ours, _ := filepath.Glob(filepath.Join(root, "config/crd/bases/*.yaml"))
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m, err := mgmt.Start(t.Context(), t, mgmt.Config{Assets: assets, CAPIDir: capi, CRDs: ours, Dir: t.TempDir(), Scheme: scheme, HTTPSProxy: proxy})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("envtest with Cluster API webhooks and controllers started in %v", time.Since(start).Round(time.Millisecond))
	return &realCAPI{Cluster: m, cfg: m.REST, c: m.Client, kubeconfig: m.Kubeconfig, root: root, start: start}
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
	if err := rc.Apply(t.Context(), filepath.Join(rc.root, "config/templates/cluster-template.yaml"), vars); err != nil {
		t.Fatal(err)
	}
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
