package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
)

// table asks the API server for RackbootMachines as kubectl does: the server renders
// the CRD's printer columns (JSONPath filters included) into a meta.k8s.io Table.
func table(t *testing.T, cfg *rest.Config, ns string) metav1.Table {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("%s/apis/%s/namespaces/%s/rackbootmachines?includeObject=None", strings.TrimSuffix(cfg.Host, "/"), infrav1.GroupVersion, ns)
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	var tbl metav1.Table
	if err := json.NewDecoder(resp.Body).Decode(&tbl); err != nil {
		t.Fatal(err)
	}
	return tbl
}

// row is the named row of tbl as column name → cell, with Age left out (it moves).
func row(tbl metav1.Table, name string) map[string]string {
	for _, r := range tbl.Rows {
		if r.Cells[0] != name {
			continue
		}
		m := map[string]string{}
		for i, c := range tbl.ColumnDefinitions {
			if c.Name != "Age" {
				m[c.Name] = fmt.Sprint(r.Cells[i])
			}
		}
		return m
	}
	return nil
}

// machineEvents lists the events.k8s.io Events on RackbootMachine name, oldest first,
// as "Type Reason: note".
func machineEvents(t *testing.T, c client.Client, ns, name string) []string {
	t.Helper()
	var l eventsv1.EventList
	if err := c.List(context.Background(), &l, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var evs []eventsv1.Event
	for _, e := range l.Items {
		if e.Regarding.Kind == "RackbootMachine" && e.Regarding.Name == name {
			evs = append(evs, e)
		}
	}
	// Two events of one reconcile can share a microsecond; the names end in the
	// nanosecond, in hex.
	sort.Slice(evs, func(i, j int) bool {
		if !evs[i].EventTime.Equal(&evs[j].EventTime) {
			return evs[i].EventTime.Before(&evs[j].EventTime)
		}
		return evs[i].Name < evs[j].Name
	})
	var out []string
	for _, e := range evs {
		s := e.Type + " " + e.Reason + ": " + e.Note
		if e.Series != nil {
			s += fmt.Sprintf(" (x%d)", e.Series.Count)
		}
		out = append(out, s)
	}
	return out
}

// TestKubectlView is what `kubectl get rackbootmachines` (-o wide) and `kubectl
// describe rackbootmachine` show while a machine is claimed, provisioned step by step,
// fails, and is wiped and released: the printer columns rendered by the real API
// server, the Ready condition's message carrying the current step, and one Event per
// claim, step, failure and release, however often the machine is reconciled.
func TestKubectlView(t *testing.T) {
	f := newFixture(t, "kubectl")
	ctx := context.Background()
	store := newStore(t, "h", 2, nil)
	prov := newFakeProvisioner(store)
	prov.manual = true
	// A short poll: the machines are reconciled many times per step, and still say
	// each step once.
	mgr, _ := startManager(t, Config{REST: shared.cfg, Rack: "r1", Inventory: store, Provisioner: prov, Namespace: f.ns, Poll: time.Second})
	prov.notify = func(id string) { mgr.HostChanged(ctx, id) }

	f.machine("m", "r1", nil)
	eventually(t, 30*time.Second, "m provisioning", func() (bool, string) {
		rm := f.get("m")
		return rm.Status.State == infrav1.StateProvisioning, string(rm.Status.State)
	})
	host := f.get("m").Status.Host
	for _, step := range []string{"powering on", "booting the agent", "writing image 3%", "writing image 41%", "writing image 97%"} {
		prov.setStep(host, step)
		eventually(t, 30*time.Second, "step "+step, func() (bool, string) {
			return f.get("m").Status.Step == step, f.get("m").Status.Step
		})
		time.Sleep(1500 * time.Millisecond) // a poll or two at this step
	}
	rm := f.get("m")
	if c := conditions.Get(rm, clusterv1.ReadyCondition); c == nil || !strings.HasSuffix(c.Message, ": writing image 97%") {
		t.Fatalf("Ready condition while writing: %+v, want its message to end with the step", c)
	}

	tbl := table(t, shared.cfg, f.ns)
	var cols []string
	for _, c := range tbl.ColumnDefinitions {
		if c.Priority > 0 {
			cols = append(cols, c.Name+" (wide)")
		} else {
			cols = append(cols, c.Name)
		}
	}
	wantCols := []string{"Name", "Cluster", "Machine", "Host", "Rack", "State", "Step", "Ready", "ProviderID", "Age", "Reason (wide)"}
	if d := cmp.Diff(wantCols, cols); d != "" {
		t.Fatalf("columns (-want +got):\n%s", d)
	}
	want := map[string]string{
		"Name": "m", "Cluster": "c1", "Machine": "m", "Host": host, "Rack": "r1", "State": "Provisioning",
		"Step": "writing image 97%", "Ready": "False", "ProviderID": "rackboot://r1/" + host, "Reason": "Provisioning",
	}
	if d := cmp.Diff(want, row(tbl, "m")); d != "" {
		t.Fatalf("row of m while writing (-want +got):\n%s", d)
	}

	prov.setStep(host, "booting from disk")
	eventually(t, 30*time.Second, "booting from disk", func() (bool, string) {
		return f.get("m").Status.Step == "booting from disk", f.get("m").Status.Step
	})
	prov.finish(t, host, "phoned home")
	eventually(t, 30*time.Second, "m provisioned", func() (bool, string) {
		rm := f.get("m")
		return rm.Status.State == infrav1.StateProvisioned && rm.Status.Step == "phoned home", string(rm.Status.State) + " " + rm.Status.Step
	})
	want["State"], want["Step"], want["Ready"], want["Reason"] = "Provisioned", "phoned home", "True", "Provisioned"
	if d := cmp.Diff(want, row(table(t, shared.cfg, f.ns), "m")); d != "" {
		t.Fatalf("row of m provisioned (-want +got):\n%s", d)
	}

	// A second machine fails.
	f.machine("b", "r1", nil)
	eventually(t, 30*time.Second, "b provisioning", func() (bool, string) {
		return f.get("b").Status.State == infrav1.StateProvisioning, string(f.get("b").Status.State)
	})
	bHost := f.get("b").Status.Host
	prov.fail(t, bHost, "agent: no disk matches the root disk hint")
	eventually(t, 30*time.Second, "b failed", func() (bool, string) {
		return f.get("b").Status.State == infrav1.StateFailed, string(f.get("b").Status.State)
	})
	if got := row(table(t, shared.cfg, f.ns), "b"); got["Ready"] != "False" || got["Reason"] != infrav1.ReasonHostFailed {
		t.Fatalf("row of b failed: %v", got)
	}

	// m is deleted: wiped, then released.
	if err := f.c.Delete(ctx, f.get("m")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "m deprovisioning", func() (bool, string) {
		return f.get("m").Status.State == infrav1.StateDeprovisioning, string(f.get("m").Status.State)
	})
	prov.setStep(host, "wiping")
	eventually(t, 30*time.Second, "m wiping", func() (bool, string) {
		rm := f.get("m")
		c := conditions.Get(rm, clusterv1.ReadyCondition)
		return rm.Status.Step == "wiping" && c != nil && strings.HasSuffix(c.Message, ": wiping"), fmt.Sprintf("%q %+v", rm.Status.Step, c)
	})
	prov.finish(t, host)
	eventually(t, 30*time.Second, "m gone", func() (bool, string) {
		err := f.c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "m"}, &infrav1.RackbootMachine{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})

	wantM := []string{
		"Normal HostClaimed: claimed host " + host + " of rack r1",
		"Normal Provisioning: host " + host + ": provisioning image debian-13",
		"Normal Provisioning: host " + host + ": powering on",
		"Normal Provisioning: host " + host + ": booting the agent",
		"Normal Provisioning: host " + host + ": writing image",
		"Normal Provisioning: host " + host + ": booting from disk",
		"Normal Provisioned: host " + host + " runs image debian-13",
		"Normal Deprovisioning: host " + host + ": wiping and powering off",
		"Normal Deprovisioning: host " + host + ": wiping",
		"Normal HostReleased: host " + host + " is wiped, powered off and back in rack r1's inventory",
	}
	var got []string
	eventually(t, 30*time.Second, "m's events", func() (bool, string) {
		got = machineEvents(t, f.c, f.ns, "m")
		return len(got) >= len(wantM), strings.Join(got, "\n")
	})
	if d := cmp.Diff(wantM, got); d != "" {
		t.Fatalf("events of m (-want +got):\n%s", d)
	}
	wantB := []string{
		"Normal HostClaimed: claimed host " + bHost + " of rack r1",
		"Normal Provisioning: host " + bHost + ": provisioning image debian-13",
		"Warning HostFailed: host " + bHost + " failed: agent: no disk matches the root disk hint",
	}
	eventually(t, 30*time.Second, "b's events", func() (bool, string) {
		got = machineEvents(t, f.c, f.ns, "b")
		return len(got) >= len(wantB), strings.Join(got, "\n")
	})
	if d := cmp.Diff(wantB, got); d != "" {
		t.Fatalf("events of b (-want +got):\n%s", d)
	}

	var l eventsv1.EventList
	if err := f.c.List(ctx, &l, client.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range l.Items {
		if e.ReportingController != "rackboot/r1" || (e.Regarding.Name == "b" && (e.Related == nil || e.Related.Kind != "Machine")) {
			t.Fatalf("event %s: reported by %q, related %+v: want rackboot/r1 and b's Machine", e.Name, e.ReportingController, e.Related)
		}
	}
}

// TestTemplateSpecImmutable: the API server refuses a change of a
// RackbootMachineTemplate's spec.template.spec with the CRD's CEL message, and
// accepts changes of its metadata.
func TestTemplateSpecImmutable(t *testing.T) {
	_, c := env(t)
	ns := newNamespace(t, c, "template")
	ctx := context.Background()
	tmpl := &infrav1.RackbootMachineTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "workers"},
		Spec: infrav1.RackbootMachineTemplateSpec{Template: infrav1.RackbootMachineTemplateResource{
			Spec: infrav1.RackbootMachineSpec{Image: "debian-13", HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}},
		}},
	}
	if err := c.Create(ctx, tmpl); err != nil {
		t.Fatal(err)
	}

	for name, edit := range map[string]func(*infrav1.RackbootMachineTemplate){
		"image":        func(m *infrav1.RackbootMachineTemplate) { m.Spec.Template.Spec.Image = "debian-14" },
		"hostSelector": func(m *infrav1.RackbootMachineTemplate) { m.Spec.Template.Spec.HostSelector.MatchLabels["role"] = "cp" },
		"rootDiskHint": func(m *infrav1.RackbootMachineTemplate) { m.Spec.Template.Spec.RootDiskHint.DeviceName = "sdb" },
	} {
		m := &infrav1.RackbootMachineTemplate{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(tmpl), m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		err := c.Update(ctx, m)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.template.spec is immutable: create a new RackbootMachineTemplate") {
			t.Fatalf("update of %s: %v, want Invalid with the immutability message", name, err)
		}
	}

	m := &infrav1.RackbootMachineTemplate{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(tmpl), m); err != nil {
		t.Fatal(err)
	}
	m.Labels = map[string]string{"team": "infra"}
	m.Spec.Template.ObjectMeta.Labels = map[string]string{"role": "worker"}
	if err := c.Update(ctx, m); err != nil {
		t.Fatalf("update of metadata only: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(tmpl), m); err != nil || m.Spec.Template.Spec.Image != "debian-13" || !slices.Contains([]string{"worker"}, m.Spec.Template.ObjectMeta.Labels["role"]) {
		t.Fatalf("after the metadata update: %+v (%v)", m.Spec.Template, err)
	}
}
