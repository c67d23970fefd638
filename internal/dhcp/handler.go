package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/time/rate"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ratelimit"
)

// eventRate and eventBurst bound the DHCP events one MAC writes: a boot (PXE ROM, iPXE,
// then Linux, each a DORA) writes about a dozen in seconds.
const (
	eventRate  = 1.0
	eventBurst = 40
)

// Well-known BOOTP/DHCP ports (RFC 2131 §4.1): replies to relays go to the server port,
// replies to clients to the client port, whatever ports rackboot itself listens on.
const (
	serverPort = 67
	clientPort = 68
)

// Listener says which socket a packet arrived on.
type Listener uint8

const (
	// ListenerDHCP is Config.Port (67).
	ListenerDHCP Listener = iota
	// ListenerPXE is Config.ProxyPort (4011), the PXE boot server port.
	ListenerPXE
)

// Meta is what the socket knows about a packet besides its bytes.
type Meta struct {
	// Peer is the source address and port of the packet.
	Peer     netip.AddrPort
	Listener Listener
	// deferAck: the Server sends the reply itself once its lease is durable (see
	// Reply.durable), so the handler does not wait for the commit.
	deferAck bool
}

// Reply is a message to send and where to send it.
type Reply struct {
	Msg  *dhcpv4.DHCPv4
	Dest netip.AddrPort
	// HWDest, when set, is the only hardware address the reply may reach: it carries a
	// boot key. The Server sends it as an Ethernet frame to HWDest (IP destination Dest),
	// so a broadcast IP destination does not make it a broadcast frame.
	HWDest net.HardwareAddr
	// durable, when set, receives the commit result of the lease this reply (an ACK)
	// promises: the reply may be sent only after nil arrives. Only the Server's own
	// calls get such replies (Meta.deferAck); it counts them in the metrics when they
	// are sent, under typ.
	durable <-chan error
	typ     string
}

// Handler turns DHCP requests into replies. It owns no socket: the Server reads
// packets, calls HandlePacket and writes what comes back, so tests drive it directly.
// It is safe for concurrent use.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	serverIP net.IP
	tftpIP   net.IP
	tftpName string
	subnets  []*subnetState
	// discover limits unknown MACs served under UnknownDiscover.
	discoveryRate *rate.Limiter
	// events bounds the timeline writes one MAC's packets cause: a stranger can put any
	// MAC in a packet, and must not push a host's history out of its timeline.
	events *ratelimit.Limiter
	// macMu serialises the packets of one MAC (striped): a client's retransmissions and
	// a RELEASE racing its REQUEST are decided one after the other, while packets of
	// different MACs run concurrently. Address allocation itself is one inventory call
	// (Store.BindLease), so two clients are never given the same address.
	macMu [1024]sync.Mutex
	// enrolMu makes the discovery cap's count and the enrolment one step.
	enrolMu sync.Mutex
}

// subnetState is a Subnet with its option bytes precomputed.
type subnetState struct {
	Subnet
	exclude   map[netip.Addr]bool // never handed out from the pool
	mask      []byte
	router    []byte
	dns       []byte
	routes121 []byte
}

