package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/controllers"
	"github.com/rackboot/rackboot/inventory"
	"github.com/rackboot/rackboot/provision"
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
		{name: "KubeconfigWithoutRack", args: []string{"--kubeconfig", kubeconfig}, getenv: noEnv, wantErr: "--rack is required"},
		{name: "RackWithoutCluster", args: []string{"--rack", "rack-a"}, getenv: noEnv, wantErr: "give --kubeconfig"},
		{name: "MissingKubeconfig", args: []string{"--kubeconfig", kubeconfig + ".nope", "--rack", "a"}, getenv: noEnv, wantErr: "--kubeconfig"},
		// In a pod without a service account mount the in-cluster config cannot load.
		{name: "InPodWithoutServiceAccount", args: []string{"--rack", "a"}, getenv: inPod, wantErr: "in-cluster"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f capiFlags
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			f.register(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			s, err := f.resolve(tc.getenv)
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
	if _, err := store.CreateImage(ctx, inventory.Image{Name: "debian-13", Source: "upload", SHA256: strings.Repeat("ab", 32), Format: agentapi.FormatRaw}); err != nil {
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
	want := controllers.HostStatus{State: inventory.StateProvisioning, Reason: st.Reason, ImageOwner: "ns/m1", Addresses: []clusterv1.MachineAddress{
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
