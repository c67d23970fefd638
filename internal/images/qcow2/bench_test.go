package qcow2

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkStream streams a 64 MiB disk stored compressed (zlib and zstd) and
// uncompressed to io.Discard, and logs what qemu-img convert -O raw takes on the same
// file (to a file, process start included; qemu-img decompresses in a thread pool,
// this package in one goroutine). Besides MB/s of wall time it reports cpu-MB/s, MB
// per second of CPU time, which is what to compare on a shared, busy machine.
func BenchmarkStream(b *testing.B) {
	needQemuImg(b)
	dir := b.TempDir()
	writeBenchRaw(b, filepath.Join(dir, "disk.raw"))
	for _, bc := range []struct {
		name string
		args []string
	}{
		{"zlib", []string{"-c"}},
		{"zstd", []string{"-c", "-o", "compression_type=zstd"}},
		{"uncompressed", nil},
	} {
		path := filepath.Join(dir, bc.name+".qcow2")
		qemu(b, dir, "qemu-img", append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, bc.args...), "disk.raw", path)...)
		cmd := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", path, filepath.Join(dir, "out.raw"))
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("qemu-img convert: %v\n%s", err, out)
		}
		wall := time.Since(start)
		cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		os.Remove(filepath.Join(dir, "out.raw"))

		b.Run(bc.name, func(b *testing.B) {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				b.Fatal(err)
			}
			img, err := Open(f, st.Size())
			if err != nil {
				b.Fatal(err)
			}
			mb := float64(img.Size()) / 1e6
			b.Logf("%s: %d MiB in a %d KiB file; qemu-img convert -O raw: %v wall (%.0f MB/s), %v CPU (%.0f cpu-MB/s)",
				bc.name, img.Size()>>20, st.Size()>>10, wall.Round(time.Millisecond), mb/wall.Seconds(),
				cpu.Round(time.Millisecond), mb/cpu.Seconds())
			b.SetBytes(img.Size())
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := img.Stream(context.Background(), io.Discard, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(mb*float64(b.N)/(cpuTime()-cpu0).Seconds(), "cpu-MB/s")
		})
	}
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writeBenchRaw writes 64 MiB that looks somewhat like a disk: per 8 MiB, six of
// machine code (the test binary itself, which compresses like the executables and
// libraries of a cloud image), one of random bytes (already compressed files) and one
// of zeros.
func writeBenchRaw(tb testing.TB, path string) {
	tb.Helper()
	const mib = 1 << 20
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	code, err := os.ReadFile(exe)
	if err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 64*mib)
	rng := rand.New(rand.NewPCG(4, 4))
	var off int
	for i := range 64 {
		block := buf[i*mib : (i+1)*mib]
		switch i % 8 {
		case 3:
			for j := range block {
				block[j] = byte(rng.Uint32())
			}
		case 7:
		default:
			for j := 0; j < len(block); {
				n := copy(block[j:], code[off:])
				j += n
				off = (off + n) % len(code)
			}
		}
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		tb.Fatal(err)
	}
}
