package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
	"github.com/rackboot/rackboot/internal/inventory"
)

// fixture is one namespace with a Cluster whose infrastructure is provisioned, and the
// Machines and RackbootMachines a test creates in it, as Cluster API would.
type fixture struct {
	t       *testing.T
	c       client.Client
	ns      string
	cluster *clusterv1.Cluster
}

func newFixture(t *testing.T, prefix string) *fixture {
	t.Helper()
	_, c := env(t)
	ns := newNamespace(t, c, prefix)
	ctx := context.Background()
	cl := &clusterv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c1"},
		Spec: clusterv1.ClusterSpec{InfrastructureRef: clusterv1.ContractVersionedObjectReference{
			APIGroup: infrav1.GroupVersion.Group, Kind: "RackbootCluster", Name: "c1",
		}},
	}
	if err := c.Create(ctx, cl); err != nil {
		t.Fatal(err)
	}
	cl.Status.Initialization.InfrastructureProvisioned = ptr.To(true)
	if err := c.Status().Update(ctx, cl); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, c: c, ns: ns, cluster: cl}
}

// bootstrapData is the user-data a machine's bootstrap secret holds in these tests.
func bootstrapData(name string) []byte {
	return []byte("## template: jinja\n#cloud-config\nruncmd:\n- echo bootstrap of " + name + "\n")
}

// machine creates a bootstrap secret, a Machine (on failure domain fd, "" for
// unplaced) and its RackbootMachine selecting hosts by selector.
func (f *fixture) machine(name, fd string, selector map[string]string) *infrav1.RackbootMachine {
	f.t.Helper()
	ctx := context.Background()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name + "-bootstrap"},
		Data:       map[string][]byte{"value": bootstrapData(name), "format": []byte("cloud-config")},
	}
	if err := f.c.Create(ctx, secret); err != nil {
		f.t.Fatal(err)
	}
	m := &clusterv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name, Labels: map[string]string{clusterv1.ClusterNameLabel: f.cluster.Name}},
		Spec: clusterv1.MachineSpec{
			ClusterName:       f.cluster.Name,
			Bootstrap:         clusterv1.Bootstrap{DataSecretName: ptr.To(secret.Name)},
			InfrastructureRef: clusterv1.ContractVersionedObjectReference{APIGroup: infrav1.GroupVersion.Group, Kind: "RackbootMachine", Name: name},
			FailureDomain:     fd,
		},
	}
	if err := f.c.Create(ctx, m); err != nil {
		f.t.Fatal(err)
	}
	rm := &infrav1.RackbootMachine{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: f.ns, Name: name,
			Labels: map[string]string{clusterv1.ClusterNameLabel: f.cluster.Name},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: clusterv1.GroupVersion.String(), Kind: "Machine", Name: m.Name, UID: m.UID,
			}},
		},
		Spec: infrav1.RackbootMachineSpec{
			Image:        "debian-13",
			HostSelector: metav1.LabelSelector{MatchLabels: selector},
			RootDiskHint: infrav1.RootDiskHint{DeviceName: "/dev/sda", MinSizeGiB: 20},
		},
	}
	if err := f.c.Create(ctx, rm); err != nil {
		f.t.Fatal(err)
	}
	return rm
}

// annotate sets (or with nil, removes) an annotation with a merge patch, which does
// not conflict with the controller's own writes.
func (f *fixture) annotate(name, key string, value *string) {
	f.t.Helper()
	rm := f.get(name)
	base := rm.DeepCopy()
	if rm.Annotations == nil {
		rm.Annotations = map[string]string{}
	}
	if value == nil {
		delete(rm.Annotations, key)
	} else {
		rm.Annotations[key] = *value
	}
	if err := f.c.Patch(context.Background(), rm, client.MergeFrom(base)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) list() []infrav1.RackbootMachine {
	f.t.Helper()
	var l infrav1.RackbootMachineList
	if err := f.c.List(context.Background(), &l, client.InNamespace(f.ns)); err != nil {
		f.t.Fatal(err)
	}
	return l.Items
}

func (f *fixture) get(name string) *infrav1.RackbootMachine {
	f.t.Helper()
	rm := &infrav1.RackbootMachine{}
	if err := f.c.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, rm); err != nil {
		f.t.Fatal(err)
	}
	return rm
}

