package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestQEMUNodeImage boots the Kubernetes node image (EnsureNodeImage; cold, the build
// takes tens of minutes) under SeaBIOS with 2 vCPUs and 3 GiB, TCG. Its user-data runs
// `kubeadm init` (the test hands it the cluster CA, so the test can sign its own admin
// certificate), and the test, from the lab namespace with the kubectl built with the
// image, checks the node goes Ready with the pod network, CoreDNS runs, and pods resolve
// kubernetes.default and reach a Service backed by another pod. Nothing is pulled: the
// guest has no route out of the lab namespace.
func TestQEMUNodeImage(t *testing.T) {
	Require(t, append([]string{"qemu-system-x86_64", "dnsmasq", "debugfs", "ssh", "ssh-keygen"}, NodeImageTools()...)...)
	buildCtx, cancel := context.WithTimeout(t.Context(), 90*time.Minute)
	start := time.Now()
	image, sum, err := EnsureNodeImage(buildCtx, io.Discard)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node image %s (sha256 %s) ready after %v", image, sum, time.Since(start).Round(time.Second))
	if got, err := fileSHA256(image); err != nil || got != sum {
		t.Fatalf("sha256 of %s = %s (%v), EnsureNodeImage said %s", image, got, err, sum)
	}
	checkProvenance(t, image, sum)

	const (
		name   = "nodeimg"
		nodeIP = "10.77.60.50"
		mac    = "52:54:00:77:60:50"
	)
	dir := logDir(t)
	seg := newSegment(t, "nodeimg", "10.77.60.1/24")
	// A DNS server address for the node's resolv.conf (CoreDNS forwards there; nothing
	// answers, and cluster names never leave CoreDNS).
	startDnsmasq(t, seg.NS, dir, seg.Bridge, "--dhcp-range=10.77.60.100,10.77.60.150,255.255.255.0,1h",
		"--dhcp-host="+mac+","+nodeIP, "--dhcp-option=option:dns-server,10.77.60.1")
	ca, caKey := newTestCA(t)
	sshKey := filepath.Join(dir, "id_ed25519")
	if out, err := exec.CommandContext(t.Context(), "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rackboot-test", "-f", sshKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(sshKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	serveInNetns(t, seg.NS, "10.77.60.1:8080", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/nocloud/" + name + "/meta-data":
			fmt.Fprintf(w, "instance-id: %s\nlocal-hostname: %s\n", name, name)
		case "/nocloud/" + name + "/user-data":
			io.WriteString(w, kubeadmInitUserData(name, nodeIP, strings.TrimSpace(string(pub)), ca, caKey))
		default:
			http.NotFound(w, r)
		}
	}))

	// Hosts for the node image get 8 GiB disks; cloud-init grows the root.
	disk := diskFromImage(t, image, filepath.Join(dir, name+".raw"), 8<<30, "http://10.77.60.1:8080/nocloud/"+name+"/")
	tap, err := seg.AddTap()
	if err != nil {
		t.Fatal(err)
	}
	vm := VM{Name: name, MAC: mac, Tap: tap, Firmware: SeaBIOS, MemoryMB: 3072, CPUs: 2, Disk: disk, SerialLog: filepath.Join(dir, name+".serial")}
	booted := time.Now()
	qemu := startFromDisk(t, seg.NS, vm, "")
	ctx := t.Context()
	// diag is what a failure shows: the console and, through SSH, the guest's view.
	diag := func() string {
		return fmt.Sprintf("serial log:\n%s\n%s", Tail(vm.SerialLog, 40), seg.NS.NodeDiagnostics(sshKey, "lab@"+nodeIP))
	}
	step := func(timeout time.Duration, what, marker string) {
		t.Helper()
		if err := Poll(ctx, timeout, what, Alive(FileContains(vm.SerialLog, marker), qemu)); err != nil {
			t.Fatalf("%v\n%s", err, diag())
		}
		t.Logf("QEMU start → %s: %v", what, time.Since(booted).Round(time.Second))
	}
	step(40*time.Minute, "kubeadm init done", "RACKBOOT-KUBEADM-EXIT")
	if line := grepLine(vm.SerialLog, "RACKBOOT-KUBEADM-EXIT"); !strings.Contains(line, "RACKBOOT-KUBEADM-EXIT 0") {
		t.Fatalf("kubeadm init failed: %s\n%s", line, diag())
	}

	kc := writeAdminKubeconfig(t, dir, "https://"+nodeIP+":6443", ca, caKey)
	kubectl := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		out, err := seg.NS.Exec(ctx, append([]string{NodeImageTool(image, "kubectl"), "--kubeconfig", kc, "--request-timeout=60s"}, args...)...)
		return string(out), err
	}
	must := func(timeout time.Duration, args ...string) string {
		t.Helper()
		out, err := kubectl(timeout, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s\n%s", strings.Join(args, " "), err, out, diag())
		}
		return out
	}
	must(20*time.Minute, "wait", "--for=condition=Ready", "node/"+name, "--timeout=20m")
	t.Logf("QEMU start → node Ready: %v", time.Since(booted).Round(time.Second))
	if got := must(time.Minute, "get", "node", name, "-o", "jsonpath={.spec.podCIDR}"); !strings.HasPrefix(got, "10.244.") {
		t.Errorf("node %s has podCIDR %q, want one from podSubnet 10.244.0.0/16", name, got)
	}
	// kubectl wait -l fails at once while no pod matches: the Deployment's pods come a
	// little after kubeadm has created it.
	if err := Poll(ctx, 10*time.Minute, "CoreDNS pods to exist", func(ctx context.Context) (bool, error) {
		out, err := kubectl(time.Minute, "-n", "kube-system", "get", "pod", "-l", "k8s-app=kube-dns", "-o", "name")
		return err == nil && strings.TrimSpace(out) != "", nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, diag())
	}
	must(20*time.Minute, "-n", "kube-system", "wait", "--for=condition=Ready", "pod", "-l", "k8s-app=kube-dns", "--timeout=20m")
	phases := must(time.Minute, "-n", "kube-system", "get", "pod", "-l", "k8s-app=kube-dns", "-o", "jsonpath={.items[*].status.phase}")
	if f := strings.Fields(phases); len(f) == 0 || strings.Count(phases, "Running") != len(f) {
		t.Fatalf("CoreDNS pods are %q, want all Running", phases)
	}
	t.Logf("QEMU start → CoreDNS Running: %v", time.Since(booted).Round(time.Second))

	// A Service backed by a pod (an etcd server: its image is on the node), then two
	// client pods: one resolves the Service's name and talks to it, the other resolves
	// kubernetes.default and reads the API server's version through its Service, with
	// the certificate checked against that name.
	manifests := filepath.Join(dir, "workload.yaml")
	if err := os.WriteFile(manifests, []byte(podNetWorkload), 0o644); err != nil {
		t.Fatal(err)
	}
	must(2*time.Minute, "apply", "-f", manifests)
	must(15*time.Minute, "rollout", "status", "deployment/echo", "--timeout=15m")
	clients := filepath.Join(dir, "clients.yaml")
	if err := os.WriteFile(clients, []byte(podNetClients), 0o644); err != nil {
		t.Fatal(err)
	}
	must(2*time.Minute, "apply", "-f", clients)
	for _, c := range []struct{ pod, want string }{
		{"client", "http://echo.default.svc.cluster.local:2379 is healthy"},
		{"resolve", `url="https://kubernetes.default:443/version" status="200 OK"`},
		{"resolve", `"gitVersion": "` + NodeKubernetesVersion + `"`},
	} {
		if _, err := kubectl(15*time.Minute, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/"+c.pod, "--timeout=15m"); err != nil {
			desc, _ := kubectl(time.Minute, "describe", "pod", c.pod)
			logs, _ := kubectl(time.Minute, "logs", c.pod)
			t.Fatalf("pod %s did not succeed: %v\n%s\nlogs:\n%s\n%s", c.pod, err, desc, logs, diag())
		}
		if logs := must(time.Minute, "logs", c.pod); !strings.Contains(logs, c.want) {
			t.Errorf("pod %s logged %q, want %q", c.pod, logs, c.want)
		}
	}
	t.Logf("QEMU start → pods resolved and reached Services: %v", time.Since(booted).Round(time.Second))
}

