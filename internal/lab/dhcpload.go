package lab

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// RelayLoad runs DHCP exchanges against a server as a relay agent would (giaddr set,
// replies unicast back to the relay's port 67), so one UDP socket in a lab namespace
// can speak for thousands of clients. It is the Go DORA load of the DHCP crash test.
type RelayLoad struct {
	conn   net.PacketConn
	server *net.UDPAddr
	giaddr net.IP

	mu      sync.Mutex
	waiting map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
}

// NewRelayLoad uses conn (bound to giaddr:67 in a namespace on the server's segment)
// to talk to server:67. Close closes conn.
func NewRelayLoad(conn net.PacketConn, giaddr, server netip.Addr) *RelayLoad {
	r := &RelayLoad{
		conn: conn, giaddr: net.IP(giaddr.AsSlice()),
		server:  net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, 67)),
		waiting: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{},
	}
	go r.read()
	return r
}

// Close stops the load's socket.
func (r *RelayLoad) Close() error { return r.conn.Close() }

func (r *RelayLoad) read() {
	buf := make([]byte, 65535)
	for {
		n, _, err := r.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		r.mu.Lock()
		ch := r.waiting[m.TransactionID]
		r.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default:
			}
		}
	}
}

// ErrNoReply: the server did not answer in time.
var ErrNoReply = errors.New("no reply")

// exchange sends m and waits for a reply of type want (or a NAK) with m's xid.
func (r *RelayLoad) exchange(ctx context.Context, m *dhcpv4.DHCPv4, timeout time.Duration) (*dhcpv4.DHCPv4, error) {
	ch := make(chan *dhcpv4.DHCPv4, 4)
	r.mu.Lock()
	r.waiting[m.TransactionID] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, m.TransactionID)
		r.mu.Unlock()
	}()
	if _, err := r.conn.WriteTo(m.ToBytes(), r.server); err != nil {
		return nil, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case rep := <-ch:
		return rep, nil
	case <-t.C:
		return nil, ErrNoReply
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func newXID() dhcpv4.TransactionID {
	var x dhcpv4.TransactionID
	_, _ = rand.Read(x[:])
	return x
}

func (r *RelayLoad) msg(mt dhcpv4.MessageType, mac net.HardwareAddr, xid dhcpv4.TransactionID, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	m, _ := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt), dhcpv4.WithHwAddr(mac), dhcpv4.WithTransactionID(xid),
		dhcpv4.WithGatewayIP(r.giaddr),
	}, mods...)...)
	return m
}

// DORA runs DISCOVER, OFFER, REQUEST, ACK for mac and returns the ACKed address. A NAK
// or silence is an error.
func (r *RelayLoad) DORA(ctx context.Context, mac net.HardwareAddr, timeout time.Duration) (netip.Addr, error) {
	xid := newXID()
	offer, err := r.exchange(ctx, r.msg(dhcpv4.MessageTypeDiscover, mac, xid), timeout)
	if err != nil {
		return netip.Addr{}, err
	}
	if offer.MessageType() != dhcpv4.MessageTypeOffer {
		return netip.Addr{}, errors.New("reply to DISCOVER is a " + offer.MessageType().String())
	}
	return r.request(ctx, mac, xid, offer.YourIPAddr, offer.ServerIdentifier(), timeout)
}

// Request sends an INIT-REBOOT REQUEST for ip (no server identifier) and returns the
// ACKed address.
func (r *RelayLoad) Request(ctx context.Context, mac net.HardwareAddr, ip netip.Addr, timeout time.Duration) (netip.Addr, error) {
	return r.request(ctx, mac, newXID(), net.IP(ip.AsSlice()), nil, timeout)
}

func (r *RelayLoad) request(ctx context.Context, mac net.HardwareAddr, xid dhcpv4.TransactionID, ip, sid net.IP, timeout time.Duration) (netip.Addr, error) {
	mods := []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))}
	if sid != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(sid)))
	}
	ack, err := r.exchange(ctx, r.msg(dhcpv4.MessageTypeRequest, mac, xid, mods...), timeout)
	if err != nil {
		return netip.Addr{}, err
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		return netip.Addr{}, errors.New("reply to REQUEST is a " + ack.MessageType().String() + ": " + ack.Message())
	}
	a, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	return a, nil
}

// LoadMAC is the i-th MAC of a load: locally administered, prefix 02:1d.
func LoadMAC(i uint32) net.HardwareAddr {
	mac := net.HardwareAddr{0x02, 0x1d, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(mac[2:], i)
	return mac
}
