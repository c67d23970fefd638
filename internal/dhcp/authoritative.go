package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/rackboot/rackboot/internal/inventory"
)

// This file is server mode, the authoritative DHCP server: addresses, leases and RFC
// 2131's message handling. Allocation itself is one inventory call (Store.BindLease).

// subnetFor picks the subnet a request belongs to: the relay's (giaddr), else the one
// holding ciaddr (a relayed client renewing by unicast), else the local subnet.
func (h *Handler) subnetFor(x *exchange) *subnetState {
	if x.relay.IsValid() {
		for _, s := range h.subnets {
			if s.Prefix.Contains(x.relay) {
				return s
			}
		}
		return nil
	}
	if ci := addr4(x.req.ClientIPAddr); usable(ci) {
		for _, s := range h.subnets {
			if s.Prefix.Contains(ci) {
				return s
			}
		}
	}
	return h.subnets[0]
}

func (h *Handler) handleServer(ctx context.Context, x *exchange) (*Reply, outcome, string) {
	mt := x.req.MessageType()
	switch mt {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeDecline,
		dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeInform:
	default:
		return nil, outIgnored, "message type " + mt.String() + " is not a client request"
	}
	x.sub = h.subnetFor(x)
	if x.sub == nil {
		return nil, outDropped, fmt.Sprintf("relayed from %s, which is in no configured subnet: add its network to the DHCP subnets", x.relay)
	}
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		return h.discover(ctx, x)
	case dhcpv4.MessageTypeRequest:
		return h.request(ctx, x)
	case dhcpv4.MessageTypeDecline:
		return h.decline(ctx, x)
	case dhcpv4.MessageTypeRelease:
		return h.release(ctx, x)
	default:
		return h.inform(ctx, x)
	}
}

// ours reports whether the server identifier option names this server.
func (h *Handler) ours(req *dhcpv4.DHCPv4) bool {
	return req.ServerIdentifier().Equal(h.serverIP)
}

func (h *Handler) discover(ctx context.Context, x *exchange) (*Reply, outcome, string) {
	allowed, err := h.lookup(ctx, x, true)
	if err != nil {
		return nil, outError, err.Error()
	}
	if !allowed {
		return nil, outIgnored, "unknown MAC and unknown hosts are ignored"
	}
	h.recordArch(ctx, x)
	if x.host != nil { // the events' strings and maps cost a storm of strangers nothing
		h.event(ctx, x, "dhcp.discover", "DHCPDISCOVER from "+x.c.mac, map[string]string{"vendorClass": vendorClassString(x.req)})
	}

	ip, err := h.offerAddress(ctx, x)
	if err != nil {
		return nil, outError, err.Error()
	}
	resp := h.newReply(x.req, dhcpv4.MessageTypeOffer)
	resp.YourIPAddr = net.IP(ip.AsSlice())
	h.addAddressOptions(resp, x, true)
	hw, ok := h.keyRoute(x)
	file, keyed := h.addNetboot(resp, x, keyFor(ok, ip))
	if !keyed {
		hw = nil
	}
	if x.host != nil {
		h.event(ctx, x, "dhcp.offer", "DHCPOFFER of "+ip.String(), map[string]string{"ip": ip.String(), "bootfile": file})
	}
	h.log.Debug("dhcp: offer", "mac", x.c.mac, "xid", x.req.TransactionID.String(), "ip", ip, "file", file)
	return &Reply{Msg: resp, Dest: replyDest(x.req, false), HWDest: hw}, outReplied, ""
}

// keyFor is the address a boot key is bound to, or none when the reply may carry no key.
func keyFor(ok bool, ip netip.Addr) netip.Addr {
	if !ok {
		return netip.Addr{}
	}
	return ip
}

