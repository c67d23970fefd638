package packaging

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/rackboot/rackboot/internal/lab/mgmt"
)

// TestClusterctlProviderRepository runs the real clusterctl (make clusterctl: built from
// the module proxy at go.mod's Cluster API version) against envtest with the clusterctl
// configuration make dist wrote (dist/clusterctl.yaml, pointing at
// dist/infrastructure-rackboot/VERSION/):
//
//   - clusterctl init --infrastructure rackboot installs rackboot's CRDs, RBAC and
//     ServiceAccount, labelled as provider infrastructure-rackboot, and records the
//     provider at the release's version;
//   - clusterctl generate cluster renders the release's cluster-template.yaml, and every
//     object it renders is accepted by the API server (the CRD schemas).
//
// Offline, clusterctl cannot fetch the upstream core, kubeadm bootstrap and control-plane
// components or cert-manager from GitHub. They come from a local repository the test
// writes: each provider's CRDs from the cluster-api module (with the contract labels its
// kustomize build adds) and Cluster API's own metadata.yaml; cert-manager counts as
// installed because its Issuer and Certificate APIs exist (clusterctl's readiness check
// creates one of each). Their controllers do not run: clusterctl does not wait for them
// unless --wait-providers.
func TestClusterctlProviderRepository(t *testing.T) {
	dist := needDist(t)
	version := distVersion(t, dist)
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	clusterctl := filepath.Join(assets, "clusterctl")
	if _, err := os.Stat(clusterctl); assets == "" || err != nil {
		skipOrFail(t, "no clusterctl in KUBEBUILDER_ASSETS=%q: run make envtest clusterctl", assets)
	}
	capiDir, err := mgmt.CAPIDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	e := &envtest.Environment{BinaryAssetsDirectory: assets, CRDs: certManagerAPIs()}
	restCfg, err := e.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() { _ = e.Stop() })
	admin, err := e.AddUser(envtest.User{Name: "clusterctl", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}

	// clusterctl.yaml: the snippet make dist wrote, plus the offline stand-ins.
	b, err := os.ReadFile(filepath.Join(dist, "clusterctl.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Providers []map[string]string `json:"providers"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("dist/clusterctl.yaml: %v", err)
	}
	if len(cfg.Providers) != 1 || cfg.Providers[0]["name"] != "rackboot" || cfg.Providers[0]["type"] != "InfrastructureProvider" {
		t.Fatalf("dist/clusterctl.yaml providers = %v, want rackboot InfrastructureProvider", cfg.Providers)
	}
	capiVersion := "v" + strings.TrimPrefix(filepath.Base(capiDir), "cluster-api@v")
	repo := filepath.Join(dir, "repository")
	for _, p := range []struct{ name, typ, label, file, crds, ns string }{
		{"cluster-api", "CoreProvider", "cluster-api", "core-components.yaml", "core", "capi-system"},
		{"kubeadm", "BootstrapProvider", "bootstrap-kubeadm", "bootstrap-components.yaml", "bootstrap/kubeadm", "capi-kubeadm-bootstrap-system"},
		{"kubeadm", "ControlPlaneProvider", "control-plane-kubeadm", "control-plane-components.yaml", "controlplane/kubeadm", "capi-kubeadm-control-plane-system"},
	} {
		url := writeStandInProvider(t, filepath.Join(repo, p.label, capiVersion), p.file, filepath.Join(capiDir, p.crds), p.ns, filepath.Join(capiDir, "metadata.yaml"))
		cfg.Providers = append(cfg.Providers, map[string]string{"name": p.name, "type": p.typ, "url": url})
	}
	b, err = yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "clusterctl.yaml")
	if err := os.WriteFile(config, b, 0o644); err != nil {
		t.Fatal(err)
	}

	clusterctlRun := func(env []string, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		cmd := exec.CommandContext(ctx, clusterctl, append(args, "--config", config, "--kubeconfig", kubeconfig)...)
		cmd.Env = append(os.Environ(), append([]string{"HOME=" + dir, "XDG_CONFIG_HOME=" + dir, "CLUSTERCTL_DISABLE_VERSIONCHECK=true"}, env...)...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("clusterctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.Bytes(), errb.Bytes())
		}
		t.Logf("clusterctl %s: %s", args[0], time.Since(start).Round(time.Millisecond))
		return out.String()
	}
	clusterctlRun(nil, "init", "--infrastructure", "rackboot")

	scheme := runtime.NewScheme()
	_ = apiextensionsv1.AddToScheme(scheme)
	cl, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"rackbootclusters", "rackbootmachines", "rackbootmachinetemplates"} {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := cl.Get(ctx, client.ObjectKey{Name: name + ".infrastructure.cluster.x-k8s.io"}, &crd); err != nil {
			t.Errorf("clusterctl init did not install %s: %v", name, err)
			continue
		}
		if got := crd.Labels["cluster.x-k8s.io/provider"]; got != "infrastructure-rackboot" {
			t.Errorf("CRD %s: provider label %q, want infrastructure-rackboot", crd.Name, got)
		}
		if got := crd.Labels["cluster.x-k8s.io/v1beta2"]; got == "" {
			t.Errorf("CRD %s lacks the contract label cluster.x-k8s.io/v1beta2", crd.Name)
		}
	}
	for _, o := range []struct{ kind, ns, name string }{
		{"ClusterRole", "", "rackboot-manager"},
		{"ClusterRoleBinding", "", "rackboot-manager"},
		{"ServiceAccount", "rackboot-system", "rackboot-manager"},
	} {
		u := &unstructured.Unstructured{}
		gv := "rbac.authorization.k8s.io/v1"
		if o.kind == "ServiceAccount" {
			gv = "v1"
		}
		u.SetAPIVersion(gv)
		u.SetKind(o.kind)
		if err := cl.Get(ctx, client.ObjectKey{Namespace: o.ns, Name: o.name}, u); err != nil {
			t.Errorf("clusterctl init did not install %s %s: %v", o.kind, o.name, err)
		}
	}
	providers := &unstructured.UnstructuredList{}
	providers.SetGroupVersionKind(schema.GroupVersionKind{Group: "clusterctl.cluster.x-k8s.io", Version: "v1alpha3", Kind: "ProviderList"})
	if err := cl.List(ctx, providers); err != nil {
		t.Fatal(err)
	}
	var installed []string
	for _, p := range providers.Items {
		v, _, _ := unstructured.NestedString(p.Object, "version")
		installed = append(installed, p.GetNamespace()+"/"+p.GetName()+"@"+v)
	}
	if !slices.Contains(installed, "rackboot-system/infrastructure-rackboot@"+version) {
		t.Errorf("clusterctl's inventory %v lacks rackboot-system/infrastructure-rackboot@%s", installed, version)
	}

	out := clusterctlRun([]string{"CONTROL_PLANE_ENDPOINT_HOST=10.0.0.10", "RACKBOOT_IMAGE=debian-12-k8s"},
		"generate", "cluster", "demo", "--infrastructure", "rackboot", "--target-namespace", "default",
		"--kubernetes-version", "v1.36.4", "--control-plane-machine-count", "1", "--worker-machine-count", "2")
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	var kinds []string
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("clusterctl generate cluster printed no YAML: %v\n%s", err, out)
		}
		if len(u.Object) == 0 {
			continue
		}
		kinds = append(kinds, u.GetKind())
		if strings.Contains(out, "${") {
			t.Errorf("unfilled variable left in the rendered template:\n%s", out)
		}
		// The API server checks each against its CRD's schema. Cluster API's
		// defaulting webhook (its controller does not run here) would fill a
		// MachineDeployment's selector: do as it does.
		if u.GetKind() == "MachineDeployment" {
			if _, ok, _ := unstructured.NestedMap(u.Object, "spec", "selector"); !ok {
				labels := map[string]any{
					"cluster.x-k8s.io/cluster-name":    u.GetLabels()["cluster.x-k8s.io/cluster-name"],
					"cluster.x-k8s.io/deployment-name": u.GetName(),
				}
				if cn, _, _ := unstructured.NestedString(u.Object, "spec", "clusterName"); cn != "" {
					labels["cluster.x-k8s.io/cluster-name"] = cn
				}
				_ = unstructured.SetNestedMap(u.Object, map[string]any{"matchLabels": labels}, "spec", "selector")
				tl, _, _ := unstructured.NestedMap(u.Object, "spec", "template", "metadata", "labels")
				if tl == nil {
					tl = map[string]any{}
				}
				for k, v := range labels {
					tl[k] = v
				}
				_ = unstructured.SetNestedMap(u.Object, tl, "spec", "template", "metadata", "labels")
			}
		}
		if err := cl.Create(ctx, u); err != nil {
			t.Errorf("rendered %s %s is refused by the API server: %v", u.GetKind(), u.GetName(), err)
		}
	}
	for _, want := range []string{"Cluster", "RackbootCluster", "KubeadmControlPlane", "RackbootMachineTemplate", "MachineDeployment", "KubeadmConfigTemplate"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("clusterctl generate cluster rendered %v: no %s", kinds, want)
		}
	}
}

