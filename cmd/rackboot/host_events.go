package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
)

func (h *hostCLI) eventsCmd() *cobra.Command {
	var (
		output   string
		follow   bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "events ID [-o table|json] [--follow]",
		Short: "Show a host's event timeline",
		Long: `events prints the host's timeline, oldest first. --follow keeps polling for new
events until interrupted; with -o json it then prints one JSON object per line.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			if interval <= 0 {
				return fmt.Errorf("--interval %s: give a positive duration, e.g. 1s", interval)
			}
			evs, err := c.Events(ctx, args[0], 0)
			if err != nil {
				return err
			}
			if !follow {
				if output == "json" {
					if evs == nil {
						evs = []admin.Event{}
					}
					return writeIndentedJSON(h.env.stdout, evs)
				}
				return writeEvents(h.env.stdout, evs, true)
			}
			return h.follow(ctx, c, args[0], evs, output, interval)
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	f.DurationVar(&interval, "interval", time.Second, "how often --follow polls")
	return cmd
}

// follow prints evs, then polls for newer events until ctx ends. The server going away
// for a while (a restart) is reported once and waited out; a host that disappears ends it.
func (h *hostCLI) follow(ctx context.Context, c *admin.Client, id string, evs []admin.Event, output string, interval time.Duration) error {
	var last uint64
	header := true
	emit := func(evs []admin.Event) error {
		if len(evs) == 0 {
			return nil
		}
		last = evs[len(evs)-1].Seq
		if output == "json" {
			enc := json.NewEncoder(h.env.stdout)
			for _, e := range evs {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		}
		err := writeEvents(h.env.stdout, evs, header)
		header = false
		return err
	}
	if output == "table" {
		// The header goes out even before the first event, so a quiet host shows it is followed.
		if err := writeEvents(h.env.stdout, nil, true); err != nil {
			return err
		}
		header = false
	}
	if err := emit(evs); err != nil {
		return err
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		evs, err := c.Events(ctx, id, last)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ae *admin.APIError
			if errors.As(err, &ae) {
				return err
			}
			if !warned {
				fmt.Fprintf(h.env.stderr, "rackboot: %v; retrying every %s\n", h.explain(err), interval)
				warned = true
			}
			continue
		}
		if warned {
			fmt.Fprintln(h.env.stderr, "rackboot: reconnected")
			warned = false
		}
		if err := emit(evs); err != nil {
			return err
		}
	}
}

// writeEvents prints events in fixed-width columns, so batches printed by --follow line up.
func writeEvents(w io.Writer, evs []admin.Event, header bool) error {
	var b strings.Builder
	if header {
		fmt.Fprintf(&b, "%-6s %-20s %-16s %s\n", "SEQ", "TIME", "TYPE", "MESSAGE")
	}
	for _, e := range evs {
		line := fmt.Sprintf("%-6d %-20s %-16s %s", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Type, e.Message)
		if f := formatFields(e.Fields); f != "" {
			line += "  " + f
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
