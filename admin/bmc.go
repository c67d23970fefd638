package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/rackboot/rackboot/internal/bmc"
)

// BMCRequest is the body of PUT /api/v1/hosts/{id}/bmc. Password is write-only: empty
// keeps the stored one.
type BMCRequest struct {
	URL      string `json:"url"`
	Password string `json:"password,omitempty"`
}

// PowerRequest is the body of POST /api/v1/hosts/{id}/power.
type PowerRequest struct {
	Action bmc.PowerAction `json:"action"`
}

// BootDeviceRequest is the body of POST /api/v1/hosts/{id}/bootdev. UEFI defaults to
// the host's firmware: legacy for hosts known to boot BIOS, UEFI otherwise.
type BootDeviceRequest struct {
	Device     bmc.BootDevice `json:"device"`
	Persistent bool           `json:"persistent,omitempty"`
	UEFI       *bool          `json:"uefi,omitempty"`
}

// BMCResponse is what the power and boot-device routes return.
type BMCResponse struct {
	HostID string `json:"hostID"`
	// Operation is power_status, power_on, ..., bootdev.
	Operation string `json:"operation"`
	// BMC is the canonical BMC URL (never with a password).
	BMC string `json:"bmc"`
	// State is the power state (GET power).
	State bmc.PowerState `json:"state,omitempty"`
	// Boot is the override that was set (bootdev).
	Boot       *bmc.BootOptions `json:"boot,omitempty"`
	Attempts   int              `json:"attempts"`
	DurationMs int64            `json:"durationMs"`
}

// SetBMC sets the host's BMC URL and, if req.Password is not empty, its password.
func (c *Client) SetBMC(ctx context.Context, id string, req BMCRequest) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodPut, hostPath(id, "/bmc"), req, &out)
}

// ClearBMC removes the host's BMC and its stored password.
func (c *Client) ClearBMC(ctx context.Context, id string) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodDelete, hostPath(id, "/bmc"), nil, &out)
}

// PowerStatus asks the host's BMC for its power state.
func (c *Client) PowerStatus(ctx context.Context, id string) (BMCResponse, error) {
	var out BMCResponse
	return out, c.do(ctx, http.MethodGet, hostPath(id, "/power"), nil, &out)
}

// Power performs a power action through the host's BMC.
func (c *Client) Power(ctx context.Context, id string, a bmc.PowerAction) (BMCResponse, error) {
	var out BMCResponse
	return out, c.do(ctx, http.MethodPost, hostPath(id, "/power"), PowerRequest{Action: a}, &out)
}

// SetBootDevice sets the host's next boot device through its BMC.
func (c *Client) SetBootDevice(ctx context.Context, id string, req BootDeviceRequest) (BMCResponse, error) {
	var out BMCResponse
	return out, c.do(ctx, http.MethodPost, hostPath(id, "/bootdev"), req, &out)
}

// Duration is how long the operation took at the server.
func (r BMCResponse) Duration() time.Duration { return time.Duration(r.DurationMs) * time.Millisecond }
