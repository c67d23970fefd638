//go:build linux

package dhcp

import (
	"fmt"
	"syscall"

	"github.com/rackboot/rackboot/internal/udpbatch"
)

// soReusePort is SO_REUSEPORT in asm-generic (amd64, arm64, riscv64, ...); the syscall
// package does not export it and this saves a dependency on golang.org/x/sys.
const soReusePort = 0xf

// rcvBuf is the receive buffer a DHCP socket asks for. The kernel's default (about
// 200 KiB, some 100 packets) overflows in 10 ms at 10,000 packets/s, as long as a garbage
// collection or a burst of relayed renewals takes; 4 MiB holds 200 ms at that rate,
// which the queue (queue.go) then sheds by its own policy instead of the kernel
// dropping whatever arrives next. Without CAP_NET_ADMIN the kernel caps it at
// net.core.rmem_max.
const rcvBuf = 4 << 20

// setSockopts prepares a DHCP socket before bind: broadcast replies allowed, a large
// receive buffer (rcvBuf), bound to the provisioning interface, and, for proxy mode
// only, sharing the port with the site's DHCP server running on the same host.
func setSockopts(fd int, iface string, share bool) error {
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1); err != nil {
		return fmt.Errorf("allow broadcast: %w", err)
	}
	if share {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("set SO_REUSEADDR: %w", err)
		}
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, soReusePort, 1); err != nil {
			return fmt.Errorf("set SO_REUSEPORT: %w", err)
		}
	}
	udpbatch.SetBuffers(fd, rcvBuf, 0)
	if iface != "" {
		if err := syscall.BindToDevice(fd, iface); err != nil {
			return fmt.Errorf("bind to interface %s (SO_BINDTODEVICE; needs CAP_NET_RAW on kernels before 5.7): %w", iface, err)
		}
	}
	return nil
}
