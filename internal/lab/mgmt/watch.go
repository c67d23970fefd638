package mgmt

import (
	"context"
	"fmt"
	"slices"
	"time"

	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
	"github.com/rackboot/rackboot/internal/lab"
)

// MachineWatch follows the Machines and RackbootMachines of a namespace and reports
// each change of a Machine's phase or node and of a RackbootMachine's host, state and
// step, as `kubectl get machines,rackbootmachines -w` would show them.
type MachineWatch struct {
	c    client.Client
	ns   string
	logf func(format string, args ...any)
	last map[string]string
}

// WatchMachines starts following ns; logf receives one line per change.
func (m *Cluster) WatchMachines(ns string, logf func(format string, args ...any)) *MachineWatch {
	return &MachineWatch{c: m.Client, ns: ns, logf: logf, last: map[string]string{}}
}

// Machines lists the namespace's Machines.
func (w *MachineWatch) Machines(ctx context.Context) ([]clusterv1.Machine, error) {
	var ms clusterv1.MachineList
	if err := w.c.List(ctx, &ms, client.InNamespace(w.ns)); err != nil {
		return nil, err
	}
	return ms.Items, nil
}

// Until polls every second until done holds for the Machines, reporting changes.
func (w *MachineWatch) Until(ctx context.Context, timeout time.Duration, what string, done func([]clusterv1.Machine) bool) error {
	tick := time.Now()
	return lab.Poll(ctx, timeout, what, func(ctx context.Context) (bool, error) {
		if time.Since(tick) < time.Second {
			return false, nil
		}
		tick = time.Now()
		var ms clusterv1.MachineList
		var rms infrav1.RackbootMachineList
		if err := w.c.List(ctx, &ms, client.InNamespace(w.ns)); err != nil {
			return false, fmt.Errorf("%w: %v", lab.ErrNotYet, err)
		}
		if err := w.c.List(ctx, &rms, client.InNamespace(w.ns)); err != nil {
			return false, fmt.Errorf("%w: %v", lab.ErrNotYet, err)
		}
		var now []string
		for _, m := range ms.Items {
			w.report("Machine/"+m.Name, fmt.Sprintf("phase %s, node %q", m.Status.Phase, m.Status.NodeRef.Name))
			now = append(now, m.Name+"="+m.Status.Phase)
		}
		for _, rm := range rms.Items {
			w.report("RackbootMachine/"+rm.Name, fmt.Sprintf("host %q, %s, %s", rm.Status.Host, rm.Status.State, rm.Status.Step))
		}
		if done(ms.Items) {
			return true, nil
		}
		slices.Sort(now)
		return false, fmt.Errorf("%w: machines %v", lab.ErrNotYet, now)
	})
}

func (w *MachineWatch) report(key, line string) {
	if w.last[key] == line {
		return
	}
	w.last[key] = line
	w.logf("%s  %-40s %s", time.Now().Format("15:04:05"), key, line)
}

// AllRunning says whether there are n Machines, all in phase Running.
func AllRunning(n int) func([]clusterv1.Machine) bool {
	return func(ms []clusterv1.Machine) bool {
		if len(ms) != n {
			return false
		}
		for _, m := range ms {
			if m.Status.Phase != string(clusterv1.MachinePhaseRunning) {
				return false
			}
		}
		return true
	}
}
