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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/inventory"
)

type fixture struct {
	t     *testing.T
	dir   string
	store *inventory.BoltStore
	c     *Catalog
	mux   *http.ServeMux
	stop  func()
}

func newFixture(t *testing.T, auth Authorizer) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := inventory.Open(filepath.Join(dir, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(dir, "secret.key")})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: filepath.Join(dir, "images"), store: st}
	f.open(auth)
	t.Cleanup(func() {
		f.stop()
		f.c.Close()
		st.Close()
	})
	return f
}

// open builds a catalog on the fixture's store and runs its Start.
func (f *fixture) open(auth Authorizer) {
	c, err := New(Config{Dir: f.dir, Store: f.store, Authorize: auth, Backoff: time.Millisecond, StallTimeout: 5 * time.Second})
	if err != nil {
		f.t.Fatal(err)
	}
	f.c = c
	f.mux = http.NewServeMux()
	c.Register(f.mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Start(ctx); close(done) }()
	f.stop = func() { cancel(); <-done }
}

func (f *fixture) wait(name string) inventory.Image {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	im, err := f.c.Wait(ctx, name, 5*time.Millisecond)
	if err != nil {
		f.t.Fatalf("waiting for image %s: %v", name, err)
	}
	return im
}

func (f *fixture) get(name, rangeHdr, src string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/images/"+name, nil)
	req.RemoteAddr = src + ":1234"
	if rangeHdr != "" {
		req.Header.Set("Range", rangeHdr)
	}
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	return rec
}

