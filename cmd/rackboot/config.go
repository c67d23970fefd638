package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/controllers"
	"github.com/rackboot/rackboot/internal/dhcp"
	"github.com/rackboot/rackboot/internal/httplimit"
	"github.com/rackboot/rackboot/internal/images"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
	"github.com/rackboot/rackboot/internal/metadata"
	"github.com/rackboot/rackboot/internal/provision"
	"github.com/rackboot/rackboot/internal/ratelimit"
	"github.com/rackboot/rackboot/internal/tftp"
	"github.com/rackboot/rackboot/internal/trust"
)

// defaultConfigFile is read when --config is not given and it exists (the Debian
// package installs it).
const defaultConfigFile = "/etc/rackboot/config.yaml"

// serveConfig is everything `rackboot serve` reads: the YAML file's shape. Each section
// is the package's own settings type (its yaml-tagged fields), composed here; only
// serve's own settings (the listeners, the data directory, logging) are declared in
// this package. configfile.go layers the file, the environment and the flags onto it,
// config_doc.go prints it with its defaults.
type serveConfig struct {
	DataDir string `yaml:"dataDir" doc:"inventory (inventory.db), api-token, secret.key, assets/, images/, bootenv/"`
	// SecretKeyFile: keep it outside DATA_DIR (a systemd credential, /etc/rackboot) so
	// a backup of DATA_DIR does not carry it.
	SecretKeyFile string `yaml:"secretKeyFile" doc:"key sealing BMC passwords and user-data (empty: DATA_DIR/secret.key, created on first start); keep it outside DATA_DIR so backups of DATA_DIR do not carry it"`
	Interface     string `yaml:"interface" doc:"provisioning network interface, DHCP is bound to it; required unless dhcp.mode is off"`
	Address       string `yaml:"address" doc:"this server's IPv4 address on the provisioning network: next-server and host of every boot URL (empty: the interface's first IPv4)"`
	LogLevel      string `yaml:"logLevel" doc:"debug, info, warn or error"`
	LogFormat     string `yaml:"logFormat" doc:"text or json"`

	HTTP      httpConfig         `yaml:"http" doc:"The boot listener: iPXE scripts and binaries, images, the agent API, cloud-init, /metrics, /healthz, /readyz. It faces the provisioning network; the admin API is not on it."`
	TFTP      tftpConfig         `yaml:"tftp" doc:"Read-only TFTP of the iPXE binaries, bound to address."`
	API       apiConfig          `yaml:"api" doc:"The admin API (rackboot host ..., rackboot image ...): its token and its own listeners, loopback TLS and a Unix socket by default."`
	DHCP      dhcpConfig         `yaml:"dhcp" doc:"DHCPv4. The local subnet's settings (cidr, range, router, dns, domain, leaseTime, routes) are written flat in this section; subnets behind relays under subnets."`
	Boot      dhcp.Boot          `yaml:"boot" doc:"The boot files DHCP hands to netboot clients: iPXE binaries rackboot embeds (undionly.kpxe, snponly.efi, ipxe.efi) or files put in DATA_DIR/ipxe."`
	BMC       bmc.Config         `yaml:"bmc" doc:"Power and next-boot device through BMCs: IPMI (ipmitool) and Redfish, by a bounded pool of workers."`
	Provision provision.Settings `yaml:"provision" doc:"The host state machine: phase timeouts, retries and the acceptance of discovered hosts."`
	Images    images.Config      `yaml:"images" doc:"The image catalog: downloads into DATA_DIR/images and transfers to agents."`
	IPXE      ipxe.HandlerConfig `yaml:"ipxe" doc:"The iPXE routes of the boot listener: scripts, binaries and boot assets."`
	Metadata  metadata.Config    `yaml:"metadata" doc:"Each host's cloud-init and Ignition (NoCloud-net under /metadata/TOKEN/) and its phone-home."`
	Inventory inventory.Options  `yaml:"inventory" doc:"The bbolt inventory in DATA_DIR/inventory.db."`
	Trust     trust.Config       `yaml:"trust" doc:"Who is asking on the boot routes: the per-boot keys DHCP hands out, and the refusals recorded."`
	CAPI      capiConfig         `yaml:"capi" doc:"The Cluster API controllers, run inside serve when a management cluster is given (kubeconfig, or in a pod)."`

	// layers says where each setting came from (file line, variable, flag), to point
	// at it in errors.
	layers *settingLayers
}

