package controllers

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rackboot/rackboot/admin"
	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/lab"
	"github.com/rackboot/rackboot/internal/lab/mgmt"
	"github.com/rackboot/rackboot/internal/lab/promcheck"
)

// k8sHost is one QEMU host of TestQEMUKubernetes.
type k8sHost struct {
	id, mac, ip, role string
	fw                lab.Firmware
	bmc               lab.BMCProtocol
	cpus, memMB       int
	vm                *lab.BMCVM
}

// TestQEMUKubernetes is issue 9's promise, for real: bare QEMU hosts become a working
// kubeadm cluster through Cluster API objects alone.
//
// The management cluster is envtest with the real Cluster API core, CABPK and KCP
// controllers (internal/lab/mgmt); they reach the workload cluster, which lives on lab addresses
// inside a network namespace, through an HTTP CONNECT proxy that opens its tunnels in
// that namespace. `rackboot serve --kubeconfig … --rack lab` runs in the namespace with
// two hosts behind lab BMCs — a SeaBIOS guest with an IPMI BMC for the control plane,
// an OVMF guest booting over UEFI HTTP with a Redfish BMC for the worker — enrolled and
// inspected through the CLI. config/templates/cluster-template.yaml (1 control-plane
// machine, a MachineDeployment of 1 worker; the slow-hardware overlay raises kubeadm's
// timeouts for TCG) is applied with the node image (make node-image) and the control
// plane's reserved address as its endpoint. Then:
//
//  1. both Machines reach Running; the workload cluster's API answers through the CAPI
//     kubeconfig secret; 2 Nodes are Ready with spec.providerID = their Machines'
//     (rackboot://lab/HOST); CoreDNS is Running; a pod on the worker resolves
//     kubernetes.default and reaches a Service whose endpoint is a pod on the
//     control-plane node.
//  2. Scaling the MachineDeployment to 0 drains and deletes the worker's Node and
//     Machine; its host is wiped (no partition table or filesystem signature on the
//     disk file), powered off and available. Scaling back to 1 claims it again and the
//     new Node is Ready.
//  3. Deleting the Cluster releases every host (wiped, off, available) and leaves no
//     RackbootMachine, finalizer or claim behind.
func TestQEMUKubernetes(t *testing.T) {
	lab.Require(t, append(append([]string{"qemu-system-x86_64", "ipmi_sim", "ipmitool", "apt-get", "dpkg-deb", "wipefs", "ssh", "ssh-keygen"},
		lab.LabImageTools()...), lab.NodeImageTools()...)...)
	ctx := t.Context()
	dir := t.TempDir()
	began := time.Now()
	const rack, cluster = "lab", "k8s"
	prefix := netip.MustParsePrefix("10.77.49.1/24")

	seg, err := lab.NewSegment(t, "k8s", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seg.StartRouterAdvertisements(t, filepath.Join(dir, "ra.log")); err != nil {
		t.Fatal(err)
	}
	proxy, err := seg.NS.ConnectProxy(t, prefix.Masked())
	if err != nil {
		t.Fatal(err)
	}
	rc := startRealCAPIProxy(t, proxy)
	ns := newNamespace(t, rc.c, "k8s")

	bin := filepath.Join(dir, "rackboot")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/rackboot/rackboot/cmd/rackboot")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/rackboot: %v\n%s", err, out)
	}
	apiserver, err := url.Parse(rc.cfg.Host)
	if err != nil || apiserver.Host == "" {
		apiserver, err = url.Parse("https://" + rc.cfg.Host)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := seg.NS.Forward(t, apiserver.Host, apiserver.Host); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, rc.kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := lab.NewServer(t, lab.ServerConfig{Bin: bin, NS: seg.NS, Dir: dir, Addr: "10.77.49.1", Flags: []string{
		"--dhcp-mode", "server", "--dhcp-range", "10.77.49.100-10.77.49.149", "--dhcp-router", "10.77.49.1",
		"--dhcp-dns", "10.77.49.1", "--unknown-hosts", "ignore",
		"--kubeconfig", kubeconfig, "--rack", rack, "--leader-elect=false", "--capi-namespace", ns}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ImportBootEnv(ctx, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	cli := func(args ...string) {
		t.Helper()
		out, err := srv.CLI(ctx, args...)
		if err != nil {
			t.Fatalf("rackboot %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// A cold build of the node image takes tens of minutes (make node-image runs it
	// before the tests).
	buildCtx, cancel := context.WithTimeout(ctx, 60*time.Minute)
	err = srv.AddNodeImage(buildCtx, io.Discard)
	cancel()
	if err != nil {
		t.Fatal(err)
	}

	hosts := []*k8sHost{
		{id: "cp-1", mac: "52:54:00:49:00:01", ip: "10.77.49.21", role: "control-plane", fw: lab.SeaBIOS, bmc: lab.IPMI, cpus: 2, memMB: 3072},
		{id: "wk-1", mac: "52:54:00:49:00:02", ip: "10.77.49.22", role: "worker", fw: lab.OVMFHTTP, bmc: lab.Redfish, cpus: 1, memMB: 2048},
	}
	byID := map[string]*k8sHost{}
	for _, h := range hosts {
		byID[h.id] = h
		vmDir := filepath.Join(dir, h.id)
		if err := os.MkdirAll(vmDir, 0o755); err != nil {
			t.Fatal(err)
		}
		disk := filepath.Join(vmDir, "disk.img")
		if err := lab.WriteBlankDisk(disk, 8<<30); err != nil {
			t.Fatal(err)
		}
		h.vm, err = seg.StartBMCVM(ctx, t, lab.BMCVMConfig{
			VM:  lab.VM{Name: h.id, MAC: h.mac, Firmware: h.fw, MemoryMB: h.memMB, CPUs: h.cpus, Disk: disk},
			Dir: vmDir, BMC: lab.BMCConfig{Protocol: h.bmc},
		})
		if err != nil {
			t.Fatal(err)
		}
		cli("host", "add", "--id", h.id, "--mac", h.mac, "--ip", h.ip, "--hostname", h.id, "--label", "role="+h.role,
			"--bmc", h.vm.BMC.URL(), "--bmc-password-file", h.vm.BMC.PasswordFile)
		cli("host", "inspect", h.id)
	}
	ids := []string{"cp-1", "wk-1"}
	// The nodes let the test in with this key, for a failure's diagnostics.
	sshKey := filepath.Join(dir, "id_ed25519")
	if out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rackboot-test", "-f", sshKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(sshKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	sshPub := strings.TrimSpace(string(pub))
	// Whatever fails from here on — these waits or the helpers' own (lab.WaitFor ends
	// the test itself) — shows each host's timeline, console and, through SSH, the
	// node's own view. Cleanups run last-registered first: this one before the VMs stop.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		var b strings.Builder
		for _, h := range hosts {
			evs, _ := srv.Events(context.Background(), h.id)
			fmt.Fprintf(&b, "--- %s timeline:\n", h.id)
			for _, e := range evs[max(0, len(evs)-40):] {
				fmt.Fprintf(&b, "%s %-20s %s\n", e.Time.Format("15:04:05"), e.Type, e.Message)
			}
			fmt.Fprintf(&b, "--- %s console:\n%s\n", h.id, lab.Tail(h.vm.SerialLog(), 40))
			fmt.Fprintf(&b, "--- %s\n", seg.NS.NodeDiagnostics(sshKey, "lab@"+h.ip))
		}
		t.Logf("diagnostics:\n%s", b.String())
	})
	if err := srv.WaitHosts(ctx, ids, 15*time.Minute, "inspection", func(h admin.Host) bool {
		return h.State == inventory.StateAvailable
	}, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("[%v] both hosts inspected and available", time.Since(began).Round(time.Second))

	// The cluster, from the template an operator applies, with the lab's overlay.
	objs, err := mgmt.FillTemplate(filepath.Join(rc.root, "config/templates/cluster-template.yaml"), map[string]string{
		"CLUSTER_NAME": cluster, "NAMESPACE": ns, "KUBERNETES_VERSION": lab.NodeKubernetesVersion,
		"CONTROL_PLANE_MACHINE_COUNT": "1", "WORKER_MACHINE_COUNT": "1",
		"CONTROL_PLANE_ENDPOINT_HOST": byID["cp-1"].ip, "CONTROL_PLANE_ENDPOINT_PORT": "6443",
		"RACKBOOT_IMAGE": lab.NodeImageName, "POD_CIDR": "10.244.0.0/16", "SERVICE_CIDR": "10.96.0.0/12",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgmt.SlowHardware(objs); err != nil {
		t.Fatal(err)
	}
	if err := mgmt.AuthorizeSSH(objs, "lab", sshPub); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		t.Logf("%s: ip netns exec %s ssh -i %s lab@%s", h.id, seg.NS.Name, sshKey, h.ip)
	}
	applied := time.Now()
	if err := rc.Create(ctx, objs); err != nil {
		t.Fatal(err)
	}
	watch := rc.WatchMachines(ns, t.Logf)

	// 1. Both Machines Running, 2 Nodes Ready.
	if err := watch.Until(ctx, 75*time.Minute, "both Machines Running", mgmt.AllRunning(2)); err != nil {
		t.Fatal(err)
	}
	t.Logf("[%v] both Machines Running %v after the cluster was applied", time.Since(began).Round(time.Second), time.Since(applied).Round(time.Second))
	wc := workloadClient(t, rc, ns, cluster, seg)
	machines, err := watch.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nodes := waitNodesReady(t, wc, 2, 20*time.Minute)
	for _, m := range machines {
		n, ok := nodes[m.Status.NodeRef.Name]
		if !ok {
			t.Errorf("Machine %s: no Ready Node %q", m.Name, m.Status.NodeRef.Name)
			continue
		}
		if n.Spec.ProviderID == "" || n.Spec.ProviderID != m.Spec.ProviderID || !strings.HasPrefix(n.Spec.ProviderID, "rackboot://"+rack+"/") {
			t.Errorf("Node %s providerID %q, Machine %s %q", n.Name, n.Spec.ProviderID, m.Name, m.Spec.ProviderID)
		}
		// The Machine carries its host's reserved address, as the RackbootMachine found it.
		if h := byID[strings.TrimPrefix(m.Spec.ProviderID, "rackboot://"+rack+"/")]; h == nil ||
			!slices.ContainsFunc(m.Status.Addresses, func(a clusterv1.MachineAddress) bool { return a.Address == h.ip }) {
			t.Errorf("Machine %s (%s) addresses %v: want its host's address", m.Name, m.Spec.ProviderID, m.Status.Addresses)
		}
	}
	logTimings(t, srv, hosts, nodes, machines)
	waitCoreDNS(t, wc)
	checkPodNetwork(t, wc, machines)

	// 2. Scale the workers to 0, then back to 1.
	wk := byID["wk-1"]
	scale(t, rc.c, ns, cluster+"-md-0", 0)
	if err := watch.Until(ctx, 20*time.Minute, "the worker Machine deleted", func(ms []clusterv1.Machine) bool { return len(ms) == 1 }); err != nil {
		t.Fatal(err)
	}
	waitNodeCount(t, wc, 1, 5*time.Minute)
	waitReleased(t, srv, wk, 15*time.Minute)
	t.Logf("[%v] scaled to 0: the worker's Node and Machine are gone, %s is wiped, off and available", time.Since(began).Round(time.Second), wk.id)
	scale(t, rc.c, ns, cluster+"-md-0", 1)
	if err := watch.Until(ctx, 45*time.Minute, "a new worker Machine Running", mgmt.AllRunning(2)); err != nil {
		t.Fatal(err)
	}
	waitNodesReady(t, wc, 2, 20*time.Minute)
	h, err := srvAPI(t, srv).GetHost(ctx, wk.id)
	if err != nil || h.State != inventory.StateProvisioned {
		t.Fatalf("after scaling back to 1, %s is %s (%v), want provisioned", wk.id, h.State, err)
	}
	t.Logf("[%v] scaled back to 1: %s claimed again, its Node Ready", time.Since(began).Round(time.Second), wk.id)

	// The dashboard against this running lab (issue 12): every query evaluates over
	// rackboot's /metrics as the run so far left it, and what such a run makes is there.
	checkLabDashboard(t, srv)

	// 3. Delete the Cluster: every host released, nothing left behind.
	if err := rc.c.Delete(ctx, &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cluster}}); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		waitReleased(t, srv, h, 30*time.Minute)
	}
	eventually(t, 5*time.Minute, "no RackbootMachine or RackbootCluster left", func() (bool, string) {
		var rms infrav1.RackbootMachineList
		var rcs infrav1.RackbootClusterList
		if err := rc.c.List(ctx, &rms, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		if err := rc.c.List(ctx, &rcs, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		return len(rms.Items) == 0 && len(rcs.Items) == 0, fmt.Sprintf("%d RackbootMachines, %d RackbootClusters", len(rms.Items), len(rcs.Items))
	})
	for _, h := range hosts {
		got, err := srvAPI(t, srv).GetHost(ctx, h.id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Claim != nil {
			t.Errorf("host %s still claimed by %q after the Cluster was deleted", h.id, got.Claim.Owner)
		}
	}
	t.Logf("[%v] cluster deleted: every host wiped, off, available, unclaimed", time.Since(began).Round(time.Second))
}

func srvAPI(t *testing.T, srv *lab.Server) *admin.Client {
	t.Helper()
	api, err := srv.API()
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// workloadClient reaches the workload cluster's API through the kubeconfig secret
// Cluster API keeps for it, dialling inside the lab namespace.
func workloadClient(t *testing.T, rc *realCAPI, ns, cluster string, seg *lab.Segment) kubernetes.Interface {
	t.Helper()
	cfg, err := rc.WorkloadREST(t.Context(), ns, cluster, seg.NS.DialContext)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func nodeReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitNodesReady waits for exactly n Nodes, all Ready, and returns them by name.
func waitNodesReady(t *testing.T, wc kubernetes.Interface, n int, timeout time.Duration) map[string]corev1.Node {
	t.Helper()
	out := map[string]corev1.Node{}
	waitWorkload(t, timeout, fmt.Sprintf("%d Ready Nodes", n), func(ctx context.Context) (bool, error) {
		l, err := wc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, fmt.Errorf("%w: %v", lab.ErrNotYet, err)
		}
		clear(out)
		var seen []string
		for _, nd := range l.Items {
			seen = append(seen, fmt.Sprintf("%s ready=%v", nd.Name, nodeReady(nd)))
			if nodeReady(nd) {
				out[nd.Name] = nd
			}
		}
		if len(l.Items) == n && len(out) == n {
			return true, nil
		}
		return false, fmt.Errorf("%w: nodes %v", lab.ErrNotYet, seen)
	})
	return out
}

func waitNodeCount(t *testing.T, wc kubernetes.Interface, n int, timeout time.Duration) {
	t.Helper()
	waitWorkload(t, timeout, fmt.Sprintf("%d Nodes", n), func(ctx context.Context) (bool, error) {
		l, err := wc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, fmt.Errorf("%w: %v", lab.ErrNotYet, err)
		}
		return len(l.Items) == n, fmt.Errorf("%w: %d nodes", lab.ErrNotYet, len(l.Items))
	})
}

func waitCoreDNS(t *testing.T, wc kubernetes.Interface) {
	t.Helper()
	// Running and Ready: only a Ready pod is an endpoint of the kube-dns Service, and a
	// client pod started before that finds no DNS server (kube-proxy rejects a Service
	// without endpoints) and goes into a crash-loop back-off of minutes.
	waitWorkload(t, 15*time.Minute, "CoreDNS Running and Ready", func(ctx context.Context) (bool, error) {
		l, err := wc.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
		if err != nil {
			return false, fmt.Errorf("%w: %v", lab.ErrNotYet, err)
		}
		var states []string
		ready := 0
		for _, p := range l.Items {
			ok := p.Status.Phase == corev1.PodRunning && slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
				return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
			})
			states = append(states, fmt.Sprintf("%s ready=%v", p.Status.Phase, ok))
			if ok {
				ready++
			}
		}
		return len(l.Items) > 0 && ready == len(l.Items), fmt.Errorf("%w: CoreDNS pods %v", lab.ErrNotYet, states)
	})
}

// checkPodNetwork runs a server pod on the control-plane node behind a Service, and a
// client pod on the worker that resolves kubernetes.default and the Service's name and
// talks to it. The node image's images have no shell: etcd serves, etcdctl asks, and
// kubectl (the node's own, mounted) resolves kubernetes.default through CoreDNS and
// reads the API server's version.
func checkPodNetwork(t *testing.T, wc kubernetes.Interface, machines []clusterv1.Machine) {
	t.Helper()
	var cpNode, wkNode string
	for _, m := range machines {
		if _, ok := m.Labels[clusterv1.MachineControlPlaneLabel]; ok {
			cpNode = m.Status.NodeRef.Name
		} else {
			wkNode = m.Status.NodeRef.Name
		}
	}
	if cpNode == "" || wkNode == "" {
		t.Fatalf("control-plane node %q, worker node %q", cpNode, wkNode)
	}
	etcd := "registry.k8s.io/etcd:" + lab.NodeEtcdImageTag
	server := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default", Labels: map[string]string{"app": "echo"}},
		Spec: corev1.PodSpec{
			NodeName:    cpNode,
			Tolerations: []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Containers: []corev1.Container{{
				Name: "etcd", Image: etcd, ImagePullPolicy: corev1.PullNever,
				Command: []string{"etcd", "--data-dir=/tmp/etcd", "--listen-client-urls=http://0.0.0.0:2379", "--advertise-client-urls=http://echo:2379",
					"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380", "--initial-cluster=default=http://127.0.0.1:2380"},
				Ports: []corev1.ContainerPort{{ContainerPort: 2379}},
			}},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{Port: 2379, TargetPort: intstr.FromInt32(2379)}}},
	}
	clients := []*corev1.Pod{{
		ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName: wkNode, RestartPolicy: corev1.RestartPolicyOnFailure,
			Containers: []corev1.Container{{
				Name: "etcdctl", Image: etcd, ImagePullPolicy: corev1.PullNever,
				Command: []string{"etcdctl", "--endpoints=http://echo.default.svc.cluster.local:2379", "--dial-timeout=20s", "--command-timeout=60s", "endpoint", "health"},
			}},
		},
	}, {
		ObjectMeta: metav1.ObjectMeta{Name: "resolve", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName: wkNode, RestartPolicy: corev1.RestartPolicyOnFailure,
			Volumes: []corev1.Volume{{Name: "kubectl", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: "/usr/local/bin/kubectl", Type: ptr.To(corev1.HostPathFile)}}}},
			Containers: []corev1.Container{{
				Name: "kubectl", Image: etcd, ImagePullPolicy: corev1.PullNever,
				// kubectl's in-cluster configuration, with the API server named
				// kubernetes.default (resolved by CoreDNS) instead of its ClusterIP.
				Env: []corev1.EnvVar{{Name: "HOME", Value: "/tmp"}, {Name: "KUBERNETES_SERVICE_HOST", Value: "kubernetes.default"},
					{Name: "KUBERNETES_SERVICE_PORT", Value: "443"}},
				VolumeMounts: []corev1.VolumeMount{{Name: "kubectl", MountPath: "/kubectl", ReadOnly: true}},
				Command:      []string{"/kubectl", "get", "--raw", "/version", "-v=6"},
			}},
		},
	}}
	createEventually(t, "pod "+server.Name, func(ctx context.Context) error {
		_, err := wc.CoreV1().Pods("default").Create(ctx, server, metav1.CreateOptions{})
		return err
	})
	createEventually(t, "service "+svc.Name, func(ctx context.Context) error {
		_, err := wc.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
		return err
	})
	// The clients start once their Service has a Ready endpoint: one started earlier
	// fails, and its restarts back off for minutes.
	waitWorkload(t, 15*time.Minute, "pod echo Ready", func(ctx context.Context) (bool, error) {
		p, err := wc.CoreV1().Pods("default").Get(ctx, server.Name, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("%w: %v", lab.ErrNotYet, err)
		}
		ok := slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
		})
		return ok, fmt.Errorf("%w: %s", lab.ErrNotYet, p.Status.Phase)
	})
	for _, p := range clients {
		createEventually(t, "pod "+p.Name, func(ctx context.Context) error {
			_, err := wc.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
			return err
		})
	}
	for _, c := range []struct{ pod, want string }{
		{"client", "http://echo.default.svc.cluster.local:2379 is healthy"},
		{"resolve", `url="https://kubernetes.default:443/version" status="200 OK"`},
		{"resolve", `"gitVersion": "` + lab.NodeKubernetesVersion + `"`},
	} {
		var logs string
		waitWorkload(t, 15*time.Minute, "pod "+c.pod+" to succeed", func(ctx context.Context) (bool, error) {
			p, err := wc.CoreV1().Pods("default").Get(ctx, c.pod, metav1.GetOptions{})
			if err != nil {
				return false, fmt.Errorf("%w: %v", lab.ErrNotYet, err)
			}
			if p.Status.Phase != corev1.PodSucceeded {
				return false, fmt.Errorf("%w: %s on %s", lab.ErrNotYet, p.Status.Phase, p.Spec.NodeName)
			}
			b, err := wc.CoreV1().Pods("default").GetLogs(c.pod, &corev1.PodLogOptions{}).DoRaw(ctx)
			logs = string(b)
			return err == nil, err
		})
		if !strings.Contains(logs, c.want) {
			t.Errorf("pod %s logged %q, want %q", c.pod, logs, c.want)
		}
	}
	t.Logf("a pod on %s resolved kubernetes.default and reached Service echo backed by a pod on %s", wkNode, cpNode)
}

