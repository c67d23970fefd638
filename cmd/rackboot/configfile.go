package main

import (
	"encoding"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Settings come in layers, each overriding the one before:
//
//	defaults  <  the YAML file  <  RACKBOOT_* environment  <  flags
//
// Every layer writes the same fields: the YAML paths of serveConfig, whose types are the
// packages' own (dhcp.Config, tftp.Config, ...). A setting's environment variable is its
// path in upper snake case after RACKBOOT_ (dhcp.discovery.maxHosts is
// RACKBOOT_DHCP_DISCOVERY_MAX_HOSTS; lists are comma-separated); lists of sections
// (dhcp.subnets) are set in the file only. Only fields with a yaml tag are settings: the
// rest of a package's Config is wiring that serve fills in.
//
// The file is decoded from yaml.v3's node tree rather than by Unmarshal, so that every
// error names the file and line, the setting's YAML path and what to write instead, in
// the operator's words rather than Go's.

// settingLayers records where each setting's value came from, so that an error found
// later (by a package's Validate) still points at the line, variable or flag to fix.
type settingLayers struct {
	// source maps a YAML path to "FILE:LINE", "RACKBOOT_X" or "--flag".
	source map[string]string
	errs   []string
	// paths are every setting's path, to suggest one written in the wrong section.
	paths []string
	// unreadable: the file is not YAML, so nothing but that is worth saying.
	unreadable bool
}

func newSettingLayers() *settingLayers { return &settingLayers{source: map[string]string{}} }

func (l *settingLayers) fail(src, path, format string, args ...any) {
	msg := path + ": " + fmt.Sprintf(format, args...)
	if src != "" {
		msg = src + ": " + msg
	}
	l.errs = append(l.errs, msg)
}

// locate prefixes a validation error ("dhcp.range: ...") with where the setting was
// written, the nearest enclosing path that has a source.
func (l *settingLayers) locate(msg string) string {
	path, _, ok := strings.Cut(msg, ": ")
	if !ok || strings.ContainsAny(path, " \"'") {
		return msg
	}
	for p := path; p != ""; p = parentPath(p) {
		if src, ok := l.source[p]; ok {
			return src + ": " + msg
		}
	}
	return msg
}

func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i > 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i > 0 {
		return p[:i]
	}
	return ""
}

// setting is one field of a section: its YAML name and where it is in the struct.
type setting struct {
	name  string
	index []int
	doc   string
}

// settingsOf lists the settings of struct type t: its yaml-tagged fields, with inline
// fields' settings in their place.
func settingsOf(t reflect.Type) []setting {
	var out []setting
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("yaml")
		if !ok || tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			for _, s := range settingsOf(f.Type) {
				s.index = append([]int{i}, s.index...)
				out = append(out, s)
			}
			continue
		}
		out = append(out, setting{name: name, index: []int{i}, doc: f.Tag.Get("doc")})
	}
	return out
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// isText says whether t reads itself from text (netip.Addr, netip.Prefix, dhcp.Range):
// a scalar, though it may be a struct or a slice.
func isText(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
}

func isDuration(t reflect.Type) bool { return t == reflect.TypeFor[time.Duration]() }

// isSection: a struct of settings, written as key: value lines.
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !isText(t)
}

// isSectionList: a list of sections (dhcp.subnets), set in the file only.
func isSectionList(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && !isText(t) && isSection(t.Elem())
}

// decodeFile decodes the YAML document in b onto cfg (a pointer to serveConfig).
func (l *settingLayers) decodeFile(name string, b []byte, cfg any) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		l.unreadable = true
		// yaml.v3 says "yaml: line N: ..." for syntax errors.
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			if n, tail, ok := strings.Cut(rest, ": "); ok {
				l.errs = append(l.errs, fmt.Sprintf("%s:%s: not YAML: %s", name, n, tail))
				return
			}
		}
		l.errs = append(l.errs, fmt.Sprintf("%s: not YAML: %s", name, msg))
		return
	}
	if len(doc.Content) == 0 {
		return // an empty file: the defaults
	}
	if top := doc.Content[0]; top.Kind != yaml.MappingNode {
		l.unreadable = true
		l.errs = append(l.errs, fmt.Sprintf("%s:%d: the file must hold settings as key: value lines (see 'rackboot config defaults'), got %s", name, top.Line, describeNode(top)))
		return
	}
	root := reflect.ValueOf(cfg).Elem()
	l.paths = allPaths("", root.Type())
	l.decodeNode(name, "", doc.Content[0], root)
}

