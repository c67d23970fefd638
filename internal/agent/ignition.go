package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Ignition mode (agentapi.CloudInitIgnition): Flatcar and Fedora CoreOS run Ignition
// once, in the initramfs of their first boot, and on bare metal (platform "metal") it
// finds its config on the disk itself, so the agent writes the config there and the
// host needs no network and no kernel argument for it:
//
//   - Flatcar mounts the filesystem labelled OEM (partition 6, btrfs with zlib
//     compression in current releases, ext4 in older ones) and reads config.ign at its
//     root. flatcar-install -i does the same: blkid LABEL=OEM, cp to oemfs/config.ign,
//     umask 077.
//   - Fedora CoreOS mounts /dev/disk/by-label/boot (partition 3, ext4) and copies
//     ignition/config.ign to /usr/lib/ignition/user.ign
//     (coreos-ignition-setup-user.sh); coreos-installer --ignition-file writes that
//     file, in a directory of mode 0700, the file 0600.
//
// Both images ship the first-boot marker (Flatcar: flatcar/first_boot on the ESP;
// FCOS: ignition.firstboot in /boot) that makes GRUB run Ignition, so a freshly written
// image needs nothing else. The config is the one the server rendered (with rackboot's
// phone-home unit), carried in the plan, written byte for byte with mode 0600: it may
// hold secrets (kubeadm join tokens).

// IgnitionTarget is where one OS family's Ignition reads a config installed on disk.
type IgnitionTarget struct {
	// OS names the family, for messages.
	OS string
	// Label is the filesystem label the OS's initramfs mounts the partition by; the GPT
	// partition name is accepted as well (both images set the two alike).
	Label string
	// FSTypes are the filesystems that partition may hold, as mount(2) names them.
	FSTypes []string
	// Path is where the config goes, relative to that filesystem's root.
	Path string
}

// IgnitionTargets are the places the agent knows, in the order they are described in
// messages.
func IgnitionTargets() []IgnitionTarget {
	return []IgnitionTarget{
		{OS: "Flatcar", Label: "OEM", FSTypes: []string{"btrfs", "ext4"}, Path: "config.ign"},
		{OS: "Fedora CoreOS", Label: "boot", FSTypes: []string{"ext4"}, Path: "ignition/config.ign"},
	}
}

// fsInfo is what a partition's superblock says: the filesystem type as mount(2) names
// it ("" when the agent does not recognise it) and its label.
type fsInfo struct {
	Type  string
	Label string
}

// probeFS reads the filesystem type and label of partition p of r from the
// superblocks, as blkid would for the types that matter here: ext2/3/4 (reported as
// ext4, whose driver mounts all three), btrfs, and, for messages, xfs and vfat.
func probeFS(r io.ReaderAt, p Partition) fsInfo {
	read := func(off int64, n int) []byte {
		if off+int64(n) > p.Size {
			return nil
		}
		b := make([]byte, n)
		if _, err := r.ReadAt(b, p.Start+off); err != nil {
			return nil
		}
		return b
	}
	// ext: the superblock is 1 KiB in, magic 0xEF53 at 0x38, s_volume_name at 0x78.
	if sb := read(1024, 0x78+16); sb != nil && binary.LittleEndian.Uint16(sb[0x38:]) == 0xEF53 {
		return fsInfo{Type: "ext4", Label: cString(sb[0x78:])}
	}
	// btrfs: the primary superblock is 64 KiB in, magic at 0x40, label at 0x12B (256
	// bytes, after the embedded dev_item).
	if sb := read(0x10000, 0x12B+256); sb != nil && string(sb[0x40:0x48]) == "_BHRfS_M" {
		return fsInfo{Type: "btrfs", Label: cString(sb[0x12B:])}
	}
	// xfs: "XFSB" at 0, sb_fname (12 bytes) at 0x6C.
	if sb := read(0, 0x6C+12); sb != nil && string(sb[:4]) == "XFSB" {
		return fsInfo{Type: "xfs", Label: cString(sb[0x6C:])}
	}
	// vfat: a boot sector whose extended BPB names the FAT type; the volume label sits
	// before it, padded with spaces ("NO NAME" when there is none).
	if bs := read(0, 512); bs != nil && bs[510] == 0x55 && bs[511] == 0xAA {
		var label []byte
		switch {
		case string(bs[0x52:0x57]) == "FAT32":
			label = bs[0x47:0x52]
		case string(bs[0x36:0x39]) == "FAT":
			label = bs[0x2B:0x36]
		default:
			return fsInfo{}
		}
		l := strings.TrimRight(string(label), " \x00")
		if l == "NO NAME" {
			l = ""
		}
		return fsInfo{Type: "vfat", Label: l}
	}
	return fsInfo{}
}

// cString is b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// probedPartition is a partition with what its superblock says.
type probedPartition struct {
	Partition
	FS fsInfo
}

