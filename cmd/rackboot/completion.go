package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
)

// Shell completion (rackboot completion bash|zsh|fish|powershell; cobra's __complete
// runs these). Host IDs and image names come from the running server the command would
// talk to (same --server, token and trust); an unreachable server completes nothing
// rather than offering file names. Which argument of which command completes what is
// set here, in one table, rather than in each command.

// completionTimeout bounds a completion's request: a shell waits on it.
const completionTimeout = 3 * time.Second

// argCompleter completes one positional argument.
type argCompleter func(ctx context.Context, toComplete string) []cobra.Completion

// completeArgs completes argument i with pos[i]; arguments beyond complete nothing.
func completeArgs(pos ...argCompleter) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) >= len(pos) || pos[len(args)] == nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		return pos[len(args)](ctx, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeEach completes every argument with each, leaving out the ones already given.
func completeEach(each argCompleter) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		var out []cobra.Completion
		for _, c := range each(ctx, toComplete) {
			if word, _, _ := strings.Cut(c, "\t"); !slices.Contains(args, word) {
				out = append(out, c)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// words completes fixed words, each with its description.
func words(pairs ...string) argCompleter {
	return func(_ context.Context, toComplete string) []cobra.Completion {
		var out []cobra.Completion
		for i := 0; i+1 < len(pairs); i += 2 {
			if strings.HasPrefix(pairs[i], toComplete) {
				out = append(out, cobra.CompletionWithDesc(pairs[i], pairs[i+1]))
			}
		}
		return out
	}
}

func (h *hostCLI) completionClient() *admin.Client {
	c, err := h.client()
	if err != nil {
		return nil
	}
	return c.WithTimeout(completionTimeout)
}

// hostIDs completes host IDs, each described by its state (and owner).
func (h *hostCLI) hostIDs(ctx context.Context, toComplete string) []cobra.Completion {
	c := h.completionClient()
	if c == nil {
		return nil
	}
	hosts, err := c.ListHosts(ctx)
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, host := range hosts {
		if !strings.HasPrefix(host.ID, toComplete) {
			continue
		}
		desc := string(host.State)
		if host.Claim != nil {
			desc += ", claimed by " + host.Claim.Owner
		}
		out = append(out, cobra.CompletionWithDesc(host.ID, desc))
	}
	return out
}

// imageNames completes the catalog's image names, described by their status.
func (h *hostCLI) imageNames(ctx context.Context, toComplete string) []cobra.Completion {
	c := h.completionClient()
	if c == nil {
		return nil
	}
	ims, err := c.ListImages(ctx)
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, im := range ims {
		if strings.HasPrefix(im.Name, toComplete) {
			out = append(out, cobra.CompletionWithDesc(im.Name, string(im.Status)))
		}
	}
	return out
}

var (
	powerActions = words("on", "power on", "off", "cut power at once", "soft", "ACPI shutdown",
		"cycle", "off, then on", "reset", "hard reset", "status", "show the power state")
	bootDevices   = words("pxe", "network boot from rackboot", "disk", "boot from local disk")
	wipeModes     = words("quick", "zero the first and last MiB of disks and partitions", "full", "zero every block (hours on a large disk)")
	imageFormats  = words("raw", "uncompressed", "gzip", "gzip-compressed", "zstd", "zstd-compressed", "xz", "xz-compressed", "qcow2", "QEMU qcow2 (converted to raw on the server)")
	cloudInitMode = words("dropin", "cloud.cfg.d drop-in", "cidata", "CIDATA config drive", "ignition", "Ignition config", "none", "no config")
)

// flagWords completes a flag's value, whatever the positional arguments.
func flagWords(w argCompleter) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		return w(ctx, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// registerHostCompletions wires `rackboot host`'s completions.
func (h *hostCLI) registerHostCompletions(group *cobra.Command) {
	for _, c := range group.Commands() {
		switch c.Name() {
		case "show", "rm", "label", "boot", "events", "bmc", "accept", "edit", "inspect", "provision", "release", "retry":
			c.ValidArgsFunction = completeArgs(h.hostIDs)
		case "watch":
			c.ValidArgsFunction = completeEach(h.hostIDs)
		case "power":
			c.ValidArgsFunction = completeArgs(h.hostIDs, powerActions)
		case "bootdev":
			c.ValidArgsFunction = completeArgs(h.hostIDs, bootDevices)
		case "add", "list", "import", "leases":
			if c.ValidArgsFunction == nil && c.Name() != "import" {
				c.ValidArgsFunction = completeArgs()
			}
		}
		if c.Flags().Lookup("image") != nil {
			_ = c.RegisterFlagCompletionFunc("image", flagWords(h.imageNames))
		}
		if c.Flags().Lookup("wipe") != nil {
			_ = c.RegisterFlagCompletionFunc("wipe", flagWords(wipeModes))
		}
		if c.Flags().Lookup("cloud-init") != nil {
			_ = c.RegisterFlagCompletionFunc("cloud-init", flagWords(cloudInitMode))
		}
	}
}

// registerImageCompletions wires `rackboot image`'s completions.
func (h *hostCLI) registerImageCompletions(group *cobra.Command) {
	for _, c := range group.Commands() {
		switch c.Name() {
		case "show", "rm":
			c.ValidArgsFunction = completeArgs(h.imageNames)
		case "list":
			c.ValidArgsFunction = completeArgs()
		}
		if c.Flags().Lookup("format") != nil {
			_ = c.RegisterFlagCompletionFunc("format", flagWords(imageFormats))
		}
	}
}
