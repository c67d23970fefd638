package dhcp

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/rackboot/rackboot/internal/inventory"
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

// BenchmarkDORANewClients is perfdhcp's load: unknown MACs (a new one each DORA, under
// discover) taking pool addresses through a relay, on the real bbolt inventory. Each
// ACK waits for its group commit, so run it with -cpu and parallelism in mind: the
// figure that matters is CPU per DORA (see hack/bench-compare.sh for the real thing).
func BenchmarkDORANewClients(b *testing.B) {
	e := newEnv(b, openBolt, func(c *Config) {
		c.UnknownHosts = UnknownDiscover
		c.Discovery.Rate, c.Discovery.Burst = 1e6, 1e6 // the highest Validate accepts: no limit for a benchmark
		c.Subnets[0].Range = Range{Start: ip("10.0.8.0"), End: ip("10.0.255.254")}
		c.Subnets[0].Prefix = netip.MustParsePrefix("10.0.0.0/16")
		c.Subnets = c.Subnets[:1]
	})
	e.h.log = discardLogger()
	meta := Meta{Peer: netip.MustParseAddrPort("10.0.0.2:67")}
	var n atomic.Uint32
	b.ReportAllocs()
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := n.Add(1) % 60000
			mac := net.HardwareAddr{2, 0x1d, 0, 0, byte(i >> 8), byte(i)}.String()
			offer := e.h.HandlePacket(ctx, msg(dhcpv4.MessageTypeDiscover, mac, relayed("10.0.0.2")).ToBytes(), meta)
			if offer == nil {
				b.Fatal("no offer")
			}
			_ = offer.Msg.ToBytes()
			ack := e.h.HandlePacket(ctx, msg(dhcpv4.MessageTypeRequest, mac, relayed("10.0.0.2"), sid("10.0.0.1"), requested(offer.Msg.YourIPAddr.String())).ToBytes(), meta)
			if ack == nil || ack.Msg.MessageType() != dhcpv4.MessageTypeAck {
				b.Fatal("no ack")
			}
			_ = ack.Msg.ToBytes()
		}
	})
	if st, ok := e.store.(interface{ CommitStats() inventory.CommitStats }); ok {
		cs := st.CommitStats()
		b.ReportMetric(float64(cs.Ops)/float64(max(cs.Commits, 1)), "changes/commit")
	}
}
