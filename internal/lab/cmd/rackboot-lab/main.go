// Command rackboot-lab is `make lab`: the main job of rackboot, on QEMU guests. It
// creates a network namespace with a bridge (10.77.0.1/24, router advertisements on),
// builds (or takes from the cache) the agent's boot environment from Debian's kernel
// package and a disk image, starts `rackboot serve` in the namespace with a fresh data
// directory, and one TCG guest per --vm with a blank disk and a lab BMC (SeaBIOS guests
// IPMI through ipmi_sim, OVMF guests Redfish through `rackboot-bmcsim redfish`).
//
// By default it ends in a Kubernetes cluster, driven by Cluster API objects alone: the
// node image (make node-image), a Cluster API management cluster on the machine's
// loopback (internal/lab/mgmt: envtest and the real CAPI core, CABPK and KCP controllers,
// reaching the lab through a CONNECT proxy into its namespace), rackboot serving its
// provider (--kubeconfig … --rack lab), the hosts labelled role=control-plane (the
// first) and role=worker and inspected, then config/templates/cluster-template.yaml
// applied. It prints the timelines and every Machine's phase and RackbootMachine step
// as they change, until every Machine runs and every Node is Ready, and ends with
// `kubectl get nodes -o wide` from the workload cluster and how to reach it.
//
// --hosts-only does what an operator does without Kubernetes, through rackboot's CLI
// only:
//
//	rackboot image add debian-12 --file … --sha256 … --format zstd
//	rackboot host add --id ID --mac MAC --ip IP --bmc URL --bmc-password-file F
//	rackboot host inspect ID                # agent boots, reports facts, powers off
//	rackboot host provision ID --image debian-12 --user-data F
//
// and prints every host's timeline as it grows until every host is provisioned and its
// console shows that cloud-init ran its user-data (a user "lab" with an SSH key made for
// this run), then logs in over SSH.
//
// --netboot-only is the quick check of the boot path (≈40 s): the guests PXE/HTTP-boot a
// small phone-home kernel instead of being inspected and provisioned. Everything is torn
// down at the end unless --keep (then at Ctrl-C or SIGTERM). Needs root.
//
//	make build && go run ./internal/lab/cmd/rackboot-lab --rackboot bin/rackboot --vm seabios --vm ovmf-http
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/lab"
	"github.com/rackboot/rackboot/internal/lab/mgmt"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rackboot-lab:", err)
		os.Exit(1)
	}
}

type vmList []string

func (v *vmList) String() string     { return strings.Join(*v, ",") }
func (v *vmList) Set(s string) error { *v = append(*v, s); return nil }

// options are the command line.
type options struct {
	bin, dir, mode string
	keep, netboot  bool
	hostsOnly      bool
	timeout        time.Duration
	vms            vmList
}

