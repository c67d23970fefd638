//go:build !linux

package dhcp

import (
	"net"
	"net/netip"
)

// mmsgConn reads and writes one datagram per system call where there is no recvmmsg
// and sendmmsg (mmsg_linux.go).
type mmsgConn struct{ uc *net.UDPConn }

func newMmsgConn(c net.PacketConn) *mmsgConn {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return nil
	}
	return &mmsgConn{uc: uc}
}

func (c *mmsgConn) readBatch(ds []dgram) (int, error) {
	n, addr, err := c.uc.ReadFromUDPAddrPort(ds[0].b)
	if err != nil {
		return 0, err
	}
	ds[0].n, ds[0].addr = n, netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	return 1, nil
}

func (c *mmsgConn) writeBatch(ds []dgram) (int, error) {
	for i, d := range ds {
		if _, err := c.uc.WriteToUDPAddrPort(d.b, d.addr); err != nil {
			return i, err
		}
	}
	return len(ds), nil
}
