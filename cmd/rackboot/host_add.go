package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

func (h *hostCLI) addCmd() *cobra.Command {
	var (
		p               printFlags
		spec            admin.HostSpec
		labels, initrds []string
		kernel, cmdline string
		networkFile     string
		bmcFlags        bmcFlags
	)
	cmd := &cobra.Command{
		Use:   "add --mac MAC [--mac MAC]... [--id ID] [--ip IP] [--hostname NAME] [--label k=v]... [--boot-kernel URL [--boot-initrd URL]... [--boot-cmdline S]] [--bmc URL --bmc-password-file FILE]",
		Short: "Enrol a host",
		Long: `add enrols one host. Its ID defaults to the short hostname, else "mac-" and the first
MAC's hex digits. --ip reserves an address inside the server's DHCP subnets.

A boot profile (--boot-kernel etc.) makes the host's iPXE script boot that kernel whatever
its state. Kernel and initrd are http(s)/tftp URLs or paths under the server's assets
directory (e.g. debian/vmlinuz).

--bmc gives the host's BMC (` + bmcURLHelp + `); its password is read from
--bmc-password-file ("-" for standard input), never from the command line, and is stored
encrypted and never shown.`,
		Args: cobra.NoArgs,
		RunE: h.run(func(ctx context.Context, c *admin.Client, _ []string) error {
			if _, _, err := p.format(); err != nil {
				return err
			}
			b, err := bmcFlags.spec(h.stdin, false)
			if err != nil {
				return err
			}
			spec.BMC = b
			for _, l := range labels {
				k, v, err := inventory.ParseLabel(l)
				if err != nil {
					return fmt.Errorf("--label: %w", err)
				}
				if _, dup := spec.Labels[k]; dup {
					return fmt.Errorf("--label: %s is given twice", k)
				}
				if spec.Labels == nil {
					spec.Labels = map[string]string{}
				}
				spec.Labels[k] = v
			}
			if kernel != "" || len(initrds) > 0 || cmdline != "" {
				if kernel == "" {
					return errors.New("--boot-initrd and --boot-cmdline need --boot-kernel")
				}
				spec.Boot = &inventory.BootProfile{Kernel: kernel, Initrds: initrds, Cmdline: cmdline}
			}
			if networkFile != "" {
				n, err := readNetworkSpec(networkFile, h.stdin)
				if err != nil {
					return err
				}
				spec.Network = n
			}
			// The same checks the server makes, so a typo fails before any request.
			if _, err := spec.Host(); err != nil {
				return err
			}
			host, err := c.CreateHost(ctx, spec)
			if err != nil {
				return err
			}
			return printOne(h.env.stdout, &p, hostResource, host, func() string {
				return fmt.Sprintf("created host %s\n", host.ID)
			})
		}),
	}
	f := cmd.Flags()
	f.StringArrayVar(&spec.MACs, "mac", nil, "MAC address of one of the host's NICs (repeatable; the first is the PXE one)")
	f.StringVar(&spec.ID, "id", "", "host ID (default: short hostname, else mac-HEX)")
	f.StringVar(&spec.IP, "ip", "", "IPv4 address to reserve for the host")
	f.StringVar(&spec.Hostname, "hostname", "", "hostname handed out by DHCP")
	f.StringArrayVar(&labels, "label", nil, "label k=v (repeatable)")
	f.StringVar(&kernel, "boot-kernel", "", "kernel URL or assets path to boot")
	f.StringArrayVar(&initrds, "boot-initrd", nil, "initrd URL or assets path (repeatable, in order)")
	f.StringVar(&cmdline, "boot-cmdline", "", "kernel command line")
	f.StringVar(&networkFile, "network", "", networkFlagHelp)
	bmcFlags.register(cmd)
	p.register(cmd, "text", actionFormats)
	return cmd
}
