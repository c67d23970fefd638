package admin

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// The admin API has listeners of its own, apart from the boot listener that every
// booting host reaches. Each listen address is either
//
//	HOST:PORT        TCP, always TLS (ServerConfig.TLS)
//	unix:/PATH       a Unix socket, plain HTTP, the socket file mode 0600
//
// rackboot's default is 127.0.0.1:8443 and unix:DATA_DIR/admin.sock: nothing off the
// machine reaches it unless the operator lists an address that is not loopback.

// DefaultPort is the admin API's TCP port by default.
const DefaultPort = 8443

// UnixPrefix marks a Unix-socket listen address or server URL ("unix:/run/x.sock").
const UnixPrefix = "unix:"

// ListenAddr is one parsed listen address.
type ListenAddr struct {
	// Network is "tcp" or "unix"; Addr is HOST:PORT or the socket path.
	Network, Addr string
}

func (a ListenAddr) String() string {
	if a.Network == "unix" {
		return UnixPrefix + a.Addr
	}
	return a.Addr
}

// Loopback reports whether only this machine can reach the address: a Unix socket, or a
// TCP address whose host is a loopback IP or "localhost".
func (a ListenAddr) Loopback() bool {
	if a.Network == "unix" {
		return true
	}
	host, _, err := net.SplitHostPort(a.Addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// ParseListenAddr reads "HOST:PORT" or "unix:/PATH".
func ParseListenAddr(s string) (ListenAddr, error) {
	if path, ok := strings.CutPrefix(s, UnixPrefix); ok {
		path = strings.TrimPrefix(path, "//") // unix:///run/x.sock, as in a URL
		if path == "" || !strings.HasPrefix(path, "/") {
			return ListenAddr{}, fmt.Errorf("%q: give a Unix socket as unix:/ABSOLUTE/PATH", s)
		}
		if len(path) > 107 {
			return ListenAddr{}, fmt.Errorf("%q: a Unix socket path has at most 107 bytes: choose a shorter one", s)
		}
		return ListenAddr{Network: "unix", Addr: path}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || port == "" {
		return ListenAddr{}, fmt.Errorf("%q is not HOST:PORT or unix:/PATH (e.g. 127.0.0.1:%d)", s, DefaultPort)
	}
	if host == "" {
		return ListenAddr{}, fmt.Errorf("%q listens on every address: name the address to listen on (e.g. 127.0.0.1:%s, or 0.0.0.0:%s on purpose)", s, port, port)
	}
	return ListenAddr{Network: "tcp", Addr: s}, nil
}
