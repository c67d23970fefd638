package ipxe

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTPMetrics counts HTTP requests by route and status code and times them. It is
// exported so the rest of rackboot's HTTP surface (admin API, metadata) can share the
// same two series instead of registering its own.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewHTTPMetrics registers rackboot_http_requests_total{route,code} and
// rackboot_http_request_duration_seconds{route} on reg. If they are already registered
// there (by another NewHTTPMetrics on the same registry), the existing ones are reused.
func NewHTTPMetrics(reg prometheus.Registerer) (*HTTPMetrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rackboot_http_requests_total",
		Help: "HTTP requests served, by route and status code.",
	}, []string{"route", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "rackboot_http_request_duration_seconds",
		Help: "Time to serve an HTTP request, by route, until the last byte is written.",
		// 1 ms to about 4 minutes: scripts take milliseconds, initrds and images minutes.
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"route"})
	m := &HTTPMetrics{requests: requests, duration: duration}
	if err := reg.Register(requests); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return nil, err
		}
		m.requests = existing
	}
	if err := reg.Register(duration); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		existing, ok := are.ExistingCollector.(*prometheus.HistogramVec)
		if !ok {
			return nil, err
		}
		m.duration = existing
	}
	return m, nil
}

// Wrap counts and times next under route. The route label must come from a fixed set
// (never from the request), or the series would grow without bound.
//
// The series are looked up once per route (and once per route and code), not per
// request: in a boot storm the label hashing showed in the profile.
func (m *HTTPMetrics) Wrap(route string, next http.Handler) http.Handler {
	duration := m.duration.WithLabelValues(route)
	var codes sync.Map // int -> prometheus.Counter
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		code := sw.Status()
		c, ok := codes.Load(code)
		if !ok {
			c, _ = codes.LoadOrStore(code, m.requests.WithLabelValues(route, strconv.Itoa(code)))
		}
		c.(prometheus.Counter).Inc()
		duration.Observe(time.Since(start).Seconds())
	})
}

// statusWriter remembers the status code and counts body bytes. Unwrap lets
// http.ResponseController reach the connection for per-request deadlines.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

// Status is the code sent, 200 if the handler wrote nothing at all.
func (s *statusWriter) Status() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ReadFrom passes a copy on to the ResponseWriter's own ReadFrom, so a file or an iPXE
// binary served from a memfd reaches net/http's sendfile(2) through the metrics.
func (s *statusWriter) ReadFrom(src io.Reader) (int64, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{s.ResponseWriter}, src)
	}
	s.bytes += n
	return n, err
}

// writerOnly hides a writer's ReadFrom from io.Copy, which would call it again.
type writerOnly struct{ io.Writer }
