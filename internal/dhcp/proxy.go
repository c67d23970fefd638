package dhcp

import (
	"context"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// This file is proxy mode (proxyDHCP, PXE specification 2.1): boot options only, beside
// the site's DHCP server, on port 67 and on the PXE boot server port.

// handleProxy answers on port 67 in proxy mode: DISCOVERs from netboot clients get an
// OFFER without an address (PXE specification 2.1, proxyDHCP); everything else belongs
// to the site's DHCP server.
func (h *Handler) handleProxy(ctx context.Context, x *exchange) (*Reply, outcome, string) {
	if x.req.MessageType() != dhcpv4.MessageTypeDiscover {
		return nil, outIgnored, "proxy mode answers only DISCOVER on the DHCP port; the site DHCP server handles the rest"
	}
	return h.proxyReply(ctx, x, dhcpv4.MessageTypeOffer, replyDest(x.req, false), Meta{})
}

// handlePXE answers the PXE boot server port (4011): a netboot client that took its
// address elsewhere asks for its boot file with a REQUEST (or INFORM).
func (h *Handler) handlePXE(ctx context.Context, x *exchange, meta Meta) (*Reply, outcome, string) {
	switch x.req.MessageType() {
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
	default:
		return nil, outIgnored, "the PXE port answers only REQUEST and INFORM"
	}
	dest := meta.Peer
	if !usable(dest.Addr()) || dest.Port() == 0 {
		dest = replyDest(x.req, false)
	}
	return h.proxyReply(ctx, x, dhcpv4.MessageTypeAck, dest, meta)
}

func (h *Handler) proxyReply(ctx context.Context, x *exchange, mt dhcpv4.MessageType, dest netip.AddrPort, meta Meta) (*Reply, outcome, string) {
	if !x.c.netboot() {
		return nil, outIgnored, "not a PXE or HTTP boot client"
	}
	bi, ok := h.bootFor(x.c)
	if !ok {
		return nil, outIgnored, "no boot file for architecture " + archLabel(x.c)
	}
	allowed, err := h.lookup(ctx, x, true)
	if err != nil {
		return nil, outError, err.Error()
	}
	if !allowed {
		return nil, outIgnored, "unknown MAC and unknown hosts are ignored"
	}
	h.recordArch(ctx, x)
	resp := h.newReply(x.req, mt)
	resp.ClientIPAddr = x.req.ClientIPAddr
	var hw net.HardwareAddr
	switch {
	case bi.script && mt == dhcpv4.MessageTypeOffer:
		// This OFFER is broadcast: it carries no boot file for iPXE, which then asks
		// the PXE port (4011) from its address, and gets its key there (iPXE uses a
		// proxy offer's file only when it has one with a next server).
		addPXEClass(resp, x.c)
	case bi.script && !x.relay.IsValid() && meta.Peer.IsValid():
		// The 4011 answer goes to the address that asked, in a frame to the MAC the
		// request names: a stranger asking for another's MAC from its own address
		// never sees it.
		hw = x.req.ClientHWAddr
		h.addBootOptions(resp, x.c, bi, h.key(x, bi, meta.Peer.Addr()))
	default:
		h.addBootOptions(resp, x.c, bi, "")
	}
	if mt == dhcpv4.MessageTypeOffer {
		h.event(ctx, x, "dhcp.discover", "DHCPDISCOVER from "+x.c.mac, map[string]string{"vendorClass": vendorClassString(x.req)})
		h.event(ctx, x, "dhcp.offer", "proxyDHCP OFFER of "+bi.file, map[string]string{"bootfile": bi.file, "mode": "proxy"})
	} else {
		h.event(ctx, x, "dhcp.ack", "PXE boot server ACK with "+bi.file, map[string]string{"bootfile": bi.file, "mode": "proxy", "ip": x.req.ClientIPAddr.String()})
	}
	h.log.Debug("dhcp: proxy reply", "type", mt.String(), "mac", x.c.mac, "xid", x.req.TransactionID.String(), "file", bi.file)
	return &Reply{Msg: resp, Dest: dest, HWDest: hw}, outReplied, ""
}
