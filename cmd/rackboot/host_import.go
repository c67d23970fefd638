package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
)

func (h *hostCLI) importCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Enrol every host in a YAML or CSV file, or none of them",
		Long: `import enrols all hosts in FILE in one all-or-nothing request: if any host is invalid
or collides with the inventory (ID, MAC, reserved IP), nothing is written. FILE "-" is
standard input. The format follows the extension (.csv; .yaml, .yml, .json), else the content.

YAML: a list of hosts, or {hosts: [...]}, each with the fields of 'host show -o yaml'
that an operator sets: id, macs, hostname, ip, labels, arch, firmware, bmc {url,
password}, boot {kernel, initrds, cmdline}. Quote bare-hex MACs.

  hosts:
    - id: web1
      macs: ["52:54:00:00:00:01"]
      ip: 192.168.50.11
      labels: {role: web}

CSV: a header row, then one host per row. Columns (any order; mac required): mac (several
separated by ';'), id, ip, hostname, labels ("k=v;k=v"), arch, firmware, bmc_url,
bmc_password, boot_kernel, boot_initrds (';'-separated), boot_cmdline. '#' starts a comment.

  mac,ip,hostname,labels
  52:54:00:00:00:01,192.168.50.11,web1,role=web;rack=r1

Errors name the file's line.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			name := args[0]
			var (
				data []byte
				err  error
			)
			if name == "-" {
				data, err = io.ReadAll(io.LimitReader(h.stdin, admin.MaxHostFileBytes+1))
				name = "stdin"
			} else {
				data, err = os.ReadFile(name)
			}
			if err != nil {
				return err
			}
			specs, lines, err := admin.ParseHostFile(name, data)
			if err != nil {
				return err
			}
			hosts, err := c.ImportHosts(ctx, specs)
			if err != nil {
				return fmt.Errorf("%s: %w%s", name, err, entryLines(err, lines))
			}
			ids := make([]string, len(hosts))
			for i, host := range hosts {
				ids[i] = host.ID
			}
			_, err = fmt.Fprintf(h.env.stdout, "imported %d hosts: %s\n", len(hosts), strings.Join(ids, ", "))
			return err
		}),
	}
}

// entryLines says where the entries the server names ("hosts[3]") are in the file.
func entryLines(err error, lines []int) string {
	var notes []string
	seen := map[string]bool{}
	for _, m := range entryRe().FindAllStringSubmatch(err.Error(), -1) {
		i, convErr := strconv.Atoi(m[1])
		if convErr != nil || i >= len(lines) || seen[m[0]] {
			continue
		}
		seen[m[0]] = true
		notes = append(notes, fmt.Sprintf("%s is line %d", m[0], lines[i]))
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, ", ") + ")"
}

func entryRe() *regexp.Regexp { return regexp.MustCompile(`hosts\[(\d+)\]`) }
