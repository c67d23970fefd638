package dhcp

import (
	"context"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// BenchmarkDORA measures one full DISCOVER→OFFER→REQUEST→ACK through the handler,
// from request bytes to reply bytes: parse, inventory reads and writes, options,
// events and serialisation.
//
//   - reserved: a PXE client with a reservation (the common rack case)
//   - pool: a known host taking a dynamic address it already holds
//   - bolt-reserved: the reserved case on the real bbolt inventory (fsync per write)
func BenchmarkDORA(b *testing.B) {
	cases := []struct {
		name  string
		open  openStore
		mac   string
		ipStr string
	}{
		{"reserved", storeKinds()[0].open, macReserved, "10.0.0.11"},
		{"pool", storeKinds()[0].open, macKnown, "10.0.0.100"},
		{"bolt-reserved", openBolt, macReserved, "10.0.0.11"},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, bc.open, nil)
			e.h.log = discardLogger()
			discover := msg(dhcpv4.MessageTypeDiscover, bc.mac, pxe(iana.EFI_X86_64)).ToBytes()
			request := msg(dhcpv4.MessageTypeRequest, bc.mac, pxe(iana.EFI_X86_64), sid("10.0.0.1"), requested(bc.ipStr)).ToBytes()
			meta := Meta{Peer: netip.MustParseAddrPort("0.0.0.0:68")}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				offer := e.h.HandlePacket(ctx, discover, meta)
				if offer == nil {
					b.Fatal("no offer")
				}
				_ = offer.Msg.ToBytes()
				ack := e.h.HandlePacket(ctx, request, meta)
				if ack == nil || ack.Msg.MessageType() != dhcpv4.MessageTypeAck {
					b.Fatal("no ack")
				}
				_ = ack.Msg.ToBytes()
			}
		})
	}
}
