package admin

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ReadTokenFile returns the token stored in path: the file's content without surrounding
// whitespace (as serve reads it).
func ReadTokenFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading API token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("API token file %s is empty: write the token in it", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("API token file %s holds more than one word: it must hold only the token", path)
	}
	return tok, nil
}

// EnsureTokenFile returns the token in path, first creating the file (mode 0600) with a
// fresh random 256-bit token if it does not exist. created says whether it did.
func EnsureTokenFile(path string) (token string, created bool, err error) {
	tok, err := ReadTokenFile(path)
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
		tok, err := ReadTokenFile(path)
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
