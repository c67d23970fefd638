package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// VLANPort is a lab namespace on one 802.1Q VLAN of a Segment, like a host on a switch's
// access port: its interface Dev sends and receives untagged frames, and a relay in the
// test process carries them to and from the segment's bridge tagged with the VLAN's id.
// It exists because the lab's kernel may have neither 8021q nor VLAN filtering on
// bridges (no VLAN interface can be made there), while the guests' kernels have both: a
// guest's VLAN interface reaches the namespace, and frames of other VLANs (or untagged
// ones) never do.
//
// Both ends are taps whose file descriptors the relay holds, not veths read with
// AF_PACKET:
//
//   - the trunk tap (Trunk, a port of the segment's bridge) hands the relay each frame
//     with its 802.1Q tag written inline, as QEMU's taps hand it to a guest. An AF_PACKET
//     socket on a veth would see the tag only in PACKET_AUXDATA, since the kernel moves
//     a received tag into the packet's metadata even without the 8021q module.
//   - a tap has no checksum or segmentation offload until its owner asks for one, so the
//     kernel gives the relay whole frames of at most the MTU with their checksums filled
//     in. On a veth, AF_PACKET reads TCP as 64 KiB GSO frames with partial checksums,
//     which cannot be written back out as they are.
//
// Both taps disappear when the relay closes them (Cleaner), before the namespaces do.
type VLANPort struct {
	// NS is the namespace on the VLAN.
	NS *Netns
	// Dev is NS's interface on the VLAN, eth0: untagged, add addresses to it.
	Dev string
	// VID is the VLAN id.
	VID uint16
	// Trunk is the tap on the segment's bridge carrying this port's frames tagged.
	Trunk string

	access, trunk *os.File
	wg            sync.WaitGroup
	toTrunk       atomic.Uint64 // frames tagged and sent to the bridge
	fromTrunk     atomic.Uint64 // frames of VID untagged and delivered to Dev
	dropped       atomic.Uint64 // frames from the bridge of another VLAN or untagged
	mu            sync.Mutex
	err           error // the first read or write error that stopped a direction
}

// VLANStats counts a VLANPort's frames.
type VLANStats struct {
	// ToTrunk frames went from Dev to the bridge, tagged.
	ToTrunk uint64
	// FromTrunk frames came from the bridge tagged with the port's VID and went to Dev.
	FromTrunk uint64
	// Dropped frames came from the bridge untagged or tagged with another VID.
	Dropped uint64
}

// 802.1Q: the tag's EtherType (TPID) and the VID's bits of the tag control information.
const (
	etherTypeVLAN = 0x8100
	etherTypeQinQ = 0x88a8
	vidMask       = 0x0fff
	vlanTagLen    = 4
	macHeaderLen  = 12 // destination and source MAC
	// maxFrame bounds a frame read from a tap: any MTU the lab uses, plus the tag.
	maxFrame = 65536
)

// AddVLANPort creates a namespace named after role whose eth0 (with mac, if given) is
// on VLAN vid of the segment: see VLANPort. Teardown (c) stops the relay and removes
// both taps, then the namespace goes.
func (s *Segment) AddVLANPort(c Cleaner, role string, vid int, mac net.HardwareAddr) (*VLANPort, error) {
	if vid < 1 || vid > 4094 {
		return nil, fmt.Errorf("lab VLAN port %s: VLAN id %d is out of range 1..4094", role, vid)
	}
	ns, err := NewNetns(c, role)
	if err != nil {
		return nil, err
	}
	p := &VLANPort{NS: ns, Dev: "eth0", VID: uint16(vid), Trunk: s.nextPort("vtap")}
	// Registered before the taps exist: it closes whatever was opened, and runs before
	// the namespaces' own teardown (registered earlier).
	c.Cleanup(p.close)
	if err := s.NS.Do(func() error { p.trunk, err = openTap(p.Trunk); return err }); err != nil {
		return nil, fmt.Errorf("lab VLAN port %s: trunk tap in %s: %w", role, s.NS.Name, err)
	}
	if err := s.NS.IP("link", "set", "dev", p.Trunk, "master", s.Bridge, "up"); err != nil {
		return nil, fmt.Errorf("lab VLAN port %s: %w", role, err)
	}
	if err := ns.Do(func() error { p.access, err = openTap(p.Dev); return err }); err != nil {
		return nil, fmt.Errorf("lab VLAN port %s: tap in %s: %w", role, ns.Name, err)
	}
	if mac != nil {
		if err := ns.IP("link", "set", "dev", p.Dev, "address", mac.String()); err != nil {
			return nil, fmt.Errorf("lab VLAN port %s: %w", role, err)
		}
	}
	if err := ns.IP("link", "set", "dev", p.Dev, "up"); err != nil {
		return nil, fmt.Errorf("lab VLAN port %s: %w", role, err)
	}
	p.wg.Go(p.tagLoop)
	p.wg.Go(p.untagLoop)
	return p, nil
}

