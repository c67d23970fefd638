package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/controllers"
	"github.com/rackboot/rackboot/internal/lab"
	"github.com/rackboot/rackboot/internal/lab/mgmt"
)

// The lab's workload cluster: its name, and the management cluster's namespace it
// lives in.
const (
	labCluster   = "lab"
	labNamespace = "default"
	labRack      = "lab"
)

// cluster says whether this run ends in a Kubernetes cluster (the default).
func (o options) cluster() bool { return !o.hostsOnly && !o.netboot }

// startManagement starts the management cluster on the machine's loopback with the
// Cluster API controllers reaching the lab through a CONNECT proxy into its namespace,
// relays its API server into the namespace for rackboot, and returns the flags that
// make rackboot serve its Cluster API provider.
func startManagement(ctx context.Context, stack *lab.Stack, seg *lab.Segment, o options) (*mgmt.Cluster, []string, error) {
	var bins []string
	for _, p := range mgmt.Providers {
		bins = append(bins, p.Bin)
	}
	assets, err := lab.EnvtestDir(bins...)
	if err != nil {
		return nil, nil, err
	}
	capi, err := mgmt.CAPIDir()
	if err != nil {
		return nil, nil, err
	}
	crds, err := filepath.Glob("config/crd/bases/*.yaml")
	if err != nil || len(crds) == 0 {
		return nil, nil, fmt.Errorf("rackboot's CRDs not found under config/crd/bases: run from the repository root (%v)", err)
	}
	scheme, err := controllers.NewScheme()
	if err != nil {
		return nil, nil, err
	}
	proxy, err := seg.NS.ConnectProxy(stack, seg.Addr.Masked())
	if err != nil {
		return nil, nil, err
	}
	mc, err := mgmt.Start(ctx, stack, mgmt.Config{Assets: assets, CAPIDir: capi, CRDs: crds, Dir: filepath.Join(o.dir, "management"),
		Scheme: scheme, HTTPSProxy: proxy})
	if err != nil {
		return nil, nil, err
	}
	server, err := url.Parse(mc.REST.Host)
	if err != nil || server.Host == "" {
		server, err = url.Parse("https://" + mc.REST.Host)
	}
	if err != nil {
		return nil, nil, err
	}
	// The same address inside the namespace: the kubeconfig and the certificate's
	// names stay valid there.
	if err := seg.NS.Forward(stack, server.Host, server.Host); err != nil {
		return nil, nil, err
	}
	return mc, []string{"--kubeconfig", mc.KubeconfigFile, "--rack", labRack, "--leader-elect=false", "--capi-namespace", labNamespace}, nil
}

