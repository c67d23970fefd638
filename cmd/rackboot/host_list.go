package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

// hostStates are the states a host can be in, for --state and its completion.
var hostStates = []inventory.State{
	inventory.StateEnrolled, inventory.StateDiscovered, inventory.StateInspecting, inventory.StateAvailable,
	inventory.StateProvisioning, inventory.StateProvisioned, inventory.StateDeprovisioning, inventory.StateFailed,
}

// hostResource is how hosts print: list, show and edit share it.
var hostResource = resource[admin.Host]{
	kind: "host",
	name: func(h admin.Host) string { return h.ID },
	columns: []column[admin.Host]{
		{header: "ID", value: func(h admin.Host) string { return h.ID }},
		{header: "STATE", value: func(h admin.Host) string { return string(h.State) }},
		{header: "OWNER", value: func(h admin.Host) string {
			if h.Claim == nil {
				return ""
			}
			return h.Claim.Owner
		}},
		{header: "MACS", value: func(h admin.Host) string { return strings.Join(h.MACs, ",") }},
		{header: "IP", value: func(h admin.Host) string { return h.IP }},
		{header: "HOSTNAME", value: func(h admin.Host) string { return h.Hostname }},
		{header: "LABELS", value: func(h admin.Host) string { return formatLabels(h.Labels) }},
		{header: "ARCH", wide: true, value: func(h admin.Host) string { return h.Arch }},
		{header: "FIRMWARE", wide: true, value: func(h admin.Host) string { return string(h.Firmware) }},
		{header: "BMC", wide: true, value: func(h admin.Host) string {
			if h.BMC == nil {
				return ""
			}
			return h.BMC.URL
		}},
		{header: "IMAGE", wide: true, value: func(h admin.Host) string {
			if h.Provision == nil {
				return ""
			}
			return h.Provision.Image
		}},
		{header: "REASON", wide: true, value: func(h admin.Host) string { return h.StateReason }},
	},
}

// hostFilter is host list's -l and --state.
type hostFilter struct {
	selector string
	states   []string
	owner    string
}

func (f *hostFilter) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.selector, "selector", "l", "", "label selector, as kubectl's: k=v, k!=v, 'k in (a,b)', k, !k; comma means and")
	fl.StringSliceVar(&f.states, "state", nil, "only hosts in these states (comma-separated or repeated): "+joinStates())
	fl.StringVar(&f.owner, "owner", "", "only hosts claimed by this owner")
	_ = cmd.RegisterFlagCompletionFunc("state", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		out := make([]cobra.Completion, len(hostStates))
		for i, s := range hostStates {
			out[i] = string(s)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
}

func joinStates() string {
	s := make([]string, len(hostStates))
	for i, st := range hostStates {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

// matcher checks the flags and returns what keeps a host.
func (f *hostFilter) matcher() (func(admin.Host) bool, error) {
	sel := labels.Everything()
	if f.selector != "" {
		var err error
		if sel, err = labels.Parse(f.selector); err != nil {
			return nil, usageErrorf("-l %s: %v", f.selector, err)
		}
	}
	var states []inventory.State
	for _, s := range f.states {
		st := inventory.State(strings.TrimSpace(s))
		if !slices.Contains(hostStates, st) {
			return nil, usageErrorf("--state %s: no such state: use %s", s, joinStates())
		}
		states = append(states, st)
	}
	return func(h admin.Host) bool {
		if len(states) > 0 && !slices.Contains(states, h.State) {
			return false
		}
		if f.owner != "" && (h.Claim == nil || h.Claim.Owner != f.owner) {
			return false
		}
		return sel.Matches(labels.Set(h.Labels))
	}, nil
}

func (h *hostCLI) listCmd() *cobra.Command {
	var (
		p      printFlags
		filter hostFilter
	)
	cmd := &cobra.Command{
		Use:   "list [-l SELECTOR] [--state S] [--owner O] [-o table|wide|json|yaml|name|jsonpath=T] [--no-headers]",
		Short: "List hosts",
		Long: `list prints the inventory's hosts, sorted by ID. OWNER is who claimed the host (a
'rackboot host provision' requester or a Cluster API machine).

  rackboot host list -l role=worker,rack!=r2 --state available
  rackboot host list -o wide
  rackboot host list -o name --state failed | xargs -n1 rackboot host retry
  rackboot host list -o jsonpath='{range .items[*]}{.id}{"\t"}{.ip}{"\n"}{end}'`,
		Aliases: []string{"ls"},
		Args:    cobra.NoArgs,
		RunE: h.run(func(ctx context.Context, c *admin.Client, _ []string) error {
			format, _, err := p.format()
			if err != nil {
				return err
			}
			keep, err := filter.matcher()
			if err != nil {
				return err
			}
			all, err := c.ListHosts(ctx)
			if err != nil {
				return err
			}
			hosts := make([]admin.Host, 0, len(all))
			for _, host := range all {
				if keep(host) {
					hosts = append(hosts, host)
				}
			}
			if len(hosts) == 0 && (format == "table" || format == "wide") {
				if len(all) == 0 {
					fmt.Fprintln(h.env.stderr, "no hosts enrolled: add one with 'rackboot host add --mac MAC' or 'rackboot host import FILE'")
				} else {
					fmt.Fprintf(h.env.stderr, "no hosts match (%d enrolled)\n", len(all))
				}
			}
			return printList(h.env.stdout, &p, hostResource, hosts)
		}),
	}
	filter.register(cmd)
	p.register(cmd, "table", listFormats)
	return cmd
}
