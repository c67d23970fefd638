package dhcp

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// encodeACK is a reply shaped like the ones the handler builds: a PXE ACK to a
// relayed client, with about a dozen options.
func encodeACK() *dhcpv4.DHCPv4 {
	return &dhcpv4.DHCPv4{
		OpCode:         dhcpv4.OpcodeBootReply,
		HWType:         iana.HWTypeEthernet,
		HopCount:       1,
		TransactionID:  dhcpv4.TransactionID{0xde, 0xad, 0xbe, 0xef},
		Flags:          0x8000,
		ClientIPAddr:   net.IPv4zero,
		YourIPAddr:     net.ParseIP("10.0.1.11"), // 16-byte form
		ServerIPAddr:   net.IPv4(10, 0, 0, 1).To4(),
		GatewayIPAddr:  net.ParseIP("10.0.1.1"),
		ClientHWAddr:   net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x01, 0x01},
		ServerHostName: "rackboot",
		BootFileName:   "ipxe.efi",
		Options: dhcpv4.OptionsFromList(
			dhcpv4.OptMessageType(dhcpv4.MessageTypeAck),
			dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1)),
			dhcpv4.OptSubnetMask(net.CIDRMask(24, 32)),
			dhcpv4.OptRouter(net.IPv4(10, 0, 1, 254)),
			dhcpv4.OptDNS(net.IPv4(10, 0, 0, 53), net.IPv4(10, 0, 0, 54)),
			dhcpv4.OptIPAddressLeaseTime(12*time.Hour),
			dhcpv4.OptRenewTimeValue(6*time.Hour),
			dhcpv4.OptRebindingTimeValue(21*time.Hour/2),
			dhcpv4.OptHostName("remote1"),
			dhcpv4.OptDomainName("rack2.example"),
			dhcpv4.OptClientIdentifier([]byte{1, 0x52, 0x54, 0x00, 0x00, 0x01, 0x01}),
			dhcpv4.OptTFTPServerName("10.0.0.1"),
			dhcpv4.OptBootFileName("ipxe.efi"),
			dhcpv4.OptRelayAgentInfo(
				dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte("eth0/1/7")),
				dhcpv4.OptGeneric(dhcpv4.AgentRemoteIDSubOption, []byte("tor-2")),
			),
		),
	}
}

// withOptions returns a copy of m with extra raw options set.
func withOptions(m *dhcpv4.DHCPv4, opts map[uint8][]byte) *dhcpv4.DHCPv4 {
	c := *m
	c.Options = make(dhcpv4.Options, len(m.Options)+len(opts))
	for k, v := range m.Options {
		c.Options[k] = v
	}
	for k, v := range opts {
		c.Options[k] = v
	}
	return &c
}

func encodeCases() []struct {
	name string
	m    *dhcpv4.DHCPv4
} {
	ack := encodeACK()
	offer := withOptions(ack, map[uint8][]byte{53: {byte(dhcpv4.MessageTypeOffer)}})

	every := &dhcpv4.DHCPv4{Options: dhcpv4.Options{}}
	for c := range 256 {
		every.Options[uint8(c)] = []byte{uint8(c)}
	}

	long := *ack
	long.ServerHostName = strings.Repeat("s", 100)
	long.BootFileName = strings.Repeat("f", 200)
	long.ClientHWAddr = bytes.Repeat([]byte{0xaa}, 20) // hlen 20, 16 bytes copied

	return []struct {
		name string
		m    *dhcpv4.DHCPv4
	}{
		{"empty", &dhcpv4.DHCPv4{}},
		{"ack", ack},
		{"offer", offer},
		{"sname and file at limits", func() *dhcpv4.DHCPv4 {
			c := *ack
			c.ServerHostName = strings.Repeat("s", 63)
			c.BootFileName = strings.Repeat("f", 127)
			return &c
		}()},
		{"sname file and chaddr truncated", &long},
		{"option 255 bytes", withOptions(ack, map[uint8][]byte{43: bytes.Repeat([]byte{1}, 255)})},
		{"option 256 bytes", withOptions(ack, map[uint8][]byte{43: bytes.Repeat([]byte{2}, 256)})},
		{"option 600 bytes", withOptions(ack, map[uint8][]byte{121: bytes.Repeat([]byte{3}, 600)})},
		{"option 82 over 255 bytes", withOptions(ack, map[uint8][]byte{82: bytes.Repeat([]byte{4}, 300)})},
		{"zero-length options", withOptions(ack, map[uint8][]byte{80: {}, 200: nil})},
		{"only zero-length option", &dhcpv4.DHCPv4{Options: dhcpv4.Options{80: nil}}},
		{"pad and end in map", withOptions(ack, map[uint8][]byte{0: {9, 9}, 255: {9}})},
		{"only option 82", &dhcpv4.DHCPv4{Options: dhcpv4.Options{82: {1, 1, 'x'}}}},
		{"every code", every},
		// Header and cookie 240 bytes, option 2+n, End 1.
		{"299 bytes unpadded", &dhcpv4.DHCPv4{Options: dhcpv4.Options{224: make([]byte, 299-243)}}},
		{"300 bytes unpadded", &dhcpv4.DHCPv4{Options: dhcpv4.Options{224: make([]byte, 300-243)}}},
		{"301 bytes unpadded", &dhcpv4.DHCPv4{Options: dhcpv4.Options{224: make([]byte, 301-243)}}},
		{"nil IPs and hwaddr", &dhcpv4.DHCPv4{
			OpCode:  dhcpv4.OpcodeBootRequest,
			HWType:  iana.HWType(0x1234), // written as its low byte
			Options: dhcpv4.OptionsFromList(dhcpv4.OptMessageType(dhcpv4.MessageTypeDiscover)),
		}},
	}
}

