package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/adminserver"
	"github.com/rackboot/rackboot/internal/inventory"
)

var updateGolden = flag.Bool("update", false, "rewrite the CLI golden files in testdata/cli/")

// TestMain lets the test binary be the rackboot binary (RACKBOOT_CLI_TEST_MAIN=1), so
// exit codes are checked on a real process without building one.
func TestMain(m *testing.M) {
	if os.Getenv("RACKBOOT_CLI_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// goldenServerVersion is what the golden harness's server says it is.
var goldenServerVersion = admin.VersionInfo{Version: "v0.9.0", Commit: "0123456789abcdef0123456789abcdef01234567",
	BuildDate: "2026-12-01T00:00:00Z", GoVersion: "go1.26.0"}

// newGoldenHarness is the CLI against a real admin API (BoltStore and image catalog in a
// temporary data directory, loopback HTTP) holding a fixed inventory: three hosts (one
// claimed), a timeline, a lease and an image.
func newGoldenHarness(t *testing.T) *cliHarness {
	t.Helper()
	store, cat := newTestCatalog(t)
	api, err := adminserver.NewHandler(adminserver.Config{Store: store, Token: cliToken, Images: cat, Version: goldenServerVersion,
		Subnets: []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")}, ServerIP: netip.MustParseAddr("192.168.50.1")})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", api)
	h := serveCLI(t, store, mux)

	h.mustRun("host", "add", "--id", "web1", "--mac", "52:54:00:00:00:01", "--mac", "52:54:00:00:00:03", "--hostname", "web1.rack1",
		"--ip", "192.168.50.11", "--label", "role=web", "--label", "rack=r1")
	h.mustRun("host", "add", "--id", "db1", "--mac", "52:54:00:00:00:02", "--ip", "192.168.50.12", "--label", "role=db", "--label", "rack=r2",
		"--boot-kernel", "debian/vmlinuz", "--boot-initrd", "debian/initrd.img")
	h.mustRun("host", "add", "--id", "spare", "--mac", "52:54:00:00:00:04", "--label", "rack=r2")
	ctx := context.Background()
	// db1 is inspected (available) and claimed by a Cluster API machine.
	if _, err := store.UpdateHost(ctx, "db1", func(host *inventory.Host) error {
		host.State, host.Arch, host.Firmware = inventory.StateAvailable, "x86_64", inventory.FirmwareUEFI
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ClaimHost(ctx, inventory.ClaimRequest{Owner: "default/cluster-a-md-0-x7k2p",
		Match: func(host *inventory.Host) bool { return host.ID == "db1" }}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	if _, err := store.AppendEvent(ctx, "web1", inventory.Event{Time: at, Type: "dhcp.offer", Message: "offered 192.168.50.11",
		Fields: map[string]string{"ip": "192.168.50.11", "file": "undionly.kpxe"}}); err != nil {
		t.Fatal(err)
	}
	if err := store.PutLease(ctx, inventory.Lease{MAC: "52:54:00:00:00:01", IP: "192.168.50.11", Hostname: "web1.rack1",
		State: inventory.LeaseBound, Expires: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	data := strings.Repeat("disk image bytes ", 1000)
	s := sha256.Sum256([]byte(data))
	file := writeTemp(t, "disk.img", data)
	h.mustRun("image", "add", "debian-12", "--file", file, "--sha256", hex.EncodeToString(s[:]), "--format", "raw")
	return h
}

var (
	timestampRe = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})`)
	portRe      = regexp.MustCompile(`127\.0\.0\.1:(\d+)`)
	goVersionRe = regexp.MustCompile(`go1\.\d+(\.\d+)?[^ ,)"\n]*`)
)

// normalize replaces what changes from run to run: timestamps (by a placeholder of
// the same width where it is a table cell), loopback ports and this toolchain's version.
func normalize(s string) string {
	s = timestampRe.ReplaceAllStringFunc(s, func(ts string) string {
		if strings.HasPrefix(ts, "2026-11-24T10:00:00") || strings.HasPrefix(ts, "2099-") || strings.HasPrefix(ts, "2026-12-01T00:00:00") {
			return ts // fixed by the test
		}
		if len(ts) == len("2006-01-02T15:04:05Z") {
			return "YYYY-MM-DDThh:mm:ssZ"
		}
		return "TIMESTAMP"
	})
	s = portRe.ReplaceAllStringFunc(s, func(a string) string {
		if a == "127.0.0.1:8443" || a == "127.0.0.1:1" {
			return a // the default server; the unreachable one
		}
		return "127.0.0.1:PORT"
	})
	return goVersionRe.ReplaceAllString(s, "GOVERSION")
}

// transcript runs `rackboot ARGS` in-process and renders what a terminal would show:
// stdout, stderr with main's "rackboot: ERROR" line, and main's exit code.
func (h *cliHarness) transcript(args ...string) string {
	stdout, stderr, err := h.run(args...)
	return formatTranscript(args, stdout, stderr, err)
}

// formatTranscript renders a run of `rackboot ARGS` as transcript does.
func formatTranscript(args []string, stdout, stderr string, err error) string {
	code := 0
	if err != nil {
		stderr += "rackboot: " + err.Error() + "\n"
		code = exitCode(err)
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " '\"{}()!$\\\t\n*") {
			a = "'" + a + "'"
		}
		quoted[i] = a
	}
	return normalize(fmt.Sprintf("$ rackboot %s\nexit %d\n-- stdout --\n%s-- stderr --\n%s", strings.Join(quoted, " "), code, stdout, stderr))
}

// checkGolden compares got with testdata/cli/NAME.golden (rewritten with -update).
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "cli", name+".golden")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s (-want +got):\n%s", path, d)
	}
}

type goldenCase struct {
	name string
	args []string
}

func runGolden(t *testing.T, h *cliHarness, cases []goldenCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkGolden(t, c.name, h.transcript(c.args...)) })
	}
}

