package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/bmc"
)

func (h *hostCLI) powerCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "power ID on|off|soft|cycle|reset|status [-o text|json]",
		Short: "Power a host on, off or through a cycle, or show its power state, through its BMC",
		Long: `power acts through the host's BMC:

  on      power on (nothing happens if it is on)
  off     cut power at once
  soft    ask the OS to shut down (ACPI); returns once the BMC accepted it
  cycle   off, then on; a host that is off is powered on
  reset   hard reset
  status  show the power state

Unreachable BMCs, wrong credentials and BMCs that do not answer fail with the reason
within the server's BMC timeout.`,
		Args: cobra.ExactArgs(2),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			id, verb := args[0], args[1]
			var (
				res admin.BMCResponse
				err error
			)
			if verb == "status" {
				res, err = bmcClient(c).PowerStatus(ctx, id)
			} else {
				a, perr := bmc.ParsePowerAction(verb)
				if perr != nil {
					return fmt.Errorf("%w, or status", perr)
				}
				res, err = bmcClient(c).Power(ctx, id, a)
			}
			if err != nil {
				return err
			}
			if output == "json" {
				return writeIndentedJSON(h.env.stdout, res)
			}
			if verb == "status" {
				_, err = fmt.Fprintf(h.env.stdout, "host %s: power is %s\n", id, res.State)
			} else {
				_, err = fmt.Fprintf(h.env.stdout, "host %s: power %s done (%s)\n", id, verb, res.Duration())
			}
			return err
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
