package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeNotifiesSystemd: under systemd's Type=notify, serve sends READY=1 to
// $NOTIFY_SOCKET once it serves (/readyz answers ok at that moment), and STOPPING=1 when
// it shuts down.
func TestServeNotifiesSystemd(t *testing.T) {
	dir := t.TempDir()
	sockPath := filepath.Join(dir, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	config := filepath.Join(dir, "rackboot.yaml")
	yaml := fmt.Sprintf(`dataDir: %s
address: 127.0.0.1
http: {listen: "127.0.0.1:0"}
api: {listen: ["unix:%s"]}
tftp: {disabled: true}
dhcp: {mode: "off"}
`, filepath.Join(dir, "data"), filepath.Join(dir, "admin.sock"))
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	env := map[string]string{"NOTIFY_SOCKET": sockPath}
	root := newRootCmd(&cliEnv{stdout: &bytes.Buffer{}, stderr: logs, getenv: func(k string) string { return env[k] }})
	root.SetArgs([]string{"serve", "--config", config})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	read := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		sock.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := sock.Read(buf)
		if err != nil {
			t.Fatalf("no notification from serve: %v\nlog:\n%s", err, logs)
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1\nSTATUS=serving" {
		t.Fatalf("first notification = %q, want READY=1 and STATUS", got)
	}
	m := servingRe.FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("READY=1 sent before serve logged its listener:\n%s", logs)
	}
	resp, err := http.Get("http://" + m[1] + "/readyz")
	if err != nil {
		t.Fatalf("READY=1 sent but the boot listener does not answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("READY=1 sent but /readyz = %s", resp.Status)
	}

	cancel()
	if got := read(); got != "STOPPING=1" {
		t.Errorf("notification on shutdown = %q, want STOPPING=1", got)
	}
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30 s")
	}
}

// TestPackagedConfigLoads: the commented default /etc/rackboot/config.yaml the package
// ships (packaging/config.yaml) is a valid serve configuration.
func TestPackagedConfigLoads(t *testing.T) {
	var f serveFlags
	f.configFile = filepath.Join("..", "..", "packaging", "config.yaml")
	cfg, err := f.load(newServeCmd(&cliEnv{}).Flags(), &cliEnv{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/var/lib/rackboot" || cfg.DHCP.Mode != "off" {
		t.Errorf("packaged config: dataDir %q, dhcp.mode %q; want /var/lib/rackboot and off (no DHCP server by surprise)", cfg.DataDir, cfg.DHCP.Mode)
	}
	cfg.Address = "10.0.0.2" // what the operator writes before starting it
	if _, err := cfg.resolve(func(string) ([]netip.Prefix, error) { return nil, nil }); err != nil {
		t.Errorf("packaged config with an address does not resolve: %v", err)
	}
	// And as the operator checks it, with the address from the unit's environment.
	h := &cliHarness{t: t, env: map[string]string{"RACKBOOT_ADDRESS": "10.0.0.2"}}
	if out, errOut, err := h.run("serve", "--check-config", "--config", f.configFile); err != nil || !strings.HasPrefix(out, "configuration OK") {
		t.Errorf("serve --check-config on the packaged config: %v\n%s%s", err, out, errOut)
	}
}
