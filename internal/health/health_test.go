package health

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReadyz(t *testing.T) {
	bound := make(chan struct{})
	h := &Handler{Name: "readyz", Timeout: 50 * time.Millisecond, Checks: []Check{
		{Name: "dhcp", Run: Closed(bound, "the DHCP sockets are not open yet")},
		{Name: "bootenv", Informational: true, Run: func(context.Context) error {
			return errors.New("no boot environment imported: run 'rackboot bootenv import'")
		}},
		{Name: "capi", Informational: true, Run: func(ctx context.Context) error {
			<-ctx.Done() // a management cluster that does not answer
			return errors.New("the management cluster did not answer: " + ctx.Err().Error())
		}},
	}}
	get := func(target string) (int, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		b, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(b)
	}
	for _, c := range []struct {
		name, target string
		bound        bool
		code         int
		body         string
	}{
		{"starting", "/readyz", false, 503, "[-]dhcp failed: the DHCP sockets are not open yet\nreadyz check failed\n"},
		{"starting verbose", "/readyz?verbose", false, 503, `[-]dhcp failed: the DHCP sockets are not open yet
[-]bootenv failed: no boot environment imported: run 'rackboot bootenv import' (informational)
[-]capi failed: the management cluster did not answer: context deadline exceeded (informational)
readyz check failed
`},
		{"ready", "/readyz", true, 200, "ok\n"},
		{"ready verbose", "/readyz?verbose=1", true, 200, `[+]dhcp ok
[-]bootenv failed: no boot environment imported: run 'rackboot bootenv import' (informational)
[-]capi failed: the management cluster did not answer: context deadline exceeded (informational)
readyz check passed
`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.bound {
				select {
				case <-bound:
				default:
					close(bound)
				}
			}
			code, body := get(c.target)
			if code != c.code {
				t.Errorf("status %d, want %d", code, c.code)
			}
			if d := cmp.Diff(c.body, body); d != "" {
				t.Errorf("body (-want +got):\n%s", d)
			}
		})
	}
}

// TestPlainReadyzSkipsInformational: a probe of plain /readyz runs only the checks
// that gate it.
func TestPlainReadyzSkipsInformational(t *testing.T) {
	calls := 0
	h := &Handler{Name: "readyz", Checks: []Check{
		{Name: "capi", Informational: true, Run: func(context.Context) error { calls++; return nil }},
	}}
	for _, target := range []string{"/readyz", "/readyz?verbose"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, target, nil))
	}
	if calls != 1 {
		t.Errorf("informational check run %d times for /readyz and /readyz?verbose, want once", calls)
	}
}
