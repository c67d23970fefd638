// Command rackboot-bmcsim is the QEMU lab's BMCs (internal/lab/bmcsim): the chassis_control hook
// Debian's ipmi_sim runs for power and boot device, a Redfish service, and direct power
// of a lab VM. It lives apart from rackboot, which real racks run: lab.BMCSimBinary
// builds it for the lab's tests and `make lab`.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "rackboot-bmcsim",
		Short:         "BMC emulators for the QEMU lab's VMs (not for real racks)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newChassisControlCmd(os.Stdout), newVMPowerCmd(os.Stdout), newRedfishCmd(os.Stderr))
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "rackboot-bmcsim:", err)
		os.Exit(1)
	}
}

func newChassisControlCmd(stdout io.Writer) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "chassis-control --dir DIR (get|set|check) ...",
		Short: "ipmi_sim's chassis_control hook: power and boot device of the lab VM in DIR",
		RunE: func(cmd *cobra.Command, args []string) error {
			return bmcsim.ChassisControl(cmd.Context(), dir, args, stdout)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the VM directory (required)")
	cmd.MarkFlagRequired("dir")
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func newVMPowerCmd(stdout io.Writer) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:       "vm-power --dir DIR status|on|off|soft|reset|cycle",
		Short:     "Power a lab VM directly, as its BMC would",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"status", "on", "off", "soft", "reset", "cycle"},
		RunE: func(cmd *cobra.Command, args []string) error {
			return bmcsim.PowerCommand(cmd.Context(), dir, args[0], stdout)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the VM directory (required)")
	cmd.MarkFlagRequired("dir")
	return cmd
}

func newRedfishCmd(stderr io.Writer) *cobra.Command {
	var listen, user, passFile, cert, key string
	var systems []string
	cmd := &cobra.Command{
		Use:   "redfish --listen ADDR --username U --password-file F --system ID=DIR...",
		Short: "Serve a Redfish BMC for lab VMs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := os.ReadFile(passFile)
			if err != nil {
				return fmt.Errorf("--password-file: %w", err)
			}
			dirs := map[string]string{}
			for _, s := range systems {
				id, dir, ok := strings.Cut(s, "=")
				if !ok || id == "" || dir == "" {
					return fmt.Errorf("--system %q: write it as ID=VMDIR", s)
				}
				dirs[id] = dir
			}
			machines, err := bmcsim.SystemsFromDirs(dirs)
			if err != nil {
				return err
			}
			srv, err := bmcsim.NewRedfishServer(bmcsim.RedfishConfig{
				Systems: machines, Username: user, Password: strings.TrimSpace(string(b)),
				Addr: listen, TLSCertFile: cert, TLSKeyFile: key,
				Logger: slog.New(slog.NewTextHandler(stderr, nil)),
			})
			if err != nil {
				return err
			}
			return srv.Start(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "address to listen on, a lab address inside the lab's namespace (required)")
	f.StringVar(&user, "username", "", "account name (required)")
	f.StringVar(&passFile, "password-file", "", "file holding the account's password (required)")
	f.StringVar(&cert, "tls-cert", "", "serve https with this certificate")
	f.StringVar(&key, "tls-key", "", "… and this key")
	f.StringArrayVar(&systems, "system", nil, "ID=VMDIR, one per ComputerSystem (repeatable, required)")
	for _, r := range []string{"listen", "username", "password-file", "system"} {
		cmd.MarkFlagRequired(r)
	}
	return cmd
}
