package qcow2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/flate"
)

// imageCase builds a qcow2 image in dir and returns its path.
type imageCase struct {
	name  string
	build func(tb testing.TB, dir string) string
	// version, cluster size and compression Open must report.
	version     int
	clusterSize int
	compression string
}

// converted is a case made by qemu-img convert from the test layout's raw image.
func converted(name string, version, clusterSize int, compression string, args ...string) imageCase {
	return convertedFrom(testLayout, name, version, clusterSize, compression, args...)
}

// dataAtEnd has data up to its end, which is inside a cluster, so that the last
// cluster is allocated (or compressed) and only partly within the disk.
var dataAtEnd = rawLayout{size: 1<<20 + 1536, data: [][2]int64{{0, 4096}, {1<<20 - 10000, 10000 + 1536}}}

func convertedFrom(layout rawLayout, name string, version, clusterSize int, compression string, args ...string) imageCase {
	return imageCase{
		name: name, version: version, clusterSize: clusterSize, compression: compression,
		build: func(tb testing.TB, dir string) string {
			writeRaw(tb, filepath.Join(dir, "disk.raw"), layout, 1)
			qemu(tb, dir, "qemu-img", append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, args...), "disk.raw", "disk.qcow2")...)
			return filepath.Join(dir, "disk.qcow2")
		},
	}
}

// written is a case made by qemu-img create and then qemu-io writes, which leave
// v3 zero clusters (write -z) and, with extended L2 entries, subclusters.
func written(name string, clusterSize int, size string, opts string, ops ...string) imageCase {
	return imageCase{
		name: name, version: 3, clusterSize: clusterSize, compression: "zlib",
		build: func(tb testing.TB, dir string) string {
			args := []string{"create", "-f", "qcow2"}
			if opts != "" {
				args = append(args, "-o", opts)
			}
			qemu(tb, dir, "qemu-img", append(args, "disk.qcow2", size)...)
			var io []string
			for _, op := range ops {
				io = append(io, "-c", op)
			}
			qemu(tb, dir, "qemu-io", append(io, "-f", "qcow2", "disk.qcow2")...)
			return filepath.Join(dir, "disk.qcow2")
		},
	}
}

var imageCases = []imageCase{
	converted("v2", 2, 64<<10, "zlib", "-o", "compat=0.10"),
	converted("v3", 3, 64<<10, "zlib", "-o", "compat=1.1"),
	converted("v2-zlib", 2, 64<<10, "zlib", "-c", "-o", "compat=0.10"),
	converted("v3-zlib", 3, 64<<10, "zlib", "-c"),
	converted("v3-zstd", 3, 64<<10, "zstd", "-c", "-o", "compression_type=zstd"),
	converted("cluster-512", 3, 512, "zlib", "-o", "cluster_size=512"),
	converted("cluster-512-zlib", 3, 512, "zlib", "-c", "-o", "cluster_size=512"),
	converted("cluster-2M", 3, 2<<20, "zlib", "-o", "cluster_size=2M"),
	converted("cluster-2M-zstd", 3, 2<<20, "zstd", "-c", "-o", "cluster_size=2M,compression_type=zstd"),
	converted("extended-l2", 3, 64<<10, "zlib", "-o", "extended_l2=on"),
	converted("extended-l2-zstd", 3, 64<<10, "zstd", "-c", "-o", "extended_l2=on,compression_type=zstd"),
	convertedFrom(dataAtEnd, "partial-last-cluster", 3, 64<<10, "zlib"),
	convertedFrom(dataAtEnd, "partial-last-cluster-zlib", 3, 64<<10, "zlib", "-c"),
	convertedFrom(dataAtEnd, "partial-last-cluster-zstd", 3, 64<<10, "zstd", "-c", "-o", "compression_type=zstd"),
	written("zero-clusters", 64<<10, "5M", "",
		"write -P 0xab 1M 64k", "write -z 3M 64k",
		// Data, then zeroed in place: an allocated zero cluster.
		"write -P 0xcd 2M 128k", "write -z 2M 64k",
		"write -P 0xef 4M 1k"),
	written("zero-clusters-unmapped", 64<<10, "1M", "",
		"write -P 0x12 0 512k", "write -z -u 128k 128k", "write -z 300k 70k"),
	written("subclusters", 32<<10, "1M", "extended_l2=on,cluster_size=32k",
		"write -P 0x11 0 1k", "write -P 0x22 35k 2k", "write -z 64k 32k",
		"write -P 0x33 200k 64k", "write -z 210k 4k", "write -P 0x44 1000k 24k"),
	written("odd-size", 64<<10, "1000001", "", "write -P 0x55 960k 16k"),
}