// workloadPoll is how often the test asks the workload cluster's API: its TCG control
// plane spends a visible share of its CPU on each request, and Poll's 100 ms would be ten
// Lists a second.
const workloadPoll = 5 * time.Second

// waitWorkload is lab.WaitFor at workloadPoll, for conditions read from the workload
// cluster.
func waitWorkload(t *testing.T, timeout time.Duration, what string, cond lab.Cond) {
	t.Helper()
	if err := lab.PollEvery(t.Context(), workloadPoll, timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}

// createEventually retries a create against the workload cluster until it succeeds or
// finds the object already there (an earlier try that timed out on the client may have
// been applied): a TCG control plane right after a join times out some requests that a
// retry a minute later serves.
func createEventually(t *testing.T, what string, create func(ctx context.Context) error) {
	t.Helper()
	waitWorkload(t, 10*time.Minute, "create "+what, func(ctx context.Context) (bool, error) {
		err := create(ctx)
		if err == nil || apierrors.IsAlreadyExists(err) {
			return true, nil
		}
		t.Logf("create %s: %v (retrying)", what, err)
		return false, fmt.Errorf("%w: %v", lab.ErrNotYet, err)
	})
}

// scale sets a MachineDeployment's replicas.
func scale(t *testing.T, c client.Client, ns, name string, n int32) {
	t.Helper()
	var md clusterv1.MachineDeployment
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &md); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(md.DeepCopy())
	md.Spec.Replicas = ptr.To(n)
	if err := c.Patch(t.Context(), &md, patch); err != nil {
		t.Fatal(err)
	}
}

