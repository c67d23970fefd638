package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
)

// Store is the part of the inventory the catalog needs.
type Store interface {
	CreateImage(ctx context.Context, im inventory.Image) (inventory.Image, error)
	GetImage(ctx context.Context, name string) (inventory.Image, error)
	ListImages(ctx context.Context) ([]inventory.Image, error)
	UpdateImage(ctx context.Context, name string, fn func(*inventory.Image) error) (inventory.Image, error)
	DeleteImage(ctx context.Context, name string) error
	AppendEvent(ctx context.Context, hostID string, e inventory.Event) (inventory.Event, error)
}

var _ Store = (*inventory.BoltStore)(nil)

// Authorizer decides whether the request may fetch image name. It returns the host the
// request belongs to (for its timeline; "" for none), or an error, answered with 403.
type Authorizer func(r *http.Request, name string) (hostID string, err error)

// Defaults for Config's zero values.
const (
	DefaultStallTimeout  = 60 * time.Second
	DefaultMaxAttempts   = 3
	DefaultHeaderTimeout = 60 * time.Second
	DefaultBackoff       = 2 * time.Second
	// progressEvery bounds how often a download's progress is written to the store.
	progressEvery = 2 * time.Second
	// chunk is how much one sendfile call moves before the write deadline is pushed.
	chunk = 8 << 20
)

// DefaultConfig is the settings part of Config with every default written out.
func DefaultConfig() Config {
	return Config{StallTimeout: DefaultStallTimeout, MaxAttempts: DefaultMaxAttempts, Backoff: DefaultBackoff}
}

// Validate checks the operator's settings (zeros mean the defaults). Each message
// starts with the setting's name in the configuration file, so the caller can prefix
// its own path ("images.").
func (c Config) Validate() error {
	var errs []error
	if c.StallTimeout < 0 || (c.StallTimeout > 0 && c.StallTimeout < time.Second) {
		errs = append(errs, fmt.Errorf("stallTimeout: %s: give at least 1s (default %s)", c.StallTimeout, DefaultStallTimeout))
	}
	if c.MaxAttempts < 0 || c.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("maxAttempts: %d: give 1-100 (default %d)", c.MaxAttempts, DefaultMaxAttempts))
	}
	if c.Backoff < 0 || c.Backoff > time.Hour {
		errs = append(errs, fmt.Errorf("backoff: %s: give 0-1h (default %s)", c.Backoff, DefaultBackoff))
	}
	return errors.Join(errs...)
}

// Config configures a Catalog. Dir and Store are required.
type Config struct {
	// Dir holds the cached images (DATA_DIR/images); it is created if missing and only
	// ever opened through os.Root.
	Dir   string
	Store Store
	// HTTPClient downloads images; the default has connection and header timeouts but
	// no overall timeout (images are large; StallTimeout cuts a transfer that stops).
	HTTPClient *http.Client
	// Authorize gates GET /images/NAME; nil lets anyone on the network fetch ready
	// images.
	Authorize Authorizer
	// StallTimeout is how long a download or a transfer to an agent may make no
	// progress before it is cut (default 60s).
	StallTimeout time.Duration `yaml:"stallTimeout" doc:"a download, or a transfer to an agent, making no progress this long is cut"`
	// MaxAttempts per download (default 3), resuming with Range where possible.
	MaxAttempts int `yaml:"maxAttempts" doc:"attempts per download, resuming with Range where the server allows"`
	// Backoff before a download retry (default 2s, doubled each time).
	Backoff time.Duration `yaml:"backoff" doc:"wait before a download retry, doubled each time"`
	// MaxDiskSize bounds the virtual size of a qcow2 image the catalog converts
	// (default DefaultMaxDiskSize).
	MaxDiskSize int64
	// VerifyOnStart re-hashes every ready image when Start runs.
	VerifyOnStart bool `yaml:"verifyOnStart" doc:"re-hash every ready image at start (reads them all)"`
	Logger        *slog.Logger
	// Registerer gets the catalog's metrics; Metrics, when set, the HTTP route's.
	Registerer prometheus.Registerer
	Metrics    *ipxe.HTTPMetrics
}

