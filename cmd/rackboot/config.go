package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/dhcp"
	"github.com/rackboot/rackboot/httplimit"
	"github.com/rackboot/rackboot/provision"
	"github.com/rackboot/rackboot/ratelimit"
	"github.com/rackboot/rackboot/tftp"
)

// serveConfig is everything `rackboot serve` reads. It comes from the YAML file given
// with --config, and each flag the operator sets overrides its field. Field paths in
// error messages are the YAML paths, with the flag in parentheses.
type serveConfig struct {
	DataDir string `json:"dataDir"`
	// SecretKeyFile is the key that seals BMC passwords and user-data in the
	// inventory; empty means DATA_DIR/secret.key. Keep it outside DATA_DIR (a systemd
	// credential, /etc/rackboot) so a backup of DATA_DIR does not carry it.
	SecretKeyFile string `json:"secretKeyFile"`
	Interface     string `json:"interface"`
	// Address is this server's IPv4 address on the provisioning network: the next-server
	// and the host part of every boot URL handed to clients.
	Address   string          `json:"address"`
	LogLevel  string          `json:"logLevel"`
	LogFormat string          `json:"logFormat"`
	HTTP      httpConfig      `json:"http"`
	TFTP      tftpConfig      `json:"tftp"`
	API       apiConfig       `json:"api"`
	DHCP      dhcpConfig      `json:"dhcp"`
	Boot      bootConfig      `json:"boot"`
	BMC       bmcConfig       `json:"bmc"`
	Provision provisionConfig `json:"provision"`
}

type httpConfig struct {
	Port int `json:"port"`
	// Listen is the boot listener's bind address; empty means all addresses on Port.
	// The admin API is not here: it has its own listeners (api.listen).
	Listen string `json:"listen"`
	// BodyTimeout bounds how long a request body may take (httplimit).
	BodyTimeout durationSetting `json:"bodyTimeout"`
	// MaxRanges bounds the ranges of one Range header; more, overlapping or unsorted
	// ranges are refused with 416.
	MaxRanges int `json:"maxRanges"`
	// RateLimits are per source address, on the routes a stranger can call freely.
	RateLimits httpRateLimits `json:"rateLimits"`
}

// httpRateLimits are the per-source rate limits of the boot listener's routes.
//
//	http:
//	  rateLimits:
//	    script:   {perSecond: 2, burst: 20}   # /ipxe/.../boot.ipxe (one per boot)
//	    metadata: {perSecond: 5, burst: 50}   # /metadata/TOKEN/... (cloud-init, phone-home)
type httpRateLimits struct {
	Script   rateSetting `json:"script"`
	Metadata rateSetting `json:"metadata"`
}

type rateSetting struct {
	PerSecond float64 `json:"perSecond"`
	Burst     int     `json:"burst"`
}

func (r rateSetting) config() ratelimit.Config {
	return ratelimit.Config{PerSecond: r.PerSecond, Burst: r.Burst}
}

// validate checks the boot listener's limits.
func (c httpConfig) validate() []error {
	var errs []error
	switch {
	case c.BodyTimeout.raw != "":
		errs = append(errs, bad("http.bodyTimeout", "", "%s is not a duration: write one such as \"10s\"", c.BodyTimeout.raw))
	case c.BodyTimeout.d < time.Second:
		errs = append(errs, bad("http.bodyTimeout", "", "%s is too short: give at least 1s (default %s)", c.BodyTimeout.d, httplimit.DefaultBodyTimeout))
	}
	if c.MaxRanges < 1 {
		errs = append(errs, bad("http.maxRanges", "", "%d: give at least 1 (default %d)", c.MaxRanges, httplimit.DefaultMaxRanges))
	}
	for _, r := range []struct {
		field string
		v     rateSetting
	}{{"http.rateLimits.script", c.RateLimits.Script}, {"http.rateLimits.metadata", c.RateLimits.Metadata}} {
		if err := r.v.config().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s.%w", r.field, err))
		}
	}
	return errs
}

