package main

// rackboot host: one file per subcommand (host_add.go, host_list.go, host_edit.go, ...),
// the connection to the admin API in apiclient.go, printing in printer.go.

import (
	"github.com/spf13/cobra"
)

func newHostCmd(env *cliEnv) *cobra.Command {
	return newHostCmdWith(env, defaultTokenFiles())
}

func newHostCmdWith(env *cliEnv, tokenFiles []string) *cobra.Command {
	h := &hostCLI{env: env, tokenFiles: tokenFiles}
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Manage the hardware inventory through the admin API",
		Long: `host talks to the admin API of a running 'rackboot serve'.

` + connectionHelp,
	}
	h.registerConnection(cmd)
	cmd.AddCommand(h.addCmd(), h.listCmd(), h.showCmd(), h.rmCmd(), h.labelCmd(), h.bootCmd(), h.eventsCmd(), h.importCmd(), h.leasesCmd(),
		h.bmcCmd(), h.powerCmd(), h.bootdevCmd())
	cmd.AddCommand(h.provisionCmds()...) // host_provision.go
	cmd.AddCommand(h.acceptCmd())        // host_accept.go
	cmd.AddCommand(h.editCmd())          // host_edit.go
	h.registerHostCompletions(cmd)       // completion.go
	return cmd
}
