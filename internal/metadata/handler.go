package metadata

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
	"github.com/rackboot/rackboot/internal/trust"
)

// Store is what the metadata routes need from the inventory.
type Store interface {
	HostByTokenHash(ctx context.Context, hash string) (inventory.Host, error)
	HostByIP(ctx context.Context, ip string) (inventory.Host, error)
	ProvisionData(ctx context.Context, hostID string) (inventory.ProvisionData, error)
	AppendEvent(ctx context.Context, hostID string, e inventory.Event) (inventory.Event, error)
}

var _ Store = (*inventory.BoltStore)(nil)

// PhoneHomer is told when a host's installed system phoned home (the provisioner).
type PhoneHomer interface {
	PhoneHome(ctx context.Context, hostID string, fields map[string]string) error
}

// Event types this package records.
const (
	EventFetch     = "metadata.fetch"
	EventRejected  = "metadata.rejected"
	EventPhoneHome = "boot.phonehome"
)

// Route is the metrics label of the metadata routes.
const Route = "metadata"

// PathPrefix is where the documents are served: PathPrefix + TOKEN + "/" + DOC.
const PathPrefix = "/metadata/"

// Document names.
const (
	DocMetaData      = "meta-data"
	DocUserData      = "user-data"
	DocVendorData    = "vendor-data"
	DocNetworkConfig = "network-config"
	DocIgnition      = "ignition"
	DocPhoneHome     = "phonehome"
)

// DefaultTimeout is the write deadline of one answer.
const DefaultTimeout = 30 * time.Second

// DefaultConfig is the settings part of Config with every default written out.
func DefaultConfig() Config { return Config{Timeout: DefaultTimeout} }

// Validate checks the operator's settings (zero means the default). Each message starts
// with the setting's name in the configuration file.
func (c Config) Validate() error {
	if c.Timeout < 0 || (c.Timeout > 0 && c.Timeout < time.Second) {
		return fmt.Errorf("timeout: %s: give at least 1s (default %s)", c.Timeout, DefaultTimeout)
	}
	return nil
}

// Config configures the handler. Store is required.
type Config struct {
	Store Store
	// PhoneHome is told of phone-homes; nil records them on the timeline only.
	PhoneHome PhoneHomer
	// ServerURL is rackboot's base URL as hosts reach it; empty takes the request's
	// Host header.
	ServerURL string
	// Gate says whether a request comes from the address the host's provisioning is
	// bound to (its agent's, recorded when the plan was made; the reservation when it
	// has one). Required.
	Gate    *trust.Gate
	Logger  *slog.Logger
	Metrics *ipxe.HTTPMetrics
	// Timeout is the write deadline of one answer (default 30s).
	Timeout time.Duration `yaml:"timeout" doc:"write deadline of one answer (meta-data, user-data, Ignition, phone-home)"`
}

// Handler serves the per-host NoCloud-net and Ignition documents.
type Handler struct {
	cfg Config
	log *slog.Logger
	h   http.Handler
}

// NewHandler checks cfg.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("metadata: no inventory store configured")
	}
	if cfg.Gate == nil {
		return nil, errors.New("metadata: no trust gate configured: user-data goes only where the gate says")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	h := &Handler{cfg: cfg, log: cfg.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	m := cfg.Metrics
	if m == nil {
		var err error
		if m, err = ipxe.NewHTTPMetrics(nil); err != nil {
			return nil, err
		}
	}
	h.h = m.Wrap(Route, http.HandlerFunc(h.serve))
	return h, nil
}

// Register adds the routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("GET "+PathPrefix+"{token}/{doc}", h.h)
	mux.Handle("POST "+PathPrefix+"{token}/{doc}", h.h)
}

// ServeHTTP serves one request (for tests and for mounting without a mux).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.h.ServeHTTP(w, r) }

