package bootenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/sys/unix"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/ipxe"
)

// formatVersion changes whenever the initramfs layout changes, so caches rebuild.
const formatVersion = "rackboot-bootenv-1"

// DefaultModules are the module paths (under lib/modules/VERSION) packed into the
// initramfs, with everything they depend on: the NIC and storage drivers a server may
// boot from, ext4 for the cloud-init drop-in, vfat to check the CIDATA partition,
// btrfs for Flatcar's OEM partition (the Ignition config), and the hardware RNG
// drivers. "DIR/**" takes a directory tree.
func DefaultModules() []string {
	return []string{
		"kernel/drivers/net/ethernet/**",
		"kernel/drivers/net/virtio_net.ko",
		"kernel/drivers/net/vmxnet3/**",
		"kernel/drivers/block/**",
		"kernel/drivers/nvme/**",
		"kernel/drivers/scsi/**",
		"kernel/drivers/ata/**",
		"kernel/drivers/virtio/**",
		"kernel/fs/ext4/**",
		// vfat and its default codepage and charsets: the agent reads the CIDATA
		// partition back through the kernel.
		"kernel/fs/fat/**",
		"kernel/fs/nls/nls_cp437.ko",
		"kernel/fs/nls/nls_ascii.ko",
		"kernel/fs/nls/nls_utf8.ko",
		// Flatcar keeps its OEM partition, where the agent writes the Ignition config,
		// on btrfs (zlib-compressed); its dependencies (raid6_pq, xor, zstd...) come
		// along through modules.dep.
		"kernel/fs/btrfs/**",
		// Hardware RNGs (virtio-rng, TPM-less boards' RNGs) feed the kernel's random
		// pool, which an https image URL needs early in boot.
		"kernel/drivers/char/hw_random/**",
	}
}

// Config is what Build needs.
type Config struct {
	// DataDir is rackboot's data directory; the boot environment is built in
	// DataDir/bootenv.
	DataDir string
	// KernelDeb is a Debian linux-image-*.deb (apt-get download linux-image-6.1.0-NN-amd64).
	KernelDeb string
	// Agent is the static rackboot binary that becomes /init; default os.Executable().
	Agent string
	// Modules overrides DefaultModules.
	Modules []string
	Log     *slog.Logger
}

// Env is a built boot environment.
type Env struct {
	// Dir is DataDir/bootenv; Kernel and Initramfs are the published files in it
	// (vmlinuz, initramfs.gz), which the server serves.
	Dir       string
	Kernel    string
	Initramfs string
	// KernelVersion is the kernel release, e.g. 6.1.0-56-amd64.
	KernelVersion string
	// Key is the content hash the build is cached under (kernel package, agent binary,
	// module selection, layout version).
	Key string
	// Modules is the number of kernel modules packed.
	Modules int
	// InitramfsSize is the compressed size in bytes.
	InitramfsSize int64
	// Cached is true when Build found the environment already built.
	Cached bool
}

// Manifest is written beside the files (manifest.json) and into the initramfs
// (etc/rackboot-bootenv.json).
type Manifest struct {
	Format        string   `json:"format"`
	Key           string   `json:"key"`
	KernelPackage string   `json:"kernelPackage"`
	KernelSHA256  string   `json:"kernelPackageSHA256"`
	KernelVersion string   `json:"kernelVersion"`
	AgentSHA256   string   `json:"agentSHA256"`
	Patterns      []string `json:"patterns"`
	Modules       []string `json:"modules"`
	// MissingDeps are dependencies no module provides (built into the kernel).
	MissingDeps []string `json:"missingDeps,omitempty"`
}

// CmdlineTemplate is the kernel command line of the agent, with the placeholders the
// ipxe package substitutes. The per-boot token (agentapi.ParamToken) is added by the
// server for each boot.
const CmdlineTemplate = "console=tty0 console=ttyS0,115200n8 " +
	agentapi.ParamURL + "={{.ServerURL}} " + agentapi.ParamMAC + "={{.MAC}}"