// tally counts machines by state and checks that no host is held twice.
func tally(t *testing.T, items []infrav1.RackbootMachine) (byState map[infrav1.MachineState]int, hostOf map[string]string) {
	t.Helper()
	byState = map[infrav1.MachineState]int{}
	hostOf = map[string]string{}
	holder := map[string]string{}
	for _, rm := range items {
		byState[rm.Status.State]++
		if h := rm.Status.Host; h != "" {
			if prev, dup := holder[h]; dup {
				t.Fatalf("host %s is held by both %s and %s", h, prev, rm.Name)
			}
			holder[h] = rm.Name
			hostOf[rm.Name] = h
		}
	}
	return byState, hostOf
}

// Test50MachinesFor40Hosts is the contention case of issue 5: 50 RackbootMachines
// created at once (half placed on the rack by their Machine's failure domain, half
// unplaced) against 40 matching hosts and 5 that do not match. Exactly 40 get a host,
// no host twice, each host's provisioner request carries its own machine's bootstrap
// data; the other 10 wait and say why. Deleting a provisioned machine wipes and
// releases its host, and a waiting machine gets it.
func Test50MachinesFor40Hosts(t *testing.T) {
	f := newFixture(t, "contention")
	store := newStore(t, "r1n", 40, map[string]string{"role": "worker"})
	addTestHosts(t, store, "gpu", 0, 5, map[string]string{"role": "gpu"})
	prov := newFakeProvisioner(store)
	mgr, _ := startManager(t, Config{REST: shared.cfg, Rack: "r1", Inventory: store, Provisioner: prov, Namespace: f.ns, Poll: time.Minute})
	prov.notify = func(id string) { mgr.HostChanged(context.Background(), id) }

	start := time.Now()
	var wg sync.WaitGroup
	for i := range 50 {
		fd := ""
		if i%2 == 0 {
			fd = "r1"
		}
		wg.Go(func() { f.machine(fmt.Sprintf("m%02d", i), fd, map[string]string{"role": "worker"}) })
	}
	wg.Wait()

	settled := func() (bool, string) {
		by, _ := tally(t, f.list())
		return by[infrav1.StateProvisioned] == 40 && by[infrav1.StateWaitingForHost] == 10, fmt.Sprint(by)
	}
	eventually(t, 60*time.Second, "40 provisioned and 10 waiting", settled)
	t.Logf("50 machines against 40 hosts settled in %v", time.Since(start).Round(time.Millisecond))

	items := f.list()
	_, hostOf := tally(t, items)
	for _, rm := range items {
		if rm.Status.State == infrav1.StateWaitingForHost {
			c := conditions.Get(&rm, infrav1.HostClaimedCondition)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != infrav1.ReasonNoHostAvailable ||
				!strings.Contains(c.Message, "40 hosts match the selector but none is free (40 claimed)") {
				t.Fatalf("%s waits without saying why: %+v", rm.Name, c)
			}
			if rm.Spec.ProviderID != "" || rm.Status.Host != "" {
				t.Fatalf("waiting %s has providerID %q host %q", rm.Name, rm.Spec.ProviderID, rm.Status.Host)
			}
			continue
		}
		host := rm.Status.Host
		if !strings.HasPrefix(host, "r1n-") {
			t.Fatalf("%s got %s, which its selector does not match", rm.Name, host)
		}
		if rm.Spec.ProviderID != "rackboot://r1/"+host || !ptr.Deref(rm.Status.Initialization.Provisioned, false) ||
			!conditions.IsTrue(&rm, clusterv1.ReadyCondition) || rm.Status.FailureDomain != "r1" {
			t.Fatalf("%s: providerID %q provisioned %v ready %v failureDomain %q", rm.Name, rm.Spec.ProviderID,
				rm.Status.Initialization.Provisioned, conditions.IsTrue(&rm, clusterv1.ReadyCondition), rm.Status.FailureDomain)
		}
		h, err := store.GetHost(context.Background(), host)
		if err != nil || h.Claim.Owner != f.ns+"/"+rm.Name {
			t.Fatalf("inventory: host %s claimed by %q (%v), want %s/%s", host, h.Claim.Owner, err, f.ns, rm.Name)
		}
		wantAddrs := []clusterv1.MachineAddress{{Type: clusterv1.MachineHostName, Address: host}, {Type: clusterv1.MachineInternalIP, Address: h.IP}}
		if d := cmp.Diff(wantAddrs, rm.Status.Addresses); d != "" {
			t.Fatalf("%s addresses (-want +got):\n%s", rm.Name, d)
		}
		req, ok := prov.request(host)
		if !ok {
			t.Fatalf("host %s was never provisioned", host)
		}
		want := ProvisionRequest{
			Owner: f.ns + "/" + rm.Name, Image: "debian-13", UserData: bootstrapData(rm.Name), Format: FormatCloudConfig,
			Metadata: map[string]string{"provider_id": "rackboot://r1/" + host, "machine": rm.Name, "cluster": "c1"},
		}
		want.RootDisk.Name, want.RootDisk.MinSizeBytes = "sda", 20<<30
		if d := cmp.Diff(want, req); d != "" {
			t.Fatalf("host %s provision request (-want +got):\n%s", host, d)
		}
		if n, _ := strconv.Atoi(rm.Name[1:]); n%2 == 1 && rm.Labels[infrav1.RackLabel] != "r1" {
			t.Fatalf("unplaced %s was not adopted by rack r1: labels %v", rm.Name, rm.Labels)
		}
	}

	// Delete a provisioned machine: its host is wiped, released, and goes to one of
	// the waiting machines.
	var victim string
	for name := range hostOf {
		victim = name
		break
	}
	freed := hostOf[victim]
	if err := f.c.Delete(context.Background(), f.get(victim)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, victim+" gone", func() (bool, string) {
		err := f.c.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: victim}, &infrav1.RackbootMachine{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	if n := prov.wipeCount(freed); n != 1 {
		t.Fatalf("host %s wiped %d times, want once", freed, n)
	}
	var heir string
	eventually(t, 30*time.Second, "a waiting machine to get "+freed, func() (bool, string) {
		by, hostOf := tally(t, f.list())
		for name, h := range hostOf {
			if h == freed {
				heir = name
			}
		}
		return heir != "" && by[infrav1.StateProvisioned] == 40 && by[infrav1.StateWaitingForHost] == 9, fmt.Sprint(by, " heir ", heir)
	})
	req, _ := prov.request(freed)
	if req.Owner != f.ns+"/"+heir || string(req.UserData) != string(bootstrapData(heir)) {
		t.Fatalf("host %s now provisioned for %s with %q, want %s's bootstrap data", freed, req.Owner, req.UserData, heir)
	}
}

// TestRestartFindsSameHost: a new rackboot process (a new manager on the same
// inventory file) gives a machine the host it already owns, even when the machine's
// status lost it.
func TestRestartFindsSameHost(t *testing.T) {
	f := newFixture(t, "restart")
	store := newStore(t, "h", 3, nil)
	prov := newFakeProvisioner(store)
	_, stop := startManager(t, Config{REST: shared.cfg, Rack: "r1", Inventory: store, Provisioner: prov, Namespace: f.ns})
	f.machine("a", "r1", nil)
	f.machine("b", "r1", nil)
	eventually(t, 30*time.Second, "both provisioned", func() (bool, string) {
		by, _ := tally(t, f.list())
		return by[infrav1.StateProvisioned] == 2, fmt.Sprint(by)
	})
	before := f.get("b").Status.Host
	stop()

	rm := f.get("b")
	rm.Status.Host, rm.Status.State = "", ""
	if err := f.c.Status().Update(context.Background(), rm); err != nil {
		t.Fatal(err)
	}
	startManager(t, Config{REST: shared.cfg, Rack: "r1", Inventory: store, Provisioner: prov, Namespace: f.ns})
	eventually(t, 30*time.Second, "b's host back in its status", func() (bool, string) {
		rm := f.get("b")
		return rm.Status.Host != "" && rm.Status.State == infrav1.StateProvisioned, rm.Status.Host
	})
	if after := f.get("b").Status.Host; after != before {
		t.Fatalf("after restart b holds %s, before %s", after, before)
	}
	if log := prov.callLog(); len(log) != 2 {
		t.Fatalf("provisioner calls %v: the restart provisioned again", log)
	}
}

// TestPauseStopsAllAction: a paused Cluster or a paused RackbootMachine claims
// nothing and deprovisions nothing until unpaused.
func TestPauseStopsAllAction(t *testing.T) {
	f := newFixture(t, "pause")
	ctx := context.Background()
	store := newStore(t, "h", 2, nil)
	prov := newFakeProvisioner(store)
	startManager(t, Config{REST: shared.cfg, Rack: "r1", Inventory: store, Provisioner: prov, Namespace: f.ns})

	f.machine("running", "r1", nil)
	eventually(t, 30*time.Second, "running provisioned", func() (bool, string) {
		return f.get("running").Status.State == infrav1.StateProvisioned, string(f.get("running").Status.State)
	})
	runningHost := f.get("running").Status.Host

	patchCluster := func(paused bool) {
		cl := &clusterv1.Cluster{}
		if err := f.c.Get(ctx, client.ObjectKeyFromObject(f.cluster), cl); err != nil {
			t.Fatal(err)
		}
		base := cl.DeepCopy()
		cl.Spec.Paused = ptr.To(paused)
		if err := f.c.Patch(ctx, cl, client.MergeFrom(base)); err != nil {
			t.Fatal(err)
		}
	}
	pausedWith := func(name, msg string) func() (bool, string) {
		return func() (bool, string) {
			c := conditions.Get(f.get(name), clusterv1.PausedCondition)
			return c != nil && c.Status == metav1.ConditionTrue && c.Message == msg, fmt.Sprintf("%+v", c)
		}
	}
	patchCluster(true)
	const byCluster = "Cluster spec.paused is set to true"
	eventually(t, 30*time.Second, "running paused", pausedWith("running", byCluster))

	// A new machine in a paused cluster: reconciled (its Paused condition says so)
	// but no host is claimed.
	f.machine("new", "r1", nil)
	eventually(t, 30*time.Second, "new paused", pausedWith("new", byCluster))
	if h, err := store.HostByOwner(ctx, f.ns+"/new"); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("paused machine claimed host %s (%v)", h.ID, err)
	}

	// Deleting a paused machine deprovisions nothing. The annotation added after the
	// delete makes the next reconcile observable: it rewrites the Paused message, and
	// it saw the deletion too.
	if err := f.c.Delete(ctx, f.get("running")); err != nil {
		t.Fatal(err)
	}
	f.annotate("running", clusterv1.PausedAnnotation, ptr.To(""))
	eventually(t, 30*time.Second, "running paused by both", pausedWith("running", byCluster+", RackbootMachine has the cluster.x-k8s.io/paused annotation"))
	if n := prov.wipeCount(runningHost); n != 0 {
		t.Fatalf("paused machine's host was wiped %d times", n)
	}
	if h, _ := store.GetHost(ctx, runningHost); h.Claim.Owner != f.ns+"/running" {
		t.Fatalf("paused machine's host released: claim %+v", h.Claim)
	}

	// Unpause: the deletion completes and the new machine gets a host.
	patchCluster(false)
	f.annotate("running", clusterv1.PausedAnnotation, nil)
	eventually(t, 30*time.Second, "running deleted", func() (bool, string) {
		err := f.c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "running"}, &infrav1.RackbootMachine{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	if n := prov.wipeCount(runningHost); n != 1 {
		t.Fatalf("host wiped %d times after unpause, want 1", n)
	}
	eventually(t, 30*time.Second, "new provisioned", func() (bool, string) {
		return f.get("new").Status.State == infrav1.StateProvisioned, string(f.get("new").Status.State)
	})
}

// TestVanishedHost: a host removed from the inventory turns its machine Lost (Ready
// False, HostLost), and the machine can still be deleted.
func TestVanishedHost(t *testing.T) {
	f := newFixture(t, "vanished")
	ctx := context.Background()
	store := newStore(t, "h", 1, nil)
	prov := newFakeProvisioner(store)
	startManager(t, Config{REST: shared.cfg, Rack: "r1", Inventory: store, Provisioner: prov, Namespace: f.ns})
	f.machine("m", "r1", nil)
	eventually(t, 30*time.Second, "m provisioned", func() (bool, string) {
		return f.get("m").Status.State == infrav1.StateProvisioned, string(f.get("m").Status.State)
	})
	if err := store.DeleteHost(ctx, "h-00"); err != nil {
		t.Fatal(err)
	}
	// Nothing watches the inventory file for deletions by the CLI; a touch of the
	// object (or the periodic poll) brings the reconcile.
	f.annotate("m", "test", ptr.To("touch"))
	eventually(t, 30*time.Second, "m lost", func() (bool, string) {
		rm := f.get("m")
		c := conditions.Get(rm, clusterv1.ReadyCondition)
		return rm.Status.State == infrav1.StateLost && c != nil && c.Status == metav1.ConditionFalse && c.Reason == infrav1.ReasonHostLost,
			fmt.Sprintf("%s %+v", rm.Status.State, c)
	})
	if !ptr.Deref(f.get("m").Status.Initialization.Provisioned, false) {
		t.Fatal("initialization.provisioned went back to false: the contract says it never does")
	}
	if err := f.c.Delete(ctx, f.get("m")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "m deleted", func() (bool, string) {
		err := f.c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "m"}, &infrav1.RackbootMachine{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

// TestFailedHostAndSlowWipe: with a provisioner that takes its time, a machine shows
// Provisioning until the host is done; a failed host sets Ready False (HostFailed);
// deletion waits for the wipe to finish before releasing the host.
func TestFailedHostAndSlowWipe(t *testing.T) {
	f := newFixture(t, "failed")
	ctx := context.Background()
	store := newStore(t, "h", 2, nil)
	prov := newFakeProvisioner(store)
	prov.manual = true
	mgr, _ := startManager(t, Config{REST: shared.cfg, Rack: "r1", Inventory: store, Provisioner: prov, Namespace: f.ns, Poll: time.Hour})
	prov.notify = func(id string) { mgr.HostChanged(ctx, id) }

	f.machine("a", "r1", nil)
	f.machine("b", "r1", nil)
	eventually(t, 30*time.Second, "both provisioning", func() (bool, string) {
		by, _ := tally(t, f.list())
		return by[infrav1.StateProvisioning] == 2, fmt.Sprint(by)
	})
	a, b := f.get("a"), f.get("b")
	if c := conditions.Get(a, clusterv1.ReadyCondition); c == nil || c.Reason != infrav1.ReasonProvisioning || ptr.Deref(a.Status.Initialization.Provisioned, false) {
		t.Fatalf("a while provisioning: Ready %+v provisioned %v", c, a.Status.Initialization.Provisioned)
	}
	prov.finish(t, a.Status.Host)
	prov.fail(t, b.Status.Host, "agent: no disk matches the root disk hint")
	eventually(t, 30*time.Second, "a provisioned, b failed", func() (bool, string) {
		a, b := f.get("a"), f.get("b")
		c := conditions.Get(b, clusterv1.ReadyCondition)
		return a.Status.State == infrav1.StateProvisioned && b.Status.State == infrav1.StateFailed &&
			c != nil && c.Reason == infrav1.ReasonHostFailed && strings.Contains(c.Message, "no disk matches"), fmt.Sprintf("%s %s %+v", a.Status.State, b.Status.State, c)
	})

	if err := f.c.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a deprovisioning", func() (bool, string) {
		h, _ := store.GetHost(ctx, a.Status.Host)
		return f.get("a").Status.State == infrav1.StateDeprovisioning && h.State == inventory.StateDeprovisioning, string(h.State)
	})
	if h, _ := store.GetHost(ctx, a.Status.Host); h.Claim.Owner != f.ns+"/a" {
		t.Fatalf("host released before its wipe finished: %+v", h.Claim)
	}
	prov.finish(t, a.Status.Host)
	eventually(t, 30*time.Second, "a gone and its host free", func() (bool, string) {
		err := f.c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "a"}, &infrav1.RackbootMachine{})
		h, _ := store.GetHost(ctx, a.Status.Host)
		return apierrors.IsNotFound(err) && h.Claim.IsZero() && h.State == inventory.StateAvailable, fmt.Sprint(err, h.Claim)
	})
}

// TestRacks: two racks, each its own rackboot (manager) and inventory, one management
// cluster. Machines placed on a rack are served only by it; unplaced machines are
// adopted by exactly one rack with a free host; no machine holds hosts in both.
func TestRacks(t *testing.T) {
	f := newFixture(t, "racks")
	ctx := context.Background()
	// Five hosts each: however the unplaced machines spread, the placed ones fit.
	s1 := newStore(t, "a", 5, nil)
	s2 := newStore(t, "b", 5, nil)
	p1, p2 := newFakeProvisioner(s1), newFakeProvisioner(s2)
	startManager(t, Config{REST: shared.cfg, Rack: "rack-a", Inventory: s1, Provisioner: p1, Namespace: f.ns, Poll: 2 * time.Second})
	startManager(t, Config{REST: shared.cfg, Rack: "rack-b", Inventory: s2, Provisioner: p2, Namespace: f.ns, Poll: 2 * time.Second})

	f.machine("on-a", "rack-a", nil)
	f.machine("on-b", "rack-b", nil)
	for i := range 4 {
		f.machine(fmt.Sprintf("free-%d", i), "", nil)
	}
	f.machine("on-c", "rack-c", nil) // no rackboot serves rack-c
	eventually(t, 60*time.Second, "six provisioned", func() (bool, string) {
		by, _ := tally(t, f.list())
		return by[infrav1.StateProvisioned] == 6, fmt.Sprint(by)
	})
	for _, rm := range f.list() {
		rack := map[string]string{"on-a": "rack-a", "on-b": "rack-b"}[rm.Name]
		if strings.HasPrefix(rm.Name, "free-") {
			rack = rm.Labels[infrav1.RackLabel]
		}
		switch {
		case rm.Name == "on-c":
			if rm.Status.State != "" || len(rm.Finalizers) != 0 {
				t.Fatalf("on-c (rack-c, served by nobody) was touched: %+v", rm.Status)
			}
			continue
		case rack != "rack-a" && rack != "rack-b":
			t.Fatalf("%s not adopted: labels %v", rm.Name, rm.Labels)
		}
		if want := "rackboot://" + rack + "/" + rm.Status.Host; rm.Spec.ProviderID != want || rm.Status.FailureDomain != rack {
			t.Fatalf("%s: providerID %q failureDomain %q, want %q on %s", rm.Name, rm.Spec.ProviderID, rm.Status.FailureDomain, want, rack)
		}
	}
	owners := func(s *inventory.BoltStore) []string {
		hosts, err := s.ListHosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range hosts {
			if !h.Claim.IsZero() {
				out = append(out, strings.TrimPrefix(h.Claim.Owner, f.ns+"/"))
			}
		}
		sort.Strings(out)
		return out
	}
	// A rack that lost an adoption gives its claim back, but it may still hold it for
	// a moment after the winner's host is provisioned: its reconcile can claim from a
	// cache that has not seen the winner's label yet, and releases when its
	// optimistic-lock patch fails.
	var o1, o2 []string
	eventually(t, 30*time.Second, "six claims in all, none in both racks (a lost adoption must give its claim back)", func() (bool, string) {
		o1, o2 = owners(s1), owners(s2)
		both := slices.ContainsFunc(o1, func(o string) bool { return slices.Contains(o2, o) })
		return len(o1)+len(o2) == 6 && !both, fmt.Sprintf("claims: rack-a %v, rack-b %v", o1, o2)
	})
	if !slices.Contains(o1, "on-a") || !slices.Contains(o2, "on-b") {
		t.Fatalf("placed machines on the wrong rack: rack-a %v, rack-b %v", o1, o2)
	}
}

// TestClusterReportsEndpointAndRacks: RackbootCluster becomes provisioned once its
// control-plane endpoint is set and lists its racks as failure domains.
func TestClusterReportsEndpointAndRacks(t *testing.T) {
	f := newFixture(t, "cluster")
	ctx := context.Background()
	store := newStore(t, "h", 1, nil)
	startManager(t, Config{REST: shared.cfg, Rack: "r1", Inventory: store, Provisioner: newFakeProvisioner(store), Namespace: f.ns})
	rc := &infrav1.RackbootCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "c1", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: clusterv1.GroupVersion.String(), Kind: "Cluster", Name: f.cluster.Name, UID: f.cluster.UID,
		}}},
		Spec: infrav1.RackbootClusterSpec{Racks: []string{"r1", "r2"}},
	}
	if err := f.c.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}
	get := func() *infrav1.RackbootCluster {
		rc := &infrav1.RackbootCluster{}
		if err := f.c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "c1"}, rc); err != nil {
			t.Fatal(err)
		}
		return rc
	}
	eventually(t, 30*time.Second, "waiting for an endpoint", func() (bool, string) {
		c := conditions.Get(get(), clusterv1.ReadyCondition)
		return c != nil && c.Reason == ReasonWaitingForControlPlaneEndpoint, fmt.Sprintf("%+v", c)
	})
	if get().Status.Initialization.Provisioned != nil {
		t.Fatal("provisioned without an endpoint")
	}
	rc = get()
	base := rc.DeepCopy()
	rc.Spec.ControlPlaneEndpoint = clusterv1.APIEndpoint{Host: "10.0.0.2", Port: 6443}
	if err := f.c.Patch(ctx, rc, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "provisioned", func() (bool, string) {
		rc := get()
		return ptr.Deref(rc.Status.Initialization.Provisioned, false), fmt.Sprintf("%+v", rc.Status)
	})
	want := []clusterv1.FailureDomain{{Name: "r1", ControlPlane: ptr.To(true)}, {Name: "r2", ControlPlane: ptr.To(true)}}
	if d := cmp.Diff(want, get().Status.FailureDomains); d != "" {
		t.Fatalf("failure domains (-want +got):\n%s", d)
	}
}