type tftpConfig struct {
	Port int `json:"port"`
	// Disabled turns TFTP off (UEFI HTTP boot and iPXE ROMs do not need it).
	Disabled bool `json:"disabled"`
	// MaxTransfers and MaxTransfersPerSource bound the transfers in flight, in all
	// and from one address (tftp.Config).
	MaxTransfers          int `json:"maxTransfers"`
	MaxTransfersPerSource int `json:"maxTransfersPerSource"`
}

// config is the tftp package's Config for these settings.
func (c tftpConfig) config() tftp.Config {
	return tftp.Config{MaxTransfers: c.MaxTransfers, MaxTransfersPerSource: c.MaxTransfersPerSource}
}

// apiConfig is the admin API: its token and its own listeners, apart from the boot
// listener (http.*) that every booting host reaches.
type apiConfig struct {
	TokenFile string `json:"tokenFile"`
	// Listen are HOST:PORT (TLS) and unix:/PATH addresses; empty means the default,
	// 127.0.0.1:8443 and unix:DATA_DIR/admin.sock. An address other machines reach is
	// only ever one the operator wrote here.
	Listen []string `json:"listen"`
	// TLSCertFile and TLSKeyFile are the operator's certificate for the TCP listeners;
	// empty means DATA_DIR/admin.crt and admin.key, created self-signed on first start.
	TLSCertFile string `json:"tlsCertFile"`
	TLSKeyFile  string `json:"tlsKeyFile"`
}

type dhcpConfig struct {
	Mode         string   `json:"mode"`
	Port         int      `json:"port"`
	ProxyPort    int      `json:"proxyPort"`
	UnknownHosts string   `json:"unknownHosts"`
	LeaseTime    duration `json:"leaseTime"`
	// The local subnet (the one on Interface). CIDR defaults to the prefix of Address on
	// Interface.
	CIDR   string   `json:"cidr"`
	Range  string   `json:"range"`
	Router string   `json:"router"`
	DNS    []string `json:"dns"`
	Domain string   `json:"domain"`
	// Subnets are further subnets reached through DHCP relays (giaddr).
	Subnets []subnetConfig `json:"subnets"`
	// Discovery bounds what unknown MACs may cost under unknownHosts: discover.
	Discovery discoveryConfig `json:"discovery"`
}

type discoveryConfig struct {
	// MaxHosts caps the hosts in state discovered.
	MaxHosts int `json:"maxHosts"`
	// Rate is unknown MACs served per second; Burst how many at once.
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
	// AcceptSerials accepts, after inspection, discovered hosts reporting one of these
	// SMBIOS serials; the others wait for `rackboot host accept`.
	AcceptSerials []string `json:"acceptSerials"`
}

type subnetConfig struct {
	CIDR      string   `json:"cidr"`
	Range     string   `json:"range"`
	Router    string   `json:"router"`
	DNS       []string `json:"dns"`
	Domain    string   `json:"domain"`
	LeaseTime duration `json:"leaseTime"`
}

type bootConfig struct {
	// UEFIBinary is served by TFTP to x86-64 UEFI PXE clients: snponly.efi or ipxe.efi.
	UEFIBinary string `json:"uefiBinary"`
	// HTTPBootBinary is handed to UEFI HTTP boot clients as a full URL.
	HTTPBootBinary string `json:"httpBootBinary"`
}

// provisionConfig is the serve configuration's "provision" section: the host state
// machine's timeout and retry policy (provision.Timeouts; provision/doc.go draws the
// phases). There is no power timeout of its own: one BMC call is bounded by
// bmc.timeout, and the power phase by retries.powerAttempts and retries.powerBackoff.
//
//	provision:
//	  timeouts:
//	    boot: 15m         # power-on to the agent's hello (firmware, PXE, kernel, drivers)
//	    stall: 15m        # the agent silent while it runs its plan
//	    diskBoot: 30m     # image written to cloud-init's phone-home from the installed OS
//	    rebootGrace: 30s  # a host found off after its image is written is powered on after this
//	  retries:
//	    bootAttempts: 3   # agent boots per operation before the host fails
//	    powerAttempts: 3  # failing BMC sequences per boot before the host fails
//	    powerBackoff: 30s # wait before the next BMC try
type provisionConfig struct {
	Timeouts provisionTimeouts `json:"timeouts"`
	Retries  provisionRetries  `json:"retries"`
}