// httpConfig is the boot listener: scripts, iPXE binaries, images, the agent API,
// metadata, /metrics, /healthz and /readyz. The admin API has its own (api.listen).
type httpConfig struct {
	Port   int    `yaml:"port" doc:"boot listener's port"`
	Listen string `yaml:"listen" doc:"boot listener's bind address HOST:PORT (empty: every address on http.port)"`
	// The limits for strangers (package httplimit).
	httplimit.Config `yaml:",inline"`
	// RateLimits are per source address, on the routes a stranger can call freely.
	RateLimits httpRateLimits `yaml:"rateLimits" doc:"per source address, on the routes a stranger can call freely"`
}

type httpRateLimits struct {
	Script   ratelimit.Config `yaml:"script" doc:"/ipxe/.../boot.ipxe requests (one per boot); 429 beyond"`
	Metadata ratelimit.Config `yaml:"metadata" doc:"/metadata/TOKEN/... requests (cloud-init, phone-home)"`
}

type tftpConfig struct {
	Port int `yaml:"port" doc:"TFTP port (read-only: the iPXE binaries)"`
	// Disabled turns TFTP off (UEFI HTTP boot and iPXE ROMs do not need it).
	Disabled    bool `yaml:"disabled" doc:"turn TFTP off (UEFI HTTP boot and iPXE ROMs do not need it)"`
	tftp.Config `yaml:",inline"`
}

// apiConfig is the admin API: its token and its own listeners, apart from the boot
// listener (http.*) that every booting host reaches. An address other machines reach is
// only ever one the operator wrote here.
type apiConfig struct {
	TokenFile   string   `yaml:"tokenFile" doc:"admin API bearer token, at least 16 characters, readable by rackboot alone (empty: DATA_DIR/api-token, created on first start)"`
	Listen      []string `yaml:"listen" doc:"admin API addresses: HOST:PORT (TLS) or unix:/PATH (empty: 127.0.0.1:8443 and unix:DATA_DIR/admin.sock)"`
	TLSCertFile string   `yaml:"tlsCertFile" doc:"PEM certificate of the TCP listeners (empty: DATA_DIR/admin.crt, self-signed, created on first start)"`
	TLSKeyFile  string   `yaml:"tlsKeyFile" doc:"its key (empty: DATA_DIR/admin.key)"`
}

// dhcpConfig is the "dhcp" section: the DHCP service's settings, the local subnet
// written flat beside them (its cidr defaults to the interface's prefix), and the
// subnets behind relays.
type dhcpConfig struct {
	dhcp.Config `yaml:",inline"`
	Local       dhcp.Subnet   `yaml:",inline"`
	Subnets     []dhcp.Subnet `yaml:"subnets" doc:"further subnets reached through DHCP relays (giaddr): cidr, range, router, dns, domain, leaseTime (default dhcp.leaseTime), routes"`
}

// capiConfig turns on the Cluster API controllers inside serve.
type capiConfig struct {
	Kubeconfig         string `yaml:"kubeconfig" doc:"kubeconfig of the management cluster: runs the RackbootMachine and RackbootCluster controllers (in a pod the in-cluster configuration is used without it)"`
	controllers.Config `yaml:",inline"`
}