// waitReleased waits for a host to be available and unclaimed, then checks its disk
// file holds no partition table or filesystem signature and its VM is off.
func waitReleased(t *testing.T, srv *lab.Server, h *k8sHost, timeout time.Duration) {
	t.Helper()
	if err := srv.WaitHosts(t.Context(), []string{h.id}, timeout, h.id+" released", func(got admin.Host) bool {
		return got.State == inventory.StateAvailable && got.Claim == nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("wipefs", "--no-act", h.vm.VM.Disk).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("%s's disk after release: wipefs found signatures (%v):\n%s", h.id, err, out)
	}
	lab.WaitFor(t, 2*time.Minute, h.id+" powered off", func(ctx context.Context) (bool, error) {
		st, err := h.vm.PowerState(ctx)
		return err == nil && st == "off", nil
	})
}

// logTimings splits each host's way from power-on to a Ready Node into the steps its
// timeline and its Node show.
func logTimings(t *testing.T, srv *lab.Server, hosts []*k8sHost, nodes map[string]corev1.Node, machines []clusterv1.Machine) {
	t.Helper()
	nodeOf := map[string]corev1.Node{}
	for _, m := range machines {
		if n, ok := nodes[m.Status.NodeRef.Name]; ok {
			nodeOf[strings.TrimPrefix(m.Spec.ProviderID, "rackboot://lab/")] = n
		}
	}
	for _, h := range hosts {
		evs, err := srv.Events(t.Context(), h.id)
		if err != nil {
			t.Fatal(err)
		}
		// The last provisioning's events.
		var start int
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Type == "provision.request" {
				start = i
				break
			}
		}
		first := func(match func(admin.Event) bool) time.Time {
			for _, e := range evs[start:] {
				if match(e) {
					return e.Time
				}
			}
			return time.Time{}
		}
		steps := []struct {
			name string
			at   time.Time
		}{
			{"claimed (provision request)", evs[start].Time},
			{"power on", first(func(e admin.Event) bool { return e.Type == "bmc.power" })},
			{"agent hello", first(func(e admin.Event) bool { return e.Type == "agent.hello" })},
			{"image written", first(func(e admin.Event) bool { return e.Type == "agent.result" })},
			{"disk boot", first(func(e admin.Event) bool {
				return e.Type == "provision.diskboot" || (e.Type == "bmc.bootdev" && e.Fields["device"] == "disk")
			})},
			{"cloud-init (user-data fetched)", first(func(e admin.Event) bool { return e.Type == "metadata.fetch" && e.Fields["doc"] == "user-data" })},
			{"kubeadm done (phone-home)", first(func(e admin.Event) bool { return e.Type == "boot.phonehome" })},
		}
		if n, ok := nodeOf[h.id]; ok {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					steps = append(steps, struct {
						name string
						at   time.Time
					}{"Node Ready", c.LastTransitionTime.Time})
				}
			}
		}
		var b strings.Builder
		prev := steps[0].at
		for _, s := range steps {
			if s.at.IsZero() {
				fmt.Fprintf(&b, "  %-32s (not seen)\n", s.name)
				continue
			}
			fmt.Fprintf(&b, "  %-32s %s  +%v\n", s.name, s.at.Format("15:04:05"), s.at.Sub(prev).Round(time.Second))
			prev = s.at
		}
		t.Logf("%s: from claim to Ready Node, %v in all:\n%s", h.id, prev.Sub(steps[0].at).Round(time.Second), b.String())
	}
}