// openTap creates the tap device name in the calling thread's network namespace (run
// it inside Netns.Do) and returns its file: reading gives the frames the kernel sends
// out of the device, writing makes the device receive one. No packet-information
// header (IFF_NO_PI) and no virtio-net header, so every read and write is one whole
// Ethernet frame. Non-blocking, so the runtime's poller wakes a Read when the file is
// closed. The device goes away with the file.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create tap %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap "+name), nil
}

// tagLoop carries frames from Dev to the bridge, adding the tag.
func (p *VLANPort) tagLoop() {
	buf := make([]byte, vlanTagLen+maxFrame)
	for {
		// Read past the tag's room, so the MACs move back 4 bytes and the frame is
		// tagged in place.
		n, err := p.access.Read(buf[vlanTagLen:])
		if err != nil {
			p.stopped(err)
			return
		}
		f := buf[vlanTagLen : vlanTagLen+n]
		if n < macHeaderLen+2 {
			continue
		}
		// An access port's host sends untagged frames; a tagged one (a VLAN interface
		// made in the namespace) would leave double-tagged: drop it.
		if et := binary.BigEndian.Uint16(f[macHeaderLen:]); et == etherTypeVLAN || et == etherTypeQinQ {
			continue
		}
		copy(buf, f[:macHeaderLen])
		binary.BigEndian.PutUint16(buf[macHeaderLen:], etherTypeVLAN)
		binary.BigEndian.PutUint16(buf[macHeaderLen+2:], p.VID) // priority 0, DEI 0
		if _, err := p.trunk.Write(buf[:vlanTagLen+n]); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			continue // the bridge port is down or the frame was refused: like a lost frame
		}
		p.toTrunk.Add(1)
	}
}

// untagLoop carries frames tagged with the port's VID from the bridge to Dev, without
// the tag, and drops everything else.
func (p *VLANPort) untagLoop() {
	buf := make([]byte, maxFrame)
	for {
		n, err := p.trunk.Read(buf)
		if err != nil {
			p.stopped(err)
			return
		}
		f := buf[:n]
		if n < macHeaderLen+vlanTagLen+2 ||
			binary.BigEndian.Uint16(f[macHeaderLen:]) != etherTypeVLAN ||
			binary.BigEndian.Uint16(f[macHeaderLen+2:])&vidMask != p.VID {
			p.dropped.Add(1)
			continue
		}
		copy(f[vlanTagLen:], f[:macHeaderLen])
		if _, err := p.access.Write(f[vlanTagLen:]); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			continue // Dev is down
		}
		p.fromTrunk.Add(1)
	}
}

func (p *VLANPort) stopped(err error) {
	if errors.Is(err, os.ErrClosed) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

// Stats returns the port's frame counts so far.
func (p *VLANPort) Stats() VLANStats {
	return VLANStats{ToTrunk: p.toTrunk.Load(), FromTrunk: p.fromTrunk.Load(), Dropped: p.dropped.Load()}
}

// Err is the error that stopped the relay early (nil while it runs, and after a
// clean teardown).
func (p *VLANPort) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// close stops the relay: closing the taps wakes both loops and removes the devices.
func (p *VLANPort) close() {
	for _, f := range []*os.File{p.access, p.trunk} {
		if f != nil {
			_ = f.Close()
		}
	}
	p.wg.Wait()
}
