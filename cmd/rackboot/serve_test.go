package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackboot/rackboot/admin"
)

// servedRackboot is a `rackboot serve` run in-process (DHCP and TFTP off, every
// listener on loopback port 0) for tests of what serve wires.
type servedRackboot struct {
	dir, data  string
	bootURL    string // the boot listener, http://127.0.0.1:PORT
	adminURL   string // the admin API's TLS listener, https://127.0.0.1:PORT
	adminSock  string
	tokenFile  string
	logs       *lockedBuffer
	stop       func()
	stopResult chan error
	stopOnce   sync.Once
	stopErr    error
}

// shutdown cancels serve and waits (30 s at most) for it to return.
func (s *servedRackboot) shutdown() error {
	s.stopOnce.Do(func() {
		s.stop()
		select {
		case s.stopErr = <-s.stopResult:
		case <-time.After(30 * time.Second):
			s.stopErr = errors.New("serve did not stop within 30 s")
		}
	})
	return s.stopErr
}

var adminListenRe = regexp.MustCompile(`msg="admin API listening".* addr=tcp:(\S+)`)

// startServe runs serve with the YAML config extra appended to the base one (and
// httpExtra, ", key: value...", added to its http section) and waits until both
// listeners are up.
func startServe(t *testing.T, httpExtra, extra string) *servedRackboot {
	t.Helper()
	return startServeIn(t, t.TempDir(), httpExtra, extra)
}

// startServeIn is startServe with the data directory in dir (dir/data).
func startServeIn(t *testing.T, dir, httpExtra, extra string) *servedRackboot {
	t.Helper()
	return startServeYAML(t, dir, func(data, adminSock string) string {
		return fmt.Sprintf(`dataDir: %s
address: 127.0.0.1
http: {listen: "127.0.0.1:0"%s}
api: {listen: ["127.0.0.1:0", "unix:%s"]}
tftp: {disabled: true}
dhcp: {mode: "off"}
`, data, httpExtra, adminSock) + extra
	})
}

