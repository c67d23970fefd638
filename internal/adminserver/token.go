package adminserver

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/rackboot/rackboot/admin"
)

// EnsureTokenFile returns the token in path, first creating the file (mode 0600) with a
// fresh random 256-bit token if it does not exist. created says whether it did.
func EnsureTokenFile(path string) (token string, created bool, err error) {
	tok, err := admin.ReadTokenFile(path)
	if err == nil {
		return tok, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", false, fmt.Errorf("generating API token: %w", err)
	}
	tok = base64.RawURLEncoding.EncodeToString(b)
	// O_EXCL: if another process created it meanwhile, use theirs rather than overwrite.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		tok, err := admin.ReadTokenFile(path)
		return tok, false, err
	}
	if err != nil {
		return "", false, fmt.Errorf("creating API token file: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("writing API token file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("writing API token file %s: %w", path, err)
	}
	return tok, true, nil
}
