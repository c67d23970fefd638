package bmc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Error classes. Every error a Service call returns wraps exactly one of them (or the
// inventory's ErrNotFound for an unknown host), so callers branch with errors.Is; the
// admin API maps them to HTTP statuses and the metrics use them as the outcome label.
var (
	// ErrNoBMC: the host has no BMC URL configured.
	ErrNoBMC = errors.New("no BMC configured")
	// ErrAuth: the BMC answered but refused the user, password or privilege.
	ErrAuth = errors.New("BMC rejected the credentials")
	// ErrUnreachable: nothing answered at the BMC's address (refused, no route, reset).
	ErrUnreachable = errors.New("BMC unreachable")
	// ErrTimeout: the call's deadline passed before the BMC finished answering.
	ErrTimeout = errors.New("BMC did not answer in time")
	// ErrTLS: the BMC's HTTPS certificate is not trusted, or it does not speak TLS.
	ErrTLS = errors.New("BMC TLS handshake failed")
	// ErrRejected: the BMC answered and refused the operation itself.
	ErrRejected = errors.New("BMC refused the operation")
	// ErrBMCFailure: the BMC answered with an internal error or an unexpected reply.
	ErrBMCFailure = errors.New("BMC failed")
	// ErrSetup: something on this side is missing (ipmitool not installed, ...).
	ErrSetup = errors.New("BMC client setup")
	// ErrBusy: every worker was busy for the whole queue timeout.
	ErrBusy = errors.New("BMC workers busy")
	// ErrStopped: the service is not running (not started yet, or shutting down).
	ErrStopped = errors.New("BMC service not running")
)

// classes in the order classify checks them; the first match is an error's class.
var classes = []struct {
	err     error
	outcome string
}{
	{ErrNoBMC, "no_bmc"},
	{ErrInvalidURL, "invalid_url"},
	{ErrAuth, "auth"},
	{ErrTLS, "tls"},
	{ErrTimeout, "timeout"},
	{ErrUnreachable, "unreachable"},
	{ErrRejected, "rejected"},
	{ErrBMCFailure, "bmc_error"},
	{ErrSetup, "setup"},
	{ErrBusy, "busy"},
	{ErrStopped, "stopped"},
	{context.Canceled, "canceled"},
}

// classOf returns the class sentinel err wraps, or ErrBMCFailure when it wraps none.
func classOf(err error) error {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.err
		}
	}
	return ErrBMCFailure
}

// Outcome is the metrics label for err: "ok" for nil, else its class ("auth",
// "unreachable", "timeout", ...).
func Outcome(err error) string {
	if err == nil {
		return "ok"
	}
	c := classOf(err)
	for _, k := range classes {
		if k.err == c {
			return k.outcome
		}
	}
	return "bmc_error"
}

// retryable says whether another attempt may succeed. Actions that are not idempotent
// (cycle, reset) are retried only when the BMC was not reached at all, because a BMC
// that failed half-way may already have acted and a second cycle is not harmless.
func retryable(err error, idempotent bool) bool {
	switch classOf(err) {
	case ErrUnreachable:
		return true
	case ErrBMCFailure:
		return idempotent
	}
	return false
}

// Error is what a Service call returns when the BMC operation fails.
type Error struct {
	HostID    string
	Operation Operation
	// Endpoint is the canonical BMC URL (never with a password).
	Endpoint string
	// Class is one of the class sentinels (ErrAuth, ErrTimeout, ...).
	Class    error
	Attempts int
	Elapsed  time.Duration
	// Err is the last attempt's error, with any password scrubbed from its text.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "host %s: %s", e.HostID, strings.ReplaceAll(string(e.Operation), "_", " "))
	if e.Endpoint != "" {
		fmt.Fprintf(&b, " via %s", e.Endpoint)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts in %s)", e.Attempts, e.Elapsed.Round(time.Millisecond))
	}
	return b.String()
}

// Unwrap exposes the class and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error { return []error{e.Class, e.Err} }

// classified is a backend error: a class, what happened, and what to do.
type classified struct {
	class error
	msg   string
	cause error
}

func (c *classified) Error() string   { return c.msg }
func (c *classified) Unwrap() []error { return []error{c.class, c.cause} }

// newError builds a classified error; cause may be nil.
func newError(class error, cause error, format string, args ...any) error {
	return &classified{class: class, msg: fmt.Sprintf(format, args...), cause: cause}
}

// scrub replaces every occurrence of secret in err's text. Backends never put the
// password in an error on purpose; this makes sure a library that echoes a request does
// not put it there by accident.
func scrub(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &scrubbed{msg: strings.ReplaceAll(err.Error(), secret, "REDACTED"), class: classOf(err)}
}

type scrubbed struct {
	msg   string
	class error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.class }

// oneLine flattens a library's multi-line error ("2 errors occurred:\n\t* ...") and
// bounds its length, for messages and event fields.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
