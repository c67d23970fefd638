package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
)

// leaseResource is how DHCP leases print.
var leaseResource = resource[admin.Lease]{
	kind: "lease",
	name: func(l admin.Lease) string { return l.MAC },
	columns: []column[admin.Lease]{
		{header: "MAC", value: func(l admin.Lease) string { return l.MAC }},
		{header: "IP", value: func(l admin.Lease) string { return l.IP }},
		{header: "STATE", value: func(l admin.Lease) string { return string(l.State) }},
		{header: "EXPIRES", value: func(l admin.Lease) string { return l.Expires.UTC().Format(time.RFC3339) }},
		{header: "HOSTNAME", value: func(l admin.Lease) string { return l.Hostname }},
		{header: "UPDATED", wide: true, value: func(l admin.Lease) string { return l.Updated.UTC().Format(time.RFC3339) }},
	},
}

func (h *hostCLI) leasesCmd() *cobra.Command {
	var p printFlags
	cmd := &cobra.Command{
		Use:   "leases [-o table|wide|json|yaml|name|jsonpath=T] [--no-headers]",
		Short: "List DHCP leases",
		Args:  cobra.NoArgs,
		RunE: h.run(func(ctx context.Context, c *admin.Client, _ []string) error {
			if _, _, err := p.format(); err != nil {
				return err
			}
			leases, err := c.Leases(ctx)
			if err != nil {
				return err
			}
			return printList(h.env.stdout, &p, leaseResource, leases)
		}),
	}
	p.register(cmd, "table", listFormats)
	return cmd
}
