package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
)

func (h *hostCLI) listCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list [-o table|json]",
		Short: "List hosts",
		Args:  cobra.NoArgs,
		RunE: h.run(func(ctx context.Context, c *admin.Client, _ []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			hosts, err := c.ListHosts(ctx)
			if err != nil {
				return err
			}
			if output == "json" {
				if hosts == nil {
					hosts = []admin.Host{}
				}
				return writeIndentedJSON(h.env.stdout, hosts)
			}
			if len(hosts) == 0 {
				fmt.Fprintln(h.env.stderr, "no hosts enrolled: add one with 'rackboot host add --mac MAC' or 'rackboot host import FILE'")
			}
			tw := tabwriter.NewWriter(h.env.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tMACS\tIP\tHOSTNAME\tLABELS")
			for _, host := range hosts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", host.ID, host.State, strings.Join(host.MACs, ","),
					dash(host.IP), dash(host.Hostname), dash(formatLabels(host.Labels)))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}
