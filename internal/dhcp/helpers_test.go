package dhcp

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rackboot/rackboot/internal/inventory"
)

// testStore is a Store the tests can also read timelines from.
type testStore interface {
	Store
	Events(ctx context.Context, hostID string, after uint64) ([]inventory.Event, error)
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// storeKinds are the Store implementations every handler test runs against: the
// in-memory fake and the real bbolt inventory in a temporary directory.
type openStore func(t testing.TB, now func() time.Time, hosts ...inventory.Host) testStore

func storeKinds() []struct {
	name string
	open openStore
} {
	return []struct {
		name string
		open openStore
	}{
		{"fake", func(t testing.TB, now func() time.Time, hosts ...inventory.Host) testStore {
			return newFakeStore(now, hosts...)
		}},
		{"bolt", openBolt},
	}
}

func openBolt(t testing.TB, now func() time.Time, hosts ...inventory.Host) testStore {
	t.Helper()
	return openBoltAt(t, filepath.Join(t.TempDir(), "inventory.db"), now, hosts...)
}

func openBoltAt(t testing.TB, path string, now func() time.Time, hosts ...inventory.Host) testStore {
	t.Helper()
	s, err := inventory.Open(path, inventory.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if len(hosts) > 0 {
		if _, err := s.CreateHosts(context.Background(), hosts...); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

const (
	macReserved = "52:54:00:00:00:01" // node1, 10.0.0.11
	macKnown    = "52:54:00:00:00:02" // node2, no reservation
	macRemote   = "52:54:00:00:01:01" // remote1, 10.0.1.11 (behind a relay)
	macUnknown  = "52:54:00:99:99:99"
	macOther    = "52:54:00:99:99:98"
)

func testHosts() []inventory.Host {
	return []inventory.Host{
		{ID: "node1", MACs: []string{macReserved}, IP: "10.0.0.11", Hostname: "node1"},
		{ID: "node2", MACs: []string{macKnown}},
		{ID: "remote1", MACs: []string{macRemote}, IP: "10.0.1.11", Hostname: "remote1.rack2.example"},
	}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func baseConfig() Config {
	return Config{
		Mode:     ModeServer,
		ServerIP: ip("10.0.0.1"),
		Subnets: []Subnet{
			{
				Prefix: netip.MustParsePrefix("10.0.0.0/24"),
				Range:  Range{ip("10.0.0.100"), ip("10.0.0.110")},
				Router: ip("10.0.0.254"),
				DNS:    []netip.Addr{ip("10.0.0.53")},
				Domain: "rack1.example",
			},
			{
				Prefix:    netip.MustParsePrefix("10.0.1.0/24"),
				Range:     Range{ip("10.0.1.100"), ip("10.0.1.150")},
				Router:    ip("10.0.1.1"),
				LeaseTime: 2 * time.Hour,
				Routes:    []Route{{Dest: netip.MustParsePrefix("192.168.0.0/16"), Gateway: ip("10.0.1.2")}},
			},
		},
		Boot: Boot{HTTPBaseURL: "http://10.0.0.1:8080/"},
	}
}

// env is one handler under test with its store, clock and registry.
type env struct {
	t     testing.TB
	h     *Handler
	store testStore
	clock *clock
	reg   *prometheus.Registry
	cfg   Config
}

func newEnv(t testing.TB, open openStore, mutate func(*Config)) *env {
	t.Helper()
	c := newClock()
	st := open(t, c.Now, testHosts()...)
	return newEnvWith(t, st, c, mutate)
}

func newEnvWith(t testing.TB, st testStore, c *clock, mutate func(*Config)) *env {
	t.Helper()
	cfg := baseConfig()
	cfg.Store, cfg.Now = st, c.Now
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, h: h, store: st, clock: c, reg: reg, cfg: cfg}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// send runs req through the handler as if it arrived on port 67 from peer.
func (e *env) send(req *dhcpv4.DHCPv4) *Reply {
	e.t.Helper()
	return e.h.Handle(context.Background(), req, Meta{Peer: netip.MustParseAddrPort("0.0.0.0:68")})
}

func (e *env) count(typ string, out outcome) float64 {
	return counterValue(e.h.m.packets.WithLabelValues(typ, string(out)))
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func (e *env) lease(mac string) (inventory.Lease, bool) {
	l, err := e.store.GetLease(context.Background(), mac)
	return l, err == nil
}

func (e *env) eventTypes(hostID string) []string {
	e.t.Helper()
	evs, err := e.store.Events(context.Background(), hostID, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

// Request builders.

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func msg(mt dhcpv4.MessageType, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4}),
		dhcpv4.WithHwAddr(mustMAC(mac)),
		dhcpv4.WithMessageType(mt),
	}, mods...)...)
	if err != nil {
		panic(err)
	}
	return m
}

// testUUID is option 97: type 0, then a 16-byte GUID.
const testUUID = "\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x00"

func pxe(arch iana.Arch) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		d.UpdateOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", arch)))
		d.UpdateOption(dhcpv4.OptClientArch(arch))
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, []byte(testUUID)))
	}
}

