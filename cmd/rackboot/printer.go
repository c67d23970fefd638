package main

// The printer layer: every command that prints resources (hosts, images, events, leases,
// BMC results) takes the same -o and --no-headers and prints through here, so the
// formats read like kubectl's everywhere:
//
//	table (default for lists)  columns for people
//	wide                       table plus the columns a wide terminal has room for
//	json, yaml                 the admin API's own response types (admin/view.go), as the API sends them
//	name                       KIND/NAME, one per line, for xargs
//	jsonpath=TEMPLATE          kubectl's JSONPath (k8s.io/client-go/util/jsonpath, the engine
//	                           kubectl itself uses); a list is {"items": [...]} to the template,
//	                           as in kubectl: -o jsonpath='{.items[*].id}'
//
// k8s.io/cli-runtime's printers were the other choice: they print runtime.Objects (a GVK,
// metav1.Table for columns), and wrapping the admin API's plain types in those would
// change their JSON. The parts worth sharing with kubectl, JSONPath and its template
// syntax, come from client-go, already a dependency.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/yaml"
)

// column is one column of a resource's table. Wide columns show only with -o wide.
type column[T any] struct {
	header string
	wide   bool
	// width pads the column to a fixed width instead of aligning the rows printed
	// together, so rows printed later (events --follow) line up with the first.
	width int
	value func(T) string
}

// resource says how to print one kind of thing.
type resource[T any] struct {
	kind    string // for -o name: KIND/NAME
	name    func(T) string
	columns []column[T]
}

// printFlags are -o and --no-headers.
type printFlags struct {
	output    string
	noHeaders bool
	formats   []string // what -o accepts for this command, table-like first
}

// listFormats are the formats of a command that prints resources; textFormats those of a
// command that prints the result of an action (text is its own sentence).
var (
	listFormats = []string{"table", "wide", "json", "yaml", "name", "jsonpath="}
	textFormats = []string{"text", "json", "yaml", "jsonpath="}
	// actionFormats are those of a command that changes a host and prints it.
	actionFormats = []string{"text", "json", "yaml", "name", "jsonpath="}
)

// register adds -o (default def) and, for table output, --no-headers.
func (p *printFlags) register(cmd *cobra.Command, def string, formats []string) {
	p.formats = formats
	f := cmd.Flags()
	f.StringVarP(&p.output, "output", "o", def, "output format: "+strings.Join(formats, "|")+"TEMPLATE")
	if slices.Contains(formats, "table") {
		f.BoolVar(&p.noHeaders, "no-headers", false, "print table rows without the header line")
	}
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return append([]cobra.Completion(nil), formats...), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	})
}

// format checks -o and returns the format and, for jsonpath, its parsed template.
func (p *printFlags) format() (string, *jsonpath.JSONPath, error) {
	o := p.output
	if tmpl, ok := strings.CutPrefix(o, "jsonpath="); ok && slices.Contains(p.formats, "jsonpath=") {
		if tmpl == "" {
			return "", nil, usageErrorf("-o jsonpath= needs a template, e.g. -o jsonpath='{.id}'")
		}
		// Missing keys print nothing, as kubectl's --allow-missing-template-keys default:
		// a host without an IP must not fail a template over all hosts.
		jp := jsonpath.New("output").AllowMissingKeys(true)
		if err := jp.Parse(relaxJSONPath(tmpl)); err != nil {
			return "", nil, usageErrorf("-o jsonpath=%s: %v", tmpl, err)
		}
		return "jsonpath", jp, nil
	}
	if o != "jsonpath=" && slices.Contains(p.formats, o) {
		return o, nil, nil
	}
	return "", nil, usageErrorf("-o %s: unknown output format: use one of %sTEMPLATE", o, strings.Join(p.formats, ", "))
}

// relaxJSONPath lets a template be written without braces (.id → {.id}), as kubectl does.
func relaxJSONPath(t string) string {
	if strings.Contains(t, "{") {
		return t
	}
	if !strings.HasPrefix(t, ".") {
		t = "." + t
	}
	return "{" + t + "}"
}

// printList prints items in the chosen format. A list is a JSON array for -o json and
// yaml (what the API returns) and {"items": [...]} to a JSONPath template.
func printList[T any](w io.Writer, p *printFlags, r resource[T], items []T) error {
	format, jp, err := p.format()
	if err != nil {
		return err
	}
	if items == nil {
		items = []T{}
	}
	switch format {
	case "json":
		return writeIndentedJSON(w, items)
	case "yaml":
		return writeYAML(w, items)
	case "jsonpath":
		return writeJSONPath(w, jp, map[string]any{"items": items})
	case "name":
		return writeNames(w, r, items)
	}
	return writeTable(w, r, items, format == "wide", !p.noHeaders)
}

