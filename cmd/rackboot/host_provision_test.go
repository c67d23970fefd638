package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/adminserver"
	"github.com/rackboot/rackboot/internal/images"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
	"github.com/rackboot/rackboot/internal/provision"
)

// newTestCatalog opens a BoltStore and an image catalog in a temporary data directory,
// both closed when the test ends: what every harness that serves the admin API needs.
func newTestCatalog(t *testing.T) (*inventory.BoltStore, *images.Catalog) {
	t.Helper()
	dir := t.TempDir()
	store, err := inventory.Open(filepath.Join(dir, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(dir, "secret.key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cat, err := images.New(images.Config{Dir: filepath.Join(dir, "images"), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	return store, cat
}

// serveCLI serves mux on loopback and points the CLI at it.
func serveCLI(t *testing.T, store *inventory.BoltStore, mux http.Handler) *cliHarness {
	t.Helper()
	h := &cliHarness{t: t, store: store}
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	h.env = map[string]string{"RACKBOOT_SERVER": h.srv.URL, "RACKBOOT_TOKEN": cliToken}
	return h
}

// newProvisionHarness is the CLI against an admin API with a real provisioner (no BMC)
// and image catalog; the agent API and iPXE scripts are on the same server, so a test
// can play the agent of a host at 127.0.0.1.
func newProvisionHarness(t *testing.T) (*cliHarness, *provision.Provisioner) {
	t.Helper()
	return newProvisionHarnessAt(t, nil)
}

// newProvisionHarnessAt is newProvisionHarness with the provisioner on clock now (nil:
// time.Now), so the agent's reports carry the times a test gives them.
func newProvisionHarnessAt(t *testing.T, now func() time.Time) (*cliHarness, *provision.Provisioner) {
	t.Helper()
	store, cat := newTestCatalog(t)
	prov, err := provision.New(provision.Config{Store: store, Images: cat, Interval: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- prov.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	api, err := adminserver.NewHandler(adminserver.Config{Store: store, Token: cliToken, Provisioner: prov, Images: cat})
	if err != nil {
		t.Fatal(err)
	}
	boot, err := ipxe.NewHandler(ipxe.HandlerConfig{Store: store, Binaries: ipxe.Binaries(), AgentTokens: prov, Gate: prov.Gate(),
		BootEnv: &ipxe.BootEnv{Kernel: "http://x/vmlinuz", Cmdline: "rackboot.url={{.ServerURL}} rackboot.mac={{.MAC}}"}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", api)
	prov.Register(mux)
	boot.Register(mux)
	return serveCLI(t, store, mux), prov
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImageCLI(t *testing.T) {
	h, _ := newProvisionHarness(t)
	data := strings.Repeat("disk image bytes ", 1000)
	s := sha256.Sum256([]byte(data))
	sum := hex.EncodeToString(s[:])
	file := writeTemp(t, "disk.img", data)

	out := h.mustRun("image", "add", "debian-12", "--file", file, "--sha256", sum, "--format", "raw")
	if !strings.Contains(out, "image debian-12: ready") || !strings.Contains(out, sum) {
		t.Errorf("add output: %q", out)
	}
	_, _, err := h.run("image", "add", "bad", "--file", file, "--sha256", strings.Repeat("1", 64))
	if err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Errorf("add with a wrong sum: %v", err)
	}
	out = h.mustRun("image", "list")
	for _, want := range []string{"NAME", "bad", "failed", "debian-12", "ready", sum[:12], "upload"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	for _, args := range [][]string{
		{"image", "add", "x", "--sha256", sum},
		{"image", "add", "x", "--file", file, "--url", "http://a/b", "--sha256", sum},
		{"image", "add", "x", "--file", file, "--sha256", "nope"},
		{"image", "add", "x", "--file", file, "--sha256", sum, "--format", "rar"},
		{"image", "add", "X Y", "--file", file, "--sha256", sum},
	} {
		if _, _, err := h.run(args...); err == nil {
			t.Errorf("rackboot %s succeeded", strings.Join(args, " "))
		}
	}
	if h.mustRun("image", "rm", "bad") != "removed image bad\n" {
		t.Error("rm output")
	}
	if out := h.mustRun("image", "show", "debian-12", "-o", "json"); !strings.Contains(out, `"status": "ready"`) {
		t.Errorf("show: %s", out)
	}
}

// TestHostProvisionCLI drives inspect, provision and release with the CLI while the
// test plays the agent, and follows the host with `host watch`.
func TestHostProvisionCLI(t *testing.T) {
	h, prov := newProvisionHarness(t)
	ctx := context.Background()
	const mac = "52:54:00:12:34:56"
	data := "image"
	s := sha256.Sum256([]byte(data))
	h.mustRun("image", "add", "debian-12", "--file", writeTemp(t, "img", data), "--sha256", hex.EncodeToString(s[:]))
	if _, err := h.store.CreateHosts(ctx, inventory.Host{ID: "node-1", MACs: []string{mac}, IP: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}

	// agent plays one boot: the script's token, hello, then the result of its plan.
	agent := func() agentapi.Plan {
		t.Helper()
		// The boot key DHCP's ACK hands the host (at 127.0.0.1) with its script URL.
		key := prov.Gate().IssueKey(mac, netip.MustParseAddr("127.0.0.1"))
		resp, err := http.Get(h.srv.URL + "/ipxe/boot.ipxe?mac=" + mac + "&key=" + key)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		resp.Body.Close()
		i := strings.Index(string(buf[:n]), "rackboot.url=")
		line := string(buf[i:n])
		line = line[:strings.Index(line, " ||")]
		args, err := agentapi.ParseKernelArgs(line)
		if err != nil {
			t.Fatalf("%v in %q", err, buf[:n])
		}
		c := &agentapi.Client{BaseURL: args.URL, Token: args.Token, Retry: agentapi.Retry{Attempts: 1}}
		plan, err := c.Hello(ctx, agentapi.Hello{MAC: mac, BootID: "b", Facts: agentapi.Facts{Disks: []agentapi.Disk{{Name: "vda", SizeBytes: 10 << 30}}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Result(ctx, agentapi.Result{Action: plan.Action, OK: true, RootDisk: "vda"}); err != nil {
			t.Fatal(err)
		}
		return plan
	}

	out := h.mustRun("host", "inspect", "node-1")
	if !strings.Contains(out, "inspecting node-1: inspecting") {
		t.Errorf("inspect output %q", out)
	}
	watched := make(chan string, 1)
	go func() {
		out, _, err := h.run("host", "watch", "node-1", "--timeout", "30s")
		if err != nil {
			out += "ERROR: " + err.Error()
		}
		watched <- out
	}()
	if p := agent(); p.Action != agentapi.ActionInspect {
		t.Fatalf("plan %+v", p)
	}
	out = <-watched
	for _, want := range []string{"state.changed", "enrolled → inspecting", "agent.hello", "inspecting → available", "== available"} {
		if !strings.Contains(out, want) {
			t.Errorf("watch output lacks %q:\n%s", want, out)
		}
	}

	for _, args := range [][]string{
		{"host", "provision", "node-1"},
		{"host", "provision", "node-1", "--image", "debian-12", "--root-disk", "size=1"},
		{"host", "provision", "node-1", "--image", "debian-12", "--user-data", writeTemp(t, "ud", "not cloud-init")},
		{"host", "provision", "node-1", "--image", "debian-12", "--user-data", "a", "--butane", "b"},
		{"host", "provision", "node-1", "--image", "debian-12", "--label", "bad label=x"},
		{"host", "release", "node-1", "--wipe", "sometimes"},
	} {
		if _, _, err := h.run(args...); err == nil {
			t.Errorf("rackboot %s succeeded", strings.Join(args, " "))
		}
	}
	ud := writeTemp(t, "user-data", "#cloud-config\nruncmd: [touch /root/marker]\n")
	out = h.mustRun("host", "provision", "node-1", "--image", "debian-12", "--user-data", ud, "--root-disk", "min=1G", "--label", "role=worker", "--meta", "cluster=c1")
	if !strings.Contains(out, "provisioning node-1: provisioning") {
		t.Errorf("provision output %q", out)
	}
	if p := agent(); p.Action != agentapi.ActionProvision || p.Provision.RootDisk.MinSizeBytes != 1<<30 {
		t.Fatalf("plan %+v", p.Provision)
	}
	host, _ := h.store.GetHost(ctx, "node-1")
	if host.Operation == nil || host.Operation.Phase != inventory.PhaseDiskBoot || host.Labels["role"] != "worker" || host.Provision.Metadata["cluster"] != "c1" {
		t.Fatalf("host after the image was written: %+v %+v", host.Operation, host.Provision)
	}
	out = h.mustRun("host", "release", "node-1", "--wipe", "full")
	if !strings.Contains(out, "releasing node-1: deprovisioning") {
		t.Errorf("release output %q", out)
	}
	if p := agent(); p.Action != agentapi.ActionDeprovision || p.Deprovision.Wipe != agentapi.WipeFull {
		t.Fatalf("plan %+v", p)
	}
	if out := h.mustRun("host", "watch", "node-1"); !strings.Contains(out, "== available") {
		t.Errorf("watch of a finished host: %q", out)
	}
}

// TestHostAcceptCLI: `host accept` makes a discovered host available (inspected) or
// enrolled (not yet); any other host is refused with the reason.
func TestHostAcceptCLI(t *testing.T) {
	h, _ := newProvisionHarness(t)
	ctx := context.Background()
	if _, err := h.store.CreateHosts(ctx,
		inventory.Host{ID: "seen", MACs: []string{"52:54:00:de:00:01"}, State: inventory.StateDiscovered},
		inventory.Host{ID: "known", MACs: []string{"52:54:00:de:00:02"}}); err != nil {
		t.Fatal(err)
	}
	if out := h.mustRun("host", "accept", "seen", "--by", "alice"); !strings.Contains(out, "accepted seen: enrolled") {
		t.Errorf("accept output %q", out)
	}
	if _, _, err := h.run("host", "accept", "known"); err == nil || !strings.Contains(err.Error(), "only discovered hosts") {
		t.Errorf("accept of an enrolled host: %v", err)
	}
	if _, _, err := h.run("host", "accept", "nobody"); err == nil || !strings.Contains(err.Error(), "no host") {
		t.Errorf("accept of an unknown host: %v", err)
	}
	evs, err := h.store.Events(ctx, "seen", 0)
	if err != nil || len(evs) == 0 || evs[0].Type != "host.accepted" || evs[0].Fields["by"] != "alice" {
		t.Errorf("events %+v, %v: want host.accepted by alice", evs, err)
	}
}
