package bootenv

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// arReader reads the members of a Unix ar archive (the container of a .deb): an 8-byte
// magic, then for each member a 60-byte header (name, mtime, uid, gid, mode, decimal
// size, "`\n") and the data padded to an even length. Only what .deb files use is
// supported: no GNU/BSD long-name tables.
type arReader struct {
	r    *bufio.Reader
	left int64 // bytes of the current member not yet read
	pad  bool
}

const arMagic = "!<arch>\n"

func newArReader(r io.Reader) (*arReader, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic := make([]byte, len(arMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != arMagic {
		return nil, errors.New("not an ar archive (a .deb starts with !<arch>)")
	}
	return &arReader{r: br}, nil
}

// Next skips to the next member and returns its name and size.
func (a *arReader) Next() (string, int64, error) {
	skip := a.left
	if a.pad {
		skip++
	}
	if _, err := io.CopyN(io.Discard, a.r, skip); err != nil {
		return "", 0, fmt.Errorf("ar: %w", err)
	}
	var h [60]byte
	if _, err := io.ReadFull(a.r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return "", 0, io.EOF
		}
		return "", 0, fmt.Errorf("ar header: %w", err)
	}
	if h[58] != '`' || h[59] != '\n' {
		return "", 0, errors.New("ar: bad member header")
	}
	name := strings.TrimRight(strings.TrimSpace(string(h[0:16])), "/")
	size, err := strconv.ParseInt(strings.TrimSpace(string(h[48:58])), 10, 64)
	if err != nil || size < 0 {
		return "", 0, fmt.Errorf("ar: member %q has a bad size", name)
	}
	a.left, a.pad = size, size%2 == 1
	return name, size, nil
}

// Read reads the current member.
func (a *arReader) Read(p []byte) (int, error) {
	if a.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > a.left {
		p = p[:a.left]
	}
	n, err := a.r.Read(p)
	a.left -= int64(n)
	if err == io.EOF && a.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// debData opens the data.tar.* member of a .deb and returns a tar reader over it.
func debData(r io.Reader) (*tar.Reader, func(), error) {
	ar, err := newArReader(r)
	if err != nil {
		return nil, nil, err
	}
	for {
		name, _, err := ar.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil, errors.New("the .deb has no data.tar member")
		}
		if err != nil {
			return nil, nil, err
		}
		if !strings.HasPrefix(name, "data.tar") {
			continue
		}
		zr, closer, err := decompressor(strings.TrimPrefix(name, "data.tar"), ar)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		return tar.NewReader(zr), closer, nil
	}
}

// decompressor opens r compressed as ext says (".xz", ".zst", ".gz", "" for none).
func decompressor(ext string, r io.Reader) (io.Reader, func(), error) {
	switch ext {
	case "":
		return r, func() {}, nil
	case ".xz":
		zr, err := xz.NewReader(bufio.NewReaderSize(r, 1<<20))
		return zr, func() {}, err
	case ".zst":
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	case ".gz":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unsupported compression %q", ext)
}

// decompressModule returns a module's ELF bytes from its file, decompressing .ko.xz,
// .ko.zst and .ko.gz (kernels built with CONFIG_MODULE_COMPRESS_*), so the agent can
// always use finit_module(2) without decompression flags.
func decompressModule(name string, data []byte) ([]byte, error) {
	var ext string
	for _, e := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(name, ".ko"+e) {
			ext = e
		}
	}
	if ext == "" {
		return data, nil
	}
	zr, closer, err := decompressor(ext, bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", name, err)
	}
	defer closer()
	out, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", name, err)
	}
	return out, nil
}