// podNetWorkload is the Service and its backing pod of TestQEMUNodeImage.
const podNetWorkload = `apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: etcd
        image: registry.k8s.io/etcd:` + NodeEtcdImageTag + `
        imagePullPolicy: Never
        command: [etcd, --data-dir=/tmp/etcd, --listen-client-urls=http://0.0.0.0:2379, --advertise-client-urls=http://echo:2379, --listen-peer-urls=http://127.0.0.1:2380, --initial-advertise-peer-urls=http://127.0.0.1:2380, --initial-cluster=default=http://127.0.0.1:2380]
        ports: [{containerPort: 2379}]
        readinessProbe:
          httpGet: {path: /health, port: 2379}
          periodSeconds: 5
          timeoutSeconds: 10
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 2379, targetPort: 2379}]
`

// podNetClients are TestQEMUNodeImage's client pods; they retry (OnFailure) while
// CoreDNS or the Service settle. The images on the node have no shell or DNS tool:
// etcdctl and the node's kubectl (a static binary, mounted from the host) are the
// clients.
const podNetClients = `apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  restartPolicy: OnFailure
  containers:
  - name: etcdctl
    image: registry.k8s.io/etcd:` + NodeEtcdImageTag + `
    imagePullPolicy: Never
    command: [etcdctl, --endpoints=http://echo.default.svc.cluster.local:2379, --dial-timeout=20s, --command-timeout=60s, endpoint, health]
---
apiVersion: v1
kind: Pod
metadata: {name: resolve}
spec:
  restartPolicy: OnFailure
  volumes:
  - name: kubectl
    hostPath: {path: /usr/local/bin/kubectl, type: File}
  containers:
  - name: kubectl
    image: registry.k8s.io/etcd:` + NodeEtcdImageTag + `
    imagePullPolicy: Never
    # kubectl's in-cluster configuration (the service account's token and CA) with the
    # API server named kubernetes.default instead of the ClusterIP the kubelet sets.
    env:
    - {name: HOME, value: /tmp}
    - {name: KUBERNETES_SERVICE_HOST, value: kubernetes.default}
    - {name: KUBERNETES_SERVICE_PORT, value: "443"}
    volumeMounts: [{name: kubectl, mountPath: /kubectl, readOnly: true}]
    command: [/kubectl, get, --raw, /version, -v=6]
`

