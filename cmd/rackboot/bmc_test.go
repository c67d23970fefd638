package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
)

func TestBMCConfig(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bmc ca"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bmc ca"}}, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o644)
	store := openCLIStore(t)

	// The YAML section parses into bmc.Config with durations, and the service takes it.
	r, err := resolveYAML(t, "bmc:\n  workers: 4\n  timeout: 45s\n  redfishCAFile: "+ca+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if r.BMC.Workers != 4 || r.BMC.Timeout != 45*time.Second || r.BMC.Lib.RedfishCAFile != ca {
		t.Fatalf("parsed %+v", r.BMC)
	}
	bc := r.BMC
	bc.Store, bc.Registerer = store, prometheus.NewRegistry()
	if _, err := bmc.New(bc); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, c := range []struct {
		doc  string
		want string
	}{
		{"bmc: {workers: -1}", "bmc.workers: -1: give 1-1024"},
		{"bmc: {timeout: 100ms}", "bmc.timeout: 100ms: give at least 1s"},
		{"bmc: {maxAttempts: 50}", "bmc.maxAttempts: 50"},
		{"bmc: {redfishCAFile: " + filepath.Join(dir, "missing.pem") + "}", "bmc.redfishCAFile: open"},
		{"bmc: {redfishCAFile: " + notPEM + "}", "holds no PEM certificate"},
		{"bmc: {ipmitool: " + dir + "}", "bmc.ipmitool: " + dir + " is not a file"},
	} {
		if _, err := resolveYAML(t, c.doc); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.doc, err, c.want)
		}
	}
}

func openCLIStore(t *testing.T) *inventory.BoltStore {
	t.Helper()
	dir := t.TempDir()
	s, err := inventory.Open(filepath.Join(dir, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(dir, "secret.key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
