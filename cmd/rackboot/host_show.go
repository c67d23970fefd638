package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
)

func (h *hostCLI) showCmd() *cobra.Command {
	var p printFlags
	cmd := &cobra.Command{
		Use:   "show ID [-o yaml|json|table|wide|name|jsonpath=T]",
		Short: "Show one host",
		Long: `show prints one host, as YAML by default: everything the admin API shows of it
(claim, facts, provisioning, the operation in progress). -o table and wide print the
row 'host list' would.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if _, _, err := p.format(); err != nil {
				return err
			}
			host, err := c.GetHost(ctx, args[0])
			if err != nil {
				return err
			}
			return printOne(h.env.stdout, &p, hostResource, host, nil)
		}),
	}
	p.register(cmd, "yaml", listFormats)
	return cmd
}
