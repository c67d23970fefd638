package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
)

// newImageCmd returns `rackboot image`, the OS image catalog's CLI. It talks to the
// admin API like `rackboot host` (same --server and token resolution).
func newImageCmd(env *cliEnv) *cobra.Command {
	return newImageCmdWith(env, defaultTokenFiles())
}

func newImageCmdWith(env *cliEnv, tokenFiles []string) *cobra.Command {
	h := &hostCLI{env: env, tokenFiles: tokenFiles}
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the OS image catalog through the admin API",
		Long: `image manages the OS images rackboot writes to hosts. An image is cached and verified
against its sha256 on the rackboot server before any host gets it.

` + connectionHelp,
	}
	h.registerConnection(cmd)
	cmd.AddCommand(h.imageAddCmd(), h.imageListCmd(), h.imageShowCmd(), h.imageRmCmd())
	h.registerImageCompletions(cmd) // completion.go
	return cmd
}

func (h *hostCLI) imageAddCmd() *cobra.Command {
	var (
		req    admin.AddImageRequest
		p      printFlags
		file   string
		format string
		noWait bool
	)
	cmd := &cobra.Command{
		Use:   "add NAME (--url URL | --file PATH) [--sha256 SUM | --sha256-url URL] [--format raw|gzip|zstd|xz|qcow2] [--no-wait]",
		Short: "Add an OS image: downloaded (URL) or uploaded (file), then verified",
		Long: `add puts an image in the catalog. With --url the rackboot server downloads it (http,
https, or file:///PATH on the server); with --file this command uploads the file. The
image is usable once its sha256 matches --sha256; a mismatch marks it failed, keeps
nothing, and no host ever gets it. Without --no-wait, add waits for the verdict.

--sha256-url names the publisher's checksum file instead (SHA256SUMS, CHECKSUM; GNU
or BSD lines, PGP-clearsigned or not): the server fetches it and takes the sum listed
for the image's file name (the base name of --url or --file).

One of them is required with --url. With --file both may be left out: add then computes
the file's sha256 here first, which guards the upload but not the file itself (give the
publisher's sum when there is one). On a terminal the hashing, the upload and the
server's download and conversion show a progress bar with an ETA on standard error.

The format is detected from the bytes: raw, gzip, zstd, xz, or qcow2 (v2 or v3,
compressed clusters too, but no backing file), which the server converts once, after
verifying it, into a zstd-compressed raw image that hosts get. --format only checks:
bytes of another format fail the image.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if _, _, err := p.format(); err != nil {
				return err
			}
			req.Name = args[0]
			if (req.URL == "") == (file == "") {
				return errors.New("give exactly one of --url and --file")
			}
			if err := inventory.ValidateImageName(req.Name); err != nil {
				return err
			}
			if req.SHA256 != "" && req.SHA256URL != "" {
				return usageErrorf("give --sha256 or --sha256-url, not both")
			}
			if req.SHA256 == "" && req.SHA256URL == "" && req.URL != "" {
				return usageErrorf("--sha256 or --sha256-url is required with --url: give the sum the image's publisher gives (or its SHA256SUMS file), so the server can check what it downloads")
			}
			if req.SHA256URL != "" && file != "" {
				req.SHA256Name = filepath.Base(file)
			}
			if req.SHA256 != "" {
				sum, err := inventory.ValidateSHA256(req.SHA256)
				if err != nil {
					return fmt.Errorf("--sha256: %w", err)
				}
				req.SHA256 = sum
			}
			req.Format = inventory.ImageFormat(format)
			if !req.Format.ValidSource() {
				return fmt.Errorf("--format %q: use raw, gzip, zstd, xz or qcow2", format)
			}
			var f *os.File
			var size int64 = -1
			if file != "" {
				var err error
				if f, err = os.Open(file); err != nil {
					return fmt.Errorf("--file: %w", err)
				}
				defer f.Close()
				if st, err := f.Stat(); err == nil {
					size = st.Size()
				}
				if req.SHA256 == "" && req.SHA256URL == "" {
					if req.SHA256, err = h.hashFile(ctx, f, file, size); err != nil {
						return err
					}
				}
			}
			im, err := c.AddImage(ctx, req)
			if err != nil {
				return err
			}
			if f != nil {
				if im, err = h.uploadImage(ctx, c, im.Name, f, file, size); err != nil {
					return err
				}
			}
			if !noWait {
				if im, err = h.waitImage(ctx, c, im); err != nil {
					return err
				}
			}
			err = printOne(h.env.stdout, &p, imageResource, im, func() string {
				return fmt.Sprintf("image %s: %s\n", im.Name, imageState(im))
			})
			if err == nil && im.Status == inventory.ImageFailed {
				err = fmt.Errorf("image %s failed: %s", im.Name, im.Error)
			}
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.URL, "url", "", "http(s) URL the server downloads, or file:///PATH on the server")
	f.StringVar(&file, "file", "", "local file to upload")
	f.StringVar(&req.SHA256, "sha256", "", "the image file's sha256 (sha256sum FILE); this or --sha256-url is required with --url, computed from --file when both are left out")
	f.StringVar(&req.SHA256URL, "sha256-url", "", "URL of the publisher's checksum file (SHA256SUMS) listing the image's file name; the server fetches it")
	f.StringVar(&format, "format", "", "raw, gzip, zstd, xz or qcow2: checked against the file's bytes (default: detect)")
	f.BoolVar(&noWait, "no-wait", false, "return once the server accepted the image, without waiting for the download and verification")
	p.register(cmd, "text", actionFormats)
	return cmd
}

// waitImage polls until the image is no longer pending, showing the server's
// download, verification and conversion: a bar (with an ETA) per phase on a terminal,
// a line per change elsewhere.
func (h *hostCLI) waitImage(ctx context.Context, c *admin.Client, im admin.Image) (admin.Image, error) {
	if im.Status != inventory.ImagePending {
		return im, nil
	}
	var bar *byteBar
	var phase inventory.ImagePhase = "-"
	var last int64 = -1
	var eta etaClock
	for im.Status == inventory.ImagePending {
		total := imageTotal(im)
		if im.Phase != phase {
			if phase != "-" {
				bar.finish(true)
			}
			phase, last = im.Phase, -1
			bar = h.newByteBar(phaseLabel(im.Phase)+" "+im.Name, total)
			eta = etaClock{}
		}
		if bar != nil {
			bar.set(im.BytesDone, total)
		} else if im.BytesDone != last {
			last = im.BytesDone
			if total > 0 {
				fmt.Fprintf(h.env.stderr, "image %s: %s %s of %s%s\n", im.Name, phaseLabel(im.Phase), agentapi.FormatBytes(uint64(im.BytesDone)),
					agentapi.FormatBytes(uint64(total)), eta.left(time.Now(), im.BytesDone, total))
			}
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			bar.finish(false)
			return im, ctx.Err()
		case <-t.C:
		}
		var err error
		if im, err = c.GetImage(ctx, im.Name); err != nil {
			bar.finish(false)
			return im, err
		}
	}
	if im.Status == inventory.ImageReady {
		bar.set(im.Size, im.Size)
	}
	bar.finish(im.Status == inventory.ImageReady)
	return im, nil
}

func imageState(im admin.Image) string {
	switch im.Status {
	case inventory.ImageReady:
		if im.ServedSHA256 != "" {
			return fmt.Sprintf("ready (%s image, sha256 %s verified; converted to a %s-compressed raw disk of %s, %s, sha256 %s)",
				im.SourceFormat, im.SHA256, im.Format, agentapi.FormatBytes(uint64(im.DiskSize)), agentapi.FormatBytes(uint64(im.Size)), im.ServedSHA256)
		}
		return fmt.Sprintf("ready (%s, sha256 %s verified)", agentapi.FormatBytes(uint64(im.Size)), im.SHA256)
	case inventory.ImageFailed:
		return "failed: " + im.Error
	}
	if total := imageTotal(im); total > 0 {
		return fmt.Sprintf("pending (%s %s of %s)", phaseLabel(im.Phase), agentapi.FormatBytes(uint64(im.BytesDone)), agentapi.FormatBytes(uint64(total)))
	}
	return "pending"
}

// imageTotal is the total of a pending image's phase (0: unknown); records from
// before phases give only the download's Size.
func imageTotal(im admin.Image) int64 {
	if im.BytesTotal > 0 {
		return im.BytesTotal
	}
	if im.Phase == "" || im.Phase == inventory.ImageDownload {
		return im.Size
	}
	return 0
}

func phaseLabel(p inventory.ImagePhase) string {
	switch p {
	case inventory.ImageUpload:
		return "uploading"
	case inventory.ImageVerify:
		return "verifying"
	case inventory.ImageConvert:
		return "converting"
	}
	return "downloading"
}

// etaClock estimates the time left from the rate since its first sample.
type etaClock struct {
	t0   time.Time
	done int64
}

// left returns ", about D left", or "" until there is a rate to go by.
func (e *etaClock) left(now time.Time, done, total int64) string {
	if e.t0.IsZero() {
		e.t0, e.done = now, done
		return ""
	}
	secs := now.Sub(e.t0).Seconds()
	if secs < 1 || done <= e.done || done >= total {
		return ""
	}
	rate := float64(done-e.done) / secs
	return fmt.Sprintf(", about %s left", time.Duration(float64(total-done)/rate*float64(time.Second)).Round(time.Second))
}

// imageResource is how images print.
var imageResource = resource[admin.Image]{
	kind: "image",
	name: func(im admin.Image) string { return im.Name },
	columns: []column[admin.Image]{
		{header: "NAME", value: func(im admin.Image) string { return im.Name }},
		{header: "STATUS", value: func(im admin.Image) string { return string(im.Status) }},
		{header: "SIZE", value: func(im admin.Image) string {
			if im.Size <= 0 {
				return ""
			}
			return agentapi.FormatBytes(uint64(im.Size))
		}},
		{header: "FORMAT", value: func(im admin.Image) string {
			switch {
			case im.SourceFormat != "" && string(im.SourceFormat) != string(im.Format) && im.Format != "":
				return string(im.SourceFormat) + ">" + string(im.Format) // converted
			case im.Format == "" && im.SourceFormat != "":
				return string(im.SourceFormat)
			case im.Format == "":
				return "auto"
			}
			return string(im.Format)
		}},
		{header: "SHA256", value: func(im admin.Image) string { return im.SHA256[:min(12, len(im.SHA256))] }},
		{header: "SOURCE", value: func(im admin.Image) string { return im.Source }},
		{header: "VERIFIED", wide: true, value: func(im admin.Image) string {
			if im.VerifiedAt.IsZero() {
				return ""
			}
			return im.VerifiedAt.UTC().Format(time.RFC3339)
		}},
		{header: "ERROR", wide: true, value: func(im admin.Image) string { return im.Error }},
	},
}

func (h *hostCLI) imageListCmd() *cobra.Command {
	var p printFlags
	cmd := &cobra.Command{
		Use:     "list [-o table|wide|json|yaml|name|jsonpath=T] [--no-headers]",
		Short:   "List the image catalog",
		Aliases: []string{"ls"},
		Args:    cobra.NoArgs,
		RunE: h.run(func(ctx context.Context, c *admin.Client, _ []string) error {
			format, _, err := p.format()
			if err != nil {
				return err
			}
			ims, err := c.ListImages(ctx)
			if err != nil {
				return err
			}
			if len(ims) == 0 && (format == "table" || format == "wide") {
				fmt.Fprintln(h.env.stderr, "no images: add one with 'rackboot image add NAME --url URL --sha256 SUM'")
			}
			return printList(h.env.stdout, &p, imageResource, ims)
		}),
	}
	p.register(cmd, "table", listFormats)
	return cmd
}

func (h *hostCLI) imageShowCmd() *cobra.Command {
	var p printFlags
	cmd := &cobra.Command{
		Use:   "show NAME [-o yaml|json|table|wide|name|jsonpath=T]",
		Short: "Show one image",
		Args:  cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if _, _, err := p.format(); err != nil {
				return err
			}
			im, err := c.GetImage(ctx, args[0])
			if err != nil {
				return err
			}
			return printOne(h.env.stdout, &p, imageResource, im, nil)
		}),
	}
	p.register(cmd, "yaml", listFormats)
	return cmd
}

func (h *hostCLI) imageRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove an image (refused while a host uses it)",
		Args:  cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if err := c.RemoveImage(ctx, args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(h.env.stdout, "removed image %s\n", args[0])
			return err
		}),
	}
}
