// Package httplimit owns the limits rackboot puts in front of an HTTP listener that
// strangers reach (the boot listener faces every machine on the provisioning
// network), so that no request can hold the server's resources for long or make it
// send far more than was asked:
//
//   - Request bodies: a request with a body must deliver all of it within its route's
//     body timeout (Config.BodyTimeout by default). The deadline is the connection's
//     read deadline, set when the handler starts and only for requests with a body;
//     net/http lifts it when the body has been read (before it watches the connection
//     for the client going away), so a long response (an OS image) is never cut by it:
//     the server has no blanket ReadTimeout or WriteTimeout (STYLE.md 11). Without it, 200
//     connections trickling a body one byte at a time stayed open 40 s and more.
//   - Ranges: a Range header may name at most Config.MaxRanges ranges, sorted and not
//     overlapping; anything else is refused with 416 before the handler runs (RFC 9110
//     14.2 allows rejecting overlapping and unsorted range sets). A single range is
//     always fine. Without it, a 15 KB request of overlapping ranges drew a 760 KB
//     multipart reply.
//   - Rates: routes given a ratelimit.Limiter answer 429 with Retry-After to a source
//     address over its rate.
//
// Every refusal is counted in rackboot_http_limited_total{route,limit} (limit is
// body_timeout, range or rate) and logged at debug level only, so a flood costs a
// counter, not a log line.
package httplimit

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/internal/ratelimit"
)

// Defaults.
const (
	// DefaultBodyTimeout: the bodies of boot routes (agent reports, phone-homes) are a
	// few kilobytes; ten seconds is generous on any LAN.
	DefaultBodyTimeout = 10 * time.Second
	// DefaultMaxRanges: resuming clients (the agent, curl, iPXE) ask for one range.
	DefaultMaxRanges = 4
)

// Limit labels of rackboot_http_limited_total.
const (
	LimitBodyTimeout = "body_timeout"
	LimitRange       = "range"
	LimitRate        = "rate"
)

// Route is a class of requests with limits of its own. A request belongs to the first
// route whose Prefix (and Suffix, if set) its path has; other requests to the default
// route, named "other".
type Route struct {
	// Name is the route's label in metrics and logs: a fixed word, not the path.
	Name           string
	Prefix, Suffix string
	// BodyTimeout overrides Config.BodyTimeout; a negative value means none (an upload
	// route whose bodies are gigabytes).
	BodyTimeout time.Duration
	// Rate, if set, limits requests per source address.
	Rate *ratelimit.Limiter
}

// Config configures the limits.
type Config struct {
	// BodyTimeout is how long a request body may take; 0 means DefaultBodyTimeout.
	BodyTimeout time.Duration `yaml:"bodyTimeout" doc:"a request body must arrive within this (admin API: 1m; image uploads: none)"`
	// MaxRanges bounds the ranges of one request; 0 means DefaultMaxRanges.
	MaxRanges int `yaml:"maxRanges" doc:"ranges in one Range header; more, overlapping or unsorted ones get 416"`
	// Routes, first match wins.
	Routes []Route
	// Registerer gets rackboot_http_limited_total; nil keeps it private.
	Registerer prometheus.Registerer
	// Logger gets one debug line per refusal; nil discards.
	Logger *slog.Logger
}

// Validate checks the settings. Messages start with the setting's name.
func (c Config) Validate() error {
	switch {
	case c.BodyTimeout < 0:
		return fmt.Errorf("bodyTimeout: %s: give a positive duration such as 10s", c.BodyTimeout)
	case c.BodyTimeout > 0 && c.BodyTimeout < 100*time.Millisecond:
		return fmt.Errorf("bodyTimeout: %s is too short for any client: give at least 1s (default %s)", c.BodyTimeout, DefaultBodyTimeout)
	case c.MaxRanges < 0:
		return fmt.Errorf("maxRanges: %d: give at least 1 (default %d)", c.MaxRanges, DefaultMaxRanges)
	}
	for _, r := range c.Routes {
		if r.Name == "" || r.Prefix == "" {
			return errors.New("httplimit: every route needs a name and a path prefix")
		}
	}
	return nil
}

// Limits wraps handlers with the limits. Build it with New.
type Limits struct {
	cfg     Config
	limited *prometheus.CounterVec
	log     *slog.Logger
}

