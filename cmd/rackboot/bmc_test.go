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
	"sigs.k8s.io/yaml"

	"github.com/rackboot/rackboot/inventory"
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

	// The YAML section parses into the config with durations.
	var cfg serveConfig
	if err := yaml.UnmarshalStrict([]byte("bmc:\n  workers: 4\n  timeout: 45s\n  redfishCAFile: "+ca+"\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.BMC.Workers != 4 || time.Duration(cfg.BMC.Timeout) != 45*time.Second {
		t.Fatalf("parsed %+v", cfg.BMC)
	}
	if _, err := newBMCService(cfg.BMC, store, nil, prometheus.NewRegistry()); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, c := range []struct {
		cfg  bmcConfig
		want string
	}{
		{bmcConfig{Workers: -1}, "bmc.workers: -1: give 1-1024"},
		{bmcConfig{Timeout: duration(100 * time.Millisecond)}, "bmc.timeout: 100ms: give at least 1s"},
		{bmcConfig{MaxAttempts: 50}, "bmc.maxAttempts: 50"},
		{bmcConfig{RedfishCAFile: filepath.Join(dir, "missing.pem")}, "bmc.redfishCAFile: open"},
		{bmcConfig{RedfishCAFile: notPEM}, "holds no PEM certificate"},
		{bmcConfig{IPMITool: dir}, "bmc.ipmitool: " + dir + " is not a file"},
	} {
		if _, err := newBMCService(c.cfg, store, nil, prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %q", c.cfg, err, c.want)
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