// BootEnv converts e into the ipxe package's boot environment. base is where the
// server serves e.Dir: an absolute URL ("http://10.0.0.1:8080/bootenv"), or a path
// under /assets ("bootenv") if DATA_DIR/bootenv is exposed there. extraCmdline is
// appended to CmdlineTemplate (the server adds rackboot.token=... per boot).
func (e Env) BootEnv(base, extraCmdline string) ipxe.BootEnv {
	base = strings.TrimSuffix(base, "/")
	cmd := CmdlineTemplate
	if extraCmdline != "" {
		cmd += " " + extraCmdline
	}
	return ipxe.BootEnv{
		Kernel:  base + "/" + filepath.Base(e.Kernel),
		Initrds: []string{base + "/" + filepath.Base(e.Initramfs)},
		Cmdline: cmd,
	}
}

// Build returns the boot environment for cfg, building it when the cache under
// DataDir/bootenv has none for the same kernel package, agent binary and module
// selection. Parallel calls (two rackboot processes) build once: a lock file serialises
// them.
func Build(ctx context.Context, cfg Config) (Env, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" || cfg.KernelDeb == "" {
		return Env{}, errors.New("bootenv: DataDir and KernelDeb are required")
	}
	if cfg.Agent == "" {
		exe, err := os.Executable()
		if err != nil {
			return Env{}, fmt.Errorf("bootenv: find the rackboot binary: %w", err)
		}
		cfg.Agent = exe
	}
	patterns := cfg.Modules
	if len(patterns) == 0 {
		patterns = DefaultModules()
	}
	if err := checkStatic(cfg.Agent); err != nil {
		return Env{}, err
	}
	debSum, err := fileSHA256(cfg.KernelDeb)
	if err != nil {
		return Env{}, fmt.Errorf("bootenv: kernel package: %w", err)
	}
	agentSum, err := fileSHA256(cfg.Agent)
	if err != nil {
		return Env{}, fmt.Errorf("bootenv: agent binary: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", formatVersion, debSum, agentSum, strings.Join(patterns, "\n"))
	key := hex.EncodeToString(h.Sum(nil))[:20]

	dir := filepath.Join(cfg.DataDir, "bootenv")
	if err := os.MkdirAll(filepath.Join(dir, "cache"), 0o755); err != nil {
		return Env{}, fmt.Errorf("bootenv: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return Env{}, err
	}
	defer unlock()

	entry := filepath.Join(dir, "cache", key)
	cached := true
	if _, err := os.Stat(filepath.Join(entry, "manifest.json")); err != nil {
		cached = false
		t0 := time.Now()
		log.Info("building the agent boot environment", "kernelPackage", cfg.KernelDeb, "agent", cfg.Agent, "key", key)
		if err := build(ctx, cfg, patterns, key, debSum, agentSum, entry); err != nil {
			return Env{}, err
		}
		log.Info("agent boot environment built", "key", key, "seconds", time.Since(t0).Seconds())
	}
	var m Manifest
	b, err := os.ReadFile(filepath.Join(entry, "manifest.json"))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		return Env{}, fmt.Errorf("bootenv: cache entry %s: %w (delete it to rebuild)", entry, err)
	}
	// The build published until now stays in the cache: a running rackboot serve
	// (provision.BootEnvs) serves each build under its key, and a host that fetched its
	// kernel from it just before this import still gets the matching initramfs. Older
	// builds go (the published files are links of their own).
	prev := publishedKey(dir)
	// The manifest goes last: a server that sees the new one finds the files in place.
	for _, f := range []string{KernelFile, InitramfsFile, ManifestFile} {
		if err := publish(filepath.Join(entry, f), filepath.Join(dir, f)); err != nil {
			return Env{}, err
		}
	}
	if ents, err := os.ReadDir(filepath.Join(dir, "cache")); err == nil {
		for _, e := range ents {
			if e.Name() != key && e.Name() != prev {
				_ = os.RemoveAll(filepath.Join(dir, "cache", e.Name()))
			}
		}
	}
	st, err := os.Stat(filepath.Join(dir, "initramfs.gz"))
	if err != nil {
		return Env{}, err
	}
	return Env{
		Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initramfs: filepath.Join(dir, "initramfs.gz"),
		KernelVersion: m.KernelVersion, Key: key, Modules: len(m.Modules), InitramfsSize: st.Size(), Cached: cached,
	}, nil
}

