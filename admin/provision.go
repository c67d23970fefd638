package admin

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/rackboot/rackboot/agentapi"
)

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
	// Network is this provisioning's network for the installed OS; nil keeps the host's
	// own (host edit --network) or the default.
	Network *NetworkSpec `json:"network,omitempty"`
	Owner   string       `json:"owner,omitempty"`
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
