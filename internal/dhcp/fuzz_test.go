package dhcp

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// FuzzHandler feeds arbitrary bytes to the server-mode and proxy-mode handlers on both
// listeners. It fails on any recovered panic and on replies that do not round-trip or
// do not answer the request they claim to.
func FuzzHandler(f *testing.F) {
	seeds := []*dhcpv4.DHCPv4{
		msg(dhcpv4.MessageTypeDiscover, macReserved, pxe(iana.INTEL_X86PC)),
		msg(dhcpv4.MessageTypeDiscover, macUnknown, httpClient(iana.EFI_X86_64_HTTP), prl(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionClasslessStaticRoute)),
		msg(dhcpv4.MessageTypeDiscover, macKnown, ipxe(iana.EFI_X86_64), relayed("10.0.1.1")),
		msg(dhcpv4.MessageTypeRequest, macKnown, sid("10.0.0.1"), requested("10.0.0.100"), pxe(iana.EFI_BC)),
		msg(dhcpv4.MessageTypeRequest, macReserved, requested("10.0.0.11")),
		msg(dhcpv4.MessageTypeRequest, macUnknown, ciaddr("10.0.0.100")),
		msg(dhcpv4.MessageTypeDecline, macUnknown, sid("10.0.0.1"), requested("10.0.0.100")),
		msg(dhcpv4.MessageTypeRelease, macUnknown, sid("10.0.0.1"), ciaddr("10.0.0.100")),
		msg(dhcpv4.MessageTypeInform, macReserved, ciaddr("10.0.0.11")),
	}
	for _, s := range seeds {
		b := s.ToBytes()
		f.Add(b)
		f.Add(b[:len(b)/2])                                               // truncated inside the options
		f.Add(b[:236])                                                    // header only, no cookie
		f.Add(append(append([]byte{}, b[:240]...), 53, 200, 1))           // option length past the end
		f.Add(append(append([]byte{}, b[:240]...), 93, 1, 7, 60, 0, 255)) // odd-length arch, empty class
	}
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 600))

	c := newClock()
	server := newEnvWith(f, newFakeStore(c.Now, testHosts()...), c, discoverOn)
	proxy := newEnvWith(f, newFakeStore(c.Now, testHosts()...), c, func(cfg *Config) { proxyMode(cfg); discoverOn(cfg) })
	// Logging every packet would dominate the fuzzer's time.
	server.h.log = discardLogger()
	proxy.h.log = discardLogger()

	f.Fuzz(func(t *testing.T, b []byte) {
		c.Advance(7 * time.Second) // let holds and leases expire over a run
		for _, run := range []struct {
			e    *env
			meta Meta
		}{
			{server, Meta{Peer: netip.MustParseAddrPort("0.0.0.0:68")}},
			{proxy, Meta{Peer: netip.MustParseAddrPort("0.0.0.0:68")}},
			{proxy, Meta{Peer: netip.MustParseAddrPort("10.0.0.77:68"), Listener: ListenerPXE}},
		} {
			r := run.e.h.HandlePacket(context.Background(), b, run.meta)
			if n := counterValue(run.e.h.m.panics); n != 0 {
				t.Fatalf("handler panicked on %x", b)
			}
			if r == nil {
				continue
			}
			req, err := dhcpv4.FromBytes(b)
			if err != nil {
				t.Fatalf("replied to unparseable input")
			}
			out, err := dhcpv4.FromBytes(r.Msg.ToBytes())
			if err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if out.TransactionID != req.TransactionID || !bytes.Equal(out.ClientHWAddr, req.ClientHWAddr) || out.OpCode != dhcpv4.OpcodeBootReply {
				t.Fatalf("reply does not answer the request: %s vs %s", out, req)
			}
			if !r.Dest.IsValid() || r.Dest.Port() == 0 {
				t.Fatalf("reply has no destination: %v", r.Dest)
			}
		}
	})
}
