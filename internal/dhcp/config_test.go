package dhcp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestValidate(t *testing.T) {
	valid := func() Config {
		c := baseConfig()
		c.Store = newFakeStore(time.Now)
		return c
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the error; nil means valid
	}{
		{"base config", func(*Config) {}, nil},
		{"off needs nothing", func(c *Config) { *c = Config{Mode: ModeOff} }, nil},
		{"proxy needs no subnets", proxyMode, nil},
		{"empty mode", func(c *Config) { c.Mode = "" }, []string{"mode: is empty", "server", "proxy", "off"}},
		{"bad mode", func(c *Config) { c.Mode = "auto" }, []string{`mode: "auto" is not a mode`}},
		{"no server IP", func(c *Config) { c.ServerIP = netip.Addr{} }, []string{"ServerIP:", "IPv4"}},
		{"IPv6 server IP", func(c *Config) { c.ServerIP = ip("fe80::1") }, []string{"ServerIP:"}},
		{"bad port", func(c *Config) { c.Port = 70000 }, []string{"port: 70000 is not a UDP port"}},
		{"proxy port clash", func(c *Config) { proxyMode(c); c.ProxyPort = 67 }, []string{"proxyPort: is the same as port"}},
		{"bad policy", func(c *Config) { c.UnknownHosts = "allow" }, []string{`unknownHosts: "allow"`, "ignore or discover"}},
		{"no subnets", func(c *Config) { c.Subnets = nil }, []string{"subnets: is empty"}},
		{"server not in first subnet", func(c *Config) { c.ServerIP = ip("10.0.1.5") }, []string{"subnets[0].cidr: 10.0.0.0/24 does not contain ServerIP 10.0.1.5"}},
		{"range reversed", func(c *Config) { c.Subnets[0].Range = Range{ip("10.0.0.200"), ip("10.0.0.100")} }, []string{"subnets[0].range", "start is after end"}},
		{"range outside", func(c *Config) { c.Subnets[0].Range = Range{ip("10.0.9.1"), ip("10.0.9.9")} }, []string{"subnets[0].range", "not inside the subnet 10.0.0.0/24"}},
		{"range half given", func(c *Config) { c.Subnets[0].Range = Range{Start: ip("10.0.0.1")} }, []string{"subnets[0].range", "both START and END"}},
		{"range with broadcast", func(c *Config) { c.Subnets[0].Range = Range{ip("10.0.0.200"), ip("10.0.0.255")} }, []string{"network or broadcast"}},
		{"router outside", func(c *Config) { c.Subnets[1].Router = ip("10.0.0.1") }, []string{"subnets[1].router: 10.0.0.1 is not an IPv4 address inside 10.0.1.0/24"}},
		{"bad DNS", func(c *Config) { c.Subnets[0].DNS = []netip.Addr{ip("::1")} }, []string{"subnets[0].dns"}},
		{"bad domain", func(c *Config) { c.Subnets[0].Domain = "bad domain" }, []string{"subnets[0].domain"}},
		{"short lease", func(c *Config) { c.Subnets[0].LeaseTime = time.Second }, []string{"subnets[0].leaseTime: 1s is too short"}},
		{"route gateway off-link", func(c *Config) { c.Subnets[1].Routes[0].Gateway = ip("10.0.0.2") }, []string{"subnets[1].routes[0]: gateway 10.0.0.2 is not inside 10.0.1.0/24"}},
		{"overlap", func(c *Config) { c.Subnets[1].Prefix = netip.MustParsePrefix("10.0.0.0/16") }, []string{"subnets[1].cidr: 10.0.0.0/16 overlaps subnets[0]"}},
		{"tiny prefix", func(c *Config) {
			c.Subnets[1].Prefix = netip.MustParsePrefix("10.0.1.0/31")
			c.Subnets[1].Range = Range{}
			c.Subnets[1].Router = netip.Addr{}
			c.Subnets[1].Routes = nil
		}, []string{"leaves no room"}},
		{"bad base URL", func(c *Config) { c.Boot.HTTPBaseURL = "10.0.0.1:8080" }, []string{"boot.HTTPBaseURL", "http://10.0.0.1:8080"}},
		{"bad file", func(c *Config) { c.Boot.UEFIFile = "../etc/passwd" }, []string{`boot.uefiBinary: "../etc/passwd"`}},
		{"two problems at once", func(c *Config) { c.Port = -1; c.Subnets[0].Domain = "-x" }, []string{"port: -1", "subnets[0].domain"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate = nil, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Mode: ModeServer, ServerIP: ip("10.0.0.1"), Subnets: []Subnet{{Prefix: netip.MustParsePrefix("10.0.0.7/24")}}}.withDefaults()
	got := []any{c.Port, c.ProxyPort, c.UnknownHosts, c.OfferHold, c.DeclineHold, c.Boot, c.Subnets[0].Prefix.String(), c.Subnets[0].LeaseTime}
	want := []any{67, 4011, UnknownIgnore, time.Minute, 10 * time.Minute,
		Boot{HTTPBaseURL: "http://10.0.0.1:8080", TFTPServer: ip("10.0.0.1"), BIOSFile: "undionly.kpxe", UEFIFile: "snponly.efi", HTTPBootFile: "snponly.efi"},
		"10.0.0.0/24", time.Hour}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestParseRange(t *testing.T) {
	cases := []struct {
		in      string
		want    Range
		wantErr string
	}{
		{"10.0.0.100-10.0.0.200", Range{ip("10.0.0.100"), ip("10.0.0.200")}, ""},
		{" 10.0.0.5 - 10.0.0.5 ", Range{ip("10.0.0.5"), ip("10.0.0.5")}, ""},
		{"10.0.0.100", Range{}, "START-END"},
		{"10.0.0.200-10.0.0.100", Range{}, "start is after end"},
		{"a-b", Range{}, "IPv4"},
		{"::1-::2", Range{}, "IPv4"},
	}
	for _, tc := range cases {
		got, err := ParseRange(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseRange(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if got.String() != strings.ReplaceAll(tc.in, " ", "") {
			t.Errorf("String() = %q", got.String())
		}
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.0/24": "10.0.0.255", "10.0.0.0/30": "10.0.0.3", "0.0.0.0/0": "255.255.255.255", "10.1.2.3/32": "10.1.2.3"} {
		if got := lastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
