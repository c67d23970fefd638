package mgmt

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// tcgPatchDir is where the control-plane hosts get the kubeadm patches of SlowHardware.
const tcgPatchDir = "/etc/kubernetes/rackboot-slow-patches"

// SlowHardware adapts a cluster made from config/templates/cluster-template.yaml to
// hosts that run many times slower than a server: the QEMU lab's TCG guests, where every
// control-plane component starts more than 12 times slower than natively. It is an
// overlay on the template's objects (like a kustomize patch), so the template stays what
// an operator of a real rack applies:
//
//   - kubeadm's timeouts (init and join) go far above their defaults, which assume a
//     component answers within minutes (with 5 minutes for API calls, kubeadm init gave
//     up bootstrapping admin.conf on a loaded 2-core machine: a fresh kube-apiserver
//     under TCG took longer to create one ClusterRoleBinding);
//   - the control-plane static pods' probes are relaxed through kubeadm patches
//     (startup: 30 minutes instead of 4; liveness and readiness: 60 s timeouts instead of
//     15 s; kube-apiserver's readiness probed every 10 s instead of every second), else
//     the kubelet kills kube-apiserver before it ever answered, over and over;
//   - the controller-manager's and scheduler's leader-election leases go from 15/10/2 s to
//     120/100/20 s: they exit when a renewal misses its deadline;
//   - MachineHealthCheck timeouts are four times the template's: a Machine that is still
//     provisioning or joining is not remediated.
//
// Nothing else changes: no preflight check is ignored.
func SlowHardware(objs []*unstructured.Unstructured) error {
	timeouts := map[string]any{
		"controlPlaneComponentHealthCheckSeconds": int64(1800),
		"kubeletHealthCheckSeconds":               int64(900),
		"kubernetesAPICallSeconds":                int64(900),
		"etcdAPICallSeconds":                      int64(900),
		"tlsBootstrapSeconds":                     int64(900),
		"discoverySeconds":                        int64(900),
	}
	var kcp, kct int
	for _, u := range objs {
		switch u.GetKind() {
		case "KubeadmControlPlane":
			kcp++
			spec := []string{"spec", "kubeadmConfigSpec"}
			var files []any
			for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
				content := fmt.Sprintf(`spec:
  containers:
  - name: %s
    startupProbe: {failureThreshold: 180, timeoutSeconds: 60}
    livenessProbe: {failureThreshold: 30, timeoutSeconds: 60}
`, c)
				if c == "kube-apiserver" {
					// Every second by default: a TLS handshake a second is a real share of
					// a TCG guest's CPU while it starts its control plane.
					content += "    readinessProbe: {periodSeconds: 10, timeoutSeconds: 60}\n"
				}
				files = append(files, map[string]any{"path": tcgPatchDir + "/" + c + "+strategic.yaml", "permissions": "0644", "content": content})
			}
			old, _, _ := unstructured.NestedSlice(u.Object, append(spec, "files")...)
			if err := unstructured.SetNestedSlice(u.Object, append(old, files...), append(spec, "files")...); err != nil {
				return err
			}
			// Leader election: the controller-manager and scheduler exit when they miss a
			// 10-second lease renewal, which a TCG guest under load does (CrashLoopBackOff).
			for _, comp := range []string{"controllerManager", "scheduler"} {
				path := append(spec, "clusterConfiguration", comp, "extraArgs")
				args, _, _ := unstructured.NestedSlice(u.Object, path...)
				for _, a := range [][2]string{{"leader-elect-lease-duration", "120s"}, {"leader-elect-renew-deadline", "100s"}, {"leader-elect-retry-period", "20s"}} {
					args = append(args, map[string]any{"name": a[0], "value": a[1]})
				}
				if err := unstructured.SetNestedSlice(u.Object, args, path...); err != nil {
					return err
				}
			}
			for _, cfg := range []string{"initConfiguration", "joinConfiguration"} {
				if err := unstructured.SetNestedField(u.Object, tcgPatchDir, append(spec, cfg, "patches", "directory")...); err != nil {
					return err
				}
				if err := unstructured.SetNestedMap(u.Object, copyMap(timeouts), append(spec, cfg, "timeouts")...); err != nil {
					return err
				}
			}
		case "MachineHealthCheck":
			// The template's timeouts are a provisioning's duration on real hardware; under
			// TCG a worker's kubeadm join alone can outlast them, and the Machine would be
			// replaced while it joins.
			if err := scaleTimeouts(u, 4); err != nil {
				return err
			}
		case "KubeadmConfigTemplate":
			kct++
			if err := unstructured.SetNestedMap(u.Object, copyMap(timeouts), "spec", "template", "spec", "joinConfiguration", "timeouts"); err != nil {
				return err
			}
		}
	}
	if kcp == 0 || kct == 0 {
		return fmt.Errorf("slow-hardware overlay: the template has %d KubeadmControlPlane and %d KubeadmConfigTemplate objects, want at least one of each", kcp, kct)
	}
	return nil
}

// scaleTimeouts multiplies a MachineHealthCheck's node startup timeout and the timeout
// of each of its unhealthy conditions by f.
func scaleTimeouts(u *unstructured.Unstructured, f int64) error {
	checks, ok, err := unstructured.NestedMap(u.Object, "spec", "checks")
	if err != nil || !ok {
		return err
	}
	scale := func(m map[string]any, key string) {
		switch v := m[key].(type) { // a decoded template holds float64, a typed object int64
		case float64:
			m[key] = int64(v) * f
		case int64:
			m[key] = v * f
		}
	}
	scale(checks, "nodeStartupTimeoutSeconds")
	for _, list := range []string{"unhealthyMachineConditions", "unhealthyNodeConditions"} {
		conds, _ := checks[list].([]any)
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok {
				scale(m, "timeoutSeconds")
			}
		}
	}
	return unstructured.SetNestedMap(u.Object, checks, "spec", "checks")
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// AuthorizeSSH is an overlay that gives every machine of a cluster made from the
// template a user with sudo who logs in with key (an authorized_keys line): the lab
// prints how to reach each node, and the tests read a failing node's journal through it.
// On a real rack the operator puts the same `users` entry in the template itself.
func AuthorizeSSH(objs []*unstructured.Unstructured, user, key string) error {
	entry := map[string]any{"name": user, "shell": "/bin/bash", "sudo": "ALL=(ALL) NOPASSWD:ALL", "sshAuthorizedKeys": []any{key}}
	n := 0
	for _, u := range objs {
		var path []string
		switch u.GetKind() {
		case "KubeadmControlPlane":
			path = []string{"spec", "kubeadmConfigSpec", "users"}
		case "KubeadmConfigTemplate":
			path = []string{"spec", "template", "spec", "users"}
		default:
			continue
		}
		n++
		old, _, _ := unstructured.NestedSlice(u.Object, path...)
		if err := unstructured.SetNestedSlice(u.Object, append(old, copyMap(entry)), path...); err != nil {
			return err
		}
	}
	if n == 0 {
		return fmt.Errorf("ssh overlay: the template has no KubeadmControlPlane or KubeadmConfigTemplate")
	}
	return nil
}