func defaultServeConfig() serveConfig {
	dc := dhcp.DefaultConfig()
	return serveConfig{
		DataDir:   "/var/lib/rackboot",
		LogLevel:  "info",
		LogFormat: "text",
		HTTP: httpConfig{
			Port:   8080,
			Config: httplimit.Config{BodyTimeout: httplimit.DefaultBodyTimeout, MaxRanges: httplimit.DefaultMaxRanges},
			RateLimits: httpRateLimits{
				Script:   ratelimit.Config{PerSecond: 2, Burst: 20, MaxSources: ratelimit.DefaultMaxSources},
				Metadata: ratelimit.Config{PerSecond: 5, Burst: 50, MaxSources: ratelimit.DefaultMaxSources},
			},
		},
		TFTP:      tftpConfig{Port: 69, Config: tftp.DefaultConfig()},
		DHCP:      dhcpConfig{Config: dc, Local: dhcp.Subnet{LeaseTime: dhcp.DefaultLeaseTime}},
		Boot:      dc.Boot,
		BMC:       bmc.DefaultConfig(),
		Provision: provision.DefaultSettings(),
		Images:    images.DefaultConfig(),
		IPXE:      ipxe.DefaultHandlerConfig(),
		Metadata:  metadata.DefaultConfig(),
		Trust:     trust.DefaultConfig(),
		Inventory: inventory.Options{LockTimeout: inventory.DefaultLockTimeout},
		CAPI:      capiConfig{Config: controllers.DefaultConfig()},
	}
}

// serveFlags are the command-line overrides. Each is applied only if the operator set
// it, onto the setting serveFlagBindings names.
type serveFlags struct {
	configFile                                               string
	checkConfig                                              bool
	dataDir, iface, address, logLevel, logFormat             string
	dhcpMode, dhcpRange, dhcpRouter, dhcpDNS, unknownHosts   string
	apiTokenFile, adminTLSCert, adminTLSKey, secretKeyFile   string
	adminListen                                              []string
	httpPort, tftpPort, dhcpPort                             int
	kubeconfig, rack, leaderElectionNamespace, capiNamespace string
	leaderElect                                              bool
}

// serveFlagBindings says which setting each flag overrides.
func serveFlagBindings() []flagBinding {
	return []flagBinding{
		{"data-dir", "dataDir"}, {"interface", "interface"}, {"address", "address"},
		{"log-level", "logLevel"}, {"log-format", "logFormat"}, {"secret-key-file", "secretKeyFile"},
		{"dhcp-mode", "dhcp.mode"}, {"dhcp-range", "dhcp.range"}, {"dhcp-router", "dhcp.router"},
		{"dhcp-dns", "dhcp.dns"}, {"unknown-hosts", "dhcp.unknownHosts"}, {"dhcp-port", "dhcp.port"},
		{"api-token-file", "api.tokenFile"}, {"admin-listen", "api.listen"},
		{"admin-tls-cert", "api.tlsCertFile"}, {"admin-tls-key", "api.tlsKeyFile"},
		{"http-port", "http.port"}, {"tftp-port", "tftp.port"},
		{"kubeconfig", "capi.kubeconfig"}, {"rack", "capi.rack"}, {"leader-elect", "capi.leaderElect"},
		{"leader-election-namespace", "capi.leaderElectionNamespace"}, {"capi-namespace", "capi.namespace"},
	}
}

func (f *serveFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.configFile, "config", "", "YAML configuration file (default "+defaultConfigFile+" when it exists); RACKBOOT_* variables and flags override it")
	fs.BoolVar(&f.checkConfig, "check-config", false, "check the configuration (file, environment and flags), print every problem and exit")
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
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the Cluster API management cluster: runs the RackbootMachine and RackbootCluster controllers (in a pod, the in-cluster configuration is used without it)")
	fs.StringVar(&f.rack, "rack", "", "this rack's name: the failure domain whose machines this rackboot reconciles, and RACK in providerIDs rackboot://RACK/HOST (required with the controllers)")
	fs.BoolVar(&f.leaderElect, "leader-elect", true, "with several rackboot instances for one rack, let one (holding Lease rackboot-RACK) act at a time")
	fs.StringVar(&f.leaderElectionNamespace, "leader-election-namespace", controllers.DefaultLeaderElectionNamespace, "namespace of the leader-election Lease")
	fs.StringVar(&f.capiNamespace, "capi-namespace", "", "reconcile only the RackbootMachines and RackbootClusters of this namespace (default all)")
}

