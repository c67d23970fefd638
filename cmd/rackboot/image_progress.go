package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/agentapi"
)

// byteBar is a progress bar of bytes on standard error (hashing, upload, the server's
// download). A nil *byteBar shows nothing: standard error is not a terminal.
type byteBar struct {
	p   *mpb.Progress
	bar *mpb.Bar
}

// newByteBar starts a bar labelled label; total 0 or less is not known yet.
func (h *hostCLI) newByteBar(label string, total int64) *byteBar {
	if !h.env.terminal(h.env.stderr) {
		return nil
	}
	return newByteBarOn(h.env.stderr, label, total)
}

// newByteBarOn draws on w, which the caller found to be a terminal.
func newByteBarOn(w io.Writer, label string, total int64) *byteBar {
	p := mpb.New(mpb.WithOutput(w), mpb.WithAutoRefresh(), mpb.WithRefreshRate(200*time.Millisecond))
	bar := p.AddBar(max(total, 0),
		mpb.PrependDecorators(decor.Name(label, decor.WCSyncSpaceR), decor.Percentage(decor.WCSyncSpace)),
		mpb.AppendDecorators(
			decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace),
			decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
			decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done"),
		),
	)
	return &byteBar{p: p, bar: bar}
}

// reader counts what is read from r on the bar.
func (b *byteBar) reader(r io.Reader) io.Reader {
	if b == nil {
		return r
	}
	pr, err := b.bar.ProxyReader(r)
	if err != nil {
		return r // the bar has ended: read without it
	}
	return pr
}

// set shows done of total bytes (total 0 or less: not known).
func (b *byteBar) set(done, total int64) {
	if b == nil {
		return
	}
	if total > 0 {
		b.bar.SetTotal(total, false)
	}
	b.bar.SetCurrent(done)
}

// finish completes the bar (ok) or stops it where it is, and waits until it is drawn.
func (b *byteBar) finish(ok bool) {
	if b == nil {
		return
	}
	if ok {
		b.bar.SetTotal(-1, true)
	} else {
		b.bar.Abort(false)
	}
	b.p.Wait()
}

// ctxReader stops a long read (hashing a large image) when ctx ends: Ctrl-C.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// hashFile computes the sha256 of f (name, size bytes) for an image added without
// --sha256, and leaves f at its start for the upload.
func (h *hostCLI) hashFile(ctx context.Context, f *os.File, name string, size int64) (string, error) {
	bar := h.newByteBar("sha256 "+name, size)
	sum := sha256.New()
	_, err := io.Copy(sum, bar.reader(ctxReader{ctx, f}))
	bar.finish(err == nil)
	if err != nil {
		return "", fmt.Errorf("computing the sha256 of %s: %w", name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("--file %s: %w", name, err)
	}
	s := hex.EncodeToString(sum.Sum(nil))
	fmt.Fprintf(h.env.stderr, "sha256 of %s: %s (computed here: give --sha256 to check it against the publisher's)\n", name, s)
	return s, nil
}

// uploadImage sends f as image name's file, with a bar on a terminal.
func (h *hostCLI) uploadImage(ctx context.Context, c *admin.Client, image string, f *os.File, name string, size int64) (admin.Image, error) {
	bar := h.newByteBar("uploading "+image, size)
	if bar == nil {
		fmt.Fprintf(h.env.stderr, "uploading %s (%s) as image %s...\n", name, agentapi.FormatBytes(uint64(max(size, 0))), image)
	}
	// An upload takes as long as it takes: no overall client timeout.
	im, err := c.WithTimeout(0).UploadImage(ctx, image, bar.reader(f), size)
	bar.finish(err == nil)
	return im, err
}
