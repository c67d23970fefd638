package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/metadata"
)

// provisionCmds are the `rackboot host` subcommands that drive the state machine.
func (h *hostCLI) provisionCmds() []*cobra.Command {
	return []*cobra.Command{h.inspectCmd(), h.provisionCmd(), h.releaseCmd(), h.retryCmd(), h.watchCmd()}
}

// waitFlags: --wait makes an action command follow the host like `host watch`.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.wait, "wait", false, "follow the host until the operation ends (like host watch); exit non-zero if it fails")
	cmd.Flags().DurationVar(&w.timeout, "timeout", 0, "with --wait: give up after this long (default: no limit)")
}

// after prints what an action did and, with --wait, follows the host.
func (h *hostCLI) after(ctx context.Context, c *admin.Client, host admin.Host, verb string, w waitFlags) error {
	fmt.Fprintf(h.env.stdout, "%s %s: %s\n", verb, host.ID, describeHost(host))
	if !w.wait {
		return nil
	}
	return h.watchHosts(ctx, c, []string{host.ID}, watchOptions{timeout: w.timeout})
}

func (h *hostCLI) inspectCmd() *cobra.Command {
	var (
		w     waitFlags
		owner admin.OwnerRequest
	)
	cmd := &cobra.Command{
		Use:   "inspect ID [--wait]",
		Short: "Boot the agent on a host to record its hardware, then power it off",
		Long: `inspect sets the host's next boot to the network and power-cycles it through its BMC
(a host without a BMC must be booted by hand); the agent reports system UUID, CPUs,
memory, disks and NICs, and powers the host off. The host ends available; its facts
are in 'rackboot host show ID'.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			host, err := c.Inspect(ctx, args[0], owner)
			if err != nil {
				return err
			}
			return h.after(ctx, c, host, "inspecting", w)
		}),
	}
	w.register(cmd)
	cmd.Flags().StringVar(&owner.Owner, "owner", "", "claim owner, for a claimed host")
	cmd.Flags().BoolVar(&owner.Force, "force", false, "act on a host claimed by someone else")
	return cmd
}

func (h *hostCLI) provisionCmd() *cobra.Command {
	var (
		w                                      waitFlags
		req                                    admin.ProvisionRequest
		userDataFile, butaneFile, ignitionFile string
		networkFile                            string
		labels, meta                           []string
		cloudInit                              string
	)
	cmd := &cobra.Command{
		Use:   "provision ID --image NAME [--user-data FILE | --butane FILE | --ignition FILE] [--root-disk HINT] [--wait]",
		Short: "Write an OS image to a host and configure it with cloud-init or Ignition",
		Long: `provision boots the agent on an available host, which writes the image to the root
disk (checking its sha256), points the installed system at this host's cloud-init, and
reboots it from disk. The host is provisioned when cloud-init has run and phoned home.

--user-data is cloud-init user-data (#cloud-config, a script, MIME multipart), served
only to this host. --butane is a Butane config (variant fcos or flatcar) rendered to
Ignition now; --ignition is Ignition JSON as is. "-" reads standard input.

--root-disk chooses the disk: name=sda, serial=S, wwn=W, min=SIZE, max=SIZE, smallest,
largest, comma-separated (e.g. "min=100G,smallest"); the default is the smallest disk.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			given := 0
			for _, f := range []string{userDataFile, butaneFile, ignitionFile} {
				if f != "" {
					given++
				}
			}
			if given > 1 {
				return errors.New("give at most one of --user-data, --butane and --ignition")
			}
			if _, err := agentapi.ParseRootDiskHint(req.RootDisk); err != nil {
				return fmt.Errorf("--root-disk: %w", err)
			}
			var err error
			if req.UserData, err = readConfigFile(userDataFile, h.stdin); err != nil {
				return fmt.Errorf("--user-data: %w", err)
			}
			if req.UserData != "" {
				if err := metadata.CheckUserData([]byte(req.UserData)); err != nil {
					return fmt.Errorf("--user-data %s: %w", userDataFile, err)
				}
			}
			if req.Butane, err = readConfigFile(butaneFile, h.stdin); err != nil {
				return fmt.Errorf("--butane: %w", err)
			}
			if req.Ignition, err = readConfigFile(ignitionFile, h.stdin); err != nil {
				return fmt.Errorf("--ignition: %w", err)
			}
			if req.Labels, err = parsePairs("--label", labels, true); err != nil {
				return err
			}
			if req.Metadata, err = parsePairs("--meta", meta, false); err != nil {
				return err
			}
			req.CloudInit = agentapi.CloudInitMode(cloudInit)
			if networkFile != "" {
				if req.Network, err = readNetworkSpec(networkFile, h.stdin); err != nil {
					return err
				}
			}
			host, err := c.Provision(ctx, args[0], req)
			if err != nil {
				return err
			}
			return h.after(ctx, c, host, "provisioning", w)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Image, "image", "", "catalog image to write (rackboot image list); required")
	f.StringVar(&userDataFile, "user-data", "", "cloud-init user-data file")
	f.StringVar(&butaneFile, "butane", "", "Butane config file (rendered to Ignition)")
	f.StringVar(&ignitionFile, "ignition", "", "Ignition JSON file")
	f.StringVar(&req.RootDisk, "root-disk", "", "root disk hint (default: the smallest disk)")
	f.StringArrayVar(&labels, "label", nil, "label k=v to set on the host (repeatable; served in meta-data)")
	f.StringArrayVar(&meta, "meta", nil, "extra meta-data k=v (repeatable)")
	f.StringVar(&cloudInit, "cloud-init", "", "how the agent points the image at its config: dropin (default with user-data), cidata, ignition (default with --butane/--ignition: written to the OEM or boot partition) or none")
	f.StringVar(&req.Owner, "owner", "", "claim owner, for a claimed host")
	f.StringVar(&networkFile, "network", "", "network spec file for this provisioning (wins over the host's; see 'rackboot host edit --help')")
	_ = cmd.MarkFlagRequired("image")
	w.register(cmd)
	return cmd
}

// readConfigFile reads a user-data/Butane/Ignition file ("-": standard input), bounded.
func readConfigFile(name string, stdin io.Reader) (string, error) {
	if name == "" {
		return "", nil
	}
	var r io.Reader
	if name == "-" {
		r = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, metadata.MaxConfigBytes+1))
	if err != nil {
		return "", err
	}
	if len(b) > metadata.MaxConfigBytes {
		return "", fmt.Errorf("%s is larger than %d bytes", name, metadata.MaxConfigBytes)
	}
	return string(b), nil
}

