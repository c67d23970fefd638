//go:build !linux

package dhcp

import "errors"

func setSockopts(fd int, iface string, share bool) error {
	return errors.New("binding the DHCP socket to an interface needs Linux: pass a connection with WithConn instead")
}
