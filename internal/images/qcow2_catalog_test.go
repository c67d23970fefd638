package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/rackboot/rackboot/internal/inventory"
)

func TestDetectFormat(t *testing.T) {
	vdi := make([]byte, 80)
	copy(vdi[64:], []byte{0x7f, 0x10, 0xda, 0xbe})
	for _, tc := range []struct {
		name string
		head []byte
		want inventory.ImageFormat
		err  string
	}{
		{"qcow2", []byte("QFI\xfb\x00\x00\x00\x03"), inventory.FormatQcow2, ""},
		{"gzip", []byte{0x1f, 0x8b, 8, 0}, inventory.FormatGzip, ""},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0}, inventory.FormatZstd, ""},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0}, inventory.FormatXz, ""},
		{"mbr", append(make([]byte, 510), 0x55, 0xaa), inventory.FormatRaw, ""},
		{"empty", nil, inventory.FormatRaw, ""},
		{"vmdk", []byte("KDMV\x01\x00\x00\x00"), "", "VMDK"},
		{"vhdx", []byte("vhdxfile"), "", "VHDX"},
		{"vdi", vdi, "", "VDI"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DetectFormat(tc.head)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "qemu-img convert") {
					t.Fatalf("DetectFormat = %q, %v; want an error naming %s and how to convert", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DetectFormat = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestDetectFileLooksInsideCompression: a compressed qcow2 would reach a disk as
// container bytes, so it is refused; a compressed raw image is its compression.
func TestDetectFileLooksInsideCompression(t *testing.T) {
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		_, _ = w.Write(b)
		_ = w.Close()
		return buf.Bytes()
	}
	zs := func(b []byte) []byte {
		var buf bytes.Buffer
		w, _ := zstd.NewWriter(&buf)
		_, _ = w.Write(b)
		_ = w.Close()
		return buf.Bytes()
	}
	raw := append(make([]byte, 510), 0x55, 0xaa)
	qc := append([]byte("QFI\xfb\x00\x00\x00\x03"), make([]byte, 600)...)
	if f, err := detectFile(bytes.NewReader(gz(raw))); err != nil || f != inventory.FormatGzip {
		t.Errorf("gzip raw: %q, %v", f, err)
	}
	if f, err := detectFile(bytes.NewReader(zs(raw))); err != nil || f != inventory.FormatZstd {
		t.Errorf("zstd raw: %q, %v", f, err)
	}
	for name, b := range map[string][]byte{"gzip": gz(qc), "zstd": zs(qc)} {
		if f, err := detectFile(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), name+"-compressed qcow2") {
			t.Errorf("%s qcow2: %q, %v; want refused", name, f, err)
		}
	}
	if f, err := detectFile(bytes.NewReader(gz(zs(raw)))); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("zstd inside gzip: %q, %v; want refused", f, err)
	}
}

func needQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not found (install qemu-utils): the qcow2 catalog tests make images with it")
	}
}

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// sparseRaw writes a raw disk of size bytes: random data at a few places (some not
// cluster-aligned), zeros elsewhere.
func sparseRaw(t *testing.T, path string, size int64) {
	t.Helper()
	buf := make([]byte, size)
	rng := rand.New(rand.NewPCG(7, 7))
	for _, d := range [][2]int64{{0, 900 << 10}, {3<<20 + 1000, 70 << 10}, {size - 8192, 4096}} {
		for i := d[0]; i < d[0]+d[1]; i++ {
			buf[i] = byte(rng.IntN(8)) // compressible: qemu-img -c stores compressed clusters
		}
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestQcow2ConvertedOnce adds qcow2 images (v3 compressed, v2, zstd clusters) by
// file URL and by upload: each is verified against the qcow2's sha256, converted once
// to zstd-compressed raw whose bytes are what qemu-img convert -O raw gives, recorded
// with the served file's sha256, and served with it.
func TestQcow2ConvertedOnce(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	sparseRaw(t, raw, 8<<20)
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		args   []string
		upload bool
	}{
		{"v3-compressed", []string{"-c"}, false},
		{"v2", []string{"-o", "compat=0.10"}, false},
		{"zstd-clusters", []string{"-c", "-o", "compression_type=zstd"}, false},
		{"uploaded", []string{"-c"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qc := filepath.Join(dir, tc.name+".qcow2")
			qemuImg(t, append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, tc.args...), raw, qc)...)
			want := filepath.Join(dir, tc.name+".want.raw")
			qemuImg(t, "convert", "-f", "qcow2", "-O", "raw", qc, want)
			sum := fileSum(t, qc)
			req := AddRequest{Name: tc.name, SHA256: sum}
			if !tc.upload {
				req.URL = "file://" + qc
			}
			if _, err := f.c.Add(ctx, req); err != nil {
				t.Fatal(err)
			}
			if tc.upload {
				data, _ := os.ReadFile(qc)
				im, err := f.c.Upload(ctx, tc.name, bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				if im.Status != inventory.ImagePending || im.Phase != inventory.ImageConvert {
					t.Fatalf("after the upload: %s phase %q (%s), want pending in phase convert", im.Status, im.Phase, im.Error)
				}
				if _, err := f.c.Upload(ctx, tc.name, bytes.NewReader(data)); !errors.Is(err, inventory.ErrConflict) {
					t.Errorf("a second upload while converting = %v, want ErrConflict", err)
				}
			}
			im := f.wait(tc.name)
			if im.Status != inventory.ImageReady {
				t.Fatalf("image = %s: %s", im.Status, im.Error)
			}
			served := filepath.Join(f.dir, tc.name)
			if im.SHA256 != sum || im.SourceFormat != inventory.FormatQcow2 || im.Format != inventory.FormatZstd ||
				im.ServedSHA256 != fileSum(t, served) || im.FileSHA256() != im.ServedSHA256 || im.DiskSize != 8<<20 || im.Phase != "" {
				t.Errorf("image record = %+v", im)
			}
			if st, _ := os.Stat(served); st == nil || st.Size() != im.Size {
				t.Errorf("served file size %v, record %d", st, im.Size)
			}
			zr, err := zstd.NewReader(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			comp, _ := os.ReadFile(served)
			got, err := zr.DecodeAll(comp, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, readAll(t, want)) {
				t.Errorf("the converted image differs from qemu-img convert -O raw (%d bytes, want %d)", len(got), len(readAll(t, want)))
			}
			ents, _ := os.ReadDir(f.dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "."+tc.name) {
					t.Errorf("left behind: %s", e.Name())
				}
			}
			rec := f.get(tc.name, "", "10.0.0.5")
			if rec.Code != http.StatusOK || rec.Header().Get("X-Checksum-Sha256") != im.ServedSHA256 || !bytes.Equal(rec.Body.Bytes(), comp) {
				t.Errorf("GET: %d, checksum %q, %d bytes", rec.Code, rec.Header().Get("X-Checksum-Sha256"), rec.Body.Len())
			}
		})
	}
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestQcow2Refusals: an overlay, a wrong checksum, a format the bytes contradict and
// a compressed qcow2 each fail the image with a message saying why and what to do,
// leave no file, and are never served.
func TestQcow2Refusals(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	sparseRaw(t, raw, 4<<20)
	base := filepath.Join(dir, "base.qcow2")
	qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", raw, base)
	overlay := filepath.Join(dir, "overlay.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay)
	gzq := filepath.Join(dir, "base.qcow2.gz")
	{
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		_, _ = w.Write(readAll(t, base))
		_ = w.Close()
		if err := os.WriteFile(gzq, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name, file, sum string
		format          inventory.ImageFormat
		want            []string
	}{
		{"overlay", overlay, fileSum(t, overlay), "", []string{"backing file", "base.qcow2", "flatten it with qemu-img convert"}},
		{"wrong-sum", base, strings.Repeat("ab", 32), "", []string{"sha256 mismatch", fileSum(t, base), "nothing was kept"}},
		{"wrong-format", base, fileSum(t, base), inventory.FormatGzip, []string{"added as gzip", "its bytes are qcow2"}},
		{"gzipped-qcow2", gzq, fileSum(t, gzq), "", []string{"gzip-compressed qcow2", "decompress it"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.c.Add(ctx, AddRequest{Name: tc.name, URL: "file://" + tc.file, SHA256: tc.sum, Format: tc.format}); err != nil {
				t.Fatal(err)
			}
			im := f.wait(tc.name)
			if im.Status != inventory.ImageFailed {
				t.Fatalf("image = %s, want failed", im.Status)
			}
			for _, w := range tc.want {
				if !strings.Contains(im.Error, w) {
					t.Errorf("error %q lacks %q", im.Error, w)
				}
			}
			ents, _ := os.ReadDir(f.dir)
			for _, e := range ents {
				if strings.Contains(e.Name(), tc.name) {
					t.Errorf("left behind: %s", e.Name())
				}
			}
			if rec := f.get(tc.name, "", "10.0.0.5"); rec.Code != http.StatusNotFound {
				t.Errorf("GET of a failed image: %d, want 404", rec.Code)
			}
		})
	}
}

// TestConversionResumesAtStart: an image a restart left pending in phase convert is
// checked again and converted at start, without downloading it again.
func TestConversionResumesAtStart(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	sparseRaw(t, raw, 4<<20)
	qc := filepath.Join(dir, "disk.qcow2")
	qemuImg(t, "convert", "-c", "-f", "raw", "-O", "qcow2", raw, qc)
	f := newFixture(t, nil)
	f.stop()
	f.c.Close()
	ctx := context.Background()
	// An origin that is gone: the image can only become ready from the .part file.
	for _, name := range []string{"resumed", "lost-upload"} {
		src := "http://127.0.0.1:1/disk.qcow2"
		if name == "lost-upload" {
			src = SourceUpload
		}
		if _, err := f.store.CreateImage(ctx, inventory.Image{Name: name, Source: src, SHA256: fileSum(t, qc), Phase: inventory.ImageConvert}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.dir, partName("resumed")), readAll(t, qc), 0o644); err != nil {
		t.Fatal(err)
	}
	f.open(nil)
	if im := f.wait("resumed"); im.Status != inventory.ImageReady || im.SourceFormat != inventory.FormatQcow2 || im.DiskSize != 4<<20 {
		t.Errorf("resumed: %+v", im)
	}
	if im := f.wait("lost-upload"); im.Status != inventory.ImageFailed || !strings.Contains(im.Error, "upload it again") {
		t.Errorf("lost-upload: %s: %s", im.Status, im.Error)
	}
}

// TestSHA256URL: the sum comes from a published checksum file, GNU or BSD, looked up
// by the image URL's base name (or the name given for an upload); a file that does
// not list it, or cannot be fetched, is the caller's error at once.
func TestSHA256URL(t *testing.T) {
	data, sum := content(1 << 20)
	other := strings.Repeat("cd", 32)
	files := map[string]string{
		"/SHA256SUMS": fmt.Sprintf("%s *other.img\n%s  disk.img\n", other, sum),
		"/CHECKSUM":   fmt.Sprintf("# Fedora\nSHA256 (disk.img) = %s\nSHA256 (other.img) = %s\n", sum, other),
		"/SHA512SUMS": strings.Repeat("ab", 64) + "  disk.img\n",
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dl/disk.img" {
			_, _ = w.Write(data)
			return
		}
		body, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, body)
	}))
	defer origin.Close()
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, sums := range []string{"/SHA256SUMS", "/CHECKSUM"} {
		name := "gnu"
		if sums == "/CHECKSUM" {
			name = "bsd"
		}
		im, err := f.c.Add(ctx, AddRequest{Name: name, URL: origin.URL + "/dl/disk.img", SHA256URL: origin.URL + sums})
		if err != nil {
			t.Fatal(err)
		}
		if im.SHA256 != sum || im.SHA256URL != origin.URL+sums {
			t.Errorf("%s: sha256 %s from %q, want %s", name, im.SHA256, im.SHA256URL, sum)
		}
		if im := f.wait(name); im.Status != inventory.ImageReady {
			t.Errorf("%s: %s: %s", name, im.Status, im.Error)
		}
	}
	// An upload names the file to look up.
	im, err := f.c.Add(ctx, AddRequest{Name: "up", SHA256URL: origin.URL + "/SHA256SUMS", SHA256Name: "disk.img"})
	if err != nil || im.SHA256 != sum {
		t.Fatalf("upload with a checksum file: %+v, %v", im, err)
	}
	if im, err := f.c.Upload(ctx, "up", bytes.NewReader(data)); err != nil || im.Status != inventory.ImageReady {
		t.Errorf("upload: %+v, %v", im, err)
	}
	for _, tc := range []struct {
		name string
		req  AddRequest
		want string
	}{
		{"unlisted", AddRequest{URL: origin.URL + "/dl/nope.img", SHA256URL: origin.URL + "/SHA256SUMS"}, `no entry for "nope.img"`},
		{"sha512", AddRequest{URL: origin.URL + "/dl/disk.img", SHA256URL: origin.URL + "/SHA512SUMS"}, "not a SHA-256"},
		{"missing", AddRequest{URL: origin.URL + "/dl/disk.img", SHA256URL: origin.URL + "/gone"}, "404"},
		{"both", AddRequest{URL: origin.URL + "/dl/disk.img", SHA256: sum, SHA256URL: origin.URL + "/SHA256SUMS"}, "not both"},
		{"bad-url", AddRequest{URL: origin.URL + "/dl/disk.img", SHA256URL: "ftp://x/SUMS"}, "checksum URL"},
		{"upload-without-name", AddRequest{SHA256URL: origin.URL + "/SHA256SUMS"}, "file name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Name = tc.name
			_, err := f.c.Add(ctx, tc.req)
			if !errors.Is(err, inventory.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Add = %v, want ErrInvalid saying %q", err, tc.want)
			}
			if _, err := f.c.Get(ctx, tc.name); !errors.Is(err, inventory.ErrNotFound) {
				t.Errorf("the image was recorded: %v", err)
			}
		})
	}
}
