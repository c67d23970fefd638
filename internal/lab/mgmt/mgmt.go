// Package mgmt runs a Cluster API management cluster for the lab and the tests, made of
// real parts only: envtest's kube-apiserver and etcd, and the real Cluster API core,
// kubeadm bootstrap (CABPK) and kubeadm control-plane (KCP) controllers, each a process
// with its admission webhooks installed, all built by `make envtest` from the module
// proxy. It is what `clusterctl init` would give on a kind cluster, without a container
// runtime or the internet.
//
// Workload clusters live inside a lab network namespace, on lab addresses the machine's
// root namespace has no route to. The controllers reach them through an HTTP CONNECT
// proxy that opens its tunnels inside the namespace (lab.Netns.ConnectProxy, passed as
// Config.HTTPSProxy); WorkloadREST gives a test or the lab command a client that dials
// there the same way.
package mgmt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/rackboot/rackboot/internal/lab"
)

// Provider is one of the real Cluster API controllers: its binary in the envtest assets
// directory, and its directory in the cluster-api module (CRDs, webhook manifests).
type Provider struct {
	Bin, Dir string
}

// Providers are the controllers `clusterctl init` installs for kubeadm clusters.
var Providers = []Provider{
	{"capi-core", "core"},
	{"capi-bootstrap-kubeadm", "bootstrap/kubeadm"},
	{"capi-controlplane-kubeadm", "controlplane/kubeadm"},
}

// Config says where things are.
type Config struct {
	// Assets holds kube-apiserver, etcd and the providers' binaries (make envtest).
	Assets string
	// CAPIDir is sigs.k8s.io/cluster-api in the module cache (CAPIDir finds it).
	CAPIDir string
	// CRDs are more CRD manifests to install: rackboot's own.
	CRDs []string
	// Dir receives the controllers' logs and the admin kubeconfig.
	Dir string
	// Scheme is the client's: core types, Cluster API's, rackboot's.
	Scheme *runtime.Scheme
	// HTTPSProxy, when set, is the proxy through which the controllers reach workload
	// clusters (their management cluster on 127.0.0.1 is exempt through NO_PROXY).
	HTTPSProxy string
	// SyncPeriod is the controllers' resync period (default 1m).
	SyncPeriod time.Duration
}

// Cluster is a running management cluster.
type Cluster struct {
	// REST and Client reach it as an admin.
	REST   *rest.Config
	Client client.Client
	// Kubeconfig is an admin kubeconfig (system:masters) for it, also written to
	// KubeconfigFile.
	Kubeconfig     []byte
	KubeconfigFile string
	// Logs are the controllers' log files, by binary.
	Logs map[string]string
}