func content(n int) ([]byte, string) {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

func TestAddURLDownloadsVerifiesAndServesRanges(t *testing.T) {
	data, sum := content(3<<20 + 123)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "disk.img", time.Time{}, bytes.NewReader(data))
	}))
	defer origin.Close()
	f := newFixture(t, nil)
	im, err := f.c.Add(context.Background(), AddRequest{Name: "debian-12", URL: origin.URL + "/disk.img", SHA256: strings.ToUpper(sum), Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	if im.Status != inventory.ImagePending || im.SHA256 != sum {
		t.Errorf("added image = %+v", im)
	}
	im = f.wait("debian-12")
	if im.Status != inventory.ImageReady || im.Size != int64(len(data)) || im.VerifiedAt.IsZero() {
		t.Fatalf("image = %+v", im)
	}
	got, err := os.ReadFile(filepath.Join(f.dir, "debian-12"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("cached file differs (%v)", err)
	}
	tests := []struct {
		rng   string
		code  int
		start int
		end   int // exclusive
	}{
		{"", http.StatusOK, 0, len(data)},
		{"bytes=0-1048575", http.StatusPartialContent, 0, 1 << 20},
		{"bytes=3145728-", http.StatusPartialContent, 3 << 20, len(data)},
		{"bytes=-10", http.StatusPartialContent, len(data) - 10, len(data)},
		{"bytes=99999999-", http.StatusRequestedRangeNotSatisfiable, 0, 0},
	}
	for _, tc := range tests {
		t.Run("range "+tc.rng, func(t *testing.T) {
			rec := f.get("debian-12", tc.rng, "10.0.0.5")
			if rec.Code != tc.code {
				t.Fatalf("code = %d, want %d", rec.Code, tc.code)
			}
			if tc.code >= 300 {
				return
			}
			if !bytes.Equal(rec.Body.Bytes(), data[tc.start:tc.end]) {
				t.Errorf("body: %d bytes, want bytes %d-%d", rec.Body.Len(), tc.start, tc.end)
			}
			if etag := rec.Header().Get("ETag"); etag != `"sha256:`+sum+`"` {
				t.Errorf("ETag = %q", etag)
			}
		})
	}
}

func TestWrongChecksumIsNeverOffered(t *testing.T) {
	data, sum := content(1 << 20)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "disk.img", time.Time{}, bytes.NewReader(data))
	}))
	defer origin.Close()
	f := newFixture(t, nil)
	wrong := strings.Repeat("ab", 32)
	if _, err := f.c.Add(context.Background(), AddRequest{Name: "bad", URL: origin.URL + "/disk.img", SHA256: wrong}); err != nil {
		t.Fatal(err)
	}
	im := f.wait("bad")
	if im.Status != inventory.ImageFailed || !strings.Contains(im.Error, "sha256 mismatch") || !strings.Contains(im.Error, wrong) || !strings.Contains(im.Error, sum) {
		t.Fatalf("image = %+v", im)
	}
	ents, _ := os.ReadDir(f.dir)
	if len(ents) != 0 {
		t.Errorf("files left in %s: %v", f.dir, ents)
	}
	if rec := f.get("bad", "", "10.0.0.5"); rec.Code != http.StatusNotFound {
		t.Errorf("GET of a failed image: %d, want 404", rec.Code)
	}
	if im, err := f.c.Lookup(context.Background(), "bad"); err != nil || im.Status != inventory.ImageFailed {
		t.Errorf("Lookup = %+v, %v", im, err)
	}
	// Adding it again with the right checksum replaces the failed one.
	if _, err := f.c.Add(context.Background(), AddRequest{Name: "bad", URL: origin.URL + "/disk.img", SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	if im := f.wait("bad"); im.Status != inventory.ImageReady {
		t.Errorf("re-added image = %+v", im)
	}
}

// TestDownloadResumesWithRange cuts the first transfer short; the retry asks for the
// rest with Range and the image verifies.
func TestDownloadResumesWithRange(t *testing.T) {
	data, sum := content(2 << 20)
	var mu sync.Mutex
	var ranges []string
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		first := len(ranges) == 1
		mu.Unlock()
		if first {
			// Promise everything, send half, hang up.
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(data[:len(data)/2])
			if hj, ok := w.(http.Hijacker); ok {
				w.(http.Flusher).Flush()
				conn, _, _ := hj.Hijack()
				conn.Close()
			}
			return
		}
		http.ServeContent(w, r, "disk.img", time.Time{}, bytes.NewReader(data))
	}))
	defer origin.Close()
	f := newFixture(t, nil)
	if _, err := f.c.Add(context.Background(), AddRequest{Name: "resumed", URL: origin.URL + "/x", SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	if im := f.wait("resumed"); im.Status != inventory.ImageReady {
		t.Fatalf("image = %+v", im)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) != 2 || ranges[0] != "" || ranges[1] != fmt.Sprintf("bytes=%d-", len(data)/2) {
		t.Errorf("requests' Range headers = %q", ranges)
	}
}

func TestUpload(t *testing.T) {
	data, sum := content(1<<20 + 7)
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name, sum string
		want      inventory.ImageStatus
	}{
		{"good", sum, inventory.ImageReady},
		{"wrong", strings.Repeat("0", 64), inventory.ImageFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.c.Add(ctx, AddRequest{Name: tc.name, SHA256: tc.sum}); err != nil {
				t.Fatal(err)
			}
			im, err := f.c.Upload(ctx, tc.name, bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if im.Status != tc.want {
				t.Fatalf("status = %s (%s), want %s", im.Status, im.Error, tc.want)
			}
			_, err = os.Stat(filepath.Join(f.dir, tc.name))
			if (err == nil) != (tc.want == inventory.ImageReady) {
				t.Errorf("file present = %v", err == nil)
			}
			// A second upload is refused: the image is not waiting for one.
			if _, err := f.c.Upload(ctx, tc.name, bytes.NewReader(data)); !errors.Is(err, inventory.ErrConflict) {
				t.Errorf("second upload = %v, want ErrConflict", err)
			}
		})
	}
}

