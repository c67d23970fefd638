package admin

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"

	"github.com/rackboot/rackboot/internal/inventory"
)

// Host files, as read by `rackboot host import FILE`:
//
// YAML (.yaml, .yml, .json, or content that looks like YAML): a list of HostSpecs, or a
// map with the single key "hosts" holding that list. Field names are HostSpec's JSON
// names; unknown fields are errors. Quote MACs written as bare hex and label values such
// as "yes" or "1", which YAML would otherwise read as numbers or booleans.
//
//	hosts:
//	  - id: web1
//	    macs: ["52:54:00:00:00:01"]
//	    ip: 192.168.50.11
//	    hostname: web1.rack1
//	    labels: {role: web, rack: r1}
//	    bmc: {url: "ipmi://admin@192.168.60.11:623", password: secret}
//	    boot: {kernel: debian/vmlinuz, initrds: [debian/initrd.img], cmdline: console=ttyS0}
//
// CSV (.csv, or content whose first line has commas): a header row naming the columns, in
// any order, then one host per row. Columns: mac (required; several MACs separated by
// ';'), id, ip, hostname, labels ("k=v;k=v"), arch, firmware, bmc_url, bmc_password,
// boot_kernel, boot_initrds (';'-separated), boot_cmdline. Empty cells are unset. Lines
// starting with '#' are comments.
//
//	mac,ip,hostname,labels
//	52:54:00:00:00:01,192.168.50.11,web1,role=web;rack=r1
//
// Errors name the line of the offending host (the row's line for CSV).

// MaxHostFileBytes bounds a host file: the same as one import request.
const MaxHostFileBytes = MaxImportBodyBytes

// csvColumns lists the CSV columns in documentation order.
func csvColumns() []string {
	return []string{"mac", "id", "ip", "hostname", "labels", "arch", "firmware", "bmc_url", "bmc_password", "boot_kernel", "boot_initrds", "boot_cmdline"}
}

// ParseHostFile reads a host file (YAML or CSV, chosen by name's extension, else by
// content) and validates every host in it, alone and against the others, so a bad file
// is reported with its line before anything is sent. lines[i] is the line where
// specs[i] starts, to translate the server's "hosts[i]" back into the file.
func ParseHostFile(name string, data []byte) (specs []HostSpec, lines []int, err error) {
	if len(data) > MaxHostFileBytes {
		return nil, nil, fmt.Errorf("%s is %d bytes, more than the %d one import accepts: split it", name, len(data), MaxHostFileBytes)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // spreadsheet exports start with a BOM
	if detectFormat(name, data) == "csv" {
		specs, lines, err = parseCSV(data)
	} else {
		specs, lines, err = parseYAML(data)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(specs) == 0 {
		return nil, nil, fmt.Errorf("%s: no hosts in the file", name)
	}
	if len(specs) > MaxImportHosts {
		return nil, nil, fmt.Errorf("%s: %d hosts is more than the %d one import accepts: split the file", name, len(specs), MaxImportHosts)
	}
	if _, err := ValidateBatch(specs, ServerRules{}, func(i int) string { return fmt.Sprintf("line %d", lines[i]) }); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return specs, lines, nil
}

func detectFormat(name string, data []byte) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return "csv"
	case ".yaml", ".yml", ".json":
		return "yaml"
	}
	for _, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "" || strings.HasPrefix(t, "#"):
			continue
		case strings.HasPrefix(t, "-") || strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{") ||
			strings.HasSuffix(t, ":") || strings.Contains(t, ": "):
			return "yaml"
		case strings.Contains(t, ","):
			return "csv"
		}
		return "yaml"
	}
	return "yaml"
}

// maxYAMLNodes bounds alias expansion ("billion laughs").
const maxYAMLNodes = 1 << 20

