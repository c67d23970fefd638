package controllers

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// verifyGenerated runs `hack/generate.sh --verify` against the tree at root.
func verifyGenerated(t *testing.T, root string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is needed to run hack/generate.sh")
	}
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "hack/generate.sh"), "--verify")
	cmd.Env = append(os.Environ(), "VERIFY_ROOT="+root)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestGeneratedFilesUpToDate is `make verify-generate` for `go test` users: the
// deepcopy code, CRDs, RBAC and components file in the tree are what controller-gen
// makes of api/ and controllers/ now.
func TestGeneratedFilesUpToDate(t *testing.T) {
	root := repoRoot(t)
	if out, err := verifyGenerated(t, root); err != nil {
		t.Fatalf("hack/generate.sh --verify: %v\n%s", err, out)
	}
}

// TestStaleManifestFailsVerify: a generated manifest that no longer matches the API
// (here, a CRD that lost its Cluster API contract label) fails the check, and the
// message says what to run.
func TestStaleManifestFailsVerify(t *testing.T) {
	root := repoRoot(t)
	stale := t.TempDir()
	for _, f := range []string{
		"api/v1alpha1/zz_generated.deepcopy.go",
		"config/rbac/role.yaml",
		"config/infrastructure-components.yaml",
		"config/crd/bases/infrastructure.cluster.x-k8s.io_rackbootclusters.yaml",
		"config/crd/bases/infrastructure.cluster.x-k8s.io_rackbootmachines.yaml",
		"config/crd/bases/infrastructure.cluster.x-k8s.io_rackbootmachinetemplates.yaml",
	} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "_rackbootmachines.yaml") {
			edited := strings.Replace(string(b), "    cluster.x-k8s.io/v1beta2: v1alpha1\n", "", 1)
			if edited == string(b) {
				t.Fatalf("%s has no contract label to remove", f)
			}
			b = []byte(edited)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(stale, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(stale, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := verifyGenerated(t, stale)
	if err == nil {
		t.Fatalf("verify passed on a stale CRD:\n%s", out)
	}
	for _, want := range []string{"config/crd/bases is stale", "cluster.x-k8s.io/v1beta2: v1alpha1", "run make generate"} {
		if !strings.Contains(out, want) {
			t.Fatalf("verify output lacks %q:\n%s", want, out)
		}
	}
}

// TestCRDContract checks what Cluster API and kubectl read from the CRDs: the contract
// label and the printer columns.
func TestCRDContract(t *testing.T) {
	root := repoRoot(t)
	crds := loadCRDs(t,
		filepath.Join(root, "config/crd/bases/infrastructure.cluster.x-k8s.io_rackbootclusters.yaml"),
		filepath.Join(root, "config/crd/bases/infrastructure.cluster.x-k8s.io_rackbootmachines.yaml"),
		filepath.Join(root, "config/crd/bases/infrastructure.cluster.x-k8s.io_rackbootmachinetemplates.yaml"),
	)
	for _, crd := range crds {
		if got := crd.Labels["cluster.x-k8s.io/v1beta2"]; got != "v1alpha1" {
			t.Errorf("%s: contract label cluster.x-k8s.io/v1beta2 = %q, want v1alpha1", crd.Name, got)
		}
		if crd.Spec.Names.Kind != "RackbootMachine" {
			continue
		}
		var cols []string
		for _, c := range crd.Spec.Versions[0].AdditionalPrinterColumns {
			col := c.Name + "=" + c.JSONPath
			if c.Priority > 0 {
				col += " (wide)"
			}
			cols = append(cols, col)
		}
		// TestKubectlView checks what the API server renders from them.
		want := []string{
			`Cluster=.metadata.labels['cluster\.x-k8s\.io/cluster-name']`,
			`Machine=.metadata.ownerReferences[?(@.kind=="Machine")].name`,
			"Host=.status.host", "Rack=.status.failureDomain", "State=.status.state", "Step=.status.step",
			`Ready=.status.conditions[?(@.type=="Ready")].status`,
			"ProviderID=.spec.providerID", "Age=.metadata.creationTimestamp",
			`Reason=.status.conditions[?(@.type=="Ready")].reason (wide)`,
		}
		if d := cmp.Diff(want, cols); d != "" {
			t.Errorf("printer columns (-want +got):\n%s", d)
		}
		if !slices.Contains(crd.Spec.Names.Categories, "cluster-api") {
			t.Errorf("RackbootMachine is not in the cluster-api category: %v", crd.Spec.Names.Categories)
		}
	}
}
