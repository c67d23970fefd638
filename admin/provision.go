package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/inventory"
	"github.com/rackboot/rackboot/provision"
)

// Provisioner runs the host state machine; *provision.Provisioner implements it.
type Provisioner interface {
	Inspect(ctx context.Context, id string, o provision.Options) (inventory.Host, error)
	Provision(ctx context.Context, id string, req provision.Request) (inventory.Host, error)
	Release(ctx context.Context, id string, o provision.ReleaseOptions) (inventory.Host, error)
	Retry(ctx context.Context, id string, o provision.Options) (inventory.Host, error)
	Watch(ctx context.Context, id string, after uint64) (inventory.Host, error)
}

var _ Provisioner = (*provision.Provisioner)(nil)

// Provisioning routes (all answer the host as it is after the request; 202 because the
// work goes on in the background, `rackboot host watch` follows it):
//
//	POST /api/v1/hosts/{id}/inspect    {"owner"?, "force"?}          → 202 host
//	POST /api/v1/hosts/{id}/provision  ProvisionRequest              → 202 host
//	POST /api/v1/hosts/{id}/release    ReleaseRequest                → 202 host
//	POST /api/v1/hosts/{id}/retry      {"owner"?, "force"?}          → 202 host
//	GET  /api/v1/hosts/{id}/watch?after=REVISION&timeout=SECONDS     → 200 host once its
//	     revision is above REVISION, or as it is when the timeout (default 25, at most
//	     55 seconds) passes: a long poll.
//
// Refusals: 409 when the host is not in a state the request applies to, or is claimed
// by another owner; 404 for an unknown host or image; 400 for invalid input (a
// user-data that is not cloud-init, Butane that does not translate...).

// ProvisionRequest is the body of POST /api/v1/hosts/{id}/provision. Give at most one
// of UserData, Butane and Ignition.
type ProvisionRequest struct {
	Image string `json:"image"`
	// RootDisk is a root-disk hint in the CLI syntax (agentapi.ParseRootDiskHint):
	// "name=sda", "serial=S", "min=100G,largest"...; empty picks the smallest disk.
	RootDisk  string                 `json:"rootDisk,omitempty"`
	UserData  string                 `json:"userData,omitempty"`
	Butane    string                 `json:"butane,omitempty"`
	Ignition  string                 `json:"ignition,omitempty"`
	Labels    map[string]string      `json:"labels,omitempty"`
	Metadata  map[string]string      `json:"metadata,omitempty"`
	CloudInit agentapi.CloudInitMode `json:"cloudInit,omitempty"`
	Owner     string                 `json:"owner,omitempty"`
}

// ReleaseRequest is the body of POST /api/v1/hosts/{id}/release.
type ReleaseRequest struct {
	Wipe  agentapi.WipeMode `json:"wipe,omitempty"`
	Owner string            `json:"owner,omitempty"`
	Force bool              `json:"force,omitempty"`
}

// OwnerRequest is the (optional) body of inspect and retry.
type OwnerRequest struct {
	Owner string `json:"owner,omitempty"`
	Force bool   `json:"force,omitempty"`
}

// Watch bounds.
const (
	DefaultWatchTimeout = 25 * time.Second
	MaxWatchTimeout     = 55 * time.Second
)

func (h *handler) provisionRoutes() {
	h.handle("POST /api/v1/hosts/{id}/inspect", h.inspectHost)
	h.handle("POST /api/v1/hosts/{id}/provision", h.provisionHost)
	h.handle("POST /api/v1/hosts/{id}/release", h.releaseHost)
	h.handle("POST /api/v1/hosts/{id}/retry", h.retryHost)
	h.handle("GET /api/v1/hosts/{id}/watch", h.watchHost)
}

func (h *handler) provisioner() (Provisioner, error) {
	if h.prov == nil {
		return nil, &apiError{status: http.StatusServiceUnavailable, msg: "provisioning is not enabled on this server"}
	}
	return h.prov, nil
}

// optionalBody decodes a JSON body when there is one.
func optionalBody(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return decodeBody(w, r, MaxBodyBytes, v)
}

func (h *handler) hostResult(w http.ResponseWriter, id string, host inventory.Host, err error) error {
	if err != nil {
		return notFound(id, err)
	}
	writeJSON(w, http.StatusAccepted, hostView(host))
	return nil
}

