package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// ModuleIndex is what the agent knows of a kernel's modules, read from the text files
// depmod writes (and bootenv writes for the modules it packs): modules.alias,
// modules.dep and modules.softdep under lib/modules/VERSION.
type ModuleIndex struct {
	// Dir is lib/modules/VERSION; module paths are relative to it.
	Dir     string
	aliases []moduleAlias
	// deps maps a module name to its dependencies' names, in load order (a module
	// after everything it needs).
	deps  map[string][]string
	paths map[string]string
	// softPre maps a module to the names or aliases to load before it.
	softPre map[string][]string
}

type moduleAlias struct {
	pattern, module string
}

// ModuleName is a module's name from its file: base name without .ko (and a compression
// suffix), with - read as _ as the kernel does.
func ModuleName(file string) string {
	b := path.Base(file)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(b, ".ko"), "-", "_")
}

// LoadModuleIndex reads modules.alias, modules.dep and (if present) modules.softdep
// from dir.
func LoadModuleIndex(dir string) (*ModuleIndex, error) {
	ix := &ModuleIndex{Dir: dir, deps: map[string][]string{}, paths: map[string]string{}, softPre: map[string][]string{}}
	open := func(name string, required bool, parse func(io.Reader) error) error {
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) && !required {
			return nil
		}
		if err != nil {
			return fmt.Errorf("module index: %w (was the boot environment built by rackboot bootenv?)", err)
		}
		defer f.Close()
		if err := parse(f); err != nil {
			return fmt.Errorf("module index %s: %w", f.Name(), err)
		}
		return nil
	}
	if err := open("modules.dep", true, ix.parseDep); err != nil {
		return nil, err
	}
	if err := open("modules.alias", true, ix.parseAlias); err != nil {
		return nil, err
	}
	if err := open("modules.softdep", false, ix.parseSoftdep); err != nil {
		return nil, err
	}
	return ix, nil
}

// parseDep reads lines "kernel/a/b.ko: kernel/c.ko kernel/d.ko". As depmod writes them,
// a module's dependencies are listed so that loading them last-first works.
func (ix *ModuleIndex) parseDep(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name := ModuleName(mod)
		ix.paths[name] = mod
		var names []string
		fields := strings.Fields(deps)
		for i := len(fields) - 1; i >= 0; i-- {
			names = append(names, ModuleName(fields[i]))
		}
		ix.deps[name] = names
	}
	return sc.Err()
}

func (ix *ModuleIndex) parseAlias(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "alias" {
			continue
		}
		ix.aliases = append(ix.aliases, moduleAlias{pattern: f[1], module: strings.ReplaceAll(f[2], "-", "_")})
	}
	return sc.Err()
}

// parseSoftdep reads "softdep MODULE pre: A B post: C"; only pre matters here.
func (ix *ModuleIndex) parseSoftdep(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "softdep" {
			continue
		}
		mod := strings.ReplaceAll(f[1], "-", "_")
		pre := false
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				pre = true
			case "post:":
				pre = false
			default:
				if pre {
					ix.softPre[mod] = append(ix.softPre[mod], w)
				}
			}
		}
	}
	return sc.Err()
}

// Lookup returns the modules whose alias pattern matches s (a device's modalias, or an
// alias such as "crypto-crc32c"), in modules.alias order without repeats. A name that
// is itself a module matches that module.
func (ix *ModuleIndex) Lookup(s string) []string {
	var out []string
	if _, ok := ix.paths[strings.ReplaceAll(s, "-", "_")]; ok {
		out = append(out, strings.ReplaceAll(s, "-", "_"))
	}
	for _, a := range ix.aliases {
		if !slices.Contains(out, a.module) && fnmatch(a.pattern, s) {
			out = append(out, a.module)
		}
	}
	return out
}

// Path returns the file of module name, relative to Dir.
func (ix *ModuleIndex) Path(name string) (string, bool) {
	p, ok := ix.paths[name]
	return p, ok
}

// fnmatch is fnmatch(3) with no flags, as modprobe matches aliases: * and ? match any
// character including "/", [...] is a class with ranges and ! or ^ negation, \ escapes.
// (path.Match will not do: a DMI modalias holds "/" in its BIOS date.)
func fnmatch(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for len(pattern) > 0 && pattern[0] == '*' {
				pattern = pattern[1:]
			}
			if pattern == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if fnmatch(pattern, s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			pattern, s = pattern[1:], s[1:]
		case '[':
			if s == "" {
				return false
			}
			matched, rest, ok := matchClass(pattern, s[0])
			if !ok {
				// An unterminated [ is a literal, as in fnmatch.
				if s[0] != '[' {
					return false
				}
				pattern, s = pattern[1:], s[1:]
				continue
			}
			if !matched {
				return false
			}
			pattern, s = rest, s[1:]
		case '\\':
			if len(pattern) > 1 {
				pattern = pattern[1:]
			}
			fallthrough
		default:
			if s == "" || pattern[0] != s[0] {
				return false
			}
			pattern, s = pattern[1:], s[1:]
		}
	}
	return s == ""
}

