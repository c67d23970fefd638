package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/rackboot/rackboot/agentapi"
)

// wipeEdge is how much of each end of a disk and of each partition a quick wipe zeroes:
// it covers the protective MBR and primary GPT (first 34 sectors), the backup GPT (last
// 33), filesystem superblocks (ext4 at 1 KiB, XFS at 0, btrfs at 64 KiB), LVM labels
// (second sector), MD RAID 1.0/0.90 superblocks (the last 64-128 KiB), ZFS labels (the
// first and last 512 KiB) and LUKS2 secondary headers up to 512 KiB.
const wipeEdge = 1 << 20

// signatureCopies are the offsets, from the start of a disk or partition, of signature
// copies beyond its first and last wipeEdge that tools still find once the primary is
// gone; a quick wipe zeroes sigCopySize bytes at each one that fits in the extent:
//   - 1, 2 and 4 MiB: the LUKS2 secondary header, which sits at the primary header's
//     size (16 KiB to 4 MiB); libblkid (wipefs, blkid) and cryptsetup find it there.
//     The same 1 and 2 MiB are where VMFS (ESXi) keeps its volume and filesystem
//     headers, which libblkid reports too.
//   - 64 MiB and 256 GiB: btrfs's superblock mirrors (the primary is at 64 KiB). libblkid
//     looks only at the primary, but `btrfs rescue super-recover` rebuilds it from a
//     mirror, bringing back a filesystem the wipe was meant to end: a Flatcar disk's
//     OEM partition (128 MiB) can be btrfs. There is no third mirror: btrfs writes
//     three copies in all, and 1 PiB, which GRUB also reads, is never written.
//
// What else libblkid probes lies within wipeEdge of one end. The exception is Promise
// FastTrack RAID metadata, up to 3087 sectors before a whole disk's end: left alone.
func signatureCopies() []int64 {
	return []int64{1 << 20, 2 << 20, 4 << 20, 64 << 20, 256 << 30}
}

// sigCopySize covers a btrfs superblock and a LUKS2 binary header (4 KiB each) and the
// magic of a VMFS header.
const sigCopySize = 4 << 10

// wipeRanges is the byte ranges a quick wipe zeroes on a disk of size bytes with parts:
// the first and last wipeEdge of the disk and of every partition and the signature
// copies inside each of them, and the place a GPT's backup header sits when it is not
// at the end of the disk (an image written to a larger disk keeps its backup GPT at the
// image's end). Ranges are sorted and merged.
func wipeRanges(size int64, parts []Partition, t PartitionTable, sector int) [][2]int64 {
	var rs [][2]int64
	add := func(off, n int64) {
		if off < 0 {
			n += off
			off = 0
		}
		if off+n > size {
			n = size - off
		}
		if n > 0 {
			rs = append(rs, [2]int64{off, off + n})
		}
	}
	extent := func(start, n int64) {
		add(start, min(n, wipeEdge))
		tail := max(start, start+n-wipeEdge)
		add(tail, start+n-tail)
		// A copy that does not fit was never written, and zeroing past the extent's
		// end would hit the next partition.
		for _, off := range signatureCopies() {
			if off+sigCopySize <= n {
				add(start+off, sigCopySize)
			}
		}
	}
	extent(0, size)
	for _, p := range parts {
		extent(p.Start, p.Size)
	}
	if t.Kind == "gpt" {
		ss := int64(sector)
		for _, lba := range []uint64{t.BackupLBA, t.CurrentLBA} {
			if lba > 1 {
				end := (int64(lba) + 1) * ss
				add(end-wipeEdge, wipeEdge)
			}
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	var merged [][2]int64
	for _, r := range rs {
		if n := len(merged); n > 0 && r[0] <= merged[n-1][1] {
			merged[n-1][1] = max(merged[n-1][1], r[1])
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

// quickWipe zeroes the ranges wipeRanges names, flushes and makes the kernel forget the
// old partitions. It returns the number of bytes zeroed.
func quickWipe(root string, d *disk) (int64, error) {
	t, _ := readPartitionTable(d, d.size, d.sector)
	parts := d.partitions(root)
	buf := make([]byte, wipeEdge)
	var n int64
	for _, r := range wipeRanges(d.size, parts, t, d.sector) {
		if err := d.zeroRange(r[0], r[1]-r[0], buf); err != nil {
			return n, err
		}
		n += r[1] - r[0]
	}
	if err := d.sync(); err != nil {
		return n, err
	}
	return n, d.rereadPartitions()
}

// fullWipe zeroes every byte of the disk in chunks, reporting progress after each.
func fullWipe(ctx context.Context, d *disk, progress func(done, total int64)) error {
	const chunk = 64 << 20
	buf := make([]byte, 4<<20)
	for off := int64(0); off < d.size; off += chunk {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("full wipe of %s stopped at byte %d: %w", d.name, off, err)
		}
		if err := d.zeroRange(off, min(chunk, d.size-off), buf); err != nil {
			return err
		}
		if progress != nil {
			progress(min(off+chunk, d.size), d.size)
		}
	}
	if err := d.sync(); err != nil {
		return err
	}
	return d.rereadPartitions()
}

// wipeDisks wipes the named disks (all fixed disks when names is empty) in mode and
// returns the ones wiped.
func (r *runner) wipeDisks(ctx context.Context, names []string, mode agentapi.WipeMode) ([]string, error) {
	if len(names) == 0 {
		for _, d := range r.facts.Disks {
			if !d.Removable && !d.ReadOnly && d.SizeBytes > 0 {
				names = append(names, d.Name)
			}
		}
	}
	if len(names) == 0 {
		return nil, errors.New("no fixed disks to wipe: is the storage driver in the boot environment?")
	}
	var wiped []string
	for _, name := range names {
		name = trimDev(name)
		d, err := openDisk(r.devDir(), name)
		if err != nil {
			return wiped, err
		}
		r.progress(agentapi.Progress{Phase: agentapi.PhaseWipe, Disk: name, BytesTotal: d.size, Message: string(mode) + " wipe"})
		switch mode {
		case agentapi.WipeFull:
			err = fullWipe(ctx, d, r.rateLimited(agentapi.PhaseWipe, name))
		default:
			_, err = quickWipe(r.cfg.Root, d)
		}
		d.Close()
		if err != nil {
			return wiped, fmt.Errorf("wipe %s: %w", name, err)
		}
		r.log.Info("disk wiped", "disk", name, "mode", mode)
		wiped = append(wiped, name)
	}
	return wiped, nil
}
