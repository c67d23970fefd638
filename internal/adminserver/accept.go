package adminserver

import (
	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/provision"

	"context"
	"net/http"

	"github.com/rackboot/rackboot/internal/inventory"
)

// Acceptor accepts discovered hosts (*provision.Provisioner). Discovery is not
// enrolment: a discovered host is shown with its facts but cannot be claimed, by the
// CLI or the Cluster API, until it is accepted.
type Acceptor interface {
	Accept(ctx context.Context, id, by string) (inventory.Host, error)
}

// POST /api/v1/hosts/{id}/accept  AcceptRequest → 200 host: discovered → available
//
//	(inspected) or enrolled (not yet inspected); 409 for any other state.
func (h *handler) acceptRoutes() {
	h.handle("POST /api/v1/hosts/{id}/accept", h.acceptHost)
}

func (h *handler) acceptHost(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	var req admin.AcceptRequest
	if err := optionalBody(w, r, &req); err != nil {
		return err
	}
	p, err := h.provisioner()
	if err != nil {
		return err
	}
	a, ok := p.(Acceptor)
	if !ok {
		return &apiError{status: http.StatusServiceUnavailable, msg: "this server cannot accept discovered hosts"}
	}
	host, err := a.Accept(r.Context(), id, req.By)
	if err != nil {
		return notFound(id, err)
	}
	writeJSON(w, http.StatusOK, hostView(host))
	return nil
}

var _ Acceptor = (*provision.Provisioner)(nil)