func TestStreamMatchesQemuImg(t *testing.T) {
	needQemuImg(t)
	for _, tc := range imageCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := tc.build(t, dir)
			qemu(t, dir, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", path, "want.raw")
			want := readFile(t, filepath.Join(dir, "want.raw"))

			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			img, err := Open(f, st.Size())
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			type props struct {
				Size        int64
				Version     int
				ClusterSize int
				Compression string
			}
			if diff := cmp.Diff(props{int64(len(want)), tc.version, tc.clusterSize, tc.compression},
				props{img.Size(), img.Version(), img.ClusterSize(), img.Compression()}); diff != "" {
				t.Errorf("image properties (-want +got):\n%s", diff)
			}

			var got bytes.Buffer
			var last int64
			n, err := img.Stream(context.Background(), &got, func(done int64) {
				if done <= last {
					t.Errorf("progress went from %d to %d", last, done)
				}
				last = done
			})
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			if n != img.Size() || last != img.Size() {
				t.Errorf("Stream wrote %d bytes and last reported %d, want %d", n, last, img.Size())
			}
			if sha256.Sum256(got.Bytes()) != sha256.Sum256(want) {
				t.Fatalf("streamed bytes differ from qemu-img convert -O raw: %s", firstDiff(got.Bytes(), want))
			}

			// The map: contiguous, zero extents really zero, and exactly what qemu
			// reports as holding no data.
			var extents, zeros []Extent
			if err := img.Extents(context.Background(), func(e Extent) error {
				extents = append(extents, e)
				if e.Zero {
					zeros = append(zeros, e)
				}
				return nil
			}); err != nil {
				t.Fatalf("Extents: %v", err)
			}
			checkCover(t, extents, img.Size())
			for _, e := range zeros {
				if i := bytes.IndexFunc(want[e.Offset:e.Offset+e.Length], func(r rune) bool { return r != 0 }); i >= 0 {
					t.Errorf("zero extent %+v has a non-zero byte at %d", e, e.Offset+int64(i))
				}
			}
			if diff := cmp.Diff(qemuZeroMap(t, path), zeros); diff != "" {
				t.Errorf("zero extents differ from qemu-img map's data:false (-qemu +ours):\n%s", diff)
			}

			// Walk reports the same map, with data runs in pieces.
			var walked []Extent
			if err := img.Walk(context.Background(), func(e Extent, data []byte) error {
				if e.Zero != (data == nil) || !e.Zero && int64(len(data)) != e.Length {
					t.Errorf("extent %+v came with %d bytes of data", e, len(data))
				}
				if n := len(walked); n > 0 && walked[n-1].Zero == e.Zero {
					walked[n-1].Length += e.Length
				} else {
					walked = append(walked, e)
				}
				return nil
			}); err != nil {
				t.Fatalf("Walk: %v", err)
			}
			if diff := cmp.Diff(extents, walked); diff != "" {
				t.Errorf("Walk's extents, merged, differ from Extents (-Extents +Walk):\n%s", diff)
			}
		})
	}
}

// checkCover checks that extents cover [0, size) in order, alternating kinds.
func checkCover(tb testing.TB, extents []Extent, size int64) {
	tb.Helper()
	var next int64
	for i, e := range extents {
		if e.Offset != next || e.Length <= 0 {
			tb.Fatalf("extent %d %+v does not follow at %d", i, e, next)
		}
		if i > 0 && extents[i-1].Zero == e.Zero {
			tb.Errorf("extents %d and %d are both zero=%v: not merged", i-1, i, e.Zero)
		}
		next += e.Length
	}
	if next != size {
		tb.Fatalf("extents end at %d, want %d", next, size)
	}
}

