package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/lab/bmcsim"
)

// newLabCmd holds the QEMU lab's BMC emulators. They ship in the rackboot binary so the
// lab needs nothing but it, QEMU and Debian's ipmi_sim; they are not for real racks.
func newLabCmd(env *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "lab",
		Short:  "BMC emulators for the QEMU lab (not for production)",
		Hidden: true,
	}
	cmd.AddCommand(newLabChassisControlCmd(env), newLabVMPowerCmd(env), newLabRedfishCmd(env))
	return cmd
}

func newLabChassisControlCmd(env *cliEnv) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "chassis-control --dir DIR (get|set|check) ...",
		Short: "ipmi_sim's chassis_control hook: power and boot device of the lab VM in DIR",
		RunE: func(cmd *cobra.Command, args []string) error {
			return bmcsim.ChassisControl(cmd.Context(), dir, args, env.stdout)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the VM directory (required)")
	cmd.MarkFlagRequired("dir")
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func newLabVMPowerCmd(env *cliEnv) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:       "vm-power --dir DIR status|on|off|soft|reset|cycle",
		Short:     "Power a lab VM directly, as its BMC would",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"status", "on", "off", "soft", "reset", "cycle"},
		RunE: func(cmd *cobra.Command, args []string) error {
			return bmcsim.PowerCommand(cmd.Context(), dir, args[0], env.stdout)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the VM directory (required)")
	cmd.MarkFlagRequired("dir")
	return cmd
}

func newLabRedfishCmd(env *cliEnv) *cobra.Command {
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
				Logger: newLogger(env.stderr, "info", "text"),
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
