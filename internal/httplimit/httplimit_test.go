package httplimit

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rackboot/rackboot/internal/ratelimit"
)

// content is what the test server serves with ranges: 64 KiB.
var content = bytes.Repeat([]byte("0123456789abcdef"), 4096)

func newServer(t *testing.T, cfg Config) (*httptest.Server, *Limits) {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /file", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "file", time.Time{}, bytes.NewReader(content))
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d bytes\n", len(b))
	})
	// /stream answers a small body with 32 MiB, written in pieces while the request's
	// context lives, as a long download does.
	mux.HandleFunc("POST /stream", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		piece := make([]byte, 64<<10)
		for range 512 {
			if r.Context().Err() != nil {
				return
			}
			if _, err := w.Write(piece); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("GET /script", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "#!ipxe\n") })
	srv := httptest.NewServer(l.Handler(mux))
	t.Cleanup(srv.Close)
	return srv, l
}

// TestBodyDeadline: 200 connections (as in the report) each trickle a body one byte every 100 ms; with a
// 500 ms body timeout every one of them is closed by the server within a second and a
// half, and counted, while a prompt body and a long response are unaffected.
func TestBodyDeadline(t *testing.T) {
	srv, l := newServer(t, Config{BodyTimeout: 500 * time.Millisecond, Routes: []Route{{Name: "report", Prefix: "/report"}}})
	addr := strings.TrimPrefix(srv.URL, "http://")

	const conns = 200
	start := time.Now()
	var wg sync.WaitGroup
	closedAfter := make(chan time.Duration, conns)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /report HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
			// Trickle until the server gives up on us; bounded in any case.
			for i := 0; i < 100; i++ {
				if _, err := c.Write([]byte("x")); err != nil {
					break
				}
				_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				buf := make([]byte, 512)
				if n, err := c.Read(buf); n > 0 || (err != nil && !isTimeout(err)) {
					break // the server answered or closed
				}
			}
			closedAfter <- time.Since(start)
		}()
	}
	wg.Wait()
	close(closedAfter)
	var worst time.Duration
	for d := range closedAfter {
		worst = max(worst, d)
	}
	t.Logf("%d trickling connections all ended after at most %v", conns, worst)
	if worst > 1500*time.Millisecond {
		t.Errorf("a trickling connection stayed %v, more than the 500 ms body timeout allows", worst)
	}
	if got := testutil.ToFloat64(l.limited.WithLabelValues("report", LimitBodyTimeout)); got != conns {
		t.Errorf("body_timeout refusals counted: %v, want %d", got, conns)
	}

	// A body sent at once is served; the deadline does not outlive it on a kept-alive
	// connection (a slow second request's headers are the server's ReadHeaderTimeout's
	// business, not this).
	resp, err := http.Post(srv.URL+"/report", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "5 bytes\n" {
		t.Fatalf("prompt body: %d %q", resp.StatusCode, b)
	}
}