func TestAppendMsgMatchesToBytes(t *testing.T) {
	for _, tc := range encodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.m.ToBytes()
			got := appendMsg(nil, tc.m)
			if !bytes.Equal(got, want) {
				t.Fatalf("appendMsg differs from ToBytes\n got %x\nwant %x", got, want)
			}
		})
	}
}

func TestAppendMsgKeepsPrefix(t *testing.T) {
	for _, m := range []*dhcpv4.DHCPv4{
		encodeACK(),
		{Options: dhcpv4.OptionsFromList(dhcpv4.OptMessageType(dhcpv4.MessageTypeNak))}, // padded to 300
	} {
		want := m.ToBytes()
		for _, prefix := range [][]byte{
			[]byte("hdr"),
			bytes.Repeat([]byte{0xee}, 400), // longer than the 300-byte minimum on its own
		} {
			for _, extra := range []int{0, 1500} { // grow, and append in place
				dst := append(make([]byte, 0, len(prefix)+extra), prefix...)
				got := appendMsg(dst, m)
				if !bytes.Equal(got[:len(prefix)], prefix) {
					t.Fatalf("%d-byte message, prefix %d, cap +%d: prefix overwritten", len(want), len(prefix), extra)
				}
				if !bytes.Equal(got[len(prefix):], want) {
					t.Fatalf("%d-byte message, prefix %d, cap +%d: message differs\n got %x\nwant %x", len(want), len(prefix), extra, got[len(prefix):], want)
				}
			}
		}
	}
}

// TestAppendMsgEncodeNonIPv4 checks the one deliberate difference: ToBytes panics on a
// header IP that is neither nil nor IPv4, appendMsg writes zeros as for nil.
func TestAppendMsgEncodeNonIPv4(t *testing.T) {
	ack := encodeACK()
	zeroed := *ack
	zeroed.ClientIPAddr, zeroed.GatewayIPAddr = nil, nil
	want := zeroed.ToBytes()

	bad := *ack
	bad.ClientIPAddr = net.ParseIP("2001:db8::1")
	bad.GatewayIPAddr = net.IP{} // non-nil, empty
	if got := appendMsg(nil, &bad); !bytes.Equal(got, want) {
		t.Fatalf("non-IPv4 header IPs not zeroed\n got %x\nwant %x", got, want)
	}
}

func TestAppendMsgAllocs(t *testing.T) {
	ack := encodeACK()
	buf := make([]byte, 0, 1500)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = appendMsg(buf[:0], ack)
	})
	if allocs != 0 {
		t.Fatalf("appendMsg into a buffer with room: %v allocs per run, want 0", allocs)
	}
}

// FuzzAppendMsg checks appendMsg against ToBytes on whatever FromBytes accepts.
func FuzzAppendMsg(f *testing.F) {
	for _, tc := range encodeCases() {
		f.Add(tc.m.ToBytes())
	}
	discover, err := dhcpv4.NewDiscovery(net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2},
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionBootfileName),
		dhcpv4.WithRelay(net.IPv4(10, 0, 1, 1)),
	)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(discover.ToBytes())

	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		want, ok := toBytesNoPanic(m)
		if !ok {
			t.Skip("ToBytes panics on this message")
		}
		if got := appendMsg(nil, m); !bytes.Equal(got, want) {
			t.Fatalf("appendMsg differs from ToBytes for %x\n got %x\nwant %x", b, got, want)
		}
		prefix := []byte{1, 2, 3}
		if got := appendMsg(prefix, m); !bytes.Equal(got[:3], prefix) || !bytes.Equal(got[3:], want) {
			t.Fatalf("appendMsg after a prefix differs from ToBytes for %x", b)
		}
	})
}

func toBytesNoPanic(m *dhcpv4.DHCPv4) (b []byte, ok bool) {
	defer func() {
		if recover() != nil {
			b, ok = nil, false
		}
	}()
	return m.ToBytes(), true
}

func BenchmarkAppendMsg(b *testing.B) {
	ack := encodeACK()
	buf := make([]byte, 0, 1500)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendMsg(buf[:0], ack)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkToBytes(b *testing.B) {
	ack := encodeACK()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = ack.ToBytes()
	}
	b.SetBytes(int64(len(buf)))
}
