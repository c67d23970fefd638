package tftp

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The server port: the socket, and what each request's packet says beyond its bytes
// (the address it was sent to and the interface it came in on).

// Listen binds a UDP socket for Serve and asks the kernel, at once, for each packet's
// destination address and interface (IP_PKTINFO): the server answers from the address
// the client used and caps blksize at that interface's MTU. A request that arrived
// before Serve turned them on would otherwise be held to 512-byte blocks.
func Listen(network, addr string) (net.PacketConn, error) {
	conn, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, fmt.Errorf("tftp: listen on %s: %w (is another TFTP server, such as tftpd-hpa or dnsmasq, using the port? stop it or choose another with --tftp-port)", addr, err)
	}
	enablePacketInfo(conn)
	return conn, nil
}

// isIPv6 says whether conn is an IPv6 socket (not one bound to an IPv4 address).
func isIPv6(conn net.PacketConn) bool {
	a, ok := conn.LocalAddr().(*net.UDPAddr)
	return ok && a.IP.To4() == nil && len(a.IP) == net.IPv6len
}

// enablePacketInfo turns on IP_PKTINFO (or its IPv6 twin). Failure is not fatal: the
// server then answers from the default address with 512-byte blocks at most.
func enablePacketInfo(conn net.PacketConn) {
	uc, ok := conn.(*net.UDPConn)
	if !ok {
		return
	}
	if isIPv6(conn) {
		_ = ipv6.NewPacketConn(uc).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		return
	}
	_ = ipv4.NewPacketConn(uc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
}

// arrival is where a request came from and to.
type arrival struct {
	remote     *net.UDPAddr
	local      net.IP // the address the client sent to; nil: unknown or broadcast
	maxBlksize int    // the largest block that fits the interface's MTU
}

// requestReader reads requests from the server port with their arrival. It is used by
// one goroutine only.
type requestReader struct {
	conn net.PacketConn
	p4   *ipv4.PacketConn
	p6   *ipv6.PacketConn
	v6   bool
	mtus map[int]cachedMTU
	// raw and oob read without blocking (the event loop, engine_linux.go).
	raw syscall.RawConn
	oob []byte
}

// cachedMTU is an interface's MTU as last looked up: a lookup is a netlink dump of
// every interface, too dear for each request of a storm, and MTUs rarely change.
type cachedMTU struct {
	mtu int
	at  time.Time
}

const mtuTTL = 30 * time.Second

func newRequestReader(conn net.PacketConn) *requestReader {
	r := &requestReader{conn: conn, v6: isIPv6(conn), mtus: map[int]cachedMTU{}}
	// The socket option may be on already (Listen), but an ipv4.PacketConn reads
	// control messages only if it was asked to itself.
	if uc, ok := conn.(*net.UDPConn); ok {
		if r.v6 {
			r.p6 = ipv6.NewPacketConn(uc)
			if r.p6.SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true) != nil {
				r.p6 = nil
			}
		} else {
			r.p4 = ipv4.NewPacketConn(uc)
			if r.p4.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true) != nil {
				r.p4 = nil
			}
		}
	}
	return r
}

// read reads one packet into buf.
func (r *requestReader) read(buf []byte) (int, arrival, error) {
	var (
		n       int
		src     net.Addr
		dst     net.IP
		ifIndex int
		err     error
	)
	switch {
	case r.p4 != nil:
		var cm *ipv4.ControlMessage
		n, cm, src, err = r.p4.ReadFrom(buf)
		if cm != nil {
			dst, ifIndex = cm.Dst, cm.IfIndex
		}
	case r.p6 != nil:
		var cm *ipv6.ControlMessage
		n, cm, src, err = r.p6.ReadFrom(buf)
		if cm != nil {
			dst, ifIndex = cm.Dst, cm.IfIndex
		}
	default:
		n, src, err = r.conn.ReadFrom(buf)
	}
	if err != nil {
		return 0, arrival{}, err
	}
	return n, r.arrival(src, dst, ifIndex), nil
}

// arrival is where a packet from src to dst, in through interface ifIndex (0:
// unknown), came from and to.
func (r *requestReader) arrival(src net.Addr, dst net.IP, ifIndex int) arrival {
	a := arrival{maxBlksize: defaultBlksize}
	a.remote, _ = src.(*net.UDPAddr)
	if a.remote == nil && src != nil {
		if ap, perr := netip.ParseAddrPort(src.String()); perr == nil {
			a.remote = net.UDPAddrFromAddrPort(ap)
		}
	}
	// A request to a broadcast address cannot be answered from it: let the kernel
	// choose the source.
	if dst != nil && !dst.Equal(net.IPv4bcast) && !dst.IsMulticast() {
		a.local = dst
	}
	if mtu := r.mtu(ifIndex); mtu > 0 {
		overhead := 20 + 8 + 4 // IPv4, UDP and TFTP DATA headers
		if r.v6 {
			overhead = 40 + 8 + 4
		}
		a.maxBlksize = min(max(mtu-overhead, defaultBlksize), maxBlksize)
	}
	return a
}

// mtu returns the MTU of interface ifIndex, or 0 when it is unknown.
func (r *requestReader) mtu(ifIndex int) int {
	if ifIndex <= 0 {
		return 0
	}
	if c, ok := r.mtus[ifIndex]; ok && time.Since(c.at) < mtuTTL {
		return c.mtu
	}
	ifi, err := net.InterfaceByIndex(ifIndex)
	if err != nil {
		return 0
	}
	if len(r.mtus) > 1024 { // interfaces come and go (containers' veths): keep it bounded
		clear(r.mtus)
	}
	r.mtus[ifIndex] = cachedMTU{mtu: ifi.MTU, at: time.Now()}
	return ifi.MTU
}
