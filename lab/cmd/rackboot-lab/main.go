// Command rackboot-lab brings up the QEMU lab by hand (what `make lab` runs): a network
// namespace with a bridge (10.77.0.1/24, router advertisements on), `rackboot serve` in it
// with a fresh data directory, the phone-home boot fixtures as assets, and one TCG guest
// per --vm, each with a lab BMC (SeaBIOS guests IPMI through ipmi_sim, OVMF guests
// Redfish through `rackboot lab redfish`) on a lab address in the namespace. Each guest
// is enrolled with its BMC and the phone-home boot profile and powered on the way an
// operator would: `rackboot host bootdev ID pxe` and `rackboot host power ID on`. It
// follows the hosts' timelines (BMC actions, DHCP, TFTP/HTTP, phone-home) until every
// guest has phoned home, prints how to reach everything and tears it all down (at once,
// or with --keep on Ctrl-C or SIGTERM). Needs root.
//
//	go build -o /tmp/rackboot ./cmd/rackboot
//	go run ./lab/cmd/rackboot-lab --rackboot /tmp/rackboot --vm seabios --vm ovmf-pxe --vm ovmf-http
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rackboot/rackboot/lab"
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

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("rackboot-lab", flag.ContinueOnError)
	bin := fs.String("rackboot", "", "rackboot binary (required; go build -o /tmp/rackboot ./cmd/rackboot)")
	dir := fs.String("dir", "", "directory for logs, serial consoles and rackboot's data (default: a new temporary directory, kept)")
	mode := fs.String("dhcp-mode", "server", "rackboot's --dhcp-mode")
	keep := fs.Bool("keep", false, "keep the lab running after every guest has booted, until Ctrl-C")
	sweep := fs.Bool("sweep", false, "only remove lab namespaces left by runs that were killed, then exit")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up when the guests have not all booted by then")
	var vms vmList
	fs.Var(&vms, "vm", "a guest to boot: seabios (IPMI BMC), ovmf-ipxe, ovmf-pxe or ovmf-http (Redfish BMC) (repeatable; default seabios)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sweep {
		return lab.SweepStale()
	}
	if *bin == "" {
		return errors.New("--rackboot is required: build it with go build -o /tmp/rackboot ./cmd/rackboot")
	}
	if len(vms) == 0 {
		vms = vmList{string(lab.SeaBIOS)}
	}
	if err := lab.Check("qemu-system-x86_64", "dnsmasq", "apt-get", "dpkg-deb", "ipmi_sim", "ipmitool"); err != nil {
		return err
	}
	absBin, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	if *dir == "" {
		if *dir, err = os.MkdirTemp("", "rackboot-lab-"); err != nil {
			return err
		}
	}
	if err := lab.SweepStale(); err != nil {
		fmt.Fprintln(out, "warning:", err)
	}
	var stack lab.Stack
	defer stack.Close()

	k, err := lab.FetchKernel(ctx)
	if err != nil {
		return err
	}
	initrd, err := lab.PhoneHomeInitramfs(ctx, k)
	if err != nil {
		return err
	}
	seg, err := lab.NewSegment(&stack, "lab", mustPrefix("10.77.0.1/24"))
	if err != nil {
		return err
	}
	if _, err := seg.StartRouterAdvertisements(&stack, filepath.Join(*dir, "ra.log")); err != nil {
		return err
	}
	srv, err := lab.NewServer(&stack, lab.ServerConfig{
		Bin: absBin, NS: seg.NS, Dir: *dir, Addr: "10.77.0.1",
		Flags: []string{"--dhcp-mode", *mode, "--dhcp-range", "10.77.0.100-10.77.0.199",
			"--dhcp-router", "10.77.0.1", "--dhcp-dns", "10.77.0.1", "--unknown-hosts", "discover"},
	})
	if err != nil {
		return err
	}
	if err := srv.InstallPhoneHome(k, initrd); err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "rackboot is serving in namespace %s on %s (log %s)\n", seg.NS.Name, srv.URL, srv.Proc.Log)

	var ids []string
	legacy := map[string]bool{}
	for i, fw := range vms {
		id := fmt.Sprintf("lab-%d-%s", i+1, fw)
		ids = append(ids, id)
		mac := fmt.Sprintf("52:54:00:77:10:%02x", i+1)
		ip := fmt.Sprintf("10.77.0.%d", 10+i)
		proto := lab.Redfish
		if lab.Firmware(fw) == lab.SeaBIOS {
			proto, legacy[id] = lab.IPMI, true
		}
		// A disk whose boot sector says so, for `host bootdev ID disk` to show
		// (SeaBIOS boots it; OVMF finds no EFI partition and goes on to the network).
		vmDir := filepath.Join(*dir, id)
		if err := os.MkdirAll(vmDir, 0o755); err != nil {
			return err
		}
		disk := filepath.Join(vmDir, "disk.img")
		if err := lab.WriteBootDisk(disk, 1<<20); err != nil {
			return err
		}
		vm, err := seg.StartBMCVM(ctx, &stack, lab.BMCVMConfig{
			VM:  lab.VM{Name: id, MAC: mac, Firmware: lab.Firmware(fw), Disk: disk},
			Dir: vmDir, Rackboot: absBin, BMC: lab.BMCConfig{Protocol: proto},
		})
		if err != nil {
			return err
		}
		add := append([]string{"host", "add", "--id", id, "--mac", mac, "--ip", ip, "--hostname", id,
			"--bmc", vm.BMC.URL(), "--bmc-password-file", vm.BMC.PasswordFile}, lab.PhoneHomeProfileArgs()...)
		if _, err := srv.CLI(ctx, add...); err != nil {
			return err
		}
		fmt.Fprintf(out, "VM %s (%s, %s): BMC %s, serial console %s\n", id, mac, fw, vm.BMC.URL(), vm.SerialLog())
		if proto == lab.IPMI {
			fmt.Fprintf(out, "  ipmitool:  ip netns exec %s %s\n", seg.NS.Name, strings.Join(vm.BMC.IPMIToolArgs("power", "status"), " "))
		} else {
			fmt.Fprintf(out, "  Redfish:   ip netns exec %s curl -su %s:$(cat %s) %s/redfish/v1/Systems/%s\n",
				seg.NS.Name, vm.BMC.Username, vm.BMC.PasswordFile, vm.BMC.Endpoint(), vm.BMC.SystemID)
		}
	}
	// Powered on only once all are enrolled and their BMCs up, the way an operator
	// would: through rackboot, which asks each host's BMC.
	for _, id := range ids {
		bootdev := []string{"host", "bootdev", id, "pxe"}
		if legacy[id] {
			// rackboot assumes UEFI for a host whose firmware it has not seen yet.
			bootdev = append(bootdev, "--legacy")
		}
		for _, args := range [][]string{bootdev, {"host", "power", id, "on"}} {
			b, err := srv.CLI(ctx, args...)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "rackboot %s: %s", strings.Join(args, " "), b)
		}
	}
	fmt.Fprintf(out, `
Enter the lab:   ip netns exec %s bash
Host timeline:   ip netns exec %s %s host events ID --server %s --token-file %s
Power a host:    ip netns exec %s %s host power ID on|off|cycle|status --server %s --token-file %s
Logs stay in %s.

`, seg.NS.Name, seg.NS.Name, absBin, srv.URL, srv.TokenFile, seg.NS.Name, absBin, srv.URL, srv.TokenFile, *dir)
	if err := follow(ctx, srv, ids, *timeout, out); err != nil {
		return err
	}
	if *keep {
		fmt.Fprintln(out, "every guest booted (and powered itself off); power them on again with rackboot host power ID on. The lab stays up until Ctrl-C")
		select {
		case <-ctx.Done():
		case <-srv.Proc.Done():
			_, err := srv.Proc.Exited()
			return fmt.Errorf("rackboot exited: %v; see %s", err, srv.Proc.Log)
		}
	} else {
		fmt.Fprintln(out, "every guest booted and phoned home")
	}
	fmt.Fprintln(out, "tearing down the lab")
	return nil
}

