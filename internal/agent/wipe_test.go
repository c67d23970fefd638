package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGPTRoundTrip(t *testing.T) {
	const size = 64 << 20
	d, _ := newDiskFile(t, size, 0)
	parts := []Partition{
		{Number: 1, Start: 1 << 20, Size: 8 << 20, Type: GPTTypeESP, Name: "EFI system"},
		{Number: 3, Start: 16 << 20, Size: 40 << 20, Type: GPTTypeLinux, Name: "root"},
	}
	if err := WriteGPT(d, size, 512, parts); err != nil {
		t.Fatal(err)
	}
	got, err := readPartitionTable(d, size, 512)
	if err != nil {
		t.Fatal(err)
	}
	want := PartitionTable{Kind: "gpt", Partitions: parts, CurrentLBA: 1, BackupLBA: size/512 - 1,
		FirstUsableLBA: 34, LastUsableLBA: size/512 - 34, PrimaryValid: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("partition table (-want +got):\n%s", diff)
	}

	// With the primary header gone, the backup at the last LBA still describes the disk.
	if _, err := d.WriteAt(make([]byte, 512), 512); err != nil {
		t.Fatal(err)
	}
	got, err = readPartitionTable(d, size, 512)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != "gpt" || got.PrimaryValid || len(got.Partitions) != 2 || got.CurrentLBA != size/512-1 {
		t.Errorf("from the backup GPT: %+v", got)
	}

	// A corrupted entry array fails its checksum in both copies: what is left is the
	// protective MBR, whose 0xEE entry is not a partition.
	if _, err := d.WriteAt([]byte{0xFF}, 2*512+56); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt([]byte{0xFF}, (size/512-33)*512+56); err != nil {
		t.Fatal(err)
	}
	got, _ = readPartitionTable(d, size, 512)
	if got.Kind != "mbr" || len(got.Partitions) != 0 {
		t.Errorf("with both GPT copies broken: %+v, want an MBR with no partitions", got)
	}
}

func TestGPTReadBySfdiskTools(t *testing.T) {
	// blkid must agree that what WriteGPT writes is a GPT with the partition in it.
	img := buildTestImage(t, 16<<20, map[string]string{"etc/hostname": "x\n"})
	p := writeTemp(t, img.data)
	if got := signatures(t, p, img.partStart); !strings.Contains(got, "gpt") || !strings.Contains(got, "ext4 at 1048576") {
		t.Errorf("signatures of a fresh image = %q, want gpt and ext4", got)
	}
}

