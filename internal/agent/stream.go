package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/rackboot/rackboot/agentapi"
)

// ErrChecksum means the image's sha256 was not the one the plan gave.
var ErrChecksum = errors.New("image sha256 mismatch")

// imageSource reads an image over HTTP and resumes with a Range request when the
// connection drops or stalls, so a multi-gigabyte write survives a blip of the network
// or a restart of the server. It hashes the bytes as served.
type imageSource struct {
	ctx    context.Context
	client *http.Client
	url    string
	log    *slog.Logger
	// maxResumes bounds the reconnections over the whole download.
	maxResumes int
	// idle is how long a read may wait for bytes before the connection is dropped and
	// resumed: a stalled TCP connection otherwise waits for minutes.
	idle time.Duration
	// backoff is the wait before the first reconnection (doubling, at most 10 s).
	backoff time.Duration
	// onRead is called with the total bytes read so far.
	onRead func(total int64)

	off       int64
	total     int64 // -1 until known
	validator string
	body      io.ReadCloser
	cancel    context.CancelFunc
	timer     *time.Timer
	hash      hash.Hash
	resumes   int
	eof       bool
}

func newImageSource(ctx context.Context, client *http.Client, url string, log *slog.Logger) *imageSource {
	return &imageSource{
		ctx: ctx, client: client, url: url, log: log,
		maxResumes: 20, idle: 60 * time.Second, backoff: time.Second,
		total: -1, hash: sha256.New(),
	}
}

// Sum is the hex sha256 of the bytes read so far.
func (s *imageSource) Sum() string { return hex.EncodeToString(s.hash.Sum(nil)) }

// Read implements io.Reader over however many HTTP responses it takes.
func (s *imageSource) Read(p []byte) (int, error) {
	if s.eof {
		return 0, io.EOF
	}
	wait := s.backoff
	for {
		if s.body == nil {
			if err := s.open(); err != nil {
				var perm permanentError
				if errors.As(err, &perm) || s.ctx.Err() != nil {
					return 0, err
				}
				if err := s.retry(err, &wait); err != nil {
					return 0, err
				}
				continue
			}
		}
		n, err := s.body.Read(p)
		if n > 0 {
			s.timer.Reset(s.idle)
			s.hash.Write(p[:n])
			s.off += int64(n)
			if s.onRead != nil {
				s.onRead(s.off)
			}
		}
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, io.EOF) && (s.total < 0 || s.off >= s.total):
			s.close()
			s.eof = true
			if n > 0 {
				return n, nil
			}
			return 0, io.EOF
		}
		// Short body (the server closed early) or a network error: resume.
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("connection closed at byte %d of %d", s.off, s.total)
		}
		s.close()
		if s.ctx.Err() != nil {
			return n, s.ctx.Err()
		}
		if rerr := s.retry(err, &wait); rerr != nil {
			return n, rerr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// retry counts a reconnection and waits before it; it fails once the bound is reached.
func (s *imageSource) retry(cause error, wait *time.Duration) error {
	s.resumes++
	if s.resumes > s.maxResumes {
		return fmt.Errorf("download %s: gave up after %d reconnections at byte %d: %w", s.url, s.maxResumes, s.off, cause)
	}
	s.log.Warn("image download interrupted, resuming", "url", s.url, "offset", s.off, "attempt", s.resumes, "err", cause)
	t := time.NewTimer(*wait)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return s.ctx.Err()
	case <-t.C:
	}
	*wait = min(*wait*2, 10*time.Second)
	return nil
}

type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

var contentRangeRe = regexp.MustCompile(`^bytes (\d+)-(\d+)/(\d+|\*)$`)

