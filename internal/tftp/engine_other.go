//go:build !linux

package tftp

import (
	"context"
	"net"
)

// serve: a goroutine per transfer where there is no epoll.
func (s *Server) serve(ctx context.Context, conn net.PacketConn, network string) error {
	return s.serveGoroutines(ctx, conn, network)
}