// Catalog is the image catalog. Start must run for URL images to be downloaded.
type Catalog struct {
	cfg   Config
	root  *os.Root
	log   *slog.Logger
	http  *ipxe.HTTPMetrics
	queue chan string
	// ready is closed once Start has checked what the previous run left.
	ready   chan struct{}
	mu      sync.Mutex
	running map[string]bool // downloads in flight, by name
	uploads map[string]bool
	// verified names uploads whose .part file this process verified and queued for
	// conversion: the worker need not hash it again.
	verified map[string]bool
	wg       sync.WaitGroup

	bytesServed prometheus.Counter
	downloads   *prometheus.CounterVec
	inFlight    prometheus.Gauge
}

// New opens (creating) cfg.Dir and returns a catalog.
func New(cfg Config) (*Catalog, error) {
	if cfg.Store == nil {
		return nil, errors.New("images: no inventory store configured")
	}
	if cfg.Dir == "" {
		return nil, errors.New("images: no image directory configured (DATA_DIR/images)")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w: give rackboot a data directory it can write", err)
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxDiskSize <= 0 {
		cfg.MaxDiskSize = DefaultMaxDiskSize
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: DefaultHeaderTimeout,
			// The file is stored exactly as served: no transparent gunzip.
			DisableCompression: true,
		}}
	}
	c := &Catalog{
		cfg: cfg, root: root, log: cfg.Logger, http: cfg.Metrics,
		queue: make(chan string, 1024), ready: make(chan struct{}), running: map[string]bool{}, uploads: map[string]bool{}, verified: map[string]bool{},
		bytesServed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rackboot_image_bytes_served_total",
			Help: "Bytes of OS images sent to agents.",
		}),
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackboot_image_downloads_total",
			Help: "Image downloads and uploads into the catalog, by outcome (ok, checksum, error).",
		}, []string{"outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rackboot_image_downloads_in_flight",
			Help: "Image downloads and uploads running now.",
		}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer != nil {
		for _, col := range []prometheus.Collector{c.bytesServed, c.downloads, c.inFlight} {
			if err := cfg.Registerer.Register(col); err != nil {
				root.Close()
				return nil, fmt.Errorf("images: registering metrics: %w", err)
			}
		}
	}
	if c.http == nil {
		m, err := ipxe.NewHTTPMetrics(cfg.Registerer)
		if err != nil {
			root.Close()
			return nil, fmt.Errorf("images: %w", err)
		}
		c.http = m
	}
	return c, nil
}

// Ready is closed once Start has checked the images a previous run left (pending
// downloads re-queued, interrupted uploads and missing files marked failed).
func (c *Catalog) Ready() <-chan struct{} { return c.ready }

// Close releases the image directory.
func (c *Catalog) Close() error { return c.root.Close() }

// AddRequest adds an image from a URL (http, https, or file on the server). For an
// upload, leave URL empty and call Upload with the bytes.
type AddRequest struct {
	Name string `json:"name"`
	URL  string `json:"url,omitempty"`
	// SHA256 is the file's checksum; or leave it empty and give SHA256URL, a
	// checksum file (SHA256SUMS, CHECKSUM) listing it.
	SHA256    string `json:"sha256,omitempty"`
	SHA256URL string `json:"sha256URL,omitempty"`
	// SHA256Name is the file name to look up in SHA256URL; default the base name of
	// URL's path (an upload must give it).
	SHA256Name string `json:"sha256Name,omitempty"`
	// Format is what the file is (raw, gzip, zstd, xz, qcow2); empty detects it from
	// its bytes, and a given format that the bytes contradict fails the image.
	Format inventory.ImageFormat `json:"format,omitempty"`
}

