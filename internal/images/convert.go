package images

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/images/qcow2"
	"github.com/rackboot/rackboot/internal/inventory"
)

// DefaultMaxDiskSize bounds the virtual size of a qcow2 image the catalog converts:
// a header may claim up to 2^61 bytes, and converting reads every guest byte (zeros
// included), so a hostile or mistaken image would keep the worker busy for days.
const DefaultMaxDiskSize = 4 << 40

func convName(name string) string { return "." + name + ".conv" }

// converted is the outcome of a conversion: the served file's size and sha256 and the
// disk size it expands to.
type converted struct {
	size     int64
	sha256   string
	diskSize int64
}

// convert turns the verified qcow2 file .NAME.part into .NAME.conv, a zstd-compressed
// raw image of the guest-visible bytes, hashing what it writes. The caller renames it
// into place. On error nothing is left but the .part file.
func (c *Catalog) convert(ctx context.Context, log *slog.Logger, name string) (res converted, err error) {
	src, err := c.root.Open(partName(name))
	if err != nil {
		return res, fmt.Errorf("opening the downloaded file: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return res, err
	}
	img, err := qcow2.Open(src, st.Size())
	if err != nil {
		return res, qcow2Advice(err)
	}
	if img.Size() > c.cfg.MaxDiskSize {
		return res, fmt.Errorf("the qcow2 image's disk is %s, more than the %s rackboot converts: is this the image you meant?",
			agentapi.FormatBytes(uint64(img.Size())), agentapi.FormatBytes(uint64(c.cfg.MaxDiskSize)))
	}
	res.diskSize = img.Size()
	out, err := c.root.OpenFile(convName(name), os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return res, fmt.Errorf("cannot write %s: %w", c.cfg.Dir, err)
	}
	defer func() {
		if err != nil {
			out.Close()
			_ = c.root.Remove(convName(name))
		}
	}()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, h)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	// SpeedFastest: the server converts once, but the operator waits for it; zeros
	// (most of a cloud image's disk) cost next to nothing at any level.
	enc, err := zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(2))
	if err != nil {
		return res, err
	}
	start := time.Now()
	last := start
	_, _ = c.cfg.Store.UpdateImage(context.WithoutCancel(ctx), name, func(im *inventory.Image) error {
		im.Phase, im.BytesDone, im.BytesTotal = inventory.ImageConvert, 0, res.diskSize
		return nil
	})
	log.Info("converting qcow2 image to zstd-compressed raw", "qcow2Version", img.Version(), "diskSize", res.diskSize,
		"clusterSize", img.ClusterSize(), "compression", img.Compression())
	_, err = img.Stream(ctx, enc, func(done int64) {
		if time.Since(last) >= progressEvery {
			last = time.Now()
			_, _ = c.cfg.Store.UpdateImage(context.WithoutCancel(ctx), name, func(im *inventory.Image) error {
				im.BytesDone = done
				return nil
			})
		}
	})
	if cerr := enc.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return res, err
		}
		if errors.Is(err, qcow2.ErrInvalid) || errors.Is(err, qcow2.ErrUnsupported) {
			return res, qcow2Advice(err)
		}
		return res, fmt.Errorf("converting into %s: %w", c.cfg.Dir, err)
	}
	res.size, res.sha256 = cw.n, hex.EncodeToString(h.Sum(nil))
	secs := time.Since(start).Seconds()
	log.Info("qcow2 image converted", "diskSize", res.diskSize, "servedBytes", res.size, "servedSHA256", res.sha256, "seconds", secs,
		"diskMiBps", strconv.FormatFloat(float64(res.diskSize)/(1<<20)/max(secs, 0.001), 'f', 1, 64))
	return res, nil
}

// qcow2Advice adds what to do to the qcow2 reader's errors. Its refusals (backing
// file, encryption, external data file, corrupt bit) say it themselves.
func qcow2Advice(err error) error {
	switch {
	case errors.Is(err, qcow2.ErrBackingFile), errors.Is(err, qcow2.ErrEncrypted),
		errors.Is(err, qcow2.ErrExternalDataFile), errors.Is(err, qcow2.ErrMarkedCorrupt):
		return err
	}
	return fmt.Errorf("%w: check it with qemu-img check, or convert it to raw yourself", err)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// pathOf is a catalog file's path, for messages.
func (c *Catalog) pathOf(name string) string { return filepath.Join(c.cfg.Dir, name) }
