package dhcp

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Mode selects how the DHCP service behaves on the provisioning network.
type Mode string

const (
	// ModeServer: rackboot is the authoritative DHCP server of its subnets.
	ModeServer Mode = "server"
	// ModeProxy: another DHCP server hands out addresses; rackboot only adds boot
	// options (proxyDHCP, PXE specification 2.1).
	ModeProxy Mode = "proxy"
	// ModeOff: no DHCP at all; the site's DHCP server points clients at rackboot.
	ModeOff Mode = "off"
)

// UnknownHostPolicy says what to do with a MAC address that is not in the inventory.
type UnknownHostPolicy string

const (
	// UnknownIgnore: unknown MACs get no answer at all.
	UnknownIgnore UnknownHostPolicy = "ignore"
	// UnknownDiscover: unknown MACs get an address from the pool; unknown PXE/HTTP boot
	// clients are also enrolled as hosts in state "discovered".
	UnknownDiscover UnknownHostPolicy = "discover"
)

// Defaults for Config fields left zero.
const (
	DefaultPort         = 67
	DefaultProxyPort    = 4011
	DefaultLeaseTime    = time.Hour
	DefaultOfferHold    = time.Minute
	DefaultDeclineHold  = 10 * time.Minute
	DefaultBIOSFile     = "undionly.kpxe"
	DefaultUEFIFile     = "snponly.efi"
	DefaultHTTPBootFile = "snponly.efi"
	defaultHTTPPort     = 8080
	minLeaseTime        = time.Minute

	// DefaultDiscoveryMaxHosts caps the hosts in state discovered: past it, unknown MACs
	// are ignored until the operator accepts or deletes some.
	DefaultDiscoveryMaxHosts = 256
	// DefaultDiscoveryRate is how many unknown MACs per second discovery serves (a
	// rack's worth of new servers powering on together fits in the burst).
	DefaultDiscoveryRate  = 2.0
	DefaultDiscoveryBurst = 20

	DefaultWorkers     = 256
	DefaultQueueLength = 2048
)

// KeyIssuer hands out the per-boot key carried in an iPXE script URL (trust.Gate). The
// reply that carries it must reach mac's hardware address and addr only.
type KeyIssuer interface {
	IssueKey(mac string, addr netip.Addr) string
}

// Discovery bounds what unknown MACs may cost under UnknownDiscover.
type Discovery struct {
	// MaxHosts is the most hosts in state discovered (default 256); unknown MACs beyond
	// it get no answer.
	MaxHosts int `yaml:"maxHosts" doc:"most hosts in state discovered; unknown MACs beyond it get no answer"`
	// Rate (per second) and Burst bound the unknown MACs served (default 2/s, burst 20),
	// so that a flood of random MACs cannot crowd out known hosts or empty the pool.
	Rate  float64 `yaml:"rate" doc:"unknown MACs served per second under unknownHosts: discover"`
	Burst int     `yaml:"burst" doc:"unknown MACs served at once"`
}

// Config is the DHCP service's whole configuration. cmd/rackboot fills it from flags
// and the config file; the zero values of optional fields get the defaults above.
//
// The settings an operator writes carry yaml tags: the "dhcp" section of rackboot's
// configuration file, with the local Subnet written flat in it and the others under
// subnets; Boot is its "boot" section (docs/config.md). The untagged fields are wiring.
type Config struct {
	Mode Mode `yaml:"mode" doc:"server (rackboot hands out addresses), proxy (boot options beside the site's DHCP server) or off"`
	// Interface is the provisioning interface: both listeners are bound to it
	// (SO_BINDTODEVICE), so rackboot never answers on any other network.
	Interface string
	// ServerIP is rackboot's IPv4 address on Interface: the server identifier (option 54)
	// and, unless Boot says otherwise, the next server and the HTTP host.
	ServerIP netip.Addr
	// Port is the DHCP server port (default 67).
	Port int `yaml:"port" doc:"DHCP server port"`
	// ProxyPort is the PXE boot server port answered in proxy mode (default 4011).
	ProxyPort int `yaml:"proxyPort" doc:"PXE boot server port answered in proxy mode"`
	// Subnets served in server mode. The first is the local subnet on Interface and
	// must contain ServerIP; the others are reached through relay agents (giaddr).
	Subnets []Subnet
	// UnknownHosts is the policy for MACs not in the inventory (default ignore).
	UnknownHosts UnknownHostPolicy `yaml:"unknownHosts" doc:"ignore unknown MACs, or discover them (a pool address; PXE clients are enrolled as discovered)"`
	Boot         Boot
	// OfferHold is how long an offered address stays reserved for the client it was
	// offered to (default 1m).
	OfferHold time.Duration `yaml:"offerHold" doc:"an offered address stays reserved for its client this long"`
	// DeclineHold is how long an address a client DECLINEd stays out of the pool
	// (default 10m).
	DeclineHold time.Duration `yaml:"declineHold" doc:"an address a client declined (in use by someone else) stays out of the pool this long"`

	// Keys issues the boot key put in iPXE script URLs; nil sends them without one (a
	// script fetch then boots no agent in server and proxy mode: see package trust).
	Keys KeyIssuer
	// Discovery limits enrolment under UnknownDiscover.
	Discovery Discovery `yaml:"discovery" doc:"limits on unknown MACs under unknownHosts: discover"`

	// Workers is how many packets are handled at once (default 256: an ACK waits for
	// its lease's fsync, and the packets waiting share one).
	Workers int `yaml:"workers" doc:"packets handled at once (an ACK waits for its lease's fsync)"`
	// QueueLength bounds the packets waiting for a worker (default 2048); past it the
	// oldest waiting packet is shed (see queue.go).
	QueueLength int `yaml:"queueLength" doc:"packets waiting for a worker; past it the oldest is dropped"`

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Store      Store
	// Now is the clock; tests replace it (default time.Now).
	Now func() time.Time
}