func firstDiff(got, want []byte) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at byte %d (got %#x, want %#x), lengths %d and %d", i, got[i], want[i], len(got), len(want))
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(got), len(want))
}

func TestRefusesWhatQemuImgMakes(t *testing.T) {
	needQemuImg(t)
	tests := []struct {
		name    string
		build   []string // qemu-img create arguments, run in a fresh directory
		wantErr error
		wantMsg string
	}{
		{
			name:    "backing file",
			build:   []string{"create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"},
			wantErr: ErrBackingFile,
			wantMsg: `qcow2 image has a backing file "base.qcow2": flatten it with qemu-img convert -O qcow2 first`,
		},
		{
			name:    "backing file, version 2",
			build:   []string{"create", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"},
			wantErr: ErrBackingFile,
			wantMsg: `qcow2 image has a backing file "base.qcow2": flatten it with qemu-img convert -O qcow2 first`,
		},
		{
			name: "LUKS",
			build: []string{"create", "-f", "qcow2", "--object", "secret,id=s0,data=pw",
				"-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", "top.qcow2", "1M"},
			wantErr: ErrEncrypted,
			wantMsg: "qcow2 image is encrypted with LUKS; convert it to an unencrypted image first",
		},
		{
			name:    "external data file",
			build:   []string{"create", "-f", "qcow2", "-o", "data_file=top.raw", "top.qcow2", "1M"},
			wantErr: ErrExternalDataFile,
			wantMsg: `qcow2 image keeps its data in an external data file ("top.raw"); convert it to a self-contained image with qemu-img convert -O qcow2`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			qemu(t, dir, "qemu-img", "create", "-f", "qcow2", "base.qcow2", "1M")
			qemu(t, dir, "qemu-img", tc.build...)
			data := readFile(t, filepath.Join(dir, "top.qcow2"))
			_, err := Open(bytes.NewReader(data), int64(len(data)))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Open error %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantMsg, err.Error()); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
		})
	}
}

// smallImage returns a small v3 qcow2 image with data and a hole, and its raw bytes.
func smallImage(tb testing.TB, args ...string) (image, raw []byte) {
	tb.Helper()
	dir := tb.TempDir()
	writeRaw(tb, filepath.Join(dir, "disk.raw"), rawLayout{size: 256 << 10, data: [][2]int64{{0, 70 << 10}, {200 << 10, 1000}}}, 2)
	qemu(tb, dir, "qemu-img", append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, args...), "disk.raw", "disk.qcow2")...)
	return readFile(tb, filepath.Join(dir, "disk.qcow2")), readFile(tb, filepath.Join(dir, "disk.raw"))
}

