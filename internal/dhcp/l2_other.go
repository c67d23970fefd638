//go:build !linux

package dhcp

import (
	"errors"
	"net"
	"net/netip"
)

type frameSender struct{}

func openFrameSender(string, netip.Addr) (*frameSender, error) {
	return nil, errors.New("dhcp: sending replies to one MAC needs Linux packet sockets")
}

func (f *frameSender) Close() error { return nil }

func (f *frameSender) send(net.HardwareAddr, uint16, netip.AddrPort, []byte) error {
	return errors.New("dhcp: no packet sockets on this system")
}