// Start starts the management cluster and its controllers, and registers their teardown
// with c. It returns once every controller's webhook server answers.
func Start(ctx context.Context, c lab.Cleaner, cfg Config) (*Cluster, error) {
	if cfg.SyncPeriod == 0 {
		cfg.SyncPeriod = time.Minute
	}
	var crdFiles []string
	for _, p := range Providers {
		files, err := filepath.Glob(filepath.Join(cfg.CAPIDir, p.Dir, "config/crd/bases/*.yaml"))
		if err != nil || len(files) == 0 {
			return nil, fmt.Errorf("no CRDs under %s/%s/config/crd/bases: %v", cfg.CAPIDir, p.Dir, err)
		}
		crdFiles = append(crdFiles, files...)
	}
	crds, err := LoadCRDs(append(crdFiles, cfg.CRDs...)...)
	if err != nil {
		return nil, err
	}
	e := &envtest.Environment{BinaryAssetsDirectory: cfg.Assets, CRDs: crds, ErrorIfCRDPathMissing: true}
	restCfg, err := e.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	c.Cleanup(func() { _ = e.Stop() })
	cl, err := client.New(restCfg, client.Options{Scheme: cfg.Scheme})
	if err != nil {
		return nil, err
	}
	admin, err := e.AddUser(envtest.User{Name: "capi-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	kubeconfigFile := filepath.Join(cfg.Dir, "management.kubeconfig")
	if err := os.WriteFile(kubeconfigFile, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	m := &Cluster{REST: restCfg, Client: cl, Kubeconfig: kubeconfig, KubeconfigFile: kubeconfigFile, Logs: map[string]string{}}

	env := os.Environ()
	if cfg.HTTPSProxy != "" {
		env = append(env, "HTTPS_PROXY="+cfg.HTTPSProxy, "https_proxy="+cfg.HTTPSProxy,
			"NO_PROXY=127.0.0.1,localhost,::1", "no_proxy=127.0.0.1,localhost,::1")
	}
	// Each provider serves its webhooks on its own port with its own certificates.
	var ports []int
	for _, p := range Providers {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		mut, val, err := webhookConfigs(filepath.Join(cfg.CAPIDir, p.Dir, "config/webhook/manifests.yaml"), p.Bin)
		if err != nil {
			return nil, err
		}
		opts := &envtest.WebhookInstallOptions{
			MutatingWebhooks: mut, ValidatingWebhooks: val,
			LocalServingHost: "127.0.0.1", LocalServingPort: port,
		}
		if err := opts.Install(restCfg); err != nil {
			return nil, fmt.Errorf("%s webhooks: %w", p.Bin, err)
		}
		c.Cleanup(func() { _ = opts.Cleanup() })
		log := filepath.Join(cfg.Dir, p.Bin+".log")
		if err := startProcess(c, env, log, filepath.Join(cfg.Assets, p.Bin),
			"--kubeconfig="+kubeconfigFile, "--leader-elect=false",
			"--webhook-port="+strconv.Itoa(port), "--webhook-cert-dir="+opts.LocalServingCertDir,
			"--diagnostics-address=0", "--insecure-diagnostics", "--health-addr=0",
			"--sync-period="+cfg.SyncPeriod.String()); err != nil {
			return nil, err
		}
		m.Logs[p.Bin] = log
		ports = append(ports, port)
	}
	for i, port := range ports {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err := lab.Poll(ctx, 2*time.Minute, Providers[i].Bin+"'s webhook server on "+addr, func(context.Context) (bool, error) {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return false, fmt.Errorf("%w: %v", lab.ErrNotYet, err)
			}
			conn.Close()
			return true, nil
		})
		if err != nil {
			return nil, fmt.Errorf("%w (log %s):\n%s", err, m.Logs[Providers[i].Bin], lab.Tail(m.Logs[Providers[i].Bin], 20))
		}
	}
	return m, nil
}

// CAPIDir finds sigs.k8s.io/cluster-api in the module cache.
func CAPIDir() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/cluster-api").Output()
	if err != nil {
		return "", fmt.Errorf("locating sigs.k8s.io/cluster-api in the module cache (go list -m): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// LoadCRDs reads CRD manifests. Cluster API's own bases lack the contract labels its
// kustomize build adds; Cluster API looks them up on referenced CRDs, so they are added
// here.
func LoadCRDs(files ...string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := dec.Decode(&crd); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if crd.Name == "" {
				continue
			}
			if strings.HasSuffix(crd.Spec.Group, "cluster.x-k8s.io") && !strings.HasPrefix(crd.Spec.Group, "infrastructure.") {
				if crd.Labels == nil {
					crd.Labels = map[string]string{}
				}
				for _, v := range crd.Spec.Versions {
					if v.Name == "v1beta1" || v.Name == "v1beta2" {
						crd.Labels["cluster.x-k8s.io/"+v.Name] = v.Name
					}
				}
			}
			out = append(out, &crd)
		}
	}
	return out, nil
}

var tmplVar = regexp.MustCompile(`\$\{([A-Z0-9_]+)(:=([^}]*))?\}`)

// FillTemplate fills a clusterctl template's ${VAR} and ${VAR:=default}, as `clusterctl
// generate cluster` does, and decodes its objects.
func FillTemplate(path string, vars map[string]string) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("%s: template variables without a value: %v", path, missing)
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(filled), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs, nil
}

// Apply creates every object of a clusterctl template, as `clusterctl generate cluster
// | kubectl apply` would.
func (m *Cluster) Apply(ctx context.Context, path string, vars map[string]string) error {
	objs, err := FillTemplate(path, vars)
	if err != nil {
		return err
	}
	return m.Create(ctx, objs)
}

// Create creates objects in order, as kubectl apply does for new objects.
func (m *Cluster) Create(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, u := range objs {
		if err := m.Client.Create(ctx, u); err != nil {
			return fmt.Errorf("creating %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

// WorkloadKubeconfig is the admin kubeconfig Cluster API keeps for a workload cluster
// (the secret CLUSTER-kubeconfig that KCP writes).
func (m *Cluster) WorkloadKubeconfig(ctx context.Context, ns, cluster string) ([]byte, error) {
	var s corev1.Secret
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: cluster + "-kubeconfig"}, &s); err != nil {
		return nil, err
	}
	if len(s.Data["value"]) == 0 {
		return nil, fmt.Errorf("secret %s/%s-kubeconfig has no value", ns, cluster)
	}
	return s.Data["value"], nil
}

// WorkloadREST is a client configuration for a workload cluster from its kubeconfig
// secret, dialling with dial (a lab namespace's DialContext).
func (m *Cluster) WorkloadREST(ctx context.Context, ns, cluster string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*rest.Config, error) {
	kc, err := m.WorkloadKubeconfig(ctx, ns, cluster)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of cluster %s/%s: %w", ns, cluster, err)
	}
	cfg.Dial = dial
	// A TCG control plane under load answers some requests only after tens of seconds
	// (etcd applies taking 30-40 s were measured right after a worker joined); the
	// server's own limit is 60 s, so a shorter client timeout fails calls that succeed.
	cfg.Timeout = 2 * time.Minute
	return cfg, nil
}

// webhookConfigs reads a provider's webhook manifests, renaming the configurations
// (every provider calls them the same) so all three can be installed.
func webhookConfigs(path, prefix string) ([]*admissionv1.MutatingWebhookConfiguration, []*admissionv1.ValidatingWebhookConfiguration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
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
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		raw, err := u.MarshalJSON()
		if err != nil {
			return nil, nil, err
		}
		switch u.GetKind() {
		case "MutatingWebhookConfiguration":
			var w admissionv1.MutatingWebhookConfiguration
			if err := utilyaml.Unmarshal(raw, &w); err != nil {
				return nil, nil, err
			}
			w.Name = prefix + "-" + w.Name
			mut = append(mut, &w)
		case "ValidatingWebhookConfiguration":
			var w admissionv1.ValidatingWebhookConfiguration
			if err := utilyaml.Unmarshal(raw, &w); err != nil {
				return nil, nil, err
			}
			w.Name = prefix + "-" + w.Name
			val = append(val, &w)
		}
	}
	return mut, val, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startProcess starts a controller in the root namespace, logging to log, and kills it
// (by its PID) when c cleans up; a failed test shows the end of its log.
func startProcess(c lab.Cleaner, env []string, log, bin string, args ...string) error {
	f, err := os.Create(log)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if r, ok := c.(interface {
			Failed() bool
			Logf(string, ...any)
		}); ok && r.Failed() {
			r.Logf("last lines of %s:\n%s", filepath.Base(log), lab.Tail(log, 25))
		}
	})
	return nil
}