// startOperation is the plumbing of inspect, release and retry: the host ID from the
// path, the optional body decoded into req, then start on the provisioner, whose
// answer is the reply.
func (h *handler) startOperation(w http.ResponseWriter, r *http.Request, req any, start func(p Provisioner, id string) (inventory.Host, error)) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	if err := optionalBody(w, r, req); err != nil {
		return err
	}
	p, err := h.provisioner()
	if err != nil {
		return err
	}
	host, err := start(p, id)
	return h.hostResult(w, id, host, err)
}

func (h *handler) inspectHost(w http.ResponseWriter, r *http.Request) error {
	var req OwnerRequest
	return h.startOperation(w, r, &req, func(p Provisioner, id string) (inventory.Host, error) {
		return p.Inspect(r.Context(), id, provision.Options{Owner: req.Owner, Force: req.Force})
	})
}

func (h *handler) provisionHost(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	var req ProvisionRequest
	if err := decodeBody(w, r, MaxBodyBytes, &req); err != nil {
		return err
	}
	if req.Image == "" {
		return badRequest(`no image: send {"image": NAME} (rackboot image list shows the catalog)`)
	}
	hint, err := agentapi.ParseRootDiskHint(req.RootDisk)
	if err != nil {
		return badRequest("%v", err)
	}
	p, err := h.provisioner()
	if err != nil {
		return err
	}
	host, err := p.Provision(r.Context(), id, provision.Request{
		Image: req.Image, RootDisk: hint, UserData: []byte(req.UserData), Butane: []byte(req.Butane), Ignition: []byte(req.Ignition),
		Labels: req.Labels, Metadata: req.Metadata, CloudInit: req.CloudInit, Owner: req.Owner,
	})
	if err != nil && errors.Is(err, inventory.ErrNotFound) {
		return err // the message names the host or the image
	}
	return h.hostResult(w, id, host, err)
}

func (h *handler) releaseHost(w http.ResponseWriter, r *http.Request) error {
	var req ReleaseRequest
	return h.startOperation(w, r, &req, func(p Provisioner, id string) (inventory.Host, error) {
		return p.Release(r.Context(), id, provision.ReleaseOptions{Wipe: req.Wipe, Owner: req.Owner, Force: req.Force})
	})
}

func (h *handler) retryHost(w http.ResponseWriter, r *http.Request) error {
	var req OwnerRequest
	return h.startOperation(w, r, &req, func(p Provisioner, id string) (inventory.Host, error) {
		return p.Retry(r.Context(), id, provision.Options{Owner: req.Owner, Force: req.Force})
	})
}

func (h *handler) watchHost(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var after uint64
	if s := q.Get("after"); s != "" {
		if after, err = strconv.ParseUint(s, 10, 64); err != nil {
			return badRequest("after=%q: give the host's last revision seen", s)
		}
	}
	timeout := DefaultWatchTimeout
	if s := q.Get("timeout"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return badRequest("timeout=%q: give seconds", s)
		}
		timeout = min(time.Duration(n)*time.Second, MaxWatchTimeout)
	}
	p, err := h.provisioner()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	host, err := p.Watch(ctx, id, after)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return notFound(id, err)
	}
	writeJSON(w, http.StatusOK, hostView(host))
	return nil
}

// Inspect starts an inspection of the host.
func (c *Client) Inspect(ctx context.Context, id string, req OwnerRequest) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodPost, hostPath(id, "/inspect"), req, &out)
}

// Provision starts provisioning the host.
func (c *Client) Provision(ctx context.Context, id string, req ProvisionRequest) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodPost, hostPath(id, "/provision"), req, &out)
}

// Release wipes the host and makes it available again.
func (c *Client) Release(ctx context.Context, id string, req ReleaseRequest) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodPost, hostPath(id, "/release"), req, &out)
}

// Retry restarts the operation a failed host failed in.
func (c *Client) Retry(ctx context.Context, id string, req OwnerRequest) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodPost, hostPath(id, "/retry"), req, &out)
}

// Watch returns the host once its revision is above after, or after timeout with the
// host as it is. The client's HTTPClient timeout must be above timeout.
func (c *Client) Watch(ctx context.Context, id string, after uint64, timeout time.Duration) (Host, error) {
	var out Host
	q := url.Values{"after": {strconv.FormatUint(after, 10)}, "timeout": {strconv.Itoa(int(timeout / time.Second))}}
	return out, c.do(ctx, http.MethodGet, hostPath(id, "/watch")+"?"+q.Encode(), nil, &out)
}
