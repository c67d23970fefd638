package main

import (
	"fmt"
	"net"
)

// sdNotify sends state ("READY=1", "STOPPING=1", …) to systemd's notification socket at
// addr, the unit's $NOTIFY_SOCKET (sd_notify(3)): a Unix datagram socket, "@" meaning the
// abstract namespace (Go's net package maps it). An empty addr, serve not started by
// systemd with Type=notify, sends nothing. Nine lines instead of go-systemd's daemon
// package, which reads the environment itself: here only main reads it.
func sdNotify(addr, state string) error {
	if addr == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", addr, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", addr, err)
	}
	return nil
}
