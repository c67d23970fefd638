package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// cliEnv carries what every subcommand needs from the process, so commands never reach
// for os.Stdout or os.Getenv themselves and tests can run them in-process.
type cliEnv struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// environ lists the environment (KEY=VALUE), for serve to spot a misspelt
	// RACKBOOT_* setting; nil means none.
	environ func() []string
	// defaultConfig is serve's configuration file when --config is not given and it
	// exists; empty (tests) reads none.
	defaultConfig string
	// ifAddrs learns an interface's addresses; nil means the system's.
	ifAddrs interfaceAddrs
	// isTerminal says whether w is a terminal that can show live progress bars; nil
	// means none is (tests, unless they say otherwise).
	isTerminal func(w io.Writer) bool
}

// terminal reports whether w gets live progress bars.
func (e *cliEnv) terminal(w io.Writer) bool {
	return e.isTerminal != nil && e.isTerminal(w)
}

// fileIsTerminal is cliEnv.isTerminal for a real process: w is a terminal that
// understands cursor movement (not TERM=dumb).
func fileIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
}

func execute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCmd(&cliEnv{stdout: stdout, stderr: stderr, getenv: os.Getenv, environ: os.Environ, defaultConfig: defaultConfigFile, isTerminal: fileIsTerminal})
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// Exit codes, as kubectl and most Unix tools use them: 1 when the command ran and
// failed, 2 when it was not understood (unknown command or flag, wrong arguments, a bad
// -o), so a script can tell a typo from a failure.
const (
	exitFailure = 1
	exitUsage   = 2
)

// usageError is a command line that was not understood.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...)}
}

// exitCode is what main exits with for err.
func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

func newRootCmd(env *cliEnv) *cobra.Command {
	var showVersion bool
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
	version := newVersionCmd(env)
	root.AddCommand(newServeCmd(env), newHostCmd(env), version, newAgentCmd(env, root), newBootenvCmd(env))
	root.AddCommand(newImageCmd(env))  // image.go
	root.AddCommand(newConfigCmd(env)) // config_doc.go
	root.Flags().BoolVar(&showVersion, "version", false, "print the version of this binary and of the server (like 'rackboot version')")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErrorf("%v\nSee '%s --help'.", err, c.CommandPath())
	})
	// cobra adds these lazily; adding them now lets strictUsage cover them too.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	strictUsage(root)
	groupRun := root.RunE
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if showVersion {
			// As 'rackboot version' with its defaults; the server comes from the environment.
			version.SetContext(cmd.Context())
			return version.RunE(version, nil)
		}
		return groupRun(cmd, args)
	}
	return root
}

// strictUsage makes the tree fail on what it does not understand. A command that only
// groups others (host, image) answers an unknown subcommand with an error and the nearest
// names instead of printing its help and succeeding; wrong argument counts become usage
// errors (exit 2) that show the command's usage line.
func strictUsage(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.SuggestionsMinimumDistance = 2
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
			}
			return usageErrorf("%s\nRun '%s --help' for usage.", msg, cmd.CommandPath())
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	} else if c.Args != nil {
		check := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageErrorf("%v\nUsage: %s", err, cmd.UseLine())
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		strictUsage(sub)
	}
}