func (s *imageSource) open() error {
	ctx, cancel := context.WithCancel(s.ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		cancel()
		return permanentError{err}
	}
	// identity: the checksum is over the bytes as served, and Go's transport would
	// otherwise ask for gzip and decompress behind our back.
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("User-Agent", "rackboot-agent")
	if s.off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(s.off, 10)+"-")
		if s.validator != "" {
			// If the image changed since the first request, If-Range makes the server
			// send all of it (200), which is refused below: no spliced images.
			req.Header.Set("If-Range", s.validator)
		}
	}
	// The idle timer covers the wait for headers too.
	timer := time.AfterFunc(s.idle, cancel)
	resp, err := s.client.Do(req)
	if err != nil {
		timer.Stop()
		cancel()
		return fmt.Errorf("GET %s: %w", s.url, err)
	}
	fail := func(err error) error {
		timer.Stop()
		resp.Body.Close()
		cancel()
		return err
	}
	switch {
	case s.off == 0 && resp.StatusCode == http.StatusOK:
		s.total = resp.ContentLength
		if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
			s.validator = et
		} else if lm := resp.Header.Get("Last-Modified"); lm != "" {
			s.validator = lm
		}
	case s.off > 0 && resp.StatusCode == http.StatusPartialContent:
		m := contentRangeRe.FindStringSubmatch(resp.Header.Get("Content-Range"))
		if m == nil {
			return fail(permanentError{fmt.Errorf("resume %s: bad Content-Range %q", s.url, resp.Header.Get("Content-Range"))})
		}
		if start, _ := strconv.ParseInt(m[1], 10, 64); start != s.off {
			return fail(permanentError{fmt.Errorf("resume %s: asked for byte %d, got a range starting at %d", s.url, s.off, start)})
		}
		if m[3] != "*" {
			t, _ := strconv.ParseInt(m[3], 10, 64)
			if s.total >= 0 && t != s.total {
				return fail(permanentError{fmt.Errorf("resume %s: the image is now %d bytes, was %d: it changed during the download", s.url, t, s.total)})
			}
			s.total = t
		}
	case s.off > 0 && resp.StatusCode == http.StatusOK:
		return fail(permanentError{fmt.Errorf("resume %s at byte %d: the server sent the whole image again (no Range support, or the image changed): start the provisioning again", s.url, s.off)})
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests:
		return fail(fmt.Errorf("GET %s: %s", s.url, resp.Status))
	default:
		return fail(permanentError{fmt.Errorf("GET %s: %s (is the image in the server's catalog and cached?)", s.url, resp.Status)})
	}
	s.body, s.cancel, s.timer = resp.Body, cancel, timer
	return nil
}

func (s *imageSource) close() {
	if s.body != nil {
		s.timer.Stop()
		s.body.Close()
		s.cancel()
		s.body = nil
	}
}

// Close releases the connection.
func (s *imageSource) Close() error {
	s.close()
	return nil
}

// detectFormat names the compression from the first bytes.
func detectFormat(head []byte) agentapi.Format {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return agentapi.FormatGzip
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return agentapi.FormatZstd
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return agentapi.FormatXz
	}
	return agentapi.FormatRaw
}

// decompress wraps r for format (auto-detected when empty or "auto") and returns the
// format used. The returned closer releases decoder goroutines.
func decompress(r io.Reader, format agentapi.Format) (io.Reader, agentapi.Format, func(), error) {
	br := bufio.NewReaderSize(r, 1<<20)
	if format == agentapi.FormatAuto || format == "auto" {
		head, _ := br.Peek(6)
		format = detectFormat(head)
	}
	nop := func() {}
	switch format {
	case agentapi.FormatRaw:
		return br, format, nop, nil
	case agentapi.FormatGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, format, nop, fmt.Errorf("gzip image: %w", err)
		}
		return zr, format, func() { zr.Close() }, nil
	case agentapi.FormatZstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return nil, format, nop, fmt.Errorf("zstd image: %w", err)
		}
		return zr, format, zr.Close, nil
	case agentapi.FormatXz:
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, format, nop, fmt.Errorf("xz image: %w", err)
		}
		return zr, format, nop, nil
	}
	return nil, format, nop, fmt.Errorf("image format %q: use raw, gzip, zstd or xz", format)
}

// headHold is how much of the start of an image is kept in memory and written only
// after the checksum verified: the protective MBR and primary GPT (and, with the usual
// 1 MiB alignment, nothing of the first partition). A disk whose image turned out bad
// therefore never carries a partition table.
const headHold = 1 << 20

// Zero runs: most of a cloud image's disk is zeros (free space, the room the image
// leaves to grow). Aligned zeroBlock blocks that are all zero are not written; a run of
// at least minZeroRun of them becomes one zeroOut call (BLKZEROOUT on a block device:
// the kernel sends WRITE ZEROES, or a discard that reads back zeros, where the device
// has them, and writes zero pages where it has not). Shorter runs are written as
// zeros, since an ioctl per few blocks saves nothing. Either way the disk reads back
// exactly the image's bytes, and the checksum is over the bytes served, so
// WrittenSHA256 means what it meant.
const (
	zeroBlock  = 64 << 10
	minZeroRun = 1 << 20
)

// zeroOuter zeroes a range without writing its bytes; *disk is one.
type zeroOuter interface {
	zeroOut(off, n int64) error
}

// diskWriter writes an image sequentially to a disk, holding its first headHold bytes
// back and turning runs of zero blocks into zeroOut calls when d can.
type diskWriter struct {
	d     io.WriterAt
	limit int64
	off   int64
	head  []byte
	// zstart, zlen: the run of zero blocks seen and not yet written.
	zstart, zlen int64
	// zeroed counts the bytes zeroed without writing them.
	zeroed int64
}