type provisionTimeouts struct {
	Boot        durationSetting `json:"boot"`
	Stall       durationSetting `json:"stall"`
	DiskBoot    durationSetting `json:"diskBoot"`
	RebootGrace durationSetting `json:"rebootGrace"`
}

type provisionRetries struct {
	BootAttempts  int             `json:"bootAttempts"`
	PowerAttempts int             `json:"powerAttempts"`
	PowerBackoff  durationSetting `json:"powerBackoff"`
}

// Bounds of the provision settings. A timeout below minPhaseTimeout would expire before
// any machine can POST and reach the agent (the lab's TCG VMs take 18-35 s); pauses below
// a second are typos ("30ms" for "30s").
const (
	minPhaseTimeout = 30 * time.Second
	minPause        = time.Second
	maxAttempts     = 100
)

func defaultProvisionConfig() provisionConfig {
	return provisionConfig{
		Timeouts: provisionTimeouts{
			Boot:        durationSetting{d: provision.DefaultBootTimeout},
			Stall:       durationSetting{d: provision.DefaultStallTimeout},
			DiskBoot:    durationSetting{d: provision.DefaultDiskBootTimeout},
			RebootGrace: durationSetting{d: provision.DefaultRebootGrace},
		},
		Retries: provisionRetries{
			BootAttempts:  provision.DefaultBootAttempts,
			PowerAttempts: provision.DefaultPowerAttempts,
			PowerBackoff:  durationSetting{d: provision.DefaultPowerBackoff},
		},
	}
}

// validate checks every setting (defaults are filled in before the file is read, so a
// zero here was written by the operator) and returns one error per bad one.
func (c provisionConfig) validate() []error {
	var errs []error
	dur := func(field string, v durationSetting, min time.Duration, what string) {
		switch {
		case v.raw != "":
			errs = append(errs, bad(field, "", "%s is not a duration: write one such as \"15m\" or \"90s\" (a bare number is seconds)", v.raw))
		case v.d <= 0:
			errs = append(errs, bad(field, "", "%s: give a positive duration such as %s (leave it out for the default)", v.d, what))
		case v.d < min:
			errs = append(errs, bad(field, "", "%s is too short: give at least %s", v.d, min))
		}
	}
	dur("provision.timeouts.boot", c.Timeouts.Boot, minPhaseTimeout, "15m")
	dur("provision.timeouts.stall", c.Timeouts.Stall, minPhaseTimeout, "15m")
	dur("provision.timeouts.diskBoot", c.Timeouts.DiskBoot, minPhaseTimeout, "30m")
	dur("provision.timeouts.rebootGrace", c.Timeouts.RebootGrace, minPause, "30s")
	dur("provision.retries.powerBackoff", c.Retries.PowerBackoff, minPause, "30s")
	for _, a := range []struct {
		field string
		n     int
	}{{"provision.retries.bootAttempts", c.Retries.BootAttempts}, {"provision.retries.powerAttempts", c.Retries.PowerAttempts}} {
		if a.n < 1 || a.n > maxAttempts {
			errs = append(errs, bad(a.field, "", "%d: give 1-%d (1 means no retry; leave it out for the default, 3)", a.n, maxAttempts))
		}
	}
	return errs
}

// timeouts is the validated section as the provisioner takes it.
func (c provisionConfig) timeouts() provision.Timeouts {
	return provision.Timeouts{
		Boot:          c.Timeouts.Boot.d,
		Stall:         c.Timeouts.Stall.d,
		DiskBoot:      c.Timeouts.DiskBoot.d,
		RebootGrace:   c.Timeouts.RebootGrace.d,
		BootAttempts:  c.Retries.BootAttempts,
		PowerAttempts: c.Retries.PowerAttempts,
		PowerBackoff:  c.Retries.PowerBackoff.d,
	}
}

