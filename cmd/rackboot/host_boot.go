package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

func (h *hostCLI) bootCmd() *cobra.Command {
	var (
		out   printFlags
		p     inventory.BootProfile
		clear bool
	)
	cmd := &cobra.Command{
		Use:   "boot ID --kernel URL [--initrd URL]... [--cmdline S] | --clear",
		Short: "Set or clear the kernel a host boots",
		Long: `boot gives a host an explicit boot profile, which its iPXE script boots whatever
the host's state, or removes it with --clear. Kernel and initrds are http(s)/tftp URLs or
paths under the server's assets directory (e.g. debian/vmlinuz).`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if _, _, err := out.format(); err != nil {
				return err
			}
			id := args[0]
			if clear {
				if p.Kernel != "" || len(p.Initrds) > 0 || p.Cmdline != "" {
					return errors.New("--clear removes the boot profile: give it alone, without --kernel, --initrd or --cmdline")
				}
				host, err := c.ClearBoot(ctx, id)
				if err != nil {
					return err
				}
				return printOne(h.env.stdout, &out, hostResource, host, func() string {
					return fmt.Sprintf("host %s: boot profile cleared\n", id)
				})
			}
			if p.Kernel == "" {
				return errors.New("give --kernel URL (with --initrd and --cmdline as needed), or --clear")
			}
			if err := admin.ValidateBoot(&p); err != nil {
				return err
			}
			host, err := c.SetBoot(ctx, id, p)
			if err != nil {
				return err
			}
			return printOne(h.env.stdout, &out, hostResource, host, func() string {
				return fmt.Sprintf("host %s boots %s\n", host.ID, host.Boot.Kernel)
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&p.Kernel, "kernel", "", "kernel URL or assets path")
	f.StringArrayVar(&p.Initrds, "initrd", nil, "initrd URL or assets path (repeatable, in order)")
	f.StringVar(&p.Cmdline, "cmdline", "", "kernel command line")
	f.BoolVar(&clear, "clear", false, "remove the boot profile")
	out.register(cmd, "text", actionFormats)
	return cmd
}
