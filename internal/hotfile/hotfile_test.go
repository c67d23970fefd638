package hotfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newCache(t *testing.T, dir string, mod func(*Config)) (*Cache, *clock) {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	clk := &clock{t: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)}
	cfg := Config{FS: root.FS(), Now: clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

func write(t *testing.T, path, body string) {
	t.Helper()
	// Replaced by rename, as bootenv import and an operator's cp-then-mv do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, c *Cache, name string) string {
	t.Helper()
	f, err := c.Get(name)
	if err != nil {
		t.Fatalf("Get(%s): %v", name, err)
	}
	b, err := f.contents()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCacheFollowsTheDirectory: a file is read once, served from memory, and read
// again within Revalidate of being replaced or removed.
func TestCacheFollowsTheDirectory(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "snponly.efi")
	write(t, p, "build one")
	c, clk := newCache(t, dir, nil)

	if got := get(t, c, "snponly.efi"); got != "build one" {
		t.Fatalf("first read %q", got)
	}
	write(t, p, "build two")
	if got := get(t, c, "snponly.efi"); got != "build one" {
		t.Errorf("within a second of the change: %q, want the kept copy", got)
	}
	clk.Advance(DefaultRevalidate)
	if got := get(t, c, "snponly.efi"); got != "build two" {
		t.Errorf("after the check: %q, want the new file", got)
	}
	if c.Size() != int64(len("build two")) {
		t.Errorf("Size %d after a replacement, want only the new copy", c.Size())
	}
	// Unchanged: the same *File, no read.
	f1, _ := c.Get("snponly.efi")
	clk.Advance(DefaultRevalidate)
	f2, _ := c.Get("snponly.efi")
	if f1 != f2 {
		t.Error("an unchanged file was read again")
	}

	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultRevalidate)
	if _, err := c.Get("snponly.efi"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a removed file: %v, want fs.ErrNotExist", err)
	}
	if c.Size() != 0 {
		t.Errorf("Size %d after the file went, want 0", c.Size())
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("sub"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a directory: %v, want fs.ErrNotExist (no listings)", err)
	}
}

func TestCacheBounds(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		write(t, filepath.Join(dir, n), strings.Repeat(n, 40))
	}
	write(t, filepath.Join(dir, "big"), strings.Repeat("x", 101))
	c, clk := newCache(t, dir, func(c *Config) { c.MaxFile, c.MaxTotal = 100, 100 })
	if _, err := c.Get("big"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a file over MaxFile: %v, want ErrTooLarge", err)
	}
	get(t, c, "a")
	clk.Advance(time.Millisecond)
	get(t, c, "b")
	clk.Advance(time.Millisecond)
	get(t, c, "a") // b is now the least recently used
	clk.Advance(time.Millisecond)
	get(t, c, "c")
	if c.Size() != 80 {
		t.Errorf("Size %d, want 80 (two files of 40 within 100)", c.Size())
	}
	c.mu.Lock()
	_, hasB := c.files["b"]
	_, hasA := c.files["a"]
	c.mu.Unlock()
	if hasB || !hasA {
		t.Errorf("kept a=%v b=%v: want the least recently used (b) dropped", hasA, hasB)
	}
}

func TestCacheSharesHardLinks(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "cache", "k"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "cache", "k", "initramfs.gz"), "initrd")
	if err := os.Link(filepath.Join(dir, "cache", "k", "initramfs.gz"), filepath.Join(dir, "initramfs.gz")); err != nil {
		t.Skip("no hard links here:", err)
	}
	c, _ := newCache(t, dir, nil)
	a, err := c.Get("cache/k/initramfs.gz")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Get("initramfs.gz")
	if err != nil {
		t.Fatal(err)
	}
	if a.mem != b.mem || (a.mem == nil && &a.data[0] != &b.data[0]) || a.ETag != b.ETag {
		t.Error("two names of one file hold two copies")
	}
}