// offerAddress chooses the address to offer (RFC 2131 §4.3.1: the reservation, else the
// client's current or previous address, else the requested one, else the lowest free
// one of the range) and holds it for the client for OfferHold. The choice and the hold
// are one inventory call (BindLease); the hold is not waited for (an OFFER promises
// nothing: a crash forgets it and the client asks again).
func (h *Handler) offerAddress(ctx context.Context, x *exchange) (netip.Addr, error) {
	sub := x.sub
	claim := inventory.LeaseClaim{
		MAC: x.c.mac, Hostname: h.hostname(x), State: inventory.LeaseOffered,
		TTL: h.cfg.OfferHold, KeepHeld: true,
	}
	if x.host != nil && x.host.IP != "" {
		r := x.host.Addr()
		if !sub.Prefix.Contains(r) {
			return netip.Addr{}, fmt.Errorf("host %s has reserved address %s, but its request came from subnet %s: fix the reservation or the relay", x.host.ID, r, sub.Prefix)
		}
		claim.Want = []netip.Addr{r}
	} else {
		l, err := h.cfg.Store.GetLease(ctx, x.c.mac)
		switch {
		case err == nil:
			if a, perr := netip.ParseAddr(l.IP); perr == nil && l.State != inventory.LeaseDeclined && sub.inPool(a) {
				claim.Want = append(claim.Want, a)
			}
		case !errors.Is(err, inventory.ErrNotFound):
			return netip.Addr{}, fmt.Errorf("read lease of %s: %w", x.c.mac, err)
		}
		if want := addr4(x.req.RequestedIPAddress()); usable(want) && sub.inPool(want) {
			claim.Want = append(claim.Want, want)
		}
		if sub.Range.IsZero() {
			if len(claim.Want) == 0 {
				return netip.Addr{}, fmt.Errorf("MAC %s has no reserved address and subnet %s has no dynamic range: enrol the host with an IP or configure a range", x.c.mac, sub.Prefix)
			}
		} else {
			claim.Pool = &inventory.Pool{Start: sub.Range.Start, End: sub.Range.End, Exclude: func(a netip.Addr) bool { return sub.exclude[a] }}
		}
	}
	l, err := h.cfg.Store.BindLease(ctx, claim)
	switch {
	case errors.Is(err, inventory.ErrPoolExhausted):
		return netip.Addr{}, fmt.Errorf("pool %s of subnet %s is exhausted (every address is leased, offered, reserved or quarantined): widen the range or shorten the lease time", sub.Range, sub.Prefix)
	case err != nil:
		return netip.Addr{}, fmt.Errorf("hold offer for %s: %w", x.c.mac, err)
	}
	return netip.ParseAddr(l.IP)
}

// requestState is the client state RFC 2131 §4.3.2 infers from a REQUEST's fields.
type requestState uint8

const (
	selecting requestState = iota
	initReboot
	renewing // also rebinding: the same answer, only the destination differs
)

func (h *Handler) request(ctx context.Context, x *exchange) (*Reply, outcome, string) {
	req := x.req
	var state requestState
	var ip netip.Addr
	switch {
	case req.Options.Has(dhcpv4.OptionServerIdentifier):
		if !h.ours(req) {
			// The client chose another server's offer: free the address we held.
			h.dropOffer(ctx, x.c.mac)
			return nil, outIgnored, "client selected server " + req.ServerIdentifier().String()
		}
		state, ip = selecting, addr4(req.RequestedIPAddress())
		if !usable(ip) {
			ip = addr4(req.ClientIPAddr) // some old clients put it in ciaddr
		}
	case usable(addr4(req.RequestedIPAddress())) && !usable(addr4(req.ClientIPAddr)):
		state, ip = initReboot, addr4(req.RequestedIPAddress())
	default:
		state, ip = renewing, addr4(req.ClientIPAddr)
	}
	if !usable(ip) {
		return nil, outDropped, "REQUEST names no address (no requested IP option, no ciaddr)"
	}
	allowed, err := h.lookup(ctx, x, true)
	if err != nil {
		return nil, outError, err.Error()
	}
	if !allowed {
		return nil, outIgnored, "unknown MAC and unknown hosts are ignored"
	}
	h.recordArch(ctx, x)

	// The ACK's event commits with its lease: one transaction for both.
	var ackEvents []inventory.HostEvent
	if x.host != nil {
		if e, ok := h.newEvent(x, "dhcp.ack", "DHCPACK of "+ip.String(), map[string]string{"ip": ip.String(), "bootfile": h.bootFileFor(x)}); ok {
			ackEvents = append(x.events, e)
		}
	}
	silent, reason, err := h.bind(ctx, x, state, ip, ackEvents)
	if err == nil && !silent && reason == "" {
		x.events = nil // committed with the lease
	}
	switch {
	case err != nil:
		return nil, outError, err.Error()
	case silent:
		return nil, outIgnored, reason
	case reason != "":
		h.event(ctx, x, "dhcp.nak", "DHCPNAK: "+reason, map[string]string{"ip": ip.String(), "reason": reason})
		h.log.Debug("dhcp: nak", "mac", x.c.mac, "xid", req.TransactionID.String(), "ip", ip, "reason", reason)
		return h.nak(x, reason), outNAK, reason
	}
	resp := h.newReply(req, dhcpv4.MessageTypeAck)
	resp.ClientIPAddr = req.ClientIPAddr
	resp.YourIPAddr = net.IP(ip.AsSlice())
	h.addAddressOptions(resp, x, true)
	hw, ok := h.keyRoute(x)
	file, keyed := h.addNetboot(resp, x, keyFor(ok, ip))
	if !keyed {
		hw = nil
	}
	h.log.Debug("dhcp: ack", "mac", x.c.mac, "xid", req.TransactionID.String(), "ip", ip, "file", file, "hostID", hostID(x))
	return &Reply{Msg: resp, Dest: replyDest(req, false), HWDest: hw, durable: x.durable}, outReplied, ""
}

