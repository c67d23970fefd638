package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/bmc"
)

func (h *hostCLI) bootdevCmd() *cobra.Command {
	var (
		p                  printFlags
		persistent, legacy bool
		uefi               bool
	)
	cmd := &cobra.Command{
		Use:   "bootdev ID pxe|disk [--persistent] [--legacy|--uefi] [-o text|json|yaml|jsonpath=T]",
		Short: "Set the device a host boots from next, through its BMC",
		Long: `bootdev sets the host's next boot device: pxe (network boot from rackboot) or disk.
It applies to the next boot only unless --persistent. The boot mode is UEFI, or legacy
BIOS for hosts whose firmware is known to be BIOS; --legacy or --uefi choose it.`,
		Args: cobra.ExactArgs(2),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if _, _, err := p.format(); err != nil {
				return err
			}
			dev, err := bmc.ParseBootDevice(args[1])
			if err != nil {
				return &usageError{err: err}
			}
			if legacy && uefi {
				return usageErrorf("--legacy and --uefi contradict each other: give one")
			}
			req := admin.BootDeviceRequest{Device: dev, Persistent: persistent}
			if legacy || uefi {
				req.UEFI = &uefi
			}
			res, err := bmcClient(c).SetBootDevice(ctx, args[0], req)
			if err != nil {
				return err
			}
			when, mode := "next boot only", "legacy BIOS"
			if res.Boot != nil && res.Boot.Persistent {
				when = "every boot"
			}
			if res.Boot != nil && res.Boot.UEFI {
				mode = "UEFI"
			}
			return printOne(h.env.stdout, &p, resource[admin.BMCResponse]{}, res, func() string {
				return fmt.Sprintf("host %s: boots from %s, %s, %s\n", args[0], dev, mode, when)
			})
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&persistent, "persistent", false, "keep the boot device for every boot, not only the next")
	f.BoolVar(&legacy, "legacy", false, "boot in legacy BIOS mode")
	f.BoolVar(&uefi, "uefi", false, "boot in UEFI mode")
	p.register(cmd, "text", textFormats)
	return cmd
}
