package mgmt

import (
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestSlowHardware applies the overlay to the cluster template operators use and checks
// it reaches the kubeadm configuration CABPK renders: timeouts for init and join, the
// probe patches and their directory, the leader-election leases; and that it refuses a
// template without the objects it adapts.
func TestSlowHardware(t *testing.T) {
	tmpl := filepath.Join("..", "..", "..", "config", "templates", "cluster-template.yaml") // go test runs in internal/lab/mgmt
	objs, err := FillTemplate(tmpl, map[string]string{
		"CLUSTER_NAME": "c", "KUBERNETES_VERSION": "v1.36.4", "CONTROL_PLANE_ENDPOINT_HOST": "10.0.0.1", "RACKBOOT_IMAGE": "img",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := SlowHardware(objs); err != nil {
		t.Fatal(err)
	}
	var kcp, kct *unstructured.Unstructured
	for _, u := range objs {
		switch u.GetKind() {
		case "KubeadmControlPlane":
			kcp = u
		case "KubeadmConfigTemplate":
			kct = u
		}
	}
	spec := []string{"spec", "kubeadmConfigSpec"}
	for _, cfg := range []string{"initConfiguration", "joinConfiguration"} {
		if v, _, _ := unstructured.NestedInt64(kcp.Object, append(spec, cfg, "timeouts", "kubernetesAPICallSeconds")...); v != 900 {
			t.Errorf("KCP %s kubernetesAPICallSeconds = %d", cfg, v)
		}
		if d, _, _ := unstructured.NestedString(kcp.Object, append(spec, cfg, "patches", "directory")...); d != tcgPatchDir {
			t.Errorf("KCP %s patches directory = %q", cfg, d)
		}
		// The template's own settings survive.
		if n, _, _ := unstructured.NestedString(kcp.Object, append(spec, cfg, "nodeRegistration", "name")...); n == "" {
			t.Errorf("KCP %s lost nodeRegistration.name", cfg)
		}
	}
	files, _, _ := unstructured.NestedSlice(kcp.Object, append(spec, "files")...)
	if len(files) != 4 {
		t.Errorf("KCP files: %d patches, want 4 (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)", len(files))
	}
	for _, comp := range []string{"controllerManager", "scheduler"} {
		args, _, _ := unstructured.NestedSlice(kcp.Object, append(spec, "clusterConfiguration", comp, "extraArgs")...)
		if len(args) != 3 {
			t.Errorf("%s extraArgs = %v, want the three leader-election settings", comp, args)
		}
	}
	if v, _, _ := unstructured.NestedInt64(kct.Object, "spec", "template", "spec", "joinConfiguration", "timeouts", "discoverySeconds"); v != 900 {
		t.Errorf("worker join discoverySeconds = %d", v)
	}
	for _, u := range objs {
		if u.GetKind() != "MachineHealthCheck" {
			continue
		}
		if v, _, _ := unstructured.NestedInt64(u.Object, "spec", "checks", "nodeStartupTimeoutSeconds"); v != 4*3600 {
			t.Errorf("MachineHealthCheck nodeStartupTimeoutSeconds = %d, want %d", v, 4*3600)
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "spec", "checks", "unhealthyMachineConditions")
		if len(conds) == 0 || conds[0].(map[string]any)["timeoutSeconds"] != int64(4*1800) {
			t.Errorf("MachineHealthCheck unhealthyMachineConditions = %v, want timeouts of %d", conds, 4*1800)
		}
	}
	if err := SlowHardware(objs[:1]); err == nil {
		t.Error("SlowHardware accepted a template without KubeadmControlPlane and KubeadmConfigTemplate")
	}
}

// TestAuthorizeSSH checks the SSH overlay reaches both kinds of machine, keeps what the
// template already has, and refuses a template without them.
func TestAuthorizeSSH(t *testing.T) {
	objs, err := FillTemplate(filepath.Join("..", "..", "..", "config", "templates", "cluster-template.yaml"), map[string]string{
		"CLUSTER_NAME": "c", "KUBERNETES_VERSION": "v1.36.4", "CONTROL_PLANE_ENDPOINT_HOST": "10.0.0.1", "RACKBOOT_IMAGE": "img",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := AuthorizeSSH(objs, "lab", "ssh-ed25519 AAAA test"); err != nil {
		t.Fatal(err)
	}
	paths := map[string][]string{"KubeadmControlPlane": {"spec", "kubeadmConfigSpec", "users"}, "KubeadmConfigTemplate": {"spec", "template", "spec", "users"}}
	seen := 0
	for _, u := range objs {
		p, ok := paths[u.GetKind()]
		if !ok {
			continue
		}
		seen++
		users, _, _ := unstructured.NestedSlice(u.Object, p...)
		if len(users) != 1 {
			t.Fatalf("%s users = %v", u.GetKind(), users)
		}
		m := users[0].(map[string]any)
		keys, _ := m["sshAuthorizedKeys"].([]any)
		if m["name"] != "lab" || len(keys) != 1 || keys[0] != "ssh-ed25519 AAAA test" {
			t.Errorf("%s user = %v", u.GetKind(), m)
		}
	}
	if seen != 2 {
		t.Errorf("overlay applied to %d objects, want 2", seen)
	}
	if err := AuthorizeSSH(objs[:1], "lab", "k"); err == nil {
		t.Error("AuthorizeSSH accepted a template without machines")
	}
}
