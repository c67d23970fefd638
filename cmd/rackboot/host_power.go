package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/bmc"
)

func (h *hostCLI) powerCmd() *cobra.Command {
	var p printFlags
	cmd := &cobra.Command{
		Use:   "power ID on|off|soft|cycle|reset|status [-o text|json|yaml|jsonpath=T]",
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
			if _, _, err := p.format(); err != nil {
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
					return usageErrorf("%v, or status", perr)
				}
				res, err = bmcClient(c).Power(ctx, id, a)
			}
			if err != nil {
				return err
			}
			return printOne(h.env.stdout, &p, resource[admin.BMCResponse]{}, res, func() string {
				if verb == "status" {
					return fmt.Sprintf("host %s: power is %s\n", id, res.State)
				}
				return fmt.Sprintf("host %s: power %s done (%s)\n", id, verb, res.Duration())
			})
		}),
	}
	p.register(cmd, "text", textFormats)
	return cmd
}
