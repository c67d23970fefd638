package qcow2

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Tests compare this package with the real qemu-img (the Makefile installs
// qemu-utils); without it they skip, saying so.

func needQemuImg(tb testing.TB) {
	tb.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("%s not found (install qemu-utils): the qcow2 tests compare with qemu's own tools", tool)
		}
	}
}

// qemu runs a qemu tool in dir and returns its stdout.
func qemu(tb testing.TB, dir, tool string, args ...string) string {
	tb.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// rawLayout describes a raw disk: random data at the given ranges, zeros elsewhere.
type rawLayout struct {
	size int64
	data [][2]int64 // [offset, length] of random bytes
}

// testLayout has random blocks, zero runs, ranges that start and end inside clusters,
// a hole at the end, and a size that is no multiple of a 64 KiB cluster (qemu rounds
// raw sizes to 512 bytes, so this one is a multiple of 512).
var testLayout = rawLayout{
	size: 3<<20 + 1536,
	data: [][2]int64{
		{0, 700 << 10},
		{1536 << 10, 100<<10 + 3},
		{2560<<10 + 1000, 4 << 10},
		{2816 << 10, 6 << 10},
	},
}

func writeRaw(tb testing.TB, path string, l rawLayout, seed uint64) []byte {
	tb.Helper()
	buf := make([]byte, l.size)
	rng := rand.New(rand.NewPCG(seed, seed))
	for _, d := range l.data {
		for i := d[0]; i < d[0]+d[1]; i++ {
			buf[i] = byte(rng.Uint32())
		}
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		tb.Fatal(err)
	}
	return buf
}

// qemuMap is qemu-img map's zero extents (data: false) of the image at path, merged.
func qemuZeroMap(tb testing.TB, path string) []Extent {
	tb.Helper()
	out := qemu(tb, filepath.Dir(path), "qemu-img", "map", "--output=json", "-f", "qcow2", path)
	var entries []struct {
		Start, Length int64
		Data          bool
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		tb.Fatalf("qemu-img map: %v\n%s", err, out)
	}
	var zeros []Extent
	for _, e := range entries {
		if e.Data {
			continue
		}
		if n := len(zeros); n > 0 && zeros[n-1].Offset+zeros[n-1].Length == e.Start {
			zeros[n-1].Length += e.Length
			continue
		}
		zeros = append(zeros, Extent{Offset: e.Start, Length: e.Length, Zero: true})
	}
	return zeros
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