// NewHandler validates cfg and registers the DHCP metrics on cfg.Registerer.
func NewHandler(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	if cfg.Mode != ModeOff && cfg.Store == nil {
		return nil, errors.New("dhcp: Store is nil: the DHCP service needs the inventory")
	}
	cfg = cfg.withDefaults()
	if cfg.Mode == ModeOff {
		return nil, errors.New("dhcp: mode is off: there is nothing to handle")
	}
	h := &Handler{
		cfg:      cfg,
		log:      cfg.Logger,
		serverIP: net.IP(cfg.ServerIP.AsSlice()),
		tftpIP:   net.IP(cfg.Boot.TFTPServer.AsSlice()),
		tftpName: cfg.Boot.TFTPServer.String(),
	}
	for _, s := range cfg.Subnets {
		h.subnets = append(h.subnets, newSubnetState(s, cfg.ServerIP))
	}
	h.discoveryRate = rate.NewLimiter(rate.Limit(cfg.Discovery.Rate), cfg.Discovery.Burst)
	events, err := ratelimit.New(ratelimit.Config{PerSecond: eventRate, Burst: eventBurst, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	h.events = events
	m, err := newMetrics(cfg.Registerer, h)
	if err != nil {
		return nil, err
	}
	h.m = m
	return h, nil
}

func newSubnetState(s Subnet, server netip.Addr) *subnetState {
	st := &subnetState{Subnet: s, exclude: map[netip.Addr]bool{
		s.Prefix.Addr(): true, lastAddr(s.Prefix): true, server: true,
	}}
	st.mask = net.CIDRMask(s.Prefix.Bits(), 32)
	if s.Router.IsValid() {
		st.exclude[s.Router] = true
		st.router = s.Router.AsSlice()
	}
	for _, d := range s.DNS {
		st.exclude[d] = true
		st.dns = append(st.dns, d.AsSlice()...)
	}
	if len(s.Routes) > 0 {
		var rs dhcpv4.Routes
		for _, r := range s.Routes {
			rs = append(rs, route(r.Dest, r.Gateway))
		}
		if s.Router.IsValid() {
			rs = append(rs, route(netip.PrefixFrom(netip.IPv4Unspecified(), 0), s.Router))
		}
		st.routes121 = rs.ToBytes()
	}
	return st
}

func route(dst netip.Prefix, gw netip.Addr) *dhcpv4.Route {
	dst = dst.Masked()
	return &dhcpv4.Route{
		Dest:   &net.IPNet{IP: net.IP(dst.Addr().AsSlice()), Mask: net.CIDRMask(dst.Bits(), 32)},
		Router: net.IP(gw.AsSlice()),
	}
}

// inPool reports whether a may be handed out from sub's dynamic range.
func (s *subnetState) inPool(a netip.Addr) bool { return s.Range.Contains(a) && !s.exclude[a] }

// HandlePacket parses one packet and handles it. Malformed packets are counted and
// dropped; a panic is recovered, counted and logged, so one bad packet never stops
// the service. A nil Reply means: send nothing.
func (h *Handler) HandlePacket(ctx context.Context, b []byte, meta Meta) (r *Reply) {
	typ := "unknown"
	defer h.recoverPanic(&typ, &r)
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		h.m.packets.WithLabelValues(typ, string(outMalformed)).Inc()
		h.log.Debug("dhcp: malformed packet dropped", "peer", meta.Peer, "bytes", len(b), "err", err)
		return nil
	}
	typ = typeLabel(req)
	return h.handleCounted(ctx, req, meta, typ)
}

// Handle handles one parsed request; see HandlePacket.
func (h *Handler) Handle(ctx context.Context, req *dhcpv4.DHCPv4, meta Meta) (r *Reply) {
	typ := "unknown"
	defer h.recoverPanic(&typ, &r)
	typ = typeLabel(req)
	return h.handleCounted(ctx, req, meta, typ)
}

func (h *Handler) recoverPanic(typ *string, r **Reply) {
	if p := recover(); p != nil {
		h.m.panics.Inc()
		h.m.packets.WithLabelValues(*typ, string(outError)).Inc()
		h.log.Error("dhcp: handling a packet panicked; packet dropped", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		*r = nil
	}
}

func (h *Handler) handleCounted(ctx context.Context, req *dhcpv4.DHCPv4, meta Meta, typ string) *Reply {
	r, out, why := h.handle(ctx, req, meta)
	if r != nil && r.durable != nil {
		r.typ = typ
		return r // counted once its lease is durable (Server.sendAcks)
	}
	h.m.packets.WithLabelValues(typ, string(out)).Inc()
	switch out {
	case outReplied, outAccepted, outNAK:
	case outError:
		h.log.Warn("dhcp: request not answered", "type", typ, "mac", req.ClientHWAddr.String(), "xid", req.TransactionID.String(), "reason", why)
	default:
		h.log.Debug("dhcp: request not answered", "type", typ, "outcome", string(out), "mac", req.ClientHWAddr.String(), "xid", req.TransactionID.String(), "reason", why)
	}
	return r
}

// exchange is one request being handled.
type exchange struct {
	req *dhcpv4.DHCPv4
	c   client
	// events wait to be queued with the exchange's lease (an ACK's events commit with
	// it) or, at the end, with the next group commit.
	events []inventory.HostEvent
	host   *inventory.Host // nil: unknown MAC served by policy, or not looked up
	sub    *subnetState    // server mode only
	relay  netip.Addr      // giaddr, if relayed
	// deferAck: an ACK's lease commit is not waited for; durable gets its result.
	deferAck bool
	durable  chan error
}

func (h *Handler) handle(ctx context.Context, req *dhcpv4.DHCPv4, meta Meta) (*Reply, outcome, string) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, outIgnored, "not a BOOTREQUEST"
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return nil, outIgnored, "not an Ethernet client: only 6-byte MAC addresses are served"
	}
	if req.MessageType() == dhcpv4.MessageTypeNone {
		return nil, outIgnored, "BOOTP request (no DHCP message type): BOOTP is not served"
	}
	x := &exchange{req: req, c: classify(req), deferAck: meta.deferAck}
	if gi := addr4(req.GatewayIPAddr); gi.IsValid() && !gi.IsUnspecified() {
		x.relay = gi
	}
	mu := &h.macMu[macStripe(req.ClientHWAddr)]
	mu.Lock()
	defer mu.Unlock()
	defer h.flushEvents(ctx, x)
	if meta.Listener == ListenerPXE {
		return h.handlePXE(ctx, x, meta)
	}
	if h.cfg.Mode == ModeProxy {
		return h.handleProxy(ctx, x)
	}
	return h.handleServer(ctx, x)
}