func parsePairs(flag string, pairs []string, label bool) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, p := range pairs {
		var k, v string
		var err error
		if label {
			k, v, err = inventory.ParseLabel(p)
		} else {
			var ok bool
			if k, v, ok = strings.Cut(p, "="); !ok || k == "" {
				err = fmt.Errorf("%q: write it as key=value", p)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s: %s is given twice", flag, k)
		}
		out[k] = v
	}
	return out, nil
}

func (h *hostCLI) releaseCmd() *cobra.Command {
	var (
		w   waitFlags
		req admin.ReleaseRequest
	)
	wipe := "quick"
	cmd := &cobra.Command{
		Use:   "release ID [--wipe quick|full] [--wait]",
		Short: "Wipe a host's disks, power it off and make it available again",
		Long: `release boots the agent on the host, which wipes its disks (quick: partition tables and
signatures at both ends of each disk and partition; full: every block) and powers it
off. The host's cloud-init is no longer served from the moment release is asked. A
host still being provisioned is stopped first.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			switch wipe {
			case "quick", "full":
			default:
				return fmt.Errorf("--wipe %q: use quick or full", wipe)
			}
			req.Wipe = agentapi.WipeMode(wipe)
			host, err := c.Release(ctx, args[0], req)
			if err != nil {
				return err
			}
			return h.after(ctx, c, host, "releasing", w)
		}),
	}
	cmd.Flags().StringVar(&wipe, "wipe", wipe, "quick or full")
	cmd.Flags().StringVar(&req.Owner, "owner", "", "claim owner, for a claimed host")
	cmd.Flags().BoolVar(&req.Force, "force", false, "release a host claimed by someone else (its cluster loses the machine)")
	w.register(cmd)
	return cmd
}

func (h *hostCLI) retryCmd() *cobra.Command {
	var (
		w     waitFlags
		owner admin.OwnerRequest
	)
	cmd := &cobra.Command{
		Use:   "retry ID [--wait]",
		Short: "Retry the operation a failed host failed in",
		Args:  cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			host, err := c.Retry(ctx, args[0], owner)
			if err != nil {
				return err
			}
			return h.after(ctx, c, host, "retrying", w)
		}),
	}
	cmd.Flags().StringVar(&owner.Owner, "owner", "", "claim owner, for a claimed host")
	cmd.Flags().BoolVar(&owner.Force, "force", false, "act on a host claimed by someone else")
	w.register(cmd)
	return cmd
}

func describeHost(h admin.Host) string {
	s := string(h.State)
	if h.StateReason != "" {
		s += " (" + h.StateReason + ")"
	}
	return s
}