// host is one lab guest.
type host struct {
	id, mac, ip, fw string
	role            string // cluster mode: control-plane or worker
	vm              *lab.BMCVM
	marker          string
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("rackboot-lab", flag.ContinueOnError)
	fs.StringVar(&o.bin, "rackboot", "", "static rackboot binary (required; make build writes bin/rackboot)")
	fs.StringVar(&o.dir, "dir", "", "directory for logs, serial consoles, disks and rackboot's data (default: a new temporary directory, kept; the disks are removed at the end unless --keep)")
	fs.StringVar(&o.mode, "dhcp-mode", "server", "rackboot's --dhcp-mode")
	fs.BoolVar(&o.keep, "keep", false, "keep the lab running when every host is done, until Ctrl-C")
	fs.BoolVar(&o.netboot, "netboot-only", false, "only netboot the guests to a phone-home kernel (quick check of DHCP, TFTP, iPXE and the BMCs)")
	fs.BoolVar(&o.hostsOnly, "hosts-only", false, "provision the hosts with the lab's Debian image and check cloud-init, without Kubernetes (the default ends in a kubeadm cluster)")
	sweep := fs.Bool("sweep", false, "only remove lab namespaces left by runs that were killed, then exit")
	fs.DurationVar(&o.timeout, "timeout", 90*time.Minute, "give up when the hosts are not all done by then")
	fs.Var(&o.vms, "vm", "a guest: seabios (IPMI BMC), ovmf-ipxe, ovmf-pxe or ovmf-http (Redfish BMC) (repeatable; default seabios and ovmf-http)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sweep {
		return lab.SweepStale()
	}
	if o.bin == "" {
		return errors.New("--rackboot is required: build it with make build (bin/rackboot)")
	}
	if len(o.vms) == 0 {
		o.vms = vmList{string(lab.SeaBIOS), string(lab.OVMFHTTP)}
	}
	tools := []string{"qemu-system-x86_64", "dnsmasq", "apt-get", "dpkg-deb", "ipmi_sim", "ipmitool"}
	if o.cluster() {
		tools = append(tools, lab.NodeImageTools()...)
	}
	if !o.netboot {
		tools = append(append(tools, "ssh-keygen"), lab.LabImageTools()...)
	}
	if err := lab.Check(tools...); err != nil {
		return err
	}
	var err error
	if o.bin, err = filepath.Abs(o.bin); err != nil {
		return err
	}
	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "rackboot-lab-"); err != nil {
			return err
		}
	}
	if err := lab.SweepStale(); err != nil {
		fmt.Fprintln(out, "warning:", err)
	}
	var stack lab.Stack
	defer stack.Close()
	began := time.Now()
	step := func(format string, a ...any) {
		fmt.Fprintf(out, "==> [%s] %s\n", time.Since(began).Round(time.Second), fmt.Sprintf(format, a...))
	}

	seg, err := lab.NewSegment(&stack, "lab", netip.MustParsePrefix("10.77.0.1/24"))
	if err != nil {
		return err
	}
	if _, err := seg.StartRouterAdvertisements(&stack, filepath.Join(o.dir, "ra.log")); err != nil {
		return err
	}
	flags := []string{"--dhcp-mode", o.mode, "--dhcp-range", "10.77.0.100-10.77.0.199",
		"--dhcp-router", "10.77.0.1", "--dhcp-dns", "10.77.0.1", "--unknown-hosts", "discover"}
	var mc *mgmt.Cluster
	if o.cluster() {
		step("the management cluster: envtest's kube-apiserver and etcd, the Cluster API core, kubeadm bootstrap and control-plane controllers")
		var capiFlags []string
		if mc, capiFlags, err = startManagement(ctx, &stack, seg, o); err != nil {
			return err
		}
		flags = append(flags, capiFlags...)
		step("management cluster up: kubectl --kubeconfig %s get clusters,machines,rackbootmachines -A", mc.KubeconfigFile)
	}
	srv, err := lab.NewServer(&stack, lab.ServerConfig{Bin: o.bin, NS: seg.NS, Dir: o.dir, Addr: "10.77.0.1", Flags: flags})
	if err != nil {
		return err
	}
	if o.netboot {
		step("fetching the Debian kernel and building the phone-home initramfs")
		k, err := lab.FetchKernel(ctx)
		if err != nil {
			return err
		}
		initrd, err := lab.PhoneHomeInitramfs(ctx, k)
		if err != nil {
			return err
		}
		if err := srv.InstallPhoneHome(k, initrd); err != nil {
			return err
		}
	} else {
		step("the agent's boot environment: Debian's kernel package and rackboot as /init")
		if err := srv.ImportBootEnv(ctx, out); err != nil {
			return err
		}
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	step("rackboot is serving in namespace %s on %s (log %s)", seg.NS.Name, srv.URL, srv.Proc.Log)
	cli := func(args ...string) error {
		b, err := srv.CLI(ctx, args...)
		fmt.Fprintf(out, "$ rackboot %s\n%s", strings.Join(args, " "), b)
		if err != nil {
			return fmt.Errorf("rackboot %s: %w", strings.Join(args, " "), err)
		}
		return nil
	}
	switch {
	case o.cluster():
		step("the Kubernetes node image (make node-image; a cold build takes tens of minutes), registered as %s", lab.NodeImageName)
		if err := srv.AddNodeImage(ctx, out); err != nil {
			return err
		}
	case !o.netboot:
		step("the lab's Debian image (make lab-image; a cold build takes a few minutes), registered as %s", lab.LabImageName)
		if err := srv.AddLabImage(ctx, out); err != nil {
			return err
		}
	}

	hosts, err := startHosts(ctx, &stack, seg, srv, o, cli, out)
	if !o.keep {
		// The disks hold a gigabyte each once provisioned; logs and consoles stay.
		defer func() {
			for _, h := range hosts {
				os.Remove(h.vm.VM.Disk)
			}
		}()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, `
Enter the lab:   ip netns exec %[1]s bash
Host timeline:   ip netns exec %[1]s %[2]s host events ID --follow %[3]s
Power a host:    ip netns exec %[1]s %[2]s host power ID on|off|cycle|status %[3]s
Logs and consoles stay in %[4]s (the disks too, with --keep).

`, seg.NS.Name, o.bin, srv.CLIHint(), o.dir)

	switch {
	case o.netboot:
		err = netboot(ctx, srv, hosts, o, cli, step, out)
	case o.cluster():
		err = kubernetes(ctx, srv, mc, hosts, o, cli, step, out)
	default:
		err = provision(ctx, srv, hosts, o, cli, step, out)
	}
	if err != nil {
		return err
	}
	if o.keep {
		step("done; the lab stays up until Ctrl-C")
		select {
		case <-ctx.Done():
		case <-srv.Proc.Done():
			_, err := srv.Proc.Exited()
			return fmt.Errorf("rackboot exited: %v; see %s", err, srv.Proc.Log)
		}
	}
	step("tearing down the lab")
	return nil
}