func (l *settingLayers) decodeNode(file, path string, n *yaml.Node, v reflect.Value) {
	src := fmt.Sprintf("%s:%d", file, n.Line)
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // "key:" with nothing after it keeps what is there
	}
	if path != "" {
		l.source[path] = src
	}
	t := v.Type()
	switch {
	case isSection(t):
		if n.Kind != yaml.MappingNode {
			l.fail(src, path, "want the settings of %s as key: value lines under it, got %s", path, describeNode(n))
			return
		}
		fields := settingsOf(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			kpath := join(path, k.Value)
			ksrc := fmt.Sprintf("%s:%d", file, k.Line)
			if first, dup := seen[k.Value]; dup {
				l.fail(ksrc, kpath, "set twice (first at line %d): keep one", first)
				continue
			}
			seen[k.Value] = k.Line
			j := slices.IndexFunc(fields, func(s setting) bool { return s.name == k.Value })
			if j < 0 {
				l.fail(ksrc, kpath, "%s", unknownSetting(path, k.Value, fields, l.paths))
				continue
			}
			l.decodeNode(file, kpath, val, v.FieldByIndex(fields[j].index))
		}
	case t.Kind() == reflect.Slice && !isText(t): // a list of values or of sections
		var items []*yaml.Node
		switch n.Kind {
		case yaml.SequenceNode:
			items = n.Content
		case yaml.ScalarNode:
			if isSectionList(t) {
				l.fail(src, path, "want a list of sections (lines starting with \"- \"), got %s", describeNode(n))
				return
			}
			// One value, or several separated by commas, as in the environment.
			for _, part := range splitList(n.Value) {
				items = append(items, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: part, Line: n.Line})
			}
		default:
			l.fail(src, path, "want a list such as [a, b], got %s", describeNode(n))
			return
		}
		if len(items) == 0 {
			v.Set(reflect.Zero(t)) // [] is no list, as leaving it out is
			return
		}
		out := reflect.MakeSlice(t, len(items), len(items))
		for i, item := range items {
			l.decodeNode(file, fmt.Sprintf("%s[%d]", path, i), item, out.Index(i))
		}
		v.Set(out)
	default:
		if n.Kind != yaml.ScalarNode {
			l.fail(src, path, "want a single value, got %s", describeNode(n))
			return
		}
		if err := setScalar(v, n.Value); err != nil {
			l.fail(src, path, "%v", err)
		}
	}
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section (key: value lines)"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

// movedSettings are settings that now live elsewhere, to say so when an older file
// uses them.
func movedSettings() map[string]string {
	return map[string]string{"dhcp.discovery.acceptSerials": "provision.acceptSerials"}
}

// allPaths lists the path of every setting and section of t, lists of sections as
// path[].
func allPaths(path string, t reflect.Type) []string {
	var out []string
	for _, s := range settingsOf(t) {
		p := join(path, s.name)
		out = append(out, p)
		switch ft := t.FieldByIndex(s.index).Type; {
		case isSection(ft):
			out = append(out, allPaths(p, ft)...)
		case isSectionList(ft):
			out = append(out, allPaths(p+"[]", ft.Elem())...)
		}
	}
	return out
}