// kubernetes inspects the hosts, applies the cluster template (the first host is the
// control plane, the others workers), follows the hosts' timelines and the Machines'
// phases until every Machine runs and every Node is Ready, and prints the nodes.
func kubernetes(ctx context.Context, srv *lab.Server, mc *mgmt.Cluster, hosts []*host, o options, cli func(...string) error, step func(string, ...any), out io.Writer) error {
	ids, print := hostIDs(hosts), timelinePrinter(out)
	deadline := time.Now().Add(o.timeout)
	if err := inspect(ctx, srv, hosts, cli, step, print, deadline); err != nil {
		return err
	}

	template := "config/templates/cluster-template.yaml"
	vars := map[string]string{
		"CLUSTER_NAME": labCluster, "NAMESPACE": labNamespace, "KUBERNETES_VERSION": lab.NodeKubernetesVersion,
		"CONTROL_PLANE_MACHINE_COUNT": "1", "WORKER_MACHINE_COUNT": fmt.Sprint(len(hosts) - 1),
		"CONTROL_PLANE_ENDPOINT_HOST": hosts[0].ip, "CONTROL_PLANE_ENDPOINT_PORT": "6443",
		"RACKBOOT_IMAGE": lab.NodeImageName, "POD_CIDR": "10.244.0.0/16", "SERVICE_CIDR": "10.96.0.0/12",
	}
	objs, err := mgmt.FillTemplate(template, vars)
	if err != nil {
		return err
	}
	// TCG guests start the control plane more than 12 times slower than a server.
	if err := mgmt.SlowHardware(objs); err != nil {
		return err
	}
	// The user "lab" with this run's key on every node, as an operator would put an
	// admin user in the template.
	key, pub, err := sshKey(ctx, o.dir)
	if err != nil {
		return err
	}
	if err := mgmt.AuthorizeSSH(objs, "lab", pub); err != nil {
		return err
	}
	step("applying %s: a Cluster %q with 1 control-plane Machine (endpoint %s:6443, the control-plane host's reserved address) and %d worker(s), image %s, Kubernetes %s",
		template, labCluster, hosts[0].ip, len(hosts)-1, lab.NodeImageName, lab.NodeKubernetesVersion)
	applied := time.Now()
	if err := mc.Create(ctx, objs); err != nil {
		return err
	}
	// The hosts' timelines and the Machines' phases, side by side.
	tctx, stopTimelines := context.WithCancel(ctx)
	defer stopTimelines()
	go func() {
		_ = srv.WaitHosts(tctx, ids, time.Until(deadline), "timelines", func(admin.Host) bool { return false }, print)
	}()
	watch := mc.WatchMachines(labNamespace, func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) })
	if err := watch.Until(ctx, time.Until(deadline), "every Machine Running", mgmt.AllRunning(len(hosts))); err != nil {
		return err
	}
	stopTimelines()
	step("every Machine is Running, %v after the Cluster was applied", time.Since(applied).Round(time.Second))

	kc, err := mc.WorkloadKubeconfig(ctx, labNamespace, labCluster)
	if err != nil {
		return err
	}
	kcFile := filepath.Join(o.dir, "workload.kubeconfig")
	if err := os.WriteFile(kcFile, kc, 0o600); err != nil {
		return err
	}
	image, _, err := lab.EnsureNodeImage(ctx, io.Discard)
	if err != nil {
		return err
	}
	kubectl := []string{lab.NodeImageTool(image, "kubectl"), "--kubeconfig", kcFile}
	var nodes []byte
	err = lab.Poll(ctx, 20*time.Minute, "every Node Ready", func(ctx context.Context) (bool, error) {
		b, err := srv.NS.Exec(ctx, append(kubectl, "get", "nodes", "--no-headers")...)
		if err != nil {
			return false, fmt.Errorf("%w: %v: %s", lab.ErrNotYet, err, b)
		}
		ready := 0
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) > 1 && f[1] == "Ready" {
				ready++
			}
		}
		return ready == len(hosts), fmt.Errorf("%w: %s", lab.ErrNotYet, b)
	})
	if err != nil {
		return err
	}
	if nodes, err = srv.NS.Exec(ctx, append(kubectl, "get", "nodes", "-o", "wide")...); err != nil {
		return fmt.Errorf("kubectl get nodes: %v: %s", err, nodes)
	}
	step("the workload cluster's nodes (kubectl get nodes -o wide, through Cluster API's kubeconfig secret %s-kubeconfig):", labCluster)
	fmt.Fprintf(out, "%s\n", nodes)
	fmt.Fprintf(out, `Reach the workload cluster (its API is on the lab network, %[1]s:6443):
   ip netns exec %[2]s %[3]s --kubeconfig %[4]s get pods -A
The management cluster (Cluster API objects):
   %[3]s --kubeconfig %[5]s get clusters,machines,rackbootmachines -A
Log in to a node (user lab, sudo):
   ip netns exec %[2]s ssh -i %[6]s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null lab@ADDRESS
`, hosts[0].ip, srv.NS.Name, kubectl[0], kcFile, mc.KubeconfigFile, key)
	return nil
}
