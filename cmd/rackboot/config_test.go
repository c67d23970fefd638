package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/rackboot/rackboot/internal/dhcp"
	"github.com/rackboot/rackboot/internal/provision"
)

func fakeIfaces(name string) ([]netip.Prefix, error) {
	if name == "br0" {
		return []netip.Prefix{netip.MustParsePrefix("fe80::1/64"), netip.MustParsePrefix("10.77.0.1/24")}, nil
	}
	return nil, os.ErrNotExist
}

func loadArgs(t *testing.T, args ...string) (serveConfig, error) {
	t.Helper()
	var f serveFlags
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f.load(fs, &cliEnv{})
}

func TestFlagsOverrideFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rackboot.yaml")
	if err := os.WriteFile(path, []byte(`
dataDir: /srv/rb
interface: br0
http: {port: 9000}
dhcp:
  mode: proxy
  range: 10.77.0.100-10.77.0.150
  dns: [10.77.0.53]
  leaseTime: 2h
  subnets:
    - cidr: 10.78.0.0/24
      range: 10.78.0.10-10.78.0.20
      router: 10.78.0.1
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadArgs(t, "--config", path, "--http-port", "8081", "--dhcp-mode", "server", "--dhcp-dns", "10.77.0.2, 10.77.0.3")
	if err != nil {
		t.Fatal(err)
	}
	r, err := cfg.resolve(fakeIfaces)
	if err != nil {
		t.Fatal(err)
	}
	if r.DataDir != "/srv/rb" || r.HTTP.Port != 8081 || r.DHCP.Mode != "server" || r.Addr != netip.MustParseAddr("10.77.0.1") {
		t.Fatalf("got dataDir=%s port=%d mode=%s addr=%s", r.DataDir, r.HTTP.Port, r.DHCP.Mode, r.Addr)
	}
	want := []dhcp.Subnet{
		{
			Prefix: netip.MustParsePrefix("10.77.0.0/24"), Range: dhcp.Range{Start: netip.MustParseAddr("10.77.0.100"), End: netip.MustParseAddr("10.77.0.150")},
			DNS: []netip.Addr{netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")}, LeaseTime: 2 * time.Hour,
		},
		{
			Prefix: netip.MustParsePrefix("10.78.0.0/24"), Range: dhcp.Range{Start: netip.MustParseAddr("10.78.0.10"), End: netip.MustParseAddr("10.78.0.20")},
			Router: netip.MustParseAddr("10.78.0.1"), LeaseTime: 2 * time.Hour,
		},
	}
	if d := cmp.Diff(want, r.DHCPConfig.Subnets, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Fatalf("subnets (-want +got):\n%s", d)
	}
}

func TestBadSettingsNameFieldAndFix(t *testing.T) {
	cases := []struct {
		args []string
		want []string // substrings of the error
	}{
		{[]string{"--dhcp-mode", "auto"}, []string{"--dhcp-mode: dhcp.mode: ", `"auto"`, "use server"}},
		{[]string{"--dhcp-range", "10.77.0.200-10.77.0.100"}, []string{"--dhcp-range: dhcp.range: ", "start is after end"}},
		{[]string{"--dhcp-range", "10.99.0.1-10.99.0.9"}, []string{"--dhcp-range: dhcp.range: ", "not inside the subnet 10.77.0.0/24"}},
		{[]string{"--dhcp-range", "10.77.0.1"}, []string{"--dhcp-range: dhcp.range: ", "START-END"}},
		{[]string{"--dhcp-router", "10.1.1.1"}, []string{"--dhcp-router: dhcp.router: ", "inside 10.77.0.0/24"}},
		{[]string{"--dhcp-dns", "dns.example"}, []string{"--dhcp-dns: dhcp.dns: ", "not an IP address"}},
		{[]string{"--unknown-hosts", "allow"}, []string{"--unknown-hosts: dhcp.unknownHosts: ", "ignore or discover"}},
		{[]string{"--http-port", "70000"}, []string{"--http-port: http.port: ", "1-65535"}},
		{[]string{"--interface", "eth9"}, []string{"--interface: interface: ", "exists"}},
		{[]string{"--address", "10.77.0.300"}, []string{"--address: address: ", "not an IPv4"}},
		{[]string{"--address", "10.77.5.1"}, []string{"--address: address: ", "not an address of interface br0"}},
		{[]string{"--log-level", "loud"}, []string{"--log-level: logLevel: "}},
		{[]string{"--unknown-hosts", "discover"}, []string{"dhcp.range: is empty"}},
		{[]string{"--dhcp-port", "70000"}, []string{"--dhcp-port: dhcp.port: 70000 is not a UDP port"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			cfg, err := loadArgs(t, append([]string{"--interface", "br0"}, c.args...)...)
			if err == nil {
				_, err = cfg.resolve(fakeIfaces)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestInterfaceRequiredUnlessDHCPOff(t *testing.T) {
	cfg, _ := loadArgs(t)
	if _, err := cfg.resolve(fakeIfaces); err == nil || !strings.Contains(err.Error(), "interface: is empty") {
		t.Fatalf("no interface in server mode: %v", err)
	}
	cfg, _ = loadArgs(t, "--dhcp-mode", "off", "--address", "127.0.0.1")
	if _, err := cfg.resolve(fakeIfaces); err != nil {
		t.Fatalf("dhcp off with an address: %v", err)
	}
}

func TestConfigFileUnknownFieldIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("dhcp:\n  rnage: 10.0.0.1-10.0.0.2\n"), 0o600)
	_, err := loadArgs(t, "--config", path)
	if err == nil || !strings.Contains(err.Error(), "rnage") {
		t.Fatalf("typo accepted or not named: %v", err)
	}
	os.WriteFile(path, []byte("dhcp:\n  leaseTime: soon\n"), 0o600)
	_, err = loadArgs(t, "--config", path)
	if err == nil || !strings.Contains(err.Error(), "duration") {
		t.Fatalf("bad duration: %v", err)
	}
}

func TestOverlappingSubnetsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("dhcp:\n  subnets:\n    - cidr: 10.77.0.128/25\n"), 0o600)
	cfg, err := loadArgs(t, "--config", path, "--interface", "br0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.resolve(fakeIfaces); err == nil || !strings.Contains(err.Error(), "dhcp.subnets[0].cidr") {
		t.Fatalf("overlap: %v", err)
	}
}

// resolveYAML writes doc as the config file and resolves it with DHCP off, so only the
// settings under test can fail.
func resolveYAML(t *testing.T, doc string) (*resolved, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rackboot.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var f serveFlags
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse([]string{"--config", path, "--dhcp-mode", "off", "--address", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	r, _, err := loadServeConfig(fs, &f, &cliEnv{ifAddrs: fakeIfaces})
	return r, err
}

func TestProvisionConfig(t *testing.T) {
	defaults := provision.Timeouts{
		Boot: provision.DefaultBootTimeout, Stall: provision.DefaultStallTimeout, DiskBoot: provision.DefaultDiskBootTimeout,
		RebootGrace: provision.DefaultRebootGrace, BootAttempts: provision.DefaultBootAttempts,
		PowerAttempts: provision.DefaultPowerAttempts, PowerBackoff: provision.DefaultPowerBackoff,
	}
	cases := []struct {
		name, doc string
		want      func(*provision.Timeouts)
	}{
		{"no section takes the defaults", "logLevel: info\n", func(*provision.Timeouts) {}},
		{"empty section takes the defaults", "provision: {}\n", func(*provision.Timeouts) {}},
		{"every setting", `
provision:
  timeouts: {boot: 20m, stall: 5m, diskBoot: 1h, rebootGrace: 45s}
  retries: {bootAttempts: 5, powerAttempts: 2, powerBackoff: 1m}
`, func(o *provision.Timeouts) {
			*o = provision.Timeouts{Boot: 20 * time.Minute, Stall: 5 * time.Minute, DiskBoot: time.Hour, RebootGrace: 45 * time.Second,
				BootAttempts: 5, PowerAttempts: 2, PowerBackoff: time.Minute}
		}},
		{"one setting keeps the other defaults", "provision: {timeouts: {boot: 40m}}\n", func(o *provision.Timeouts) { o.Boot = 40 * time.Minute }},
		{"a bare number is seconds", "provision: {timeouts: {stall: 600}, retries: {powerBackoff: 2}}\n", func(o *provision.Timeouts) {
			o.Stall, o.PowerBackoff = 10*time.Minute, 2*time.Second
		}},
		{"one attempt means no retry", "provision: {retries: {bootAttempts: 1}}\n", func(o *provision.Timeouts) { o.BootAttempts = 1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := resolveYAML(t, c.doc)
			if err != nil {
				t.Fatal(err)
			}
			want := defaults
			c.want(&want)
			if d := cmp.Diff(want, r.Provision.Config().Timeouts); d != "" {
				t.Errorf("provision.Timeouts (-want +got):\n%s", d)
			}
		})
	}
}

func TestProvisionConfigErrorsNameFieldAndFix(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string // substrings of the error
	}{
		{"unparseable", "provision: {timeouts: {boot: soon}}", []string{`provision.timeouts.boot: "soon" is not a duration`, `"15m"`}},
		{"unparseable list", "provision: {timeouts: {stall: [1]}}", []string{"provision.timeouts.stall: want a single value, got a list"}},
		{"negative", "provision: {timeouts: {stall: -5m}}", []string{"provision.timeouts.stall: -5m0s: give a positive duration such as 15m"}},
		{"zero", "provision: {timeouts: {diskBoot: 0s}}", []string{"provision.timeouts.diskBoot: 0s: give a positive duration", "leave it out for the default"}},
		{"zero seconds", "provision: {timeouts: {rebootGrace: 0}}", []string{"provision.timeouts.rebootGrace: 0s: give a positive duration such as 30s"}},
		{"too short", "provision: {timeouts: {boot: 10s}}", []string{"provision.timeouts.boot: 10s is too short: give at least 30s"}},
		{"typo ms", "provision: {retries: {powerBackoff: 30ms}}", []string{"provision.retries.powerBackoff: 30ms is too short: give at least 1s"}},
		{"zero attempts", "provision: {retries: {bootAttempts: 0}}", []string{"provision.retries.bootAttempts: 0: give 1-100"}},
		{"negative attempts", "provision: {retries: {powerAttempts: -1}}", []string{"provision.retries.powerAttempts: -1: give 1-100"}},
		{"too many attempts", "provision: {retries: {powerAttempts: 1000}}", []string{"provision.retries.powerAttempts: 1000: give 1-100"}},
		{"every bad one is named", "provision: {timeouts: {boot: soon, stall: -1s}, retries: {bootAttempts: 0}}", []string{
			"provision.timeouts.boot:", "provision.timeouts.stall:", "provision.retries.bootAttempts:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := resolveYAML(t, c.doc)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// A misspelt key is refused like any other.
	if _, err := resolveYAML(t, "provision: {timeouts: {diskBot: 1h}}"); err == nil || !strings.Contains(err.Error(), "diskBot") {
		t.Errorf("misspelt key: %v", err)
	}
}

// TestLimitSettingsNameYAMLPath: the limits and the admin API's settings are checked at
// start, and each error names the YAML path (and flag) and the fix.
func TestLimitSettingsNameYAMLPath(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"tftp: {maxTransfers: -1}", "tftp.maxTransfers: -1: give a positive number"},
		{"tftp: {maxTransfers: 2, maxTransfersPerSource: 3}", "tftp.maxTransfersPerSource: 3 is above maxTransfers 2"},
		{"http: {bodyTimeout: 10ms}", "http.bodyTimeout: 10ms is too short"},
		{"http: {bodyTimeout: soon}", `http.bodyTimeout: "soon" is not a duration`},
		{"http: {maxRanges: -1}", "http.maxRanges: -1: give at least 1"},
		{"http: {rateLimits: {script: {perSecond: 0, burst: 5}}}", "http.rateLimits.script.perSecond: 0: give a positive rate"},
		{"http: {rateLimits: {metadata: {perSecond: 1, burst: 0}}}", "http.rateLimits.metadata.burst: 0: give at least 1"},
		{`api: {listen: [":8443"]}`, "c.yaml:3: api.listen[0]: \":8443\" listens on every address"},
		{`api: {listen: ["unix:rel.sock"]}`, "c.yaml:3: api.listen[0]: "},
		{`api: {tlsCertFile: /etc/rackboot/admin.crt}`, "c.yaml:3: api.tlsCertFile: give the certificate and its key"},
	}
	for _, tc := range cases {
		t.Run(tc.yaml, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte("dhcp: {mode: \"off\"}\naddress: 127.0.0.1\n"+tc.yaml+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadArgs(t, "--config", path)
			if err == nil {
				_, err = cfg.resolve(fakeIfaces)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
	// The defaults resolve, with the admin API on loopback and a socket in DATA_DIR.
	cfg, _ := loadArgs(t, "--dhcp-mode", "off", "--address", "127.0.0.1", "--data-dir", "/srv/rb")
	r, err := cfg.resolve(fakeIfaces)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range r.AdminListen {
		got = append(got, a.String())
	}
	if want := []string{"127.0.0.1:8443", "unix:/srv/rb/admin.sock"}; !slices.Equal(got, want) {
		t.Errorf("admin listen = %v, want %v", got, want)
	}
	cfg, _ = loadArgs(t, "--dhcp-mode", "off", "--address", "127.0.0.1", "--admin-listen", "10.0.0.1:9443,unix:/run/rb.sock")
	r, err = cfg.resolve(fakeIfaces)
	if err != nil || len(r.AdminListen) != 2 || r.AdminListen[0].String() != "10.0.0.1:9443" {
		t.Fatalf("--admin-listen: %v, %v", r, err)
	}
}

// TestDiscoveryConfig: the discovery limits have defaults, take the file's values and
// refuse nonsense naming their YAML path.
func TestDiscoveryConfig(t *testing.T) {
	r, err := resolveYAML(t, "logLevel: info\n")
	if err != nil {
		t.Fatal(err)
	}
	if d := r.DHCP.Discovery; d.MaxHosts != dhcp.DefaultDiscoveryMaxHosts || d.Rate != dhcp.DefaultDiscoveryRate || d.Burst != dhcp.DefaultDiscoveryBurst {
		t.Errorf("defaults %+v", d)
	}
	r, err = resolveYAML(t, "dhcp:\n  discovery: {maxHosts: 40}\n")
	if err != nil {
		t.Fatal(err)
	}
	if d := r.DHCP.Discovery; d.MaxHosts != 40 || d.Rate != dhcp.DefaultDiscoveryRate {
		t.Errorf("maxHosts 40: %+v", d)
	}
	for doc, want := range map[string]string{
		"dhcp:\n  discovery: {maxHosts: -1}\n":       "dhcp.discovery.maxHosts",
		"dhcp:\n  discovery: {rate: -1}\n":           "dhcp.discovery.rate",
		"dhcp:\n  discovery: {burst: 1000001}\n":     "dhcp.discovery.burst",
		"dhcp:\n  discovery: {rate: 1000001}\n":      "dhcp.discovery.rate",
		"provision: {acceptSerials: [\"\"]}\n":       "provision.acceptSerials[0]",
		"dhcp:\n  discovery: {acceptSerials: [x]}\n": "dhcp.discovery.acceptSerials: unknown setting; it moved: write it as provision.acceptSerials",
	} {
		if _, err := resolveYAML(t, doc); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error naming %s", doc, err, want)
		}
	}
}
