package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/rackboot/rackboot/internal/inventory"
)

// Route is the metrics label of GET /images/NAME.
const Route = "image"

// EventFetch is the timeline event of an image transfer.
const EventFetch = "image.fetch"

// Register adds GET and HEAD /images/{name} to mux.
func (c *Catalog) Register(mux *http.ServeMux) {
	h := c.http.Wrap(Route, http.HandlerFunc(c.serve))
	mux.Handle("GET /images/{name}", h)
	mux.Handle("HEAD /images/{name}", h)
}

// URLPath is the path an image is served at.
func URLPath(name string) string { return "/images/" + name }

func (c *Catalog) serve(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	log := c.log.With("route", Route, "image", name, "remoteAddr", r.RemoteAddr)
	if err := inventory.ValidateImageName(name); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	hostID := ""
	if c.cfg.Authorize != nil {
		id, err := c.cfg.Authorize(r, name)
		if err != nil {
			log.Warn("image request refused", "err", err)
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		hostID = id
	}
	im, err := c.Lookup(r.Context(), name)
	switch {
	case errors.Is(err, inventory.ErrNotFound):
		http.Error(w, "no image "+name, http.StatusNotFound)
		return
	case err != nil:
		log.Error("image lookup failed", "err", err)
		http.Error(w, "rackboot cannot read its image catalog; see its log", http.StatusInternalServerError)
		return
	case im.Status == inventory.ImagePending:
		w.Header().Set("Retry-After", "30")
		http.Error(w, "image "+name+" is still being downloaded and verified", http.StatusServiceUnavailable)
		return
	case im.Status != inventory.ImageReady:
		// A failed image is never offered: its bytes may be anything.
		http.Error(w, fmt.Sprintf("image %s is not usable: %s", name, im.Error), http.StatusNotFound)
		return
	}
	f, err := c.root.Open(name)
	if err != nil {
		log.Error("opening the cached image failed", "err", err)
		http.Error(w, "rackboot cannot open this image; see its log", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() != im.Size {
		http.Error(w, "the cached image changed on disk; see rackboot image list", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	// A strong validator: the content is fixed by its checksum, so If-Range resumes work.
	w.Header().Set("ETag", `"sha256:`+im.FileSHA256()+`"`)
	w.Header().Set("X-Checksum-Sha256", im.FileSHA256())
	rc := http.NewResponseController(w)
	sw := &sendWriter{ResponseWriter: w, rc: rc, stall: c.cfg.StallTimeout}
	_ = rc.SetWriteDeadline(time.Now().Add(c.cfg.StallTimeout))
	start := time.Now()
	http.ServeContent(sw, r, name, im.VerifiedAt, f)
	_ = rc.Flush()
	_ = rc.SetWriteDeadline(time.Time{})
	c.bytesServed.Add(float64(sw.bytes))
	log.Info("served image", "method", r.Method, "code", sw.Status(), "bytes", sw.bytes, "duration", time.Since(start), "range", r.Header.Get("Range"))
	if r.Method != http.MethodGet || hostID == "" {
		return
	}
	fields := map[string]string{
		"image": name, "ip": r.RemoteAddr, "bytes": strconv.FormatInt(sw.bytes, 10),
		"size": strconv.FormatInt(im.Size, 10), "code": strconv.Itoa(sw.Status()),
		"seconds": strconv.FormatFloat(time.Since(start).Seconds(), 'f', 1, 64),
	}
	if rg := r.Header.Get("Range"); rg != "" {
		fields["range"] = rg
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.cfg.Store.AppendEvent(ctx, hostID, inventory.Event{Type: EventFetch,
		Message: fmt.Sprintf("sent %d bytes of image %s", sw.bytes, name), Fields: fields}); err != nil {
		log.Warn("cannot record event", "hostID", hostID, "err", err)
	}
}

// sendWriter counts bytes and status, pushes the write deadline ahead as the transfer
// moves, and keeps sendfile(2): ReadFrom hands the file to the connection in chunks,
// re-arming the deadline between them.
type sendWriter struct {
	http.ResponseWriter
	rc     *http.ResponseController
	stall  time.Duration
	status int
	bytes  int64
}

func (s *sendWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *sendWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.stall))
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

// ReadFrom is what io.CopyN in http.ServeContent calls with an *io.LimitedReader
// around the *os.File; passing the connection one LimitedReader around the file per
// chunk keeps net/http's sendfile path (a nested LimitedReader would lose it).
func (s *sendWriter) ReadFrom(src io.Reader) (int64, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	rf, ok := readerFrom(s.ResponseWriter)
	lr, isLR := src.(*io.LimitedReader)
	var f *os.File
	if isLR {
		f, _ = lr.R.(*os.File)
	}
	if !ok || f == nil {
		return io.Copy(writerOnly{s}, src)
	}
	var total int64
	for lr.N > 0 {
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.stall))
		part := &io.LimitedReader{R: f, N: min(lr.N, chunk)}
		n, err := rf.ReadFrom(part)
		lr.N -= n
		total += n
		s.bytes += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			break
		}
	}
	return total, nil
}

func (s *sendWriter) Status() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

func (s *sendWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// readerFrom finds the net/http response under the wrappers (metrics, this one): only
// it reaches the connection's sendfile. Headers and status have gone through the
// wrappers already (WriteHeader), so skipping them for the body loses nothing.
func readerFrom(w http.ResponseWriter) (io.ReaderFrom, bool) {
	for {
		if _, wrapped := w.(interface{ Unwrap() http.ResponseWriter }); !wrapped {
			rf, ok := w.(io.ReaderFrom)
			return rf, ok
		}
		w = w.(interface{ Unwrap() http.ResponseWriter }).Unwrap()
	}
}

// writerOnly hides ReadFrom so io.Copy does not recurse into it.
type writerOnly struct{ io.Writer }