func TestMBR(t *testing.T) {
	d, _ := newDiskFile(t, 4<<20, 0)
	mbr := make([]byte, 512)
	e := mbr[446:]
	e[4] = 0x83
	putLE32(e[8:], 2048)
	putLE32(e[12:], 4096)
	e = mbr[446+16:]
	e[4] = 0x82
	putLE32(e[8:], 6144)
	putLE32(e[12:], 1024)
	mbr[510], mbr[511] = 0x55, 0xAA
	if _, err := d.WriteAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	got, err := readPartitionTable(d, 4<<20, 512)
	if err != nil {
		t.Fatal(err)
	}
	want := PartitionTable{Kind: "mbr", Partitions: []Partition{
		{Number: 1, Start: 2048 * 512, Size: 4096 * 512, Type: "mbr:83"},
		{Number: 2, Start: 6144 * 512, Size: 1024 * 512, Type: "mbr:82"},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("MBR (-want +got):\n%s", diff)
	}
}

func putLE32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

func writeTemp(t testing.TB, data []byte) string {
	t.Helper()
	p := t.TempDir() + "/disk.img"
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWipeRanges(t *testing.T) {
	const kib, mib, gib = 1 << 10, 1 << 20, 1 << 30
	for _, tc := range []struct {
		name  string
		size  int64
		parts []Partition
		table PartitionTable
		want  [][2]int64
	}{
		{
			name:  "partitions and an image's GPT shorter than the disk",
			size:  100 * mib,
			parts: []Partition{{Number: 1, Start: mib, Size: 10 * mib}, {Number: 2, Start: 11 * mib, Size: mib / 2}},
			// The image's GPT says its backup sits at 20 MiB.
			table: PartitionTable{Kind: "gpt", CurrentLBA: 1, BackupLBA: 20*mib/512 - 1},
			want: [][2]int64{
				{0, 2*mib + 4*kib},         // disk head, its 1 and 2 MiB copies, partition 1 head and its 1 MiB copy
				{3 * mib, 3*mib + 4*kib},   // partition 1's 2 MiB copy
				{4 * mib, 4*mib + 4*kib},   // the disk's 4 MiB copy
				{5 * mib, 5*mib + 4*kib},   // partition 1's 4 MiB copy
				{10 * mib, 11*mib + mib/2}, // partition 1 tail + partition 2 (smaller than 1 MiB), merged
				{19 * mib, 20 * mib},       // the image's backup GPT
				{64 * mib, 64*mib + 4*kib}, // the disk's first btrfs mirror
				{99 * mib, 100 * mib},      // disk tail (its backup GPT)
			},
		},
		{
			name: "a disk large enough for btrfs's second mirror",
			size: 300 * gib,
			want: [][2]int64{
				{0, mib + 4*kib},
				{2 * mib, 2*mib + 4*kib},
				{4 * mib, 4*mib + 4*kib},
				{64 * mib, 64*mib + 4*kib},
				{256 * gib, 256*gib + 4*kib},
				{300*gib - mib, 300 * gib},
			},
		},
		{
			// Partition 1 is exactly 64 MiB: its mirror would start where it ends,
			// in the gap before partition 2, so it is not there to zero.
			name:  "copies only where they fit in their partition",
			size:  200 * mib,
			parts: []Partition{{Number: 1, Start: mib, Size: 64 * mib}, {Number: 2, Start: 70 * mib, Size: 100 * mib}},
			want: [][2]int64{
				{0, 2*mib + 4*kib},
				{3 * mib, 3*mib + 4*kib},
				{4 * mib, 4*mib + 4*kib},
				{5 * mib, 5*mib + 4*kib},
				{64 * mib, 65 * mib}, // partition 1 tail, holding the disk's 64 MiB copy
				{70 * mib, 71*mib + 4*kib},
				{72 * mib, 72*mib + 4*kib},
				{74 * mib, 74*mib + 4*kib},
				{134 * mib, 134*mib + 4*kib}, // partition 2's btrfs mirror
				{169 * mib, 170 * mib},
				{199 * mib, 200 * mib},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := wipeRanges(tc.size, tc.parts, tc.table, 512)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("wipeRanges (-want +got):\n%s", diff)
			}
		})
	}
}

func TestQuickWipe(t *testing.T) {
	const size = 32 << 20
	// The disk is larger than the image: the image's backup GPT is not at the disk's
	// end, and a quick wipe must find it anyway.
	img := buildTestImage(t, 24<<20, map[string]string{"etc/cloud/cloud.cfg": "x: 1\n"})
	d, p := newDiskFile(t, size, 0)
	if _, err := d.WriteAt(img.data, 0); err != nil {
		t.Fatal(err)
	}
	// A stale GPT copy at the disk's end, left by an earlier provisioning.
	if err := WriteGPT(d, size, 512, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(img.data[:34*512], 0); err != nil {
		t.Fatal(err)
	}
	if got := signatures(t, p, img.partStart); !strings.Contains(got, "ext4") {
		t.Fatalf("before the wipe, signatures = %q", got)
	}
	n, err := quickWipe(t.TempDir(), d)
	if err != nil {
		t.Fatal(err)
	}
	if got := signatures(t, p, img.partStart); got != "" {
		t.Errorf("after a quick wipe, signatures = %q, want none", got)
	}
	after, _ := os.ReadFile(p)
	// Both ends of the disk and of the image's extent are zero...
	for _, r := range [][2]int64{{0, 2 << 20}, {23 << 20, 24 << 20}, {31 << 20, 32 << 20}} {
		if !allZero(after[r[0]:r[1]]) {
			t.Errorf("bytes %d-%d are not zero after a quick wipe", r[0], r[1])
		}
	}
	// ...while the middle of the filesystem is left alone: quick is quick. 8 MiB in is
	// ext4's first backup superblock (mkfs.ext4 picks 1 KiB blocks for a filesystem
	// this small), which libblkid does not probe.
	mid := img.partStart + 8<<20
	if allZero(img.data[mid : mid+4096]) {
		t.Fatalf("the test image holds nothing at %d to check a quick wipe leaves alone", mid)
	}
	if !bytes.Equal(after[mid:mid+4096], img.data[mid:mid+4096]) {
		t.Error("a quick wipe rewrote the middle of the partition")
	}
	if n <= 0 || n > 8<<20 {
		t.Errorf("quick wipe zeroed %d bytes, want a few MiB", n)
	}
	if tab, _ := readPartitionTable(d, size, 512); len(tab.Partitions) != 0 {
		t.Errorf("a partition table survived the wipe: %+v", tab)
	}
}

func TestFullWipe(t *testing.T) {
	const size = 200<<20 + 4096 // not a multiple of the 64 MiB chunk
	d, p := newDiskFile(t, size, 0xA5)
	var marks [][2]int64
	if err := fullWipe(context.Background(), d, func(done, total int64) { marks = append(marks, [2]int64{done, total}) }); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(p)
	if !allZero(after) {
		t.Error("a full wipe left non-zero bytes")
	}
	want := [][2]int64{{64 << 20, size}, {128 << 20, size}, {192 << 20, size}, {size, size}}
	if diff := cmp.Diff(want, marks); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := fullWipe(ctx, d, nil); err == nil {
		t.Error("a full wipe with a cancelled context succeeded")
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestQuickWipeBtrfsMirrors wipes real btrfs filesystems (mkfs.btrfs) and checks that
// no tool finds them afterwards: not libblkid (wipefs, blkid), which reads only the
// primary superblock, and not btrfs-progs, whose super-recover rebuilds the primary from
// a mirror that survived.
func TestQuickWipeBtrfsMirrors(t *testing.T) {
	requireTool(t, "mkfs.btrfs", "btrfs")
	const mib, gib = 1 << 20, 1 << 30
	for _, tc := range []struct {
		name    string
		size    int64
		part    *Partition // where the filesystem is; nil: the whole disk
		mirrors []int64    // superblock mirrors mkfs.btrfs writes, from the filesystem's start
	}{
		{name: "whole disk", size: 300 * mib, mirrors: []int64{64 * mib}},
		// Sparse: mkfs.btrfs writes about 5 MB of it.
		{name: "whole disk past 256 GiB", size: 257 * gib, mirrors: []int64{64 * mib, 256 * gib}},
		{
			name:    "Flatcar-like OEM partition",
			size:    400 * mib,
			part:    &Partition{Number: 6, Start: 5 * mib, Size: 128 * mib, Type: GPTTypeLinux, Name: "OEM"},
			mirrors: []int64{64 * mib},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "vda")
			start, fsSize := int64(0), tc.size
			if tc.part != nil {
				start, fsSize = tc.part.Start, tc.part.Size
			}
			f := createSparse(t, p, tc.size)
			if tc.part == nil {
				mkfsBtrfs(t, p)
			} else {
				if err := WriteGPT(f, tc.size, 512, []Partition{*tc.part}); err != nil {
					t.Fatal(err)
				}
				fs := filepath.Join(t.TempDir(), "oem.img")
				src := createSparse(t, fs, fsSize)
				mkfsBtrfs(t, fs)
				copySparse(t, f, start, src, 0, fsSize)
			}
			if got := signatures(t, p, start); !strings.Contains(got, "btrfs") {
				t.Fatalf("before the wipe, signatures = %q, want btrfs", got)
			}
			for _, m := range tc.mirrors {
				if !hasBtrfsMagic(t, f, start+m) {
					t.Fatalf("mkfs.btrfs wrote no superblock mirror %d bytes into the filesystem: the test could not tell a wipe from no mirror", m)
				}
			}

			quickWipeFile(t, p)

			if got := signatures(t, p, start); got != "" {
				t.Errorf("after a quick wipe, signatures = %q, want none", got)
			}
			for _, m := range tc.mirrors {
				if hasBtrfsMagic(t, f, start+m) {
					t.Errorf("the btrfs superblock mirror %d bytes into the filesystem survived a quick wipe", m)
				}
			}
			// What btrfs-progs can bring back: the filesystem's extent on its own.
			fs := p
			if tc.part != nil {
				fs = filepath.Join(t.TempDir(), "part.img")
				copySparse(t, createSparse(t, fs, fsSize), 0, f, start, fsSize)
			}
			out, _ := exec.Command("btrfs", "rescue", "super-recover", "-y", fs).CombinedOutput()
			// blkid exits 2 when it finds nothing.
			if b, _ := exec.Command("blkid", "-p", "-o", "udev", fs).Output(); len(b) != 0 {
				t.Errorf("btrfs rescue super-recover brought the filesystem back after a quick wipe:\n%s\nblkid: %s", out, b)
			}
		})
	}
}

// TestQuickWipeSignatureCopies checks the copies libblkid finds beyond a device's first
// MiB: LUKS2 secondary headers and VMFS headers. cryptsetup and vmkfstools are not here,
// so the headers are written by hand, with what libblkid checks.
func TestQuickWipeSignatureCopies(t *testing.T) {
	const mib = 1 << 20
	luks2 := func(off int64) []byte {
		h := make([]byte, 4096)
		copy(h, "SKUL\xba\xbe")
		binary.BigEndian.PutUint16(h[6:], 2)
		binary.BigEndian.PutUint64(h[8:], uint64(off)) // header size: the secondary follows the primary
		copy(h[168:], "0b8e2c4f-6d1a-4e57-9c3b-2f7a1d5e8c90")
		binary.BigEndian.PutUint64(h[256:], uint64(off)) // where this copy is
		return h
	}
	for _, tc := range []struct {
		name   string
		off    int64
		header []byte
		want   string
	}{
		{"LUKS2 secondary header at 1 MiB", 1 * mib, luks2(1 * mib), "crypto_LUKS"},
		{"LUKS2 secondary header at 2 MiB", 2 * mib, luks2(2 * mib), "crypto_LUKS"},
		{"LUKS2 secondary header at 4 MiB", 4 * mib, luks2(4 * mib), "crypto_LUKS"},
		{"VMFS volume header", 1 * mib, []byte{0x0d, 0xd0, 0x01, 0xc0}, "VMFS_volume_member"},
		{"VMFS filesystem header", 2 * mib, []byte{0x5e, 0xf1, 0xab, 0x2f}, "VMFS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "vda")
			f := createSparse(t, p, 16*mib)
			if _, err := f.WriteAt(tc.header, tc.off); err != nil {
				t.Fatal(err)
			}
			if got := signatures(t, p); !strings.Contains(got, tc.want) {
				t.Fatalf("before the wipe, signatures = %q, want %s", got, tc.want)
			}
			quickWipeFile(t, p)
			if got := signatures(t, p); got != "" {
				t.Errorf("after a quick wipe, signatures = %q, want none", got)
			}
		})
	}
}

// quickWipeFile quick-wipes the disk file p as the agent wipes a disk.
func quickWipeFile(t testing.TB, p string) {
	t.Helper()
	d, err := openDisk(filepath.Dir(p), filepath.Base(p))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := quickWipe(t.TempDir(), d); err != nil {
		t.Fatal(err)
	}
}

// createSparse creates the file p of size bytes with nothing allocated.
func createSparse(t testing.TB, p string, size int64) *os.File {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatalf("a sparse file of %d bytes in %s: %v", size, filepath.Dir(p), err)
	}
	return f
}

func mkfsBtrfs(t testing.TB, p string) {
	t.Helper()
	if out, err := exec.Command("mkfs.btrfs", "-q", "-f", p).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.btrfs %s: %v: %s", p, err, out)
	}
}

// copySparse copies n bytes of src at srcOff to dst at dstOff, skipping MiBs that are
// all zero so both files stay sparse.
func copySparse(t testing.TB, dst *os.File, dstOff int64, src *os.File, srcOff, n int64) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for done := int64(0); done < n; done += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), n-done)]
		if _, err := src.ReadAt(b, srcOff+done); err != nil {
			t.Fatal(err)
		}
		if allZero(b) {
			continue
		}
		if _, err := dst.WriteAt(b, dstOff+done); err != nil {
			t.Fatal(err)
		}
	}
}

// hasBtrfsMagic reports whether a btrfs superblock (its magic, 64 bytes in) is at off.
func hasBtrfsMagic(t testing.TB, f *os.File, off int64) bool {
	t.Helper()
	b := make([]byte, 8)
	if _, err := f.ReadAt(b, off+0x40); err != nil {
		t.Fatal(err)
	}
	return string(b) == "_BHRfS_M"
}
