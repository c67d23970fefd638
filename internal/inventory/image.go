package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ImageStatus is where an image is on its way into the catalog.
type ImageStatus string

const (
	// ImagePending: being downloaded, uploaded or verified; agents are told to wait.
	ImagePending ImageStatus = "pending"
	// ImageReady: cached under DATA_DIR/images and verified against SHA256.
	ImageReady ImageStatus = "ready"
	// ImageFailed: the download or the checksum failed (Error says which); the image is
	// never offered to an agent.
	ImageFailed ImageStatus = "failed"
)

// Image is an OS image in the catalog. The file itself lives in DATA_DIR/images,
// named after the image (the images package owns the files).
type Image struct {
	Name string `json:"name"`
	// Source is where the image came from: an http(s) or file URL, or "upload".
	Source string `json:"source"`
	// SHA256 is the operator's checksum of the file as published (before
	// decompression or conversion), lower-case hex: what the download or upload is
	// verified against, and the image's identity for provisioning requests.
	SHA256 string `json:"sha256"`
	// SHA256URL is the checksum file (SHA256SUMS) SHA256 was read from, if any.
	SHA256URL string `json:"sha256URL,omitempty"`
	// Format is how the file served to agents is compressed: set from its bytes when
	// the image is ready (empty in records older than detection: the agent detects).
	Format ImageFormat `json:"format,omitempty"`
	// SourceFormat is the format of the file as added: while pending, what the
	// operator said it is (empty: detect; a mismatch fails the image), once ready
	// what its bytes are. Format differs from it only for a converted image (qcow2).
	SourceFormat ImageFormat `json:"sourceFormat,omitempty"`
	// ServedSHA256 is the checksum of the file served when it is not the file
	// verified against SHA256 (a qcow2 image converted to zstd-compressed raw);
	// empty when the file is served as added. See FileSHA256.
	ServedSHA256 string `json:"servedSHA256,omitempty"`
	// DiskSize is the bytes an agent writes for a converted image (the qcow2 virtual
	// size); 0 when not known without decompressing.
	DiskSize int64 `json:"diskSize,omitempty"`
	// Size is the served file's size in bytes once known (while downloading, that of
	// the download).
	Size   int64       `json:"size,omitempty"`
	Status ImageStatus `json:"status"`
	// Error says why a failed image failed, and what to do.
	Error string `json:"error,omitempty"`
	// Phase is what a pending image is doing (download, upload, verify, convert);
	// BytesDone of BytesTotal (0: unknown) is its progress.
	Phase      ImagePhase `json:"phase,omitempty"`
	BytesDone  int64      `json:"bytesDone,omitempty"`
	BytesTotal int64      `json:"bytesTotal,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	UpdatedAt  time.Time  `json:"updatedAt"`
	VerifiedAt time.Time  `json:"verifiedAt,omitzero"`
	Revision   uint64     `json:"revision"`
}

// ImagePhase is the step a pending image is in.
type ImagePhase string

const (
	ImageDownload ImagePhase = "download"
	ImageUpload   ImagePhase = "upload"
	ImageVerify   ImagePhase = "verify"
	ImageConvert  ImagePhase = "convert"
)

// FileSHA256 is the checksum of the file agents get: ServedSHA256 for a converted
// image, else SHA256.
func (im Image) FileSHA256() string {
	if im.ServedSHA256 != "" {
		return im.ServedSHA256
	}
	return im.SHA256
}

var imageNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// ValidateImageName checks an image name: lower-case letters, digits, '.', '_' and '-',
// 1-63 characters, starting and ending with a letter or digit, no "..". It is used as
// a file name and in URLs as is.
func ValidateImageName(name string) error {
	if !imageNameRe.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("image name %q is invalid: use lower-case letters, digits, '.', '_' and '-' (1-63 characters, starting and ending with a letter or digit), e.g. debian-12", name)
	}
	return nil
}

// ValidateSHA256 checks a hex SHA-256 and returns it lower-case.
func ValidateSHA256(s string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if len(t) != 64 || strings.Trim(t, "0123456789abcdef") != "" {
		return "", fmt.Errorf("sha256 %q is not 64 hex digits: give the image's checksum (sha256sum FILE)", s)
	}
	return t, nil
}

// Normalize validates the image and fills canonical forms.
func (im *Image) Normalize() error {
	if err := ValidateImageName(im.Name); err != nil {
		return err
	}
	sum, err := ValidateSHA256(im.SHA256)
	if err != nil {
		return fmt.Errorf("image %s: %w", im.Name, err)
	}
	im.SHA256 = sum
	if im.Format == "auto" {
		im.Format = FormatAuto
	}
	if !im.Format.Valid() {
		return fmt.Errorf("image %s: format %q: use raw, gzip, zstd or xz, or leave it out to detect it", im.Name, im.Format)
	}
	if im.SourceFormat == "auto" {
		im.SourceFormat = FormatAuto
	}
	if !im.SourceFormat.ValidSource() {
		return fmt.Errorf("image %s: format %q: use raw, gzip, zstd, xz or qcow2, or leave it out to detect it", im.Name, im.SourceFormat)
	}
	if im.ServedSHA256 != "" {
		sum, err := ValidateSHA256(im.ServedSHA256)
		if err != nil {
			return fmt.Errorf("image %s: served file: %w", im.Name, err)
		}
		im.ServedSHA256 = sum
	}
	switch im.Status {
	case "":
		im.Status = ImagePending
	case ImagePending, ImageReady, ImageFailed:
	default:
		return fmt.Errorf("image %s: unknown status %q", im.Name, im.Status)
	}
	if im.Size < 0 || im.BytesDone < 0 || im.BytesTotal < 0 || im.DiskSize < 0 {
		return fmt.Errorf("image %s: negative size", im.Name)
	}
	return nil
}

var bucketImages = []byte("images")

// CreateImage adds an image to the catalog; ErrConflict if the name is taken.
func (s *BoltStore) CreateImage(ctx context.Context, im Image) (Image, error) {
	if err := ctx.Err(); err != nil {
		return Image{}, err
	}
	if err := im.Normalize(); err != nil {
		return Image{}, invalid(err)
	}
	now := s.now().UTC()
	im.CreatedAt, im.UpdatedAt, im.Revision = now, now, 1
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketImages)
		if err != nil {
			return err
		}
		if b.Get([]byte(im.Name)) != nil {
			return fmt.Errorf("%w: image %s already exists: remove it first (rackboot image rm %s) or pick another name", ErrConflict, im.Name, im.Name)
		}
		return putJSON(b, []byte(im.Name), &im)
	})
	if err != nil {
		return Image{}, err
	}
	return im, nil
}

// GetImage returns one image.
func (s *BoltStore) GetImage(ctx context.Context, name string) (Image, error) {
	var im Image
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImages)
		if b == nil {
			return fmt.Errorf("image %s: %w", name, ErrNotFound)
		}
		if err := getJSON(b, []byte(name), &im); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("image %s: %w", name, ErrNotFound)
			}
			return err
		}
		return nil
	})
	return im, err
}

// ListImages returns the catalog sorted by name.
func (s *BoltStore) ListImages(ctx context.Context) ([]Image, error) {
	var out []Image
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImages)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var im Image
			if err := json.Unmarshal(v, &im); err != nil {
				return fmt.Errorf("image %s: %w", k, err)
			}
			out = append(out, im)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// UpdateImage applies fn to the stored image in one transaction.
func (s *BoltStore) UpdateImage(ctx context.Context, name string, fn func(*Image) error) (Image, error) {
	if err := ctx.Err(); err != nil {
		return Image{}, err
	}
	var out Image
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImages)
		if b == nil {
			return fmt.Errorf("image %s: %w", name, ErrNotFound)
		}
		var old Image
		if err := getJSON(b, []byte(name), &old); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("image %s: %w", name, ErrNotFound)
			}
			return err
		}
		im := old
		if err := fn(&im); err != nil {
			return err
		}
		if im.Name != old.Name {
			return invalid(fmt.Errorf("image %s: the name cannot change", old.Name))
		}
		if err := im.Normalize(); err != nil {
			return invalid(err)
		}
		im.CreatedAt = old.CreatedAt
		im.UpdatedAt = s.now().UTC()
		im.Revision = old.Revision + 1
		out = im
		return putJSON(b, []byte(name), &im)
	})
	return out, err
}

// ImageUsers returns the IDs of the hosts that hold or are getting the image (their
// Provision names it), sorted.
func (s *BoltStore) ImageUsers(ctx context.Context, name string) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = imageUsers(tx, name)
		return err
	})
	return out, err
}

func imageUsers(tx *bolt.Tx, name string) ([]string, error) {
	var users []string
	err := tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error {
		var h Host
		if err := json.Unmarshal(v, &h); err != nil {
			return fmt.Errorf("host %s: %w", k, err)
		}
		if h.Provision != nil && h.Provision.Image == name {
			users = append(users, h.ID)
		}
		return nil
	})
	sort.Strings(users)
	return users, err
}

// DeleteImage removes an image from the catalog. It fails with ErrConflict while a
// host uses it (provisioning, provisioned, being wiped, or failed in one of those):
// the check and the delete are one transaction, so no provisioning can start on an
// image being removed.
func (s *BoltStore) DeleteImage(ctx context.Context, name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImages)
		if b == nil || b.Get([]byte(name)) == nil {
			return fmt.Errorf("image %s: %w", name, ErrNotFound)
		}
		users, err := imageUsers(tx, name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return fmt.Errorf("%w: image %s is in use by %s: release those hosts first (rackboot host release ID)", ErrConflict, name, strings.Join(users, ", "))
		}
		return b.Delete([]byte(name))
	})
}

// StartProvisioning is TransitionHost that also checks, in the same transaction, that
// the image exists and is not failed, so an image cannot be removed between the check
// and the start (DeleteImage refuses images a host names).
func (s *BoltStore) StartProvisioning(ctx context.Context, id, image string, fn func(h *Host, im Image, c *HostChange) error) (Host, []Event, error) {
	// The image check needs the same transaction as the host write: look it up inside
	// TransitionHost's callback through a read of the images bucket.
	var im Image
	return s.transitionWithTx(ctx, id, func(tx *bolt.Tx, h *Host, c *HostChange) error {
		b := tx.Bucket(bucketImages)
		if b == nil {
			return fmt.Errorf("image %s: %w", image, ErrNotFound)
		}
		if err := getJSON(b, []byte(image), &im); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("no image named %s: %w: add it with rackboot image add", image, ErrNotFound)
			}
			return err
		}
		return fn(h, im, c)
	})
}