// TokenHash is how tokens are stored and looked up.
func TokenHash(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// validToken accepts what agentapi.NewToken makes (and a little more), so a malformed
// one is refused before any lookup.
func validToken(t string) bool {
	if len(t) < 16 || len(t) > 128 {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(h.cfg.Timeout))
	defer func() { _ = rc.Flush(); _ = rc.SetWriteDeadline(time.Time{}) }()
	w.Header().Set("Cache-Control", "no-store")

	token, doc := r.PathValue("token"), r.PathValue("doc")
	src := SourceIP(r)
	log := h.log.With("route", Route, "doc", doc, "ip", src.String())
	switch doc {
	case DocMetaData, DocUserData, DocVendorData, DocNetworkConfig, DocIgnition, DocPhoneHome:
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method == http.MethodPost && doc != DocPhoneHome {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	// A wrong token is a 404 whatever its shape, and leaves no event: it names no host.
	if !validToken(token) {
		http.NotFound(w, r)
		return
	}
	ctx := r.Context()
	host, err := h.cfg.Store.HostByTokenHash(ctx, TokenHash(token))
	if errors.Is(err, inventory.ErrNotFound) || (err == nil && (host.Provision == nil || host.Provision.MetadataTokenHash != TokenHash(token))) {
		log.Info("metadata request with an unknown token")
		http.NotFound(w, r)
		return
	}
	if err != nil {
		log.Error("inventory lookup failed", "err", err)
		http.Error(w, "rackboot cannot read its inventory; see its log", http.StatusInternalServerError)
		return
	}
	log = log.With("hostID", host.ID)
	fields := map[string]string{"doc": doc, "ip": src.String(), "method": r.Method}
	if ua := r.UserAgent(); ua != "" {
		fields["userAgent"] = truncate(ua, 128)
	}
	if err := h.cfg.Gate.Bound(&host, host.Provision.HostIP, src); err != nil {
		// The token leaked, or someone guessed a path: the host's secrets stay put and
		// its timeline shows the attempt (within the source's event budget).
		log.Warn("metadata refused: the source address is not the host's")
		delete(fields, "ip")
		h.cfg.Gate.Reject(host.ID, Route, EventRejected, src, err, fields)
		http.Error(w, fmt.Sprintf("%s is not the address of the host this URL belongs to", src), http.StatusForbidden)
		return
	}
	base := h.baseURL(r, token)
	in := Input{Host: host, BaseURL: base, BootMAC: host.Provision.BootMAC}
	var body []byte
	ctype := "text/plain; charset=utf-8"
	switch doc {
	case DocMetaData:
		body, err = MetaData(in)
	case DocVendorData:
		body = VendorData(in)
	case DocNetworkConfig:
		body, err = NetworkConfig(in)
	case DocUserData, DocIgnition:
		var d inventory.ProvisionData
		d, err = h.cfg.Store.ProvisionData(ctx, host.ID)
		if errors.Is(err, inventory.ErrNotFound) || (err == nil && d.ProvisionID != host.Provision.ID) {
			d, err = inventory.ProvisionData{}, nil
		}
		if err == nil && doc == DocUserData {
			body = UserData(d)
		}
		if err == nil && doc == DocIgnition {
			if d.Kind != inventory.ConfigIgnition {
				http.Error(w, "host "+host.ID+" was provisioned with cloud-init, not Ignition", http.StatusNotFound)
				return
			}
			body, err = Ignition(in, d)
			ctype = "application/vnd.coreos.ignition+json"
		}
	case DocPhoneHome:
		h.phoneHome(w, r, host, fields)
		return
	}
	if err != nil {
		log.Error("cannot render metadata", "err", err)
		http.Error(w, "rackboot cannot render this document; see its log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
	log.Info("served metadata", "bytes", len(body))
	fields["bytes"] = strconv.Itoa(len(body))
	h.event(host.ID, inventory.Event{Type: EventFetch, Message: fmt.Sprintf("served %s to %s", doc, src), Fields: fields})
}

func (h *Handler) phoneHome(w http.ResponseWriter, r *http.Request, host inventory.Host, fields map[string]string) {
	if r.Method == http.MethodPost {
		// cloud-init posts a small form (instance_id, hostname, fqdn); anything else is
		// ignored, and the body is bounded.
		if err := r.ParseForm(); err == nil {
			for _, k := range []string{"instance_id", "hostname", "fqdn"} {
				if v := r.PostForm.Get(k); v != "" {
					fields[k] = truncate(v, 128)
				}
			}
		}
	}
	if want := InstanceID(host); fields["instance_id"] != "" && fields["instance_id"] != want {
		fields["expectedInstanceID"] = want
	}
	if h.cfg.PhoneHome != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
		defer cancel()
		if err := h.cfg.PhoneHome.PhoneHome(ctx, host.ID, fields); err != nil {
			h.log.Error("recording phone-home failed", "hostID", host.ID, "err", err)
			http.Error(w, "rackboot could not record the phone-home; try again", http.StatusInternalServerError)
			return
		}
	} else {
		h.event(host.ID, inventory.Event{Type: EventPhoneHome, Message: "installed system phoned home from " + fields["ip"], Fields: fields})
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

// SourceIP is the TCP peer's address, IPv4-mapped addresses unmapped.
func SourceIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ServerURL is the configured base URL, else the one the request came in on.
func ServerURL(configured string, r *http.Request) string {
	if configured != "" {
		return strings.TrimSuffix(configured, "/")
	}
	if r.Host != "" {
		return "http://" + r.Host
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return "http://" + a.String()
	}
	return ""
}

func (h *Handler) baseURL(r *http.Request, token string) string {
	return ServerURL(h.cfg.ServerURL, r) + PathPrefix + url.PathEscape(token) + "/"
}

// event records e even when the client has gone.
func (h *Handler) event(hostID string, e inventory.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.cfg.Store.AppendEvent(ctx, hostID, e); err != nil {
		h.log.Warn("cannot record event", "hostID", hostID, "type", e.Type, "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
