package qcow2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Extent is a run of the guest disk.
type Extent struct {
	Offset int64 // guest offset in bytes
	Length int64
	// Zero is true where the image stores no data and the guest reads zeros:
	// unallocated clusters, v3 zero clusters and unallocated or zero subclusters.
	// Allocated clusters that happen to hold zeros are data.
	Zero bool
}

// L1/L2 entry bits.
const (
	offsetMask     = 0x00fffffffffffe00 // host offset of an L2 table or a standard cluster
	l2Compressed   = 1 << 62
	l2ZeroFlag     = 1 << 0
	subclusters    = 32
	l1ChunkEntries = 4096 // L1 entries read at a time
	minReadBuffer  = 1 << 20
	zstdMaxWindow  = 8 << 20
)

// Walk calls fn for consecutive extents covering [0, Size) in order. A zero extent has
// nil data and runs as long as the zeros do. A data extent comes with its bytes, valid
// only until fn returns; a long data run arrives in several calls of at most
// max(1 MiB, cluster size) bytes each. An error from fn stops the walk and is returned.
func (img *Image) Walk(ctx context.Context, fn func(e Extent, data []byte) error) error {
	return img.walk(ctx, true, fn)
}

// Extents calls fn for the image's map: consecutive data and zero extents covering
// [0, Size), each as long as possible. It reads only the L1 and L2 tables, so a
// compressed cluster that does not decompress is found by Walk and Stream, not here.
func (img *Image) Extents(ctx context.Context, fn func(Extent) error) error {
	return img.walk(ctx, false, func(e Extent, _ []byte) error { return fn(e) })
}

// Stream writes the guest-visible bytes of the image, Size of them, to w in order,
// zeros included, and returns how many it wrote. After each write it calls progress,
// if not nil, with the bytes written so far; keep it cheap, since it may run once a
// cluster.
func (img *Image) Stream(ctx context.Context, w io.Writer, progress func(done int64)) (int64, error) {
	var done int64
	var zeros []byte
	write := func(p []byte) error {
		n, err := w.Write(p)
		done += int64(n)
		if err != nil {
			return err
		}
		if progress != nil {
			progress(done)
		}
		return nil
	}
	err := img.Walk(ctx, func(e Extent, data []byte) error {
		if !e.Zero {
			return write(data)
		}
		if zeros == nil {
			zeros = make([]byte, min(minReadBuffer, img.size))
		}
		for left := e.Length; left > 0; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(left, int64(len(zeros)))
			if err := write(zeros[:n]); err != nil {
				return err
			}
			left -= n
		}
		return nil
	})
	return done, err
}

// walker holds the state and the buffers of one walk.
type walker struct {
	img      *Image
	ctx      context.Context
	readData bool
	fn       func(Extent, []byte) error

	// pend is the extent not yet handed to fn; host is where its data starts when
	// reading data (runs are merged only where the host offsets are contiguous too).
	pend    Extent
	pending bool
	host    int64

	l1      []byte // entries l1First... of the L1 table
	l1First int64
	l2      []byte
	buf     []byte // data read buffer
	comp    []byte // compressed input of one cluster
	cluster []byte // one decompressed cluster
	src     bytes.Reader
	flate   io.ReadCloser
	zstd    *zstd.Decoder
}

func (img *Image) walk(ctx context.Context, readData bool, fn func(Extent, []byte) error) error {
	w := &walker{img: img, ctx: ctx, readData: readData, fn: fn}
	defer w.close()
	be := binary.BigEndian
	cs := int64(img.ClusterSize())
	esz := img.l2EntrySize()
	perL1 := cs * (cs / esz)
	for i := range img.l1Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := i * perL1
		span := min(perL1, img.size-start)
		l2off, err := w.l2Offset(i)
		if err != nil {
			return err
		}
		if l2off == 0 {
			if err := w.zero(start, span); err != nil {
				return err
			}
			continue
		}
		if w.l2 == nil {
			w.l2 = make([]byte, cs)
		}
		if err := w.readFull(w.l2, l2off, "L2 table"); err != nil {
			return err
		}
		for j := range (span + cs - 1) / cs {
			guest := start + j*cs
			entry := be.Uint64(w.l2[j*esz:])
			var bitmap uint64
			if img.extendedL2 {
				bitmap = be.Uint64(w.l2[j*esz+8:])
			}
			if err := w.visitCluster(guest, min(cs, img.size-guest), entry, bitmap); err != nil {
				return err
			}
		}
	}
	return w.flush()
}