// bind decides a REQUEST and records the lease. It returns silent (no reply at all),
// or a NAK reason, or neither (ACK: the lease, with events, is durable).
func (h *Handler) bind(ctx context.Context, x *exchange, state requestState, ip netip.Addr, events []inventory.HostEvent) (silent bool, nak string, err error) {
	sub := x.sub

	// What we know of this client: its reservation, else its lease (any age).
	var record netip.Addr
	if x.host != nil && x.host.IP != "" {
		record = x.host.Addr()
	} else if l, err := h.cfg.Store.GetLease(ctx, x.c.mac); err == nil && l.State != inventory.LeaseDeclined {
		record, _ = netip.ParseAddr(l.IP)
	} else if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return false, "", fmt.Errorf("read lease of %s: %w", x.c.mac, err)
	}
	if state != selecting && !record.IsValid() {
		// RFC 2131 §4.3.2: with no record of the client, stay silent, so that servers
		// that do not know each other can share a wire.
		return true, "no record of this client", nil
	}
	if !sub.Prefix.Contains(ip) {
		return false, fmt.Sprintf("%s is not on this network (%s)", ip, sub.Prefix), nil
	}
	if x.host != nil && x.host.IP != "" {
		if ip != record {
			return false, fmt.Sprintf("%s is not this host's reserved address", ip), nil
		}
	} else {
		if state != selecting && ip != record {
			return false, fmt.Sprintf("%s is not this client's lease", ip), nil
		}
		if !sub.inPool(ip) {
			return false, fmt.Sprintf("%s is not in the dynamic range", ip), nil
		}
	}
	claim := inventory.LeaseClaim{
		MAC: x.c.mac, Hostname: h.hostname(x), State: inventory.LeaseBound,
		TTL: sub.LeaseTime, Want: []netip.Addr{ip}, Events: events,
	}
	if x.deferAck {
		x.durable = make(chan error, 1)
		claim.Durable = x.durable
	}
	_, err = h.cfg.Store.BindLease(ctx, claim)
	if errors.Is(err, inventory.ErrConflict) {
		return false, fmt.Sprintf("%s is in use by another client", ip), nil
	}
	if err != nil {
		return false, "", fmt.Errorf("store lease of %s for %s: %w", ip, x.c.mac, err)
	}
	return false, "", nil
}

// dropOffer frees an address held for mac that the client did not take.
func (h *Handler) dropOffer(ctx context.Context, mac string) {
	l, err := h.cfg.Store.GetLease(ctx, mac)
	if err != nil || l.State != inventory.LeaseOffered {
		return
	}
	if err := h.cfg.Store.DeleteLease(ctx, mac); err != nil {
		h.log.Warn("dhcp: could not free an offer the client declined", "mac", mac, "ip", l.IP, "err", err)
	}
}

