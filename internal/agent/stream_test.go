package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	stdgzip "compress/gzip"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/rackboot/rackboot/agentapi"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func compress(t testing.TB, format agentapi.Format, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch format {
	case agentapi.FormatRaw:
		return raw
	case agentapi.FormatGzip:
		w = stdgzip.NewWriter(&buf)
	case agentapi.FormatZstd:
		w, err = zstd.NewWriter(&buf)
	case agentapi.FormatXz:
		w, err = xz.NewWriter(&buf)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// randomImage is a raw image of n bytes that compresses somewhat: random runs and zeros.
func randomImage(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		if r.IntN(3) == 0 {
			continue
		}
		for j := i; j < min(i+4096, n); j++ {
			b[j] = byte(r.IntN(16))
		}
	}
	return b
}

// imageServer serves files with http.ServeContent (Range, If-Range, ETag) and records
// the requests; cut, when set, decides per request how many body bytes to send before
// dropping the connection (-1: all).
type imageServer struct {
	mu       sync.Mutex
	files    map[string][]byte
	requests []*http.Request
	cut      func(n int, r *http.Request) int
	noRange  bool
	stall    chan struct{} // when set, a cut request stalls until the client gives up
}

func (s *imageServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Clone(context.Background()))
	n := len(s.requests)
	data, ok := s.files[r.URL.Path]
	cut := -1
	if s.cut != nil {
		cut = s.cut(n, r)
	}
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if s.noRange {
		r.Header.Del("Range")
	}
	w.Header().Set("ETag", `"`+sum(data)[:16]+`"`)
	if cut >= 0 {
		w = &cutWriter{ResponseWriter: w, left: cut, stall: s.stall, done: r.Context().Done()}
	}
	http.ServeContent(w, r, "", time.Unix(0, 0), bytes.NewReader(data))
}

// cutWriter passes a response through until left body bytes were sent, then drops the
// connection (after stalling until the client gives up, when stall is set).
type cutWriter struct {
	http.ResponseWriter
	left  int
	stall chan struct{}
	done  <-chan struct{}
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) < c.left {
		c.left -= len(p)
		return c.ResponseWriter.Write(p)
	}
	_, _ = c.ResponseWriter.Write(p[:c.left])
	c.ResponseWriter.(http.Flusher).Flush()
	if c.stall != nil {
		select {
		case <-c.done:
		case <-c.stall:
		}
	}
	panic(http.ErrAbortHandler)
}

func (s *imageServer) requestLog() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.requests...)
}