// startHosts starts each guest with its BMC and enrolls it.
func startHosts(ctx context.Context, stack *lab.Stack, seg *lab.Segment, srv *lab.Server, o options, cli func(...string) error, out io.Writer) ([]*host, error) {
	var hosts []*host
	for i, fw := range o.vms {
		h := &host{id: fmt.Sprintf("lab-%d-%s", i+1, fw), mac: fmt.Sprintf("52:54:00:77:10:%02x", i+1), ip: fmt.Sprintf("10.77.0.%d", 10+i), fw: fw}
		proto := lab.Redfish
		if lab.Firmware(fw) == lab.SeaBIOS {
			proto = lab.IPMI
		}
		vmDir := filepath.Join(o.dir, h.id)
		if err := os.MkdirAll(vmDir, 0o755); err != nil {
			return hosts, err
		}
		disk := filepath.Join(vmDir, "disk.img")
		// An SMBIOS UUID from the MAC, so inspection has one to report.
		uuid := "7ac4b000-0000-4000-8000-" + strings.ReplaceAll(h.mac, ":", "")
		vm := lab.VM{Name: h.id, MAC: h.mac, Firmware: lab.Firmware(fw), Disk: disk, UUID: uuid}
		if o.netboot {
			// A disk whose boot sector says so, for `host bootdev ID disk` to show.
			if err := lab.WriteBootDisk(disk, 1<<20); err != nil {
				return hosts, err
			}
		} else {
			// A blank disk, larger than the image as on a real host; 1 GiB of memory so
			// the agent verifies the image before it touches the disk.
			size := int64(4 << 30)
			vm.MemoryMB = 1024
			if o.cluster() {
				// Node image hosts: 8 GiB disks; 2 vCPUs and 3 GiB for the control plane
				// (kubeadm's minimum is 2 CPUs and 1.7 GB), 1 vCPU and 2 GiB for workers:
				// under TCG each vCPU is a thread of the machine's, and a worker with two
				// starves the control plane it joins on a 2-core machine.
				size, vm.CPUs, vm.MemoryMB = 8<<30, 1, 2048
				h.role = "worker"
				if i == 0 {
					h.role, vm.CPUs, vm.MemoryMB = "control-plane", 2, 3072
				}
			}
			if err := lab.WriteBlankDisk(disk, size); err != nil {
				return hosts, err
			}
		}
		var err error
		h.vm, err = seg.StartBMCVM(ctx, stack, lab.BMCVMConfig{VM: vm, Dir: vmDir, BMC: lab.BMCConfig{Protocol: proto}})
		if err != nil {
			return hosts, err
		}
		hosts = append(hosts, h)
		add := []string{"host", "add", "--id", h.id, "--mac", h.mac, "--ip", h.ip, "--hostname", h.id,
			"--bmc", h.vm.BMC.URL(), "--bmc-password-file", h.vm.BMC.PasswordFile}
		if o.netboot {
			add = append(add, lab.PhoneHomeProfileArgs()...)
		}
		if h.role != "" {
			add = append(add, "--label", "role="+h.role)
		}
		if err := cli(add...); err != nil {
			return hosts, err
		}
		fmt.Fprintf(out, "   VM %s (%s, %s): BMC %s, serial console %s\n", h.id, h.mac, fw, h.vm.BMC.URL(), h.vm.SerialLog())
		if proto == lab.IPMI {
			fmt.Fprintf(out, "   ipmitool:  ip netns exec %s %s\n", seg.NS.Name, strings.Join(h.vm.BMC.IPMIToolArgs("power", "status"), " "))
		} else {
			fmt.Fprintf(out, "   Redfish:   ip netns exec %s curl -su %s:$(cat %s) %s/redfish/v1/Systems/%s\n",
				seg.NS.Name, h.vm.BMC.Username, h.vm.BMC.PasswordFile, h.vm.BMC.Endpoint(), h.vm.BMC.SystemID)
		}
	}
	return hosts, nil
}

