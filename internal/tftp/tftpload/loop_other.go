//go:build !linux

package tftpload

import (
	"context"
	"errors"
	"net/netip"
)

// haveLoop: no event loop where there is no epoll; Run uses a goroutine per client.
const haveLoop = false

func runLoop(context.Context, Config, netip.AddrPort, []byte) (Result, error) {
	return Result{}, errors.New("tftpload: no event loop on this system")
}