func macStripe(hw net.HardwareAddr) int {
	var s uint32 = 2166136261
	for _, b := range hw {
		s = (s ^ uint32(b)) * 16777619
	}
	return int(s % 1024)
}

// addr4 converts a header address; anything but 4 bytes (or 16 mapped) is invalid.
func addr4(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil {
		return netip.AddrFrom4([4]byte(v4))
	}
	return netip.Addr{}
}

func usable(a netip.Addr) bool { return a.IsValid() && !a.IsUnspecified() }

// lookup finds the client's host. allowed is false when the unknown-host policy says
// to stay silent. With create, an unknown netboot client is enrolled as discovered.
func (h *Handler) lookup(ctx context.Context, x *exchange, create bool) (allowed bool, err error) {
	host, err := h.cfg.Store.HostByMAC(ctx, x.c.mac)
	if err == nil {
		x.host = &host
		return true, nil
	}
	if !errors.Is(err, inventory.ErrNotFound) {
		return false, fmt.Errorf("look up MAC %s in the inventory: %w", x.c.mac, err)
	}
	if h.cfg.UnknownHosts != UnknownDiscover {
		return false, nil
	}
	// Known hosts never reach this point: a flood of unknown MACs is refused here, after
	// one index read, without a write, an offer or a pool address.
	if !h.discoveryRate.AllowN(h.cfg.Now(), 1) {
		h.m.discoveryRefused.WithLabelValues("rate").Inc()
		return false, nil
	}
	if !create || !x.c.netboot() {
		return true, nil
	}
	// Count and enrol as one step: packets are handled concurrently, and the cap must
	// hold against a flood of new MACs arriving together.
	h.enrolMu.Lock()
	defer h.enrolMu.Unlock()
	if host, err := h.cfg.Store.HostByMAC(ctx, x.c.mac); err == nil {
		x.host = &host // enrolled by a packet handled meanwhile
		return true, nil
	}
	if n, err := h.countDiscovered(ctx); err != nil {
		return false, err
	} else if n >= h.cfg.Discovery.MaxHosts {
		h.m.discoveryRefused.WithLabelValues("cap").Inc()
		h.log.Warn("dhcp: discovery cap reached: unknown MAC ignored; accept or delete discovered hosts", "mac", x.c.mac, "discovered", n, "max", h.cfg.Discovery.MaxHosts)
		return false, nil
	}
	nh := inventory.Host{MACs: []string{x.c.mac}, State: inventory.StateDiscovered}
	if x.c.hasArch {
		nh.Arch, nh.Firmware = archInfo(x.c.arch)
	}
	nh.ID = inventory.DefaultID(&nh)
	hs, err := h.cfg.Store.CreateHosts(ctx, nh)
	if errors.Is(err, inventory.ErrConflict) {
		// Another packet from the same client enrolled it first.
		if host, err2 := h.cfg.Store.HostByMAC(ctx, x.c.mac); err2 == nil {
			x.host = &host
			return true, nil
		}
	}
	if err != nil {
		return false, fmt.Errorf("enrol discovered host %s: %w", nh.ID, err)
	}
	x.host = &hs[0]
	h.log.Info("dhcp: discovered a new host", "hostID", nh.ID, "mac", x.c.mac, "arch", nh.Arch, "firmware", string(nh.Firmware))
	return true, nil
}

// countDiscovered counts hosts in state discovered. It runs only for unknown MACs that
// passed the discovery rate, so its cost is bounded by that rate.
func (h *Handler) countDiscovered(ctx context.Context) (int, error) {
	hosts, err := h.cfg.Store.ListHosts(ctx)
	if err != nil {
		return 0, fmt.Errorf("count discovered hosts: %w", err)
	}
	n := 0
	for i := range hosts {
		if hosts[i].State == inventory.StateDiscovered {
			n++
		}
	}
	return n, nil
}

// recordArch stores the arch and firmware option 93 revealed, if they changed.
func (h *Handler) recordArch(ctx context.Context, x *exchange) {
	if x.host == nil || !x.c.hasArch {
		return
	}
	arch, fw := archInfo(x.c.arch)
	if arch == "" || (x.host.Arch == arch && x.host.Firmware == fw) {
		return
	}
	updated, err := h.cfg.Store.UpdateHost(ctx, x.host.ID, func(hst *inventory.Host) error {
		hst.Arch, hst.Firmware = arch, fw
		return nil
	})
	if err != nil {
		h.log.Warn("dhcp: could not record the host's arch", "hostID", x.host.ID, "arch", arch, "err", err)
		return
	}
	x.host = &updated
}

