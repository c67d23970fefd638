package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/rackboot/rackboot/internal/images"
)

// Image routes:
//
//	GET    /api/v1/images               the catalog, sorted by name
//	POST   /api/v1/images               AddImageRequest → 202 image (pending: a URL is
//	                                    downloaded and verified in the background; without
//	                                    a URL the image waits for its upload)
//	GET    /api/v1/images/{name}        one image (status pending, ready or failed + error)
//	PUT    /api/v1/images/{name}/file   the image's bytes (application/octet-stream) for an
//	                                    image added without a URL → 200 ready image (or
//	                                    pending in phase convert: a qcow2 is converted
//	                                    in the background), or 400 with the checksum
//	                                    mismatch or format error (the image is failed)
//	DELETE /api/v1/images/{name}        → 204; 409 while a host uses the image

// AddImageRequest is the body of POST /api/v1/images.
type AddImageRequest = images.AddRequest

// ListImages returns the image catalog.
func (c *Client) ListImages(ctx context.Context) ([]Image, error) {
	var out []Image
	return out, c.do(ctx, http.MethodGet, "/api/v1/images", nil, &out)
}

// AddImage adds an image: a URL is downloaded by the server; without one, send the
// bytes with UploadImage.
func (c *Client) AddImage(ctx context.Context, req AddImageRequest) (Image, error) {
	var out Image
	return out, c.do(ctx, http.MethodPost, "/api/v1/images", req, &out)
}

// GetImage returns one image.
func (c *Client) GetImage(ctx context.Context, name string) (Image, error) {
	var out Image
	return out, c.do(ctx, http.MethodGet, "/api/v1/images/"+url.PathEscape(name), nil, &out)
}

// RemoveImage removes an image no host uses.
func (c *Client) RemoveImage(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/images/"+url.PathEscape(name), nil, nil)
}

// UploadImage streams body (size bytes, -1 if unknown) as the image's file. The
// client's HTTPClient must not have a short overall timeout.
func (c *Client) UploadImage(ctx context.Context, name string, body io.Reader, size int64) (Image, error) {
	base := strings.TrimRight(c.BaseURL, "/")
	path := "/api/v1/images/" + url.PathEscape(name) + "/file"
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+path, body)
	if err != nil {
		return Image{}, fmt.Errorf("admin client: %w", err)
	}
	if size >= 0 {
		req.ContentLength = size
	}
	req.Header.Set("Content-Type", "application/octet-stream")
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
		return Image{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return Image{}, fmt.Errorf("PUT %s: reading response: %w", path, err)
	}
	if resp.StatusCode >= 300 {
		return Image{}, responseError(resp, data)
	}
	var out Image
	if err := DecodeStrict(data, &out); err != nil {
		return Image{}, fmt.Errorf("PUT %s: the server's reply is not an image: %w", path, err)
	}
	return out, nil
}
