package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// UDPPacket is one IPv4/UDP datagram seen by a Capture.
type UDPPacket struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

// Capture records the IPv4/UDP datagrams crossing one device of a namespace, without
// tcpdump: an AF_PACKET socket opened inside the namespace. Tests use it to see where a
// server really sent a reply (unicast to a relay, or broadcast).
type Capture struct {
	f *os.File

	mu      sync.Mutex
	packets []UDPPacket
	done    chan struct{}
	err     error
}

// CaptureUDP starts capturing UDP datagrams to or from port (0: any) on dev inside n,
// until Close (registered with c).
func (n *Netns) CaptureUDP(c Cleaner, dev string, port uint16) (*Capture, error) {
	var fd int
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_IP)
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket to %s: %w", dev, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("capture on %s/%s: %w", n.Name, dev, err)
	}
	cp := &Capture{f: os.NewFile(uintptr(fd), "capture-"+dev), done: make(chan struct{})}
	go cp.loop(port)
	c.Cleanup(func() { cp.Close() })
	return cp, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (cp *Capture) loop(port uint16) {
	defer close(cp.done)
	buf := make([]byte, 65536)
	for {
		// The socket is non-blocking and owned by the runtime poller, so Close wakes
		// this read up; recvfrom would be needed for the packet type, which os.File
		// cannot do, so direction is inferred from addresses instead.
		n, err := cp.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				cp.mu.Lock()
				cp.err = err
				cp.mu.Unlock()
			}
			return
		}
		p, ok := parseUDP(buf[:n])
		if !ok || (port != 0 && p.Src.Port() != port && p.Dst.Port() != port) {
			continue
		}
		cp.mu.Lock()
		cp.packets = append(cp.packets, p)
		cp.mu.Unlock()
	}
}

// parseUDP decodes an IPv4 packet holding a whole UDP datagram.
func parseUDP(b []byte) (UDPPacket, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return UDPPacket{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || total < ihl+8 || total > len(b) || b[9] != unix.IPPROTO_UDP {
		return UDPPacket{}, false
	}
	if frag := binary.BigEndian.Uint16(b[6:8]); frag&0x3fff != 0 {
		return UDPPacket{}, false // fragments: not needed for DHCP
	}
	src, _ := netip.AddrFromSlice(b[12:16])
	dst, _ := netip.AddrFromSlice(b[16:20])
	u := b[ihl:total]
	return UDPPacket{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(u[0:2])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(u[2:4])),
		Payload: append([]byte(nil), u[8:]...),
	}, true
}

// Packets returns a copy of what was captured so far.
func (cp *Capture) Packets() []UDPPacket {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]UDPPacket(nil), cp.packets...)
}

// Err is the read error that stopped the capture early, if any.
func (cp *Capture) Err() error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.err
}

// Close stops the capture and waits for its reader.
func (cp *Capture) Close() {
	_ = cp.f.Close()
	select {
	case <-cp.done:
	case <-time.After(5 * time.Second):
	}
}