// unknownSetting says what name was meant: the nearest setting of the same section, a
// setting of that name in another section, or
// the list of them.
func unknownSetting(section, key string, fields []setting, paths []string) string {
	if to, ok := movedSettings()[join(section, key)]; ok {
		return "unknown setting; it moved: write it as " + to
	}
	best, bestD := "", 1<<30
	for _, f := range fields {
		if d := editDistance(strings.ToLower(key), strings.ToLower(f.name)); d < bestD {
			best, bestD = f.name, d
		}
	}
	if best != "" && bestD <= max(2, len(key)/3) {
		return "unknown setting; did you mean " + join(section, best) + "?"
	}
	var elsewhere []string
	for _, p := range paths {
		if strings.EqualFold(p[strings.LastIndexAny(p, ".]")+1:], key) {
			elsewhere = append(elsewhere, p)
		}
	}
	if len(elsewhere) > 0 && len(elsewhere) <= 3 {
		return "unknown setting here; did you mean " + strings.Join(elsewhere, " or ") + "?"
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	where := "here"
	if section != "" {
		where = "in " + section
	}
	return fmt.Sprintf("unknown setting: the settings %s are %s", where, strings.Join(names, ", "))
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// setScalar parses s into v; its errors say what to write, in the operator's words.
func setScalar(v reflect.Value, s string) error {
	t := v.Type()
	if isDuration(t) {
		d, err := parseDuration(s)
		if err != nil {
			return fmt.Errorf("%w: write one such as %q (a bare number is seconds)", err, example(v, "90s"))
		}
		v.SetInt(int64(d))
		return nil
	}
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		if err := u.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
			switch t {
			case reflect.TypeFor[netip.Addr]():
				return fmt.Errorf("%q is not an IP address: write one such as 10.0.0.1", s)
			case reflect.TypeFor[netip.Prefix]():
				return fmt.Errorf("%q is not a network: write one in CIDR form such as 10.0.0.0/24", s)
			}
			return err
		}
		return nil
	}
	switch t.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		// YAML 1.1's words too: files written for other tools use them.
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true", "yes", "on":
			v.SetBool(true)
		case "false", "no", "off":
			v.SetBool(false)
		default:
			return fmt.Errorf("%q is not true or false", s)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || v.OverflowInt(n) {
			return fmt.Errorf("%q is not a whole number: write one such as %s", s, example(v, "8"))
		}
		v.SetInt(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number: write one such as %s", s, example(v, "2.5"))
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("cannot be set from %q", s) // a field type this decoder does not know: a bug
	}
	return nil
}

// parseDuration reads "90s", "15m", "1h30m", or a bare number of seconds.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("%q is not a duration", s)
}

// example is v's value (the default, or what an earlier layer set) to show in an error
// as the form to write, or fallback when it is zero.
func example(v reflect.Value, fallback string) string {
	if v.IsZero() {
		return fallback
	}
	if isDuration(v.Type()) {
		return formatDuration(time.Duration(v.Int()))
	}
	return fmt.Sprint(v.Interface())
}

// formatDuration writes d as an operator would: 1h, 30s, 1m30s, 250ms.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// leaf is one setting the environment and flags can reach: a scalar or a list of
// scalars, with its YAML path.
type leaf struct {
	path  string
	value reflect.Value
}

// leaves lists the scalar settings of v (a struct), depth first, in declaration order.
// Lists of sections (dhcp.subnets) are not leaves: only the file sets them.
func leaves(path string, v reflect.Value) []leaf {
	t := v.Type()
	switch {
	case isSection(t):
		var out []leaf
		for _, s := range settingsOf(t) {
			out = append(out, leaves(join(path, s.name), v.FieldByIndex(s.index))...)
		}
		return out
	case isSectionList(t):
		return nil
	}
	return []leaf{{path: path, value: v}}
}

