package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
)

func (h *hostCLI) acceptCmd() *cobra.Command {
	var (
		req admin.AcceptRequest
		p   printFlags
	)
	cmd := &cobra.Command{
		Use:   "accept ID",
		Short: "Accept a discovered host: make it available (or enrolled, if not yet inspected)",
		Long: `accept makes a host that rackboot discovered (an unknown MAC that PXE-booted with
--unknown-hosts discover) one of the operator's. Until then it stays discovered, its
facts shown by 'rackboot host show ID', and neither 'rackboot host provision' nor the
Cluster API can claim it: anything that PXE-boots can be discovered, and its facts are its
own word. An inspected host becomes available; one not yet inspected becomes enrolled.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if _, _, err := p.format(); err != nil {
				return err
			}
			host, err := c.Accept(ctx, args[0], req)
			if err != nil {
				return err
			}
			return printOne(h.env.stdout, &p, hostResource, host, func() string {
				return fmt.Sprintf("accepted %s: %s\n", host.ID, describeHost(host))
			})
		}),
	}
	cmd.Flags().StringVar(&req.By, "by", "", "who accepts it, for the host's timeline (default operator)")
	p.register(cmd, "text", actionFormats)
	return cmd
}
