package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LabImageScript is the recipe of the lab's Debian disk image, relative to the
// repository root. Its content is the image's cache key.
const LabImageScript = "hack/lab-image.sh"

// LabImageName is the name the lab registers the image under (rackboot image add).
const LabImageName = "debian-12"

// LabImageTools are what the recipe runs besides coreutils.
func LabImageTools() []string {
	return []string{"debootstrap", "mformat", "mcopy", "mmd", "syslinux", "grub-mkstandalone", "mkfs.ext4", "sfdisk", "zstd"}
}

// EnsureLabImage returns the lab's Debian 12 disk image (zstd-compressed raw) and the
// sha256 of the file as it is (what `rackboot image add --sha256` takes), building it
// with hack/lab-image.sh on first use. Built once per version of the recipe, cached under
// CacheDir()/images behind a lock of its own (a cold build takes minutes and must not
// hold up the other fixtures). Needs root, like the rest of the lab.
func EnsureLabImage(ctx context.Context) (path, sum string, err error) {
	return EnsureLabImageLog(ctx, io.Discard)
}

// EnsureLabImageLog is EnsureLabImage with the build's progress written to progress.
func EnsureLabImageLog(ctx context.Context, progress io.Writer) (path, sum string, err error) {
	script, err := findRepoFile(LabImageScript)
	if err != nil {
		return "", "", err
	}
	recipe, err := os.ReadFile(script)
	if err != nil {
		return "", "", fmt.Errorf("read the lab image recipe: %w", err)
	}
	h := sha256.Sum256(recipe)
	return ensureCachedImage(ctx, progress, cachedImage{
		what:   "lab image",
		prefix: "debian-12-lab",
		key:    hex.EncodeToString(h[:])[:16],
		log:    "build-",
		tools:  LabImageTools(),
		hint:   "apt-get install debootstrap mtools dosfstools syslinux syslinux-common grub-efi-amd64-bin e2fsprogs fdisk zstd (make deps)",
		build: func(ctx context.Context, work, out string, log io.Writer) error {
			return runImageScript(ctx, log, nil, "bash", script, out, filepath.Join(work, "w"))
		},
	})
}

// cachedImage is a disk image made by a recipe and cached under CacheDir()/images as
// PREFIX-KEY.raw.zst, KEY being a hash of everything the recipe reads.
type cachedImage struct {
	what   string // for messages
	prefix string // file names: PREFIX-KEY.raw.zst, PREFIX.raw.zst links the current one
	key    string
	log    string // build log: CacheDir()/images/LOGKEY.log
	tools  []string
	hint   string // how to install the tools
	// build writes the image to out, using work (removed afterwards) for everything else.
	build func(ctx context.Context, work, out string, log io.Writer) error
	// extras, when set, writes files beside the finished image (named PATH.SOMETHING,
	// so they go with it) before its checksum file marks it complete; links lists the
	// ones that get a stable name too.
	extras func(path, sum string) (links []string, err error)
}