// findIgnitionTarget picks the partition of disk diskName that gets the Ignition
// config: the one whose filesystem label (or GPT partition name) is a target's Label.
// None, more than one, or one holding a filesystem that target does not use is an
// error naming what was looked for and what the disk has: the agent never guesses
// where an OS reads its first-boot config.
func findIgnitionTarget(diskName string, parts []probedPartition) (probedPartition, IgnitionTarget, error) {
	type match struct {
		p probedPartition
		t IgnitionTarget
	}
	var matches []match
	for _, t := range IgnitionTargets() {
		for _, p := range parts {
			if p.FS.Label == t.Label || p.Name == t.Label {
				matches = append(matches, match{p, t})
			}
		}
	}
	switch len(matches) {
	case 0:
		return probedPartition{}, IgnitionTarget{}, fmt.Errorf("ignition: no partition of %s is where Flatcar or Fedora CoreOS reads its config: looked for %s; %s has %s. Is the image a Flatcar or Fedora CoreOS metal image? (cloud-init mode none writes it as it is)",
			diskName, describeTargets(), diskName, describeParts(diskName, parts))
	case 1:
	default:
		var found []string
		for _, m := range matches {
			found = append(found, fmt.Sprintf("%s (%s's %s)", partitionName(diskName, m.p.Number), m.t.OS, m.t.Label))
		}
		return probedPartition{}, IgnitionTarget{}, fmt.Errorf("ignition: more than one partition of %s could take the config: %s; an image has exactly one",
			diskName, strings.Join(found, ", "))
	}
	m := matches[0]
	for _, fstype := range m.t.FSTypes {
		if m.p.FS.Type == fstype {
			return m.p, m.t, nil
		}
	}
	what := "no filesystem the agent recognises"
	if m.p.FS.Type != "" {
		what = "a " + m.p.FS.Type + " filesystem"
	}
	return probedPartition{}, IgnitionTarget{}, fmt.Errorf("ignition: %s is labelled %s, %s's config partition, but holds %s; %s keeps it on %s",
		partitionName(diskName, m.p.Number), m.t.Label, m.t.OS, what, m.t.OS, strings.Join(m.t.FSTypes, " or "))
}

func describeTargets() string {
	var s []string
	for _, t := range IgnitionTargets() {
		s = append(s, fmt.Sprintf("a filesystem or GPT partition labelled %s (%s, %s, gets %s)", t.Label, t.OS, strings.Join(t.FSTypes, " or "), t.Path))
	}
	return strings.Join(s, " or ")
}

func describeParts(diskName string, parts []probedPartition) string {
	if len(parts) == 0 {
		return "no partition table the agent can read"
	}
	var s []string
	for _, p := range parts {
		d := partitionName(diskName, p.Number)
		if p.Type != "" && p.Name != "" {
			d += " named " + strconv.Quote(p.Name)
		}
		switch {
		case p.FS.Type == "":
			d += " (no filesystem recognised)"
		case p.FS.Label == "":
			d += " (" + p.FS.Type + ", no label)"
		default:
			d += " (" + p.FS.Type + " labelled " + strconv.Quote(p.FS.Label) + ")"
		}
		s = append(s, d)
	}
	return strings.Join(s, ", ")
}

// writeIgnitionConfig writes config to rel in the filesystem rooted at root (the
// mounted target partition) as the installers do: the directory, when it has to be
// created, 0700; the file 0600. It is written to a temporary name, fsynced and renamed
// over rel, and the directory fsynced, so a power cut leaves the old file or the new
// one, never a torn config Ignition would refuse. os.Root keeps a symlink in the image
// from pointing the write outside the filesystem. The file is read back before it
// counts as written.
func writeIgnitionConfig(root *os.Root, rel string, config []byte) error {
	dir := path.Dir(rel)
	if dir != "." {
		if err := root.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		if st, err := root.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("%s is not a directory in this filesystem (%v)", dir, err)
		}
	}
	tmp := rel + ".rackboot-tmp"
	if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove a stale %s: %w", tmp, err)
	}
	f, err := root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	_, err = f.Write(config)
	if err == nil {
		// Whatever the umask: the config may hold secrets.
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("write %s: %w", rel, err)
	}
	if d, err := root.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("fsync %s: %w", dir, err)
		}
	}
	got, err := root.ReadFile(rel)
	if err != nil {
		return fmt.Errorf("read %s back: %w", rel, err)
	}
	if !bytes.Equal(got, config) {
		return fmt.Errorf("%s reads back as %d bytes differing from the %d written", rel, len(got), len(config))
	}
	return nil
}

// installIgnition finds the partition of d where the image's Ignition reads its config,
// mounts it, writes config there and unmounts it. It returns the partition's name.
func (r *runner) installIgnition(d *disk, config []byte) (string, error) {
	var parts []probedPartition
	for _, p := range d.partitions(r.cfg.Root) {
		parts = append(parts, probedPartition{Partition: p, FS: probeFS(d, p)})
	}
	pp, t, err := findIgnitionTarget(d.name, parts)
	if err != nil {
		return "", err
	}
	name := partitionName(d.name, pp.Number)
	target := filepath.Join(r.cfg.RunDir, "ignition")
	unmount, err := r.mount(d, pp.Partition, pp.FS.Type, target)
	if err != nil {
		return "", fmt.Errorf("ignition: %s (%s's %s partition): %w", name, t.OS, t.Label, err)
	}
	err = func() error {
		root, err := os.OpenRoot(target)
		if err != nil {
			return err
		}
		defer root.Close()
		return writeIgnitionConfig(root, t.Path, config)
	}()
	// Unmounting writes the filesystem's own metadata back; a failure there is a
	// failure of the write.
	if uerr := unmount(); uerr != nil {
		err = errors.Join(err, uerr)
	}
	if err != nil {
		return "", fmt.Errorf("ignition: %s (%s's %s partition, %s): %w", name, t.OS, t.Label, pp.FS.Type, err)
	}
	r.log.Info("Ignition config written", "partition", name, "os", t.OS, "fstype", pp.FS.Type, "file", t.Path, "bytes", len(config))
	return name, nil
}