// TestCLIOutputGolden pins every -o of host list/show/events/leases and image
// list/show, the list filters, and their usage errors.
func TestCLIOutputGolden(t *testing.T) {
	h := newGoldenHarness(t)
	runGolden(t, h, []goldenCase{
		{"host-list", []string{"host", "list"}},
		{"host-list-wide", []string{"host", "list", "-o", "wide"}},
		{"host-list-no-headers", []string{"host", "list", "--no-headers"}},
		{"host-list-json", []string{"host", "list", "-o", "json"}},
		{"host-list-yaml", []string{"host", "list", "-o", "yaml"}},
		{"host-list-name", []string{"host", "list", "-o", "name"}},
		{"host-list-jsonpath", []string{"host", "list", "-o", `jsonpath={range .items[*]}{.id}{"\t"}{.ip}{"\n"}{end}`}},
		{"host-list-jsonpath-relaxed", []string{"host", "list", "-o", "jsonpath=.items[*].id"}},
		{"host-list-selector", []string{"host", "list", "-l", "role=web"}},
		{"host-list-selector-set", []string{"host", "list", "-l", "rack in (r1,r2),role!=web"}},
		{"host-list-selector-exists", []string{"host", "list", "-l", "!role", "-o", "name"}},
		{"host-list-state", []string{"host", "list", "--state", "available"}},
		{"host-list-states", []string{"host", "list", "--state", "enrolled,failed", "-o", "name"}},
		{"host-list-owner", []string{"host", "list", "--owner", "default/cluster-a-md-0-x7k2p", "-o", "name"}},
		{"host-list-no-match", []string{"host", "list", "--state", "failed"}},
		{"host-list-bad-selector", []string{"host", "list", "-l", "role in (web"}},
		{"host-list-bad-state", []string{"host", "list", "--state", "avaliable"}},
		{"host-list-bad-output", []string{"host", "list", "-o", "xml"}},
		{"host-list-bad-jsonpath", []string{"host", "list", "-o", "jsonpath={.items[}"}},
		{"host-show", []string{"host", "show", "db1"}},
		{"host-show-json", []string{"host", "show", "db1", "-o", "json"}},
		{"host-show-table", []string{"host", "show", "db1", "-o", "table"}},
		{"host-show-wide", []string{"host", "show", "db1", "-o", "wide"}},
		{"host-show-name", []string{"host", "show", "db1", "-o", "name"}},
		{"host-show-jsonpath", []string{"host", "show", "db1", "-o", "jsonpath={.claim.owner}"}},
		{"host-show-unknown", []string{"host", "show", "nope"}},
		{"host-events", []string{"host", "events", "web1"}},
		{"host-events-no-headers", []string{"host", "events", "web1", "--no-headers"}},
		{"host-events-json", []string{"host", "events", "web1", "-o", "json"}},
		{"host-events-yaml", []string{"host", "events", "web1", "-o", "yaml"}},
		{"host-events-name", []string{"host", "events", "web1", "-o", "name"}},
		{"host-events-jsonpath", []string{"host", "events", "web1", "-o", `jsonpath={range .items[*]}{.seq} {.type}{"\n"}{end}`}},
		{"host-leases", []string{"host", "leases"}},
		{"host-leases-wide", []string{"host", "leases", "-o", "wide"}},
		{"host-leases-json", []string{"host", "leases", "-o", "json"}},
		{"host-leases-name", []string{"host", "leases", "-o", "name"}},
		{"image-list", []string{"image", "list"}},
		{"image-list-wide", []string{"image", "list", "-o", "wide"}},
		{"image-list-json", []string{"image", "list", "-o", "json"}},
		{"image-list-yaml", []string{"image", "list", "-o", "yaml"}},
		{"image-list-name", []string{"image", "list", "-o", "name"}},
		{"image-list-jsonpath", []string{"image", "list", "-o", "jsonpath={.items[0].sha256}"}},
		{"image-show", []string{"image", "show", "debian-12"}},
		{"image-show-json", []string{"image", "show", "debian-12", "-o", "json"}},
		{"image-show-table", []string{"image", "show", "debian-12", "-o", "table", "--no-headers"}},
		{"image-show-name", []string{"image", "show", "debian-12", "-o", "name"}},
	})
}