// kubeadmInitUserData is the cloud-config of TestQEMUNodeImage's control plane. kubeadm's
// timeouts are raised far above their defaults and its static pods' probes relaxed: under
// TCG every component starts more than 12 times slower than natively. No preflight check
// is ignored. The lab user's SSH key is there for the test's diagnostics on failure.
func kubeadmInitUserData(name, ip, sshKey string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) string {
	keyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		panic(err)
	}
	indent := func(b []byte) string {
		return "      " + strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "\n      ")
	}
	// Under TCG a control-plane component may take minutes to answer its first probe,
	// and kubeadm's probes (startup: 4 minutes; liveness: 15 s timeouts) kill it first,
	// again and again: kubeadm patches give them 30 minutes and 60 s timeouts.
	const leaderElection = `[{name: leader-elect-lease-duration, value: 120s}, {name: leader-elect-renew-deadline, value: 100s}, {name: leader-elect-retry-period, value: 20s}]`
	var patches strings.Builder
	for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		fmt.Fprintf(&patches, `  - path: /etc/kubernetes/tcg-patches/%s+strategic.yaml
    content: |
      spec:
        containers:
        - name: %s
          startupProbe: {failureThreshold: 180, timeoutSeconds: 60}
          livenessProbe: {failureThreshold: 30, timeoutSeconds: 60}
`, c, c)
		if c != "kube-controller-manager" { // the others have readiness probes too
			patches.WriteString("          readinessProbe: {periodSeconds: 10, timeoutSeconds: 60}\n")
		}
	}
	return `#cloud-config
users:
  - default
  - name: lab
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys: ["` + sshKey + `"]
write_files:
` + patches.String() + `  - path: /etc/kubernetes/pki/ca.crt
    permissions: '0644'
    content: |
` + indent(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})) + `
  - path: /etc/kubernetes/pki/ca.key
    permissions: '0600'
    content: |
` + indent(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})) + `
  - path: /etc/kubernetes/kubeadm.yaml
    permissions: '0600'
    content: |
      apiVersion: kubeadm.k8s.io/v1beta4
      kind: InitConfiguration
      patches:
        directory: /etc/kubernetes/tcg-patches
      localAPIEndpoint:
        advertiseAddress: ` + ip + `
        bindPort: 6443
      nodeRegistration:
        name: ` + name + `
        criSocket: unix:///run/containerd/containerd.sock
        # One node: pods run on the control plane.
        taints: []
      timeouts:
        controlPlaneComponentHealthCheck: 30m0s
        kubeletHealthCheck: 15m0s
        kubernetesAPICall: 5m0s
        etcdAPICall: 10m0s
        tlsBootstrap: 15m0s
      ---
      apiVersion: kubeadm.k8s.io/v1beta4
      kind: ClusterConfiguration
      kubernetesVersion: ` + NodeKubernetesVersion + `
      controlPlaneEndpoint: ` + ip + `:6443
      networking:
        podSubnet: 10.244.0.0/16
        serviceSubnet: 10.96.0.0/12
      # A busy emulated guest misses the 10 s lease renewals of the defaults, and the
      # controller-manager and scheduler exit on a lost lease.
      controllerManager:
        extraArgs: ` + leaderElection + `
      scheduler:
        extraArgs: ` + leaderElection + `
  - path: /usr/local/sbin/rackboot-kubeadm-init
    permissions: '0755'
    content: |
      #!/bin/bash
      set -o pipefail
      echo "RACKBOOT-KUBEADM-START $(date +%s)" >/dev/ttyS0
      kubeadm init --config /etc/kubernetes/kubeadm.yaml 2>&1 | tee /var/log/kubeadm-init.log >/dev/ttyS0
      echo "RACKBOOT-KUBEADM-EXIT $?" >/dev/ttyS0
runcmd:
  - [/usr/local/sbin/rackboot-kubeadm-init]
`
}