func (h *Handler) nak(x *exchange, reason string) *Reply {
	resp := h.newReply(x.req, dhcpv4.MessageTypeNak)
	resp.UpdateOption(dhcpv4.OptMessage(reason))
	if x.relay.IsValid() {
		// RFC 2131 §4.3.2: the relay must broadcast the NAK to the client.
		resp.SetBroadcast()
	}
	return &Reply{Msg: resp, Dest: replyDest(x.req, true)}
}

func (h *Handler) release(ctx context.Context, x *exchange) (*Reply, outcome, string) {
	if x.req.Options.Has(dhcpv4.OptionServerIdentifier) && !h.ours(x.req) {
		return nil, outIgnored, "RELEASE is for server " + x.req.ServerIdentifier().String()
	}
	ip := addr4(x.req.ClientIPAddr)
	if !usable(ip) {
		return nil, outDropped, "RELEASE without ciaddr"
	}
	if _, err := h.lookup(ctx, x, false); err != nil {
		return nil, outError, err.Error()
	}
	freed, err := h.freeLease(ctx, x.c.mac, ip)
	if err != nil {
		return nil, outError, err.Error()
	}
	if !freed {
		return nil, outIgnored, "no lease of " + ip.String() + " for this client"
	}
	h.event(ctx, x, "dhcp.release", "DHCPRELEASE of "+ip.String(), map[string]string{"ip": ip.String()})
	h.log.Debug("dhcp: release", "mac", x.c.mac, "ip", ip, "hostID", hostID(x))
	return nil, outAccepted, ""
}

// freeLease deletes mac's lease if it is for ip.
func (h *Handler) freeLease(ctx context.Context, mac string, ip netip.Addr) (bool, error) {
	l, err := h.cfg.Store.GetLease(ctx, mac)
	if errors.Is(err, inventory.ErrNotFound) || (err == nil && l.IP != ip.String()) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read lease of %s: %w", mac, err)
	}
	if err := h.cfg.Store.DeleteLease(ctx, mac); err != nil {
		return false, fmt.Errorf("delete lease of %s: %w", mac, err)
	}
	return true, nil
}

func (h *Handler) decline(ctx context.Context, x *exchange) (*Reply, outcome, string) {
	if !h.ours(x.req) {
		return nil, outIgnored, "DECLINE is for another server"
	}
	ip := addr4(x.req.RequestedIPAddress())
	if !usable(ip) {
		return nil, outDropped, "DECLINE without a requested IP address"
	}
	if _, err := h.lookup(ctx, x, false); err != nil {
		return nil, outError, err.Error()
	}
	quarantined, err := h.quarantine(ctx, x, ip)
	if err != nil {
		return nil, outError, err.Error()
	}
	msg := "DHCPDECLINE of " + ip.String() + ": another machine uses it"
	if quarantined {
		h.log.Warn("dhcp: client declined its address: another machine on the network uses it; quarantined", "mac", x.c.mac, "ip", ip, "for", h.cfg.DeclineHold)
	} else {
		h.log.Warn("dhcp: client declined its reserved address: another machine on the network uses it; find it and remove it", "mac", x.c.mac, "ip", ip, "hostID", hostID(x))
	}
	h.event(ctx, x, "dhcp.decline", msg, map[string]string{"ip": ip.String()})
	return nil, outAccepted, ""
}