// durationSetting is a duration whose errors wait for resolve: the YAML decoder reports
// an unreadable value without its path, so the text is kept and resolve names the
// setting ("provision.timeouts.boot: soon is not a duration ...").
type durationSetting struct {
	d   time.Duration
	raw string // the value as written, when it is not a duration
}

func (s *durationSetting) UnmarshalJSON(b []byte) error {
	var d duration
	if err := d.UnmarshalJSON(b); err != nil {
		*s = durationSetting{raw: string(b)}
		return nil
	}
	*s = durationSetting{d: time.Duration(d)}
	return nil
}

func (s durationSetting) MarshalJSON() ([]byte, error) {
	if s.raw != "" {
		return []byte(s.raw), nil
	}
	return json.Marshal(s.d.String())
}

// duration reads "90s", "1h" (or a number of seconds) from YAML.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("want a duration such as \"1h\" or \"90s\", got %s", b)
		}
		*d = duration(time.Duration(n * float64(time.Second)))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"1h\" or \"90s\", got %q", s)
	}
	*d = duration(v)
	return nil
}

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func defaultServeConfig() serveConfig {
	return serveConfig{
		DataDir:   "/var/lib/rackboot",
		LogLevel:  "info",
		LogFormat: "text",
		HTTP: httpConfig{
			Port:        8080,
			BodyTimeout: durationSetting{d: httplimit.DefaultBodyTimeout},
			MaxRanges:   httplimit.DefaultMaxRanges,
			RateLimits: httpRateLimits{
				Script:   rateSetting{PerSecond: 2, Burst: 20},
				Metadata: rateSetting{PerSecond: 5, Burst: 50},
			},
		},
		TFTP: tftpConfig{Port: 69, MaxTransfers: tftp.DefaultMaxTransfers, MaxTransfersPerSource: tftp.DefaultMaxTransfersPerSource},
		DHCP: dhcpConfig{
			Mode:         "server",
			Port:         67,
			ProxyPort:    4011,
			UnknownHosts: "ignore",
			LeaseTime:    duration(time.Hour),
			Discovery: discoveryConfig{
				MaxHosts: dhcp.DefaultDiscoveryMaxHosts,
				Rate:     dhcp.DefaultDiscoveryRate,
				Burst:    dhcp.DefaultDiscoveryBurst,
			},
		},
		Boot:      bootConfig{UEFIBinary: "snponly.efi", HTTPBootBinary: "snponly.efi"},
		Provision: defaultProvisionConfig(),
	}
}

// serveFlags are the command-line overrides. Each is applied only if the operator set it.
type serveFlags struct {
	configFile, dataDir, iface, address, logLevel, logFormat string
	dhcpMode, dhcpRange, dhcpRouter, dhcpDNS, unknownHosts   string
	apiTokenFile, adminTLSCert, adminTLSKey, secretKeyFile   string
	adminListen                                              []string
	httpPort, tftpPort, dhcpPort                             int
}

