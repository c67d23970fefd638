package adminserver

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/provision"
)

// Provisioner runs the host state machine; *provision.Provisioner implements it.
type Provisioner interface {
	Inspect(ctx context.Context, id string, o provision.Options) (inventory.Host, error)
	Provision(ctx context.Context, id string, req provision.Request) (inventory.Host, error)
	Release(ctx context.Context, id string, o provision.ReleaseOptions) (inventory.Host, error)
	Retry(ctx context.Context, id string, o provision.Options) (inventory.Host, error)
	Watch(ctx context.Context, id string, after uint64) (inventory.Host, error)
}

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
	return decodeBody(w, r, admin.MaxBodyBytes, v)
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
	var req admin.OwnerRequest
	return h.startOperation(w, r, &req, func(p Provisioner, id string) (inventory.Host, error) {
		return p.Inspect(r.Context(), id, provision.Options{Owner: req.Owner, Force: req.Force})
	})
}

func (h *handler) provisionHost(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	var req admin.ProvisionRequest
	if err := decodeBody(w, r, admin.MaxBodyBytes, &req); err != nil {
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
		Labels: req.Labels, Metadata: req.Metadata, CloudInit: req.CloudInit, Network: req.Network, Owner: req.Owner,
	})
	if err != nil && errors.Is(err, inventory.ErrNotFound) {
		return err // the message names the host or the image
	}
	return h.hostResult(w, id, host, err)
}

func (h *handler) releaseHost(w http.ResponseWriter, r *http.Request) error {
	var req admin.ReleaseRequest
	return h.startOperation(w, r, &req, func(p Provisioner, id string) (inventory.Host, error) {
		return p.Release(r.Context(), id, provision.ReleaseOptions{Wipe: req.Wipe, Owner: req.Owner, Force: req.Force})
	})
}

func (h *handler) retryHost(w http.ResponseWriter, r *http.Request) error {
	var req admin.OwnerRequest
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
	timeout := admin.DefaultWatchTimeout
	if s := q.Get("timeout"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return badRequest("timeout=%q: give seconds", s)
		}
		timeout = min(time.Duration(n)*time.Second, admin.MaxWatchTimeout)
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

var _ Provisioner = (*provision.Provisioner)(nil)