// follow prints each host's timeline as it grows, until every host has phoned home.
func follow(ctx context.Context, srv *lab.Server, ids []string, timeout time.Duration, out io.Writer) error {
	seen := map[string]uint64{}
	booted := map[string]bool{}
	return lab.Poll(ctx, timeout, "every guest to phone home", func(ctx context.Context) (bool, error) {
		select {
		case <-srv.Proc.Done():
			_, err := srv.Proc.Exited()
			return false, fmt.Errorf("rackboot exited: %v; see %s", err, srv.Proc.Log)
		default:
		}
		for _, id := range ids {
			evs, err := srv.Events(ctx, id)
			if err != nil {
				return false, fmt.Errorf("%w: %v", lab.ErrNotYet, err)
			}
			for _, e := range evs {
				if e.Seq <= seen[id] {
					continue
				}
				seen[id] = e.Seq
				fmt.Fprintf(out, "%s  %-16s %-16s %s\n", e.Time.Format("15:04:05"), id, e.Type, e.Message)
				if e.Type == "boot.phonehome" {
					booted[id] = true
				}
			}
		}
		if len(booted) == len(ids) {
			return true, nil
		}
		return false, fmt.Errorf("%w: %d of %d guests booted", lab.ErrNotYet, len(booted), len(ids))
	})
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
