package admin

import (
	"context"
	"net/http"
)

// VersionInfo says which rackboot build is answering: GET /api/v1/version. The CLI's
// `rackboot version` prints it beside its own, so an operator sees a client/server skew.
type VersionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	BuildDate string `json:"buildDate,omitempty"`
	GoVersion string `json:"goVersion,omitempty"`
	// Modified is true for a build from a work tree with uncommitted changes.
	Modified bool `json:"modified,omitempty"`
}

// Version returns the server's build.
func (c *Client) Version(ctx context.Context) (VersionInfo, error) {
	var out VersionInfo
	return out, c.do(ctx, http.MethodGet, "/api/v1/version", nil, &out)
}