func (f *serveFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.configFile, "config", "", "YAML configuration file; flags override its settings")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for the inventory, API token and boot assets (default /var/lib/rackboot)")
	fs.StringVar(&f.iface, "interface", "", "provisioning network interface (DHCP listens here)")
	fs.StringVar(&f.address, "address", "", "this server's IPv4 address on the provisioning network (default: the interface's first IPv4)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.StringVar(&f.logFormat, "log-format", "", "text or json (default text)")
	fs.StringVar(&f.dhcpMode, "dhcp-mode", "", "server (authoritative), proxy (beside an existing DHCP server) or off (default server)")
	fs.StringVar(&f.dhcpRange, "dhcp-range", "", "dynamic pool START-END for the local subnet, e.g. 10.0.0.100-10.0.0.200")
	fs.StringVar(&f.dhcpRouter, "dhcp-router", "", "default gateway handed to clients on the local subnet")
	fs.StringVar(&f.dhcpDNS, "dhcp-dns", "", "DNS servers handed to clients, comma-separated")
	fs.StringVar(&f.unknownHosts, "unknown-hosts", "", "ignore (only enrolled MACs are answered) or discover (unknown PXE clients are enrolled as discovered) (default ignore)")
	fs.StringVar(&f.secretKeyFile, "secret-key-file", "", "key sealing BMC passwords and user-data (default DATA_DIR/secret.key, created on first start); keep it outside DATA_DIR so backups of DATA_DIR do not carry it")
	fs.StringVar(&f.apiTokenFile, "api-token-file", "", "file holding the admin API bearer token (default DATA_DIR/api-token, created on first start)")
	fs.StringSliceVar(&f.adminListen, "admin-listen", nil, "admin API addresses, HOST:PORT (TLS) or unix:/PATH, repeatable or comma-separated (default 127.0.0.1:8443 and unix:DATA_DIR/admin.sock)")
	fs.StringVar(&f.adminTLSCert, "admin-tls-cert", "", "PEM certificate for the admin API (default DATA_DIR/admin.crt, self-signed, created on first start)")
	fs.StringVar(&f.adminTLSKey, "admin-tls-key", "", "PEM key of --admin-tls-cert (default DATA_DIR/admin.key)")
	fs.IntVar(&f.httpPort, "http-port", 0, "HTTP port for boot scripts, assets and metrics (default 8080)")
	fs.IntVar(&f.tftpPort, "tftp-port", 0, "TFTP port (default 69)")
	fs.IntVar(&f.dhcpPort, "dhcp-port", 0, "DHCP server port (default 67)")
}

// load builds the effective configuration: defaults, then the file, then flags.
func (f *serveFlags) load(fs *pflag.FlagSet) (serveConfig, error) {
	cfg := defaultServeConfig()
	if f.configFile != "" {
		b, err := os.ReadFile(f.configFile)
		if err != nil {
			return cfg, fmt.Errorf("--config: %w", err)
		}
		if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
			return cfg, fmt.Errorf("config file %s: %w (see the configuration reference in README.md)", f.configFile, err)
		}
	}
	set := func(name string, apply func()) {
		if fs.Changed(name) {
			apply()
		}
	}
	set("data-dir", func() { cfg.DataDir = f.dataDir })
	set("interface", func() { cfg.Interface = f.iface })
	set("address", func() { cfg.Address = f.address })
	set("log-level", func() { cfg.LogLevel = f.logLevel })
	set("log-format", func() { cfg.LogFormat = f.logFormat })
	set("dhcp-mode", func() { cfg.DHCP.Mode = f.dhcpMode })
	set("dhcp-range", func() { cfg.DHCP.Range = f.dhcpRange })
	set("dhcp-router", func() { cfg.DHCP.Router = f.dhcpRouter })
	set("dhcp-dns", func() { cfg.DHCP.DNS = splitList(f.dhcpDNS) })
	set("unknown-hosts", func() { cfg.DHCP.UnknownHosts = f.unknownHosts })
	set("api-token-file", func() { cfg.API.TokenFile = f.apiTokenFile })
	set("secret-key-file", func() { cfg.SecretKeyFile = f.secretKeyFile })
	set("admin-listen", func() { cfg.API.Listen = f.adminListen })
	set("admin-tls-cert", func() { cfg.API.TLSCertFile = f.adminTLSCert })
	set("admin-tls-key", func() { cfg.API.TLSKeyFile = f.adminTLSKey })
	set("http-port", func() { cfg.HTTP.Port = f.httpPort })
	set("tftp-port", func() { cfg.TFTP.Port = f.tftpPort })
	set("dhcp-port", func() { cfg.DHCP.Port = f.dhcpPort })
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// fieldError names the setting (YAML path and flag) and says how to fix it.
type fieldError struct {
	field, flag, msg string
}

func (e *fieldError) Error() string {
	if e.flag != "" {
		return fmt.Sprintf("%s (--%s): %s", e.field, e.flag, e.msg)
	}
	return e.field + ": " + e.msg
}

