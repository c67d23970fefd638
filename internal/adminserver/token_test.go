package adminserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rackboot/rackboot/admin"
)

func TestTokenFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api-token")
	tok, created, err := EnsureTokenFile(path)
	if err != nil || !created || len(tok) != 43 {
		t.Fatalf("first EnsureTokenFile = %q, %v, %v", tok, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode = %v, %v", fi.Mode(), err)
	}
	again, created, err := EnsureTokenFile(path)
	if err != nil || created || again != tok {
		t.Fatalf("second EnsureTokenFile = %q, %v, %v; want the same token", again, created, err)
	}
	if got, err := admin.ReadTokenFile(path); err != nil || got != tok {
		t.Fatalf("ReadTokenFile = %q, %v", got, err)
	}

	written := filepath.Join(dir, "by-hand")
	os.WriteFile(written, []byte("  hand-made  \n\n"), 0o600)
	if got, err := admin.ReadTokenFile(written); err != nil || got != "hand-made" {
		t.Fatalf("ReadTokenFile = %q, %v", got, err)
	}
	twoLines := filepath.Join(dir, "two-lines")
	os.WriteFile(twoLines, []byte("a\nb\n"), 0o600)
	if _, err := admin.ReadTokenFile(twoLines); err == nil || !strings.Contains(err.Error(), "only the token") {
		t.Fatalf("two lines: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := admin.ReadTokenFile(empty); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty file: %v", err)
	}
	if _, _, err := EnsureTokenFile(empty); err == nil {
		t.Fatal("EnsureTokenFile replaced an empty token file instead of reporting it")
	}
	if _, _, err := EnsureTokenFile(filepath.Join(dir, "missing-dir", "tok")); err == nil || !strings.Contains(err.Error(), "creating API token file") {
		t.Fatalf("missing dir: %v", err)
	}
}