func TestRefusesDamagedHeaders(t *testing.T) {
	needQemuImg(t)
	image, raw := smallImage(t)
	be := binary.BigEndian
	l1Offset := be.Uint64(image[40:])
	l2Offset := be.Uint64(image[l1Offset:]) & offsetMask
	firstData := be.Uint64(image[l2Offset:]) & offsetMask
	tests := []struct {
		name    string
		patch   func(b []byte) []byte
		stream  bool // the error comes from Stream, not Open
		wantErr error
		wantMsg string
	}{
		{
			name:    "not qcow2",
			patch:   func(b []byte) []byte { return append([]byte("QFI\xfa"), b[4:]...) },
			wantErr: ErrNotQcow2,
			wantMsg: `not a qcow2 image: no "QFI\xfb" magic at the start of the file`,
		},
		{
			name:    "empty",
			patch:   func([]byte) []byte { return nil },
			wantErr: ErrNotQcow2,
			wantMsg: `not a qcow2 image: no "QFI\xfb" magic at the start of the file`,
		},
		{
			name:    "short header",
			patch:   func(b []byte) []byte { return b[:50] },
			wantErr: ErrInvalid,
			wantMsg: "invalid qcow2 image: the file is 50 bytes, shorter than a qcow2 header",
		},
		{
			name:    "version 4",
			patch:   func(b []byte) []byte { be.PutUint32(b[4:], 4); return b },
			wantErr: ErrUnsupported,
			wantMsg: "unsupported qcow2 image: version 4 (only 2 and 3 exist)",
		},
		{
			name:    "corrupt bit",
			patch:   func(b []byte) []byte { b[79] |= incompatCorrupt; return b },
			wantErr: ErrMarkedCorrupt,
			wantMsg: "qcow2 image is marked corrupt: qemu set its corrupt bit after finding inconsistent metadata; " +
				"repair it with qemu-img check -r all, or convert it again from its source",
		},
		{
			name:    "unknown incompatible feature",
			patch:   func(b []byte) []byte { b[79] |= 1 << 5; b[72] |= 1; return b },
			wantErr: ErrUnsupported,
			wantMsg: "unsupported qcow2 image: incompatible feature bit 5, bit 56",
		},
		{
			name:    "compression type 2",
			patch:   func(b []byte) []byte { b[79] |= incompatCompression; b[104] = 2; return b },
			wantErr: ErrUnsupported,
			wantMsg: "unsupported qcow2 image: compression type 2 (only zlib and zstd exist)",
		},
		{
			name:    "AES",
			patch:   func(b []byte) []byte { be.PutUint32(b[32:], 1); return b },
			wantErr: ErrEncrypted,
			wantMsg: "qcow2 image is encrypted with qcow2 AES encryption; convert it to an unencrypted image first",
		},
		{
			name:    "cluster bits 22",
			patch:   func(b []byte) []byte { be.PutUint32(b[20:], 22); return b },
			wantErr: ErrInvalid,
			wantMsg: "invalid qcow2 image: cluster_bits 22 outside 9..21",
		},
		{
			name:    "L1 too small",
			patch:   func(b []byte) []byte { be.PutUint64(b[24:], 1<<40); return b },
			wantErr: ErrInvalid,
			wantMsg: "invalid qcow2 image: L1 table of 1 entries is too small for a virtual size of 1099511627776 bytes (needs 2048)",
		},
		{
			name:    "L1 past the end",
			patch:   func(b []byte) []byte { be.PutUint64(b[40:], uint64(len(b))); return b },
			wantErr: ErrInvalid,
			wantMsg: fmt.Sprintf("invalid qcow2 image: L1 table (1 entries at offset %#x) extends past the end of the file (%d bytes)", len(image), len(image)),
		},
		{
			name:    "truncated data",
			patch:   func(b []byte) []byte { return b[:firstData+4096] },
			stream:  true,
			wantErr: ErrInvalid,
			wantMsg: fmt.Sprintf("invalid qcow2 image: data for guest offset 0 at host offset %#x extends past the end of the file (%d bytes); is the file truncated?", firstData, firstData+4096),
		},
		{
			name:    "unaligned L2 table",
			patch:   func(b []byte) []byte { be.PutUint64(b[l1Offset:], l2Offset+512); return b },
			stream:  true,
			wantErr: ErrInvalid,
			wantMsg: fmt.Sprintf("invalid qcow2 image: L1 entry 0 points to an unaligned L2 table at %#x", l2Offset+512),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.patch(bytes.Clone(image))
			img, err := Open(bytes.NewReader(b), int64(len(b)))
			if tc.stream {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				_, err = img.Stream(context.Background(), io.Discard, nil)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantMsg, err.Error()); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("dirty bit is read", func(t *testing.T) {
		b := bytes.Clone(image)
		b[79] |= incompatDirty
		img, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		var got bytes.Buffer
		if _, err := img.Stream(context.Background(), &got, nil); err != nil {
			t.Fatalf("Stream: %v", err)
		}
		if !bytes.Equal(got.Bytes(), raw) {
			t.Errorf("streamed bytes differ: %s", firstDiff(got.Bytes(), raw))
		}
	})
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"QFI\xfb\x00\x00\x00\x03", true},
		{"QFI\xfb", true},
		{"QFI", false},
		{"\x00\x00\x00\x00", false},
		{"", false},
	} {
		if got := Detect([]byte(tc.in)); got != tc.want {
			t.Errorf("Detect(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestStreamStopsWhenCancelled(t *testing.T) {
	needQemuImg(t)
	image, _ := smallImage(t, "-c")
	img, err := Open(bytes.NewReader(image), int64(len(image)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := img.Stream(ctx, io.Discard, func(done int64) {
		if done >= 64<<10 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Stream error %v, want context.Canceled", err)
	}
	if n >= img.Size() {
		t.Errorf("Stream wrote all %d bytes despite the cancel", n)
	}
}

func TestStreamReturnsWriteError(t *testing.T) {
	needQemuImg(t)
	image, _ := smallImage(t)
	img, err := Open(bytes.NewReader(image), int64(len(image)))
	if err != nil {
		t.Fatal(err)
	}
	errFull := errors.New("disk full")
	if _, err := img.Stream(context.Background(), failWriter{errFull}, nil); !errors.Is(err, errFull) {
		t.Fatalf("Stream error %v, want %v", err, errFull)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

// TestCompressedClusterBounds rewrites the first compressed cluster of a real image:
// a stream that inflates short is refused, one that inflates far past the cluster is
// cut at the cluster (as qemu does), so a deflate bomb costs one cluster.
func TestCompressedClusterBounds(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	raw := make([]byte, 256<<10)
	copy(raw, bytes.Repeat([]byte("rackboot qcow2 "), 128<<10/15))
	if err := os.WriteFile(filepath.Join(dir, "disk.raw"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	qemu(t, dir, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", "disk.raw", "disk.qcow2")
	image := readFile(t, filepath.Join(dir, "disk.qcow2"))
	be := binary.BigEndian
	l2Offset := be.Uint64(image[be.Uint64(image[40:]):]) & offsetMask
	if be.Uint64(image[l2Offset:])&l2Compressed == 0 {
		t.Fatal("qemu-img did not compress the first cluster")
	}

	// withCluster0 appends a deflate stream of data at the end of the image and points
	// the first L2 entry at it.
	withCluster0 := func(data []byte) []byte {
		var z bytes.Buffer
		fw, err := flate.NewWriter(&z, flate.BestCompression)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
		fw.Close()
		b := bytes.Clone(image)
		off := uint64(len(b))
		sectors := uint64(z.Len()+511) / 512
		b = append(b, z.Bytes()...)
		const x = 62 - (16 - 8)
		be.PutUint64(b[l2Offset:], l2Compressed|(sectors-1)<<x|off)
		return b
	}

	t.Run("inflates short", func(t *testing.T) {
		b := withCluster0(bytes.Repeat([]byte{'a'}, 1000))
		img, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = img.Stream(context.Background(), io.Discard, nil)
		want := fmt.Sprintf("invalid qcow2 image: zlib compressed cluster for guest offset 0 at host offset %#x does not decompress to 65536 bytes: unexpected EOF", len(image))
		if !errors.Is(err, ErrInvalid) || err.Error() != want {
			t.Fatalf("Stream error %v, want %s", err, want)
		}
	})
	t.Run("inflates past the cluster", func(t *testing.T) {
		bomb := bytes.Repeat([]byte{0x5a}, 64<<20)
		b := withCluster0(bomb)
		if len(b)-len(image) > 128<<10 {
			t.Fatalf("bomb of %d bytes does not fit a compressed cluster's input", len(b)-len(image))
		}
		img, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if _, err := img.Stream(context.Background(), &got, nil); err != nil {
			t.Fatalf("Stream: %v", err)
		}
		want := append(bytes.Clone(bomb[:64<<10]), raw[64<<10:]...)
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("streamed bytes differ: %s", firstDiff(got.Bytes(), want))
		}
	})
}