// TestCLIHostEditGolden edits hosts and checks that edit refuses what add refuses.
func TestCLIHostEditGolden(t *testing.T) {
	h := newGoldenHarness(t)
	runGolden(t, h, []goldenCase{
		{"edit", []string{"host", "edit", "web1", "--ip", "192.168.50.21", "--hostname", "www1", "--label", "rack=r3", "--remove-label", "role"}},
		{"edit-after", []string{"host", "list", "-o", "wide", "-l", "rack=r3"}},
		{"edit-macs-json", []string{"host", "edit", "spare", "--mac", "52-54-00-00-00-05", "--mac", "52:54:00:00:00:06", "--ip", "", "-o", "jsonpath={.macs}"}},
		{"edit-clear", []string{"host", "edit", "web1", "--ip", "", "--hostname", ""}},
		{"edit-nothing", []string{"host", "edit", "web1"}},
		{"edit-bad-mac", []string{"host", "edit", "web1", "--mac", "52:54:00:00:00:zz"}},
		{"edit-bad-ip", []string{"host", "edit", "web1", "--ip", "10.0.0.5"}},
		{"edit-server-ip", []string{"host", "edit", "web1", "--ip", "192.168.50.1"}},
		{"edit-bad-hostname", []string{"host", "edit", "web1", "--hostname", "bad_name"}},
		{"edit-bad-label", []string{"host", "edit", "web1", "--label", "role"}},
		{"edit-mac-taken", []string{"host", "edit", "web1", "--mac", "52:54:00:00:00:02"}},
		{"edit-ip-taken", []string{"host", "edit", "web1", "--ip", "192.168.50.12"}},
		{"edit-claimed-labels", []string{"host", "edit", "db1", "--label", "tier=gold"}},
		{"edit-unknown", []string{"host", "edit", "nope", "--hostname", "x"}},
		{"edit-events", []string{"host", "events", "web1", "-o", `jsonpath={range .items[?(@.type=="admin.edited")]}{.fields.changed}{"\n"}{end}`}},
		{"add-name", []string{"host", "add", "--id", "new1", "--mac", "52:54:00:00:00:42", "-o", "name"}},
		{"label-jsonpath", []string{"host", "label", "new1", "tier=gold", "-o", "jsonpath={.labels}"}},
		{"boot-clear-jsonpath", []string{"host", "boot", "db1", "--clear", "-o", "jsonpath={.boot}"}},
		{"label-bad-output", []string{"host", "label", "new1", "tier=gold", "-o", "wide"}},
	})
	if _, err := h.store.UpdateHost(context.Background(), "spare", func(host *inventory.Host) error {
		host.State = inventory.StateProvisioned
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "edit-provisioned", h.transcript("host", "edit", "spare", "--ip", "192.168.50.30"))
	checkGolden(t, "edit-provisioned-hostname", h.transcript("host", "edit", "spare", "--hostname", "spare1"))
	// The server checks on its own: a client that skips the CLI's checks gets the same refusal.
	c := &admin.Client{BaseURL: h.srv.URL, Token: cliToken}
	bad := "192.168.99.1"
	_, err := c.EditHost(context.Background(), "web1", admin.HostPatch{IP: &bad})
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !strings.Contains(ae.Message, "outside the DHCP subnets") {
		t.Errorf("PATCH with an IP outside the subnets: %v", err)
	}
}

// TestCLIUsageGolden pins unknown commands, wrong arguments and flags (exit 2, with the
// nearest command), failures (exit 1) and version.
func TestCLIUsageGolden(t *testing.T) {
	h := newGoldenHarness(t)
	oldV, oldC, oldD := version, commit, buildDate
	version, commit, buildDate = "v1.0.0-test", "fedcba9876543210fedcba9876543210fedcba98", "2026-12-01T00:00:00Z"
	t.Cleanup(func() { version, commit, buildDate = oldV, oldC, oldD })
	runGolden(t, h, []goldenCase{
		{"unknown-subcommand", []string{"host", "lsit"}},
		{"unknown-command", []string{"hots", "list"}},
		{"unknown-image-subcommand", []string{"image", "shwo", "x"}},
		{"unknown-flag", []string{"host", "list", "--colour"}},
		{"missing-argument", []string{"host", "show"}},
		{"extra-argument", []string{"host", "list", "web1"}},
		{"bad-power-action", []string{"host", "power", "web1", "of"}},
		{"failure", []string{"host", "rm", "nope"}},
		{"group-help", []string{"image"}},
		{"version", []string{"version"}},
		{"version-flag", []string{"--version"}},
		{"version-json", []string{"version", "-o", "json"}},
		{"version-client", []string{"version", "--client"}},
	})
	h.env["RACKBOOT_SERVER"] = "http://127.0.0.1:1"
	checkGolden(t, "version-unreachable", h.transcript("version"))
	// A server from before /api/v1/version answers 404 there.
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error": "404 page not found"}`))
	}))
	t.Cleanup(old.Close)
	h.env["RACKBOOT_SERVER"] = old.URL
	checkGolden(t, "version-old-server", h.transcript("version"))
}

