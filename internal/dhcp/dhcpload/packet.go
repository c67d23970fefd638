package dhcpload

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Fixed offsets of a BOOTP/DHCP packet (RFC 2131 §2).
const (
	offOp      = 0
	offXID     = 4
	offYIAddr  = 16
	offCHAddr  = 28
	offOptions = 240 // after the magic cookie
	minReply   = offOptions
)

// ClientMAC is the hardware address of client i of a run: 02:00 (locally administered)
// and i, big-endian.
func ClientMAC(i uint32) net.HardwareAddr {
	m := net.HardwareAddr{0x02, 0x00, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(m[2:], i)
	return m
}

// templates are a DISCOVER and a REQUEST as a relay at giaddr sends them, to be copied
// and patched: the ID and MAC of each (the MAC in chaddr and in the client identifier,
// type 1 and the MAC, as perfdhcp and most clients send it, at discoverCID and
// requestCID), and the REQUEST's requested address and server identifier at reqIP and
// srvID.
type templates struct {
	discover, request       []byte
	discoverCID, requestCID int
	reqIP, srvID            int
}

func newTemplates(giaddr netip.Addr) (*templates, error) {
	gi := net.IP(giaddr.AsSlice())
	params := dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
		dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName, dhcpv4.OptionIPAddressLeaseTime,
		dhcpv4.OptionServerIdentifier)
	cid := dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, append([]byte{1}, ClientMAC(0)...))
	d, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(ClientMAC(0)),
		dhcpv4.WithRelay(gi), dhcpv4.WithTransactionID(dhcpv4.TransactionID{}), cid, params)
	if err != nil {
		return nil, err
	}
	// Placeholders the server never sees: each REQUEST gets its OFFER's values.
	r, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(ClientMAC(0)),
		dhcpv4.WithRelay(gi), dhcpv4.WithTransactionID(dhcpv4.TransactionID{}), cid, params,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(255, 255, 255, 1))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(255, 255, 255, 2))))
	if err != nil {
		return nil, err
	}
	t := &templates{discover: d.ToBytes(), request: r.ToBytes()}
	var n int
	if t.discoverCID, n = option(t.discover, byte(dhcpv4.OptionClientIdentifier)); n != 7 {
		return nil, fmt.Errorf("dhcpload: DISCOVER template has no client identifier option")
	}
	if t.requestCID, n = option(t.request, byte(dhcpv4.OptionClientIdentifier)); n != 7 {
		return nil, fmt.Errorf("dhcpload: REQUEST template has no client identifier option")
	}
	t.reqIP, n = option(t.request, byte(dhcpv4.OptionRequestedIPAddress))
	if n != 4 {
		return nil, fmt.Errorf("dhcpload: REQUEST template has no requested address option")
	}
	t.srvID, n = option(t.request, byte(dhcpv4.OptionServerIdentifier))
	if n != 4 {
		return nil, fmt.Errorf("dhcpload: REQUEST template has no server identifier option")
	}
	return t, nil
}

// option finds code among b's options and returns the offset of its value and the
// value's length, or -1 and 0 if it is not there or the options are malformed.
func option(b []byte, code byte) (int, int) {
	i := offOptions
	for i < len(b) {
		c := b[i]
		switch c {
		case 0: // pad
			i++
			continue
		case 255: // end
			return -1, 0
		}
		if i+1 >= len(b) {
			return -1, 0
		}
		n := int(b[i+1])
		if i+2+n > len(b) {
			return -1, 0
		}
		if c == code {
			return i + 2, n
		}
		i += 2 + n
	}
	return -1, 0
}

// reply is what the loop needs of a server's answer.
type reply struct {
	xid   uint32
	typ   dhcpv4.MessageType
	mac   [6]byte
	yi    [4]byte
	srvID [4]byte // zero if the reply named no server
}

// parseReply reads b as a BOOTREPLY with a message type, or reports false.
func parseReply(b []byte) (reply, bool) {
	var r reply
	if len(b) < minReply || b[offOp] != 2 {
		return r, false
	}
	o, n := option(b, byte(dhcpv4.OptionDHCPMessageType))
	if n != 1 {
		return r, false
	}
	r.typ = dhcpv4.MessageType(b[o])
	r.xid = binary.BigEndian.Uint32(b[offXID:])
	copy(r.mac[:], b[offCHAddr:])
	copy(r.yi[:], b[offYIAddr:])
	if o, n := option(b, byte(dhcpv4.OptionServerIdentifier)); n == 4 {
		copy(r.srvID[:], b[o:])
	}
	return r, true
}
