package adminserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/images"
	"github.com/rackboot/rackboot/internal/inventory"
)

// ImageCatalog is the OS image catalog; *images.Catalog implements it.
type ImageCatalog interface {
	Add(ctx context.Context, req images.AddRequest) (inventory.Image, error)
	Upload(ctx context.Context, name string, r io.Reader) (inventory.Image, error)
	Get(ctx context.Context, name string) (inventory.Image, error)
	List(ctx context.Context) ([]inventory.Image, error)
	Remove(ctx context.Context, name string) error
}

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
	var req admin.AddImageRequest
	if err := decodeBody(w, r, admin.MaxBodyBytes, &req); err != nil {
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

var _ ImageCatalog = (*images.Catalog)(nil)
