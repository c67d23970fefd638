package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/rackboot/rackboot/images"
	"github.com/rackboot/rackboot/inventory"
)

// ImageCatalog is the OS image catalog; *images.Catalog implements it.
type ImageCatalog interface {
	Add(ctx context.Context, req images.AddRequest) (inventory.Image, error)
	Upload(ctx context.Context, name string, r io.Reader) (inventory.Image, error)
	Get(ctx context.Context, name string) (inventory.Image, error)
	List(ctx context.Context) ([]inventory.Image, error)
	Remove(ctx context.Context, name string) error
}

var _ ImageCatalog = (*images.Catalog)(nil)

// Image routes:
//
//	GET    /api/v1/images               the catalog, sorted by name
//	POST   /api/v1/images               AddImageRequest → 202 image (pending: a URL is
//	                                    downloaded and verified in the background; without
//	                                    a URL the image waits for its upload)
//	GET    /api/v1/images/{name}        one image (status pending, ready or failed + error)
//	PUT    /api/v1/images/{name}/file   the image's bytes (application/octet-stream) for an
//	                                    image added without a URL → 200 ready image, or
//	                                    400 with the checksum mismatch (the image is failed)
//	DELETE /api/v1/images/{name}        → 204; 409 while a host uses the image

// AddImageRequest is the body of POST /api/v1/images.
type AddImageRequest = images.AddRequest

func (h *handler) imageRoutes() {
	h.handle("GET /api/v1/images", h.listImages)
	h.handle("POST /api/v1/images", h.addImage)
	h.handle("GET /api/v1/images/{name}", h.getImage)
	h.handle("PUT /api/v1/images/{name}/file", h.uploadImage)
	h.handle("DELETE /api/v1/images/{name}", h.removeImage)
}

func (h *handler) catalog() (ImageCatalog, error) {
	if h.images == nil {
		return nil, &apiError{status: http.StatusServiceUnavailable, msg: "the image catalog is not enabled on this server"}
	}
	return h.images, nil
}

func imageName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := inventory.ValidateImageName(name); err != nil {
		return "", badRequest("%v", err)
	}
	return name, nil
}

// namedImage is how every route on one image starts: the name from the path, then the
// catalog.
func (h *handler) namedImage(r *http.Request) (string, ImageCatalog, error) {
	name, err := imageName(r)
	if err != nil {
		return "", nil, err
	}
	c, err := h.catalog()
	return name, c, err
}

func imageNotFound(name string, err error) error {
	if errors.Is(err, inventory.ErrNotFound) {
		return &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no image %q: rackboot image list shows the catalog", name)}
	}
	return err
}

func (h *handler) listImages(w http.ResponseWriter, r *http.Request) error {
	c, err := h.catalog()
	if err != nil {
		return err
	}
	ims, err := c.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, imageViews(ims))
	return nil
}

func (h *handler) addImage(w http.ResponseWriter, r *http.Request) error {
	var req AddImageRequest
	if err := decodeBody(w, r, MaxBodyBytes, &req); err != nil {
		return err
	}
	c, err := h.catalog()
	if err != nil {
		return err
	}
	im, err := c.Add(r.Context(), req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/images/"+url.PathEscape(im.Name))
	writeJSON(w, http.StatusAccepted, imageView(im))
	return nil
}

func (h *handler) getImage(w http.ResponseWriter, r *http.Request) error {
	name, c, err := h.namedImage(r)
	if err != nil {
		return err
	}
	im, err := c.Get(r.Context(), name)
	if err != nil {
		return imageNotFound(name, err)
	}
	writeJSON(w, http.StatusOK, imageView(im))
	return nil
}

func (h *handler) uploadImage(w http.ResponseWriter, r *http.Request) error {
	name, c, err := h.namedImage(r)
	if err != nil {
		return err
	}
	// No size limit: images are gigabytes. The upload is bounded by the checksum
	// (anything else fails it) and by the disk.
	im, err := c.Upload(r.Context(), name, r.Body)
	if err != nil {
		return imageNotFound(name, err)
	}
	if im.Status == inventory.ImageFailed {
		return badRequest("image %s: %s", name, im.Error)
	}
	writeJSON(w, http.StatusOK, imageView(im))
	return nil
}

func (h *handler) removeImage(w http.ResponseWriter, r *http.Request) error {
	name, c, err := h.namedImage(r)
	if err != nil {
		return err
	}
	if err := c.Remove(r.Context(), name); err != nil {
		return imageNotFound(name, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

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
