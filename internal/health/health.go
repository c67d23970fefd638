// Package health serves rackboot's /readyz: named checks in the format of
// Kubernetes' health endpoints.
//
//	GET /readyz          200 "ok", or 503 with the failing checks
//	GET /readyz?verbose  every check, one a line, then the verdict:
//
//	  [+]bmc ok
//	  [+]dhcp ok
//	  [-]bootenv failed: no boot environment imported: ... (informational)
//	  readyz check passed
//
// A check gates readiness, or is informational: shown, but never what makes
// /readyz fail. rackboot is ready once it answers boot traffic (its sockets are
// open, its BMC workers run); whether it can also inspect and provision (a boot
// environment, a ready image) or reach a management cluster is for the operator
// to read, and a readiness probe that failed on it would only take a working boot
// server out of service.
package health

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Check is one named check.
type Check struct {
	// Name is lower-case, without spaces ("dhcp", "bootenv").
	Name string
	// Informational checks are listed but do not fail /readyz.
	Informational bool
	// Run returns nil when the check passes, or what is wrong and what to do.
	// It gets a context bounded by Handler's timeout.
	Run func(ctx context.Context) error
}

// Closed is a Run that passes once c is closed, and otherwise fails with msg.
func Closed(c <-chan struct{}, msg string) func(context.Context) error {
	return func(context.Context) error {
		select {
		case <-c:
			return nil
		default:
			return fmt.Errorf("%s", msg)
		}
	}
}

// DefaultTimeout bounds one check.
const DefaultTimeout = 5 * time.Second

// Handler serves the checks as /readyz does. name ("readyz") is used in the verdict
// line.
type Handler struct {
	Name   string
	Checks []Check
	// Timeout bounds each check (default DefaultTimeout).
	Timeout time.Duration
}

type result struct {
	Check
	err error
}

// run runs the checks; the informational ones only when they are to be shown, so a
// probe polling plain /readyz does not ask the management cluster every time.
func (h *Handler) run(ctx context.Context, informational bool) (rs []result, ok bool) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ok = true
	for _, c := range h.Checks {
		if c.Informational && !informational {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.Run(cctx)
		cancel()
		rs = append(rs, result{c, err})
		if err != nil && !c.Informational {
			ok = false
		}
	}
	return rs, ok
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, verbose := r.URL.Query()["verbose"]
	rs, ok := h.run(r.Context(), verbose)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if ok && !verbose {
		fmt.Fprint(w, "ok\n")
		return
	}
	var b strings.Builder
	for _, r := range rs {
		// Without ?verbose a failure lists the checks that failed only.
		if !verbose && r.err == nil {
			continue
		}
		if r.err == nil {
			fmt.Fprintf(&b, "[+]%s ok\n", r.Name)
			continue
		}
		msg := strings.ReplaceAll(r.err.Error(), "\n", " ")
		note := ""
		if r.Informational {
			note = " (informational)"
		}
		fmt.Fprintf(&b, "[-]%s failed: %s%s\n", r.Name, msg, note)
	}
	if ok {
		fmt.Fprintf(&b, "%s check passed\n", h.Name)
	} else {
		fmt.Fprintf(&b, "%s check failed\n", h.Name)
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprint(w, b.String())
}
