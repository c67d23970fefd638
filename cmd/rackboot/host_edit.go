package main

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

func (h *hostCLI) editCmd() *cobra.Command {
	var (
		ip, hostname string
		macs, labels []string
		removeLabels []string
		networkFile  string
		clearNetwork bool
		p            printFlags
	)
	var cmd *cobra.Command
	cmd = &cobra.Command{
		Use:   "edit ID [--ip IP] [--hostname NAME] [--mac MAC]... [--label k=v]... [--remove-label k]...",
		Short: "Change an enrolled host's IP, hostname, MACs or labels",
		Long: `edit changes what 'host add' set, with the same checks: MACs and the reserved IP must
be valid, unique in the inventory and not the server's own, the IP inside the server's
DHCP subnets. Only the flags given change:

  --ip IP             reserve another address; --ip "" removes the reservation
  --hostname NAME     the name DHCP hands out; --hostname "" removes it
  --mac MAC           replaces the host's MACs (repeat for each; the first is the PXE one)
  --label k=v         set a label; --remove-label k removes one
  --network FILE      the installed OS's network (takes effect at the next provisioning);
                      --clear-network goes back to the default

MACs and IP cannot change while the host is inspecting, provisioning, provisioned or
deprovisioning: its boot and installed system are bound to them. Release it first.

` + networkSpecHelp,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if _, _, err := p.format(); err != nil {
				return err
			}
			var patch admin.HostPatch
			changed := cmd.Flags().Changed
			if changed("ip") {
				patch.IP = &ip
			}
			if changed("hostname") {
				patch.Hostname = &hostname
			}
			if changed("mac") {
				if len(macs) == 0 {
					return usageErrorf("--mac: give at least one MAC")
				}
				patch.MACs = macs
			}
			if len(labels) > 0 || len(removeLabels) > 0 {
				patch.Labels = &admin.LabelsRequest{Remove: removeLabels}
				for _, l := range labels {
					k, v, err := inventory.ParseLabel(l)
					if err != nil {
						return fmt.Errorf("--label: %w", err)
					}
					if patch.Labels.Set == nil {
						patch.Labels.Set = map[string]string{}
					}
					if _, dup := patch.Labels.Set[k]; dup {
						return fmt.Errorf("--label: %s is given twice", k)
					}
					patch.Labels.Set[k] = v
				}
			}
			switch {
			case networkFile != "" && clearNetwork:
				return usageErrorf("give --network FILE or --clear-network, not both")
			case networkFile != "":
				n, err := readNetworkSpec(networkFile, h.stdin)
				if err != nil {
					return err
				}
				patch.Network = n
			case clearNetwork:
				patch.Network = &admin.NetworkSpec{}
			}
			if patch.Empty() {
				return usageErrorf("nothing to change: give --ip, --hostname, --mac, --label, --remove-label, --network or --clear-network")
			}
			// The server checks again, in the transaction that writes; checking the
			// current host here first fails a typo before any write, with the same words.
			cur, err := c.GetHost(ctx, args[0])
			if err != nil {
				return err
			}
			if _, err := patch.Apply(hostFromView(cur)); err != nil {
				return err
			}
			host, err := c.EditHost(ctx, args[0], patch)
			if err != nil {
				return err
			}
			return printOne(h.env.stdout, &p, hostResource, host, func() string {
				return fmt.Sprintf("edited host %s: %s\n", host.ID, describeEdit(cur, host))
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&ip, "ip", "", `IPv4 address to reserve ("" removes the reservation)`)
	f.StringVar(&hostname, "hostname", "", `hostname handed out by DHCP ("" removes it)`)
	f.StringArrayVar(&macs, "mac", nil, "the host's MACs, replacing the current ones (repeatable; the first is the PXE one)")
	f.StringArrayVar(&labels, "label", nil, "label k=v to set (repeatable)")
	f.StringArrayVar(&removeLabels, "remove-label", nil, "label key to remove (repeatable)")
	f.StringVar(&networkFile, "network", "", networkFlagHelp)
	f.BoolVar(&clearNetwork, "clear-network", false, "remove the host's network spec (it gets the default: its reserved address, static)")
	p.register(cmd, "text", actionFormats)
	return cmd
}

// hostFromView is the part of a host that HostPatch.Apply checks.
func hostFromView(v admin.Host) inventory.Host {
	return inventory.Host{
		ID: v.ID, MACs: v.MACs, Hostname: v.Hostname, IP: v.IP, Labels: v.Labels, Arch: v.Arch,
		Firmware: v.Firmware, Boot: v.Boot, State: v.State, Network: v.Network,
	}
}

// describeEdit says what changed, e.g. "ip 192.168.50.12, labels rack=r2,role=web".
func describeEdit(old, cur admin.Host) string {
	var parts []string
	if old.IP != cur.IP {
		parts = append(parts, "ip "+dash(cur.IP))
	}
	if old.Hostname != cur.Hostname {
		parts = append(parts, "hostname "+dash(cur.Hostname))
	}
	if strings.Join(old.MACs, ",") != strings.Join(cur.MACs, ",") {
		parts = append(parts, "macs "+strings.Join(cur.MACs, ","))
	}
	if formatLabels(old.Labels) != formatLabels(cur.Labels) {
		parts = append(parts, "labels "+dash(formatLabels(cur.Labels)))
	}
	if !reflect.DeepEqual(old.Network, cur.Network) {
		if cur.Network == nil {
			parts = append(parts, "network: the default")
		} else {
			parts = append(parts, "network: the file's")
		}
	}
	if len(parts) == 0 {
		return "nothing changed"
	}
	return strings.Join(parts, ", ")
}