// New checks cfg, fills defaults and registers the metric.
func New(cfg Config) (*Limits, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.MaxRanges == 0 {
		cfg.MaxRanges = DefaultMaxRanges
	}
	l := &Limits{cfg: cfg, log: cfg.Logger}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.limited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rackboot_http_limited_total",
		Help: "HTTP requests refused by a limit: a body too slow (body_timeout), a Range header with too many, overlapping or unsorted ranges (range), or a source over its rate (rate).",
	}, []string{"route", "limit"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(l.limited); err != nil {
			return nil, fmt.Errorf("httplimit: registering metrics: %w", err)
		}
	}
	return l, nil
}

// Handler returns next behind the limits.
func (l *Limits) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := l.route(r.URL.Path)
		if rt.Rate != nil {
			src := sourceAddr(r)
			if !rt.Rate.Allow(src) {
				l.refuse(r, rt.Name, LimitRate)
				secs := int(rt.Rate.RetryAfter(src).Seconds()) + 1
				w.Header().Set("Retry-After", strconv.Itoa(secs))
				http.Error(w, "too many requests from this address: try again later", http.StatusTooManyRequests)
				return
			}
		}
		if h := r.Header.Get("Range"); h != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			if err := CheckRanges(h, l.cfg.MaxRanges); err != nil {
				l.refuse(r, rt.Name, LimitRange)
				http.Error(w, err.Error(), http.StatusRequestedRangeNotSatisfiable)
				return
			}
		}
		timeout := l.cfg.BodyTimeout
		if rt.BodyTimeout != 0 {
			timeout = rt.BodyTimeout
		}
		if timeout > 0 && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			rc := http.NewResponseController(w)
			if err := rc.SetReadDeadline(time.Now().Add(timeout)); err == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, onTimeout: func() { l.refuse(r, rt.Name, LimitBodyTimeout) }}
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (l *Limits) route(path string) Route {
	for _, rt := range l.cfg.Routes {
		if strings.HasPrefix(path, rt.Prefix) && strings.HasSuffix(path, rt.Suffix) {
			return rt
		}
	}
	return Route{Name: "other"}
}

func (l *Limits) refuse(r *http.Request, route, limit string) {
	l.limited.WithLabelValues(route, limit).Inc()
	l.log.Debug("HTTP request refused by a limit", "route", route, "limit", limit, "remoteAddr", r.RemoteAddr, "path", r.URL.Path)
}

// sourceAddr is the client's address; an unparsable one is the zero Addr (which the
// rate limiter counts as one source).
func sourceAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// deadlineBody reports a body that did not arrive in time, once.
type deadlineBody struct {
	io.ReadCloser
	onTimeout func()
	done      bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			b.onTimeout()
		}
	}
	return n, err
}

// CheckRanges accepts a Range header of at most max byte ranges, in ascending order and
// not overlapping (each "a-b" or "a-"; a suffix range "-n" only alone). It does not
// check them against the content's size: http.ServeContent does that.
func CheckRanges(h string, max int) error {
	unit, set, ok := strings.Cut(h, "=")
	if !ok || strings.TrimSpace(unit) != "bytes" {
		return nil // not a byte range: ServeContent ignores it and sends the whole content
	}
	parts := strings.Split(set, ",")
	if len(parts) > max {
		return fmt.Errorf("%d ranges in one request: ask for at most %d", len(parts), max)
	}
	if len(parts) == 1 {
		return nil
	}
	var prevEnd int64 = -1
	for i, p := range parts {
		p = strings.TrimSpace(p)
		a, b, ok := strings.Cut(p, "-")
		if !ok || a == "" {
			return errors.New("a suffix range (-N) may only be asked for alone")
		}
		start, err := strconv.ParseInt(a, 10, 64)
		if err != nil || start < 0 {
			return fmt.Errorf("range %q is not a byte range", p)
		}
		end := int64(-1) // open: to the end of the content
		if b != "" {
			if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
				return fmt.Errorf("range %q is not a byte range", p)
			}
		}
		if start <= prevEnd || (i > 0 && prevEnd == -2) {
			return errors.New("ranges overlap or are not in ascending order: ask for them sorted, without overlap")
		}
		prevEnd = end
		if end == -1 {
			prevEnd = -2 // an open range must be the last
		}
	}
	return nil
}
