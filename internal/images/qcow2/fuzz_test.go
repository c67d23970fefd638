package qcow2

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os/exec"
	"path/filepath"
	"testing"
)

// fuzzMaxSize bounds the virtual size the fuzz body streams: work is proportional to
// it, and a header may claim up to 2^61 bytes.
const fuzzMaxSize = 4 << 20

// FuzzOpen opens and streams arbitrary bytes: nothing may panic, and what streams must
// be exactly Size bytes with a map that covers them. Run it with a short minimization
// time, or it spends its time minimizing kilobyte-sized images byte by byte:
//
//	go test -run '^$' -fuzz FuzzOpen -fuzztime 60s -fuzzminimizetime 3s ./internal/images/qcow2
func FuzzOpen(f *testing.F) {
	// A hand-made v3 header with one L1 entry and no tables, so the seed corpus has
	// something without qemu-img.
	hdr := make([]byte, 512)
	be := binary.BigEndian
	copy(hdr, Magic)
	be.PutUint32(hdr[4:], 3)
	be.PutUint32(hdr[20:], 9)     // 512-byte clusters
	be.PutUint64(hdr[24:], 4096)  // virtual size
	be.PutUint32(hdr[36:], 1)     // l1_size
	be.PutUint64(hdr[40:], 256*2) // past the file: refused
	be.PutUint32(hdr[100:], 104)
	f.Add(hdr)

	if _, err := exec.LookPath("qemu-img"); err == nil {
		dir := f.TempDir()
		// Small images of every kind, from a raw disk with data, zeros and a hole.
		// Seeds are kept small (the fuzzer minimizes what it finds byte by byte):
		// 512-byte clusters, except for extended L2 entries, which need 16 KiB.
		writeRaw(f, filepath.Join(dir, "disk.raw"), rawLayout{size: 8 << 10, data: [][2]int64{{0, 1000}, {2500, 1000}, {5 << 10, 100}}}, 3)
		for i, args := range [][]string{
			{"-o", "compat=0.10,cluster_size=512"},
			{"-o", "cluster_size=512"},
			{"-c", "-o", "cluster_size=512"},
			{"-c", "-o", "cluster_size=512,compression_type=zstd"},
		} {
			name := filepath.Join(dir, string(rune('a'+i))+".qcow2")
			qemu(f, dir, "qemu-img", append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, args...), "disk.raw", name)...)
			f.Add(readFile(f, name))
		}
		// Zero clusters, and subclusters.
		for name, opts := range map[string]string{"z.qcow2": "cluster_size=512", "s.qcow2": "cluster_size=16k,extended_l2=on"} {
			qemu(f, dir, "qemu-img", "create", "-f", "qcow2", "-o", opts, name, "20k")
			qemu(f, dir, "qemu-io", "-c", "write -P 1 1k 2k", "-c", "write -z 8k 1k", "-c", "write -P 2 4k 1k",
				"-c", "write -z 4k 512", "-c", "write -P 3 17k 1k", "-f", "qcow2", name)
			f.Add(readFile(f, filepath.Join(dir, name)))
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if img.Size() < 0 || img.Size() > fuzzMaxSize {
			return
		}
		ctx := context.Background()
		var extents []Extent
		mapErr := img.Extents(ctx, func(e Extent) error {
			extents = append(extents, e)
			return nil
		})
		if mapErr == nil {
			checkCover(t, extents, img.Size())
		}
		n, err := img.Stream(ctx, io.Discard, nil)
		if err == nil && n != img.Size() {
			t.Fatalf("Stream wrote %d bytes without error, want %d", n, img.Size())
		}
		if err == nil && mapErr != nil {
			t.Fatalf("Stream succeeded where Extents failed: %v", mapErr)
		}
	})
}