// maxSumsBytes bounds a checksum file: distributions' are a few KiB.
const maxSumsBytes = 4 << 20

// sumsTimeout bounds fetching a checksum file, which Add does before it returns.
const sumsTimeout = 60 * time.Second

// SourceUpload is the Source of an image whose bytes come through Upload.
const SourceUpload = "upload"

// Add records the image as pending and queues its download (URL) or waits for its
// upload (no URL). An image of the same name that failed is replaced; any other is a
// conflict.
func (c *Catalog) Add(ctx context.Context, req AddRequest) (inventory.Image, error) {
	src := SourceUpload
	if req.URL != "" {
		u, err := url.Parse(req.URL)
		if err != nil || !(u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "file") || (u.Scheme != "file" && u.Host == "") {
			return inventory.Image{}, fmt.Errorf("%w: image URL %q: give an http://, https:// or file:///PATH URL", inventory.ErrInvalid, req.URL)
		}
		if u.Scheme == "file" && ((u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(u.Path)) {
			return inventory.Image{}, fmt.Errorf("%w: image URL %q: a file URL needs an absolute path on the rackboot server (file:///srv/images/x.img)", inventory.ErrInvalid, req.URL)
		}
		src = u.String()
	}
	if err := inventory.ValidateImageName(req.Name); err != nil {
		return inventory.Image{}, fmt.Errorf("%w: %w", inventory.ErrInvalid, err)
	}
	if !req.Format.ValidSource() {
		return inventory.Image{}, fmt.Errorf("%w: image %s: format %q: use raw, gzip, zstd, xz or qcow2, or leave it out to detect it", inventory.ErrInvalid, req.Name, req.Format)
	}
	sum, sumsURL := req.SHA256, ""
	if req.SHA256URL != "" {
		if req.SHA256 != "" {
			return inventory.Image{}, fmt.Errorf("%w: give the image's sha256 or a checksum file URL, not both", inventory.ErrInvalid)
		}
		var err error
		if sum, sumsURL, err = c.lookupSum(ctx, req); err != nil {
			return inventory.Image{}, err
		}
	}
	phase := inventory.ImageDownload
	if src == SourceUpload {
		phase = inventory.ImageUpload
	}
	im := inventory.Image{Name: req.Name, Source: src, SHA256: sum, SHA256URL: sumsURL, SourceFormat: req.Format, Status: inventory.ImagePending, Phase: phase}
	if err := im.Normalize(); err != nil {
		return inventory.Image{}, fmt.Errorf("%w: %w", inventory.ErrInvalid, err)
	}
	if old, err := c.cfg.Store.GetImage(ctx, im.Name); err == nil && old.Status == inventory.ImageFailed && c.settle(ctx, im.Name) {
		if err := c.Remove(ctx, im.Name); err != nil {
			return inventory.Image{}, err
		}
	}
	created, err := c.cfg.Store.CreateImage(ctx, im)
	if err != nil {
		return inventory.Image{}, err
	}
	c.log.Info("image added", "image", created.Name, "source", created.Source, "sha256", created.SHA256, "sha256URL", redact(created.SHA256URL))
	if src != SourceUpload {
		c.enqueue(created.Name)
	}
	return created, nil
}

// settle reports whether a failed image's download or upload has ended. Its goroutine
// records the failure just before it returns: a caller that saw the failure may ask
// before it is gone, so settle gives it a moment (else re-adding a just-failed image
// was refused as a conflict, now and then).
func (c *Catalog) settle(ctx context.Context, name string) bool {
	for range 200 {
		if !c.busy(name) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false
}

func (c *Catalog) busy(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running[name] || c.uploads[name]
}

func (c *Catalog) enqueue(name string) {
	select {
	case c.queue <- name:
	default:
		// A thousand queued downloads: this one is picked up by the next Start.
		c.log.Warn("image download queue full; the download starts at the next restart", "image", name)
	}
}

// Get returns one image.
func (c *Catalog) Get(ctx context.Context, name string) (inventory.Image, error) {
	if err := inventory.ValidateImageName(name); err != nil {
		return inventory.Image{}, fmt.Errorf("%w: %w", inventory.ErrInvalid, err)
	}
	return c.cfg.Store.GetImage(ctx, name)
}

// List returns the catalog.
func (c *Catalog) List(ctx context.Context) ([]inventory.Image, error) {
	return c.cfg.Store.ListImages(ctx)
}

// Remove deletes the image from the catalog (refused while a host uses it) and then
// its file.
func (c *Catalog) Remove(ctx context.Context, name string) error {
	if err := inventory.ValidateImageName(name); err != nil {
		return fmt.Errorf("%w: %w", inventory.ErrInvalid, err)
	}
	if c.busy(name) {
		return fmt.Errorf("%w: image %s is being downloaded or uploaded: wait for it to finish", inventory.ErrConflict, name)
	}
	if err := c.cfg.Store.DeleteImage(ctx, name); err != nil {
		return err
	}
	for _, f := range []string{name, partName(name), convName(name)} {
		if err := c.root.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("image %s removed from the catalog, but its file was not deleted: %w", name, err)
		}
	}
	c.log.Info("image removed", "image", name)
	return nil
}

// Lookup returns the image for a provisioning plan: ready images only after checking
// their file is there with the right size.
func (c *Catalog) Lookup(ctx context.Context, name string) (inventory.Image, error) {
	im, err := c.cfg.Store.GetImage(ctx, name)
	if err != nil || im.Status != inventory.ImageReady {
		return im, err
	}
	if err := c.checkFile(im); err != nil {
		return c.fail(ctx, name, err.Error())
	}
	return im, nil
}

func (c *Catalog) checkFile(im inventory.Image) error {
	st, err := c.root.Stat(im.Name)
	if err != nil {
		return fmt.Errorf("the cached file %s is missing (%v): remove the image and add it again", filepath.Join(c.cfg.Dir, im.Name), err)
	}
	if st.Size() != im.Size {
		return fmt.Errorf("the cached file %s has %d bytes, not the %d verified: remove the image and add it again", filepath.Join(c.cfg.Dir, im.Name), st.Size(), im.Size)
	}
	return nil
}

func (c *Catalog) fail(ctx context.Context, name, msg string) (inventory.Image, error) {
	c.log.Warn("image failed", "image", name, "err", msg)
	return c.cfg.Store.UpdateImage(context.WithoutCancel(ctx), name, func(im *inventory.Image) error {
		im.Status, im.Error = inventory.ImageFailed, msg
		return nil
	})
}

// Start resumes what a restart interrupted and downloads queued images, one at a
// time, until ctx ends; then it waits for the download in progress to stop.
func (c *Catalog) Start(ctx context.Context) error {
	ims, err := c.cfg.Store.ListImages(ctx)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	for _, im := range ims {
		switch {
		case im.Status == inventory.ImagePending && im.Phase == inventory.ImageConvert:
			// Verified, then interrupted while converting: convert again from the
			// .part file (checked again first), or download again if it is gone.
			c.log.Info("resuming image conversion", "image", im.Name, "source", im.Source)
			c.enqueue(im.Name)
		case im.Status == inventory.ImagePending && im.Source == SourceUpload && !c.busy(im.Name):
			_, _ = c.fail(ctx, im.Name, "the upload was interrupted (rackboot restarted): upload the file again with rackboot image add --file")
		case im.Status == inventory.ImagePending:
			c.log.Info("resuming image download", "image", im.Name, "source", im.Source)
			c.enqueue(im.Name)
		case im.Status == inventory.ImageReady:
			err := c.checkFile(im)
			if err == nil && c.cfg.VerifyOnStart {
				err = c.rehash(im)
			}
			if err != nil {
				_, _ = c.fail(ctx, im.Name, err.Error())
			}
		}
	}
	close(c.ready)
	for {
		select {
		case <-ctx.Done():
			c.wg.Wait()
			return nil
		case name := <-c.queue:
			c.download(ctx, name)
		}
	}
}

func (c *Catalog) rehash(im inventory.Image) error {
	f, err := c.root.Open(im.Name)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("reading the cached file of image %s: %w", im.Name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != im.FileSHA256() {
		return fmt.Errorf("the cached file of image %s changed on disk: its sha256 is now %s, not %s: remove the image and add it again", im.Name, got, im.FileSHA256())
	}
	return nil
}

func partName(name string) string { return "." + name + ".part" }

// download fetches one queued image, with retries, and records the outcome.
func (c *Catalog) download(ctx context.Context, name string) {
	c.mu.Lock()
	verified := c.verified[name]
	delete(c.verified, name)
	c.mu.Unlock()
	im, err := c.cfg.Store.GetImage(ctx, name)
	if err != nil || im.Status != inventory.ImagePending || (im.Source == SourceUpload && im.Phase != inventory.ImageConvert) {
		return // removed, or already done
	}
	c.mu.Lock()
	if c.running[name] {
		c.mu.Unlock()
		return
	}
	c.running[name] = true
	c.mu.Unlock()
	c.inFlight.Inc()
	defer func() {
		c.inFlight.Dec()
		c.mu.Lock()
		delete(c.running, name)
		c.mu.Unlock()
	}()
	log := c.log.With("image", name, "source", redact(im.Source))
	start := time.Now()
	if im.Phase == inventory.ImageConvert {
		if verified || c.reverify(ctx, log, im) {
			c.publish(ctx, log, im, start, false)
			return
		}
		if im.Source == SourceUpload {
			_, _ = c.fail(ctx, name, "the uploaded file was lost while rackboot restarted during its conversion: upload it again with rackboot image add --file")
			return
		}
	}
	log.Info("downloading image")
	_, _ = c.cfg.Store.UpdateImage(context.WithoutCancel(ctx), name, func(im *inventory.Image) error {
		im.Phase, im.BytesDone = inventory.ImageDownload, 0
		return nil
	})
	f, err := c.root.OpenFile(partName(name), os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		_, _ = c.fail(ctx, name, fmt.Sprintf("cannot write %s: %v", c.cfg.Dir, err))
		c.downloads.WithLabelValues("error").Inc()
		return
	}
	h := sha256.New()
	var got int64
	backoff := c.cfg.Backoff
	var lastErr error
	for attempt := 1; attempt <= c.cfg.MaxAttempts; attempt++ {
		var n int64
		n, lastErr = c.fetch(ctx, im, f, h, got)
		got += n
		if lastErr == nil {
			break
		}
		var restart errRestart
		if errors.As(lastErr, &restart) {
			// The server ignored Range: start over.
			h.Reset()
			got = 0
			_ = f.Truncate(0)
			_, _ = f.Seek(0, io.SeekStart)
		}
		if ctx.Err() != nil || errors.Is(lastErr, errPermanent) {
			break
		}
		log.Warn("image download interrupted; retrying", "attempt", attempt, "bytes", got, "err", lastErr)
		if attempt < c.cfg.MaxAttempts {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			backoff *= 2
		}
	}
	if ctx.Err() != nil {
		// Shutting down: the image stays pending and is downloaded again at start.
		f.Close()
		_ = c.root.Remove(partName(name))
		log.Info("image download stopped by shutdown; it resumes at the next start", "bytes", got)
		return
	}
	if lastErr != nil {
		f.Close()
		_ = c.root.Remove(partName(name))
		c.downloads.WithLabelValues("error").Inc()
		_, _ = c.fail(ctx, name, fmt.Sprintf("downloading %s failed after %d bytes: %v: check the URL, then rackboot image add again", im.Source, got, lastErr))
		return
	}
	c.finish(ctx, log, im, f, h.Sum(nil), got, start, false)
}

// finish verifies the checksum of the temporary file's content and publishes it.
func (c *Catalog) finish(ctx context.Context, log *slog.Logger, im inventory.Image, f *os.File, sum []byte, size int64, start time.Time, upload bool) {
	name := im.Name
	syncErr := f.Sync()
	closeErr := f.Close()
	got := hex.EncodeToString(sum)
	if got != im.SHA256 {
		_ = c.root.Remove(partName(name))
		c.downloads.WithLabelValues("checksum").Inc()
		msg := fmt.Sprintf("sha256 mismatch: the catalog says %s but the %d bytes from %s hash to %s: the file is not the one you meant, or the checksum is wrong; nothing was kept", im.SHA256, size, im.Source, got)
		_, _ = c.fail(ctx, name, msg)
		return
	}
	if err := errors.Join(syncErr, closeErr); err != nil {
		_ = c.root.Remove(partName(name))
		c.downloads.WithLabelValues("error").Inc()
		_, _ = c.fail(ctx, name, fmt.Sprintf("writing the image to %s: %v", c.cfg.Dir, err))
		return
	}
	log.Info("image verified", "bytes", size, "sha256", got, "seconds", time.Since(start).Seconds(),
		"MiBps", strconv.FormatFloat(float64(size)/(1<<20)/max(time.Since(start).Seconds(), 0.001), 'f', 1, 64))
	c.publish(ctx, log, im, start, upload)
}

// reverify hashes the .part file an interrupted conversion left and reports whether it
// is still the file verified against the operator's sha256.
func (c *Catalog) reverify(ctx context.Context, log *slog.Logger, im inventory.Image) bool {
	f, err := c.root.Open(partName(im.Name))
	if err != nil {
		log.Info("the file to convert is gone; fetching it again", "err", err)
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false
	}
	_, _ = c.cfg.Store.UpdateImage(context.WithoutCancel(ctx), im.Name, func(im *inventory.Image) error {
		im.Phase, im.BytesDone, im.BytesTotal = inventory.ImageVerify, 0, st.Size()
		return nil
	})
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return false
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != im.SHA256 {
		log.Warn("the file left to convert does not match its sha256 any more; fetching it again", "sha256", got)
		return false
	}
	return true
}

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

// publish takes the verified .part file of im: it detects the format from the bytes,
// checks it against the operator's, converts a qcow2 image (now, or in the worker when
// queue is set: an upload's request does not wait for it), and renames the served
// file into place, marking the image ready.
func (c *Catalog) publish(ctx context.Context, log *slog.Logger, im inventory.Image, start time.Time, queue bool) {
	name := im.Name
	failWith := func(outcome, msg string) {
		_ = c.root.Remove(partName(name))
		_ = c.root.Remove(convName(name))
		c.downloads.WithLabelValues(outcome).Inc()
		_, _ = c.fail(ctx, name, msg)
	}
	f, err := c.root.Open(partName(name))
	if err != nil {
		failWith("error", fmt.Sprintf("reading the verified file in %s: %v", c.cfg.Dir, err))
		return
	}
	st, err := f.Stat()
	var detected inventory.ImageFormat
	if err == nil {
		detected, err = detectFile(f)
	}
	f.Close()
	if err != nil {
		failWith("format", err.Error()+"; nothing was kept")
		return
	}
	claim := im.SourceFormat
	if claim == inventory.FormatAuto {
		claim = im.Format // a record from before detection
	}
	if claim != inventory.FormatAuto && claim != detected {
		failWith("format", fmt.Sprintf("the image was added as %s but its bytes are %s: add it again with the right --format, or without one to detect it; nothing was kept", claim, detected))
		return
	}
	served, size, sum, diskSize := detected, st.Size(), "", int64(0)
	if detected == inventory.FormatQcow2 {
		if queue {
			c.mu.Lock()
			c.verified[name] = true
			c.mu.Unlock()
			_, _ = c.cfg.Store.UpdateImage(context.WithoutCancel(ctx), name, func(im *inventory.Image) error {
				im.Phase, im.BytesDone, im.BytesTotal, im.SourceFormat = inventory.ImageConvert, 0, 0, inventory.FormatQcow2
				return nil
			})
			c.enqueue(name)
			return
		}
		conv, err := c.convert(ctx, log, name)
		if err != nil && ctx.Err() != nil {
			// Shutting down: the verified file stays, the image pending in phase
			// convert, and the next start converts it again.
			log.Info("image conversion stopped by shutdown; it starts again at the next start")
			return
		}
		if err != nil {
			failWith("format", fmt.Sprintf("converting the qcow2 image: %v; nothing was kept", err))
			return
		}
		if err := c.root.Rename(convName(name), name); err != nil {
			failWith("error", fmt.Sprintf("publishing the converted image in %s: %v", c.cfg.Dir, err))
			return
		}
		_ = c.root.Remove(partName(name))
		served, size, sum, diskSize = inventory.FormatZstd, conv.size, conv.sha256, conv.diskSize
	} else if err := c.root.Rename(partName(name), name); err != nil {
		failWith("error", fmt.Sprintf("publishing the image in %s: %v", c.cfg.Dir, err))
		return
	}
	now := time.Now().UTC()
	_, err = c.cfg.Store.UpdateImage(context.WithoutCancel(ctx), name, func(im *inventory.Image) error {
		im.Status, im.Error, im.Size, im.VerifiedAt = inventory.ImageReady, "", size, now
		im.Format, im.SourceFormat, im.ServedSHA256, im.DiskSize = served, detected, sum, diskSize
		im.Phase, im.BytesDone, im.BytesTotal = "", 0, 0
		return nil
	})
	if err != nil {
		// Removed meanwhile: drop the file with the record.
		_ = c.root.Remove(name)
		log.Warn("image finished but its record is gone", "err", err)
		return
	}
	c.downloads.WithLabelValues("ok").Inc()
	log.Info("image ready", "format", served, "sourceFormat", detected, "bytes", size, "servedSHA256", sum, "seconds", time.Since(start).Seconds())
}

var errPermanent = errors.New("permanent")

// errRestart says the download must start from byte 0.
type errRestart struct{ error }

// fetch copies the image from offset into f, hashing it; it returns the bytes added.
func (c *Catalog) fetch(ctx context.Context, im inventory.Image, f *os.File, h io.Writer, offset int64) (int64, error) {
	u, _ := url.Parse(im.Source)
	if u.Scheme == "file" {
		if offset != 0 {
			return 0, errRestart{errors.New("restart")}
		}
		src, err := os.Open(u.Path)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errPermanent, err)
		}
		defer src.Close()
		return c.copy(ctx, im.Name, f, h, src, 0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, im.Source, nil)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errPermanent, err)
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	req.Header.Set("User-Agent", "rackboot-images")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	switch {
	case offset > 0 && resp.StatusCode == http.StatusPartialContent:
	case resp.StatusCode == http.StatusOK:
		if offset > 0 {
			return 0, errRestart{errors.New("the server ignored the Range request")}
		}
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return 0, fmt.Errorf("the server answered %s", resp.Status)
	default:
		return 0, fmt.Errorf("%w: the server answered %s", errPermanent, resp.Status)
	}
	if resp.ContentLength > 0 {
		total := offset + resp.ContentLength
		_, _ = c.cfg.Store.UpdateImage(ctx, im.Name, func(im *inventory.Image) error { im.Size, im.BytesTotal = total, total; return nil })
	}
	// Cut the transfer when it stalls: the body read has no deadline of its own.
	watch := time.AfterFunc(c.cfg.StallTimeout, cancel)
	defer watch.Stop()
	body := &stallReader{r: resp.Body, t: watch, d: c.cfg.StallTimeout}
	n, err := c.copy(ctx, im.Name, f, h, body, offset)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = fmt.Errorf("no data for %s: %w", c.cfg.StallTimeout, err)
	}
	return n, err
}

type stallReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.t.Reset(s.d)
	}
	return n, err
}

// copy writes src to f and h, recording progress; it returns the bytes copied.
func (c *Catalog) copy(ctx context.Context, name string, f io.Writer, h io.Writer, src io.Reader, offset int64) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	last := time.Now()
	w := io.MultiWriter(f, h)
	for {
		m, rerr := src.Read(buf)
		if m > 0 {
			if _, err := w.Write(buf[:m]); err != nil {
				return n, fmt.Errorf("%w: writing to %s: %w", errPermanent, c.cfg.Dir, err)
			}
			n += int64(m)
			if time.Since(last) >= progressEvery {
				last = time.Now()
				done := offset + n
				_, _ = c.cfg.Store.UpdateImage(context.WithoutCancel(ctx), name, func(im *inventory.Image) error { im.BytesDone = done; return nil })
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// Upload stores r as the content of the pending upload image name and verifies it;
// it returns the image as it ends up (ready, or failed with the reason).
func (c *Catalog) Upload(ctx context.Context, name string, r io.Reader) (inventory.Image, error) {
	if err := inventory.ValidateImageName(name); err != nil {
		return inventory.Image{}, fmt.Errorf("%w: %w", inventory.ErrInvalid, err)
	}
	im, err := c.cfg.Store.GetImage(ctx, name)
	if err != nil {
		return inventory.Image{}, err
	}
	if im.Source != SourceUpload || im.Status != inventory.ImagePending {
		return im, fmt.Errorf("%w: image %s is %s from %s, not waiting for an upload: remove it and add it again", inventory.ErrConflict, name, im.Status, im.Source)
	}
	if im.Phase == inventory.ImageVerify || im.Phase == inventory.ImageConvert {
		return im, fmt.Errorf("%w: image %s was uploaded and is being converted: wait for it (rackboot image show %s)", inventory.ErrConflict, name, name)
	}
	c.mu.Lock()
	if c.uploads[name] {
		c.mu.Unlock()
		return im, fmt.Errorf("%w: image %s is being uploaded already", inventory.ErrConflict, name)
	}
	c.uploads[name] = true
	c.mu.Unlock()
	c.inFlight.Inc()
	defer func() {
		c.inFlight.Dec()
		c.mu.Lock()
		delete(c.uploads, name)
		c.mu.Unlock()
	}()
	start := time.Now()
	f, err := c.root.OpenFile(partName(name), os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return c.fail(ctx, name, fmt.Sprintf("cannot write %s: %v", c.cfg.Dir, err))
	}
	h := sha256.New()
	n, err := c.copy(ctx, name, f, h, r, 0)
	if err != nil {
		f.Close()
		_ = c.root.Remove(partName(name))
		c.downloads.WithLabelValues("error").Inc()
		return c.fail(ctx, name, fmt.Sprintf("the upload broke off after %d bytes: %v: upload again", n, err))
	}
	c.finish(ctx, c.log.With("image", name, "source", SourceUpload), im, f, h.Sum(nil), n, start, true)
	return c.cfg.Store.GetImage(context.WithoutCancel(ctx), name)
}

// Wait blocks until the image is no longer pending, or ctx ends.
func (c *Catalog) Wait(ctx context.Context, name string, poll time.Duration) (inventory.Image, error) {
	for {
		im, err := c.cfg.Store.GetImage(ctx, name)
		if err != nil || im.Status != inventory.ImagePending {
			return im, err
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return im, ctx.Err()
		case <-t.C:
		}
	}
}