// matchClass matches c against the class at the start of pattern ("[...]"), returning
// the pattern after it; ok is false when the class is not terminated.
func matchClass(pattern string, c byte) (matched bool, rest string, ok bool) {
	i := 1
	negate := false
	if i < len(pattern) && (pattern[i] == '!' || pattern[i] == '^') {
		negate = true
		i++
	}
	first := true
	for i < len(pattern) {
		if pattern[i] == ']' && !first {
			return matched != negate, pattern[i+1:], true
		}
		first = false
		lo := pattern[i]
		if lo == '\\' && i+1 < len(pattern) {
			i++
			lo = pattern[i]
		}
		hi := lo
		if i+2 < len(pattern) && pattern[i+1] == '-' && pattern[i+2] != ']' {
			hi = pattern[i+2]
			i += 2
		}
		if lo <= c && c <= hi {
			matched = true
		}
		i++
	}
	return false, "", false
}

// ModuleLoader loads the modules a machine's devices need, as udev and modprobe would,
// with no binaries: it matches every device's modalias under /sys/devices against
// modules.alias and inserts the modules with their dependencies by finit_module(2).
type ModuleLoader struct {
	Index *ModuleIndex
	// Root is where sys/ lives ("/" on a host).
	Root string
	Log  *slog.Logger
	// Insert loads one module file; nil uses finit_module(2) (init_module(2) as a
	// fallback). Tests record instead.
	Insert func(path string) error

	seen   map[string]bool // modaliases already handled
	loaded map[string]bool // modules loaded or failed: each is tried once
}

// ScanDevices loads modules for every device modalias not seen before and returns the
// modules it loaded. Modules that fail (hardware absent, a CPU feature missing) are
// logged and not retried; they do not stop the others.
func (l *ModuleLoader) ScanDevices() ([]string, error) {
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	var aliases []string
	err := filepath.WalkDir(filepath.Join(l.Root, "sys/devices"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Devices come and go while drivers probe; a vanished directory is no error.
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.Name() != "modalias" || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		a := strings.TrimSpace(string(b))
		if a != "" && !l.seen[a] {
			l.seen[a] = true
			aliases = append(aliases, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan devices: %w", err)
	}
	var loaded []string
	for _, a := range aliases {
		for _, m := range l.Index.Lookup(a) {
			n, _ := l.Load(m)
			loaded = append(loaded, n...)
		}
	}
	return loaded, nil
}

// Load inserts module name with its soft (pre) and hard dependencies, and returns the
// modules it inserted. Modules already loaded (or built in) are skipped.
func (l *ModuleLoader) Load(name string) ([]string, error) {
	if l.loaded == nil {
		l.loaded = map[string]bool{}
	}
	var done []string
	var errs []error
	var load func(name string, depth int)
	load = func(name string, depth int) {
		if l.loaded[name] || depth > 16 {
			return
		}
		l.loaded[name] = true
		if _, err := os.Stat(filepath.Join(l.Root, "sys/module", name)); err == nil {
			return
		}
		for _, pre := range l.Index.softPre[name] {
			// A soft dependency names an alias ("crypto-crc32c") that several modules
			// provide; load each, failures are not fatal (crc32c-intel needs SSE4.2,
			// crc32c-generic always loads).
			for _, m := range l.Index.Lookup(pre) {
				load(m, depth+1)
			}
		}
		for _, dep := range l.Index.deps[name] {
			load(dep, depth+1)
		}
		rel, ok := l.Index.paths[name]
		if !ok {
			errs = append(errs, fmt.Errorf("module %s is not in modules.dep", name))
			return
		}
		if err := l.insert(filepath.Join(l.Index.Dir, rel)); err != nil {
			l.log().Debug("module not loaded", "module", name, "err", err)
			errs = append(errs, fmt.Errorf("load %s: %w", name, err))
			return
		}
		done = append(done, name)
	}
	load(strings.ReplaceAll(name, "-", "_"), 0)
	return done, errors.Join(errs...)
}

func (l *ModuleLoader) log() *slog.Logger {
	if l.Log != nil {
		return l.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (l *ModuleLoader) insert(p string) error {
	if l.Insert != nil {
		return l.Insert(p)
	}
	return insertModule(p)
}

// insertModule loads a module file into the kernel. EEXIST (already loaded) is success.
func insertModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.ENOSYS) {
		var image []byte
		if image, err = io.ReadAll(f); err == nil {
			err = unix.InitModule(image, "")
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}