// parseYAML locates each host's node with yaml.v3 (for its line), then decodes it with
// sigs.k8s.io/yaml strictly through HostSpec's JSON field names.
func parseYAML(data []byte) ([]HostSpec, []int, error) {
	// sigs.k8s.io/yaml (yaml.v2) first: its syntax errors carry the right line numbers
	// and it bounds alias expansion. (Its strict mode would also reject duplicate keys,
	// but it mistakes merge-key overrides for duplicates, so checkDuplicateKeys does that.)
	if _, err := yaml.YAMLToJSON(data); err != nil {
		msg := strings.NewReplacer("yaml: ", "", "unmarshal errors:\n", "", "\n", "; ").Replace(err.Error())
		return nil, nil, fmt.Errorf("not valid YAML: %s", strings.TrimSpace(msg))
	}
	dec := yaml3.NewDecoder(bytes.NewReader(data))
	var doc yaml3.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("not valid YAML: %v", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml3.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return nil, nil, fmt.Errorf("not valid YAML: %v", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return nil, nil, fmt.Errorf("line %d: a second YAML document: put all hosts in one list", line)
	}
	if len(doc.Content) == 0 {
		return nil, nil, nil
	}
	if err := checkDuplicateKeys(doc.Content[0]); err != nil {
		return nil, nil, err
	}
	budget := maxYAMLNodes
	root, err := expandAliases(doc.Content[0], &budget)
	if err != nil {
		return nil, nil, err
	}
	const shape = "a host file is a list of hosts, or a map with the single key 'hosts' holding that list"
	var list *yaml3.Node
	switch root.Kind {
	case yaml3.SequenceNode:
		list = root
	case yaml3.MappingNode:
		for i := 0; i+1 < len(root.Content); i += 2 {
			k, v := root.Content[i], root.Content[i+1]
			if k.Value != "hosts" {
				return nil, nil, fmt.Errorf("line %d: unknown key %q: %s", k.Line, k.Value, shape)
			}
			list = v
		}
		if list == nil || (list.Kind == yaml3.ScalarNode && list.Tag == "!!null") {
			return nil, nil, nil
		}
		if list.Kind != yaml3.SequenceNode {
			return nil, nil, fmt.Errorf("line %d: 'hosts' is not a list: %s", list.Line, shape)
		}
	case yaml3.ScalarNode:
		if root.Tag == "!!null" {
			return nil, nil, nil
		}
		fallthrough
	default:
		return nil, nil, fmt.Errorf("line %d: %s", root.Line, shape)
	}
	specs := make([]HostSpec, len(list.Content))
	lines := make([]int, len(list.Content))
	for i, item := range list.Content {
		lines[i] = item.Line
		if item.Kind != yaml3.MappingNode {
			return nil, nil, fmt.Errorf("line %d: host %d is not a map of fields (id, macs, ip, ...)", item.Line, i+1)
		}
		buf, err := yaml3.Marshal(item)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %v", item.Line, err)
		}
		if err := yaml.Unmarshal(buf, &specs[i], yaml.DisallowUnknownFields); err != nil {
			return nil, nil, yamlFieldError(item, err)
		}
	}
	return specs, lines, nil
}

// checkDuplicateKeys rejects a map that names a key twice (the second would silently win).
func checkDuplicateKeys(n *yaml3.Node) error {
	if n.Kind == yaml3.MappingNode {
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml3.ScalarNode || k.Tag == "!!merge" {
				continue
			}
			if seen[k.Value] {
				return fmt.Errorf("line %d: key %q is given twice in the same map", k.Line, k.Value)
			}
			seen[k.Value] = true
		}
	}
	if n.Kind == yaml3.AliasNode {
		return nil // its anchor is checked where it is defined
	}
	for _, c := range n.Content {
		if err := checkDuplicateKeys(c); err != nil {
			return err
		}
	}
	return nil
}

// expandAliases returns a copy of n with aliases replaced by what they point at, so each
// host can be decoded on its own, and with anchors dropped. Every scalar but null is
// turned into a quoted string: all of a host's fields are strings, and this way YAML 1.1
// never turns "yes" into true, 0123 into octal or bare-hex MACs into numbers on the way.
func expandAliases(n *yaml3.Node, budget *int) (*yaml3.Node, error) {
	*budget--
	if *budget < 0 {
		return nil, errors.New("the YAML expands to too many nodes through aliases")
	}
	if n.Kind == yaml3.AliasNode {
		if n.Alias == nil {
			return nil, fmt.Errorf("line %d: alias to an unknown anchor", n.Line)
		}
		c, err := expandAliases(n.Alias, budget)
		if err != nil {
			return nil, err
		}
		c.Line, c.Column = n.Line, n.Column
		return c, nil
	}
	c := *n
	c.Anchor = ""
	if c.Kind == yaml3.ScalarNode && c.Tag != "!!null" && c.Tag != "!!merge" {
		c.Tag, c.Style = "!!str", yaml3.DoubleQuotedStyle
	}
	c.Content = make([]*yaml3.Node, len(n.Content))
	for i, child := range n.Content {
		e, err := expandAliases(child, budget)
		if err != nil {
			return nil, err
		}
		c.Content[i] = e
	}
	return &c, nil
}