// l2Offset returns the host offset of the L2 table of L1 entry i, 0 if unallocated.
func (w *walker) l2Offset(i int64) (int64, error) {
	img := w.img
	if i < w.l1First || i >= w.l1First+int64(len(w.l1)/8) {
		n := min(l1ChunkEntries, img.l1Entries-i)
		if w.l1 == nil {
			w.l1 = make([]byte, 8*min(l1ChunkEntries, img.l1Entries))
		}
		w.l1 = w.l1[:8*n]
		w.l1First = i
		if err := w.readFull(w.l1, img.l1Offset+8*i, "L1 table"); err != nil {
			return 0, err
		}
	}
	off := int64(binary.BigEndian.Uint64(w.l1[8*(i-w.l1First):]) & offsetMask)
	if off == 0 {
		return 0, nil
	}
	cs := int64(img.ClusterSize())
	if off%cs != 0 {
		return 0, fmt.Errorf("%w: L1 entry %d points to an unaligned L2 table at %#x", ErrInvalid, i, off)
	}
	if off > img.fileSize-cs {
		return 0, fmt.Errorf("%w: L1 entry %d points to an L2 table at %#x, past the end of the file (%d bytes)",
			ErrInvalid, i, off, img.fileSize)
	}
	return off, nil
}

// visitCluster hands the cluster at guest offset guest, of which n bytes are within
// the virtual size, to the extent merger.
func (w *walker) visitCluster(guest, n int64, entry, bitmap uint64) error {
	img := w.img
	if entry&l2Compressed != 0 {
		if bitmap != 0 {
			return fmt.Errorf("%w: compressed cluster at guest offset %d has a subcluster bitmap", ErrInvalid, guest)
		}
		return w.compressed(guest, n, entry)
	}
	host := int64(entry & offsetMask)
	if host%int64(img.ClusterSize()) != 0 {
		return fmt.Errorf("%w: cluster for guest offset %d at unaligned host offset %#x", ErrInvalid, guest, host)
	}
	if !img.extendedL2 {
		// The zero flag exists from version 3 on; qemu honours it in any version.
		if entry&l2ZeroFlag != 0 || host == 0 {
			return w.zero(guest, n)
		}
		return w.data(guest, n, host)
	}
	alloc, zeros := uint32(bitmap), uint32(bitmap>>32)
	if alloc&zeros != 0 {
		return fmt.Errorf("%w: subclusters %#x of the cluster at guest offset %d are marked both allocated and zero",
			ErrInvalid, alloc&zeros, guest)
	}
	if alloc == 0 {
		return w.zero(guest, n)
	}
	if host == 0 {
		return fmt.Errorf("%w: cluster at guest offset %d has allocated subclusters but no host offset", ErrInvalid, guest)
	}
	sc := int64(img.ClusterSize() / subclusters)
	for s := int64(0); s < subclusters && s*sc < n; s++ {
		m := min(sc, n-s*sc)
		var err error
		if alloc&(1<<s) != 0 {
			err = w.data(guest+s*sc, m, host+s*sc)
		} else {
			err = w.zero(guest+s*sc, m)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// zero adds n zero bytes at guest offset guest.
func (w *walker) zero(guest, n int64) error {
	if w.pending && w.pend.Zero && w.pend.Offset+w.pend.Length == guest {
		w.pend.Length += n
		return nil
	}
	if err := w.flush(); err != nil {
		return err
	}
	w.pend, w.pending = Extent{Offset: guest, Length: n, Zero: true}, true
	return nil
}

// data adds n bytes stored at host offset host for guest offset guest.
func (w *walker) data(guest, n, host int64) error {
	img := w.img
	if host > img.fileSize-n {
		return fmt.Errorf("%w: data for guest offset %d at host offset %#x extends past the end of the file (%d bytes); is the file truncated?",
			ErrInvalid, guest, host, img.fileSize)
	}
	if w.pending && !w.pend.Zero && w.pend.Offset+w.pend.Length == guest &&
		(!w.readData || w.host+w.pend.Length == host && w.pend.Length+n <= int64(len(w.buf))) {
		w.pend.Length += n
		return nil
	}
	if err := w.flush(); err != nil {
		return err
	}
	if w.readData && w.buf == nil {
		// No run is longer than the disk: small images get small buffers.
		w.buf = make([]byte, min(max(minReadBuffer, int64(img.ClusterSize())), img.size))
	}
	w.pend, w.pending, w.host = Extent{Offset: guest, Length: n}, true, host
	return nil
}

// flush hands the pending extent to fn, reading its data first.
func (w *walker) flush() error {
	if !w.pending {
		return nil
	}
	w.pending = false
	if w.pend.Zero || !w.readData {
		return w.fn(w.pend, nil)
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	data := w.buf[:w.pend.Length]
	if err := w.readFull(data, w.host, "data"); err != nil {
		return err
	}
	return w.fn(w.pend, data)
}

// compressed adds the compressed cluster described by entry at guest offset guest.
func (w *walker) compressed(guest, n int64, entry uint64) error {
	img := w.img
	if !w.readData {
		// The map needs no data; merge with a preceding data extent.
		if w.pending && !w.pend.Zero && w.pend.Offset+w.pend.Length == guest {
			w.pend.Length += n
			return nil
		}
		if err := w.flush(); err != nil {
			return err
		}
		w.pend, w.pending = Extent{Offset: guest, Length: n}, true
		return nil
	}
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	// Bits 0..x-1 hold the byte offset, bits x..61 the count of 512-byte sectors
	// after the first one the compressed data spans (qcow2.txt, "Compressed Clusters
	// Descriptor"); so the input is at most twice the cluster size.
	x := 62 - (img.clusterBits - 8)
	off := int64(entry & (1<<x - 1))
	sectors := int64(entry>>x&(1<<(img.clusterBits-8)-1)) + 1
	size := sectors*512 - off%512
	if off == 0 || off >= img.fileSize {
		return fmt.Errorf("%w: compressed cluster for guest offset %d at host offset %#x, outside the file (%d bytes)",
			ErrInvalid, guest, off, img.fileSize)
	}
	// The last sector may be cut short by the end of the file.
	size = min(size, img.fileSize-off)
	cs := int64(img.ClusterSize())
	if w.comp == nil {
		w.comp = make([]byte, min(2*cs, img.fileSize))
		w.cluster = make([]byte, min(cs, img.size))
	}
	in := w.comp[:size]
	if err := w.readFull(in, off, "compressed cluster"); err != nil {
		return err
	}
	w.src.Reset(in)
	var dec io.Reader
	switch img.compression {
	case compressionZstd:
		if w.zstd == nil {
			d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
				zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(zstdMaxWindow))
			if err != nil {
				return fmt.Errorf("starting zstd decoder: %w", err)
			}
			w.zstd = d
		}
		if err := w.zstd.Reset(&w.src); err != nil {
			return fmt.Errorf("starting zstd decoder: %w", err)
		}
		dec = w.zstd
	default:
		// "zlib" in qcow2 is raw deflate, without the zlib header. klauspost's
		// inflate takes about a fifth less CPU than compress/flate's here.
		if w.flate == nil {
			w.flate = flate.NewReader(&w.src)
		} else if err := w.flate.(flate.Resetter).Reset(&w.src, nil); err != nil {
			return fmt.Errorf("starting deflate decoder: %w", err)
		}
		dec = w.flate
	}
	// Exactly one cluster is decompressed, so a hostile stream cannot make more. Like
	// qemu, insist on a whole cluster, even for the last one, of which only n bytes
	// are within the disk.
	_, err := io.ReadFull(dec, w.cluster[:n])
	if err == nil && n < cs {
		_, err = io.CopyN(io.Discard, dec, cs-n)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%w: %s compressed cluster for guest offset %d at host offset %#x does not decompress to %d bytes: %v",
			ErrInvalid, img.Compression(), guest, off, cs, err)
	}
	return w.fn(Extent{Offset: guest, Length: n}, w.cluster[:n])
}

// readFull reads len(p) bytes at off, which the caller has checked are in the file.
func (w *walker) readFull(p []byte, off int64, what string) error {
	n, err := w.img.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading qcow2 %s at %#x: %w", what, off, err)
}

func (w *walker) close() {
	if w.zstd != nil {
		w.zstd.Close()
	}
	if w.flate != nil {
		w.flate.Close()
	}
}
