//go:build !linux

package udpbatch

import (
	"net"
	"net/netip"
)

// Conn reads and writes one datagram per system call where there is no recvmmsg and
// sendmmsg (batch_linux.go).
type Conn struct{ uc *net.UDPConn }

// NewConn returns c's batch reader and writer, or nil if c is not a UDP socket.
func NewConn(c net.PacketConn) *Conn {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return nil
	}
	return &Conn{uc: uc}
}

// ReadBatch reads one datagram into ds[0].
func (c *Conn) ReadBatch(ds []Datagram) (int, error) {
	n, addr, err := c.uc.ReadFromUDPAddrPort(ds[0].B)
	if err != nil {
		return 0, err
	}
	ds[0].N, ds[0].Addr = n, netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	return 1, nil
}

// WriteBatch sends ds one by one.
func (c *Conn) WriteBatch(ds []Datagram) (int, error) {
	for i, d := range ds {
		if _, err := c.uc.WriteToUDPAddrPort(d.B, d.Addr); err != nil {
			return i, err
		}
	}
	return len(ds), nil
}