// TestServeContent: what http.ServeContent gives a file on disk, ranges, validators
// and HEAD, a kept file gives too, with an ETag.
func TestServeContent(t *testing.T) {
	for _, noSendfile := range []bool{true, false} {
		t.Run(fmt.Sprintf("NoSendfile=%v", noSendfile), func(t *testing.T) { testServeContent(t, noSendfile) })
	}
}

func testServeContent(t *testing.T, noSendfile bool) {
	body := bytes.Repeat([]byte("0123456789"), 100_000) // 1 MB: several WriteChunks
	c, err := New(Config{FS: fstest.MapFS{"ipxe.efi": {Data: body, ModTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}, Immutable: true, NoSendfile: noSendfile})
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Get("ipxe.efi")
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" && (f.mem == nil) != noSendfile {
		t.Fatalf("memfd %v with NoSendfile %v", f.mem != nil, noSendfile)
	}
	serve := func(method string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/ipxe.efi", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		ServeContent(w, r, f)
		return w
	}
	w := serve("GET")
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), body) || w.Header().Get("Etag") != f.ETag || w.Header().Get("Last-Modified") == "" {
		t.Fatalf("GET: %d, %d bytes, header %v", w.Code, w.Body.Len(), w.Header())
	}
	if w := serve("GET", "Range", "bytes=999990-"); w.Code != 206 || w.Body.String() != "0123456789" {
		t.Errorf("Range: %d %q", w.Code, w.Body.String())
	}
	if w := serve("GET", "Range", "bytes=300000-700000"); w.Code != 206 || !bytes.Equal(w.Body.Bytes(), body[300000:700001]) {
		t.Errorf("Range across chunks: %d, %d bytes", w.Code, w.Body.Len())
	}
	if w := serve("GET", "If-None-Match", f.ETag); w.Code != 304 || w.Body.Len() != 0 {
		t.Errorf("If-None-Match: %d", w.Code)
	}
	if w := serve("GET", "Range", "bytes=0-9", "If-Range", f.ETag); w.Code != 206 || w.Body.String() != "0123456789" {
		t.Errorf("If-Range with the ETag: %d", w.Code)
	}
	if w := serve("GET", "Range", "bytes=0-9", "If-Range", `"another"`); w.Code != 200 || w.Body.Len() != len(body) {
		t.Errorf("If-Range with another ETag: %d, want the whole file", w.Code)
	}
	if w := serve("HEAD"); w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "1000000" {
		t.Errorf("HEAD: %d, %d bytes, Content-Length %q", w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
	}
	if noSendfile {
		// The body goes in WriteChunk writes, not 32 KiB ones.
		cw := &countingWriter{ResponseRecorder: httptest.NewRecorder()}
		ServeContent(cw, httptest.NewRequest("GET", "/ipxe.efi", nil), f)
		if want := (len(body) + WriteChunk - 1) / WriteChunk; cw.writes != want {
			t.Errorf("%d writes, want %d", cw.writes, want)
		}
	}

	// Over TCP, where net/http's ReadFrom reaches sendfile(2); many requests at once
	// share the memfd, each with a description of its own.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ServeContent(w, r, f) }))
	defer srv.Close()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", srv.URL, nil)
			want := body
			if i%2 == 1 {
				req.Header.Set("Range", "bytes=262000-800000")
				want = body[262000:800001]
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("over TCP, request %d: %d, %d bytes, %v", i, resp.StatusCode, len(got), err)
			}
		}()
	}
	wg.Wait()
}

type countingWriter struct {
	*httptest.ResponseRecorder
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.ResponseRecorder.Write(p)
}

