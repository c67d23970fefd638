package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
)

func (h *hostCLI) rmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID",
		Short: "Remove a host with its events and provisioning data (its DHCP leases run out)",
		Args:  cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if err := c.DeleteHost(ctx, args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(h.env.stdout, "deleted host %s\n", args[0])
			return err
		}),
	}
}
