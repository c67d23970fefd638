package agent

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// requireTool skips t when a command-line tool is missing, or fails it when
// RACKBOOT_REQUIRE_LAB=1 (as `make test` sets), so CI cannot pass by skipping.
func requireTool(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("RACKBOOT_REQUIRE_LAB") == "1" {
				t.Fatalf("%s is not installed (apt-get install e2fsprogs util-linux) and RACKBOOT_REQUIRE_LAB=1", tool)
			}
			t.Skipf("%s is not installed (apt-get install e2fsprogs util-linux)", tool)
		}
	}
}

// newDiskFile creates a file of size bytes standing in for a disk, filled with fill.
func newDiskFile(t testing.TB, size int64, fill byte) (*disk, string) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "vda")
	if err := os.WriteFile(p, bytes.Repeat([]byte{fill}, int(size)), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := openDisk(dir, "vda")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, p
}

// testImage is a disk image with a GPT and one ext4 partition (number 1, from 1 MiB to
// 1 MiB before the end) holding files.
type testImage struct {
	data      []byte
	partStart int64
	partSize  int64
}

// buildTestImage makes a GPT disk image of size bytes whose partition 1 is an ext4
// filesystem (mkfs.ext4 -d) with files (path → content) and directories (path ending
// in "/").
func buildTestImage(t testing.TB, size int64, files map[string]string) testImage {
	t.Helper()
	requireTool(t, "mkfs.ext4")
	dir := t.TempDir()
	src := filepath.Join(dir, "root")
	for p, content := range files {
		full := filepath.Join(src, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	part := Partition{Number: 1, Start: 1 << 20, Size: size - 2<<20, Type: GPTTypeLinux, Name: "root"}
	if err := WriteGPT(f, size, 512, []Partition{part}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "root", "-E", "offset="+strconv.FormatInt(part.Start, 10),
		"-d", src, img, strconv.FormatInt(part.Size/1024, 10)+"k").CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != size {
		t.Fatalf("mkfs.ext4 changed the image size to %d", len(data))
	}
	return testImage{data: data, partStart: part.Start, partSize: part.Size}
}

// debugfsCat reads a file from the ext4 filesystem at offset in image with debugfs.
func debugfsCat(t testing.TB, image string, offset int64, path string) (string, error) {
	t.Helper()
	requireTool(t, "debugfs")
	out, err := exec.Command("debugfs", "-R", "cat "+path, image+"?offset="+strconv.FormatInt(offset, 10)).Output()
	return string(out), err
}

// signatures lists what wipefs (util-linux) recognises in the file at offset 0 and
// blkid at the given partition offsets.
func signatures(t testing.TB, image string, partOffsets ...int64) string {
	t.Helper()
	requireTool(t, "wipefs", "blkid")
	out, err := exec.Command("wipefs", "--noheadings", "--output", "TYPE,OFFSET", image).CombinedOutput()
	if err != nil {
		t.Fatalf("wipefs %s: %v: %s", image, err, out)
	}
	s := strings.TrimSpace(string(out))
	for _, off := range partOffsets {
		// blkid exits 2 when it finds nothing.
		b, _ := exec.Command("blkid", "-p", "-O", strconv.FormatInt(off, 10), "-o", "value", "-s", "TYPE", image).Output()
		if v := strings.TrimSpace(string(b)); v != "" {
			s += "\n" + v + " at " + strconv.FormatInt(off, 10)
		}
	}
	return strings.TrimSpace(s)
}
