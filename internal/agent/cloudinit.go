package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DropInPath is where the cloud-init drop-in goes, relative to the installed system's
// root. 99- sorts after the distribution's own files (Debian's 90_dpkg.cfg sets
// datasource_list too), so ours wins.
const DropInPath = "etc/cloud/cloud.cfg.d/99-rackboot.cfg"

// DropIn renders the drop-in that points cloud-init's NoCloud datasource at seedURL.
// With a single datasource (plus None) in datasource_list, ds-identify enables
// cloud-init and picks NoCloud without probing, and NoCloud reads meta-data, user-data
// and vendor-data from seedfrom.
//
// network is the host's network-config (version 2), fetched from seedfrom when the
// image was written. It goes into the drop-in as cloud-init's system network config,
// because a datasource reached over the network (seedfrom http://...) is found only
// after cloud-init has configured the network with its fallback (DHCP on the first
// NIC), so its network-config would never be applied; the system config is read in
// the local stage, before any NIC is up. Empty network leaves cloud-init's fallback.
func DropIn(seedURL string, network []byte) []byte {
	b := []byte(`# Written by rackboot when it provisioned this host: cloud-init takes this host's
# NoCloud data (meta-data, user-data, vendor-data) from rackboot, and its network
# configuration from below.
datasource_list: [NoCloud, None]
datasource:
  NoCloud:
    seedfrom: ` + seedURL + "\n")
	if len(bytes.TrimSpace(network)) == 0 {
		return b
	}
	b = append(b, "network:\n"...)
	for line := range strings.Lines(string(network)) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		b = append(b, "  "...)
		b = append(b, strings.TrimRight(line, "\n")...)
		b = append(b, '\n')
	}
	return b
}

// writeDropIn writes the drop-in into the filesystem rooted at root (a mounted root
// filesystem). It refuses a filesystem without etc/cloud (no cloud-init installed), and
// os.Root keeps a symlink in the image from pointing the write anywhere outside it.
func writeDropIn(root *os.Root, seedURL string, network []byte) error {
	st, err := root.Stat("etc/cloud")
	if err != nil || !st.IsDir() {
		return fmt.Errorf("%w: no etc/cloud directory", errNoCloudInit)
	}
	if err := root.MkdirAll(filepath.Dir(DropInPath), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(DropInPath), err)
	}
	tmp := DropInPath + ".rackboot-tmp"
	f, err := root.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", DropInPath, err)
	}
	_, err = f.Write(DropIn(seedURL, network))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, DropInPath)
	}
	if err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("write %s: %w", DropInPath, err)
	}
	return nil
}

var errNoCloudInit = errors.New("no cloud-init in this filesystem")

// isExt4 reports whether an ext2/3/4 superblock starts 1 KiB into the partition (its
// magic 0xEF53 is at offset 0x38 of the superblock).
func isExt4(r io.ReaderAt, p Partition) bool {
	var b [2]byte
	if _, err := r.ReadAt(b[:], p.Start+1024+0x38); err != nil {
		return false
	}
	return binary.LittleEndian.Uint16(b[:]) == 0xEF53
}

// ext4Partitions returns the partitions of d that hold an ext2/3/4 filesystem.
func ext4Partitions(d *disk, root string) []Partition {
	var out []Partition
	for _, p := range d.partitions(root) {
		if isExt4(d, p) {
			out = append(out, p)
		}
	}
	return out
}

// mountPartition is the real Config.MountPartition: a device node for the partition,
// the filesystem's modules (the boot environment has no modprobe for the kernel to
// call), mount(2). vfat is mounted read-only: it is only ever read back.
func (r *runner) mountPartition(diskName string, p Partition, fstype, target string) (func() error, error) {
	var mods []string
	var flags uintptr
	switch fstype {
	case "ext4":
		mods = []string{"ext4"}
	case "btrfs":
		// Flatcar's OEM partition (the Ignition config).
		mods = []string{"btrfs"}
	case "vfat":
		// The default codepage (437) and iocharset (ascii) are modules of their own.
		mods = []string{"vfat", "nls_cp437", "nls_ascii", "nls_utf8"}
		flags = unix.MS_RDONLY
	}
	if r.modules != nil {
		for _, m := range mods {
			if _, err := r.modules.Load(m); err != nil {
				// Built in, or already loaded; mount says if it is really missing.
				r.log.Debug("loading a filesystem module", "module", m, "err", err)
			}
		}
	}
	dev, err := partitionDevice(r.cfg.Root, r.devDir(), filepath.Join(r.cfg.RunDir, "dev"), diskName, p.Number, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount(dev, target, fstype, flags, ""); err != nil {
		return nil, fmt.Errorf("mount %s (%s) on %s: %w", dev, fstype, target, err)
	}
	return func() error {
		if err := unix.Unmount(target, 0); err != nil {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
		return nil
	}, nil
}

// mount is Config.MountPartition, else the real mount for block devices.
func (r *runner) mount(d *disk, p Partition, fstype, target string) (func() error, error) {
	if r.cfg.MountPartition != nil {
		return r.cfg.MountPartition(d.name, p, fstype, target)
	}
	if !d.block {
		return nil, fmt.Errorf("%s is not a block device: cannot mount its partitions", d.name)
	}
	return r.mountPartition(d.name, p, fstype, target)
}

// cloudInitDropIn finds the image's root filesystem (an ext4 partition holding
// etc/cloud), mounts it and writes the drop-in. It returns the partition's name.
func (r *runner) cloudInitDropIn(ctx context.Context, d *disk, seedURL string) (string, error) {
	parts := ext4Partitions(d, r.cfg.Root)
	if len(parts) == 0 {
		return "", errors.New("cloud-init drop-in: the image has no ext4 partition: use cloud-init mode cidata, or none if the image configures itself")
	}
	network, err := fetchDoc(ctx, r.cfg.HTTPClient, seedURL, "network-config")
	if err != nil {
		return "", fmt.Errorf("cloud-init drop-in: %w", err)
	}
	target := filepath.Join(r.cfg.RunDir, "target")
	var errs []error
	for _, p := range parts {
		name := partitionName(d.name, p.Number)
		unmount, err := r.mount(d, p, "ext4", target)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = func() error {
			root, err := os.OpenRoot(target)
			if err != nil {
				return err
			}
			defer root.Close()
			return writeDropIn(root, seedURL, network)
		}()
		uerr := unmount()
		if err == nil && uerr == nil {
			r.log.Info("cloud-init drop-in written", "partition", name, "file", DropInPath, "seedURL", seedURL)
			return name, nil
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		if uerr != nil {
			// Writing on under a filesystem that would not unmount risks the disk.
			return "", errors.Join(append(errs, uerr)...)
		}
	}
	err = errors.Join(errs...)
	if errors.Is(err, errNoCloudInit) || errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("cloud-init drop-in: no ext4 partition of the image has etc/cloud (is cloud-init installed in the image?): %w", err)
	}
	return "", fmt.Errorf("cloud-init drop-in: %w", err)
}