// startServeYAML is startServeIn with the whole configuration file from yamlOf, given
// the data directory and the admin socket's path.
func startServeYAML(t *testing.T, dir string, yamlOf func(data, adminSock string) string) *servedRackboot {
	t.Helper()
	s := &servedRackboot{dir: dir, data: filepath.Join(dir, "data"), logs: &lockedBuffer{}, stopResult: make(chan error, 1)}
	s.adminSock = filepath.Join(dir, "admin.sock")
	s.tokenFile = filepath.Join(s.data, "api-token")
	yaml := yamlOf(s.data, s.adminSock)
	config := filepath.Join(dir, "rackboot.yaml")
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	root := newRootCmd(&cliEnv{stdout: &bytes.Buffer{}, stderr: s.logs, getenv: func(string) string { return "" }})
	root.SetArgs([]string{"serve", "--config", config})
	go func() { s.stopResult <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		if err := s.shutdown(); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("serve: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		log := s.logs.String()
		if m := servingRe.FindStringSubmatch(log); m != nil {
			s.bootURL = "http://" + m[1]
		}
		if m := adminListenRe.FindStringSubmatch(log); m != nil {
			s.adminURL = "https://" + m[1]
		}
		if s.bootURL != "" && s.adminURL != "" {
			return s
		}
		select {
		case err := <-s.stopResult:
			s.stopResult <- err
			t.Fatalf("serve ended before serving: %v\nlog:\n%s", err, log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start within 30 s; log:\n%s", s.logs)
	return nil
}

// fingerprint reads DATA_DIR/admin.crt, which serve made on its first start.
func (s *servedRackboot) fingerprint(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.data, "admin.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("admin.crt holds no PEM block")
	}
	return admin.Fingerprint(blk.Bytes)
}

// cli runs the CLI with env as its environment (nothing of the test process's).
func (s *servedRackboot) cli(env map[string]string, args ...string) (string, error) {
	var out, errw bytes.Buffer
	root := newRootCmd(&cliEnv{stdout: &out, stderr: &errw, getenv: func(k string) string { return env[k] }})
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestServeAdminAPIApart: the admin API answers only on its own listeners, over TLS
// with the certificate serve made on first start, which the CLI pins; the boot
// listener that every booting host reaches has no /api.
func TestServeAdminAPIApart(t *testing.T) {
	s := startServe(t, "", "")
	fp := s.fingerprint(t)
	if !strings.Contains(s.logs.String(), "fingerprint="+fp) {
		t.Errorf("serve does not log the certificate's fingerprint %s for operators to pin:\n%s", fp, s.logs)
	}
	env := map[string]string{"RACKBOOT_TOKEN_FILE": s.tokenFile}

	// The CLI with the pinned fingerprint enrols and lists over TLS.
	if _, err := s.cli(env, "host", "add", "--mac", "52:54:00:aa:00:01", "--id", "n1", "--server", s.adminURL, "--fingerprint", fp); err != nil {
		t.Fatalf("host add over TLS with the pinned fingerprint: %v", err)
	}
	env["RACKBOOT_SERVER"], env["RACKBOOT_FINGERPRINT"] = s.adminURL, strings.ToUpper(fp[:2])+":"+fp[2:] // openssl's form is accepted
	if out, err := s.cli(env, "host", "list"); err != nil || !strings.Contains(out, "n1") {
		t.Fatalf("host list with RACKBOOT_FINGERPRINT: %q, %v", out, err)
	}
	delete(env, "RACKBOOT_FINGERPRINT")
	// With the token file of a serve's DATA_DIR, its admin.crt beside it is trusted.
	if out, err := s.cli(env, "host", "list"); err != nil || !strings.Contains(out, "n1") {
		t.Fatalf("host list trusting admin.crt beside RACKBOOT_TOKEN_FILE: %q, %v", out, err)
	}
	// The certificate file itself as the CA (its SANs name 127.0.0.1).
	if out, err := s.cli(env, "host", "list", "--ca-file", filepath.Join(s.data, "admin.crt")); err != nil || !strings.Contains(out, "n1") {
		t.Fatalf("host list with --ca-file admin.crt: %q, %v", out, err)
	}
	// The Unix socket: plain HTTP, but only the owner may connect.
	if out, err := s.cli(env, "host", "list", "--server", "unix:"+s.adminSock); err != nil || !strings.Contains(out, "n1") {
		t.Fatalf("host list over the Unix socket: %q, %v", out, err)
	}
	if fi, err := os.Stat(s.adminSock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}

	// The commands that make their own client (an upload with no overall timeout, BMC
	// calls with a longer one) keep the pinned connection and the socket.
	img := filepath.Join(s.dir, "tiny.raw")
	payload := bytes.Repeat([]byte("rackboot"), 512)
	if err := os.WriteFile(img, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	for i, server := range []string{s.adminURL, "unix:" + s.adminSock} {
		name := fmt.Sprintf("tiny-%d", i)
		if out, err := s.cli(env, "image", "add", name, "--file", img, "--sha256", hex.EncodeToString(sum[:]), "--server", server, "--fingerprint", fp); err != nil {
			t.Fatalf("image add --file over %s: %q, %v", server, out, err)
		}
		// n1 has no BMC: the server's own refusal, not a TLS failure, proves it got there.
		_, err := s.cli(env, "host", "power", "n1", "status", "--server", server, "--fingerprint", fp)
		var ae *admin.APIError
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict {
			t.Fatalf("host power over %s: %v, want the server's 409 (no BMC)", server, err)
		}
	}

	// A certificate that is not the pinned one is refused, with what to do.
	wrong := strings.Repeat("ab", 32)
	_, err := s.cli(env, "host", "list", "--fingerprint", wrong)
	if !errors.Is(err, admin.ErrFingerprint) || !strings.Contains(err.Error(), "--fingerprint") {
		t.Fatalf("wrong pin: err = %v", err)
	}
	// No pin and no CA file: the system's CAs do not know the self-signed certificate.
	_, err = s.cli(map[string]string{"RACKBOOT_SERVER": s.adminURL, "RACKBOOT_TOKEN": "0123456789abcdef"}, "host", "list")
	if err == nil || !strings.Contains(err.Error(), "not the server you trust") {
		t.Fatalf("unpinned: err = %v", err)
	}
	// Plain HTTP to the TLS listener fails; it never answers in clear.
	_, err = s.cli(env, "host", "list", "--server", strings.Replace(s.adminURL, "https:", "http:", 1))
	if err == nil {
		t.Fatal("plain HTTP to the admin API's TLS listener worked")
	}

	// The boot listener serves boot traffic and no admin API, even with the token.
	token, err := admin.ReadTokenFile(s.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/hosts", "/api/v1/hosts/n1", "/api/v1/leases"} {
		req, _ := http.NewRequest("GET", s.bootURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("boot listener GET %s = %d, want 404", path, resp.StatusCode)
		}
	}
	if resp, err := http.Get(s.bootURL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("boot listener /healthz: %v %v", resp, err)
	}

	// The admin TLS listener speaks TLS 1.2 at least, with the generated ECDSA key.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(s.adminURL, "https://"), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
		t.Error("the admin API accepted TLS 1.1")
	}
}

// TestServeLimitsWired: the boot listener is served behind the limits: the iPXE
// script route is rate-limited per source, a Range header of overlapping ranges on an
// iPXE binary is refused with 416, and both refusals are on /metrics.
func TestServeLimitsWired(t *testing.T) {
	s := startServe(t, ", rateLimits: {script: {perSecond: 0.1, burst: 2}}", "")
	codes := map[int]int{}
	for range 5 {
		resp, err := http.Get(s.bootURL + "/ipxe/boot.ipxe?mac=52:54:00:aa:00:09")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[http.StatusTooManyRequests] != 3 {
		t.Errorf("5 script fetches with a burst of 2: %v, want 3 refused with 429", codes)
	}
	req, _ := http.NewRequest("GET", s.bootURL+"/ipxe/bin/undionly.kpxe", nil)
	req.Header.Set("Range", "bytes=0-50000,100-60000")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("overlapping ranges on an iPXE binary: %d, want 416", resp.StatusCode)
	}
	resp, err = http.Get(s.bootURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`rackboot_http_limited_total{limit="rate",route="script"} 3`, `rackboot_http_limited_total{limit="range",route="other"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// serveFails runs serve with dir/data as its data directory and extra YAML, and returns
// the error it stops with; it fails the test if serve starts serving instead.
func serveFails(t *testing.T, dir, extra string) error {
	t.Helper()
	config := filepath.Join(dir, "rackboot.yaml")
	yaml := fmt.Sprintf("dataDir: %s\naddress: 127.0.0.1\nhttp: {listen: \"127.0.0.1:0\"}\ntftp: {disabled: true}\ndhcp: {mode: \"off\"}\n", filepath.Join(dir, "data")) + extra
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logs := &lockedBuffer{}
	root := newRootCmd(&cliEnv{stdout: &bytes.Buffer{}, stderr: logs, getenv: func(string) string { return "" }})
	root.SetArgs([]string{"serve", "--config", config})
	err := root.ExecuteContext(ctx)
	if err == nil || strings.Contains(logs.String(), "rackboot serving") {
		t.Fatalf("serve started (%v); log:\n%s", err, logs)
	}
	return err
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestServeSecretsAtRest: a data directory, API token and inventory that group and
// other users can read are tightened (0700, 0600, 0600) with a log line each; an
// operator's token file or key file that others can read is refused with the fix; the
// key can live outside DATA_DIR (secretKeyFile), so DATA_DIR alone holds no key.
func TestServeSecretsAtRest(t *testing.T) {
	t.Run("tightened", func(t *testing.T) {
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		first := startServeIn(t, dir, "", "") // makes every file
		if err := first.shutdown(); err != nil {
			t.Fatal(err)
		}
		// As `mkdir`, `cp` or an older rackboot may leave them.
		open := map[string]os.FileMode{data: 0o755, filepath.Join(data, "api-token"): 0o644, filepath.Join(data, "inventory.db"): 0o644, filepath.Join(data, "admin.key"): 0o640}
		for path, m := range open {
			if err := os.Chmod(path, m); err != nil {
				t.Fatal(err)
			}
		}
		s := startServeIn(t, dir, "", "")
		for path, was := range open {
			want := os.FileMode(0o600)
			if path == data {
				want = 0o700
			}
			if got := mode(t, path); got != want {
				t.Errorf("%s: mode %04o, want %04o", path, got, want)
			}
			line := fmt.Sprintf("path=%s was=%04o now=%04o", path, was, want)
			if !strings.Contains(s.logs.String(), line) {
				t.Errorf("no log line %q", line)
			}
		}
		if got := mode(t, filepath.Join(data, "secret.key")); got != 0o600 {
			t.Errorf("secret.key mode %04o", got)
		}
	})
	t.Run("operator's token file readable by others", func(t *testing.T) {
		dir := t.TempDir()
		tok := filepath.Join(dir, "token")
		os.WriteFile(tok, []byte("0123456789abcdef0123456789abcdef\n"), 0o644)
		os.Chmod(tok, 0o644)
		err := serveFails(t, dir, "api: {tokenFile: "+tok+", listen: [\"127.0.0.1:0\"]}\n")
		if err == nil || !strings.Contains(err.Error(), "api.tokenFile (--api-token-file)") || !strings.Contains(err.Error(), "chmod 600 "+tok) {
			t.Fatalf("err = %v", err)
		}
		if mode(t, tok) != 0o644 {
			t.Error("rackboot changed the operator's file")
		}
	})
	t.Run("key outside DATA_DIR", func(t *testing.T) {
		dir := t.TempDir()
		keyDir := filepath.Join(t.TempDir(), "etc-rackboot")
		os.Mkdir(keyDir, 0o700)
		key := filepath.Join(keyDir, "secret.key")
		s := startServeIn(t, dir, "", "secretKeyFile: "+key+"\n")
		if mode(t, key) != 0o600 {
			t.Errorf("key mode %04o", mode(t, key))
		}
		if _, err := os.Stat(filepath.Join(s.data, "secret.key")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("DATA_DIR holds a secret.key beside the inventory: %v", err)
		}
		// A BMC password is sealed under that key: enrolment works.
		pw := filepath.Join(dir, "pw")
		os.WriteFile(pw, []byte("hunter2\n"), 0o600)
		env := map[string]string{"RACKBOOT_TOKEN_FILE": s.tokenFile, "RACKBOOT_SERVER": "unix:" + s.adminSock}
		if _, err := s.cli(env, "host", "add", "--mac", "52:54:00:aa:00:02", "--bmc", "ipmi://admin@10.0.9.2:623", "--bmc-password-file", pw); err != nil {
			t.Fatalf("host add with a BMC password: %v", err)
		}
	})
	t.Run("key readable by others", func(t *testing.T) {
		dir := t.TempDir()
		key := filepath.Join(dir, "secret.key")
		os.WriteFile(key, bytes.Repeat([]byte{7}, 32), 0o644)
		os.Chmod(key, 0o644)
		err := serveFails(t, dir, "secretKeyFile: "+key+"\napi: {listen: [\"127.0.0.1:0\"]}\n")
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+key) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestServeCLICompletionAndVersion: against a real `rackboot serve` (TLS, pinned
// certificate, token file), completion lists the hosts and version reports the server's
// build, over TCP and over the Unix socket.
func TestServeCLICompletionAndVersion(t *testing.T) {
	s := startServe(t, "", "")
	env := map[string]string{"RACKBOOT_SERVER": s.adminURL, "RACKBOOT_TOKEN_FILE": s.tokenFile, "RACKBOOT_FINGERPRINT": s.fingerprint(t)}
	if _, err := s.cli(env, "host", "add", "--id", "web1", "--mac", "52:54:00:00:00:01"); err != nil {
		t.Fatal(err)
	}
	out, err := s.cli(env, "__complete", "host", "show", "")
	if err != nil || out != "web1\tenrolled\n:4\n" {
		t.Errorf("__complete host show '': %q, %v", out, err)
	}
	want := "Server: " + describeBuild(currentBuild()) + " at "
	for _, server := range []string{s.adminURL, "unix:" + s.adminSock} {
		env["RACKBOOT_SERVER"] = server
		out, err := s.cli(env, "version")
		if err != nil || !strings.Contains(out, want+server+"\n") {
			t.Errorf("version against %s: %q, %v; want a line %q", server, out, err, want+server)
		}
	}
}
