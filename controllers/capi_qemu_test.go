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
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/inventory"
	"github.com/rackboot/rackboot/lab"
)

// kubeadmRan is what the lab image's console shows when cloud-init runs CABPK's
// runcmd: the lab image carries no Kubernetes, so `kubeadm init` is not found — by
// the shell that cloud-init runs the bootstrap data's commands with.
var kubeadmRan = regexp.MustCompile(`runcmd: \d+: kubeadm: not found`)

// TestQEMUClusterAPI is issue 5's bare-metal path for real: the real Cluster API core,
// kubeadm bootstrap and control-plane controllers against envtest, and `rackboot serve
// --kubeconfig … --rack lab` in a lab namespace (the API server reached through a
// forwarder on the namespace's loopback) with one QEMU host behind an IPMI BMC,
// enrolled and inspected through the CLI. A Cluster with a KubeadmControlPlane of one
// machine makes a Machine; its RackbootMachine claims the host, rackboot provisions it
// with the lab's Debian image and CABPK's bootstrap data as user-data, the host boots
// its disk and cloud-init runs the bootstrap commands — `kubeadm init`, which fails
// there because the lab image carries no Kubernetes; the console shows the shell
// running it — and phones home. The Machine then carries providerID rackboot://lab/HOST
// and the host's address.
func TestQEMUClusterAPI(t *testing.T) {
	lab.Require(t, append([]string{"qemu-system-x86_64", "ipmi_sim", "ipmitool", "apt-get", "dpkg-deb"}, lab.LabImageTools()...)...)
	rc := startRealCAPI(t)
	ctx := t.Context()
	ns := newNamespace(t, rc.c, "qemu")
	dir := t.TempDir()

	bin := filepath.Join(dir, "rackboot")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/rackboot/rackboot/cmd/rackboot")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/rackboot: %v\n%s", err, out)
	}
	seg, err := lab.NewSegment(t, "capi", netip.MustParsePrefix("10.77.48.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seg.StartRouterAdvertisements(t, filepath.Join(dir, "ra.log")); err != nil {
		t.Fatal(err)
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
	const rack = "lab"
	srv, err := lab.NewServer(t, lab.ServerConfig{Bin: bin, NS: seg.NS, Dir: dir, Addr: "10.77.48.1", Flags: []string{
		"--dhcp-mode", "server", "--dhcp-range", "10.77.48.100-10.77.48.149", "--dhcp-router", "10.77.48.1", "--unknown-hosts", "ignore",
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
		t.Logf("rackboot %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	}
	// A cold build of the image takes minutes.
	buildCtx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	err = srv.AddLabImage(buildCtx, io.Discard)
	cancel()
	if err != nil {
		t.Fatal(err)
	}

	const id, mac, ip = "cp-qemu", "52:54:00:48:00:01", "10.77.48.21"
	vmDir := filepath.Join(dir, id)
	if err := os.MkdirAll(vmDir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(vmDir, "disk.img")
	if err := lab.WriteBlankDisk(disk, 4<<30); err != nil {
		t.Fatal(err)
	}
	v, err := seg.StartBMCVM(ctx, t, lab.BMCVMConfig{
		VM:  lab.VM{Name: id, MAC: mac, Firmware: lab.SeaBIOS, MemoryMB: 1024, Disk: disk},
		Dir: vmDir, Rackboot: bin, BMC: lab.BMCConfig{Protocol: lab.IPMI},
	})
	if err != nil {
		t.Fatal(err)
	}
	cli("host", "add", "--id", id, "--mac", mac, "--ip", ip, "--hostname", id, "--label", "role=control-plane",
		"--bmc", v.BMC.URL(), "--bmc-password-file", v.BMC.PasswordFile)
	cli("host", "inspect", id)
	fail := func(err error) {
		t.Helper()
		evs, _ := srv.Events(ctx, id)
		var b strings.Builder
		for _, e := range evs {
			fmt.Fprintf(&b, "%s %-18s %s\n", e.Time.Format("15:04:05.000"), e.Type, e.Message)
		}
		t.Fatalf("%v\ntimeline:\n%s\nconsole:\n%s", err, b.String(), lab.Tail(v.SerialLog(), 40))
	}
	if err := srv.WaitHosts(ctx, []string{id}, 10*time.Minute, "inspection", func(h admin.Host) bool {
		return h.State == inventory.StateAvailable
	}, nil); err != nil {
		fail(err)
	}

	// The cluster: its control-plane Machine claims the host, which rackboot provisions.
	start := time.Now()
	rc.applyCluster(t, ns, "lab", 1, 0, lab.LabImageName)
	if err := srv.WaitHosts(ctx, []string{id}, 25*time.Minute, "the control-plane Machine's host to be provisioned", func(h admin.Host) bool {
		return h.State == inventory.StateProvisioned
	}, nil); err != nil {
		fail(err)
	}
	t.Logf("host %s provisioned for the control-plane Machine %v after the cluster was applied", id, time.Since(start).Round(time.Second))

	// cloud-init ran CABPK's bootstrap data on the installed system, fetched by the
	// host itself.
	console, err := os.ReadFile(v.SerialLog())
	if err != nil {
		t.Fatal(err)
	}
	if !kubeadmRan.Match(console) {
		t.Errorf("the console does not show cloud-init running kubeadm (%s):\n%s", kubeadmRan, lab.Tail(v.SerialLog(), 60))
	}
	evs, err := srv.Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(e admin.Event) bool {
		return e.Type == "metadata.fetch" && e.Fields["doc"] == "user-data" && e.Fields["ip"] == ip
	}) {
		t.Errorf("%s never fetched its user-data from its own address", id)
	}
	api, err := srv.API()
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.GetHost(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	rm, m, secret := bootstrapOf(t, rc.c, h.Claim.Owner)
	if !strings.Contains(string(secret.Data["value"]), "kubeadm init") {
		t.Errorf("the bootstrap data of Machine %s has no kubeadm init:\n%s", m.Name, secret.Data["value"])
	}
	if rm.Status.Host != id {
		t.Errorf("RackbootMachine %s claimed %q, want %s", rm.Name, rm.Status.Host, id)
	}

	// The Machine reports what the RackbootMachine found.
	eventually(t, 2*time.Minute, "the Machine to carry providerID and the host's address", func() (bool, string) {
		var ms clusterv1.MachineList
		if err := rc.c.List(ctx, &ms, client.InNamespace(ns)); err != nil || len(ms.Items) != 1 {
			return false, fmt.Sprint(len(ms.Items), err)
		}
		m := ms.Items[0]
		hasIP := slices.ContainsFunc(m.Status.Addresses, func(a clusterv1.MachineAddress) bool { return a.Address == ip })
		return m.Spec.ProviderID == "rackboot://"+rack+"/"+id && hasIP,
			fmt.Sprintf("providerID %q addresses %v", m.Spec.ProviderID, m.Status.Addresses)
	})
}
