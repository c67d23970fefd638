package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/internal/agent"
)

// runningAsInit reports whether this process is the initramfs's /init: the kernel runs
// it as PID 1 with argv[0] "/init" and no subcommand.
func runningAsInit() bool {
	return os.Getpid() == 1 || (len(os.Args) > 0 && filepath.Base(os.Args[0]) == "init")
}

// newAgentCmd returns `rackboot agent`. When the binary runs as the boot environment's
// /init it also makes the root command itself run the agent: the kernel gives init no
// subcommand, and may pass it stray command-line words, which must not stop the boot.
func newAgentCmd(env *cliEnv, root *cobra.Command) *cobra.Command {
	a := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the in-memory provisioning agent (PID 1 of rackboot's boot environment)",
		Long: `agent is what a host runs when rackboot boots it to be inspected, provisioned or
wiped: PID 1 of the initramfs 'rackboot bootenv import' builds. It mounts /proc, /sys and
/dev, loads the NIC and storage drivers by modalias, takes a DHCP address on the NIC
named by rackboot.mac= on the kernel command line, sends the hardware facts to
rackboot.url= with rackboot.token=, runs the plan the server answers with, reports the
result and powers off or reboots.

Run anywhere else it needs --force: a provisioning or wipe plan overwrites this machine's
disks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd, env)
		},
	}
	f := cmd.Flags()
	f.StringVar(&a.root, "root", "/", "where proc/, sys/, dev/ and lib/modules/ are")
	f.StringVar(&a.cmdline, "cmdline", "", "kernel command line to use instead of /proc/cmdline")
	f.BoolVar(&a.pid1, "pid1", os.Getpid() == 1, "act as init: mount the pseudo filesystems, never exit, power off or reboot at the end")
	f.BoolVar(&a.loadModules, "load-modules", os.Getpid() == 1, "load drivers by modalias and wait for the boot NIC")
	f.BoolVar(&a.network, "network", os.Getpid() == 1, "take a DHCP address on the boot NIC (else use the network as it is)")
	f.BoolVar(&a.force, "force", false, "run although this is not PID 1 (the plan may wipe this machine's disks)")
	f.StringVar(&a.logLevel, "log-level", "info", "debug or info")

	if runningAsInit() {
		root.Args = cobra.ArbitraryArgs
		root.FParseErrWhitelist.UnknownFlags = true
		root.RunE = func(cmd *cobra.Command, _ []string) error {
			asInit := &agentFlags{root: "/", pid1: true, loadModules: true, network: true, logLevel: "info"}
			return asInit.run(cmd, env)
		}
	}
	return cmd
}

type agentFlags struct {
	root, cmdline, logLevel           string
	pid1, loadModules, network, force bool
}

func (a *agentFlags) run(cmd *cobra.Command, env *cliEnv) error {
	if !a.pid1 && !a.force {
		return fmt.Errorf("rackboot agent runs as PID 1 of rackboot's boot environment; elsewhere pass --force (a plan from the server may wipe this machine's disks)")
	}
	var out io.Writer = env.stderr
	if a.pid1 {
		// As init, stderr is whatever the kernel gave; setupPID1 points fds 0-2 at
		// /dev/console, so log to the fd, not to the writer captured before that.
		out = os.Stderr
	}
	log := newLogger(out, a.logLevel, "text").With("component", "agent")
	return agent.Run(cmd.Context(), agent.Config{
		Log: log, Version: version, Root: a.root, Cmdline: a.cmdline,
		PID1: a.pid1, LoadModules: a.loadModules, Network: a.network,
	})
}
