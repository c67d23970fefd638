package agent

import (
	"bytes"
	"context"
	"os"
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
	const mib = 1 << 20
	size := int64(100 * mib)
	parts := []Partition{{Number: 1, Start: mib, Size: 10 * mib}, {Number: 2, Start: 11 * mib, Size: mib / 2}}
	// The image's GPT says its backup sits at 20 MiB (an image smaller than the disk).
	table := PartitionTable{Kind: "gpt", CurrentLBA: 1, BackupLBA: 20*mib/512 - 1}
	got := wipeRanges(size, parts, table, 512)
	want := [][2]int64{
		{0, 2 * mib},               // disk head + partition 1 head, merged
		{10 * mib, 11*mib + mib/2}, // partition 1 tail + partition 2 (smaller than 1 MiB), merged
		{19 * mib, 20 * mib},       // the image's backup GPT
		{99 * mib, 100 * mib},      // disk tail (its backup GPT)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("wipeRanges (-want +got):\n%s", diff)
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
	// ...while the middle of the filesystem is left alone: quick is quick.
	mid := img.partStart + 4<<20
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