// ensureCachedImage returns the cached build of c, building it first when there is none.
// Built once per key, behind a lock of its own (a cold build takes minutes and must not
// hold up the other fixtures). The checksum file, written last, marks a build complete.
func ensureCachedImage(ctx context.Context, progress io.Writer, c cachedImage) (path, sum string, err error) {
	cache, err := CacheDir()
	if err != nil {
		return "", "", err
	}
	dir := filepath.Join(cache, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("create %s: %w", dir, err)
	}
	path = filepath.Join(dir, c.prefix+"-"+c.key+".raw.zst")
	sumFile := path + ".sha256"
	// A finished build is found without the lock, which another image's build (the
	// node image shares this directory) may hold for many minutes.
	if sum, ok := builtImage(path, sumFile); ok {
		return path, sum, nil
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", "", err
	}
	defer unlock()
	// Built while we waited for the lock?
	if sum, ok := builtImage(path, sumFile); ok {
		return path, sum, nil
	}
	for _, tool := range c.tools {
		if _, err := exec.LookPath(tool); err != nil {
			return "", "", fmt.Errorf("%s: %s is not installed: %s", c.what, tool, c.hint)
		}
	}
	// The work directory sits beside the cache (the root tree and the raw disk are a few
	// hundred MB; /tmp may be small), and is removed by the script.
	work, err := os.MkdirTemp(dir, "work-")
	if err != nil {
		return "", "", err
	}
	defer func() {
		// debootstrap mounts proc, sys and a /dev (bind mounts of the host's device nodes,
		// in a container) inside the new root and the script unmounts them; if it was
		// killed first, removing the tree would reach through those mounts.
		if m := mountsUnder(work); len(m) > 0 {
			err = errors.Join(err, fmt.Errorf("%s: %s left in place: still mounted under it: %s (umount -l them, then remove it)", c.what, work, strings.Join(m, " ")))
			return
		}
		os.RemoveAll(work)
	}()
	logPath := filepath.Join(dir, c.log+c.key+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return "", "", err
	}
	defer logf.Close()
	if err := c.build(ctx, work, path+".build", io.MultiWriter(logf, progress)); err != nil {
		os.Remove(path + ".build")
		return "", "", fmt.Errorf("build the %s: %w (log: %s):\n%s", c.what, err, logPath, Tail(logPath, 20))
	}
	sum, err = fileSHA256(path + ".build")
	if err != nil {
		return "", "", err
	}
	if err := os.Rename(path+".build", path); err != nil {
		return "", "", err
	}
	links := []string{filepath.Base(sumFile)}
	if c.extras != nil {
		more, err := c.extras(path, sum)
		if err != nil {
			return "", "", err
		}
		links = append(links, more...)
	}
	if err := os.WriteFile(sumFile, []byte(sum+"  "+filepath.Base(path)+"\n"), 0o644); err != nil {
		return "", "", err
	}
	// Builds for other keys are hundreds of MB each. One made in the last day may be in
	// use by another checkout's test (worktrees share this cache): only older ones go.
	old, _ := filepath.Glob(filepath.Join(dir, c.prefix+"-*"))
	logs, _ := filepath.Glob(filepath.Join(dir, c.log+"*.log"))
	for _, o := range append(old, logs...) {
		fi, err := os.Lstat(o)
		if err != nil || time.Since(fi.ModTime()) < 24*time.Hour {
			continue
		}
		if b := filepath.Base(o); !strings.HasPrefix(b, filepath.Base(path)) && b != filepath.Base(logPath) {
			os.RemoveAll(o)
		}
	}
	// Stable names for people: PREFIX.raw.zst(.sha256, …) → the current build.
	for _, l := range append([]string{filepath.Base(path)}, links...) {
		link := filepath.Join(dir, c.prefix+strings.TrimPrefix(l, c.prefix+"-"+c.key))
		_ = os.Remove(link)
		if err := os.Symlink(l, link); err != nil {
			return "", "", err
		}
	}
	return path, sum, nil
}

// runImageScript runs a recipe in its own process group, stopped with SIGTERM when ctx
// ends: debootstrap and its chroots stop too, and the script's exit trap unmounts what
// debootstrap mounted. The recipe keeps its .debs in CacheDir()/debootstrap-debs.
func runImageScript(ctx context.Context, log io.Writer, env []string, args ...string) error {
	cache, err := CacheDir()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), "RACKBOOT_LAB_DEB_CACHE="+filepath.Join(cache, "debootstrap-debs")), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// builtImage reports whether the build at path is complete (its checksum file, written
// last, is there) and returns its sha256.
func builtImage(path, sumFile string) (string, bool) {
	b, err := os.ReadFile(sumFile)
	if err != nil {
		return "", false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f[0]) != 64 {
		return "", false
	}
	if _, err := os.Stat(path); err != nil {
		return "", false
	}
	return f[0], true
}

// lockFile takes an exclusive flock on path and returns its release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// findRepoFile finds rel in the repository this code runs from: the working directory or
// one of its parents holding go.mod (tests run in their package's directory, `go run`
// in the repository root).
func findRepoFile(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, rel)
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("%s not found in the repository at %s: %w", rel, dir, err)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New(rel + " not found: run from inside the rackboot repository")
		}
		dir = parent
	}
}

// mountsUnder lists the mount points at or below dir (from /proc/self/mountinfo).
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		// Field 5 is the mount point, with spaces and the like escaped as octal.
		if mp := f[4]; mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}
