package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rackboot/rackboot/internal/dhcp"
	"github.com/spf13/pflag"
)

// TestCLIConfigGolden pins `serve --check-config` on a good file and on bad ones
// (unknown keys, wrong types, bad values, not YAML, a bad environment variable, a bad
// flag) with their exact messages, and `config defaults`. serve sees interface br0 as
// 10.77.0.1/24 (fakeIfaces).
func TestCLIConfigGolden(t *testing.T) {
	h := &cliHarness{t: t, env: map[string]string{}, ifAddrs: fakeIfaces}
	check := func(file string, more ...string) []string {
		return append([]string{"serve", "--check-config", "--config", filepath.Join("testdata", "config", file)}, more...)
	}
	runGolden(t, h, []goldenCase{
		{"check-config-good", check("good.yaml")},
		{"check-config-unknown-key", check("unknown-key.yaml")},
		{"check-config-wrong-type", check("wrong-type.yaml")},
		{"check-config-bad-value", check("bad-value.yaml")},
		{"check-config-not-yaml", check("not-yaml.yaml")},
		{"check-config-subnet-without-cidr", check("subnet-without-cidr.yaml")},
		{"check-config-bad-flag", check("good.yaml", "--dhcp-range", "10.77.0.200-10.77.0.100", "--admin-listen", "0.0.0.0")},
		{"check-config-missing-file", check("nope.yaml")},
		{"config-defaults", []string{"config", "defaults"}},
		{"config-unknown-subcommand", []string{"config", "defualts"}},
	})
	h.env["RACKBOOT_DHCP_PORT"] = "sixty-seven"
	h.env["RACKBOOT_DHCP_DNS"] = "10.77.0.1,dns.example"
	h.env["RACKBOOT_PROVISION_TIMEOUTS_BOOT"] = "5s"
	h.env["RACKBOOT_DHCP_RNAGE"] = "10.77.0.10-10.77.0.20" // misspelt: said, not ignored
	h.env["RACKBOOT_SERVER"] = "https://127.0.0.1:8443"    // the CLI's: left alone
	checkGolden(t, "check-config-bad-env", h.transcript(check("good.yaml")...))
	// The environment overrides the file, and flags the environment.
	h.env = map[string]string{"RACKBOOT_DHCP_MODE": "proxy", "RACKBOOT_LOG_LEVEL": "debug", "RACKBOOT_BMC_WORKERS": "4"}
	checkGolden(t, "check-config-env", h.transcript(check("good.yaml", "--log-level", "warn")...))
}

// TestConfigDefaultsCheck: the file `config defaults` prints passes --check-config once
// the interface is named (a default cannot name it), and holds every default.
func TestConfigDefaultsCheck(t *testing.T) {
	b, err := defaultsYAML()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h := &cliHarness{t: t, env: map[string]string{"RACKBOOT_INTERFACE": "br0"}, ifAddrs: fakeIfaces}
	if out, errOut, err := h.run("serve", "--check-config", "--config", path); err != nil || !strings.HasPrefix(out, "configuration OK") {
		t.Fatalf("defaults file: %v\n%s%s", err, out, errOut)
	}
	// Read back, it is the defaults exactly.
	var f serveFlags
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	f.register(fs)
	f.configFile = path
	cfg, err := f.load(fs, &cliEnv{})
	if err != nil {
		t.Fatal(err)
	}
	want := defaultServeConfig()
	cfg.layers, want.layers = nil, nil
	if d := cmp.Diff(want, cfg, cmp.Exporter(func(reflect.Type) bool { return true })); d != "" {
		t.Errorf("defaults file read back (-want +got):\n%s", d)
	}
}

// TestConfigReferenceFresh: docs/config.md is what `rackboot config reference` prints
// (go test -run TestConfigReferenceFresh -update rewrites it).
func TestConfigReferenceFresh(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "config.md")
	got := configReference()
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("docs/config.md is stale: run go test ./cmd/rackboot -run TestConfigReferenceFresh -update (-file +generated):\n%s", d)
	}
}

// TestServeFlagBindings: every flag of serve but --config and --check-config sets one
// setting, and every binding names a setting.
func TestServeFlagBindings(t *testing.T) {
	paths := map[string]bool{}
	for _, lf := range leaves("", reflect.ValueOf(&serveConfig{}).Elem()) {
		paths[lf.path] = true
	}
	bound := map[string]bool{}
	for _, b := range serveFlagBindings() {
		if !paths[b.path] {
			t.Errorf("--%s is bound to %s, which is not a setting", b.flag, b.path)
		}
		bound[b.flag] = true
	}
	newServeCmd(&cliEnv{}).Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "config" && f.Name != "check-config" && !bound[f.Name] {
			t.Errorf("--%s sets no setting: add it to serveFlagBindings", f.Name)
		}
	})
}

func TestEnvName(t *testing.T) {
	for path, want := range map[string]string{
		"dataDir":                          "RACKBOOT_DATA_DIR",
		"dhcp.discovery.maxHosts":          "RACKBOOT_DHCP_DISCOVERY_MAX_HOSTS",
		"bmc.redfishCAFile":                "RACKBOOT_BMC_REDFISH_CA_FILE",
		"boot.arm64Binary":                 "RACKBOOT_BOOT_ARM64_BINARY",
		"http.rateLimits.script.perSecond": "RACKBOOT_HTTP_RATE_LIMITS_SCRIPT_PER_SECOND",
		"capi.leaderElect":                 "RACKBOOT_CAPI_LEADER_ELECT",
	} {
		if got := envName(path); got != want {
			t.Errorf("envName(%s) = %s, want %s", path, got, want)
		}
	}
}

