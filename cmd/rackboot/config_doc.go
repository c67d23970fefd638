package main

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// The defaults file and the configuration reference are both printed from serveConfig:
// its yaml tags, its doc tags (one line per setting, in the operator's words) and
// defaultServeConfig. docs/config.md is `rackboot config reference`, kept fresh by
// TestConfigReferenceFresh.

func newConfigCmd(env *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print serve's default configuration or its reference",
		Long: `config prints what 'rackboot serve' reads: every setting at its default as a commented
YAML file (defaults), or the reference of every setting with its environment variable
and flag (reference, as docs/config.md). 'rackboot serve --check-config' checks a file.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "defaults",
		Short: "Print a commented configuration file holding every default",
		Long: `defaults prints a YAML configuration file for 'rackboot serve' holding every setting
at its default, each with a comment saying what it does. Write it to
` + defaultConfigFile + `, set interface (and address), and check it with
'rackboot serve --check-config'.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b, err := defaultsYAML()
			if err != nil {
				return err
			}
			_, err = env.stdout.Write(b)
			return err
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "reference",
		Short: "Print the configuration reference (Markdown, as docs/config.md)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := env.stdout.Write(configReference())
			return err
		},
	})
	return cmd
}

const defaultsHeader = `rackboot serve configuration: every setting at its default.

Layers, each overriding the one before: these defaults, this file (--config, else
/etc/rackboot/config.yaml when it exists), RACKBOOT_* environment variables (dhcp.range
is RACKBOOT_DHCP_RANGE; lists comma-separated), flags. The reference with every
variable and flag is docs/config.md ('rackboot config reference').

Set interface (and address, if it is not the interface's first IPv4) before starting;
dhcp.mode server makes rackboot the DHCP server of that network. Check a change with
'rackboot serve --check-config'.`

