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
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
)

// CacheEnv names the environment variable that overrides where boot fixtures are cached.
const CacheEnv = "RACKBOOT_CACHE"

// KernelPackageEnv pins the Debian kernel package (e.g. linux-image-6.1.0-56-amd64)
// instead of resolving linux-image-amd64's current dependency.
const KernelPackageEnv = "RACKBOOT_LAB_KERNEL_PKG"

// netModules lists the NIC driver modules the phone-home initramfs loads, in dependency
// order (Debian's kernel builds them as modules). Paths are under lib/modules/VERSION.
func netModules() []string {
	return []string{
		"kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio.ko",
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
		"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
		"kernel/drivers/virtio/virtio_pci.ko",
		"kernel/net/core/failover.ko",
		"kernel/drivers/net/net_failover.ko",
		"kernel/drivers/net/virtio_net.ko",
		"kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
	}
}

// CacheDir is where boot fixtures live between runs: $RACKBOOT_CACHE, else
// ~/.cache/rackboot-lab (the user cache dir). Never inside the repository.
func CacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return d, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set %s): %w", CacheEnv, err)
	}
	return filepath.Join(base, "rackboot-lab"), nil
}

// Kernel is a Debian kernel unpacked in the cache.
type Kernel struct {
	// Version is the kernel release, e.g. 6.1.0-56-amd64.
	Version string
	// Vmlinuz is the kernel image.
	Vmlinuz string
	// ModuleDir holds the NIC modules, flat, named as in netModules' base names.
	ModuleDir string
}

// withCacheLock runs fn holding an exclusive lock on the cache directory, so parallel
// tests (and parallel test binaries) fetch and build each fixture once.
func withCacheLock(fn func(dir string) error) error {
	dir, err := CacheDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create cache %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("cache lock: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("cache lock %s: %w", f.Name(), err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn(dir)
}

var dependsRe = regexp.MustCompile(`Depends:\s*(linux-image-(\d[^\s]*-amd64))\b`)

// kernelPackage finds the current Debian kernel package: KernelPackageEnv, else what
// linux-image-amd64 depends on.
func kernelPackage(ctx context.Context) (pkg, version string, err error) {
	if p := os.Getenv(KernelPackageEnv); p != "" {
		v, ok := strings.CutPrefix(p, "linux-image-")
		if !ok {
			return "", "", fmt.Errorf("%s=%q: want a package like linux-image-6.1.0-56-amd64", KernelPackageEnv, p)
		}
		return p, v, nil
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return "", "", fmt.Errorf("apt-cache depends linux-image-amd64: %w (run apt-get update, or set %s)", err, KernelPackageEnv)
	}
	m := dependsRe.FindSubmatch(out)
	if m == nil {
		return "", "", fmt.Errorf("apt-cache depends linux-image-amd64 names no linux-image-*-amd64 package (set %s):\n%s", KernelPackageEnv, out)
	}
	return string(m[1]), string(m[2]), nil
}

// FetchKernel returns the cached Debian kernel, downloading it with apt-get download and
// unpacking vmlinuz and the NIC modules on first use (about 70 MB, a few seconds).
func FetchKernel(ctx context.Context) (*Kernel, error) {
	pkg, version, err := kernelPackage(ctx)
	if err != nil {
		return nil, err
	}
	var k *Kernel
	err = withCacheLock(func(cache string) error {
		dir := filepath.Join(cache, "kernel-"+version)
		k = &Kernel{Version: version, Vmlinuz: filepath.Join(dir, "vmlinuz"), ModuleDir: filepath.Join(dir, "modules")}
		if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
			return nil
		}
		return unpackKernel(ctx, cache, dir, pkg, version)
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

func unpackKernel(ctx context.Context, cache, dir, pkg, version string) error {
	work, err := os.MkdirTemp(cache, "fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	cmd := exec.CommandContext(ctx, "apt-get", "download", pkg)
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %w: %s (is the apt index current? run apt-get update)", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(work, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s left %d .deb files in %s, want 1", pkg, len(debs), work)
	}
	root := filepath.Join(work, "root")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, out)
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "modules"), 0o755); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(root, "boot", "vmlinuz-"+version), filepath.Join(dir, "vmlinuz")); err != nil {
		return fmt.Errorf("kernel package %s: %w", pkg, err)
	}
	for _, m := range netModules() {
		src := filepath.Join(root, "lib", "modules", version, m)
		if err := copyFile(src, filepath.Join(dir, "modules", filepath.Base(m))); err != nil {
			return fmt.Errorf("kernel package %s lacks module %s (compressed modules are not supported): %w", pkg, m, err)
		}
	}
	// The marker is written last: a run killed half-way leaves no "complete" and the
	// next run starts over.
	return os.WriteFile(filepath.Join(dir, "complete"), []byte(pkg+"\n"), 0o644)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// PhoneHomeInitramfs returns the cached phone-home initramfs for k, building it on first
// use (see BuildPhoneHomeInitramfs). The cache key covers the kernel version, the
// busybox binary and the init script, so a change to any of them rebuilds it.
func PhoneHomeInitramfs(ctx context.Context, k *Kernel) (string, error) {
	busybox, err := findBusybox()
	if err != nil {
		return "", err
	}
	sum, err := fileSHA256(busybox)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", k.Version, sum, phoneHomeInit, udhcpcScript)
	key := hex.EncodeToString(h.Sum(nil))[:16]
	var path string
	err = withCacheLock(func(cache string) error {
		path = filepath.Join(cache, "phonehome-"+k.Version+"-"+key+".cpio.gz")
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		tmp := path + ".tmp"
		f, err := os.Create(tmp)
		if err != nil {
			return err
		}
		if err := BuildPhoneHomeInitramfs(f, busybox, k.ModuleDir); err != nil {
			f.Close()
			os.Remove(tmp)
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	})
	return path, err
}

func findBusybox() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			if static, err := isStatic(p); err != nil || !static {
				return "", fmt.Errorf("%s is not statically linked: apt-get install busybox-static", p)
			}
			return p, nil
		}
	}
	return "", errors.New("busybox not found: apt-get install busybox-static")
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
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