// newTestCA makes the cluster CA kubeadm init adopts (it keeps a CA it finds in
// /etc/kubernetes/pki), as Cluster API's bootstrap provider does.
func newTestCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubernetes"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// writeAdminKubeconfig writes a kubeconfig for server with a client certificate in
// system:masters signed by the cluster CA.
func writeAdminKubeconfig(t *testing.T, dir, server string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "rackboot-test", Organization: []string{"system:masters"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(typ string, der []byte) string {
		return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: %s, certificate-authority-data: %s}
users:
- name: admin
  user: {client-certificate-data: %s, client-key-data: %s}
contexts:
- name: lab
  context: {cluster: lab, user: admin}
current-context: lab
`, server, b64("CERTIFICATE", ca.Raw), b64("CERTIFICATE", der), b64("EC PRIVATE KEY", keyDER))
	p := filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkProvenance reads the provenance file beside the node image: it names the image
// by its checksum and lists every built component with a source and a sha256.
func checkProvenance(t *testing.T, image, sum string) {
	t.Helper()
	b, err := os.ReadFile(image + ".provenance.json")
	if err != nil {
		t.Fatal(err)
	}
	var p NodeImageProvenance
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.SHA256 != sum || p.Kubernetes != NodeKubernetesVersion {
		t.Errorf("provenance says sha256 %s, Kubernetes %s; want %s, %s", p.SHA256, p.Kubernetes, sum, NodeKubernetesVersion)
	}
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	seen := map[string]bool{}
	for _, c := range p.Components {
		seen[c.Name] = true
		if c.Source == "" || c.Version == "" || !hex64.MatchString(c.SHA256) {
			t.Errorf("provenance entry incomplete: %+v", c)
		}
	}
	for _, want := range []string{"kubelet", "kubeadm", "kubectl", "containerd", "runc", "etcd", "coredns", "pause", "registry.k8s.io/kube-apiserver:" + NodeKubernetesVersion} {
		if !seen[want] {
			t.Errorf("provenance lacks %s", want)
		}
	}
	pkgs := strings.Join(p.DebianPackages, " ")
	for _, want := range []string{"containernetworking-plugins=", "conntrack=", "iptables=", "linux-image-"} {
		if !strings.Contains(pkgs, want) {
			t.Errorf("provenance's Debian packages lack %s", want)
		}
	}
}