// Subnet is one IPv4 network served in server mode.
type Subnet struct {
	Prefix netip.Prefix `yaml:"cidr" doc:"the subnet, e.g. 10.0.0.0/24 (the local one defaults to the interface's prefix)"`
	// Range is the dynamic pool; the zero Range means reservations only.
	Range  Range        `yaml:"range" doc:"dynamic pool START-END; empty: reservations only"`
	Router netip.Addr   `yaml:"router" doc:"default gateway handed to clients"` // zero: no router option
	DNS    []netip.Addr `yaml:"dns" doc:"DNS servers handed to clients"`
	Domain string       `yaml:"domain" doc:"domain name handed to clients"`
	// LeaseTime for addresses on this subnet (default 1h).
	LeaseTime time.Duration `yaml:"leaseTime" doc:"lease time"`
	// Routes are sent as classless static routes (option 121, RFC 3442) to clients that
	// ask for them. RFC 3442 makes such clients ignore the router option, so the default
	// route via Router is appended automatically.
	Routes []Route `yaml:"routes" doc:"classless static routes (option 121): [{dest: CIDR, gateway: IP}]; the default route via router is added"`
}

// Range is an inclusive range of IPv4 addresses.
type Range struct {
	Start, End netip.Addr
}

// Route is one classless static route.
type Route struct {
	Dest    netip.Prefix `yaml:"dest" doc:"destination network, e.g. 10.50.0.0/16"`
	Gateway netip.Addr   `yaml:"gateway" doc:"gateway inside the client's subnet"`
}

// Boot says which files and URLs netboot clients are sent to.
type Boot struct {
	// HTTPBaseURL is where rackboot's HTTP server is reached by clients, e.g.
	// http://10.0.0.1:8080 (default http://ServerIP:8080). iPXE scripts and UEFI HTTP
	// boot binaries are URLs under it.
	HTTPBaseURL string
	// TFTPServer is the next server (siaddr, option 66) for TFTP boot files (default
	// ServerIP).
	TFTPServer netip.Addr `yaml:"tftpServer" doc:"next server for TFTP boot files (empty: this server's address)"`
	// BIOSFile is sent over TFTP to BIOS PXE clients (arch 0; default undionly.kpxe).
	BIOSFile string `yaml:"biosBinary" doc:"TFTP boot file for BIOS PXE clients"`
	// UEFIFile is sent over TFTP to x86-64 UEFI PXE clients (arch 7 and 9; default
	// snponly.efi; ipxe.efi carries its own NIC drivers).
	UEFIFile string `yaml:"uefiBinary" doc:"TFTP boot file for x86-64 UEFI PXE clients: snponly.efi, or ipxe.efi (its own NIC drivers)"`
	// HTTPBootFile is sent as HTTPBaseURL/ipxe/bin/HTTPBootFile to x86-64 UEFI HTTP boot
	// clients (arch 16; default snponly.efi).
	HTTPBootFile string `yaml:"httpBootBinary" doc:"binary offered by URL to x86-64 UEFI HTTP boot clients"`
	// ARM64File is sent to arm64 UEFI clients, over TFTP (arch 11) or as a URL under
	// /ipxe/bin/ (arch 19). Empty (the default): arm64 clients get no boot options,
	// because rackboot ships no arm64 iPXE.
	ARM64File string `yaml:"arm64Binary" doc:"boot file for arm64 UEFI clients, put in DATA_DIR/ipxe (rackboot ships none; empty: arm64 clients get no boot options)"`
}

