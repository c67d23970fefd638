package bootenv

import (
	"bytes"
	"debug/elf"
	"fmt"
	"path"
	"sort"
	"strings"
)

// module is what bootenv knows of one kernel module, from its .modinfo section: the
// same facts depmod reads.
type module struct {
	// Path is relative to lib/modules/VERSION, without a compression suffix
	// (kernel/drivers/net/virtio_net.ko).
	Path    string
	Name    string
	Depends []string
	Aliases []string
	// SoftPre and SoftPost are the soft dependencies (module names or aliases).
	SoftPre, SoftPost []string
}

// parseModinfo reads the .modinfo section of a module's ELF image.
func parseModinfo(relPath string, image []byte) (module, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return module{}, fmt.Errorf("module %s: %w", relPath, err)
	}
	defer f.Close()
	m := module{Path: relPath, Name: moduleName(relPath)}
	sec := f.Section(".modinfo")
	if sec == nil {
		return m, nil
	}
	data, err := sec.Data()
	if err != nil {
		return module{}, fmt.Errorf("module %s: .modinfo: %w", relPath, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			if v != "" {
				m.Name = v
			}
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					m.Depends = append(m.Depends, strings.ReplaceAll(d, "-", "_"))
				}
			}
		case "alias":
			m.Aliases = append(m.Aliases, v)
		case "softdep":
			pre := true
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						m.SoftPre = append(m.SoftPre, w)
					} else {
						m.SoftPost = append(m.SoftPost, w)
					}
				}
			}
		}
	}
	return m, nil
}

// moduleName is the module name of a file: the base name without .ko and compression,
// - read as _.
func moduleName(p string) string {
	b := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(b, ".ko"), "-", "_")
}

// moduleSet is a kernel's modules, indexed.
type moduleSet struct {
	byName map[string]*module
}

func newModuleSet(mods []module) *moduleSet {
	s := &moduleSet{byName: map[string]*module{}}
	for i := range mods {
		s.byName[mods[i].Name] = &mods[i]
	}
	return s
}

// resolve returns the modules an alias or name means (a softdep names either).
func (s *moduleSet) resolve(nameOrAlias string) []*module {
	if m, ok := s.byName[strings.ReplaceAll(nameOrAlias, "-", "_")]; ok {
		return []*module{m}
	}
	var out []*module
	for _, m := range s.sortedModules() {
		for _, a := range m.Aliases {
			if a == nameOrAlias {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

func (s *moduleSet) sortedModules() []*module {
	out := make([]*module, 0, len(s.byName))
	for _, m := range s.byName {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// closure returns the selected modules plus everything they need: hard dependencies
// and soft (pre and post) dependencies, resolved through aliases. Missing dependencies
// are reported, not fatal: a dependency that is built in has no module.
func (s *moduleSet) closure(selected []*module) (mods []*module, missing []string) {
	in := map[string]bool{}
	var visit func(m *module)
	visit = func(m *module) {
		if in[m.Name] {
			return
		}
		in[m.Name] = true
		mods = append(mods, m)
		for _, d := range m.Depends {
			if dm, ok := s.byName[d]; ok {
				visit(dm)
			} else {
				missing = append(missing, m.Name+" → "+d)
			}
		}
		for _, d := range append(append([]string(nil), m.SoftPre...), m.SoftPost...) {
			for _, dm := range s.resolve(d) {
				visit(dm)
			}
		}
	}
	for _, m := range selected {
		visit(m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	return mods, missing
}

// loadOrder returns m's hard dependencies, transitively, each after everything it
// needs (m itself excluded).
func (s *moduleSet) loadOrder(m *module) []*module {
	var order []*module
	seen := map[string]bool{m.Name: true}
	var visit func(x *module)
	visit = func(x *module) {
		for _, d := range x.Depends {
			dm, ok := s.byName[d]
			if !ok || seen[d] {
				continue
			}
			seen[d] = true
			visit(dm)
			order = append(order, dm)
		}
	}
	visit(m)
	return order
}

// indexFiles renders modules.dep, modules.alias and modules.softdep for mods in the
// format depmod writes (modules.dep lists a module's dependencies so that loading them
// from last to first works).
func (s *moduleSet) indexFiles(mods []*module) (dep, alias, softdep []byte) {
	var d, a, sd bytes.Buffer
	for _, m := range mods {
		order := s.loadOrder(m)
		d.WriteString(m.Path + ":")
		for i := len(order) - 1; i >= 0; i-- {
			d.WriteString(" " + order[i].Path)
		}
		d.WriteByte('\n')
		for _, al := range m.Aliases {
			fmt.Fprintf(&a, "alias %s %s\n", al, m.Name)
		}
		if len(m.SoftPre)+len(m.SoftPost) > 0 {
			sd.WriteString("softdep " + m.Name)
			if len(m.SoftPre) > 0 {
				sd.WriteString(" pre: " + strings.Join(m.SoftPre, " "))
			}
			if len(m.SoftPost) > 0 {
				sd.WriteString(" post: " + strings.Join(m.SoftPost, " "))
			}
			sd.WriteByte('\n')
		}
	}
	return d.Bytes(), a.Bytes(), sd.Bytes()
}
