package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/internal/bootenv"
	"github.com/rackboot/rackboot/internal/inventory"
)

// publishTestBuild lays a build out in dataDir/bootenv as `rackboot bootenv import`
// (bootenv.Build) does: its cache entry, then the published links, the manifest last.
func publishTestBuild(t *testing.T, dataDir, key, kernel string) {
	t.Helper()
	dir := filepath.Join(dataDir, "bootenv")
	entry := bootenv.KeyDir(dir, key)
	if err := os.MkdirAll(entry, 0o755); err != nil {
		t.Fatal(err)
	}
	man, _ := json.Marshal(bootenv.Manifest{Key: key, KernelVersion: "6.1.0-test"})
	for name, body := range map[string]string{bootenv.KernelFile: kernel, bootenv.InitramfsFile: "initrd of " + key} {
		if err := os.WriteFile(filepath.Join(entry, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(entry, bootenv.ManifestFile), man, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{bootenv.KernelFile, bootenv.InitramfsFile, bootenv.ManifestFile} {
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.Link(filepath.Join(entry, name), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBootenvImportWhileServing wires serve's services (DHCP and TFTP off) on an empty
// data directory and imports boot environments while it runs: the first lifts the
// refusal to inspect and is in the next iPXE script, the second replaces it, with no
// restart.
func TestBootenvImportWhileServing(t *testing.T) {
	const (
		token = "0123456789abcdef0123456789abcdef"
		mac   = "52:54:00:be:00:01"
		keyA  = "aaaaaaaaaaaaaaaaaaaa"
		keyB  = "bbbbbbbbbbbbbbbbbbbb"
	)
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "assets"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadArgs(t, "--dhcp-mode", "off", "--address", "127.0.0.1", "--data-dir", data)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TFTP.Disabled = true
	r, err := cfg.resolve(fakeIfaces)
	if err != nil {
		t.Fatal(err)
	}
	store, err := inventory.Open(filepath.Join(data, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(data, "secret.key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	w, err := buildServices(r, capiSettings{}, store, token, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	t.Cleanup(func() {
		for _, c := range w.closers {
			c()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// DHCP is off here: the reservation is what lets the script fetch (httptest's
	// 192.0.2.1) boot the agent.
	if _, err := store.CreateHosts(t.Context(), inventory.Host{ID: "node-1", MACs: []string{mac}, IP: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	do := func(method, path string) (int, string) {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		if strings.HasPrefix(path, "/api/") {
			w.adminAPI.ServeHTTP(rec, req) // the admin API's own listener
		} else {
			w.mux.ServeHTTP(rec, req) // the boot listener
		}
		b, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(b)
	}

	if code, body := do("POST", "/api/v1/hosts/node-1/inspect"); code != http.StatusConflict || !strings.Contains(body, "bootenv import") {
		t.Fatalf("inspect with no boot environment = %d %s, want 409 naming bootenv import", code, body)
	}
	publishTestBuild(t, data, keyA, "kernel A")
	if code, body := do("POST", "/api/v1/hosts/node-1/inspect"); code != http.StatusAccepted {
		t.Fatalf("inspect after the import = %d %s", code, body)
	}
	script := func() string {
		t.Helper()
		code, body := do("GET", "/ipxe/boot.ipxe?mac="+mac)
		if code != http.StatusOK {
			t.Fatalf("script = %d %s", code, body)
		}
		return body
	}
	if s := script(); !strings.Contains(s, "/bootenv/"+keyA+"/vmlinuz") {
		t.Fatalf("script after the first import:\n%s", s)
	}
	if code, body := do("GET", "/bootenv/"+keyA+"/vmlinuz"); code != http.StatusOK || body != "kernel A" {
		t.Fatalf("kernel A = %d %q", code, body)
	}
	publishTestBuild(t, data, keyB, "kernel B")
	if s := script(); !strings.Contains(s, "/bootenv/"+keyB+"/vmlinuz") || strings.Contains(s, keyA) {
		t.Fatalf("script after the second import:\n%s", s)
	}
	if code, body := do("GET", "/bootenv/"+keyB+"/vmlinuz"); code != http.StatusOK || body != "kernel B" {
		t.Fatalf("kernel B = %d %q", code, body)
	}
}