func bad(field, flag, format string, args ...any) error {
	return &fieldError{field: field, flag: flag, msg: fmt.Sprintf(format, args...)}
}

// resolved is the validated configuration with addresses parsed and derived values
// filled in; serve runs from this.
type resolved struct {
	serveConfig
	Addr    netip.Addr
	Subnets []dhcp.Subnet // the local one first
	// AdminListen are the admin API's addresses (api.listen or its default).
	AdminListen []admin.ListenAddr
}

// interfaceAddrs is how resolve learns an interface's addresses; tests replace it.
type interfaceAddrs func(name string) ([]netip.Prefix, error)

func systemInterfaceAddrs(name string) ([]netip.Prefix, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ones, _ := n.Mask.Size()
			out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
		}
	}
	return out, nil
}

// resolve validates cfg and derives the server address and the local subnet.
func (cfg serveConfig) resolve(ifAddrs interfaceAddrs) (*resolved, error) {
	r := &resolved{serveConfig: cfg}
	var errs []error
	add := func(err error) { errs = append(errs, err) }

	if cfg.DataDir == "" {
		add(bad("dataDir", "data-dir", "is empty: give a directory rackboot may write, e.g. /var/lib/rackboot"))
	}
	switch cfg.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add(bad("logLevel", "log-level", "%q is not a level: use debug, info, warn or error", cfg.LogLevel))
	}
	switch cfg.LogFormat {
	case "text", "json":
	default:
		add(bad("logFormat", "log-format", "%q is not a format: use text or json", cfg.LogFormat))
	}
	checkPort := func(field, flag string, p int, zeroOK bool) {
		if p < 0 || p > 65535 || (p == 0 && !zeroOK) {
			add(bad(field, flag, "%d is not a port: use 1-65535", p))
		}
	}
	checkPort("http.port", "http-port", cfg.HTTP.Port, true)
	checkPort("tftp.port", "tftp-port", cfg.TFTP.Port, true)
	checkPort("dhcp.port", "dhcp-port", cfg.DHCP.Port, false)
	checkPort("dhcp.proxyPort", "", cfg.DHCP.ProxyPort, false)
	for _, b := range []struct{ field, v string }{{"boot.uefiBinary", cfg.Boot.UEFIBinary}, {"boot.httpBootBinary", cfg.Boot.HTTPBootBinary}} {
		switch b.v {
		case "snponly.efi", "ipxe.efi":
		default:
			add(bad(b.field, "", "%q is not an embedded UEFI iPXE binary: use snponly.efi or ipxe.efi", b.v))
		}
	}
	switch cfg.DHCP.Mode {
	case "server", "proxy", "off":
	default:
		add(bad("dhcp.mode", "dhcp-mode", "%q is not a mode: use server (rackboot hands out addresses), proxy (an existing DHCP server does; rackboot adds boot options) or off", cfg.DHCP.Mode))
	}
	switch cfg.DHCP.UnknownHosts {
	case "ignore", "discover":
	default:
		add(bad("dhcp.unknownHosts", "unknown-hosts", "%q is not a policy: use ignore or discover", cfg.DHCP.UnknownHosts))
	}
	if d := cfg.DHCP.Discovery; d.MaxHosts < 1 || d.MaxHosts > 100000 {
		add(bad("dhcp.discovery.maxHosts", "", "%d is out of range: use 1-100000 (hosts in state discovered at once)", d.MaxHosts))
	}
	// The upper bounds are a bench's (perfdhcp with thousands of unknown MACs); a rack
	// wants a few per second.
	if d := cfg.DHCP.Discovery; d.Rate <= 0 || d.Rate > 1e6 {
		add(bad("dhcp.discovery.rate", "", "%g is out of range: use a rate above 0 and at most 1000000 unknown MACs per second", d.Rate))
	}
	if d := cfg.DHCP.Discovery; d.Burst < 1 || d.Burst > 1000000 {
		add(bad("dhcp.discovery.burst", "", "%d is out of range: use 1-1000000", d.Burst))
	}
	for i, s := range cfg.DHCP.Discovery.AcceptSerials {
		if strings.TrimSpace(s) == "" || len(s) > 128 {
			add(bad(fmt.Sprintf("dhcp.discovery.acceptSerials[%d]", i), "", "%q is not a serial number: give the SMBIOS system serial as `rackboot host show` reports it", s))
		}
	}
	errs = append(errs, cfg.Provision.validate()...)
	r.AdminListen, errs = cfg.API.resolve(cfg.DataDir, errs)
	errs = append(errs, cfg.HTTP.validate()...)
	if err := cfg.TFTP.config().Validate(); err != nil {
		add(fmt.Errorf("tftp.%w", err))
	}

	// The server address: given, or the interface's first IPv4.
	var ifPrefixes []netip.Prefix
	if cfg.Interface != "" {
		ps, err := ifAddrs(cfg.Interface)
		if err != nil {
			add(bad("interface", "interface", "%v: name an interface that exists (see `ip -br addr`)", err))
		}
		ifPrefixes = ps
	}
	if cfg.Address != "" {
		a, err := netip.ParseAddr(cfg.Address)
		if err != nil || !a.Is4() {
			add(bad("address", "address", "%q is not an IPv4 address", cfg.Address))
		} else {
			r.Addr = a
		}
	} else {
		for _, p := range ifPrefixes {
			if p.Addr().Is4() {
				r.Addr = p.Addr()
				break
			}
		}
	}
	needNet := cfg.DHCP.Mode != "off"
	if needNet && cfg.Interface == "" {
		add(bad("interface", "interface", "is empty but DHCP mode is %s: name the provisioning interface, or set --dhcp-mode off", cfg.DHCP.Mode))
	}
	if !r.Addr.IsValid() && len(errs) == 0 {
		add(bad("address", "address", "is empty and could not be derived: give this server's IPv4 address on the provisioning network (boot URLs point at it)"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.DHCP.Mode == "off" {
		return r, nil
	}

	// The local subnet.
	var local netip.Prefix
	if cfg.DHCP.CIDR != "" {
		p, err := netip.ParsePrefix(cfg.DHCP.CIDR)
		if err != nil || !p.Addr().Is4() {
			return nil, bad("dhcp.cidr", "", "%q is not an IPv4 CIDR such as 10.0.0.0/24", cfg.DHCP.CIDR)
		}
		local = p.Masked()
	} else {
		for _, p := range ifPrefixes {
			if p.Addr() == r.Addr {
				local = p.Masked()
			}
		}
		if !local.IsValid() {
			return nil, bad("address", "address", "%s is not an address of interface %s: use one of %v, or set dhcp.cidr", r.Addr, cfg.Interface, ifPrefixes)
		}
	}
	if !local.Contains(r.Addr) {
		return nil, bad("address", "address", "%s is not inside the local subnet %s", r.Addr, local)
	}
	sub, err := parseSubnet("dhcp", true, subnetConfig{CIDR: local.String(), Range: cfg.DHCP.Range, Router: cfg.DHCP.Router, DNS: cfg.DHCP.DNS, Domain: cfg.DHCP.Domain, LeaseTime: cfg.DHCP.LeaseTime}, cfg.DHCP.LeaseTime)
	if err != nil {
		return nil, err
	}
	if cfg.DHCP.Mode == "server" && sub.Range.IsZero() && cfg.DHCP.UnknownHosts == "discover" {
		return nil, bad("dhcp.range", "dhcp-range", "is empty but unknown hosts are discovered in server mode: give a pool START-END inside %s", local)
	}
	r.Subnets = append(r.Subnets, sub)
	for i, sc := range cfg.DHCP.Subnets {
		s, err := parseSubnet(fmt.Sprintf("dhcp.subnets[%d]", i), false, sc, cfg.DHCP.LeaseTime)
		if err != nil {
			return nil, err
		}
		for _, o := range r.Subnets {
			if o.Prefix.Overlaps(s.Prefix) {
				return nil, bad(fmt.Sprintf("dhcp.subnets[%d].cidr", i), "", "%s overlaps %s: each subnet may be listed once", s.Prefix, o.Prefix)
			}
		}
		r.Subnets = append(r.Subnets, s)
	}
	return r, nil
}

// parseSubnet validates one subnet; field is its YAML path, local says whether the
// local-subnet flags apply (to name them in errors).
func parseSubnet(field string, local bool, sc subnetConfig, defLease duration) (dhcp.Subnet, error) {
	flag := func(f string) string {
		if local {
			return f
		}
		return ""
	}
	var s dhcp.Subnet
	p, err := netip.ParsePrefix(sc.CIDR)
	if err != nil || !p.Addr().Is4() {
		return s, bad(field+".cidr", "", "%q is not an IPv4 CIDR such as 10.1.0.0/24", sc.CIDR)
	}
	s.Prefix = p.Masked()
	if sc.Range != "" {
		rg, err := dhcp.ParseRange(sc.Range)
		if err != nil {
			return s, bad(field+".range", flag("dhcp-range"), "%v", err)
		}
		if !s.Prefix.Contains(rg.Start) || !s.Prefix.Contains(rg.End) {
			return s, bad(field+".range", flag("dhcp-range"), "%q is not inside the subnet %s: pick a pool inside it", sc.Range, s.Prefix)
		}
		s.Range = rg
	}
	if sc.Router != "" {
		r, err := netip.ParseAddr(sc.Router)
		if err != nil || !r.Is4() || !s.Prefix.Contains(r) {
			return s, bad(field+".router", flag("dhcp-router"), "%q is not an IPv4 address inside %s", sc.Router, s.Prefix)
		}
		s.Router = r
	}
	for _, d := range sc.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil || !a.Is4() {
			return s, bad(field+".dns", flag("dhcp-dns"), "%q is not an IPv4 address: give DNS servers as IP[,IP]", d)
		}
		s.DNS = append(s.DNS, a)
	}
	s.Domain = sc.Domain
	s.LeaseTime = time.Duration(sc.LeaseTime)
	if s.LeaseTime == 0 {
		s.LeaseTime = time.Duration(defLease)
	}
	if s.LeaseTime < time.Minute {
		return s, bad(field+".leaseTime", "", "%s is too short: use at least 1m", s.LeaseTime)
	}
	return s, nil
}

// portString is host:port for listeners.
func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// resolve validates the admin API settings and returns its listen addresses.
func (c apiConfig) resolve(dataDir string, errs []error) ([]admin.ListenAddr, []error) {
	listen := c.Listen
	if len(listen) == 0 {
		listen = []string{hostPort("127.0.0.1", admin.DefaultPort), admin.UnixPrefix + filepath.Join(dataDir, "admin.sock")}
	}
	var out []admin.ListenAddr
	for i, s := range listen {
		a, err := admin.ParseListenAddr(strings.TrimSpace(s))
		if err != nil {
			errs = append(errs, bad(fmt.Sprintf("api.listen[%d]", i), "admin-listen", "%v", err))
			continue
		}
		out = append(out, a)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, bad("api.tlsCertFile", "admin-tls-cert", "give the certificate and its key (api.tlsKeyFile, --admin-tls-key) together, or neither for a generated one"))
	}
	return out, errs
}

// secretKeyFile is the inventory's key file: the setting, or DATA_DIR/secret.key.
func (r *resolved) secretKeyFile() string {
	if r.SecretKeyFile != "" {
		return r.SecretKeyFile
	}
	return filepath.Join(r.DataDir, "secret.key")
}

// adminTLSFiles are the admin API's certificate and key: the operator's, or the ones
// serve generates in DATA_DIR.
func (r *resolved) adminTLSFiles() (cert, key string, generated bool) {
	if r.API.TLSCertFile != "" {
		return r.API.TLSCertFile, r.API.TLSKeyFile, false
	}
	return filepath.Join(r.DataDir, "admin.crt"), filepath.Join(r.DataDir, "admin.key"), true
}
