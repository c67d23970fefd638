// Package adminserver serves rackboot's admin HTTP API, whose routes, request and
// response types and Go client are package admin: the handler (NewHandler) and its
// listeners (Listen: TLS with a self-signed certificate pinned by fingerprint, and a Unix
// socket), the API token file.
//
// Every request needs the bearer token the server was started with. Inputs are decoded
// strictly (unknown fields are errors), validated before anything is written, and bounded
// in size; a request that fails writes nothing. BMC passwords are write-only: no response
// ever carries one. The views (view.go) copy what the API shows of a host, never the
// store's value itself, so a field added to the store reaches no client by accident.
//
// Every mutation except deletion appends an event to the host's timeline. The event is
// written right after the change in its own transaction: if that append fails the change
// stands and the failure is logged.
package adminserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

// Config configures the admin API handler.
type Config struct {
	// Store is the inventory the API reads and writes. Required.
	Store inventory.Store
	// Token is the bearer token every request must carry. Required: the API never runs
	// unauthenticated.
	Token string
	// Subnets are the DHCP subnets the server answers on. A host's reserved IP must fall
	// inside one of them (and not be its network or broadcast address). Empty disables
	// the check, e.g. in proxy or off DHCP mode where the site DHCP server owns addressing.
	Subnets []netip.Prefix
	// ServerIP is this server's address: no host may reserve it. Zero skips the check.
	ServerIP netip.Addr
	// ServerMACs are the MACs of this server's interfaces: no host may claim one.
	ServerMACs []string
	// Logger receives request and mutation logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the API's metrics; nil means they are not exported.
	Registerer prometheus.Registerer
	// BMC runs power and boot-device operations; nil answers those routes with 503.
	BMC PowerController
	// Provisioner runs inspect, provision, release, retry and watch (provision.go);
	// nil answers those routes with 503.
	Provisioner Provisioner
	// Images is the OS image catalog (images.go); nil answers its routes with 503.
	Images ImageCatalog
	// Version is this server's build, answered by GET /api/v1/version.
	Version admin.VersionInfo
}

// handler is the admin API. It authenticates first, then routes with a Go 1.22 pattern mux.
type handler struct {
	store       inventory.Store
	bmc         PowerController
	prov        Provisioner
	images      ImageCatalog
	versionInfo admin.VersionInfo
	tokenHash   [sha256.Size]byte
	rules       admin.ServerRules
	log         *slog.Logger
	mux         *http.ServeMux
	requests    *prometheus.CounterVec
}

// NewHandler returns the admin API. Mount it at "/api/v1/" on the server's mux without
// stripping the prefix: its routes are full paths.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("admin API: no inventory store configured")
	}
	if strings.TrimSpace(cfg.Token) == "" {
		return nil, errors.New("admin API: the API token is empty: give a token file with --api-token-file (rackboot creates DATA_DIR/api-token when none exists)")
	}
	for _, p := range cfg.Subnets {
		if !p.IsValid() || !p.Addr().Is4() {
			return nil, fmt.Errorf("admin API: subnet %s is not an IPv4 prefix", p)
		}
	}
	var serverMACs []string
	for _, m := range cfg.ServerMACs {
		n, err := inventory.NormalizeMAC(m)
		if err != nil {
			return nil, fmt.Errorf("admin API: server MAC: %w", err)
		}
		serverMACs = append(serverMACs, n)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{
		store:       cfg.Store,
		bmc:         cfg.BMC,
		prov:        cfg.Provisioner,
		images:      cfg.Images,
		versionInfo: cfg.Version,
		tokenHash:   sha256.Sum256([]byte(cfg.Token)),
		rules:       admin.ServerRules{Subnets: append([]netip.Prefix(nil), cfg.Subnets...), IP: cfg.ServerIP},
		log:         log,
		mux:         http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackboot_admin_requests_total",
			Help: "Admin API requests by route pattern and HTTP status code.",
		}, []string{"route", "code"}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(h.requests); err != nil {
			return nil, fmt.Errorf("admin API: registering metrics: %w", err)
		}
	}
	h.rules.MACs = serverMACs
	h.routes()
	return h, nil
}

func (h *handler) routes() {
	h.handle("GET /api/v1/hosts", h.listHosts)
	h.handle("POST /api/v1/hosts", h.createHost)
	h.handle("POST /api/v1/hosts/import", h.importHosts)
	h.handle("GET /api/v1/hosts/{id}", h.getHost)
	h.handle("DELETE /api/v1/hosts/{id}", h.deleteHost)
	h.handle("PATCH /api/v1/hosts/{id}", h.editHost)
	h.handle("POST /api/v1/hosts/{id}/labels", h.updateLabels)
	h.handle("PUT /api/v1/hosts/{id}/boot", h.setBoot)
	h.handle("DELETE /api/v1/hosts/{id}/boot", h.clearBoot)
	h.handle("GET /api/v1/hosts/{id}/events", h.events)
	h.handle("GET /api/v1/leases", h.leases)
	h.handle("GET /api/v1/version", h.version)
	h.bmcRoutes()
	h.provisionRoutes()
	h.acceptRoutes()
	h.imageRoutes()
}

