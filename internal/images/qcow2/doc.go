// Package qcow2 reads QEMU qcow2 images (versions 2 and 3) and streams the bytes a guest
// would see, so that rackboot can turn a distribution cloud image or a Cluster API
// image-builder output into the raw disk image its agent writes, once, on the server.
//
// # What it reads and what it refuses
//
// Open validates the header and refuses, with an error naming the fact, what a
// stand-alone raw conversion cannot honour: a backing file (ErrBackingFile), encryption
// (ErrEncrypted), an external data file (ErrExternalDataFile), an image qemu marked
// corrupt (ErrMarkedCorrupt), incompatible features it does not know and compression
// types other than zlib and zstd (ErrUnsupported). Everything else a reader needs is
// supported: uncompressed, zlib (raw deflate, as qcow2 stores it) and zstd compressed
// clusters, v3 zero clusters, extended L2 entries with subclusters, any cluster size
// qemu allows (512 B to 2 MiB) and a virtual size that is not a multiple of the cluster.
// Snapshots, bitmaps and refcounts are not needed to read the active disk and are
// ignored; so is the dirty bit, which only says that refcounts may be stale.
//
// Walk visits the disk in order as data and zero extents (unallocated clusters and
// zero clusters read as zeros, as qemu reads them without a backing file); Extents is
// the same map without reading data; Stream writes every guest byte to an io.Writer.
// Memory is bounded by the cluster size, not the image: one L2 table, one compressed
// and one decompressed cluster, a read buffer of max(1 MiB, one cluster) (less for a
// smaller disk) and 32 KiB of the L1 table at a time, never all of an image's tables.
//
// # Hostile input
//
// An image is operator-supplied and may come from anywhere, so no input makes this
// package panic or allocate beyond the bounds above: every table and data offset is
// checked against the file size, a compressed cluster is read from at most twice the
// cluster size of input and decompressed into exactly one cluster, and a zstd frame
// may not ask for a window larger than 8 MiB. FuzzOpen checks this. Work is
// proportional to the virtual size, which a header states freely (up to 2^61 bytes):
// check Size against a limit before streaming.
//
// # Why hand-written
//
// Of the Go qcow2 readers found (2026-12), lima-vm/go-qcow2reader is the maintained
// one, but it registers no zstd decompressor by default (a package-level registry),
// logs through a package-level logger, only warns about the corrupt bit, sizes the L1
// table from the header without bounding it by the file, and has no fuzz test. The
// others (zchee/go-qcow2, jinroh/qcow2, dypflying/go-qcow2lib) are read-write
// libraries, incomplete by their own account or far larger than a converter needs.
// The subset of the format a read-only converter without backing files needs is small
// (qemu's docs/interop/qcow2.txt), and the tests check its output byte for byte
// against qemu-img convert.
package qcow2