func TestRemoveRefusedWhileInUse(t *testing.T) {
	data, sum := content(4096)
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.c.Add(ctx, AddRequest{Name: "used", SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Upload(ctx, "used", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.CreateHosts(ctx, inventory.Host{ID: "node-1", MACs: []string{"52:54:00:00:00:01"}}); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.store.TransitionHost(ctx, "node-1", func(h *inventory.Host, c *inventory.HostChange) error {
		h.Provision = &inventory.Provision{ID: "p1", Image: "used"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = f.c.Remove(ctx, "used")
	if !errors.Is(err, inventory.ErrConflict) || !strings.Contains(err.Error(), "node-1") {
		t.Fatalf("Remove = %v, want ErrConflict naming node-1", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "used")); err != nil {
		t.Errorf("the file of a refused removal is gone: %v", err)
	}
	_, _, err = f.store.TransitionHost(ctx, "node-1", func(h *inventory.Host, c *inventory.HostChange) error {
		h.Provision = nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.c.Remove(ctx, "used"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "used")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file after removal: %v", err)
	}
}

func TestStartChecksWhatARestartLeft(t *testing.T) {
	data, sum := content(8192)
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, n := range []string{"kept", "deleted", "truncated"} {
		if _, err := f.c.Add(ctx, AddRequest{Name: n, SHA256: sum}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.c.Upload(ctx, n, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.c.Add(ctx, AddRequest{Name: "interrupted", SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	f.stop()
	f.c.Close()
	if err := os.Remove(filepath.Join(f.dir, "deleted")); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(f.dir, "truncated"), 100); err != nil {
		t.Fatal(err)
	}
	f.open(nil)
	want := map[string]inventory.ImageStatus{"kept": inventory.ImageReady, "deleted": inventory.ImageFailed,
		"truncated": inventory.ImageFailed, "interrupted": inventory.ImageFailed}
	<-f.c.Ready()
	for n, st := range want {
		im, err := f.c.Get(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if im.Status != st {
			t.Errorf("%s: status %s (%s), want %s", n, im.Status, im.Error, st)
		}
	}
}

func TestServeRefusals(t *testing.T) {
	data, sum := content(4096)
	deny := errors.New("10.0.0.9 is not provisioning with this image")
	f := newFixture(t, func(r *http.Request, name string) (string, error) {
		if strings.HasPrefix(r.RemoteAddr, "10.0.0.9:") {
			return "", deny
		}
		return "", nil
	})
	ctx := context.Background()
	if _, err := f.c.Add(ctx, AddRequest{Name: "img", SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	if rec := f.get("img", "", "10.0.0.5"); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("pending image: %d, want 503 with Retry-After", rec.Code)
	}
	if _, err := f.c.Upload(ctx, "img", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, image, src string
		want             int
	}{
		{"allowed", "img", "10.0.0.5", http.StatusOK},
		{"refused by the authorizer", "img", "10.0.0.9", http.StatusForbidden},
		{"unknown image", "nope", "10.0.0.5", http.StatusNotFound},
		{"invalid name", "a..b", "10.0.0.5", http.StatusBadRequest},
		{"invalid name chars", "A%20B", "10.0.0.5", http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if rec := f.get(tc.image, "", tc.src); rec.Code != tc.want {
				t.Errorf("code = %d, want %d", rec.Code, tc.want)
			}
		})
	}
}

func TestAddValidates(t *testing.T) {
	f := newFixture(t, nil)
	sum := strings.Repeat("a", 64)
	for _, req := range []AddRequest{
		{Name: "Bad Name", SHA256: sum},
		{Name: "x", SHA256: "123"},
		{Name: "x", SHA256: sum, URL: "ftp://example.com/x"},
		{Name: "x", SHA256: sum, URL: "file://relative/path"},
		{Name: "x", SHA256: sum, Format: "bzip2"},
	} {
		if _, err := f.c.Add(context.Background(), req); !errors.Is(err, inventory.ErrInvalid) {
			t.Errorf("Add(%+v) = %v, want ErrInvalid", req, err)
		}
	}
}

// TestFileURL adds an image from a file on the server.
func TestFileURL(t *testing.T) {
	data, sum := content(65536)
	src := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, nil)
	if _, err := f.c.Add(context.Background(), AddRequest{Name: "local", URL: "file://" + src, SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	if im := f.wait("local"); im.Status != inventory.ImageReady {
		t.Fatalf("image = %+v", im)
	}
}

// BenchmarkServeImage measures serving a 64 MiB image over loopback HTTP to a reader
// that discards it, beside a plain file copy of the same bytes (cp's floor).
func BenchmarkServeImage(b *testing.B) {
	const size = 64 << 20
	data, sum := content(size)
	dir := b.TempDir()
	st, err := inventory.Open(filepath.Join(dir, "inv.db"), inventory.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	c, err := New(Config{Dir: filepath.Join(dir, "images"), Store: st})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Add(ctx, AddRequest{Name: "bench", SHA256: sum}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Upload(ctx, "bench", bytes.NewReader(data)); err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	c.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b.Run("http", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(size)
		for b.Loop() {
			resp, err := http.Get(srv.URL + "/images/bench")
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n != size {
				b.Fatalf("got %d bytes", n)
			}
		}
	})
	b.Run("filecopy", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(size)
		for b.Loop() {
			in, err := os.Open(filepath.Join(dir, "images", "bench"))
			if err != nil {
				b.Fatal(err)
			}
			out, err := os.Create(filepath.Join(dir, "copy"))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(out, in); err != nil {
				b.Fatal(err)
			}
			in.Close()
			out.Close()
		}
	})
}