// TestBodyDeadlineSparesLongResponses: the deadline ends with the body. A response
// that takes longer than the body timeout to read (a slow reader of 32 MiB) is not cut,
// which it would be if the read deadline outlived the body (net/http cancels the
// request's context when the connection's read times out), or if it were a blanket
// WriteTimeout.
func TestBodyDeadlineSparesLongResponses(t *testing.T) {
	srv, _ := newServer(t, Config{BodyTimeout: 200 * time.Millisecond})
	resp, err := http.Post(srv.URL+"/stream", "text/plain", strings.NewReader("go"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.Sleep(600 * time.Millisecond) // past the body timeout, with the server blocked writing
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != 32<<20 {
		t.Fatalf("long response cut after %d bytes: %v", n, err)
	}
	// And a GET, which has no body, is never under the deadline.
	resp2, err := http.Get(srv.URL + "/file")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	time.Sleep(300 * time.Millisecond)
	b, err := io.ReadAll(resp2.Body)
	if err != nil || !bytes.Equal(b, content) {
		t.Fatalf("GET cut: %d bytes, %v", len(b), err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestRanges: one range, or a few sorted without overlap, are served; overlapping,
// unsorted and too many ranges are refused with 416 and counted, before a byte of the
// content is sent. The attack that amplified 15 KB into 760 KB gets a short 416.
func TestRanges(t *testing.T) {
	srv, l := newServer(t, Config{})
	get := func(rg string) (int, int) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/file", nil)
		req.Header.Set("Range", rg)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, len(b)
	}
	for _, tc := range []struct {
		rg   string
		code int
	}{
		{"bytes=0-99", 206},
		{"bytes=100-", 206},
		{"bytes=-100", 206},
		{"bytes=0-9,20-29,40-", 206},
		{"bytes=0-9, 10-19", 206},
		{"bytes=0-99,50-149", 416},         // overlapping
		{"bytes=20-29,0-9", 416},           // unsorted
		{"bytes=0-,10-19", 416},            // open range not last
		{"bytes=0-9,-5", 416},              // suffix range in a set
		{"bytes=0-1,2-3,4-5,6-7,8-9", 416}, // more than 4
	} {
		if code, _ := get(tc.rg); code != tc.code {
			t.Errorf("Range %q = %d, want %d", tc.rg, code, tc.code)
		}
	}
	if got := testutil.ToFloat64(l.limited.WithLabelValues("other", LimitRange)); got != 5 {
		t.Errorf("range refusals counted: %v, want 5", got)
	}

	// The amplification attack: ~15 KB of overlapping ranges.
	var b strings.Builder
	b.WriteString("bytes=0-65535")
	for b.Len() < 15000 {
		b.WriteString(",0-65535")
	}
	code, n := get(b.String())
	t.Logf("a %d-byte Range header of overlapping ranges: %d, %d bytes of body", b.Len(), code, n)
	if code != 416 || n > 200 {
		t.Errorf("overlapping ranges: %d with %d bytes, want a short 416", code, n)
	}
}

// TestRateLimit: a source over its rate on a limited route gets 429 with Retry-After
// and is counted; other routes and other sources are not affected.
func TestRateLimit(t *testing.T) {
	lim, err := ratelimit.New(ratelimit.Config{PerSecond: 0.5, Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, l := newServer(t, Config{Registerer: reg, Routes: []Route{{Name: "script", Prefix: "/script", Rate: lim}}})
	codes := map[int]int{}
	var retryAfter string
	for range 10 {
		resp, err := http.Get(srv.URL + "/script")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			retryAfter = resp.Header.Get("Retry-After")
		}
	}
	if codes[200] != 3 || codes[429] != 7 {
		t.Fatalf("10 requests in a burst of 3: %v", codes)
	}
	if retryAfter == "" || retryAfter == "0" {
		t.Errorf("Retry-After = %q", retryAfter)
	}
	if got := testutil.ToFloat64(l.limited.WithLabelValues("script", LimitRate)); got != 7 {
		t.Errorf("rate refusals counted: %v, want 7", got)
	}
	// An unlimited route from the same source.
	if resp, err := http.Get(srv.URL + "/file"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("unlimited route: %v %v", resp, err)
	}
	// Another source (127.0.0.2) has its own bucket.
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	resp, err := c.Get(srv.URL + "/script")
	if err != nil {
		t.Skipf("no second loopback address: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("another source: %d", resp.StatusCode)
	}
	mfs, _ := reg.Gather()
	if len(mfs) != 1 || mfs[0].GetName() != "rackboot_http_limited_total" {
		t.Errorf("registered metrics: %v", mfs)
	}
}

func TestCheckRangesFuzzSeeds(t *testing.T) {
	// Anything parses without a panic; see FuzzCheckRanges.
	for _, h := range []string{"", "bytes=", "bytes=,", "bytes=-", "bytes=--", "bytes=1-0", "items=0-1,0-1", "bytes=9223372036854775807-"} {
		_ = CheckRanges(h, 4)
	}
}

func FuzzCheckRanges(f *testing.F) {
	for _, s := range []string{"bytes=0-99", "bytes=0-9,20-29,40-", "bytes=0-99,50-149", "bytes=-5", "bytes=0-,1-2", "bytes= 1 - 2 , 3-4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if CheckRanges(h, 4) != nil {
			return
		}
		// Accepted sets have at most 4 ranges and no byte twice.
		_, set, ok := strings.Cut(h, "=")
		if ok && strings.HasPrefix(strings.TrimSpace(h), "bytes") && strings.Count(set, ",") > 3 {
			t.Fatalf("accepted %d ranges: %q", strings.Count(set, ",")+1, h)
		}
	})
}
