package images

import (
	"context"
	"fmt"
	"strings"

	"github.com/rackboot/rackboot/internal/inventory"
)

// Check reports whether the catalog can serve a provisioning: it has checked what a
// previous run left, holds at least one image, and every image is ready. It names
// the images that are not (for /readyz?verbose).
func (c *Catalog) Check(ctx context.Context) error {
	select {
	case <-c.ready:
	default:
		return fmt.Errorf("checking the images a previous run left")
	}
	ims, err := c.cfg.Store.ListImages(ctx)
	if err != nil {
		return err
	}
	if len(ims) == 0 {
		return fmt.Errorf("no image in the catalog: add one with 'rackboot image add NAME URL --sha256 SUM'")
	}
	var pending, failed []string
	for _, im := range ims {
		switch im.Status {
		case inventory.ImageReady:
		case inventory.ImageFailed:
			failed = append(failed, fmt.Sprintf("%s (%s)", im.Name, im.Error))
		default:
			pending = append(pending, im.Name)
		}
	}
	var msgs []string
	if len(failed) > 0 {
		msgs = append(msgs, fmt.Sprintf("%d of %d failed: %s: remove them or add them again", len(failed), len(ims), strings.Join(failed, ", ")))
	}
	if len(pending) > 0 {
		msgs = append(msgs, fmt.Sprintf("%d of %d not ready yet: %s", len(pending), len(ims), strings.Join(pending, ", ")))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return nil
}