func newImageServer(t testing.TB, files map[string][]byte) (*imageServer, *httptest.Server) {
	s := &imageServer{files: files}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestWriteImageFormats(t *testing.T) {
	raw := randomImage(3<<20 + 512)
	for _, format := range []agentapi.Format{agentapi.FormatRaw, agentapi.FormatGzip, agentapi.FormatZstd, agentapi.FormatXz} {
		for _, declared := range []agentapi.Format{format, agentapi.FormatAuto} {
			for _, budget := range []int64{0, 64 << 20} {
				name := string(format) + "/declared-" + string(declared) + "/stream"
				if budget > 0 {
					name = string(format) + "/declared-" + string(declared) + "/verify-first"
				}
				t.Run(name, func(t *testing.T) {
					served := compress(t, format, raw)
					_, srv := newImageServer(t, map[string][]byte{"/img": served})
					d, p := newDiskFile(t, 8<<20, 0xEE)
					var phases []agentapi.Phase
					wiped := false
					res, err := writeImage(t.Context(), d, imageJob{
						URL: srv.URL + "/img", SHA256: sum(served), Format: declared, Size: int64(len(served)),
						MemoryBudget: budget, Client: srv.Client(), Log: quietLog(),
						Progress:    func(ph agentapi.Phase, done, total int64) { phases = append(phases, ph) },
						BeforeWrite: func() error { wiped = true; return nil },
					})
					if err != nil {
						t.Fatal(err)
					}
					if res.Format != format || res.SHA256 != sum(served) || res.Served != int64(len(served)) || res.Written != int64(len(raw)) {
						t.Errorf("result %+v: want format %s, %d bytes served, %d written", res, format, len(served), len(raw))
					}
					if res.VerifiedFirst != (budget > 0) {
						t.Errorf("VerifiedFirst = %v with a budget of %d", res.VerifiedFirst, budget)
					}
					got, _ := os.ReadFile(p)
					if !bytes.Equal(got[:len(raw)], raw) {
						t.Error("the disk does not hold the image")
					}
					if !bytes.Equal(got[len(raw):], bytes.Repeat([]byte{0xEE}, len(got)-len(raw))) {
						t.Error("bytes past the image were changed")
					}
					if !wiped {
						t.Error("BeforeWrite (the wipe) was not called")
					}
					if len(phases) == 0 {
						t.Error("no progress reported")
					}
				})
			}
		}
	}
}

// TestWriteImageChecksumMismatchStreaming: a streamed image with a wrong checksum is
// never reported as written, and what was written loses its partition table and
// filesystem signatures.
func TestWriteImageChecksumMismatchStreaming(t *testing.T) {
	img := buildTestImage(t, 12<<20, map[string]string{"etc/cloud/cloud.cfg": "x: 1\n"})
	for _, format := range []agentapi.Format{agentapi.FormatRaw, agentapi.FormatGzip} {
		t.Run(string(format), func(t *testing.T) {
			served := compress(t, format, img.data)
			_, srv := newImageServer(t, map[string][]byte{"/img": served})
			d, p := newDiskFile(t, 16<<20, 0)
			wrong := sum([]byte("another image"))
			res, err := writeImage(t.Context(), d, imageJob{
				URL: srv.URL + "/img", SHA256: wrong, Size: int64(len(served)), MemoryBudget: 0,
				Client: srv.Client(), Log: quietLog(),
			})
			if !errors.Is(err, ErrChecksum) {
				t.Fatalf("writeImage = %v, want ErrChecksum", err)
			}
			for _, s := range []string{sum(served), wrong, "wiped"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if res.SHA256 != sum(served) || res.Written != int64(len(img.data)) {
				t.Errorf("result %+v", res)
			}
			// What is left: the middle of the filesystem (streaming cannot take it
			// back) but nothing that makes it a disk with a partition table or a
			// filesystem.
			if got := signatures(t, p, img.partStart); got != "" {
				t.Errorf("signatures left after a bad image: %q, want none", got)
			}
			after, _ := os.ReadFile(p)
			if !allZero(after[:2<<20]) {
				t.Error("the first 2 MiB (partition table, superblock) are not zero")
			}
			if !allZero(after[len(img.data)-1<<20 : len(img.data)]) {
				t.Error("the image's backup GPT was not wiped")
			}
			mid := int(img.partStart) + 4<<20
			if !bytes.Equal(after[mid:mid+4096], img.data[mid:mid+4096]) {
				t.Log("note: the middle of the image is not on the disk")
			}
		})
	}
}

// TestWriteImageChecksumMismatchVerifyFirst: an image small enough to verify in memory
// first leaves the disk untouched, byte for byte, and is never wiped.
func TestWriteImageChecksumMismatchVerifyFirst(t *testing.T) {
	raw := randomImage(2 << 20)
	_, srv := newImageServer(t, map[string][]byte{"/img": raw})
	d, p := newDiskFile(t, 4<<20, 0x5A)
	wiped := false
	_, err := writeImage(t.Context(), d, imageJob{
		URL: srv.URL + "/img", SHA256: sum([]byte("x")), Size: int64(len(raw)), MemoryBudget: 64 << 20,
		Client: srv.Client(), Log: quietLog(), BeforeWrite: func() error { wiped = true; return nil },
	})
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("writeImage = %v, want ErrChecksum saying nothing was written", err)
	}
	if wiped {
		t.Error("the disk was wiped for an image that failed verification")
	}
	after, _ := os.ReadFile(p)
	if !bytes.Equal(after, bytes.Repeat([]byte{0x5A}, 4<<20)) {
		t.Error("the disk was changed")
	}
}

// TestWriteImageResume: the server drops the connection part-way; the agent resumes
// with a Range request (and If-Range on the ETag) and the disk ends up right.
func TestWriteImageResume(t *testing.T) {
	raw := randomImage(6 << 20)
	for _, format := range []agentapi.Format{agentapi.FormatRaw, agentapi.FormatZstd} {
		t.Run(string(format), func(t *testing.T) {
			served := compress(t, format, raw)
			s, srv := newImageServer(t, map[string][]byte{"/img": served})
			// The first response is cut after a third, the second (the first resume)
			// after another sixth, the third finishes.
			cuts := []int{len(served) / 3, len(served) / 6}
			s.cut = func(n int, r *http.Request) int {
				if n <= len(cuts) {
					return cuts[n-1]
				}
				return -1
			}
			d, p := newDiskFile(t, 8<<20, 0)
			res, err := writeImage(t.Context(), d, imageJob{
				URL: srv.URL + "/img", SHA256: sum(served), Size: int64(len(served)),
				Client: srv.Client(), Log: quietLog(), backoff: time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(p)
			if !bytes.Equal(got[:len(raw)], raw) || res.SHA256 != sum(served) {
				t.Error("the resumed download did not write the image")
			}
			reqs := s.requestLog()
			if len(reqs) != 3 {
				t.Fatalf("%d requests, want 3 (two cut, then the rest)", len(reqs))
			}
			for i, want := range []string{"", "bytes=" + strconv.Itoa(cuts[0]) + "-", "bytes=" + strconv.Itoa(cuts[0]+cuts[1]) + "-"} {
				if rg := reqs[i].Header.Get("Range"); rg != want {
					t.Errorf("request %d asked Range %q, want %q", i+1, rg, want)
				}
			}
			if reqs[1].Header.Get("If-Range") == "" {
				t.Error("the resume did not send If-Range")
			}
		})
	}
}

// TestWriteImageStalled: a connection that stops sending is given up after the idle
// timeout and resumed.
func TestWriteImageStalled(t *testing.T) {
	raw := randomImage(2 << 20)
	s, srv := newImageServer(t, map[string][]byte{"/img": raw})
	s.stall = make(chan struct{})
	defer close(s.stall)
	s.cut = func(n int, r *http.Request) int {
		if n == 1 {
			return 1 << 20
		}
		return -1
	}
	d, p := newDiskFile(t, 4<<20, 0)
	_, err := writeImage(t.Context(), d, imageJob{
		URL: srv.URL + "/img", SHA256: sum(raw), Client: srv.Client(), Log: quietLog(),
		idle: 300 * time.Millisecond, backoff: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got[:len(raw)], raw) {
		t.Error("the disk does not hold the image")
	}
	if n := len(s.requestLog()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestWriteImageCannotResume(t *testing.T) {
	raw := randomImage(2 << 20)
	s, srv := newImageServer(t, map[string][]byte{"/img": raw})
	s.noRange = true
	s.cut = func(n int, r *http.Request) int {
		if n == 1 {
			return 1 << 19
		}
		return -1
	}
	d, _ := newDiskFile(t, 4<<20, 0)
	_, err := writeImage(t.Context(), d, imageJob{
		URL: srv.URL + "/img", SHA256: sum(raw), Client: srv.Client(), Log: quietLog(), backoff: time.Millisecond,
	})
	if err == nil || !strings.Contains(err.Error(), "no Range support") {
		t.Fatalf("writeImage = %v, want a no-Range-support error", err)
	}
}

func TestWriteImageErrors(t *testing.T) {
	raw := randomImage(2 << 20)
	_, srv := newImageServer(t, map[string][]byte{"/img": raw, "/junk.gz": []byte("not gzip at all")})
	for _, tc := range []struct {
		name, path, want string
		format           agentapi.Format
		disk             int64
	}{
		{"not found", "/missing", "404", agentapi.FormatAuto, 4 << 20},
		{"larger than the disk", "/img", "larger than the disk", agentapi.FormatAuto, 1 << 20},
		{"bad gzip", "/junk.gz", "gzip image", agentapi.FormatGzip, 4 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDiskFile(t, tc.disk, 0)
			_, err := writeImage(t.Context(), d, imageJob{
				URL: srv.URL + tc.path, SHA256: sum(raw), Format: tc.format, Client: srv.Client(), Log: quietLog(),
				backoff: time.Millisecond,
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("writeImage = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDetectFormat(t *testing.T) {
	raw := []byte("plain bytes, long enough")
	for _, f := range []agentapi.Format{agentapi.FormatRaw, agentapi.FormatGzip, agentapi.FormatZstd, agentapi.FormatXz} {
		if got := detectFormat(compress(t, f, raw)); got != f {
			t.Errorf("detectFormat(%s data) = %s", f, got)
		}
	}
}

// BenchmarkWriteImage streams an image from a loopback HTTP server to a disk file, the
// agent's whole data path; compare with `cp` of the same file (see the issue).
func BenchmarkWriteImage(b *testing.B) {
	raw := randomImage(64 << 20)
	for _, format := range []agentapi.Format{agentapi.FormatRaw, agentapi.FormatGzip, agentapi.FormatZstd} {
		b.Run(string(format), func(b *testing.B) {
			served := compress(b, format, raw)
			_, srv := newImageServer(b, map[string][]byte{"/img": served})
			d, _ := newDiskFile(b, 65<<20, 0)
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := writeImage(context.Background(), d, imageJob{
					URL: srv.URL + "/img", SHA256: sum(served), Client: srv.Client(), Log: quietLog(),
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
