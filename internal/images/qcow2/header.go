package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Magic starts every qcow2 file.
const Magic = "QFI\xfb"

// Errors Open returns, for errors.Is. The wrapped message names the offending fact.
var (
	// ErrNotQcow2: the data does not start with the qcow2 magic.
	ErrNotQcow2 = errors.New("not a qcow2 image")
	// ErrInvalid: the header or a table is malformed or points outside the file.
	ErrInvalid = errors.New("invalid qcow2 image")
	// ErrBackingFile: the image is an overlay whose unallocated clusters read from
	// another file, so it cannot be converted alone.
	ErrBackingFile = errors.New("qcow2 image has a backing file")
	// ErrEncrypted: the image is encrypted (AES or LUKS).
	ErrEncrypted = errors.New("qcow2 image is encrypted")
	// ErrExternalDataFile: the guest data lives in a separate raw file.
	ErrExternalDataFile = errors.New("qcow2 image keeps its data in an external data file")
	// ErrMarkedCorrupt: qemu found an inconsistency and set the corrupt bit.
	ErrMarkedCorrupt = errors.New("qcow2 image is marked corrupt")
	// ErrUnsupported: a version, incompatible feature or compression type this
	// package does not read.
	ErrUnsupported = errors.New("unsupported qcow2 image")
)

// Header field offsets and sizes (qemu docs/interop/qcow2.txt).
const (
	v2HeaderLen = 72
	v3HeaderLen = 104

	minClusterBits = 9
	maxClusterBits = 21

	// maxL1Entries is qemu's QCOW_MAX_L1_SIZE (32 MiB) in entries.
	maxL1Entries = 32 << 20 / 8
	// maxBackingNameLen is qemu's limit on the backing file name.
	maxBackingNameLen = 1023
)

// Incompatible feature bits.
const (
	incompatDirty       = 1 << 0
	incompatCorrupt     = 1 << 1
	incompatDataFile    = 1 << 2
	incompatCompression = 1 << 3
	incompatExtendedL2  = 1 << 4
	incompatKnown       = incompatDirty | incompatCorrupt | incompatDataFile | incompatCompression | incompatExtendedL2
)

// Header extension types.
const (
	extEnd          = 0x00000000
	extFeatureNames = 0x6803f857
	extDataFile     = 0x44415441
)

// Compression types.
const (
	compressionZlib = 0
	compressionZstd = 1
)

// Image is an opened qcow2 image. Its methods only read the underlying io.ReaderAt, so
// several walks may run at once.
type Image struct {
	r        io.ReaderAt
	fileSize int64

	version     int
	clusterBits uint
	size        int64 // virtual size in bytes
	l1Offset    int64
	l1Entries   int64 // entries covering the virtual size, <= the header's l1_size
	compression int
	extendedL2  bool
}

// Detect reports whether header, the first bytes of a file, starts with the qcow2 magic.
func Detect(header []byte) bool {
	return bytes.HasPrefix(header, []byte(Magic))
}

// Size is the virtual size: how many bytes the guest sees and Stream writes.
func (img *Image) Size() int64 { return img.size }

// Version is the qcow2 version, 2 (compat=0.10) or 3 (compat=1.1).
func (img *Image) Version() int { return img.version }

// ClusterSize is the image's cluster size in bytes.
func (img *Image) ClusterSize() int { return 1 << img.clusterBits }

// Compression names the codec of compressed clusters: "zlib" or "zstd".
func (img *Image) Compression() string {
	if img.compression == compressionZstd {
		return "zstd"
	}
	return "zlib"
}

