package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/rackboot/rackboot/admin"
)

func (h *hostCLI) showCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show ID [-o yaml|json]",
		Short: "Show one host",
		Args:  cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			host, err := c.GetHost(ctx, args[0])
			if err != nil {
				return err
			}
			return writeDocument(h.env.stdout, output, host)
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	return cmd
}

// writeDocument prints v as indented JSON when output is "json", else as YAML.
func writeDocument(w io.Writer, output string, v any) error {
	if output == "json" {
		return writeIndentedJSON(w, v)
	}
	buf, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}
