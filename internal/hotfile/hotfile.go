// Package hotfile keeps the small files every booting host fetches over HTTP (iPXE
// binaries, the agent's kernel and initramfs, profile kernels and initrds) in memory
// and serves them from there, so that a boot storm costs no open, stat or read per
// request.
//
// A Cache reads a file from its fs.FS at the first request and keeps its bytes with
// what a client validates them by: the modification time and an ETag (the first 16
// bytes of the content's SHA-256, so the same bytes give the same ETag after a restart
// or a re-import, and ETags differ whenever the content does). The file is checked
// again at most once per Config.Revalidate (default one second) with one stat: if it
// changed (size, modification time or inode), or went away, the next request reads it
// again. So a file an operator replaces, or a boot environment `rackboot bootenv
// import` publishes, is served within Revalidate of the change, and a request never
// mixes two versions: each holds the *File it started with.
//
// Files larger than Config.MaxFile, and any beyond Config.MaxTotal bytes held in all,
// are not kept (Get says ErrTooLarge and the caller serves them from disk as before);
// when the total would pass MaxTotal, the files requested least recently are dropped
// // first. Two names of the same file (a hard link, as the boot environment's published
// files are to its cache entry) share one copy (MaxTotal counts it under each name).
// Files opened from an fs.FS that is never modified (embed.FS) are never checked
// again: Config.Immutable.
//
// ServeContent serves a *File with http.ServeContent's handling of Range, If-Range,
// If-None-Match, If-Modified-Since and HEAD. On Linux the content is also put in a
// sealed memfd, and the body goes from there to the socket with sendfile(2), as nginx
// sends files: no copy from the process into the kernel. Each request in flight uses a
// description of the memfd of its own (opened through /proc/self/fd and kept for reuse),
// because sendfile sends from a description's offset. Elsewhere, or when the memfd
// cannot be made, the body is written from memory WriteChunk at a time rather than
// through a 32 KiB copy buffer. On loopback with 64 clients (ipxe's
// BenchmarkBinaryOverTCP) sendfile cost about a fifth less CPU per request than writes.
package hotfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// Defaults for Config.
const (
	DefaultRevalidate = time.Second
	DefaultMaxFile    = 128 << 20
	DefaultMaxTotal   = 512 << 20
)

// ErrTooLarge says a file is not kept in memory; serve it from its fs.FS.
var ErrTooLarge = errors.New("hotfile: file too large to keep in memory")

// ErrNoSeek is Serve's error for a file too large to keep whose FS cannot seek it, so
// that Range cannot be served.
var ErrNoSeek = errors.New("hotfile: file cannot seek; cannot serve Range")

// Config configures a Cache.
type Config struct {
	// FS holds the files. Required.
	FS fs.FS
	// Immutable says FS never changes (embed.FS): a file read once is never checked.
	Immutable bool
	// Revalidate is how often a kept file is compared with FS (one stat); 0 means
	// DefaultRevalidate.
	Revalidate time.Duration
	// MaxFile and MaxTotal bound one file and all files kept; 0 means the defaults.
	MaxFile, MaxTotal int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NoSendfile writes every body from the process's memory instead of handing a
	// memfd to sendfile(2) (Linux); for tests of both ways.
	NoSendfile bool
}

// File is one file's content as kept: never modified once made, so a request may use it
// after the cache has moved on to a newer version.
type File struct {
	Name    string // base name, for Content-Type by extension
	ModTime time.Time
	ETag    string // quoted, strong
	size    int64
	id      fileID
	// The content is in exactly one of the two: a memfd, sent with sendfile(2), or
	// the heap, written from there.
	mem  *memFile
	data []byte
}

// Size is the content's length in bytes.
func (f *File) Size() int64 { return f.size }

// ReaderAt reads the content where it is kept: from memory, or, when it is in a memfd
// (Linux without Config.NoSendfile), with pread(2). TFTP reads its blocks this way; a
// cache made for it sets NoSendfile, so a block costs a copy and no system call.
func (f *File) ReaderAt() io.ReaderAt {
	if f.mem != nil {
		return io.NewSectionReader(f.mem.f, 0, f.size)
	}
	return bytes.NewReader(f.data)
}

// contents is the content, read from the memfd if it is there.
func (f *File) contents() ([]byte, error) {
	if f.mem == nil {
		return f.data, nil
	}
	return io.ReadAll(io.NewSectionReader(f.mem.f, 0, f.size))
}

// descPool bounds the open descriptions of one file kept for reuse: one per request in
// flight is enough, more are opened when needed and closed afterwards.
const descPool = 256

// memFile is a File's content in a memfd, sent with sendfile(2).
type memFile struct {
	f    *os.File // the memfd itself, open while the memFile is reachable
	path string   // /proc/self/fd/N
	pool chan *os.File
}

// get returns a description of the memfd of its own (offset 0 is not promised: the
// caller seeks), or nil when none can be opened.
func (m *memFile) get() *os.File {
	select {
	case d := <-m.pool:
		return d
	default:
	}
	d, err := m.reopen()
	if err != nil {
		return nil
	}
	return d
}

