package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
)

// ErrPlainHTTP is returned by NewClient for an http:// server that is not on this
// machine: the bearer token would cross the network in clear.
var ErrPlainHTTP = errors.New("plain HTTP to an address that is not loopback")

// ErrFingerprint: the server's certificate is not the one pinned.
var ErrFingerprint = errors.New("the server's certificate is not the pinned one")

// ClientOptions say how to reach an admin API and whom to trust.
type ClientOptions struct {
	// Server is https://HOST:PORT, unix:/PATH (the socket in DATA_DIR), or
	// http://HOST:PORT, which is refused for a host that is not loopback unless
	// Insecure is set.
	Server string
	Token  string
	// Fingerprint pins the server's certificate: its SHA-256 (ParseFingerprint's
	// forms). The chain and name are then not checked: the certificate is the one
	// the operator pinned, like kubectl's certificate-authority-data.
	Fingerprint string
	// CAFile is a PEM file of certificates to trust instead of the system's (the
	// server's own admin.crt works: rackboot's generated certificate is its own CA).
	CAFile string
	// Insecure allows plain HTTP to a host that is not loopback.
	Insecure bool
	// Timeout bounds each request (0: none).
	Timeout time.Duration
	// DialContext, if set, opens the connections (the lab dials inside a network
	// namespace).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewClient checks opts and returns a client for the server they name.
func NewClient(opts ClientOptions) (*Client, error) {
	dial := opts.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	}
	tr := &http.Transport{
		DialContext:         dial,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        4,
		IdleConnTimeout:     30 * time.Second,
	}
	base := opts.Server
	if path, ok := strings.CutPrefix(opts.Server, UnixPrefix); ok {
		a, err := ParseListenAddr(UnixPrefix + path)
		if err != nil {
			return nil, fmt.Errorf("server %w", err)
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial(ctx, "unix", a.Addr)
		}
		// The host part only names the connection in errors; the socket is dialled.
		base = "http://rackboot-admin-socket"
	} else {
		u, err := url.Parse(opts.Server)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("server %q is invalid: write it as https://HOST:PORT or unix:/PATH/admin.sock", opts.Server)
		}
		if u.Scheme == "http" && !opts.Insecure && !loopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("server %s: %w: the API token would cross the network in clear: use https://%s (the admin API serves TLS), or --insecure if you must", opts.Server, ErrPlainHTTP, u.Host)
		}
		if u.Scheme == "https" {
			cfg, err := clientTLS(opts)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = cfg
		}
		base = strings.TrimRight(opts.Server, "/")
	}
	return &Client{BaseURL: base, Token: opts.Token, HTTPClient: &http.Client{Transport: tr, Timeout: opts.Timeout}}, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

func clientTLS(opts ClientOptions) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case opts.Fingerprint != "":
		want, err := ParseFingerprint(opts.Fingerprint)
		if err != nil {
			return nil, err
		}
		wantB, _ := hex.DecodeString(want)
		// The pin replaces chain and name checks; it is checked on every handshake.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], wantB) != 1 {
				return fmt.Errorf("%w: its fingerprint is %s, not %s", ErrFingerprint, hex.EncodeToString(got[:]), want)
			}
			return nil
		}
	case opts.CAFile != "":
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate: give the server's admin.crt or its CA", opts.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