// writeStandInProvider writes a local clusterctl repository version directory: the
// provider's CRDs (with contract labels) and its namespace as the components file, and
// metadata.yaml. It returns the components' file:// URL.
func writeStandInProvider(t *testing.T, dir, file, providerDir, ns, metadata string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(providerDir, "config/crd/bases/*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs under %s: %v", providerDir, err)
	}
	crds, err := mgmt.LoadCRDs(files...)
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n"}
	for _, crd := range crds {
		crd.APIVersion, crd.Kind = "apiextensions.k8s.io/v1", "CustomResourceDefinition"
		crd.Status = apiextensionsv1.CustomResourceDefinitionStatus{}
		b, err := yaml.Marshal(crd)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(metadata)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "metadata.yaml"), md, 0o644); err != nil {
		t.Fatal(err)
	}
	return "file://" + filepath.Join(dir, file)
}

// certManagerAPIs are cert-manager's Issuer and Certificate APIs, schemaless: enough for
// clusterctl's check that cert-manager is installed (it creates and deletes one of each).
func certManagerAPIs() []*apiextensionsv1.CustomResourceDefinition {
	crd := func(kind, plural string) *apiextensionsv1.CustomResourceDefinition {
		preserve := true
		return &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: plural + ".cert-manager.io"},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: "cert-manager.io",
				Scope: apiextensionsv1.NamespaceScoped,
				Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: kind, ListKind: kind + "List", Plural: plural, Singular: strings.ToLower(kind)},
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
					Name: "v1", Served: true, Storage: true,
					Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
						Type: "object", XPreserveUnknownFields: &preserve,
					}},
				}},
			},
		}
	}
	return []*apiextensionsv1.CustomResourceDefinition{crd("Issuer", "issuers"), crd("Certificate", "certificates")}
}