// printOne prints one resource. text is the command's own sentence for -o text; table
// and wide print it as a one-row table, as kubectl get does for one name.
func printOne[T any](w io.Writer, p *printFlags, r resource[T], item T, text func() string) error {
	format, jp, err := p.format()
	if err != nil {
		return err
	}
	switch format {
	case "json":
		return writeIndentedJSON(w, item)
	case "yaml":
		return writeYAML(w, item)
	case "jsonpath":
		return writeJSONPath(w, jp, item)
	case "name":
		return writeNames(w, r, []T{item})
	case "text":
		_, err := io.WriteString(w, text())
		return err
	}
	return writeTable(w, r, []T{item}, format == "wide", !p.noHeaders)
}

// streamPrinter prints items as they arrive (events --follow): the header once, JSON one
// object per line, YAML one document each.
type streamPrinter[T any] struct {
	w          io.Writer
	r          resource[T]
	format     string
	jp         *jsonpath.JSONPath
	headers    bool
	headerDone bool
}

func newStreamPrinter[T any](w io.Writer, p *printFlags, r resource[T]) (*streamPrinter[T], error) {
	format, jp, err := p.format()
	if err != nil {
		return nil, err
	}
	return &streamPrinter[T]{w: w, r: r, format: format, jp: jp, headers: !p.noHeaders}, nil
}

// start prints the table header before any item, so a quiet stream shows it is running.
func (s *streamPrinter[T]) start() error {
	if (s.format == "table" || s.format == "wide") && s.headers && !s.headerDone {
		s.headerDone = true
		return writeTable(s.w, s.r, []T{}, s.format == "wide", true)
	}
	return nil
}

func (s *streamPrinter[T]) print(items []T) error {
	for _, it := range items {
		var err error
		switch s.format {
		case "json":
			err = json.NewEncoder(s.w).Encode(it)
		case "yaml":
			if _, err = io.WriteString(s.w, "---\n"); err == nil {
				err = writeYAML(s.w, it)
			}
		case "jsonpath":
			if err = writeJSONPath(s.w, s.jp, it); err == nil {
				_, err = io.WriteString(s.w, "\n")
			}
		case "name":
			err = writeNames(s.w, s.r, []T{it})
		default:
			if err = s.start(); err == nil {
				err = writeTable(s.w, s.r, []T{it}, s.format == "wide", false)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func writeNames[T any](w io.Writer, r resource[T], items []T) error {
	var b strings.Builder
	for _, it := range items {
		fmt.Fprintf(&b, "%s/%s\n", r.kind, r.name(it))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTable prints the rows. Columns with a width are padded to it; the others are
// aligned across the rows printed together, two spaces apart, as kubectl does.
func writeTable[T any](w io.Writer, r resource[T], items []T, wide, header bool) error {
	cols := make([]column[T], 0, len(r.columns))
	for _, c := range r.columns {
		if !c.wide || wide {
			cols = append(cols, c)
		}
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	row := func(cells []string) {
		var line strings.Builder
		for i, cell := range cells {
			last := i == len(cells)-1
			if cols[i].width > 0 && !last {
				fmt.Fprintf(&line, "%-*s ", cols[i].width, cell)
				continue
			}
			line.WriteString(cell)
			if !last {
				line.WriteByte('\t')
			}
		}
		fmt.Fprintln(tw, strings.TrimRight(line.String(), " "))
	}
	if header {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = c.header
		}
		row(cells)
	}
	for _, it := range items {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = cleanCell(c.value(it))
		}
		row(cells)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// cleanCell keeps one row on one line and never leaves a cell empty.
func cleanCell(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
	return dash(s)
}

func writeYAML(w io.Writer, v any) error {
	buf, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// writeJSONPath runs the template over v as its JSON reads (field names as in -o json).
func writeJSONPath(w io.Writer, jp *jsonpath.JSONPath, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.UseNumber()
	var data any
	if err := dec.Decode(&data); err != nil {
		return err
	}
	var out bytes.Buffer
	if err := jp.Execute(&out, data); err != nil {
		return fmt.Errorf("-o jsonpath: %w", err)
	}
	_, err = w.Write(out.Bytes())
	return err
}