func httpClient(arch iana.Arch) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		d.UpdateOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("HTTPClient:Arch:%05d:UNDI:003001", arch)))
		d.UpdateOption(dhcpv4.OptClientArch(arch))
	}
}

// ipxe is iPXE's DHCP: PXEClient vendor class, raw user class "iPXE", option 175.
func ipxe(arch iana.Arch) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		pxe(arch)(d)
		d.UpdateOption(dhcpv4.OptUserClass("iPXE"))
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionEtherboot, []byte{0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e}))
	}
}

// agentInfo is option 82: circuit ID "port", remote ID "sw1".
const agentInfo = "\x01\x04port\x02\x03sw1"

func relayed(gi string) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		d.GatewayIPAddr = net.ParseIP(gi).To4()
		d.HopCount = 1
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, []byte(agentInfo)))
	}
}

func sid(s string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(s)))
}

func requested(s string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(s)))
}

func ciaddr(s string) dhcpv4.Modifier { return dhcpv4.WithClientIP(net.ParseIP(s)) }

func prl(codes ...dhcpv4.OptionCode) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptParameterRequestList(codes...))
}

// view is a reply reduced to what tests compare; options decoded by name.
type view struct {
	Type      string
	Dest      string
	YIAddr    string `json:",omitempty"`
	CIAddr    string `json:",omitempty"`
	SIAddr    string `json:",omitempty"`
	GIAddr    string `json:",omitempty"`
	File      string `json:",omitempty"`
	Broadcast bool   `json:",omitempty"`
	Opts      map[string]string
}

func viewOf(r *Reply) *view {
	if r == nil {
		return nil
	}
	// Round-trip through the wire format, so the test sees what a client would.
	m, err := dhcpv4.FromBytes(r.Msg.ToBytes())
	if err != nil {
		panic(err)
	}
	v := &view{
		Type: m.MessageType().String(), Dest: r.Dest.String(), File: m.BootFileName,
		Broadcast: m.IsBroadcast(), Opts: map[string]string{},
	}
	for f, a := range map[*string]net.IP{&v.YIAddr: m.YourIPAddr, &v.CIAddr: m.ClientIPAddr, &v.SIAddr: m.ServerIPAddr, &v.GIAddr: m.GatewayIPAddr} {
		if !a.IsUnspecified() {
			*f = a.String()
		}
	}
	codes := make([]int, 0, len(m.Options))
	for c := range m.Options {
		codes = append(codes, int(c))
	}
	sort.Ints(codes)
	for _, c := range codes {
		code := dhcpv4.GenericOptionCode(c)
		val := m.Options[uint8(c)]
		var s string
		switch uint8(c) {
		case 1, 3, 6, 54:
			var ips []string
			for i := 0; i+4 <= len(val); i += 4 {
				ips = append(ips, net.IP(val[i:i+4]).String())
			}
			s = strings.Join(ips, ",")
		case 51, 58, 59:
			var d dhcpv4.Duration
			_ = d.FromBytes(val)
			s = time.Duration(d).String()
		case 12, 15, 56, 60, 66, 67:
			s = string(val)
		case 53:
			continue // in Type
		default:
			s = hex.EncodeToString(val)
		}
		name, ok := optNames[uint8(c)]
		if !ok {
			name = fmt.Sprintf("%d", code.Code())
		}
		v.Opts[name] = s
	}
	return v
}

// optNames names the options in views.
var optNames = map[uint8]string{
	1: "mask", 3: "router", 6: "dns", 12: "hostname", 15: "domain", 43: "vendor",
	51: "lease", 54: "serverID", 56: "message", 58: "t1", 59: "t2", 60: "class",
	61: "clientID", 66: "tftpServer", 67: "bootfile", 82: "relayInfo", 97: "uuid", 121: "routes",
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