// checkLabDashboard evaluates every query of docs/grafana/rackboot.json over three
// scrapes (15 s apart) of the lab rackboot's /metrics, and fails when a query errs or a
// metric that a cluster's worth of DHCP, boots, BMC calls, provisioning and Cluster API
// reconciles must have made is not on the page. The others it logs: they count faults.
func checkLabDashboard(t *testing.T, srv *lab.Server) {
	t.Helper()
	var scrapes []promcheck.Scrape
	for i := range 3 {
		if i > 0 {
			time.Sleep(15 * time.Second)
		}
		page, err := srv.Metrics(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		scrapes = append(scrapes, promcheck.Scrape{At: time.Now(), Page: page})
	}
	rep, err := promcheck.CheckDashboard(t.Context(), "../../docs/grafana/rackboot.json", scrapes,
		map[string]string{"job": "rackboot", "instance": srv.Addr + ":8080"})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range rep.Errors {
		t.Errorf("dashboard against the lab: %v", err)
	}
	for _, m := range []string{"rackboot_build_info", "rackboot_hosts", "rackboot_host_transitions_total",
		"rackboot_host_operation_duration_seconds_bucket", "rackboot_dhcp_packets_total", "rackboot_dhcp_leases",
		"rackboot_http_requests_total", "rackboot_image_bytes_served_total", "rackboot_bmc_operations_total",
		"controller_runtime_reconcile_total", "workqueue_depth"} {
		if slices.Contains(rep.Absent, m) {
			t.Errorf("dashboard against the lab: %s is not on /metrics after a cluster was provisioned", m)
		}
	}
	t.Logf("dashboard: %d queries evaluated against the lab's /metrics; metrics no scrape had (faults that did not happen): %v", rep.Queries, rep.Absent)
}
