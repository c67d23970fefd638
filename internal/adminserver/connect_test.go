package adminserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/admin"
)

// TestListenTLSAndSocket serves the API on a generated certificate and a Unix socket
// and reaches it with a pinned fingerprint, the certificate as CA, and the socket.
func TestListenTLSAndSocket(t *testing.T) {
	e := newAPI(t)
	dir := t.TempDir()
	hosts := CertificateHosts("127.0.0.1", "0.0.0.0", "10.0.0.1")
	cert, created, missing, err := LoadOrCreateCertificate(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"), hosts, time.Now())
	if err != nil || !created || len(missing) > 0 {
		t.Fatalf("created %v, missing %v, %v", created, missing, err)
	}
	// The second start reuses it: the fingerprint operators pinned stays.
	again, created, missing, err := LoadOrCreateCertificate(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"), append(hosts, "10.9.9.9"), time.Now())
	if err != nil || created || admin.Fingerprint(again.Leaf.Raw) != admin.Fingerprint(cert.Leaf.Raw) || len(missing) != 1 || missing[0] != "10.9.9.9" {
		t.Fatalf("second load: created %v, missing %v, %v", created, missing, err)
	}
	sock := filepath.Join(dir, "admin.sock")
	tcp, _ := admin.ParseListenAddr("127.0.0.1:0")
	unix, _ := admin.ParseListenAddr("unix:" + sock)
	if _, err := Listen(ServerConfig{Handler: http.NotFoundHandler(), Listen: []admin.ListenAddr{tcp}}); err == nil {
		t.Fatal("a TCP listener without TLS was accepted")
	}
	h, _ := NewHandler(Config{Store: e.store, Token: testToken})
	srv, err := Listen(ServerConfig{Handler: h, Listen: []admin.ListenAddr{tcp, unix}, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
	base := "https://" + srv.Addrs()[0].String()
	for name, o := range map[string]admin.ClientOptions{
		"pinned": {Server: base, Fingerprint: admin.Fingerprint(cert.Leaf.Raw)},
		"ca":     {Server: base, CAFile: filepath.Join(dir, "admin.crt")},
		"socket": {Server: "unix:" + sock},
	} {
		o.Token = testToken
		c, err := admin.NewClient(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ListHosts(ctx); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	c, _ := admin.NewClient(admin.ClientOptions{Server: base, Token: testToken, Fingerprint: strings.Repeat("00", 32)})
	if _, err := c.ListHosts(ctx); !errors.Is(err, admin.ErrFingerprint) {
		t.Errorf("wrong pin: %v", err)
	}
	// A second server on the same socket is refused while the first answers.
	if _, err := Listen(ServerConfig{Handler: h, Listen: []admin.ListenAddr{unix}}); err == nil || !strings.Contains(err.Error(), "another rackboot") {
		t.Errorf("second listener on a live socket: %v", err)
	}
}