// lockDir takes an exclusive flock on dir/.lock.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bootenv lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("bootenv lock %s: %w", f.Name(), err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// publish makes dst the same file as src, atomically (a hard link renamed over dst, a
// copy if links are not possible), so a server serving dst never sees half a file.
func publish(src, dst string) error {
	tmp := dst + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		if err := copyFile(src, tmp); err != nil {
			return fmt.Errorf("bootenv: publish %s: %w", dst, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("bootenv: publish %s: %w", dst, err)
	}
	return nil
}

var vmlinuzRe = regexp.MustCompile(`^(?:\./)?boot/vmlinuz-(.+)$`)
var modulesRe = regexp.MustCompile(`^(?:\./)?(?:usr/)?lib/modules/([^/]+)/(.+)$`)

// build extracts the kernel package into a scratch directory, selects the modules and
// writes entry/{vmlinuz,initramfs.gz,manifest.json}.
func build(ctx context.Context, cfg Config, patterns []string, key, debSum, agentSum, entry string) error {
	work, err := os.MkdirTemp(filepath.Dir(entry), "build-")
	if err != nil {
		return fmt.Errorf("bootenv: %w", err)
	}
	defer os.RemoveAll(work)
	ki, err := extractKernel(ctx, cfg.KernelDeb, work)
	if err != nil {
		return err
	}
	set := newModuleSet(ki.modules)
	var selected []*module
	for _, m := range set.sortedModules() {
		if matchAny(patterns, m.Path) {
			selected = append(selected, m)
		}
	}
	if len(selected) == 0 {
		return fmt.Errorf("bootenv: no module of %s matches %v", cfg.KernelDeb, patterns)
	}
	mods, missing := set.closure(selected)
	dep, alias, softdep := set.indexFiles(mods)
	sort.Strings(missing)
	man := Manifest{
		Format: formatVersion, Key: key, KernelPackage: filepath.Base(cfg.KernelDeb), KernelSHA256: debSum,
		KernelVersion: ki.version, AgentSHA256: agentSum, Patterns: patterns, MissingDeps: missing,
	}
	for _, m := range mods {
		man.Modules = append(man.Modules, m.Path)
	}
	manJSON, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return err
	}

	modDir := "lib/modules/" + ki.version
	mem := func(b []byte) func() (io.ReadCloser, int64, error) {
		return func() (io.ReadCloser, int64, error) { return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil }
	}
	disk := func(p string) func() (io.ReadCloser, int64, error) {
		return func() (io.ReadCloser, int64, error) {
			f, err := os.Open(p)
			if err != nil {
				return nil, 0, err
			}
			st, err := f.Stat()
			if err != nil {
				f.Close()
				return nil, 0, err
			}
			return f, st.Size(), nil
		}
	}
	files := []fileEntry{
		{name: "init", mode: 0o755, open: disk(cfg.Agent)},
		{name: "etc/rackboot-bootenv.json", mode: 0o644, open: mem(manJSON)},
		{name: modDir + "/modules.dep", mode: 0o644, open: mem(dep)},
		{name: modDir + "/modules.alias", mode: 0o644, open: mem(alias)},
		{name: modDir + "/modules.softdep", mode: 0o644, open: mem(softdep)},
	}
	for _, m := range mods {
		files = append(files, fileEntry{name: modDir + "/" + m.Path, mode: 0o644, open: disk(filepath.Join(work, "modules", m.Path))})
	}
	dirs := []string{"dev", "proc", "sys", "run", "tmp", "etc", "mnt", "root"}

	tmpEntry := entry + ".tmp"
	_ = os.RemoveAll(tmpEntry)
	if err := os.MkdirAll(tmpEntry, 0o755); err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(tmpEntry, "initramfs.gz"))
	if err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(out, gzip.DefaultCompression)
	if err == nil {
		_, err = zw.Write(newcDeviceArchive())
	}
	if err == nil {
		err = writeCPIO(zw, dirs, files)
	}
	if err == nil {
		err = zw.Close()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bootenv: write initramfs: %w", err)
	}
	if err := copyFile(ki.vmlinuz, filepath.Join(tmpEntry, "vmlinuz")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmpEntry, "manifest.json"), append(manJSON, '\n'), 0o644); err != nil {
		return err
	}
	_ = os.RemoveAll(entry)
	return os.Rename(tmpEntry, entry)
}

