//go:build !linux

package dhcpload

import (
	"context"
	"errors"
	"net"
)

// Run needs Linux (recvmmsg, sendmmsg and ppoll on the socket).
func Run(ctx context.Context, conn *net.UDPConn, cfg Config) (Result, error) {
	if err := cfg.check(); err != nil {
		return Result{}, err
	}
	return Result{}, errors.New("dhcpload: runs on Linux only")
}
