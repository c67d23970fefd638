package images

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"

	"github.com/rackboot/rackboot/internal/inventory"
)

// lookupSum fetches req.SHA256URL, a published checksum file, and returns the SHA-256
// it lists for the image's file name (req.SHA256Name, else the base name of req.URL)
// and the URL it came from. It runs inside Add so that a name the file does not list,
// or a file that cannot be fetched, is the operator's error now, not a failed image
// later.
func (c *Catalog) lookupSum(ctx context.Context, req AddRequest) (sum, from string, err error) {
	u, err := url.Parse(req.SHA256URL)
	if err != nil || !(u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "file") || (u.Scheme != "file" && u.Host == "") ||
		(u.Scheme == "file" && ((u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(u.Path))) {
		return "", "", fmt.Errorf("%w: checksum URL %q: give an http://, https:// or file:///PATH URL of a SHA256SUMS-style file", inventory.ErrInvalid, req.SHA256URL)
	}
	name := req.SHA256Name
	if name == "" && req.URL != "" {
		if iu, err := url.Parse(req.URL); err == nil {
			name = path.Base(iu.Path)
		}
	}
	if name == "" || name == "/" || name == "." {
		return "", "", fmt.Errorf("%w: which file's sum to look up in %s: give the file name (sha256Name)", inventory.ErrInvalid, redact(req.SHA256URL))
	}
	data, err := c.fetchSmall(ctx, u)
	if err != nil {
		return "", "", fmt.Errorf("%w: checksum file %s: %w", inventory.ErrInvalid, redact(req.SHA256URL), err)
	}
	sum, err = ParseSHA256Sums(data, name)
	if err != nil {
		return "", "", fmt.Errorf("%w: %s: %w", inventory.ErrInvalid, redact(req.SHA256URL), err)
	}
	c.log.Info("image checksum read from a checksum file", "image", req.Name, "sha256URL", redact(req.SHA256URL), "file", name, "sha256", sum)
	return sum, u.String(), nil
}

// fetchSmall reads a checksum file of at most maxSumsBytes.
func (c *Catalog) fetchSmall(ctx context.Context, u *url.URL) ([]byte, error) {
	var body io.Reader
	if u.Scheme == "file" {
		f, err := os.Open(u.Path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		body = f
	} else {
		ctx, cancel := context.WithTimeout(ctx, sumsTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("User-Agent", "rackboot-images")
		resp, err := c.cfg.HTTPClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("the server answered %s", resp.Status)
		}
		body = resp.Body
	}
	data, err := io.ReadAll(io.LimitReader(body, maxSumsBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSumsBytes {
		return nil, fmt.Errorf("more than %d bytes: not a checksum file", maxSumsBytes)
	}
	return data, nil
}

// redact hides a URL's password for logs and messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