func (w *diskWriter) Write(p []byte) (int, error) {
	if w.off+int64(len(p)) > w.limit {
		return 0, fmt.Errorf("the image is larger than the disk (%s): choose a bigger root disk", agentapi.FormatBytes(uint64(w.limit)))
	}
	n := len(p)
	if w.off < headHold {
		k := min(int64(len(p)), headHold-w.off)
		w.head = append(w.head, p[:k]...)
		p = p[k:]
		w.off += k
	}
	if _, ok := w.d.(zeroOuter); !ok {
		if len(p) > 0 {
			if err := w.writeData(p); err != nil {
				return 0, err
			}
		}
		return n, nil
	}
	// Split p at zeroBlock boundaries of the disk: whole zero blocks extend the
	// pending zero run, everything else is data, written in as few calls as possible.
	data := 0 // p[data:i] is data not yet written
	i := 0
	for i < len(p) {
		k := int(min(int64(zeroBlock)-(w.off+int64(i))%zeroBlock, int64(len(p)-i)))
		if k == zeroBlock && isZero(p[i:i+k]) {
			if data < i {
				if err := w.writeData(p[data:i]); err != nil {
					return 0, err
				}
			}
			if w.zlen == 0 {
				w.zstart = w.off
			}
			w.zlen += int64(k)
			w.off += int64(k)
			data = i + k
		} else if w.zlen > 0 && data == i {
			if err := w.flushZeros(); err != nil {
				return 0, err
			}
		}
		i += k
	}
	if data < len(p) {
		if err := w.writeData(p[data:]); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// writeData writes p at w.off (after any pending zeros) and advances.
func (w *diskWriter) writeData(p []byte) error {
	if w.zlen > 0 {
		if err := w.flushZeros(); err != nil {
			return err
		}
	}
	if _, err := w.d.WriteAt(p, w.off); err != nil {
		return fmt.Errorf("write to disk at byte %d: %w", w.off, err)
	}
	w.off += int64(len(p))
	return nil
}

// flushZeros makes the pending zero run zeros on the disk.
func (w *diskWriter) flushZeros() error {
	off, n := w.zstart, w.zlen
	w.zlen = 0
	if n == 0 {
		return nil
	}
	if z, ok := w.d.(zeroOuter); ok && n >= minZeroRun {
		if err := z.zeroOut(off, n); err != nil {
			return fmt.Errorf("zero disk bytes %d-%d: %w", off, off+n, err)
		}
		w.zeroed += n
		return nil
	}
	for n > 0 {
		k := min(n, int64(len(zeroBuf)))
		if _, err := w.d.WriteAt(zeroBuf[:k], off); err != nil {
			return fmt.Errorf("write to disk at byte %d: %w", off, err)
		}
		off += k
		n -= k
	}
	return nil
}

// zeroBuf is read-only: zeros to compare and write.
var zeroBuf = make([]byte, minZeroRun)

func isZero(b []byte) bool {
	for len(b) > 0 {
		k := min(len(b), len(zeroBuf))
		if !bytes.Equal(b[:k], zeroBuf[:k]) {
			return false
		}
		b = b[k:]
	}
	return true
}

// commitHead writes the held-back start of the image.
func (w *diskWriter) commitHead() error {
	if _, err := w.d.WriteAt(w.head, 0); err != nil {
		return fmt.Errorf("write the image's first MiB: %w", err)
	}
	return nil
}

// imageWrite is what writing an image did.
type imageWrite struct {
	Format  agentapi.Format
	SHA256  string
	Served  int64 // bytes downloaded
	Written int64 // bytes written to the disk (decompressed)
	// Zeroed is how many of them were zero runs handed to zeroOut, not written.
	Zeroed int64
	// VerifiedFirst is true when the image was checked in memory before the disk was
	// touched.
	VerifiedFirst bool
}

// imageJob is one image to write.
type imageJob struct {
	URL    string
	SHA256 string
	Format agentapi.Format
	Size   int64
	// MemoryBudget is the largest image (as served) verified in memory before writing;
	// 0 always streams.
	MemoryBudget int64
	Client       *http.Client
	Log          *slog.Logger
	// Progress is called with phase and bytes done/total (best effort, rate-limited by
	// the caller).
	Progress func(phase agentapi.Phase, done, total int64)
	// BeforeWrite runs just before the first byte goes to the disk (the wipe).
	BeforeWrite func() error
	// resume tuning, for tests
	idle, backoff time.Duration
}

// writeImage downloads job's image and writes it to d. The checksum is always verified
// before it returns success; on a mismatch after streaming it wipes what it wrote.
func writeImage(ctx context.Context, d *disk, job imageJob) (imageWrite, error) {
	src := newImageSource(ctx, job.Client, job.URL, job.Log)
	if job.idle > 0 {
		src.idle = job.idle
	}
	if job.backoff > 0 {
		src.backoff = job.backoff
	}
	defer src.Close()
	total := job.Size
	progress := func(phase agentapi.Phase, done int64) {
		if job.Progress != nil {
			t := total
			if t <= 0 {
				t = src.total
			}
			job.Progress(phase, done, t)
		}
	}
	res := imageWrite{}
	want := strings.ToLower(job.SHA256)
	var in io.Reader = src
	if job.Size > 0 && job.Size <= job.MemoryBudget {
		// Small enough: download and verify first, so a bad image never touches the disk.
		res.VerifiedFirst = true
		src.onRead = func(n int64) { progress(agentapi.PhaseDownload, n) }
		buf := bytes.NewBuffer(make([]byte, 0, job.Size))
		if _, err := io.Copy(buf, io.LimitReader(src, job.MemoryBudget+1)); err != nil {
			return res, fmt.Errorf("download image: %w", err)
		}
		res.Served, res.SHA256 = src.off, src.Sum()
		if int64(buf.Len()) > job.MemoryBudget {
			return res, fmt.Errorf("image %s is larger than the %d bytes the plan said", job.URL, job.Size)
		}
		if res.SHA256 != want {
			return res, fmt.Errorf("%w: %s has sha256 %s (%d bytes), the plan wants %s; nothing was written to disk %s",
				ErrChecksum, job.URL, res.SHA256, res.Served, want, d.name)
		}
		in = &countingReader{r: bytes.NewReader(buf.Bytes()), fn: func(n int64) { progress(agentapi.PhaseWrite, n) }}
	} else {
		src.onRead = func(n int64) { progress(agentapi.PhaseWrite, n) }
	}
	if job.BeforeWrite != nil {
		if err := job.BeforeWrite(); err != nil {
			return res, err
		}
	}
	dec, format, closeDec, err := decompress(in, job.Format)
	res.Format = format
	if err != nil {
		return res, err
	}
	defer closeDec()
	w := &diskWriter{d: d, limit: d.size}
	bw := bufio.NewWriterSize(w, 4<<20)
	_, err = io.Copy(bw, dec)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = w.flushZeros()
	}
	if err == nil {
		// The checksum covers every byte served, also any past the end of the
		// compressed stream.
		_, err = io.Copy(io.Discard, in)
	}
	res.Written, res.Zeroed = w.off, w.zeroed
	if !res.VerifiedFirst {
		res.Served, res.SHA256 = src.off, src.Sum()
	}
	if err != nil {
		werr := wipeWritten(d, w)
		return res, errors.Join(fmt.Errorf("write image to %s: %w", d.name, err), werr)
	}
	if res.SHA256 != want {
		werr := wipeWritten(d, w)
		msg := fmt.Sprintf("%s has sha256 %s (%d bytes), the plan wants %s; the %d bytes written to %s were wiped (partition table and signatures)",
			job.URL, res.SHA256, res.Served, want, res.Written, d.name)
		if werr != nil {
			msg = fmt.Sprintf("%s has sha256 %s, the plan wants %s; wiping what was written to %s failed too: %v", job.URL, res.SHA256, want, d.name, werr)
		}
		return res, fmt.Errorf("%w: %s", ErrChecksum, msg)
	}
	progress(agentapi.PhaseVerify, res.Served)
	if err := d.sync(); err != nil {
		return res, err
	}
	if err := w.commitHead(); err != nil {
		return res, err
	}
	if err := d.sync(); err != nil {
		return res, err
	}
	return res, nil
}

// wipeWritten removes what a failed write left recognisable: the first MiB of the disk
// was never written (held back) and is zero from the wipe before; the partitions the
// held-back table describes lose their first and last MiB, and the image's end (its
// backup GPT) its last MiB.
func wipeWritten(d *disk, w *diskWriter) error {
	limit := max(w.off, headHold)
	var ranges [][2]int64
	add := func(off, n int64) {
		if off < limit && n > 0 {
			ranges = append(ranges, [2]int64{off, min(n, limit-off)})
		}
	}
	if t, err := readPartitionTable(bytes.NewReader(w.head), w.off, d.sector); err == nil {
		for _, p := range t.Partitions {
			add(p.Start, min(p.Size, wipeEdge))
			tail := max(p.Start, p.End()-wipeEdge)
			add(tail, p.End()-tail)
		}
	}
	add(0, headHold)
	add(max(0, w.off-wipeEdge), wipeEdge)
	buf := make([]byte, wipeEdge)
	var errs []error
	for _, r := range ranges {
		errs = append(errs, d.zeroRange(r[0], r[1], buf))
	}
	errs = append(errs, d.sync())
	return errors.Join(errs...)
}

type countingReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 && c.fn != nil {
		c.fn(c.n)
	}
	return n, err
}