// load builds the effective configuration: defaults < file < RACKBOOT_* environment <
// flags. The file is --config, else /etc/rackboot/config.yaml when it exists
// (env.defaultConfig; tests leave it empty). A *configError lists every setting that
// could not be read; the returned configuration is usable for resolve even then, so
// --check-config reports the validation problems too.
func (f *serveFlags) load(fs *pflag.FlagSet, env *cliEnv) (serveConfig, error) {
	cfg := defaultServeConfig()
	cfg.layers = newSettingLayers()
	path := f.configFile
	if path == "" && env.defaultConfig != "" {
		if _, err := os.Stat(env.defaultConfig); err == nil {
			path = env.defaultConfig
		}
	}
	f.configFile = path
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("--config: %w", err)
		}
		cfg.layers.decodeFile(path, b, &cfg)
	}
	getenv := env.getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	cfg.layers.applyEnv(&cfg, getenv)
	if env.environ != nil {
		cfg.layers.checkEnvNames(&cfg, env.environ())
	}
	cfg.layers.applyFlags(&cfg, fs, serveFlagBindings())
	if len(cfg.layers.errs) > 0 {
		return cfg, &configError{problems: cfg.layers.errs}
	}
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

// bad is an error naming the setting by its YAML path; resolve adds where it was set.
func bad(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
}

// prefixed puts section before each error of err (a join) whose message starts with a
// setting's name, as the packages' Validate errors do.
func prefixed(section string, err error) []error {
	var out []error
	for _, e := range unjoin(err) {
		out = append(out, fmt.Errorf("%s%w", section, e))
	}
	return out
}

// resolved is the validated configuration with addresses parsed and derived values
// filled in; serve runs from this.
type resolved struct {
	serveConfig
	Addr netip.Addr
	// DHCPConfig is the DHCP service's Config (settings, the subnets with the local
	// one first, the boot files and the server address) without its wiring.
	DHCPConfig dhcp.Config
	// AdminListen are the admin API's addresses (api.listen or its default).
	AdminListen []admin.ListenAddr
}

// ServerURL is the boot listener's base URL as hosts reach it.
func (r *resolved) ServerURL() string { return "http://" + hostPort(r.Addr.String(), r.HTTP.Port) }

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

