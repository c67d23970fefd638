package adminserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"slices"
	"time"
)

// The admin API's TLS certificate. Unless the operator gives one, rackboot creates a
// self-signed ECDSA P-256 certificate on first start and keeps it (DATA_DIR/admin.crt,
// admin.key), so its fingerprint stays the same across restarts and a CLI can pin it
// the way kubectl pins a cluster's CA data. A certificate that is its own CA: the CLI
// may trust the file itself (--ca-file) or only its SHA-256 fingerprint.

// certValidity is long: the certificate is pinned, not checked against a CA that
// rotates it, and an expired pinned certificate would only lock the operator out.
const certValidity = 10 * 365 * 24 * time.Hour

// CertificateHosts are the names and addresses a generated certificate is valid for:
// localhost and the loopback addresses always, plus every host given (listen
// addresses' hosts, the server's address); unspecified addresses (0.0.0.0) are skipped.
func CertificateHosts(hosts ...string) []string {
	out := []string{"localhost", "127.0.0.1", "::1"}
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
			continue
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// LoadOrCreateCertificate returns the key pair in certFile and keyFile. When neither
// file exists it first creates a self-signed certificate for hosts (key file 0600);
// created says whether it did. A certificate found without a name or address of hosts
// is still used (regenerating it would break every CLI that pinned it): missing lists
// them so the caller can warn.
func LoadOrCreateCertificate(certFile, keyFile string, hosts []string, now time.Time) (cert tls.Certificate, created bool, missing []string, err error) {
	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	if errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist) {
		if err := writeSelfSigned(certFile, keyFile, hosts, now); err != nil {
			return tls.Certificate{}, false, nil, err
		}
		created = true
	}
	cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, false, nil, fmt.Errorf("admin TLS certificate %s / key %s: %w: give a PEM certificate and its key, or remove both files to have rackboot create new ones", certFile, keyFile, err)
	}
	leaf := cert.Leaf
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			missing = append(missing, h)
		}
	}
	return cert, created, missing, nil
}

func writeSelfSigned(certFile, keyFile string, hosts []string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("admin TLS: generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("admin TLS: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "rackboot admin API", Organization: []string{"rackboot"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("admin TLS: creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("admin TLS: %w", err)
	}
	// The key first, exclusively: a certificate without its key is useless, a key
	// written over by a racing process would not match the certificate.
	if err := writeNew(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	// The certificate is public (the CLI reads it to pin it).
	return writeNew(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("admin TLS: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("admin TLS: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("admin TLS: writing %s: %w", path, err)
	}
	return f.Close()
}