// provision takes every host through inspect and provision and checks that cloud-init
// ran its user-data.
func provision(ctx context.Context, srv *lab.Server, hosts []*host, o options, cli func(...string) error, step func(string, ...any), out io.Writer) error {
	key, pub, err := sshKey(ctx, o.dir)
	if err != nil {
		return err
	}
	ids, print := hostIDs(hosts), timelinePrinter(out)
	deadline := time.Now().Add(o.timeout)

	if err := inspect(ctx, srv, hosts, cli, step, print, deadline); err != nil {
		return err
	}
	api, err := srv.API()
	if err != nil {
		return err
	}
	for _, h := range hosts {
		got, err := api.GetHost(ctx, h.id)
		if err != nil {
			return err
		}
		if f := got.Facts; f != nil {
			var disks []string
			for _, d := range f.Disks {
				disks = append(disks, fmt.Sprintf("%s %d GiB", d.Name, d.SizeBytes>>30))
			}
			fmt.Fprintf(out, "   %s: %s %s, UUID %s, %d MiB memory, disks %s\n", h.id, f.System.Vendor, f.System.Product,
				f.System.UUID, f.Memory.InstalledBytes>>20, strings.Join(disks, ", "))
		}
	}

	step("provisioning: the agent writes %s to disk, the host boots it, cloud-init runs its user-data and phones home", lab.LabImageName)
	for _, h := range hosts {
		h.marker = fmt.Sprintf("rackboot-lab: cloud-init ran the user-data of %s (%d)", h.id, time.Now().UnixNano())
		userData := fmt.Sprintf(`#cloud-config
users:
  - default
  - name: lab
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys: [%q]
runcmd:
  - %q
`, pub, "echo '"+h.marker+"' > /dev/ttyS0")
		file := filepath.Join(o.dir, h.id, "user-data")
		if err := os.WriteFile(file, []byte(userData), 0o600); err != nil {
			return err
		}
		if err := cli("host", "provision", h.id, "--image", lab.LabImageName, "--user-data", file); err != nil {
			return err
		}
	}
	if err := srv.WaitHosts(ctx, ids, time.Until(deadline), "provisioning", func(h admin.Host) bool {
		return h.State == inventory.StateProvisioned
	}, print); err != nil {
		return err
	}
	for _, h := range hosts {
		console, err := os.ReadFile(h.vm.SerialLog())
		if err != nil {
			return err
		}
		if !strings.Contains(string(console), h.marker) {
			return fmt.Errorf("%s is provisioned but its console (%s) lacks the user-data's line %q", h.id, h.vm.SerialLog(), h.marker)
		}
	}
	step("every host is provisioned and ran its own user-data; logging in with the key its user-data installed")
	for _, h := range hosts {
		ssh := []string{"ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
			"-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "lab@" + h.ip}
		var got []byte
		err := lab.Poll(ctx, 2*time.Minute, "ssh lab@"+h.ip, func(ctx context.Context) (bool, error) {
			var err error
			got, err = srv.NS.Exec(ctx, append(ssh, "hostname; uname -r; findmnt -no SOURCE,SIZE /")...)
			if err != nil {
				return false, fmt.Errorf("%w: %v", lab.ErrNotYet, err)
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "   %s: %s\n", h.id, strings.Join(strings.Fields(string(got)), " "))
		fmt.Fprintf(out, "   with --keep, ssh to it:  ip netns exec %s %s\n", srv.NS.Name, strings.Join(ssh, " "))
	}
	fmt.Fprintf(out, "   with --keep, give a host back (wiped, powered off):  ip netns exec %s %s host release ID %s\n",
		srv.NS.Name, o.bin, srv.CLIHint())
	return nil
}

// sshKey makes the run's SSH key for the user "lab" its hosts are given, and returns
// the private key's file and the public key's authorized_keys line.
func sshKey(ctx context.Context, dir string) (string, string, error) {
	key := filepath.Join(dir, "id_ed25519")
	if err := runOut(ctx, io.Discard, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rackboot-lab", "-f", key); err != nil {
		return "", "", err
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return "", "", err
	}
	return key, strings.TrimSpace(string(pub)), nil
}

// netboot powers every host on into the phone-home kernel and waits for the phone-homes.
func netboot(ctx context.Context, srv *lab.Server, hosts []*host, o options, cli func(...string) error, step func(string, ...any), out io.Writer) error {
	step("netbooting: bootdev pxe and power on through each host's BMC")
	var ids []string
	for _, h := range hosts {
		ids = append(ids, h.id)
		bootdev := []string{"host", "bootdev", h.id, "pxe"}
		if lab.Firmware(h.fw) == lab.SeaBIOS {
			// rackboot assumes UEFI for a host whose firmware it has not seen yet.
			bootdev = append(bootdev, "--legacy")
		}
		if err := cli(bootdev...); err != nil {
			return err
		}
		if err := cli("host", "power", h.id, "on"); err != nil {
			return err
		}
	}
	// A guest has booted the phone-home kernel once it fetched the initrd and then ran
	// Linux's own DHCP (server mode; in proxy and off modes rackboot sees no address
	// traffic, so the initrd fetch is the last step it sees).
	booted, initrd := map[string]bool{}, map[string]bool{}
	err := srv.WaitHosts(ctx, ids, o.timeout, "every guest to boot its kernel", func(h admin.Host) bool { return booted[h.ID] },
		func(id string, e admin.Event) {
			fmt.Fprintf(out, "%s  %-16s %-16s %s\n", e.Time.Local().Format("15:04:05"), id, e.Type, e.Message)
			switch {
			case e.Type == "http.asset" && strings.HasSuffix(e.Fields["file"], "initrd.gz"):
				initrd[id] = true
				booted[id] = o.mode != "server"
			case e.Type == "dhcp.ack" && initrd[id]:
				booted[id] = true
			}
		})
	if err == nil {
		step("every guest booted its kernel")
	}
	return err
}

// runOut runs a command with its output to out.
func runOut(ctx context.Context, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// inspect has every host inspected and waits until all are available.
func inspect(ctx context.Context, srv *lab.Server, hosts []*host, cli func(...string) error, step func(string, ...any), print func(string, admin.Event), deadline time.Time) error {
	step("inspecting: each host PXE-boots the agent, which reports its hardware and powers off")
	ids := hostIDs(hosts)
	for _, h := range hosts {
		if err := cli("host", "inspect", h.id); err != nil {
			return err
		}
	}
	return srv.WaitHosts(ctx, ids, time.Until(deadline), "inspection", func(h admin.Host) bool {
		return h.State == inventory.StateAvailable
	}, print)
}

// hostIDs lists the hosts' inventory IDs.
func hostIDs(hosts []*host) []string {
	ids := make([]string, len(hosts))
	for i, h := range hosts {
		ids[i] = h.id
	}
	return ids
}

// timelinePrinter prints one timeline event a line, as the lab shows them live.
func timelinePrinter(out io.Writer) func(string, admin.Event) {
	return func(id string, e admin.Event) {
		fmt.Fprintf(out, "%s  %-16s %-18s %s\n", e.Time.Local().Format("15:04:05"), id, e.Type, e.Message)
	}
}
