package admin

import (
	"context"
	"net/http"
)

// AcceptRequest is the (optional) body of POST /api/v1/hosts/{id}/accept.
type AcceptRequest struct {
	// By names who accepted the host, for its timeline (default "operator").
	By string `json:"by,omitempty"`
}

// Accept accepts a discovered host.
func (c *Client) Accept(ctx context.Context, id string, req AcceptRequest) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodPost, hostPath(id, "/accept"), req, &out)
}
