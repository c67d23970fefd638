package tftp

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"unicode/utf8"
)

// MaxPathLen bounds a requested file name. PXE ROMs ask for short names; a TFTP request
// packet is 512 bytes, but nothing rackboot serves needs more than this.
const MaxPathLen = 255

// ErrBadPath is wrapped by every CleanPath refusal.
var ErrBadPath = errors.New("file name refused")

// CleanPath turns the file name of a TFTP read request into a name for an fs.FS, or
// refuses it. Leading slashes are dropped, since PXE firmware and DHCP boot-file
// settings often write "/undionly.kpxe" for a file at the root. It refuses names that
// are empty, longer than MaxPathLen, not UTF-8, or that hold a NUL or other control
// character, a backslash (a Windows separator that would otherwise be a literal
// character here), or a "..", "." or empty segment: what is left can only name
// something inside the served tree.
func CleanPath(name string) (string, error) {
	if len(name) > MaxPathLen {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrBadPath, MaxPathLen)
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: not valid UTF-8", ErrBadPath)
	}
	for _, r := range name {
		if r < ' ' || r == 0x7f {
			return "", fmt.Errorf("%w: %q holds a control character", ErrBadPath, name)
		}
		if r == '\\' {
			return "", fmt.Errorf("%w: %q holds a backslash: use / to separate directories", ErrBadPath, name)
		}
	}
	p := strings.TrimLeft(name, "/")
	if p == "" {
		return "", fmt.Errorf("%w: no file named", ErrBadPath)
	}
	if !fs.ValidPath(p) || p == "." {
		return "", fmt.Errorf("%w: %q has a \"..\", \".\" or empty segment", ErrBadPath, name)
	}
	return p, nil
}
