package agent

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rackboot/rackboot/agentapi"
)

// zeroRunImage has data and zero runs of every kind the writer distinguishes: zeros
// inside the held-back first MiB, a long aligned run (zeroed without writing), a run
// shorter than minZeroRun (written), a run that starts and ends inside blocks, and a
// long run up to an unaligned end.
func zeroRunImage() (img []byte, longRuns int64) {
	const size = 16<<20 + 1000
	img = make([]byte, size)
	r := rand.New(rand.NewPCG(3, 4))
	fill := func(off, n int) {
		for i := off; i < off+n; i++ {
			img[i] = byte(r.Uint32() | 1)
		}
	}
	fill(0, 4096)            // MBR/GPT; the rest of the first MiB is zeros
	fill(9<<20, 100<<10)     // after a run of 8 MiB: [1 MiB, 9 MiB)
	fill(9<<20+164<<10, 1)   // then 832 KiB of zero blocks: too short to zero out
	fill(10<<20+5000, 70000) // unaligned data up to the block at 10 MiB + 64 KiB
	fill(12<<20, 1000)       // after 1920 KiB of zero blocks; then zeros from 12 MiB + 64 KiB to the end
	// The runs of at least minZeroRun: 8 MiB, 1920 KiB and 16 MiB - (12 MiB + 64 KiB)
	// (the last 1000 bytes are no whole block).
	longRuns = 8<<20 + 1920<<10 + (16<<20 - (12<<20 + 64<<10))
	return img, longRuns
}

// TestWriteImageZeroRuns: runs of zero blocks reach the disk as zeros without being
// written (a punched hole in a file, BLKZEROOUT on a block device), so the disk reads
// back exactly the image over a disk that held other bytes, the checksum is still that
// of the bytes served, and a writer that cannot zero out writes the zeros.
func TestWriteImageZeroRuns(t *testing.T) {
	img, longRuns := zeroRunImage()
	for _, format := range []agentapi.Format{agentapi.FormatRaw, agentapi.FormatZstd} {
		t.Run(string(format), func(t *testing.T) {
			served := compress(t, format, img)
			_, srv := newImageServer(t, map[string][]byte{"/img": served})
			d, p := newDiskFile(t, 24<<20, 0xEE)
			res, err := writeImage(t.Context(), d, imageJob{
				URL: srv.URL + "/img", SHA256: sum(served), Format: format, Size: int64(len(served)),
				Client: srv.Client(), Log: quietLog(),
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.SHA256 != sum(served) || res.Written != int64(len(img)) {
				t.Errorf("result %+v", res)
			}
			if res.Zeroed != longRuns {
				t.Errorf("zeroed without writing: %d bytes, want the %d of the runs of at least %d", res.Zeroed, longRuns, minZeroRun)
			}
			got, _ := os.ReadFile(p)
			if !bytes.Equal(got[:len(img)], img) {
				t.Fatal("the disk does not read back the image")
			}
			if !bytes.Equal(got[len(img):], bytes.Repeat([]byte{0xEE}, len(got)-len(img))) {
				t.Error("bytes past the image were changed")
			}
			var st syscall.Stat_t
			if err := syscall.Stat(p, &st); err == nil && st.Blocks*512 > int64(len(got))-longRuns+1<<20 {
				t.Logf("note: %d bytes allocated of %d: the filesystem did not punch holes", st.Blocks*512, len(got))
			}
		})
	}
	t.Run("writer without zeroOut", func(t *testing.T) {
		f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(bytes.Repeat([]byte{0xEE}, 20<<20)); err != nil {
			t.Fatal(err)
		}
		w := &diskWriter{d: f, limit: 20 << 20}
		if _, err := io.Copy(w, bytes.NewReader(img)); err != nil {
			t.Fatal(err)
		}
		if err := w.flushZeros(); err != nil {
			t.Fatal(err)
		}
		if err := w.commitHead(); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(img))
		if _, err := f.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, img) || w.zeroed != 0 {
			t.Errorf("plain writer: image differs (%v) or zeroed %d", !bytes.Equal(got, img), w.zeroed)
		}
	})
}

// BenchmarkZeroRuns measures writing a mostly-zero 256 MiB image (the shape of a cloud
// image's disk) to a file, with zero runs punched out and with every zero written.
// RACKBOOT_BENCH_DISK=/dev/loopN (or any block device it may overwrite) measures
// BLKZEROOUT instead.
func BenchmarkZeroRuns(b *testing.B) {
	const size = 256 << 20
	img := make([]byte, size)
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 32<<20; i++ { // 32 MiB of data, then zeros
		img[i] = byte(r.Uint32())
	}
	for _, mode := range []string{"zeroOut", "write"} {
		b.Run(mode, func(b *testing.B) {
			var d *disk
			if dev := os.Getenv("RACKBOOT_BENCH_DISK"); dev != "" {
				var err error
				if d, err = openDisk(filepath.Dir(dev), filepath.Base(dev)); err != nil {
					b.Fatal(err)
				}
				defer d.Close()
			} else {
				d, _ = newDiskFile(b, size, 0xEE)
			}
			b.SetBytes(size)
			for b.Loop() {
				var w *diskWriter
				if mode == "zeroOut" {
					w = &diskWriter{d: d, limit: d.size}
				} else {
					w = &diskWriter{d: plainWriterAt{d}, limit: d.size}
				}
				start := time.Now()
				if _, err := io.Copy(w, bytes.NewReader(img)); err != nil {
					b.Fatal(err)
				}
				if err := w.flushZeros(); err != nil {
					b.Fatal(err)
				}
				if err := w.commitHead(); err != nil {
					b.Fatal(err)
				}
				if err := d.sync(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/image")
			}
		})
	}
}

// plainWriterAt hides disk's zeroOut.
type plainWriterAt struct{ d *disk }

func (p plainWriterAt) WriteAt(b []byte, off int64) (int, error) { return p.d.WriteAt(b, off) }