// Open reads and validates the header of the qcow2 image r, size bytes long.
func Open(r io.ReaderAt, size int64) (*Image, error) {
	if size < 0 {
		return nil, fmt.Errorf("%w: negative file size %d", ErrInvalid, size)
	}
	var hdr [v3HeaderLen + 8]byte
	n, err := r.ReadAt(hdr[:min(int64(len(hdr)), size)], 0)
	if n < 4 || !Detect(hdr[:n]) {
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading qcow2 header: %w", err)
		}
		return nil, fmt.Errorf("%w: no %q magic at the start of the file", ErrNotQcow2, Magic)
	}
	if n < v2HeaderLen {
		return nil, fmt.Errorf("%w: the file is %d bytes, shorter than a qcow2 header", ErrInvalid, size)
	}
	be := binary.BigEndian
	img := &Image{r: r, fileSize: size}
	version := be.Uint32(hdr[4:])
	if version != 2 && version != 3 {
		return nil, fmt.Errorf("%w: version %d (only 2 and 3 exist)", ErrUnsupported, version)
	}
	img.version = int(version)
	backingOffset := be.Uint64(hdr[8:])
	backingSize := be.Uint32(hdr[16:])
	clusterBits := be.Uint32(hdr[20:])
	virtualSize := be.Uint64(hdr[24:])
	cryptMethod := be.Uint32(hdr[32:])
	l1Size := be.Uint32(hdr[36:])
	l1Offset := be.Uint64(hdr[40:])

	if clusterBits < minClusterBits || clusterBits > maxClusterBits {
		return nil, fmt.Errorf("%w: cluster_bits %d outside %d..%d", ErrInvalid, clusterBits, minClusterBits, maxClusterBits)
	}
	img.clusterBits = uint(clusterBits)
	clusterSize := int64(1) << clusterBits

	headerLen := int64(v2HeaderLen)
	var incompat uint64
	if version == 3 {
		if n < v3HeaderLen {
			return nil, fmt.Errorf("%w: the file is %d bytes, shorter than a version 3 header", ErrInvalid, size)
		}
		incompat = be.Uint64(hdr[72:])
		headerLen = int64(be.Uint32(hdr[100:]))
		if headerLen < v3HeaderLen || headerLen%8 != 0 || headerLen > clusterSize || headerLen > size {
			return nil, fmt.Errorf("%w: header_length %d (want a multiple of 8 from %d to the cluster size %d, within the file)",
				ErrInvalid, headerLen, v3HeaderLen, clusterSize)
		}
		if headerLen > v3HeaderLen {
			img.compression = int(hdr[104])
		}
	}

	// The header extensions name the external data file and unknown features. A
	// malformed one is reported only if nothing below refuses the image first.
	exts, extErr := readExtensions(r, headerLen, min(clusterSize, size), backingOffset)

	// Refusals, most fundamental first.
	if incompat&incompatCorrupt != 0 {
		return nil, fmt.Errorf("%w: qemu set its corrupt bit after finding inconsistent metadata; "+
			"repair it with qemu-img check -r all, or convert it again from its source", ErrMarkedCorrupt)
	}
	if unknown := incompat &^ incompatKnown; unknown != 0 {
		return nil, fmt.Errorf("%w: incompatible feature %s", ErrUnsupported, exts.describeIncompat(unknown))
	}
	if incompat&incompatDataFile != 0 {
		name := "named in the image"
		if exts.dataFile != "" {
			name = fmt.Sprintf("%q", exts.dataFile)
		}
		return nil, fmt.Errorf("%w (%s); convert it to a self-contained image with qemu-img convert -O qcow2", ErrExternalDataFile, name)
	}
	switch cryptMethod {
	case 0:
	case 1:
		return nil, fmt.Errorf("%w with qcow2 AES encryption; convert it to an unencrypted image first", ErrEncrypted)
	case 2:
		return nil, fmt.Errorf("%w with LUKS; convert it to an unencrypted image first", ErrEncrypted)
	default:
		return nil, fmt.Errorf("%w (crypt_method %d); convert it to an unencrypted image first", ErrEncrypted, cryptMethod)
	}
	if backingOffset != 0 {
		return nil, fmt.Errorf("%w %s: flatten it with qemu-img convert -O qcow2 first",
			ErrBackingFile, backingName(r, size, backingOffset, backingSize))
	}
	switch img.compression {
	case compressionZlib:
		if incompat&incompatCompression != 0 {
			return nil, fmt.Errorf("%w: compression type feature bit set for zlib", ErrInvalid)
		}
	case compressionZstd:
		if incompat&incompatCompression == 0 {
			return nil, fmt.Errorf("%w: compression type zstd without its feature bit", ErrInvalid)
		}
	default:
		return nil, fmt.Errorf("%w: compression type %d (only zlib and zstd exist)", ErrUnsupported, img.compression)
	}
	if extErr != nil {
		return nil, extErr
	}
	if incompat&incompatExtendedL2 != 0 {
		if clusterBits < 14 {
			return nil, fmt.Errorf("%w: extended L2 entries with %d-byte clusters (qemu needs at least 16 KiB)", ErrInvalid, clusterSize)
		}
		img.extendedL2 = true
	}

	// The active L1 table must cover the virtual size and lie within the file.
	if virtualSize > 1<<62 {
		return nil, fmt.Errorf("%w: virtual size %d bytes is beyond what qcow2 can address", ErrInvalid, virtualSize)
	}
	img.size = int64(virtualSize)
	perL1 := clusterSize * (clusterSize / img.l2EntrySize())
	img.l1Entries = (img.size + perL1 - 1) / perL1
	if int64(l1Size) < img.l1Entries {
		return nil, fmt.Errorf("%w: L1 table of %d entries is too small for a virtual size of %d bytes (needs %d)",
			ErrInvalid, l1Size, img.size, img.l1Entries)
	}
	if l1Size > maxL1Entries {
		return nil, fmt.Errorf("%w: L1 table of %d entries is larger than qemu allows (%d)", ErrInvalid, l1Size, maxL1Entries)
	}
	if l1Size > 0 {
		if l1Offset%uint64(clusterSize) != 0 || l1Offset == 0 {
			return nil, fmt.Errorf("%w: L1 table offset %#x is not a non-zero multiple of the cluster size", ErrInvalid, l1Offset)
		}
		if l1Offset >= uint64(size) || uint64(size)-l1Offset < uint64(l1Size)*8 {
			return nil, fmt.Errorf("%w: L1 table (%d entries at offset %#x) extends past the end of the file (%d bytes)",
				ErrInvalid, l1Size, l1Offset, size)
		}
	}
	img.l1Offset = int64(l1Offset)
	return img, nil
}