// TestCacheConcurrentFirstRead: requests arriving while a file is read wait for that
// read instead of reading it again.
func TestCacheConcurrentFirstRead(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "f"), "content")
	c, _ := newCache(t, dir, nil)
	var wg sync.WaitGroup
	files := make([]*File, 32)
	for i := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := c.Get("f")
			if err != nil {
				t.Error(err)
				return
			}
			files[i] = f
		}()
	}
	wg.Wait()
	if c.Size() != int64(len("content")) {
		t.Errorf("Size %d, want one copy", c.Size())
	}
	for _, f := range files {
		if f == nil || get(t, c, "f") != "content" || f.Size() != 7 {
			t.Fatal("a request got no content")
		}
	}
}

func TestFileReaderAt(t *testing.T) {
	body := strings.Repeat("0123456789", 100)
	for _, noSendfile := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSendfile=%v", noSendfile), func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "f.bin"), body)
			c, _ := newCache(t, dir, func(cfg *Config) { cfg.NoSendfile = noSendfile })
			f, err := c.Get("f.bin")
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			n, err := f.ReaderAt().ReadAt(buf, 990)
			if n != 10 || err != io.EOF || string(buf[:n]) != body[990:] {
				t.Errorf("ReadAt at 990: %d bytes %q, %v; want the last 10 and io.EOF", n, buf[:n], err)
			}
			if n, err := f.ReaderAt().ReadAt(buf, 100); n != 64 || err != nil || string(buf) != body[100:164] {
				t.Errorf("ReadAt at 100: %d bytes %q, %v", n, buf[:n], err)
			}
		})
	}
}

// noSeekFS hands out files that cannot seek.
type noSeekFS struct{ fs.FS }

func (n noSeekFS) Open(name string) (fs.File, error) {
	f, err := n.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return struct{ fs.File }{f}, nil
}

// TestServe: a kept file and one too large to keep are both served whole and by Range,
// with their sizes; a directory is fs.ErrNotExist, a missing file the FS's error, and a
// file too large to keep on an FS that cannot seek ErrNoSeek, with nothing written.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	small, big := "0123456789", strings.Repeat("abcdefghij", 20)
	write(t, filepath.Join(dir, "small"), small)
	write(t, filepath.Join(dir, "big"), big)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, _ := newCache(t, dir, func(c *Config) { c.MaxFile, c.MaxTotal = 100, 100 })
	for _, tc := range []struct {
		name, rng, want string
		code            int
	}{
		{"small", "", small, http.StatusOK},
		{"small", "bytes=2-4", "234", http.StatusPartialContent},
		{"big", "", big, http.StatusOK},
		{"big", "bytes=195-", "fghij", http.StatusPartialContent},
	} {
		r := httptest.NewRequest(http.MethodGet, "/"+tc.name, nil)
		if tc.rng != "" {
			r.Header.Set("Range", tc.rng)
		}
		w := httptest.NewRecorder()
		size, err := c.Serve(w, r, tc.name)
		if err != nil || w.Code != tc.code || w.Body.String() != tc.want {
			t.Errorf("Serve(%s, Range %q) = %d %q, %v; want %d %q", tc.name, tc.rng, w.Code, w.Body.String(), err, tc.code, tc.want)
		}
		if want := int64(map[string]int{"small": len(small), "big": len(big)}[tc.name]); size != want {
			t.Errorf("Serve(%s) size %d, want %d", tc.name, size, want)
		}
	}
	ns, err := New(Config{FS: noSeekFS{os.DirFS(dir)}, MaxFile: 100, MaxTotal: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    *Cache
		name string
		want error
	}{
		{c, "sub", fs.ErrNotExist},
		{c, "missing", fs.ErrNotExist},
		{ns, "big", ErrNoSeek},
	} {
		w := httptest.NewRecorder()
		if _, err := tc.c.Serve(w, httptest.NewRequest(http.MethodGet, "/"+tc.name, nil), tc.name); !errors.Is(err, tc.want) {
			t.Errorf("Serve(%s): %v, want %v", tc.name, err, tc.want)
		}
		if w.Body.Len() != 0 || len(w.Header()) != 0 {
			t.Errorf("Serve(%s) wrote %q %v before its error", tc.name, w.Body.String(), w.Header())
		}
	}
}
