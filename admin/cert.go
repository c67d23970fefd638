package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Fingerprint is the SHA-256 of a certificate's DER bytes, lower-case hex: what
// `openssl x509 -noout -fingerprint -sha256` prints, without the colons.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ParseFingerprint reads a SHA-256 fingerprint as Fingerprint writes it, or as openssl
// prints it ("AB:CD:...", optionally after "sha256:" or "SHA256 Fingerprint=").
func ParseFingerprint(s string) (string, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(strings.ToLower(t), "sha256") {
		// "sha256:HEX" or "SHA256 Fingerprint=HEX:HEX...": drop the label.
		if j := strings.IndexAny(t, "=:"); j >= 0 {
			t = t[j+1:]
		}
	}
	t = strings.ToLower(strings.ReplaceAll(t, ":", ""))
	if b, err := hex.DecodeString(t); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("fingerprint %q is not a SHA-256 fingerprint: give the 64 hex digits 'rackboot serve' logs at start (or `openssl x509 -noout -fingerprint -sha256 -in DATA_DIR/admin.crt`)", s)
	}
	return t, nil
}
