package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// cliEnv carries what every subcommand needs from the process, so commands never reach
// for os.Stdout or os.Getenv themselves and tests can run them in-process.
type cliEnv struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func execute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCmd(&cliEnv{stdout: stdout, stderr: stderr, getenv: os.Getenv})
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newRootCmd(env *cliEnv) *cobra.Command {
	root := &cobra.Command{
		Use:   "rackboot",
		Short: "Bare-metal provisioning for a rack: DHCP, TFTP, iPXE/HTTP boot, BMCs, inventory",
		Long: `rackboot turns a rack of servers into provisioned hosts from one binary.

  rackboot serve      run the boot services, inventory and admin API on the provisioning host
  rackboot host ...   manage the hardware inventory through the admin API`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(env.stdout)
	root.SetErr(env.stderr)
	root.AddCommand(newServeCmd(env), newHostCmd(env), newVersionCmd(env), newAgentCmd(env, root), newBootenvCmd(env))
	root.AddCommand(newLabCmd(env))
	root.AddCommand(newImageCmd(env)) // image.go
	return root
}

func newVersionCmd(env *cliEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			goVersion := "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
			}
			_, err := fmt.Fprintf(env.stdout, "rackboot %s (%s)\n", version, goVersion)
			return err
		},
	}
}
