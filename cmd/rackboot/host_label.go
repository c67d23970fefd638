package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

func (h *hostCLI) labelCmd() *cobra.Command {
	var (
		remove []string
		p      printFlags
	)
	cmd := &cobra.Command{
		Use:   "label ID [k=v]... [--remove k]...",
		Short: "Set or remove a host's labels",
		Args:  cobra.MinimumNArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if _, _, err := p.format(); err != nil {
				return err
			}
			req := admin.LabelsRequest{Remove: remove}
			for _, l := range args[1:] {
				k, v, err := inventory.ParseLabel(l)
				if err != nil {
					return err
				}
				if req.Set == nil {
					req.Set = map[string]string{}
				}
				req.Set[k] = v
			}
			if err := req.Validate(); err != nil {
				return fmt.Errorf("%w (usage: rackboot host label ID k=v... [--remove k])", err)
			}
			host, err := c.UpdateLabels(ctx, args[0], req)
			if err != nil {
				return err
			}
			return printOne(h.env.stdout, &p, hostResource, host, func() string {
				if len(host.Labels) == 0 {
					return fmt.Sprintf("host %s has no labels\n", host.ID)
				}
				return fmt.Sprintf("host %s labels: %s\n", host.ID, formatLabels(host.Labels))
			})
		}),
	}
	cmd.Flags().StringArrayVar(&remove, "remove", nil, "label key to remove (repeatable)")
	p.register(cmd, "text", actionFormats)
	return cmd
}