// defaultsYAML is the commented defaults file.
func defaultsYAML() ([]byte, error) {
	cfg := defaultServeConfig()
	flags := map[string]string{}
	for _, b := range serveFlagBindings() {
		flags[b.path] = b.flag
	}
	root := defaultsNode("", reflect.ValueOf(cfg), flags)
	var buf bytes.Buffer
	for _, line := range strings.Split(defaultsHeader, "\n") {
		buf.WriteString(strings.TrimSpace("# "+line) + "\n")
	}
	buf.WriteString("\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	// The encoder indents the blank line before a nested section.
	lines := strings.Split(buf.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return []byte(strings.Join(lines, "\n")), nil
}

func defaultsNode(path string, v reflect.Value, flags map[string]string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, s := range settingsOf(v.Type()) {
		p := join(path, s.name)
		fv := v.FieldByIndex(s.index)
		key := &yaml.Node{Kind: yaml.ScalarNode, Value: s.name, HeadComment: wrapComment(settingDoc(s.doc, flags[p]))}
		var val *yaml.Node
		switch {
		case isSection(fv.Type()):
			val = defaultsNode(p, fv, flags)
			if len(n.Content) > 0 {
				key.HeadComment = "\n" + key.HeadComment // a blank line before a section
			}
		case isSectionList(fv.Type()):
			val = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		case fv.Kind() == reflect.Slice && !isText(fv.Type()):
			val = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for i := range fv.Len() {
				val.Content = append(val.Content, scalarNode(fv.Index(i)))
			}
		default:
			val = scalarNode(fv)
		}
		n.Content = append(n.Content, key, val)
	}
	return n
}

func settingDoc(doc, flag string) string {
	if flag != "" {
		doc += " (--" + flag + ")"
	}
	return strings.TrimSpace(doc)
}

// wrapComment folds doc into lines of at most 88 characters.
func wrapComment(doc string) string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(doc) {
		if line != "" && len(line)+1+len(w) > 88 {
			lines = append(lines, line)
			line = w
			continue
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// scalarText is a setting's value as it is written in the file.
func scalarText(v reflect.Value) string {
	if isDuration(v.Type()) {
		return formatDuration(time.Duration(v.Int()))
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok {
		b, err := m.MarshalText()
		if err != nil {
			return ""
		}
		return string(b)
	}
	return fmt.Sprint(v.Interface())
}

func scalarNode(v reflect.Value) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: scalarText(v), Tag: "!!str"}
	switch v.Kind() {
	case reflect.Bool, reflect.Float32, reflect.Float64:
		n.Tag = "" // plain: the encoder writes it as it reads back
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !isDuration(v.Type()) {
			n.Tag = ""
		}
	}
	return n
}

// configReference is docs/config.md: every setting with its default, variable, flag and
// meaning, section by section.
func configReference() []byte {
	var b bytes.Buffer
	b.WriteString(`# Configuration reference

<!-- Generated by 'rackboot config reference' from the Config types; do not edit.
     Regenerate: go test ./cmd/rackboot -run TestConfigReferenceFresh -update -->

` + "`rackboot serve`" + ` reads its settings in layers, each overriding the one before:

1. the defaults below (` + "`rackboot config defaults`" + ` prints them as a commented file);
2. the YAML file: ` + "`--config FILE`" + `, else ` + "`" + defaultConfigFile + "`" + ` when it exists;
3. environment variables: ` + "`RACKBOOT_`" + ` and the setting's path in upper snake case
   (` + "`dhcp.discovery.maxHosts`" + ` is ` + "`RACKBOOT_DHCP_DISCOVERY_MAX_HOSTS`" + `); lists are
   comma-separated; an empty variable is not set;
4. flags, where a setting has one.

Lists of sections (` + "`dhcp.subnets`, `dhcp.routes`" + `) are set in the file only. Durations are
written as ` + "`90s`, `15m`, `1h30m`" + ` (a bare number is seconds).

` + "`rackboot serve --check-config`" + ` checks the file, the environment and the flags together
and lists every problem with the file line, variable or flag that set it, then exits (0
when valid, 1 otherwise).

`)
	flags := map[string]string{}
	for _, fb := range serveFlagBindings() {
		flags[fb.path] = "--" + fb.flag
	}
	cfg := reflect.ValueOf(defaultServeConfig())
	var top []referenceRow
	for _, s := range settingsOf(cfg.Type()) {
		fv := cfg.FieldByIndex(s.index)
		if !isSection(fv.Type()) {
			top = append(top, referenceRows(s.name, s.doc, fv, flags, true)...)
		}
	}
	writeReferenceTable(&b, "Top level", "", top)
	for _, s := range settingsOf(cfg.Type()) {
		fv := cfg.FieldByIndex(s.index)
		if isSection(fv.Type()) {
			writeReferenceTable(&b, "`"+s.name+"`", s.doc, referenceRows(s.name, s.doc, fv, flags, true))
		}
	}
	return b.Bytes()
}

type referenceRow struct{ path, def, env, flag, doc string }

func referenceRows(path, doc string, v reflect.Value, flags map[string]string, env bool) []referenceRow {
	t := v.Type()
	switch {
	case isSection(t):
		var out []referenceRow
		for _, s := range settingsOf(t) {
			out = append(out, referenceRows(join(path, s.name), s.doc, v.FieldByIndex(s.index), flags, env)...)
		}
		return out
	case isSectionList(t):
		out := []referenceRow{{path: path, def: "`[]`", env: "—", flag: "—", doc: doc}}
		return append(out, referenceRows(path+"[]", "", reflect.New(t.Elem()).Elem(), flags, false)...)
	}
	r := referenceRow{path: path, doc: doc, env: "—", flag: "—", def: "—"}
	if env {
		r.env = "`" + envName(path) + "`"
	}
	if f, ok := flags[path]; ok {
		r.flag = "`" + f + "`"
	}
	var def string
	if t.Kind() == reflect.Slice && !isText(t) {
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = scalarText(v.Index(i))
		}
		def = strings.Join(parts, ", ")
	} else {
		def = scalarText(v)
	}
	// An element of a list has no default of its own (a zero is the section's default).
	if def != "" && (env || !v.IsZero()) {
		r.def = "`" + def + "`"
	}
	return []referenceRow{r}
}

func writeReferenceTable(b *bytes.Buffer, title, doc string, rows []referenceRow) {
	fmt.Fprintf(b, "## %s\n\n", title)
	if doc != "" {
		fmt.Fprintf(b, "%s\n\n", doc)
	}
	b.WriteString("| setting | default | environment | flag | meaning |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| `%s` | %s | %s | %s | %s |\n", r.path, r.def, r.env, r.flag, strings.ReplaceAll(r.doc, "|", `\|`))
	}
	b.WriteString("\n")
}
