package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
)

// eventResource is how a host's timeline prints. Its table has fixed widths, so the
// rows --follow prints later line up with the first ones.
var eventResource = resource[admin.Event]{
	kind: "event",
	name: func(e admin.Event) string { return strconv.FormatUint(e.Seq, 10) },
	columns: []column[admin.Event]{
		{header: "SEQ", width: 6, value: func(e admin.Event) string { return strconv.FormatUint(e.Seq, 10) }},
		{header: "TIME", width: 20, value: func(e admin.Event) string { return e.Time.UTC().Format(time.RFC3339) }},
		{header: "TYPE", width: 16, value: func(e admin.Event) string { return e.Type }},
		{header: "MESSAGE", value: func(e admin.Event) string {
			if f := formatFields(e.Fields); f != "" {
				return e.Message + "  " + f
			}
			return e.Message
		}},
	},
}

func (h *hostCLI) eventsCmd() *cobra.Command {
	var (
		p        printFlags
		follow   bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "events ID [-o table|json|yaml|name|jsonpath=T] [--no-headers] [--follow]",
		Short: "Show a host's event timeline",
		Long: `events prints the host's timeline, oldest first. --follow keeps polling for new
events until interrupted; it then prints JSON one object per line, YAML one document
per event, a JSONPath template once per event.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if _, _, err := p.format(); err != nil {
				return err
			}
			if interval <= 0 {
				return usageErrorf("--interval %s: give a positive duration, e.g. 1s", interval)
			}
			evs, err := c.Events(ctx, args[0], 0)
			if err != nil {
				return err
			}
			if !follow {
				return printList(h.env.stdout, &p, eventResource, evs)
			}
			return h.follow(ctx, c, args[0], evs, &p, interval)
		}),
	}
	f := cmd.Flags()
	p.register(cmd, "table", listFormats)
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	f.DurationVar(&interval, "interval", time.Second, "how often --follow polls")
	return cmd
}

// follow prints evs, then polls for newer events until ctx ends. The server going away
// for a while (a restart) is reported once and waited out; a host that disappears ends it.
func (h *hostCLI) follow(ctx context.Context, c *admin.Client, id string, evs []admin.Event, p *printFlags, interval time.Duration) error {
	out, err := newStreamPrinter(h.env.stdout, p, eventResource)
	if err != nil {
		return err
	}
	var last uint64
	emit := func(evs []admin.Event) error {
		if len(evs) == 0 {
			return nil
		}
		last = evs[len(evs)-1].Seq
		return out.print(evs)
	}
	// The header goes out even before the first event, so a quiet host shows it is followed.
	if err := out.start(); err != nil {
		return err
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
