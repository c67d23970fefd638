package inventory

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
)

// BMC passwords are the only secrets in the inventory. They are sealed with
// AES-256-GCM under a key kept outside the bbolt file (DATA_DIR/secret.key), so a copy
// of inventory.db alone (a backup, a bug report) reveals no password. Each sealed
// value is bound to its host ID as additional data: a value copied to another host's
// record does not open.

// KeySize is the length of the secret key file: an AES-256 key.
const KeySize = 32

// sealVersion is the first byte of every sealed value, so the format can change.
const sealVersion = 1

// LoadOrCreateKey reads the secret key at path, or creates it (mode 0600, KeySize
// random bytes) when the file does not exist. It refuses a key that other users can
// read or write, or that has the wrong size, saying how to fix it. created reports
// whether this call made the file.
func LoadOrCreateKey(path string) (key []byte, created bool, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		key, err := writeNewKey(f, path)
		return key, err == nil, err
	case !errors.Is(err, os.ErrExist):
		return nil, false, fmt.Errorf("creating secret key %s: %w: give rackboot a data directory it can write", path, err)
	}
	key, err = readKey(path)
	return key, false, err
}

func writeNewKey(f *os.File, path string) ([]byte, error) {
	key := make([]byte, KeySize)
	_, err := rand.Read(key)
	if err == nil {
		_, err = f.Write(key)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("creating secret key %s: %w", path, err)
	}
	return key, nil
}

func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading secret key %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading secret key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secret key %s is not a regular file: point rackboot at the key file itself", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secret key %s has mode %04o: other users could read the key that protects the BMC passwords: run 'chmod 600 %s'", path, perm, path)
	}
	if fi.Size() != KeySize {
		return nil, fmt.Errorf("secret key %s holds %d bytes, want %d: it is damaged or not a rackboot key: restore it from a backup (the stored BMC passwords cannot be read without it), or on a new installation delete it so rackboot creates one", path, fi.Size(), KeySize)
	}
	key := make([]byte, KeySize)
	if _, err := io.ReadFull(f, key); err != nil {
		return nil, fmt.Errorf("reading secret key %s: %w", path, err)
	}
	return key, nil
}

// Sealer encrypts and decrypts small secrets with AES-256-GCM.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer for a KeySize-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext bound to label (e.g. the host ID): version, random nonce,
// ciphertext and tag.
func (s *Sealer) Seal(plaintext []byte, label string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+len(nonce)+len(plaintext)+s.aead.Overhead())
	out = append(append(out, sealVersion), nonce...)
	return s.aead.Seal(out, nonce, plaintext, []byte(label)), nil
}

// ErrUnseal: a sealed value does not open with this key and label.
var ErrUnseal = errors.New("cannot decrypt")

// Open decrypts what Seal produced for the same label.
func (s *Sealer) Open(sealed []byte, label string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: not a sealed value of a known version", ErrUnseal)
	}
	pt, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(label))
	if err != nil {
		return nil, fmt.Errorf("%w: wrong key, or the value belongs to another record", ErrUnseal)
	}
	return pt, nil
}

// secretLabel binds a BMC password to its host.
func secretLabel(hostID string) string { return "rackboot/bmc-password/v1/" + hostID }
