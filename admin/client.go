package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
)

// maxResponseBytes bounds what the client reads from the server: a list of thousands of
// hosts or a full timeline fits with room to spare.
const maxResponseBytes = 64 << 20

// Client talks to the admin API. Make one with NewClient, which reaches a TLS listener
// with a pinned certificate or the Unix socket and refuses plain HTTP to another
// machine. A Client built by hand (BaseURL and Token set; HTTPClient defaults to
// http.DefaultClient) makes no such checks: tests use it against httptest servers.
type Client struct {
	BaseURL    string
	Token      string
	HTTPClient *http.Client
}

// WithTimeout returns a copy of c whose requests may each take d (0: no limit), over
// the same connections: the same TLS pin or Unix socket.
func (c *Client) WithTimeout(d time.Duration) *Client {
	cc := *c
	hc := http.Client{}
	if c.HTTPClient != nil {
		hc = *c.HTTPClient
	}
	hc.Timeout = d
	cc.HTTPClient = &hc
	return &cc
}

// APIError is an error response from the server. Error returns the server's message
// verbatim; errors.Is matches inventory.ErrNotFound, ErrConflict and ErrInvalid by status.
type APIError struct {
	StatusCode int
	Message    string
	// Code is the server's error code for BMC failures (bmc_auth, bmc_timeout, ...).
	Code string
}

func (e *APIError) Error() string { return e.Message }

// Is lets callers branch on the inventory's sentinels across the wire.
func (e *APIError) Is(target error) bool {
	switch target {
	case inventory.ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case inventory.ErrConflict:
		return e.StatusCode == http.StatusConflict
	case inventory.ErrInvalid:
		return e.StatusCode == http.StatusBadRequest
	}
	if code, ok := bmcCodes[target]; ok {
		return e.Code == code
	}
	return false
}

// ListHosts returns every host, sorted by ID.
func (c *Client) ListHosts(ctx context.Context) ([]Host, error) {
	var out []Host
	return out, c.do(ctx, http.MethodGet, "/api/v1/hosts", nil, &out)
}

// CreateHost enrols one host.
func (c *Client) CreateHost(ctx context.Context, spec HostSpec) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodPost, "/api/v1/hosts", spec, &out)
}

// ImportHosts enrols all of specs or, on any error, none of them.
func (c *Client) ImportHosts(ctx context.Context, specs []HostSpec) ([]Host, error) {
	var out ImportResponse
	err := c.do(ctx, http.MethodPost, "/api/v1/hosts/import", ImportRequest{Hosts: specs}, &out)
	return out.Hosts, err
}

// GetHost returns one host.
func (c *Client) GetHost(ctx context.Context, id string) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodGet, hostPath(id, ""), nil, &out)
}

// DeleteHost removes a host with its events, provisioning data and BMC secret; its
// DHCP leases stay until they expire.
func (c *Client) DeleteHost(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, hostPath(id, ""), nil, nil)
}

// UpdateLabels sets and removes labels and returns the host as stored.
func (c *Client) UpdateLabels(ctx context.Context, id string, req LabelsRequest) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodPost, hostPath(id, "/labels"), req, &out)
}

// SetBoot gives the host an explicit boot profile.
func (c *Client) SetBoot(ctx context.Context, id string, p inventory.BootProfile) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodPut, hostPath(id, "/boot"), p, &out)
}

// ClearBoot removes the host's boot profile.
func (c *Client) ClearBoot(ctx context.Context, id string) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodDelete, hostPath(id, "/boot"), nil, &out)
}

// Events returns the host's events with Seq > after, oldest first.
func (c *Client) Events(ctx context.Context, id string, after uint64) ([]Event, error) {
	p := hostPath(id, "/events")
	if after > 0 {
		p += "?after=" + strconv.FormatUint(after, 10)
	}
	var out []Event
	return out, c.do(ctx, http.MethodGet, p, nil, &out)
}

// Leases returns the DHCP leases, sorted by MAC.
func (c *Client) Leases(ctx context.Context) ([]Lease, error) {
	var out []Lease
	return out, c.do(ctx, http.MethodGet, "/api/v1/leases", nil, &out)
}

func hostPath(id, suffix string) string {
	return "/api/v1/hosts/" + url.PathEscape(id) + suffix
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	base := strings.TrimRight(c.BaseURL, "/")
	if base == "" {
		return errors.New("admin client: no server URL: set BaseURL")
	}
	var body io.Reader
	if in != nil {
		buf, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		body = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("%s %s: reading response: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return responseError(resp, data)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: the server's reply is not the JSON expected (is --server pointing at rackboot?): %w", method, path, err)
	}
	return nil
}

// responseError returns the server's message verbatim when it sent the API's JSON error,
// else the status and the start of whatever it sent (a proxy's HTML page, say).
func responseError(resp *http.Response, data []byte) error {
	var er ErrorResponse
	if json.Unmarshal(data, &er) == nil && er.Error != "" {
		return &APIError{StatusCode: resp.StatusCode, Message: er.Error, Code: er.Code}
	}
	snippet := strings.TrimSpace(string(data))
	if len(snippet) > 200 {
		snippet = snippet[:200] + "..."
	}
	msg := "HTTP " + resp.Status
	if snippet != "" {
		msg += ": " + snippet
	}
	return &APIError{StatusCode: resp.StatusCode, Message: msg}
}

// BMC errors seen by the client: APIError.Is matches the bmc package's classes by code.
var bmcCodes = map[error]string{
	bmc.ErrNoBMC: "bmc_no_bmc", bmc.ErrInvalidURL: "bmc_invalid_url", bmc.ErrAuth: "bmc_auth", bmc.ErrTLS: "bmc_tls",
	bmc.ErrTimeout: "bmc_timeout", bmc.ErrUnreachable: "bmc_unreachable", bmc.ErrRejected: "bmc_rejected",
	bmc.ErrBMCFailure: "bmc_bmc_error", bmc.ErrSetup: "bmc_setup", bmc.ErrBusy: "bmc_busy", bmc.ErrStopped: "bmc_stopped",
}
