package ipxe

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Names of the embedded binaries, as DHCP hands them out and TFTP/HTTP serve them.
const (
	// UndionlyKPXE is for BIOS PXE clients (DHCP arch 0).
	UndionlyKPXE = "undionly.kpxe"
	// SNPOnlyEFI is for x86-64 UEFI clients (arch 7/9); it drives the NIC through the
	// firmware's SNP, so it works on any NIC the firmware supports.
	SNPOnlyEFI = "snponly.efi"
	// IPXEEFI is x86-64 UEFI iPXE with its own NIC drivers, for firmware whose SNP is
	// broken.
	IPXEEFI = "ipxe.efi"
	// ARM64SNPOnlyEFI is the suggested name for an operator-provided arm64 binary in
	// DATA_DIR/ipxe; it is not embedded (Debian has none).
	ARM64SNPOnlyEFI = "arm64-efi/snponly.efi"
)

// binFS holds exactly the three binaries, so Binaries serves nothing else.
//
//go:embed bin/undionly.kpxe bin/snponly.efi bin/ipxe.efi
var binFS embed.FS

// noticeFS holds the provenance and licence texts that must travel with the binaries.
//
//go:embed bin/PROVENANCE bin/COPYRIGHT bin/GPL-2
var noticeFS embed.FS

// prefixFS serves dir of an embed.FS at its root, like fs.Sub without fs.Sub's error.
type prefixFS struct {
	fsys embed.FS
	dir  string
}

func (p prefixFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return p.fsys.Open(p.dir)
	}
	return p.fsys.Open(p.dir + "/" + name)
}

// Binaries returns the embedded iPXE binaries (UndionlyKPXE, SNPOnlyEFI, IPXEEFI) at
// the root of an fs.FS. Its files implement io.Seeker, so TFTP can send tsize and HTTP
// can serve Range requests.
func Binaries() fs.FS { return prefixFS{fsys: binFS, dir: "bin"} }

// Notices returns PROVENANCE (Debian source package, version, sha256 of each binary),
// COPYRIGHT (Debian's copyright file for ipxe) and GPL-2, which must accompany the
// binaries wherever rackboot is distributed.
func Notices() fs.FS { return prefixFS{fsys: noticeFS, dir: "bin"} }

// BinaryFS is the set of iPXE binaries rackboot serves: an operator's directory
// layered over the embedded binaries. The zero value is not usable; use OpenBinaries.
type BinaryFS struct {
	root  *os.Root // nil when there is no overlay directory
	upper fs.FS
	lower fs.FS
}

// OpenBinaries opens dir (normally DATA_DIR/ipxe) through os.Root and layers it over
// Binaries: a file in dir wins over the embedded file of the same name. An empty dir or
// one that does not exist gives the embedded binaries alone. Close releases dir.
func OpenBinaries(dir string) (*BinaryFS, error) {
	b := &BinaryFS{lower: Binaries()}
	if dir == "" {
		return b, nil
	}
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open iPXE overlay directory %s: %w (fix its permissions, or remove it to serve only the built-in binaries)", dir, err)
	}
	b.root, b.upper = root, root.FS()
	return b, nil
}

// Overlay reports whether an operator directory is layered over the embedded binaries.
func (b *BinaryFS) Overlay() bool { return b.root != nil }

// Open implements fs.FS. Names are validated before either layer sees them; the overlay
// is an os.Root, so symlinks inside it cannot lead outside it.
func (b *BinaryFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if b.upper != nil {
		f, err := b.upper.Open(name)
		if err == nil {
			return f, nil
		}
		// Only absence falls through: a file the operator put there but rackboot cannot
		// read must fail loudly, not be silently replaced by the built-in one.
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return b.lower.Open(name)
}

// Close releases the overlay directory.
func (b *BinaryFS) Close() error {
	if b.root == nil {
		return nil
	}
	return b.root.Close()
}
