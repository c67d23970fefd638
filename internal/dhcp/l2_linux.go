//go:build linux

package dhcp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// frameSender sends a UDP/IPv4 datagram as an Ethernet frame to one hardware address,
// whatever its IP destination: a reply that carries a boot key reaches the client's MAC
// only, even when its IP destination is 255.255.255.255 (a client without an address, or
// one that set the broadcast flag, accepts an IP broadcast in a unicast frame). A
// switch forwards such a frame to the port that MAC was learned on.
type frameSender struct {
	fd      int
	ifindex int
	src     netip.Addr
}

// openFrameSender opens a send-only packet socket on iface (protocol 0: it receives
// nothing). It needs CAP_NET_RAW, like the DHCP sockets bound to a device.
func openFrameSender(iface string, src netip.Addr) (*frameSender, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("dhcp: interface %q does not exist: check the interface name (%w)", iface, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dhcp: open a packet socket on %s to send replies to one MAC (needs CAP_NET_RAW): %w", iface, err)
	}
	return &frameSender{fd: fd, ifindex: ifi.Index, src: src}, nil
}

func (f *frameSender) Close() error { return unix.Close(f.fd) }

// send writes payload from src:srcPort to dst in a frame addressed to hw.
func (f *frameSender) send(hw net.HardwareAddr, srcPort uint16, dst netip.AddrPort, payload []byte) error {
	if len(hw) != 6 || !dst.Addr().Is4() {
		return fmt.Errorf("dhcp: cannot send a frame to %s (%s)", hw, dst)
	}
	pkt := udp4Packet(f.src, srcPort, dst, payload)
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: f.ifindex, Halen: 6}
	copy(sa.Addr[:], hw)
	return unix.Sendto(f.fd, pkt, 0, sa)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// udp4Packet builds an IPv4 header, a UDP header (with its checksum) and payload.
func udp4Packet(src netip.Addr, srcPort uint16, dst netip.AddrPort, payload []byte) []byte {
	const ipLen, udpLen = 20, 8
	b := make([]byte, ipLen+udpLen+len(payload))
	s, d := src.As4(), dst.Addr().As4()
	b[0] = 0x45                                       // IPv4, 5 words of header
	binary.BigEndian.PutUint16(b[2:], uint16(len(b))) // total length
	b[8] = 64                                         // TTL
	b[9] = unix.IPPROTO_UDP                           // protocol
	copy(b[12:16], s[:])                              // source
	copy(b[16:20], d[:])                              // destination
	binary.BigEndian.PutUint16(b[10:], checksum(b[:ipLen], 0))
	u := b[ipLen:]
	binary.BigEndian.PutUint16(u[0:], srcPort)
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(udpLen+len(payload)))
	copy(u[udpLen:], payload)
	// Pseudo-header: source, destination, protocol, UDP length.
	var ph uint32
	for i := 0; i < 4; i += 2 {
		ph += uint32(s[i])<<8 | uint32(s[i+1])
		ph += uint32(d[i])<<8 | uint32(d[i+1])
	}
	ph += unix.IPPROTO_UDP + uint32(len(u))
	c := checksum(u, ph)
	if c == 0 {
		c = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return b
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
