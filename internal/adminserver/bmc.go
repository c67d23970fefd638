package adminserver

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
)

// PowerController runs BMC operations for hosts; *bmc.Service implements it.
type PowerController interface {
	PowerStatus(ctx context.Context, hostID string) (bmc.Result, error)
	Power(ctx context.Context, hostID string, a bmc.PowerAction) (bmc.Result, error)
	SetBootDevice(ctx context.Context, hostID string, o bmc.BootOptions) (bmc.Result, error)
}

func bmcResponse(r bmc.Result) admin.BMCResponse {
	return admin.BMCResponse{HostID: r.HostID, Operation: string(r.Operation), BMC: r.Endpoint, State: r.State,
		Attempts: r.Attempts, DurationMs: r.Duration.Milliseconds()}
}

func (h *handler) bmcRoutes() {
	h.handle("PUT /api/v1/hosts/{id}/bmc", h.setBMC)
	h.handle("DELETE /api/v1/hosts/{id}/bmc", h.clearBMC)
	h.handle("GET /api/v1/hosts/{id}/power", h.powerStatus)
	h.handle("POST /api/v1/hosts/{id}/power", h.power)
	h.handle("POST /api/v1/hosts/{id}/bootdev", h.bootDevice)
}

func (h *handler) setBMC(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	var req admin.BMCRequest
	if err := decodeBody(w, r, admin.MaxBodyBytes, &req); err != nil {
		return err
	}
	ep, err := bmc.ParseURL(req.URL)
	if err != nil {
		return badRequest("%v", err)
	}
	host, err := h.store.UpdateHost(r.Context(), id, func(host *inventory.Host) error {
		keep := host.BMC != nil && host.BMC.PasswordSet
		host.BMC = &inventory.BMC{URL: req.URL, Password: req.Password, PasswordSet: keep}
		return nil
	})
	if err != nil {
		return notFound(id, err)
	}
	changed := strconv.FormatBool(req.Password != "")
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "host BMC set", slog.String("hostID", id), slog.String("bmc", ep.String()),
		slog.String("passwordChanged", changed))
	h.appendEvent(r, id, inventory.Event{Type: "admin.bmc", Message: "BMC set through the admin API",
		Fields: map[string]string{"bmc": ep.String(), "passwordChanged": changed, "remoteAddr": r.RemoteAddr}})
	writeJSON(w, http.StatusOK, hostView(host))
	return nil
}

func (h *handler) clearBMC(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	host, err := h.store.UpdateHost(r.Context(), id, func(host *inventory.Host) error {
		host.BMC = nil
		return nil
	})
	if err != nil {
		return notFound(id, err)
	}
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "host BMC removed", slog.String("hostID", id))
	h.appendEvent(r, id, inventory.Event{Type: "admin.bmc", Message: "BMC removed through the admin API",
		Fields: map[string]string{"cleared": "true", "remoteAddr": r.RemoteAddr}})
	writeJSON(w, http.StatusOK, hostView(host))
	return nil
}

// controller is the BMC service, or the reason there is none.
func (h *handler) controller() (PowerController, error) {
	if h.bmc == nil {
		return nil, &apiError{status: http.StatusServiceUnavailable, msg: "BMC control is not enabled on this server", code: "bmc_disabled"}
	}
	return h.bmc, nil
}

func (h *handler) powerStatus(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	pc, err := h.controller()
	if err != nil {
		return err
	}
	res, err := pc.PowerStatus(r.Context(), id)
	if err != nil {
		return bmcError(id, err)
	}
	writeJSON(w, http.StatusOK, bmcResponse(res))
	return nil
}

func (h *handler) power(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	var req admin.PowerRequest
	if err := decodeBody(w, r, admin.MaxBodyBytes, &req); err != nil {
		return err
	}
	if _, err := bmc.ParsePowerAction(string(req.Action)); err != nil {
		return badRequest("%v", err)
	}
	pc, err := h.controller()
	if err != nil {
		return err
	}
	res, err := pc.Power(r.Context(), id, req.Action)
	if err != nil {
		return bmcError(id, err)
	}
	writeJSON(w, http.StatusOK, bmcResponse(res))
	return nil
}

func (h *handler) bootDevice(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	var req admin.BootDeviceRequest
	if err := decodeBody(w, r, admin.MaxBodyBytes, &req); err != nil {
		return err
	}
	if _, err := bmc.ParseBootDevice(string(req.Device)); err != nil {
		return badRequest("%v", err)
	}
	pc, err := h.controller()
	if err != nil {
		return err
	}
	o := bmc.BootOptions{Device: req.Device, Persistent: req.Persistent, UEFI: true}
	if req.UEFI != nil {
		o.UEFI = *req.UEFI
	} else {
		host, err := h.store.GetHost(r.Context(), id)
		if err != nil {
			return notFound(id, err)
		}
		o.UEFI = host.Firmware != inventory.FirmwareBIOS
	}
	res, err := pc.SetBootDevice(r.Context(), id, o)
	if err != nil {
		return bmcError(id, err)
	}
	out := bmcResponse(res)
	out.Boot = &o
	writeJSON(w, http.StatusOK, out)
	return nil
}

// bmcStatus maps a BMC error class to the HTTP status the API answers with: the BMC's
// own failures are a bad gateway, its silence a gateway timeout.
func bmcStatus(err error) int {
	switch {
	case errors.Is(err, bmc.ErrTimeout):
		return http.StatusGatewayTimeout
	case errors.Is(err, bmc.ErrAuth), errors.Is(err, bmc.ErrUnreachable), errors.Is(err, bmc.ErrTLS),
		errors.Is(err, bmc.ErrRejected), errors.Is(err, bmc.ErrBMCFailure):
		return http.StatusBadGateway
	case errors.Is(err, bmc.ErrBusy), errors.Is(err, bmc.ErrStopped):
		return http.StatusServiceUnavailable
	case errors.Is(err, bmc.ErrNoBMC), errors.Is(err, bmc.ErrInvalidURL):
		return http.StatusConflict
	}
	return 0
}

// bmcError turns a Service error into an apiError with its status and code; other
// errors (unknown host, cancelled request) go to writeError's usual mapping.
func bmcError(id string, err error) error {
	var e *bmc.Error
	if !errors.As(err, &e) {
		return notFound(id, err)
	}
	status := bmcStatus(err)
	if status == 0 {
		if errors.Is(err, context.Canceled) {
			return err
		}
		status = http.StatusInternalServerError
	}
	return &apiError{status: status, msg: err.Error(), code: "bmc_" + bmc.Outcome(err)}
}

var _ PowerController = (*bmc.Service)(nil)
