package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestServeReadyzVerbose: /readyz stays a plain 200 "ok" once serve answers boot
// traffic; /readyz?verbose names each check, and the informational ones (a boot
// environment, a ready image) say what is missing until it is there.
func TestServeReadyzVerbose(t *testing.T) {
	s := startServe(t, "", "")
	if code, body := getBody(t, s.bootURL+"/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/readyz = %d %q, want 200 ok", code, body)
	}
	check := func(want ...string) {
		t.Helper()
		code, body := getBody(t, s.bootURL+"/readyz?verbose")
		if code != http.StatusOK {
			t.Errorf("/readyz?verbose = %d, want 200", code)
		}
		lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("/readyz?verbose:\n%s\nwant lines starting:\n%s", body, strings.Join(want, "\n"))
		}
		for i, w := range want {
			if !strings.HasPrefix(lines[i], w) {
				t.Errorf("/readyz?verbose line %d = %q, want it to start %q", i+1, lines[i], w)
			}
		}
	}
	check("[+]bmc ok",
		"[-]bootenv failed: this rackboot has no agent boot environment",
		"[-]images failed: no image in the catalog: add one with 'rackboot image add",
		"readyz check passed")

	publishTestBuild(t, s.data, strings.Repeat("c", 20), "kernel") // bootenv_test.go
	img := filepath.Join(s.dir, "tiny.raw")
	payload := bytes.Repeat([]byte("rackboot"), 512)
	if err := os.WriteFile(img, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	env := map[string]string{"RACKBOOT_TOKEN_FILE": s.tokenFile, "RACKBOOT_SERVER": s.adminURL}
	if out, err := s.cli(env, "image", "add", "tiny", "--file", img, "--sha256", hex.EncodeToString(sum[:])); err != nil {
		t.Fatalf("image add: %q, %v", out, err)
	}
	check("[+]bmc ok", "[+]bootenv ok", "[+]images ok", "readyz check passed")
}