// yamlFieldError rewrites a sigs.k8s.io/yaml decoding error for one host: the line of the
// field at fault where it can be found, else the host's line, and a plain message.
func yamlFieldError(item *yaml3.Node, err error) error {
	line := item.Line
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if l := fieldLine(item, typ.Field); l > 0 {
			line = l
		}
		field := typ.Field
		if field == "" {
			field = "(host)"
		}
		return fmt.Errorf("line %d: field %s: got a YAML %s, want %s", line, field, yamlKind(typ.Value), jsonKind(typ.Type.String()))
	}
	msg := err.Error()
	for _, p := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: ", "while decoding JSON: ", "yaml: ", "json: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
		name := strings.Trim(f, `"`)
		if l := fieldLine(item, name); l > 0 {
			line = l
		}
		return fmt.Errorf("line %d: unknown field %q: known fields are id, macs, hostname, ip, labels, arch, firmware, bmc (url, password), boot (kernel, initrds, cmdline)", line, name)
	}
	return fmt.Errorf("line %d: %s", line, msg)
}

func yamlKind(jsonValue string) string {
	switch jsonValue {
	case "array":
		return "list"
	case "object":
		return "map"
	}
	return jsonValue
}

// fieldLine finds the line of a dotted field path ("boot.initrds") inside a mapping node,
// or of a key anywhere in it for a bare name; 0 if it is not there.
func fieldLine(n *yaml3.Node, path string) int {
	if path == "" {
		return 0
	}
	first, rest, nested := strings.Cut(path, ".")
	if n.Kind != yaml3.MappingNode {
		return 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !strings.EqualFold(k.Value, first) {
			continue
		}
		if !nested {
			return k.Line
		}
		if l := fieldLine(v, rest); l > 0 {
			return l
		}
		return k.Line
	}
	if !nested {
		// An unknown field may sit in a nested map (bmc, boot): look one level down.
		for i := 1; i < len(n.Content); i += 2 {
			if l := fieldLine(n.Content[i], path); l > 0 {
				return l
			}
		}
	}
	return 0
}

func parseCSV(data []byte) ([]HostSpec, []int, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	r.TrimLeadingSpace = true
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, csvError(err)
	}
	headerLine, _ := r.FieldPos(0)
	col := map[string]int{}
	for i, h := range header {
		name := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(h)), "-", "_")
		if name == "macs" {
			name = "mac"
		}
		known := false
		for _, c := range csvColumns() {
			known = known || c == name
		}
		if !known {
			return nil, nil, fmt.Errorf("line %d: unknown CSV column %q: the columns are %s", headerLine, h, strings.Join(csvColumns(), ", "))
		}
		if _, dup := col[name]; dup {
			return nil, nil, fmt.Errorf("line %d: CSV column %q appears twice", headerLine, h)
		}
		col[name] = i
	}
	if _, ok := col["mac"]; !ok {
		return nil, nil, fmt.Errorf("line %d: the CSV header has no mac column: the first line must name the columns, e.g. mac,ip,hostname,labels", headerLine)
	}
	var (
		specs []HostSpec
		lines []int
	)
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, csvError(err)
		}
		line, _ := r.FieldPos(0)
		cell := func(name string) string {
			if i, ok := col[name]; ok {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		if strings.TrimSpace(strings.Join(rec, "")) == "" {
			continue
		}
		s := HostSpec{
			ID:       cell("id"),
			MACs:     splitList(cell("mac")),
			IP:       cell("ip"),
			Hostname: cell("hostname"),
			Arch:     cell("arch"),
			Firmware: inventory.Firmware(cell("firmware")),
		}
		for _, kv := range splitList(cell("labels")) {
			k, v, err := inventory.ParseLabel(kv)
			if err != nil {
				return nil, nil, fmt.Errorf("line %d: %w (write labels as k=v;k=v)", line, err)
			}
			if s.Labels == nil {
				s.Labels = map[string]string{}
			}
			s.Labels[k] = v
		}
		if u, pw := cell("bmc_url"), cell("bmc_password"); u != "" || pw != "" {
			s.BMC = &inventory.BMC{URL: u, Password: pw}
		}
		if k, i, c := cell("boot_kernel"), cell("boot_initrds"), cell("boot_cmdline"); k != "" || i != "" || c != "" {
			s.Boot = &inventory.BootProfile{Kernel: k, Initrds: splitList(i), Cmdline: c}
		}
		specs = append(specs, s)
		lines = append(lines, line)
	}
	return specs, lines, nil
}

func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("line %d, column %d: %v", pe.Line, pe.Column, pe.Err)
	}
	return err
}

// splitList splits a ';'-separated cell, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ";") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
