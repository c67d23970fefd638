package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/internal/bootenv"
)

// newBootenvCmd returns `rackboot bootenv`, which builds the agent's boot environment.
func newBootenvCmd(env *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bootenv",
		Short: "Build the agent's boot environment (kernel and initramfs)",
	}
	var cfg bootenv.Config
	var logLevel string
	imp := &cobra.Command{
		Use:   "import --deb linux-image-VERSION.deb",
		Short: "Import a Debian kernel package and build the agent initramfs from it",
		Long: `import takes a Debian linux-image .deb (apt-get download linux-image-6.1.0-NN-amd64)
and writes DATA_DIR/bootenv/vmlinuz and DATA_DIR/bootenv/initramfs.gz: the kernel, and an
initramfs holding this rackboot binary as /init plus the kernel's NIC and storage driver
modules (and ext4). The result is cached by content: importing the same package with the
same binary again does nothing. The build it replaces stays in DATA_DIR/bootenv/cache, and
a running rackboot serve keeps serving it by its key to hosts half-way through booting
it; older builds are removed. rackboot serve needs no restart: it uses the new build
from the next iPXE script that boots the agent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Log = newLogger(env.stderr, logLevel, "text")
			e, err := bootenv.Build(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			state := "built"
			if e.Cached {
				state = "cached"
			}
			_, err = fmt.Fprintf(env.stdout, "boot environment %s (%s): kernel %s, %d modules\n  %s\n  %s (%d bytes)\n",
				e.Key, state, e.KernelVersion, e.Modules, e.Kernel, e.Initramfs, e.InitramfsSize)
			return err
		},
	}
	f := imp.Flags()
	f.StringVar(&cfg.KernelDeb, "deb", "", "Debian linux-image .deb to import (required)")
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/rackboot", "rackboot data directory")
	f.StringVar(&cfg.Agent, "agent", "", "static rackboot binary to embed as /init (default: this binary)")
	f.StringArrayVar(&cfg.Modules, "module", nil, "module path pattern under lib/modules/VERSION (DIR/** for a tree); repeatable; replaces the default set")
	f.StringVar(&logLevel, "log-level", "info", "debug or info")
	_ = imp.MarkFlagRequired("deb")
	cmd.AddCommand(imp)
	return cmd
}