// quarantine drops the client's lease on ip and keeps ip out of the pool for
// DeclineHold. The quarantine is a lease in state "declined" held by a synthetic,
// locally administered MAC derived from the address (de:c1:a.b.c.d), so it survives
// restarts, shows in the lease list, and does not block the client's next lease.
// A reserved address cannot be quarantined: the reservation wins and the operator is
// told.
func (h *Handler) quarantine(ctx context.Context, x *exchange, ip netip.Addr) (bool, error) {
	l, err := h.cfg.Store.GetLease(ctx, x.c.mac)
	if err == nil && l.IP == ip.String() {
		if err := h.cfg.Store.DeleteLease(ctx, x.c.mac); err != nil {
			return false, fmt.Errorf("delete declined lease of %s: %w", x.c.mac, err)
		}
	} else if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return false, fmt.Errorf("read lease of %s: %w", x.c.mac, err)
	}
	if hst, err := h.cfg.Store.HostByIP(ctx, ip.String()); err == nil && hst.IP == ip.String() {
		return false, nil
	}
	_, err = h.cfg.Store.BindLease(ctx, inventory.LeaseClaim{
		MAC: quarantineMAC(ip), State: inventory.LeaseDeclined,
		TTL: h.cfg.DeclineHold, Want: []netip.Addr{ip},
	})
	if errors.Is(err, inventory.ErrConflict) {
		// Someone else holds it already; it is out of the pool either way.
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("quarantine %s: %w", ip, err)
	}
	return true, nil
}

func quarantineMAC(ip netip.Addr) string {
	a := ip.As4()
	return net.HardwareAddr{0xde, 0xc1, a[0], a[1], a[2], a[3]}.String()
}

func (h *Handler) inform(ctx context.Context, x *exchange) (*Reply, outcome, string) {
	ci := addr4(x.req.ClientIPAddr)
	if !usable(ci) {
		return nil, outDropped, "INFORM without ciaddr"
	}
	if !x.sub.Prefix.Contains(ci) {
		return nil, outIgnored, fmt.Sprintf("INFORM from %s, which is in no served subnet", ci)
	}
	allowed, err := h.lookup(ctx, x, false)
	if err != nil {
		return nil, outError, err.Error()
	}
	if !allowed {
		return nil, outIgnored, "unknown MAC and unknown hosts are ignored"
	}
	resp := h.newReply(x.req, dhcpv4.MessageTypeAck)
	resp.ClientIPAddr = x.req.ClientIPAddr
	h.addAddressOptions(resp, x, false)
	// An INFORM names its own ciaddr, which nobody checked: no key.
	h.addNetboot(resp, x, netip.Addr{})
	return &Reply{Msg: resp, Dest: replyDest(x.req, false)}, outReplied, ""
}

// addAddressOptions adds the subnet's configuration. withLease adds lease time, T1
// (1/2) and T2 (7/8) as RFC 2131 §4.4.5 suggests; INFORM replies carry none.
func (h *Handler) addAddressOptions(resp *dhcpv4.DHCPv4, x *exchange, withLease bool) {
	s := x.sub
	o := resp.Options
	o[dhcpv4.OptionSubnetMask.Code()] = s.mask
	if s.router != nil {
		o[dhcpv4.OptionRouter.Code()] = s.router
	}
	if s.dns != nil {
		o[dhcpv4.OptionDomainNameServer.Code()] = s.dns
	}
	if s.Domain != "" {
		resp.UpdateOption(dhcpv4.OptDomainName(s.Domain))
	}
	if x.host != nil && x.host.Hostname != "" {
		resp.UpdateOption(dhcpv4.OptHostName(x.host.Hostname))
	}
	if withLease {
		resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(s.LeaseTime))
		resp.UpdateOption(dhcpv4.OptRenewTimeValue(s.LeaseTime / 2))
		resp.UpdateOption(dhcpv4.OptRebindingTimeValue(s.LeaseTime * 7 / 8))
	}
	// RFC 3442 clients that get option 121 ignore the router option, so it is only sent
	// to clients that ask for it (or ask for nothing in particular).
	if s.routes121 != nil && x.req.IsOptionRequested(dhcpv4.OptionClasslessStaticRoute) {
		o[dhcpv4.OptionClasslessStaticRoute.Code()] = s.routes121
	}
}

// hostname is the host's name from the inventory, else what the client called itself
// (option 12) if that is a valid name: it ends up in the lease list.
func (h *Handler) hostname(x *exchange) string {
	if x.host != nil && x.host.Hostname != "" {
		return x.host.Hostname
	}
	if hn := x.req.HostName(); validDomain(hn) {
		return hn
	}
	return ""
}

func hostID(x *exchange) string {
	if x.host == nil {
		return ""
	}
	return x.host.ID
}