// TestDefaultConfigFile: without --config, serve reads the default file when it exists
// and none when it does not; --config wins over it.
func TestDefaultConfigFile(t *testing.T) {
	dir := t.TempDir()
	def := filepath.Join(dir, "config.yaml")
	other := filepath.Join(dir, "other.yaml")
	os.WriteFile(other, []byte("logLevel: warn\n"), 0o600)
	load := func(args ...string) serveConfig {
		t.Helper()
		var f serveFlags
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		f.register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.load(fs, &cliEnv{defaultConfig: def})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if got := load().LogLevel; got != "info" {
		t.Errorf("no default file: logLevel %q, want the default info", got)
	}
	os.WriteFile(def, []byte("logLevel: debug\n"), 0o600)
	if got := load().LogLevel; got != "debug" {
		t.Errorf("default file: logLevel %q, want debug", got)
	}
	if got := load("--config", other).LogLevel; got != "warn" {
		t.Errorf("--config: logLevel %q, want warn", got)
	}
}

// TestLayersPrecedence: defaults < file < RACKBOOT_* environment < flags, setting by
// setting.
func TestLayersPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("logLevel: debug\nlogFormat: json\ndhcp: {mode: proxy, port: 1067}\nbmc: {workers: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var f serveFlags
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse([]string{"--config", path, "--log-level", "error", "--rack", "rack-a"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"RACKBOOT_LOG_LEVEL": "warn", "RACKBOOT_DHCP_PORT": "2067", "RACKBOOT_CAPI_RACK": "rack-b", "RACKBOOT_TFTP_TIMEOUT": "2"}
	cfg, err := f.load(fs, &cliEnv{getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	got := []any{cfg.LogLevel, cfg.LogFormat, cfg.DHCP.Mode, cfg.DHCP.Port, cfg.BMC.Workers, cfg.CAPI.Rack, cfg.TFTP.Timeout, cfg.HTTP.Port}
	want := []any{"error", "json", dhcp.ModeProxy, 2067, 2, "rack-a", 2 * time.Second, 8080}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("layers (-want +got):\n%s", d)
	}
}

// TestEverySectionValidated: each section's package Validate runs, and its errors come
// out under the section's path with the line that set the value.
func TestEverySectionValidated(t *testing.T) {
	for doc, want := range map[string]string{
		"http: {bodyTimeout: 1ms}":                         "rackboot.yaml:1: http.bodyTimeout: 1ms is too short",
		"http: {rateLimits: {metadata: {maxSources: -1}}}": "rackboot.yaml:1: http.rateLimits.metadata.maxSources: -1",
		"tftp: {retries: 1000}":                            "rackboot.yaml:1: tftp.retries: 1000: give 1-100",
		"dhcp: {declineHold: -1m}":                         "rackboot.yaml:1: dhcp.declineHold: -1m0s: give 1s-24h",
		"dhcp: {workers: 100000}":                          "rackboot.yaml:1: dhcp.workers: 100000",
		"boot: {arm64Binary: arm64/snp.efi}":               "rackboot.yaml:1: boot.arm64Binary: \"arm64/snp.efi\" is neither an iPXE binary rackboot embeds",
		"bmc: {backoff: 1m}":                               "rackboot.yaml:1: bmc.backoff: 1m0s: give 0-5s",
		"bmc: {pingWait: 1h}":                              "rackboot.yaml:1: bmc.pingWait: 1h0m0s: give 0-30s",
		"provision: {interval: 10ms}":                      "rackboot.yaml:1: provision.interval: 10ms is too short",
		"images: {maxAttempts: 1000}":                      "rackboot.yaml:1: images.maxAttempts: 1000: give 1-100",
		"ipxe: {scriptTimeout: 1ms}":                       "rackboot.yaml:1: ipxe.scriptTimeout: 1ms: give at least 1s",
		"metadata: {timeout: 1ms}":                         "rackboot.yaml:1: metadata.timeout: 1ms: give at least 1s",
		"trust: {keyTTL: 1s}":                              "rackboot.yaml:1: trust.keyTTL: 1s: give 10s-24h",
		"inventory: {lockTimeout: 1h}":                     "rackboot.yaml:1: inventory.lockTimeout: 1h0m0s: give 0-10m",
		"capi: {concurrency: 5000}":                        "rackboot.yaml:1: capi.concurrency: 5000: give 1-1000",
	} {
		_, err := resolveYAML(t, doc+"\n")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v\nwant it to contain %q", doc, err, want)
		}
	}
}

// TestSettingNamesUnique: no two settings of a section share a name, which inline
// composition of packages' Configs could otherwise bring about unnoticed.
func TestSettingNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range allPaths("", reflect.TypeFor[serveConfig]()) {
		if seen[p] {
			t.Errorf("two settings are called %s", p)
		}
		seen[p] = true
	}
}
