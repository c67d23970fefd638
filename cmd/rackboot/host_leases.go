package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
)

func (h *hostCLI) leasesCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "leases [-o table|json]",
		Short: "List DHCP leases",
		Args:  cobra.NoArgs,
		RunE: h.run(func(ctx context.Context, c *admin.Client, _ []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			leases, err := c.Leases(ctx)
			if err != nil {
				return err
			}
			if output == "json" {
				if leases == nil {
					leases = []admin.Lease{}
				}
				return writeIndentedJSON(h.env.stdout, leases)
			}
			tw := tabwriter.NewWriter(h.env.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "MAC\tIP\tSTATE\tEXPIRES\tHOSTNAME")
			for _, l := range leases {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.MAC, l.IP, l.State, l.Expires.UTC().Format(time.RFC3339), dash(l.Hostname))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}