// event adds to the host's timeline: it is queued with the exchange (see flushEvents),
// so a packet costs no transaction of its own for it.
func (h *Handler) event(_ context.Context, x *exchange, typ, msg string, fields map[string]string) {
	if e, ok := h.newEvent(x, typ, msg, fields); ok {
		x.events = append(x.events, e)
	}
}

// newEvent builds a timeline event for the exchange's host, or reports false when there
// is no host or its MAC is over its event budget.
func (h *Handler) newEvent(x *exchange, typ, msg string, fields map[string]string) (inventory.HostEvent, bool) {
	if x.host == nil {
		return inventory.HostEvent{}, false
	}
	if x.relay.IsValid() {
		fields["relay"] = x.relay.String()
	}
	if a := archLabel(x.c); a != "" {
		fields["arch"] = a
	}
	for k, v := range fields {
		if v == "" {
			delete(fields, k)
		}
	}
	if !h.events.AllowKey(x.c.mac) {
		h.m.eventsSuppressed.Inc()
		return inventory.HostEvent{}, false
	}
	return inventory.HostEvent{HostID: x.host.ID, Event: inventory.Event{
		Time: h.cfg.Now().UTC(), Type: typ, Message: msg, Fields: fields,
	}}, true
}

// flushEvents queues the exchange's remaining events with the next group commit.
func (h *Handler) flushEvents(ctx context.Context, x *exchange) {
	if len(x.events) == 0 {
		return
	}
	if err := h.cfg.Store.RecordEvents(ctx, x.events...); err != nil {
		h.log.Warn("dhcp: could not record events", "hostID", x.events[0].HostID, "events", len(x.events), "err", err)
	}
	x.events = nil
}

// newReply starts a reply to req (RFC 2131 table 3): xid, flags, chaddr and giaddr
// copied, server identifier set, relay agent information (82, RFC 3046) and client
// identifier (61, RFC 6842) echoed.
func (h *Handler) newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	resp := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: req.GatewayIPAddr,
		ClientHWAddr:  req.ClientHWAddr,
		Options:       make(dhcpv4.Options, 10),
	}
	resp.UpdateOption(dhcpv4.OptMessageType(mt))
	resp.UpdateOption(dhcpv4.OptServerIdentifier(h.serverIP))
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier} {
		if v := req.Options.Get(code); v != nil {
			resp.Options[code.Code()] = v
		}
	}
	return resp
}

// replyDest applies RFC 2131 §4.1: relayed requests are answered through the relay,
// then ciaddr by unicast, else broadcast. We never unicast to yiaddr before the client
// has the address, since that needs an ARP entry injected; broadcast always works.
func replyDest(req *dhcpv4.DHCPv4, nak bool) netip.AddrPort {
	if gi := addr4(req.GatewayIPAddr); usable(gi) {
		return netip.AddrPortFrom(gi, serverPort)
	}
	if ci := addr4(req.ClientIPAddr); !nak && usable(ci) {
		return netip.AddrPortFrom(ci, clientPort)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), clientPort)
}

// addNetboot adds boot options for netboot clients; it returns the boot file ("" for
// none, never with its key) for logs and events. keyAddr, when valid, is the address the
// reply gives the client and goes to: an iPXE client then gets a boot key bound to it.
// keyed reports whether a key went in.
func (h *Handler) addNetboot(resp *dhcpv4.DHCPv4, x *exchange, keyAddr netip.Addr) (file string, keyed bool) {
	if !x.c.netboot() {
		return "", false
	}
	bi, ok := h.bootFor(x.c)
	if !ok {
		h.log.Debug("dhcp: no boot file for this client's architecture", "mac", x.c.mac, "arch", archLabel(x.c))
		return "", false
	}
	key := h.key(x, bi, keyAddr)
	h.addBootOptions(resp, x.c, bi, key)
	return bi.file, key != ""
}

// key issues the boot key for a reply carrying bi to addr, or "" when none may go.
func (h *Handler) key(x *exchange, bi bootInfo, addr netip.Addr) string {
	if !bi.script || h.cfg.Keys == nil || !usable(addr) {
		return ""
	}
	return h.cfg.Keys.IssueKey(x.c.mac, addr)
}

// keyRoute says whether a server-mode reply can carry a key, and to which hardware
// address it must then be sent: the client's own for a reply on this segment; none (the
// relay forwards it) when relayed through the subnet's router, which the configuration
// names; no key through any other "relay", since giaddr is only a field a stranger can
// fill with its own address.
func (h *Handler) keyRoute(x *exchange) (hw net.HardwareAddr, ok bool) {
	if x.relay.IsValid() {
		return nil, x.sub != nil && x.sub.Router.IsValid() && x.relay == x.sub.Router && x.sub != h.subnets[0]
	}
	return x.req.ClientHWAddr, true
}