// kernelImport is what extractKernel found.
type kernelImport struct {
	version string
	vmlinuz string
	modules []module
}

// extractKernel streams the .deb's data archive once: vmlinuz to work/vmlinuz, every
// module (decompressed) to work/modules/PATH, and every module's modinfo into memory.
func extractKernel(ctx context.Context, deb, work string) (kernelImport, error) {
	f, err := os.Open(deb)
	if err != nil {
		return kernelImport{}, fmt.Errorf("bootenv: %w", err)
	}
	defer f.Close()
	tr, closer, err := debData(f)
	if err != nil {
		return kernelImport{}, fmt.Errorf("bootenv: %s: %w", deb, err)
	}
	defer closer()
	ki := kernelImport{}
	for {
		if err := ctx.Err(); err != nil {
			return ki, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return ki, fmt.Errorf("bootenv: %s: %w", deb, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		if m := vmlinuzRe.FindStringSubmatch(name); m != nil {
			if ki.version != "" && ki.version != m[1] {
				return ki, fmt.Errorf("bootenv: %s holds more than one kernel (%s, %s)", deb, ki.version, m[1])
			}
			ki.version = m[1]
			ki.vmlinuz = filepath.Join(work, "vmlinuz")
			if err := writeFile(ki.vmlinuz, tr); err != nil {
				return ki, err
			}
			continue
		}
		m := modulesRe.FindStringSubmatch(name)
		if m == nil || !isModuleFile(m[2]) {
			continue
		}
		if ki.version != "" && m[1] != ki.version {
			continue
		}
		if hdr.Size > 256<<20 {
			return ki, fmt.Errorf("bootenv: module %s is %d bytes: not a module", name, hdr.Size)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return ki, fmt.Errorf("bootenv: %s: %w", name, err)
		}
		image, err := decompressModule(m[2], data)
		if err != nil {
			return ki, err
		}
		rel := trimCompression(m[2])
		mod, err := parseModinfo(rel, image)
		if err != nil {
			return ki, err
		}
		dst := filepath.Join(work, "modules", filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return ki, err
		}
		if err := os.WriteFile(dst, image, 0o644); err != nil {
			return ki, err
		}
		mod.Path = rel
		ki.modules = append(ki.modules, mod)
		if ki.version == "" {
			ki.version = m[1]
		}
	}
	if ki.vmlinuz == "" {
		return ki, fmt.Errorf("bootenv: %s has no boot/vmlinuz-*: is it a linux-image package?", deb)
	}
	if len(ki.modules) == 0 {
		return ki, fmt.Errorf("bootenv: %s has no modules under lib/modules/%s", deb, ki.version)
	}
	return ki, nil
}

func isModuleFile(p string) bool {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(p, ext) {
			return true
		}
	}
	return false
}

func trimCompression(p string) string {
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(p, ".ko"+ext) {
			return strings.TrimSuffix(p, ext)
		}
	}
	return p
}

// matchAny reports whether p matches one of the patterns: "DIR/**" matches everything
// under DIR, anything else is a path.Match pattern.
func matchAny(patterns []string, p string) bool {
	for _, pat := range patterns {
		if dir, ok := strings.CutSuffix(pat, "/**"); ok {
			if strings.HasPrefix(p, dir+"/") {
				return true
			}
			continue
		}
		if ok, _ := path.Match(pat, p); ok {
			return true
		}
	}
	return false
}

// checkStatic refuses a dynamically linked agent: the initramfs has no libc.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("bootenv: agent binary %s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("bootenv: agent binary %s is dynamically linked: build rackboot with CGO_ENABLED=0", p)
		}
	}
	return nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func writeFile(dst string, r io.Reader) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeFile(dst, in)
}