// envName is a setting's environment variable: dhcp.discovery.maxHosts is
// RACKBOOT_DHCP_DISCOVERY_MAX_HOSTS.
func envName(path string) string {
	var b strings.Builder
	b.WriteString("RACKBOOT_")
	rs := []rune(path)
	for i, r := range rs {
		if r == '.' {
			b.WriteByte('_')
			continue
		}
		// A word starts at an upper-case letter after a lower-case one or a digit
		// (maxHosts), or at the last capital of an acronym (redfishCAFile: CA_FILE).
		if unicode.IsUpper(r) && i > 0 && rs[i-1] != '.' {
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if !unicode.IsUpper(prev) || nextLower {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// setFromString sets a leaf from one string (an environment variable or a flag): a
// scalar parsed as the file's would be, a list split at commas.
func setFromString(v reflect.Value, s string) []error {
	if v.Kind() == reflect.Slice && !isText(v.Type()) {
		parts := splitList(s)
		out := reflect.MakeSlice(v.Type(), len(parts), len(parts))
		var errs []error
		for i, p := range parts {
			if err := setScalar(out.Index(i), p); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 {
			v.Set(out)
		}
		return errs
	}
	if err := setScalar(v, s); err != nil {
		return []error{err}
	}
	return nil
}

// applyEnv sets every setting whose RACKBOOT_* variable is set (and not empty).
func (l *settingLayers) applyEnv(cfg any, getenv func(string) string) {
	for _, lf := range leaves("", reflect.ValueOf(cfg).Elem()) {
		name := envName(lf.path)
		s := getenv(name)
		if s == "" {
			continue
		}
		l.source[lf.path] = name
		for _, err := range setFromString(lf.value, s) {
			l.fail(name, lf.path, "%v", err)
		}
	}
}

// checkEnvNames reports RACKBOOT_* variables that are one or two letters from a
// setting's variable: a misspelt setting would otherwise be ignored without a word.
// Other RACKBOOT_* variables (the CLI's RACKBOOT_SERVER, the lab's) are left alone.
func (l *settingLayers) checkEnvNames(cfg any, environ []string) {
	known := map[string]bool{}
	for _, lf := range leaves("", reflect.ValueOf(cfg).Elem()) {
		known[envName(lf.path)] = true
	}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "RACKBOOT_") || known[name] {
			continue
		}
		best, bestD := "", 3
		for k := range known {
			if d := editDistance(name, k); d < bestD || (d == bestD && k < best) {
				best, bestD = k, d
			}
		}
		if best != "" {
			l.errs = append(l.errs, fmt.Sprintf("%s: unknown setting; did you mean %s?", name, best))
		}
	}
}

// flagBinding ties a flag of serve to the setting it overrides.
type flagBinding struct{ flag, path string }

// applyFlags sets the settings whose flags were given on the command line.
func (l *settingLayers) applyFlags(cfg any, fs *pflag.FlagSet, bindings []flagBinding) {
	byPath := map[string]reflect.Value{}
	for _, lf := range leaves("", reflect.ValueOf(cfg).Elem()) {
		byPath[lf.path] = lf.value
	}
	for _, b := range bindings {
		f := fs.Lookup(b.flag)
		if f == nil || !f.Changed {
			continue
		}
		v, ok := byPath[b.path]
		if !ok {
			l.errs = append(l.errs, "--"+b.flag+": bound to "+b.path+", which is not a setting (a bug: TestServeFlagBindings catches it)")
			continue
		}
		s := f.Value.String()
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			s = strings.Join(sv.GetSlice(), ",")
		}
		src := "--" + b.flag
		l.source[b.path] = src
		for _, err := range setFromString(v, s) {
			l.fail(src, b.path, "%v", err)
		}
	}
}

// configError is every problem with the configuration, one per line.
type configError struct{ problems []string }

func (e *configError) Error() string {
	n := len(e.problems)
	head := "invalid configuration (1 problem):"
	if n != 1 {
		head = fmt.Sprintf("invalid configuration (%d problems):", n)
	}
	return head + "\n  " + strings.Join(e.problems, "\n  ")
}

// sortProblems orders problems by where they were set: the file's lines in order, then
// the environment and the flags, then what no layer set.
func sortProblems(file string, problems []string) {
	rank := func(p string) int {
		if rest, ok := strings.CutPrefix(p, file+":"); ok && file != "" {
			if n, _, ok := strings.Cut(rest, ":"); ok {
				if line, err := strconv.Atoi(n); err == nil {
					return line
				}
			}
		}
		switch {
		case strings.HasPrefix(p, "RACKBOOT_"):
			return 1 << 20
		case strings.HasPrefix(p, "--"):
			return 1 << 21
		}
		return 1 << 22
	}
	slices.SortStableFunc(problems, func(a, b string) int { return rank(a) - rank(b) })
}

// problems lists the messages of err, a join of errors, each located.
func (l *settingLayers) problems(err error) []string {
	var out []string
	for _, e := range unjoin(err) {
		for _, line := range strings.Split(e.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				out = append(out, l.locate(line))
			}
		}
	}
	return out
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}