// TestCLICompletionGolden pins `rackboot __complete ...` (what the shell scripts run):
// host IDs and image names from the server, actions, and enum flag values.
func TestCLICompletionGolden(t *testing.T) {
	h := newGoldenHarness(t)
	runGolden(t, h, []goldenCase{
		{"complete-host-show", []string{"__complete", "host", "show", ""}},
		{"complete-host-show-prefix", []string{"__complete", "host", "show", "w"}},
		{"complete-host-show-second", []string{"__complete", "host", "show", "web1", ""}},
		{"complete-host-edit", []string{"__complete", "host", "edit", ""}},
		{"complete-host-power-action", []string{"__complete", "host", "power", "web1", ""}},
		{"complete-host-bootdev", []string{"__complete", "host", "bootdev", "web1", ""}},
		{"complete-host-list-state", []string{"__complete", "host", "list", "--state", ""}},
		{"complete-host-list-output", []string{"__complete", "host", "list", "-o", ""}},
		{"complete-host-provision-image", []string{"__complete", "host", "provision", "db1", "--image", ""}},
		{"complete-host-release-wipe", []string{"__complete", "host", "release", "db1", "--wipe", ""}},
		{"complete-image-show", []string{"__complete", "image", "show", ""}},
		{"complete-image-add-format", []string{"__complete", "image", "add", "x", "--format", ""}},
		{"complete-host-subcommands", []string{"__complete", "host", "l"}},
	})
	// No server: complete nothing rather than file names.
	h.env["RACKBOOT_SERVER"] = "http://127.0.0.1:1"
	checkGolden(t, "complete-unreachable", h.transcript("__complete", "host", "show", ""))
}

// TestCLIExitCodes runs the real process (this test binary as rackboot) for the exit
// codes main gives: 0, 1 for a failure, 2 for a usage error.
func TestCLIExitCodes(t *testing.T) {
	h := newCLIHarness(t)
	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"host", "list"}, 0, ""},
		{[]string{"host", "lsit"}, 2, "\tlist\n"},
		{[]string{"hots"}, 2, "Did you mean this?\n\thost\n"},
		{[]string{"host", "list", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"host", "show"}, 2, "accepts 1 arg(s), received 0"},
		{[]string{"host", "show", "nope"}, 1, `no host with ID "nope"`},
		{[]string{"--version"}, 0, ""},
	} {
		cmd := exec.Command(os.Args[0], c.args...)
		cmd.Env = append(os.Environ(), "RACKBOOT_CLI_TEST_MAIN=1", "RACKBOOT_SERVER="+h.srv.URL, "RACKBOOT_TOKEN="+cliToken)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || !strings.Contains(stderr.String(), c.stderr) {
			t.Errorf("rackboot %s: exit %d, want %d; stderr:\n%s", strings.Join(c.args, " "), code, c.code, stderr.String())
		}
	}
}