// resolve validates cfg (every package's Validate on its section, and what only serve
// knows: the interface, the address, the local subnet) and derives the server address
// and the DHCP subnets. Its *configError lists every problem, each with the file line,
// variable or flag that set the value.
func (cfg serveConfig) resolve(ifAddrs interfaceAddrs) (*resolved, error) {
	r := &resolved{serveConfig: cfg}
	var errs []error
	add := func(err error) { errs = append(errs, err) }

	if cfg.DataDir == "" {
		add(bad("dataDir", "is empty: give a directory rackboot may write, e.g. /var/lib/rackboot"))
	}
	switch cfg.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add(bad("logLevel", "%q is not a level: use debug, info, warn or error", cfg.LogLevel))
	}
	switch cfg.LogFormat {
	case "text", "json":
	default:
		add(bad("logFormat", "%q is not a format: use text or json", cfg.LogFormat))
	}
	for _, p := range []struct {
		field string
		v     int
	}{{"http.port", cfg.HTTP.Port}, {"tftp.port", cfg.TFTP.Port}} {
		if p.v < 0 || p.v > 65535 {
			add(bad(p.field, "%d is not a port: use 1-65535", p.v))
		}
	}
	errs = append(errs, prefixed("http.", cfg.HTTP.Config.Validate())...)
	errs = append(errs, prefixed("http.rateLimits.script.", cfg.HTTP.RateLimits.Script.Validate())...)
	errs = append(errs, prefixed("http.rateLimits.metadata.", cfg.HTTP.RateLimits.Metadata.Validate())...)
	errs = append(errs, prefixed("tftp.", cfg.TFTP.Config.Validate())...)
	errs = append(errs, prefixed("bmc.", cfg.BMC.Validate())...)
	errs = append(errs, prefixed("provision.", cfg.Provision.Validate())...)
	errs = append(errs, prefixed("capi.", cfg.CAPI.Config.Validate())...)
	errs = append(errs, prefixed("images.", cfg.Images.Validate())...)
	errs = append(errs, prefixed("ipxe.", cfg.IPXE.Validate())...)
	errs = append(errs, prefixed("metadata.", cfg.Metadata.Validate())...)
	errs = append(errs, prefixed("trust.", cfg.Trust.Validate())...)
	errs = append(errs, prefixed("inventory.", cfg.Inventory.Validate())...)
	r.AdminListen, errs = cfg.API.resolve(cfg.DataDir, errs)
	errs = append(errs, checkBootFiles(cfg.Boot, filepath.Join(cfg.DataDir, "ipxe"))...)

	// The server address: given, or the interface's first IPv4.
	var ifPrefixes []netip.Prefix
	if cfg.Interface != "" {
		ps, err := ifAddrs(cfg.Interface)
		if err != nil {
			add(bad("interface", "%v: name an interface that exists (see `ip -br addr`)", err))
		}
		ifPrefixes = ps
	}
	if cfg.Address != "" {
		a, err := netip.ParseAddr(cfg.Address)
		if err != nil || !a.Is4() {
			add(bad("address", "%q is not an IPv4 address", cfg.Address))
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
	if (cfg.DHCP.Mode == dhcp.ModeServer || cfg.DHCP.Mode == dhcp.ModeProxy) && cfg.Interface == "" {
		add(bad("interface", "is empty but dhcp.mode is %s: name the provisioning interface, or set dhcp.mode off", cfg.DHCP.Mode))
	}
	if !r.Addr.IsValid() && cfg.Address == "" && len(ifPrefixes) > 0 {
		add(bad("address", "is empty and interface %s has no IPv4 address: give this server's IPv4 address on the provisioning network (boot URLs point at it)", cfg.Interface))
	} else if !r.Addr.IsValid() && cfg.Address == "" && cfg.Interface == "" {
		add(bad("address", "is empty and could not be derived: give this server's IPv4 address on the provisioning network (boot URLs point at it)"))
	}
	errs = append(errs, r.resolveDHCP(ifPrefixes)...)
	if len(errs) > 0 {
		return nil, &configError{problems: cfg.layers.problems(errors.Join(errs...))}
	}
	return r, nil
}

// resolveDHCP builds the DHCP service's Config and validates it, naming its settings by
// their paths in the file (the local subnet is written flat under dhcp, the boot files
// under boot).
func (r *resolved) resolveDHCP(ifPrefixes []netip.Prefix) []error {
	cfg := r.serveConfig
	dc := cfg.DHCP.Config
	dc.Interface, dc.ServerIP, dc.Boot = cfg.Interface, r.Addr, cfg.Boot
	if r.Addr.IsValid() {
		dc.Boot.HTTPBaseURL = r.ServerURL()
	}
	r.DHCPConfig = dc
	if !r.Addr.IsValid() && dc.Mode != dhcp.ModeOff {
		// No address (already reported): check what does not depend on it.
		vc := dc
		if vc.Mode == dhcp.ModeServer || vc.Mode == dhcp.ModeProxy {
			vc.Mode = dhcp.ModeOff
		}
		return prefixed("dhcp.", vc.Validate())
	}
	if dc.Mode == dhcp.ModeOff {
		// The service does not run; its settings are still checked.
		return prefixed("dhcp.", dc.Validate())
	}
	local := cfg.DHCP.Local
	if !local.Prefix.IsValid() {
		for _, p := range ifPrefixes {
			if p.Addr() == r.Addr {
				local.Prefix = p.Masked()
			}
		}
		if !local.Prefix.IsValid() {
			return []error{bad("address", "%s is not an address of interface %s: use one of %v, or set dhcp.cidr", r.Addr, cfg.Interface, ifPrefixes)}
		}
	}
	if !local.Prefix.Contains(r.Addr) {
		return []error{bad("address", "%s is not inside the local subnet %s", r.Addr, local.Prefix)}
	}
	var errs []error
	if dc.Mode == dhcp.ModeServer && local.Range.IsZero() && dc.UnknownHosts == dhcp.UnknownDiscover {
		errs = append(errs, bad("dhcp.range", "is empty but unknown hosts are discovered in server mode: give a pool START-END inside %s", local.Prefix))
	}
	dc.Subnets = []dhcp.Subnet{local}
	for _, s := range cfg.DHCP.Subnets {
		if s.LeaseTime == 0 {
			s.LeaseTime = local.LeaseTime
		}
		dc.Subnets = append(dc.Subnets, s)
	}
	r.DHCPConfig = dc
	for _, err := range unjoin(dc.Validate()) {
		errs = append(errs, fmt.Errorf("%s", dhcpPath(err.Error())))
	}
	return errs
}

// dhcpPath turns a dhcp.Config error's setting name into its path in the file.
func dhcpPath(msg string) string {
	if rest, ok := strings.CutPrefix(msg, "subnets[0]."); ok {
		return "dhcp." + rest
	}
	if rest, ok := strings.CutPrefix(msg, "subnets[0]"); ok {
		return "dhcp.cidr" + rest
	}
	if rest, ok := strings.CutPrefix(msg, "subnets["); ok {
		if n, tail, ok := strings.Cut(rest, "]"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				return fmt.Sprintf("dhcp.subnets[%d]%s", i-1, strings.ReplaceAll(tail, "subnets[0]", "the local subnet"))
			}
		}
	}
	if strings.HasPrefix(msg, "boot.") {
		return msg
	}
	return "dhcp." + msg
}