func (m *memFile) put(d *os.File) {
	select {
	case m.pool <- d:
	default:
		d.Close()
	}
}

// fileID tells versions of a file apart without reading it.
type fileID struct {
	size       int64
	mtime      int64
	dev, inode uint64
}

func idOf(fi fs.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.inode = uint64(st.Dev), uint64(st.Ino) //nolint:unconvert // Dev is int32 on some platforms
	}
	return id
}

type entry struct {
	file    *File
	checked time.Time // last compared with FS
	used    time.Time
	// loading is closed when a load in progress ends; nil when none is.
	loading chan struct{}
	err     error
}

// Cache keeps files of one fs.FS in memory. It is safe for concurrent use.
type Cache struct {
	cfg   Config
	mu    sync.Mutex
	files map[string]*entry
	total int64
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Cache, error) {
	if cfg.FS == nil {
		return nil, errors.New("hotfile: Config.FS is nil")
	}
	if cfg.Revalidate <= 0 {
		cfg.Revalidate = DefaultRevalidate
	}
	if cfg.MaxFile <= 0 {
		cfg.MaxFile = DefaultMaxFile
	}
	if cfg.MaxTotal <= 0 {
		cfg.MaxTotal = DefaultMaxTotal
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Cache{cfg: cfg, files: map[string]*entry{}}, nil
}

// Get returns name's content, reading it when it is not kept or has changed. Its
// errors are FS's (fs.ErrNotExist...), ErrTooLarge, or that name is a directory
// (fs.ErrNotExist: no listings). name must be valid for fs.FS (fs.ValidPath).
func (c *Cache) Get(name string) (*File, error) {
	now := c.cfg.Now()
	c.mu.Lock()
	e := c.files[name]
	switch {
	case e == nil:
		// The first request reads the file; those arriving meanwhile wait for it.
		e = &entry{loading: make(chan struct{})}
		c.files[name] = e
		c.mu.Unlock()
		f, err := c.read(name)
		c.mu.Lock()
		defer c.mu.Unlock()
		e.file, e.err, e.checked, e.used = f, err, now, now
		close(e.loading)
		e.loading = nil
		if c.files[name] == e {
			delete(c.files, name)
			if err == nil && c.makeRoom(f.size) {
				c.files[name] = e
				c.total += f.size
			}
		}
		return f, err
	case e.loading != nil:
		ch := e.loading
		c.mu.Unlock()
		<-ch
		return e.file, e.err
	case c.cfg.Immutable || now.Sub(e.checked) < c.cfg.Revalidate:
		e.used = now
		f := e.file
		c.mu.Unlock()
		return f, nil
	}
	// Due for a check: this request makes it, the others keep serving what is kept.
	e.checked, e.used = now, now
	old := e.file
	c.mu.Unlock()
	if fi, err := fs.Stat(c.cfg.FS, name); err == nil && !fi.IsDir() && idOf(fi) == old.id {
		return old, nil
	}
	f, err := c.read(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files[name] == e && e.file == old {
		delete(c.files, name)
		c.total -= old.size
		if err == nil && c.makeRoom(f.size) {
			e.file = f
			c.files[name] = e
			c.total += f.size
		}
	}
	return f, err
}

// read reads name; a file kept under another name with the same identity (a hard
// link) is shared.
func (c *Cache) read(name string) (*File, error) {
	fi, err := fs.Stat(c.cfg.FS, name)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if fi.Size() > c.cfg.MaxFile {
		return nil, ErrTooLarge
	}
	if id := idOf(fi); id.inode != 0 {
		c.mu.Lock()
		for _, e := range c.files {
			if e.loading == nil && e.file != nil && e.file.id == id {
				f := *e.file
				f.Name = fi.Name()
				c.mu.Unlock()
				return &f, nil
			}
		}
		c.mu.Unlock()
	}
	f, err := c.cfg.FS.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if st.Size() > c.cfg.MaxFile {
		return nil, ErrTooLarge
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("hotfile: read %s: %w", name, err)
	}
	// A file still being written changes its modification time again, and the next
	// check reads it again.
	sum := sha256.Sum256(data)
	hf := &File{Name: st.Name(), ModTime: st.ModTime(), ETag: `"` + hex.EncodeToString(sum[:16]) + `"`, size: st.Size(), id: idOf(st)}
	if !c.cfg.NoSendfile {
		hf.mem = newMemFile(hf.Name, data)
	}
	if hf.mem == nil {
		hf.data = data
	}
	return hf, nil
}

// Serve answers a GET or HEAD for name, with Range: from memory, or, for a file too
// large to keep, from the FS opened for this request. It reports the file's size. On an
// error nothing has been written and the caller answers: Get's errors (a directory is
// fs.ErrNotExist), the FS's, or ErrNoSeek.
func (c *Cache) Serve(w http.ResponseWriter, r *http.Request, name string) (int64, error) {
	hf, err := c.Get(name)
	if err == nil {
		ServeContent(w, r, hf)
		return hf.Size(), nil
	}
	if !errors.Is(err, ErrTooLarge) {
		return 0, err
	}
	f, err := c.cfg.FS.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.IsDir() { // no listings: the names in a served directory are its owner's business
		return 0, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		return 0, ErrNoSeek
	}
	http.ServeContent(w, r, st.Name(), st.ModTime(), rs)
	return st.Size(), nil
}

// makeRoom drops the least recently used files until n more bytes fit in MaxTotal; it
// reports false when n alone does not. c.mu is held.
func (c *Cache) makeRoom(n int64) bool {
	if n > c.cfg.MaxTotal {
		return false
	}
	for c.total+n > c.cfg.MaxTotal {
		var lru string
		var at time.Time
		for name, e := range c.files {
			if e.file != nil && e.loading == nil && (lru == "" || e.used.Before(at)) {
				lru, at = name, e.used
			}
		}
		if lru == "" {
			return false
		}
		c.total -= c.files[lru].file.size
		delete(c.files, lru)
	}
	return true
}

// Size is the number of bytes kept, for tests and metrics.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// ServeContent serves f like http.ServeContent (Range, If-Range, ETag, HEAD), writing
// the body straight from memory. Set Content-Type first if the name's extension does
// not tell it.
//
// On Linux the body goes from a memfd with sendfile(2), as nginx sends files, when
// every writer between w and the connection passes io.ReaderFrom on (http.response
// does); otherwise from the heap.
func ServeContent(w http.ResponseWriter, r *http.Request, f *File) {
	h := w.Header()
	h["Etag"] = []string{f.ETag}
	if f.mem != nil {
		d := f.mem.get()
		if d == nil {
			// Out of descriptors, say: read the memfd at offsets instead.
			http.ServeContent(w, r, f.Name, f.ModTime, io.NewSectionReader(f.mem.f, 0, f.size))
			return
		}
		defer f.mem.put(d)
		http.ServeContent(sendfileWriter{w}, r, f.Name, f.ModTime, d)
		return
	}
	http.ServeContent(oneWrite{w}, r, f.Name, f.ModTime, &reader{Reader: bytes.NewReader(f.data), data: f.data})
}

// sendfileWriter hands http.ServeContent's io.CopyN of a memfd description to w's
// ReadFrom, WriteChunk at a time (for writers that extend a deadline per call), so that
// net/http reaches sendfile(2).
type sendfileWriter struct{ http.ResponseWriter }

func (s sendfileWriter) ReadFrom(src io.Reader) (int64, error) {
	lr, ok := src.(*io.LimitedReader)
	rf, ok2 := s.ResponseWriter.(io.ReaderFrom)
	if !ok || !ok2 {
		return io.Copy(writerOnly{s.ResponseWriter}, src)
	}
	// The header goes first, on its own: otherwise net/http reads the first 512 bytes
	// from the file to sniff a Content-Type that is already set, one more system call.
	_ = http.NewResponseController(s.ResponseWriter).Flush()
	var total int64
	for lr.N > 0 {
		n, err := rf.ReadFrom(&io.LimitedReader{R: lr.R, N: min(lr.N, WriteChunk)})
		lr.N -= n
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
	return total, nil
}

func (s sendfileWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// reader is a File's data with its position, which oneWrite recognises.
type reader struct {
	*bytes.Reader
	data []byte
}

// WriteChunk is the most ServeContent hands to one Write: an iPXE binary goes in one
// or a few system calls, and a caller that extends a write deadline before each Write
// (a stalled transfer is dropped, a slow one never) still sees a 40 MB initramfs as
// many writes.
const WriteChunk = 256 << 10

// oneWrite lets http.ServeContent's io.CopyN hand over a *reader's bytes straight from
// memory, WriteChunk at a time, instead of copying them through a 32 KiB buffer, one
// write system call each.
type oneWrite struct{ http.ResponseWriter }

func (o oneWrite) ReadFrom(src io.Reader) (int64, error) {
	lr, ok := src.(*io.LimitedReader)
	if !ok {
		return io.Copy(writerOnly{o.ResponseWriter}, src)
	}
	rd, ok := lr.R.(*reader)
	if !ok {
		return io.Copy(writerOnly{o.ResponseWriter}, src)
	}
	var total int64
	for lr.N > 0 && rd.Len() > 0 {
		off := int64(len(rd.data)) - int64(rd.Len())
		end := min(off+lr.N, off+WriteChunk, int64(len(rd.data)))
		n, err := o.ResponseWriter.Write(rd.data[off:end])
		lr.N -= int64(n)
		total += int64(n)
		_, _ = rd.Seek(int64(n), io.SeekCurrent)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (o oneWrite) Unwrap() http.ResponseWriter { return o.ResponseWriter }

type writerOnly struct{ io.Writer }