// TestDeleteWithoutMachine: a RackbootMachine whose Machine (and so Cluster lookup) is
// already gone still wipes and releases its host when deleted.
func TestDeleteWithoutMachine(t *testing.T) {
	f := newFixture(t, "orphan")
	ctx := context.Background()
	store := newStore(t, "h", 1, nil)
	prov := newFakeProvisioner(store)
	startManager(t, Config{REST: shared.cfg, Rack: "r1", Inventory: store, Provisioner: prov, Namespace: f.ns})
	f.machine("m", "", nil) // unplaced: adopted by r1
	eventually(t, 30*time.Second, "m provisioned", func() (bool, string) {
		return f.get("m").Status.State == infrav1.StateProvisioned, string(f.get("m").Status.State)
	})
	host := f.get("m").Status.Host
	if err := f.c.Delete(ctx, &clusterv1.Machine{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "m"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Delete(ctx, f.get("m")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "m deleted", func() (bool, string) {
		err := f.c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "m"}, &infrav1.RackbootMachine{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	h, err := store.GetHost(ctx, host)
	if err != nil || !h.Claim.IsZero() || prov.wipeCount(host) != 1 {
		t.Fatalf("host %s after deletion: claim %+v, wiped %d times (%v)", host, h.Claim, prov.wipeCount(host), err)
	}
}