// checkBootFiles checks that each boot file names a binary rackboot serves: one it
// embeds or one the operator put in DATA_DIR/ipxe. The names' form is dhcp's rule.
func checkBootFiles(b dhcp.Boot, overlay string) []error {
	bins, err := ipxe.OpenBinaries(overlay)
	if err != nil {
		return []error{bad("dataDir", "%v", err)}
	}
	defer bins.Close()
	var errs []error
	for _, f := range []struct{ field, v string }{
		{"boot.biosBinary", b.BIOSFile}, {"boot.uefiBinary", b.UEFIFile},
		{"boot.httpBootBinary", b.HTTPBootFile}, {"boot.arm64Binary", b.ARM64File},
	} {
		if f.v == "" || strings.Contains(f.v, "..") {
			continue // dhcp's Validate says what is wrong with it
		}
		if _, err := fs.Stat(bins, f.v); err != nil {
			errs = append(errs, bad(f.field, "%q is neither an iPXE binary rackboot embeds (undionly.kpxe, snponly.efi, ipxe.efi) nor a file in %s: fix the name, or put the file there", f.v, overlay))
		}
	}
	return errs
}

// hostPort is host:port for listeners.
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
			errs = append(errs, bad(fmt.Sprintf("api.listen[%d]", i), "%v", err))
			continue
		}
		out = append(out, a)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, bad("api.tlsCertFile", "give the certificate and its key (api.tlsKeyFile) together, or neither for a generated one"))
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