// l2EntrySize is 8 bytes, or 16 with extended L2 entries (a subcluster bitmap each).
func (img *Image) l2EntrySize() int64 {
	if img.extendedL2 {
		return 16
	}
	return 8
}

// extensions holds what Open uses from the header extensions.
type extensions struct {
	dataFile string
	// incompatNames maps an incompatible feature bit to the name the image gives it.
	incompatNames map[int]string
}

// readExtensions parses the header extensions between the header and end, which is
// the end of the first cluster or the backing file name, whichever comes first.
func readExtensions(r io.ReaderAt, start, end int64, backingOffset uint64) (extensions, error) {
	var exts extensions
	if backingOffset >= uint64(start) && backingOffset < uint64(end) {
		end = int64(backingOffset)
	}
	if end <= start {
		return exts, nil
	}
	buf := make([]byte, end-start)
	if n, err := r.ReadAt(buf, start); n < len(buf) {
		return exts, fmt.Errorf("reading qcow2 header extensions: %w", err)
	}
	be := binary.BigEndian
	for len(buf) >= 8 {
		typ, length := be.Uint32(buf), be.Uint32(buf[4:])
		buf = buf[8:]
		if typ == extEnd {
			break
		}
		if uint64(length) > uint64(len(buf)) {
			return exts, fmt.Errorf("%w: header extension %#08x of %d bytes overruns the header cluster", ErrInvalid, typ, length)
		}
		data := buf[:length]
		switch typ {
		case extDataFile:
			exts.dataFile = string(data)
		case extFeatureNames:
			// 48-byte entries: type, bit number, 46-byte NUL-padded name.
			for ; len(data) >= 48; data = data[48:] {
				if data[0] == 0 { // incompatible
					if exts.incompatNames == nil {
						exts.incompatNames = map[int]string{}
					}
					exts.incompatNames[int(data[1])] = string(bytes.TrimRight(data[2:48], "\x00"))
				}
			}
		}
		padded := (uint64(length) + 7) &^ 7
		if padded > uint64(len(buf)) {
			break
		}
		buf = buf[padded:]
	}
	return exts, nil
}

// describeIncompat names the set bits of bits, with the image's own feature names.
func (e extensions) describeIncompat(bits uint64) string {
	var parts []string
	for i := range 64 {
		if bits&(1<<i) == 0 {
			continue
		}
		if name := e.incompatNames[i]; name != "" {
			parts = append(parts, fmt.Sprintf("bit %d (%q)", i, name))
		} else {
			parts = append(parts, fmt.Sprintf("bit %d", i))
		}
	}
	return strings.Join(parts, ", ")
}

// backingName reads the backing file name for an error message, as well as it can.
func backingName(r io.ReaderAt, fileSize int64, offset uint64, length uint32) string {
	if length == 0 || length > maxBackingNameLen || offset >= uint64(fileSize) || uint64(fileSize)-offset < uint64(length) {
		return "(name unreadable)"
	}
	buf := make([]byte, length)
	if n, _ := r.ReadAt(buf, int64(offset)); n < len(buf) {
		return "(name unreadable)"
	}
	return fmt.Sprintf("%q", buf)
}
