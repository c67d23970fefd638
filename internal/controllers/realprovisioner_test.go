package controllers

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rackboot/rackboot/agentapi"
	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/metadata"
	"github.com/rackboot/rackboot/internal/provision"
)

// TestRealClusterAPIRealProvisioner is TestRealClusterAPI with everything on
// rackboot's side real: the provision package's state machine behind the
// ProvisionAdapter `rackboot serve` uses, a bbolt inventory, and the agent API and
// metadata handler on a loopback HTTP server. The test plays each host: once a
// machine's host is provisioning it boots "the agent" (a token from AgentArgs, as the
// iPXE script carries), which says hello with agentapi's client from the host's
// address and reports the image written; then "cloud-init" fetches the NoCloud
// documents from the seed URL of the plan, and phones home.
//
// For every Machine, the user-data the host fetches with its metadata token from its
// own address is exactly the bootstrap secret's value CABPK wrote for that Machine
// (with the RackbootMachine's userDataAdditions, the only addition rackboot makes; the
// cluster template has none), its meta-data carries the providerID, and another
// host's address gets 403 for the same URL.
//
// The provisioner's OnTransition is the manager's HostChanged, as in `rackboot serve`,
// and the controllers' poll is longer than the test: nothing here waits for a poll.
// (Cluster API's own updates of the Machines also wake the controller here, so this
// test alone does not show the hook works: TestOnTransitionWakesMachine does.)
//
// Hosts have reserved loopback addresses 127.0.0.x and the test dials from them
// (net.Dialer.LocalAddr), so the source-address checks run as on a rack.
func TestRealClusterAPIRealProvisioner(t *testing.T) {
	rc := startRealCAPI(t)
	ctx := context.Background()
	ns := newNamespace(t, rc.c, "capi-real")

	r := newRealRack(t, rc.c,
		inventory.Host{ID: "cp-00", MACs: []string{"52:54:00:aa:00:01"}, IP: "127.0.0.11", Labels: map[string]string{"role": "control-plane"}},
		inventory.Host{ID: "wk-00", MACs: []string{"52:54:00:aa:00:02"}, IP: "127.0.0.21", Labels: map[string]string{"role": "worker"}},
		inventory.Host{ID: "wk-01", MACs: []string{"52:54:00:aa:00:03"}, IP: "127.0.0.22", Labels: map[string]string{"role": "worker"}},
	)
	// A poll far longer than the test.
	r.startManager(rc.cfg, ns, 10*time.Minute)
	rc.applyCluster(t, ns, "demo", 1, 2, "debian-13")

	cp := r.bootNext("cp-", "kubeadm init")
	t.Logf("control-plane host %s fetched CABPK's init data and is provisioned after %v", cp, time.Since(rc.start).Round(time.Millisecond))
	initControlPlane(t, rc.c)
	registerNode(t, rc.c, cp)
	for range 2 {
		wk := r.bootNext("wk-", "kubeadm join")
		t.Logf("worker host %s fetched CABPK's join data and is provisioned after %v", wk, time.Since(rc.start).Round(time.Millisecond))
	}
	// Every Machine of the cluster was checked, each on its own host.
	var ms clusterv1.MachineList
	if err := rc.c.List(ctx, &ms, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms.Items {
		names = append(names, m.Name)
	}
	checked := slices.Collect(maps.Values(r.machines))
	slices.Sort(names)
	slices.Sort(checked)
	if d := cmp.Diff(names, checked); d != "" {
		t.Fatalf("Machines whose host's user-data was checked (-all +checked):\n%s", d)
	}

	// kubectl describe: each RackbootMachine's Events go from its claim through the
	// steps the real provisioner reported to Provisioned, each once, about its Machine.
	var rms infrav1.RackbootMachineList
	if err := rc.c.List(ctx, &rms, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, rm := range rms.Items {
		host := rm.Status.Host
		var got []string
		eventually(t, 30*time.Second, "the Events of "+rm.Name, func() (bool, string) {
			got = machineEvents(t, rc.c, ns, rm.Name)
			return slices.Contains(got, "Normal Provisioned: host "+host+" runs image debian-13"), strings.Join(got, "\n")
		})
		if got[0] != "Normal HostClaimed: claimed host "+host+" of rack r1" || got[len(got)-1] != "Normal Provisioned: host "+host+" runs image debian-13" {
			t.Fatalf("Events of %s do not go from the claim to Provisioned:\n%s", rm.Name, strings.Join(got, "\n"))
		}
		for i, e := range got {
			if slices.Contains(got[:i], e) || strings.Contains(e, "%") || strings.HasPrefix(e, "Warning") {
				t.Fatalf("Events of %s: %q is repeated, carries a percentage or warns:\n%s", rm.Name, e, strings.Join(got, "\n"))
			}
		}
		t.Logf("Events of %s:\n%s", rm.Name, strings.Join(got, "\n"))
	}
	var evs eventsv1.EventList
	if err := rc.c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		if e.Regarding.Kind == "RackbootMachine" && (e.Related == nil || e.Related.Kind != "Machine" || e.ReportingController != "rackboot/r1") {
			t.Fatalf("Event %s on %s: related %+v, reported by %q; want its Machine, rackboot/r1", e.Name, e.Regarding.Name, e.Related, e.ReportingController)
		}
	}
}

// imagesOf looks images up in the inventory alone: no image file is served here (the
// agent is played by the test and writes nothing).
type imagesOf struct{ s *inventory.BoltStore }

func (i imagesOf) Lookup(ctx context.Context, name string) (inventory.Image, error) {
	return i.s.GetImage(ctx, name)
}

// realRack is rackboot's side of a rack, all real: a bbolt inventory with an image
// "debian-13" and the given hosts (available), the provisioner (no BMC: the test boots
// the hosts) running its loop, and the agent API and metadata handler on a loopback
// HTTP server. Its provisioner's OnTransition calls the manager startManager starts.
// The test plays the hosts.
type realRack struct {
	t     *testing.T
	c     client.Client
	store *inventory.BoltStore
	prov  *provision.Provisioner
	srv   *httptest.Server
	hosts []inventory.Host
	mgr   atomic.Pointer[Manager]

	played map[string]bool
	// machines maps each played host to the Machine whose bootstrap data it got.
	machines map[string]string
}

func newRealRack(t *testing.T, c client.Client, hosts ...inventory.Host) *realRack {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := inventory.Open(filepath.Join(dir, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(dir, "secret.key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for i := range hosts {
		hosts[i].State = inventory.StateAvailable
	}
	if _, err := store.CreateHosts(ctx, hosts...); err != nil {
		t.Fatal(err)
	}
	const imageSHA = "5d41402abc4b2a76b9719d911017c592aa5d41402abc4b2a76b9719d911017c5"
	if _, err := store.CreateImage(ctx, inventory.Image{Name: "debian-13", Source: "upload", SHA256: imageSHA, Format: inventory.FormatRaw}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.UpdateImage(ctx, "debian-13", func(im *inventory.Image) error {
		im.Status, im.Size = inventory.ImageReady, 4<<20
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := &realRack{t: t, c: c, store: store, hosts: hosts, played: map[string]bool{}, machines: map[string]string{}}

	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))
	// The server listens on 127.0.0.1; hosts reach it from their own 127.0.0.x.
	mux := http.NewServeMux()
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	// As in `rackboot serve`, the provisioner tells the controllers of every host
	// transition; the manager is built after the provisioner.
	onTransition := func(id string) {
		if m := r.mgr.Load(); m != nil {
			m.HostChanged(ctx, id)
		}
	}
	r.prov, err = provision.New(provision.Config{Store: store, Images: imagesOf{store}, ServerURL: r.srv.URL, Logger: log, OnTransition: onTransition})
	if err != nil {
		t.Fatal(err)
	}
	r.prov.Register(mux)
	md, err := metadata.NewHandler(metadata.Config{Store: store, Gate: r.prov.Gate(), PhoneHome: r.prov, ServerURL: r.srv.URL, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	md.Register(mux)
	provCtx, stopProv := context.WithCancel(ctx)
	provDone := make(chan error, 1)
	go func() { provDone <- r.prov.Start(provCtx) }()
	t.Cleanup(func() {
		stopProv()
		if err := <-provDone; err != nil {
			t.Errorf("provisioner: %v", err)
		}
	})
	return r
}

// startManager runs rack r1's controllers on this rack, with the ProvisionAdapter of
// `rackboot serve`, and hooks them to the provisioner's transitions.
func (r *realRack) startManager(rest *rest.Config, ns string, poll time.Duration) {
	r.t.Helper()
	m, _ := startManager(r.t, Config{REST: rest, Rack: "r1", Inventory: r.store,
		Provisioner: ProvisionAdapter{Provisioner: r.prov, Leases: r.store}, Namespace: ns, Poll: poll})
	r.mgr.Store(m)
}

// waitState waits for a host named prefix*, not yet played, to be in state st.
func (r *realRack) waitState(prefix string, st inventory.State) inventory.Host {
	r.t.Helper()
	var h inventory.Host
	eventually(r.t, 3*time.Minute, "a "+prefix+" host "+string(st), func() (bool, string) {
		all, err := r.store.ListHosts(context.Background())
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, x := range all {
			seen = append(seen, x.ID+":"+string(x.State))
			if strings.HasPrefix(x.ID, prefix) && !r.played[x.ID] && x.State == st {
				h = x
				return true, ""
			}
		}
		return false, strings.Join(seen, " ")
	})
	return h
}

// bootAgent boots "the agent" on h: a token from AgentArgs (what its iPXE script
// carries) and hello with agentapi's client from the host's address.
func (r *realRack) bootAgent(h inventory.Host) (*agentapi.Client, agentapi.Plan) {
	t := r.t
	t.Helper()
	ctx := context.Background()
	mac := h.MACs[0]
	args, err := r.prov.AgentArgs(ctx, h, mac, netip.MustParseAddr(h.IP))
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := strings.CutPrefix(args, agentapi.ParamToken+"=")
	if !ok {
		t.Fatalf("agent arguments %q carry no token", args)
	}
	agent := &agentapi.Client{BaseURL: r.srv.URL, Token: tok, HTTP: httpFrom(h.IP), Retry: agentapi.Retry{Attempts: 1}}
	plan, err := agent.Hello(ctx, agentapi.Hello{MAC: mac, AgentVersion: "test", BootID: "boot-" + h.ID, Facts: agentapi.Facts{
		Disks: []agentapi.Disk{{Name: "sda", SizeBytes: 40 << 30}},
		NICs:  []agentapi.NIC{{Name: "eth0", MAC: mac, Carrier: true, Boot: true}},
	}})
	if err != nil {
		t.Fatalf("host %s agent hello: %v", h.ID, err)
	}
	return agent, plan
}

// writeImage plays the agent of a provisioning host up to "image written" and returns
// the cloud-init seed URL of its plan.
func (r *realRack) writeImage(h inventory.Host) string {
	t := r.t
	t.Helper()
	agent, plan := r.bootAgent(h)
	if plan.Action != agentapi.ActionProvision || plan.Provision.CloudInit.SeedURL == "" {
		t.Fatalf("host %s got plan %+v, want a provision plan with a cloud-init seed URL", h.ID, plan)
	}
	if err := agent.Result(context.Background(), agentapi.Result{Action: agentapi.ActionProvision, OK: true, RootDisk: "sda",
		ImageSHA256: plan.Provision.SHA256, BytesWritten: 4 << 20, Seconds: 1}); err != nil {
		t.Fatalf("host %s agent result: %v", h.ID, err)
	}
	return plan.Provision.CloudInit.SeedURL
}

// httpFrom is an HTTP client whose connections come from ip, as a host's would.
func httpFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// fetch does one request from ip and returns status and body.
func (r *realRack) fetch(method, url, ip string) (int, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := httpFrom(ip).Do(req)
	if err != nil {
		r.t.Fatalf("%s %s from %s: %v", method, url, ip, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// bootNext waits for a host named prefix* that a machine's provisioning started,
// plays its agent and its installed system, checks the documents it is served, and
// waits for its RackbootMachine to be provisioned. It returns the host.
func (r *realRack) bootNext(prefix, want string) string {
	t := r.t
	t.Helper()
	ctx := context.Background()
	h := r.waitState(prefix, inventory.StateProvisioning)
	r.played[h.ID] = true
	seed := r.writeImage(h)

	// The installed system's cloud-init, from the host's address.
	h, err := r.store.GetHost(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	rm, machine, secret := bootstrapOf(t, r.c, h.Claim.Owner)
	if got := UserDataFormat(secret.Data["format"]); got != FormatCloudConfig {
		t.Fatalf("Machine %s's bootstrap format is %q; this test knows cloud-config", machine.Name, got)
	}
	wantUD, err := CloudConfigWithAddition(secret.Data["value"], rm.Spec.UserDataAdditions.CloudConfig)
	if err != nil {
		t.Fatal(err)
	}
	r.machines[h.ID] = machine.Name
	code, ud := r.fetch(http.MethodGet, seed+metadata.DocUserData, h.IP)
	if code != http.StatusOK {
		t.Fatalf("host %s user-data: HTTP %d: %s", h.ID, code, ud)
	}
	if !bytes.Equal(ud, wantUD) {
		t.Fatalf("host %s (RackbootMachine %s) fetched %d bytes of user-data, not the %d of Machine %s's bootstrap secret %s:\n%s",
			h.ID, rm.Name, len(ud), len(wantUD), machine.Name, secret.Name, ud)
	}
	for _, tmpl := range []string{want, "{{ ds.meta_data.metadata.provider_id }}", "{{ ds.meta_data.metadata.machine }}"} {
		if !bytes.Contains(ud, []byte(tmpl)) {
			t.Fatalf("host %s user-data lacks %q (kubeadm command, provider-id or node-name template):\n%s", h.ID, tmpl, ud)
		}
	}
	// What the templates read: the providerID, and the Machine's name as the node name
	// (host names are unique only within a rack).
	code, md := r.fetch(http.MethodGet, seed+metadata.DocMetaData, h.IP)
	if code != http.StatusOK || !bytes.Contains(md, []byte("rackboot://r1/"+h.ID)) || !bytes.Contains(md, []byte("machine: "+machine.Name+"\n")) {
		t.Fatalf("host %s meta-data: HTTP %d without its providerID or machine %s:\n%s", h.ID, code, machine.Name, md)
	}
	// The same URL from every other host's address: refused, secrets stay put.
	for _, other := range r.hosts {
		if other.ID == h.ID {
			continue
		}
		if code, body := r.fetch(http.MethodGet, seed+metadata.DocUserData, other.IP); code != http.StatusForbidden {
			t.Fatalf("host %s's user-data asked from %s (host %s): HTTP %d, want 403:\n%s", h.ID, other.IP, other.ID, code, body)
		}
	}
	evs, err := r.store.Events(ctx, h.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(e inventory.Event) bool { return e.Type == metadata.EventRejected }) {
		t.Fatalf("host %s's timeline shows no %s event for the refused requests", h.ID, metadata.EventRejected)
	}
	if code, body := r.fetch(http.MethodPost, seed+metadata.DocPhoneHome, h.IP); code != http.StatusOK {
		t.Fatalf("host %s phone-home: HTTP %d: %s", h.ID, code, body)
	}

	eventually(t, 30*time.Second, "RackbootMachine "+rm.Name+" to be provisioned on "+h.ID, func() (bool, string) {
		var m infrav1.RackbootMachine
		if err := r.c.Get(ctx, client.ObjectKeyFromObject(rm), &m); err != nil {
			return false, err.Error()
		}
		return m.Status.State == infrav1.StateProvisioned && m.Status.Host == h.ID,
			fmt.Sprintf("state %s host %s", m.Status.State, m.Status.Host)
	})
	return h.ID
}

// TestOnTransitionWakesMachine: with the real provisioner and a poll of an hour, a
// machine sees its host provisioned, and its deletion finishes once the wipe is done,
// only because the provisioner's OnTransition calls the manager's HostChanged. Nothing
// else touches the Machine here (no Cluster API controllers run), so without the hook
// both would wait for the poll.
func TestOnTransitionWakesMachine(t *testing.T) {
	f := newFixture(t, "hook")
	ctx := context.Background()
	r := newRealRack(t, f.c, inventory.Host{ID: "h-00", MACs: []string{"52:54:00:bb:00:01"}, IP: "127.0.0.41"})
	r.startManager(shared.cfg, f.ns, time.Hour)

	f.machine("a", "r1", nil)
	h := r.waitState("h-", inventory.StateProvisioning)
	r.played[h.ID] = true
	seed := r.writeImage(h)
	eventually(t, 30*time.Second, "machine a Provisioning with its image written", func() (bool, string) {
		rm := f.get("a")
		return rm.Status.State == infrav1.StateProvisioning && rm.Status.Host == h.ID, string(rm.Status.State)
	})
	if code, body := r.fetch(http.MethodPost, seed+metadata.DocPhoneHome, h.IP); code != http.StatusOK {
		t.Fatalf("phone-home: HTTP %d: %s", code, body)
	}
	eventually(t, 30*time.Second, "machine a provisioned (an hour's poll away without the hook)", func() (bool, string) {
		rm := f.get("a")
		return rm.Status.State == infrav1.StateProvisioned, string(rm.Status.State)
	})

	if err := f.c.Delete(ctx, f.get("a")); err != nil {
		t.Fatal(err)
	}
	delete(r.played, h.ID)
	h = r.waitState("h-", inventory.StateDeprovisioning)
	agent, plan := r.bootAgent(h)
	if plan.Action != agentapi.ActionDeprovision {
		t.Fatalf("plan after delete: %+v, want deprovision", plan)
	}
	if err := agent.Result(ctx, agentapi.Result{Action: agentapi.ActionDeprovision, OK: true, Wiped: []string{"sda"}, Next: "poweroff"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "machine a gone and its host released", func() (bool, string) {
		err := f.c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "a"}, &infrav1.RackbootMachine{})
		h, _ := r.store.GetHost(ctx, h.ID)
		return apierrors.IsNotFound(err) && h.Claim.IsZero() && h.State == inventory.StateAvailable, fmt.Sprint(err, " ", h.State, " ", h.Claim.Owner)
	})
}