// apiFunc is a route's body: it writes a success response itself and returns an error
// for everything else, which serveAPI turns into a JSON error with the right status.
type apiFunc func(w http.ResponseWriter, r *http.Request) error

func (h *handler) handle(pattern string, fn apiFunc) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			h.writeError(w, r, err)
		}
	})
}

// statusWriter remembers the status code for metrics and logs.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	w = sw
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")

	_, pattern := h.mux.Handler(r)
	route := pattern
	if route == "" {
		route = "unmatched"
	}
	defer func() {
		h.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		h.log.LogAttrs(r.Context(), slog.LevelDebug, "admin request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", sw.code), slog.String("remoteAddr", r.RemoteAddr))
	}()

	// Authenticate before routing, so an unauthenticated caller learns nothing about
	// which routes or hosts exist.
	if err := h.authenticate(r); err != nil {
		h.writeError(w, r, err)
		return
	}
	if pattern == "" {
		// No route matched. The mux would answer in plain text; answer in JSON, with
		// 405 and Allow when the path exists under another method.
		h.writeError(w, r, h.unmatched(r))
		return
	}
	h.mux.ServeHTTP(w, r)
}

// unmatched builds the error for a request no route accepts.
func (h *handler) unmatched(r *http.Request) error {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := h.mux.Handler(probe); p != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		return &apiError{
			status: http.StatusMethodNotAllowed,
			msg:    fmt.Sprintf("%s %s is not supported: use %s", r.Method, r.URL.Path, strings.Join(allowed, ", ")),
			allow:  strings.Join(allowed, ", "),
		}
	}
	return &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no API route %s %s: see the routes in the admin package documentation", r.Method, r.URL.Path)}
}

func (h *handler) authenticate(r *http.Request) error {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return &apiError{
			status: http.StatusUnauthorized,
			msg:    "missing API token: send it as 'Authorization: Bearer TOKEN'",
			authn:  `Bearer realm="rackboot"`,
		}
	}
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return &apiError{
			status: http.StatusUnauthorized,
			msg:    "the Authorization header is not a bearer token: send 'Authorization: Bearer TOKEN'",
			authn:  `Bearer realm="rackboot", error="invalid_request"`,
		}
	}
	// Hashing both sides makes the comparison constant-time in the token's length too.
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if subtle.ConstantTimeCompare(got[:], h.tokenHash[:]) != 1 {
		return &apiError{
			status: http.StatusUnauthorized,
			msg:    "wrong API token: use the token in the server's API token file",
			authn:  `Bearer realm="rackboot", error="invalid_token"`,
		}
	}
	return nil
}

// apiError is an error with the HTTP status it should be reported with.
type apiError struct {
	status int
	msg    string
	allow  string // Allow header for 405
	authn  string // WWW-Authenticate header for 401
	code   string // machine-readable error code, for BMC failures
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// writeError maps err to a status: apiError carries its own; the inventory's sentinels
// map to 400/404/409; anything else is a 500 whose details go to the log.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg, code := http.StatusInternalServerError, "internal error: "+err.Error(), ""
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		status, msg, code = ae.status, ae.msg, ae.code
		if ae.allow != "" {
			w.Header().Set("Allow", ae.allow)
		}
		if ae.authn != "" {
			w.Header().Set("WWW-Authenticate", ae.authn)
		}
	case errors.Is(err, inventory.ErrInvalid):
		status, msg = http.StatusBadRequest, trimSentinel(err, inventory.ErrInvalid)
	case errors.Is(err, inventory.ErrNotFound):
		status, msg = http.StatusNotFound, err.Error()
	case errors.Is(err, inventory.ErrConflict):
		status, msg = http.StatusConflict, trimSentinel(err, inventory.ErrConflict)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this, but keep the status honest.
		status, msg = 499, "request cancelled"
	}
	// A BMC's failure (502/504, with a code) is logged by the BMC service; it is not
	// this server failing.
	if status >= 500 && code == "" {
		h.log.LogAttrs(r.Context(), slog.LevelError, "admin API request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	writeJSON(w, status, admin.ErrorResponse{Error: msg, Code: code})
}

// trimSentinel drops the "invalid: " / "conflict: " prefix the store puts before its
// message: the status code already says it.
func trimSentinel(err, sentinel error) string {
	return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	buf, err := json.Marshal(v)
	if err != nil {
		// Only reachable with a programming error (an unmarshalable type).
		status = http.StatusInternalServerError
		buf, _ = json.Marshal(admin.ErrorResponse{Error: "internal error: encoding response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(buf, '\n'))
}