// ParseRange parses "START-END", e.g. "10.0.0.100-10.0.0.200".
func ParseRange(s string) (Range, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return Range{}, fmt.Errorf("range %q: write it as START-END, e.g. 10.0.0.100-10.0.0.200", s)
	}
	start, err1 := netip.ParseAddr(strings.TrimSpace(a))
	end, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || !start.Is4() || !end.Is4() {
		return Range{}, fmt.Errorf("range %q: START and END must be IPv4 addresses, e.g. 10.0.0.100-10.0.0.200", s)
	}
	if end.Less(start) {
		return Range{}, fmt.Errorf("range %q: start is after end: write START-END with START <= END", s)
	}
	return Range{Start: start, End: end}, nil
}

// UnmarshalText reads START-END (ParseRange); empty is the zero Range.
func (r *Range) UnmarshalText(b []byte) error {
	if strings.TrimSpace(string(b)) == "" {
		*r = Range{}
		return nil
	}
	v, err := ParseRange(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalText writes START-END.
func (r Range) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// IsZero reports whether r is the empty range (no pool).
func (r Range) IsZero() bool { return !r.Start.IsValid() && !r.End.IsValid() }

// Contains reports whether a is inside r.
func (r Range) Contains(a netip.Addr) bool {
	return !r.IsZero() && a.Is4() && !a.Less(r.Start) && !r.End.Less(a)
}

func (r Range) String() string {
	if r.IsZero() {
		return ""
	}
	return r.Start.String() + "-" + r.End.String()
}

// fieldError names the setting at fault by its name in the configuration file (the
// yaml tags), so cmd/rackboot prefixes its section ("dhcp.") and finds its line.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func bad(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

// DefaultConfig is the settings part of Config with every default written out (what
// `rackboot config defaults` prints), in server mode.
func DefaultConfig() Config {
	return Config{
		Mode: ModeServer, Port: DefaultPort, ProxyPort: DefaultProxyPort, UnknownHosts: UnknownIgnore,
		OfferHold: DefaultOfferHold, DeclineHold: DefaultDeclineHold,
		Discovery: Discovery{MaxHosts: DefaultDiscoveryMaxHosts, Rate: DefaultDiscoveryRate, Burst: DefaultDiscoveryBurst},
		Workers:   DefaultWorkers, QueueLength: DefaultQueueLength,
		Boot: Boot{BIOSFile: DefaultBIOSFile, UEFIFile: DefaultUEFIFile, HTTPBootFile: DefaultHTTPBootFile},
	}
}

// withDefaults returns a copy of c with defaults filled in; it does not validate.
func (c Config) withDefaults() Config {
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.ProxyPort == 0 {
		c.ProxyPort = DefaultProxyPort
	}
	if c.UnknownHosts == "" {
		c.UnknownHosts = UnknownIgnore
	}
	if c.OfferHold == 0 {
		c.OfferHold = DefaultOfferHold
	}
	if c.DeclineHold == 0 {
		c.DeclineHold = DefaultDeclineHold
	}
	if c.Discovery.MaxHosts == 0 {
		c.Discovery.MaxHosts = DefaultDiscoveryMaxHosts
	}
	if c.Discovery.Rate == 0 {
		c.Discovery.Rate = DefaultDiscoveryRate
	}
	if c.Discovery.Burst == 0 {
		c.Discovery.Burst = DefaultDiscoveryBurst
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.QueueLength <= 0 {
		c.QueueLength = DefaultQueueLength
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	b := &c.Boot
	if b.HTTPBaseURL == "" && c.ServerIP.IsValid() {
		b.HTTPBaseURL = fmt.Sprintf("http://%s:%d", c.ServerIP, defaultHTTPPort)
	}
	b.HTTPBaseURL = strings.TrimRight(b.HTTPBaseURL, "/")
	if !b.TFTPServer.IsValid() {
		b.TFTPServer = c.ServerIP
	}
	if b.BIOSFile == "" {
		b.BIOSFile = DefaultBIOSFile
	}
	if b.UEFIFile == "" {
		b.UEFIFile = DefaultUEFIFile
	}
	if b.HTTPBootFile == "" {
		b.HTTPBootFile = DefaultHTTPBootFile
	}
	subs := make([]Subnet, len(c.Subnets))
	for i, s := range c.Subnets {
		if s.LeaseTime == 0 {
			s.LeaseTime = DefaultLeaseTime
		}
		if s.Prefix.IsValid() {
			s.Prefix = s.Prefix.Masked()
		}
		s.DNS = append([]netip.Addr(nil), s.DNS...)
		s.Routes = append([]Route(nil), s.Routes...)
		subs[i] = s
	}
	c.Subnets = subs
	return c
}

// Validate checks c (after defaults) and returns every problem found, each naming the
// setting as the configuration file spells it (subnets[1].range, boot.uefiBinary) and
// what to do about it; ServerIP and Store, which serve fills in, by their Go names.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	// Off: the service does not run, but its settings are still checked, so a mode
	// switched on later finds them sound.
	serving := c.Mode != ModeOff
	switch c.Mode {
	case ModeOff, ModeServer, ModeProxy:
	case "":
		return bad("mode", "is empty: use server (rackboot hands out addresses), proxy (beside an existing DHCP server) or off")
	default:
		return bad("mode", "%q is not a mode: use server (rackboot hands out addresses), proxy (an existing DHCP server does; rackboot adds boot options) or off", c.Mode)
	}
	if serving && !c.ServerIP.Is4() {
		add(bad("ServerIP", "%q is not an IPv4 address: give rackboot's address on the provisioning interface", c.ServerIP))
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"port", c.Port}, {"proxyPort", c.ProxyPort}} {
		if p.v < 1 || p.v > 65535 {
			add(bad(p.name, "%d is not a UDP port: use 1-65535", p.v))
		}
	}
	if c.Mode == ModeProxy && c.Port == c.ProxyPort {
		add(bad("proxyPort", "is the same as port (%d): the PXE boot server port must differ (normally 4011)", c.Port))
	}
	switch c.UnknownHosts {
	case UnknownIgnore, UnknownDiscover:
	default:
		add(bad("unknownHosts", "%q is not a policy: use ignore or discover", c.UnknownHosts))
	}
	if d := c.Discovery; d.MaxHosts < 1 || d.MaxHosts > 100000 {
		add(bad("discovery.maxHosts", "%d is out of range: use 1-100000 (hosts in state discovered at once)", d.MaxHosts))
	}
	// The upper bounds are a bench's (perfdhcp with thousands of unknown MACs); a rack
	// wants a few per second.
	if d := c.Discovery; d.Rate <= 0 || d.Rate > 1e6 {
		add(bad("discovery.rate", "%g is out of range: use a rate above 0 and at most 1000000 unknown MACs per second", d.Rate))
	}
	if d := c.Discovery; d.Burst < 1 || d.Burst > 1000000 {
		add(bad("discovery.burst", "%d is out of range: use 1-1000000", d.Burst))
	}
	for _, h := range []struct {
		name string
		v    time.Duration
	}{{"offerHold", c.OfferHold}, {"declineHold", c.DeclineHold}} {
		if h.v < time.Second || h.v > 24*time.Hour {
			add(bad(h.name, "%s: give 1s-24h", h.v))
		}
	}
	if c.Workers < 1 || c.Workers > 65536 {
		add(bad("workers", "%d: give 1-65536 (default %d)", c.Workers, DefaultWorkers))
	}
	if c.QueueLength < 1 || c.QueueLength > 1<<20 {
		add(bad("queueLength", "%d: give 1-1048576 (default %d)", c.QueueLength, DefaultQueueLength))
	}
	if serving {
		add(prefixed("boot.", c.Boot.Validate()))
	}
	if c.Mode == ModeServer {
		if len(c.Subnets) == 0 {
			add(bad("subnets", "is empty: server mode needs at least the local subnet"))
		}
		for i, s := range c.Subnets {
			add(prefixed(fmt.Sprintf("subnets[%d].", i), s.Validate()))
			for j := 0; j < i; j++ {
				if o := c.Subnets[j]; s.Prefix.IsValid() && o.Prefix.IsValid() && s.Prefix.Overlaps(o.Prefix) {
					add(bad(fmt.Sprintf("subnets[%d].cidr", i), "%s overlaps subnets[%d] %s: list each network once", s.Prefix, j, o.Prefix))
				}
			}
		}
		if len(c.Subnets) > 0 && c.ServerIP.Is4() && c.Subnets[0].Prefix.IsValid() && !c.Subnets[0].Prefix.Contains(c.ServerIP) {
			add(bad("subnets[0].cidr", "%s does not contain ServerIP %s: the first subnet is the one on the provisioning interface", c.Subnets[0].Prefix, c.ServerIP))
		}
	}
	return errors.Join(errs...)
}

// prefixed puts prefix before the setting name of each error in err (a join).
func prefixed(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range unjoin(err) {
		if fe, ok := e.(*fieldError); ok {
			out = append(out, &fieldError{field: prefix + fe.field, msg: fe.msg})
		} else {
			out = append(out, fmt.Errorf("%s%w", prefix, e))
		}
	}
	return errors.Join(out...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// Validate checks one subnet (after defaults: a zero LeaseTime is refused). Errors name
// the setting as the configuration file spells it (cidr, range, routes[0], ...).
func (s Subnet) Validate() error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	p := s.Prefix
	if !p.IsValid() {
		return bad("cidr", "is empty: give the subnet in CIDR form such as 10.0.0.0/24")
	}
	if !p.Addr().Is4() {
		return bad("cidr", "%s is not an IPv4 prefix such as 10.0.0.0/24", p)
	}
	if p.Bits() > 30 {
		add(bad("cidr", "%s leaves no room for clients: use a /30 or larger network", p))
	}
	if !s.Range.IsZero() {
		switch {
		case !s.Range.Start.Is4() || !s.Range.End.Is4():
			add(bad("range", "%q: give both START and END as IPv4 addresses", s.Range))
		case s.Range.End.Less(s.Range.Start):
			add(bad("range", "%s: start is after end: write START-END with START <= END", s.Range))
		case !p.Contains(s.Range.Start) || !p.Contains(s.Range.End):
			add(bad("range", "%s is not inside the subnet %s: pick a pool inside it", s.Range, p))
		case s.Range.Start == p.Addr() || s.Range.End == lastAddr(p):
			add(bad("range", "%s includes the network or broadcast address of %s: leave them out", s.Range, p))
		}
	}
	if s.Router.IsValid() && (!s.Router.Is4() || !p.Contains(s.Router)) {
		add(bad("router", "%s is not an IPv4 address inside %s", s.Router, p))
	}
	for _, d := range s.DNS {
		if !d.Is4() {
			add(bad("dns", "%q is not an IPv4 address: give DNS servers as IP[,IP]", d))
		}
	}
	if s.Domain != "" && !validDomain(s.Domain) {
		add(bad("domain", "%q is not a domain name: use letters, digits, '-' and '.'", s.Domain))
	}
	if s.LeaseTime < minLeaseTime {
		add(bad("leaseTime", "%s is too short: use at least %s", s.LeaseTime, minLeaseTime))
	}
	for i, r := range s.Routes {
		if !r.Dest.IsValid() || !r.Dest.Addr().Is4() || !r.Gateway.Is4() {
			add(bad(fmt.Sprintf("routes[%d]", i), "give an IPv4 destination prefix and gateway"))
			continue
		}
		if !p.Contains(r.Gateway) {
			add(bad(fmt.Sprintf("routes[%d]", i), "gateway %s is not inside %s: clients can only reach gateways on their own network", r.Gateway, p))
		}
	}
	return errors.Join(errs...)
}

// Validate checks the boot files and addresses (after defaults). Errors name the
// setting as the configuration file spells it (uefiBinary, tftpServer, ...).
func (b Boot) Validate() error {
	var errs []error
	u, err := url.Parse(b.HTTPBaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, bad("HTTPBaseURL", "%q is not a base URL such as http://10.0.0.1:8080", b.HTTPBaseURL))
	}
	if !b.TFTPServer.Is4() {
		errs = append(errs, bad("tftpServer", "%q is not an IPv4 address", b.TFTPServer))
	}
	for _, f := range []struct{ name, v string }{
		{"biosBinary", b.BIOSFile}, {"uefiBinary", b.UEFIFile},
		{"httpBootBinary", b.HTTPBootFile}, {"arm64Binary", b.ARM64File},
	} {
		if f.name == "arm64Binary" && f.v == "" {
			continue
		}
		if !validFileName(f.v) {
			errs = append(errs, bad(f.name, "%q is not a boot file name: use at most 100 printable characters, no spaces, no '..'", f.v))
		}
	}
	return errors.Join(errs...)
}

// validFileName keeps names short enough for the 128-byte BOOTP file field even as a
// URL under a typical base, and free of anything a TFTP or HTTP path would misread.
func validFileName(s string) bool {
	if s == "" || len(s) > 100 || strings.Contains(s, "..") || strings.HasPrefix(s, "/") {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || r == '?' || r == '#' || r == '\\' {
			return false
		}
	}
	return true
}

func validDomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	hostBits := 32 - p.Bits()
	v := be32(a) | (uint32(1)<<hostBits - 1)
	if hostBits == 32 {
		v = ^uint32(0)
	}
	return addrFrom32(v)
}

func be32(a [4]byte) uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

func addrFrom32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
