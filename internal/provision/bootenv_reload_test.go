package provision

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rackboot/rackboot/internal/bootenv"
	"github.com/rackboot/rackboot/internal/hotfile"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
)

const (
	keyA = "aaaaaaaaaaaaaaaaaaaa"
	keyB = "bbbbbbbbbbbbbbbbbbbb"
)

// publishBuild lays a build out in dir (DATA_DIR/bootenv) as bootenv.Build does: the
// files in the cache entry of its key, then linked into dir by rename, the manifest
// last. (bootenv's own tests check that a real Build reads back through Published and
// KeyDir, which is all BootEnvs relies on.)
func publishBuild(t *testing.T, dir, key, kernel, initrd string) {
	t.Helper()
	entry := bootenv.KeyDir(dir, key)
	if err := os.MkdirAll(entry, 0o755); err != nil {
		t.Fatal(err)
	}
	man, err := json.Marshal(bootenv.Manifest{Key: key, KernelVersion: "6.1.0-" + key[:1], Modules: []string{"kernel/a.ko"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ name, body string }{
		{bootenv.KernelFile, kernel}, {bootenv.InitramfsFile, initrd}, {bootenv.ManifestFile, string(man)},
	} {
		src := filepath.Join(entry, f.name)
		if err := os.WriteFile(src, []byte(f.body), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, f.name+".tmp")
		if err := os.Link(src, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			t.Fatal(err)
		}
	}
}

// agentScript renders the iPXE script an inspecting host gets with be, as the ipxe
// handler does for each request.
func agentScript(t *testing.T, be *ipxe.BootEnv) string {
	t.Helper()
	s, err := ipxe.RenderScript(ipxe.ScriptInput{
		Host: &inventory.Host{ID: hostID, MACs: []string{hostMAC}, State: inventory.StateInspecting},
		MAC:  hostMAC, ServerURL: serverURL, BootEnv: be,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(s.Body)
}

// TestBootEnvImportedWhileServing plays `rackboot bootenv import` twice against a
// running server: the first build is used with no restart, the second replaces it at
// the next script, and a host half-way through booting the first still gets the first
// build's initramfs.
func TestBootEnvImportedWhileServing(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.dir, "bootenv")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	envs := NewBootEnvs(dir, serverURL+"/", slog.New(slog.NewTextHandler(&logs, nil)))
	if err := e.p.RegisterBootEnv(e.mux, dir); err != nil {
		t.Fatal(err)
	}
	fetch := func(path string) (int, string) {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = hostIP + ":40000"
		rec := httptest.NewRecorder()
		e.mux.ServeHTTP(rec, req)
		body, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(body)
	}
	expect := func(path string, code int, body string) {
		t.Helper()
		gotCode, gotBody := fetch(path)
		if gotCode != code || (body != "" && gotBody != body) {
			t.Errorf("GET %s = %d %q, want %d %q", path, gotCode, gotBody, code, body)
		}
	}

	// Nothing built yet: agent states boot from local disk.
	if be := envs.Current(); be != nil || envs.Ready() {
		t.Fatalf("before any import: %+v", be)
	}
	if s := agentScript(t, envs.Current()); !strings.Contains(s, "exit") || strings.Contains(s, "kernel ") {
		t.Fatalf("script without a boot environment:\n%s", s)
	}
	expect("/bootenv/vmlinuz", http.StatusNotFound, "")

	// First import while serving.
	publishBuild(t, dir, keyA, "kernel A", "initrd A")
	a := envs.Current()
	if a == nil || !envs.Ready() {
		t.Fatal("the first import was not picked up")
	}
	wantA := serverURL + "/bootenv/" + keyA + "/"
	if a.Kernel != wantA+"vmlinuz" || len(a.Initrds) != 1 || a.Initrds[0] != wantA+"initramfs.gz" {
		t.Fatalf("first build: %+v", a)
	}
	if s := agentScript(t, a); !strings.Contains(s, "kernel "+wantA+"vmlinuz") || !strings.Contains(s, wantA+"initramfs.gz") {
		t.Fatalf("script after the first import:\n%s", s)
	}
	if again := envs.Current(); again != a {
		t.Error("an unchanged manifest was read again")
	}
	expect("/bootenv/"+keyA+"/vmlinuz", http.StatusOK, "kernel A")
	expect("/bootenv/vmlinuz", http.StatusOK, "kernel A")

	// A host fetches build A's kernel; then the second import lands. The files are
	// served from memory and checked against the directory once a second.
	publishBuild(t, dir, keyB, "kernel B", "initrd B")
	e.clock.Advance(hotfile.DefaultRevalidate)
	expect("/bootenv/vmlinuz", http.StatusOK, "kernel B")
	b := envs.Current()
	wantB := serverURL + "/bootenv/" + keyB + "/"
	if b == nil || b.Kernel != wantB+"vmlinuz" || b.Initrds[0] != wantB+"initramfs.gz" {
		t.Fatalf("second build: %+v", b)
	}
	if s := agentScript(t, b); !strings.Contains(s, "kernel "+wantB+"vmlinuz") || strings.Contains(s, keyA) {
		t.Fatalf("script after the second import:\n%s", s)
	}
	expect("/bootenv/"+keyA+"/initramfs.gz", http.StatusOK, "initrd A") // the host half-way through build A
	expect("/bootenv/"+keyB+"/initramfs.gz", http.StatusOK, "initrd B")
	expect("/bootenv/initramfs.gz", http.StatusOK, "initrd B")

	// The fetches are on the host's timeline, with the build they came from.
	var keys []string
	for _, ev := range e.events() {
		if ev.Type == "http.bootenv" {
			keys = append(keys, ev.Fields["file"]+"@"+ev.Fields["key"])
		}
	}
	if got, want := strings.Join(keys, " "), "vmlinuz@"+keyA+" vmlinuz@ vmlinuz@ initramfs.gz@"+keyA+" initramfs.gz@"+keyB+" initramfs.gz@"; got != want {
		t.Errorf("timeline fetches = %q, want %q", got, want)
	}

	// Once Build drops build A (at the import after next), its URLs say so; names that
	// are not build keys or boot files are not found.
	if err := os.RemoveAll(bootenv.KeyDir(dir, keyA)); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(hotfile.DefaultRevalidate)
	if code, body := fetch("/bootenv/" + keyA + "/vmlinuz"); code != http.StatusNotFound || !strings.Contains(body, "no longer kept") {
		t.Errorf("a dropped build: %d %q", code, body)
	}
	for _, p := range []string{"/bootenv/" + keyB + "/manifest.json", "/bootenv/cache/vmlinuz", "/bootenv/..%2fcache/vmlinuz", "/bootenv/ABCDEFABCDEFABCDEFAB/vmlinuz", "/bootenv/secret.key"} {
		expect(p, http.StatusNotFound, "")
	}

	// A damaged manifest leaves build B in use, and says why once.
	if err := os.WriteFile(filepath.Join(dir, "m.tmp"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "m.tmp"), filepath.Join(dir, bootenv.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	if got := envs.Current(); got != b {
		t.Errorf("with a damaged manifest: %+v, want build B kept", got)
	}
	envs.Current()
	if n := strings.Count(logs.String(), "cannot use the agent boot environment"); n != 1 {
		t.Errorf("the damaged manifest was logged %d times, want once:\n%s", n, logs.String())
	}
	// Removing the published build turns the agent off again.
	if err := os.Remove(filepath.Join(dir, bootenv.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	if got := envs.Current(); got != nil || envs.Ready() {
		t.Errorf("after the manifest was removed: %+v", got)
	}
}

// TestBootEnvsHandPlacedFiles: files put in DATA_DIR/bootenv without Build's cache are
// served as published rather than at a key URL that would not find them.
func TestBootEnvsHandPlacedFiles(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		bootenv.KernelFile: "k", bootenv.InitramfsFile: "i", bootenv.ManifestFile: `{"key": "` + keyA + `"}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	be := NewBootEnvs(dir, serverURL, nil).Current()
	if be == nil || be.Kernel != serverURL+"/bootenv/vmlinuz" || be.Initrds[0] != serverURL+"/bootenv/initramfs.gz" {
		t.Fatalf("hand-placed build: %+v", be)
	}
}
