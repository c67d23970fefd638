package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Retry bounds how a call is retried: Attempts tries in all, waiting Initial, then twice
// as long each time up to Max, with jitter.
type Retry struct {
	Attempts int
	Initial  time.Duration
	Max      time.Duration
}

// DefaultRetry gives a server about two minutes to come back (a restart of rackboot).
func DefaultRetry() Retry {
	return Retry{Attempts: 12, Initial: 500 * time.Millisecond, Max: 15 * time.Second}
}

// ProgressRetry is shorter: progress is best effort and must not stall a write.
func ProgressRetry() Retry {
	return Retry{Attempts: 2, Initial: 500 * time.Millisecond, Max: time.Second}
}

// StatusError is an HTTP answer other than the one expected.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("server answered %d %s", e.Code, http.StatusText(e.Code))
	}
	return fmt.Sprintf("server answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

// Temporary reports whether the call may succeed if retried.
func (e *StatusError) Temporary() bool {
	return e.Code >= 500 || e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests
}

// ErrCancelled is returned by Progress when the server answered 409: it no longer wants
// this plan run.
var ErrCancelled = errors.New("the server cancelled the plan (409)")

// Client is the agent's side of the protocol. The zero value is not usable: set BaseURL
// and Token.
type Client struct {
	BaseURL string
	Token   string
	// UserAgent defaults to rackboot-agent/dev.
	UserAgent string
	// HTTP defaults to a client with a 30 s timeout per attempt.
	HTTP *http.Client
	// Retry defaults to DefaultRetry() for hello and result; progress always uses
	// ProgressRetry().
	Retry Retry
	Log   *slog.Logger
}

// ErrInvalidPlan is the error of a hello whose plan fails Validate: most likely a server
// newer than the agent (a mode the agent does not know).
var ErrInvalidPlan = errors.New("the server sent a plan this agent cannot run")

// Hello sends the facts and returns the validated plan. A plan that fails Validate is
// returned as it was decoded, with an error wrapping ErrInvalidPlan, so the agent can
// report its refusal against the plan's action; it must not run it.
func (c *Client) Hello(ctx context.Context, h Hello) (Plan, error) {
	var p Plan
	if err := c.call(ctx, PathHello, h, &p, c.retry(DefaultRetry())); err != nil {
		return Plan{}, fmt.Errorf("hello: %w", err)
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("hello: %w: %w", ErrInvalidPlan, err)
	}
	return p, nil
}

// Progress reports progress; ErrCancelled means stop.
func (c *Client) Progress(ctx context.Context, p Progress) error {
	err := c.call(ctx, PathProgress, p, nil, ProgressRetry())
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusConflict {
		return ErrCancelled
	}
	return err
}

// Result reports the outcome.
func (c *Client) Result(ctx context.Context, r Result) error {
	if err := c.call(ctx, PathResult, r, nil, c.retry(DefaultRetry())); err != nil {
		return fmt.Errorf("result: %w", err)
	}
	return nil
}

func (c *Client) retry(def Retry) Retry {
	if c.Retry.Attempts > 0 {
		return c.Retry
	}
	return def
}

func (c *Client) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Client) call(ctx context.Context, path string, in, out any, r Retry) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	wait := r.Initial
	var last error
	for attempt := 1; ; attempt++ {
		last = c.once(ctx, hc, path, body, out)
		var se *StatusError
		if last == nil || ctx.Err() != nil || (errors.As(last, &se) && !se.Temporary()) || attempt >= r.Attempts {
			if last != nil && attempt > 1 {
				return fmt.Errorf("%w (after %d attempts)", last, attempt)
			}
			return last
		}
		// Jitter spreads a rack of agents that all lost the server at once.
		d := wait/2 + rand.N(wait/2+1)
		c.log().Warn("agent API call failed, retrying", "path", path, "attempt", attempt, "retryIn", d.Round(time.Millisecond), "err", last)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %v)", last, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, r.Max)
	}
}

func (c *Client) once(ctx context.Context, hc *http.Client, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.BaseURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("Accept", ContentType)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	ua := c.UserAgent
	if ua == "" {
		ua = "rackboot-agent/dev"
	}
	req.Header.Set("User-Agent", ua)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 512 {
			msg = msg[:512]
		}
		return &StatusError{Code: resp.StatusCode, Message: msg}
	}
	if out == nil {
		return nil
	}
	if len(data) > MaxBodyBytes {
		return fmt.Errorf("answer is over %d bytes", MaxBodyBytes)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// BearerToken returns the token of an "Authorization: Bearer TOKEN" header.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || ValidateToken(strings.TrimSpace(tok)) != nil {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// DecodeRequest reads a POSTed JSON body of at most MaxBodyBytes into v (unknown fields
// are ignored, for newer agents). Servers answer its error with 400.
func DecodeRequest(r *http.Request, v any) error {
	if r.Method != http.MethodPost {
		return fmt.Errorf("method %s: the agent API takes POST", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != ContentType {
			return fmt.Errorf("content type %q: want %s", ct, ContentType)
		}
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(data) > MaxBodyBytes {
		return fmt.Errorf("body is over %d bytes", MaxBodyBytes)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	return nil
}

// WriteJSON answers with status and v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers with status and an Error body.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, Error{Error: msg})
}
