package lab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// TestNetnsVLANPort checks the lab's userspace VLAN access ports on a segment's plain
// bridge, with a trunk peer standing where a QEMU guest's tap would (a tap on the
// bridge, so tags arrive inline as a guest sees them): two namespaces on VLAN 100 ping
// each other with every frame on the bridge tagged 100; a namespace on VLAN 200 and an
// untagged one cannot reach VLAN 100; a tagged ARP request from the trunk is answered
// on its own VLAN only.
func TestNetnsVLANPort(t *testing.T) {
	Require(t)
	t.Parallel()
	ctx := t.Context()
	seg := newSegment(t, "vlan", "10.77.61.1/24")
	// A bridge that learns nothing floods every frame to every port, the trunk peer's
	// too: it sees the unicast frames between the VLAN 100 hosts as well.
	if err := seg.NS.IP("link", "set", "dev", seg.Bridge, "type", "bridge", "ageing_time", "0"); err != nil {
		t.Fatal(err)
	}
	port := func(role string, vid int, mac, addr string) *VLANPort {
		t.Helper()
		p, err := seg.AddVLANPort(t, role, vid, mustMAC(t, mac))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.NS.IP("addr", "add", addr, "dev", p.Dev); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// One subnet on every VLAN: only the tags keep them apart.
	a100 := port("vl100a", 100, "52:54:00:61:00:01", "10.20.0.1/24")
	b100 := port("vl100b", 100, "52:54:00:61:00:02", "10.20.0.2/24")
	c200 := port("vl200", 200, "52:54:00:61:00:03", "10.20.0.3/24")
	plain := addClient(t, seg, "untagged", "52:54:00:61:00:04")
	if err := plain.IP("addr", "add", "10.20.0.4/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	peer := newTrunkPeer(t, seg)
	ip := netip.MustParseAddr

	res, err := a100.NS.Ping(ctx, ip("10.20.0.2"), 3, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != res.Sent {
		t.Errorf("VLAN 100 → VLAN 100 (10.20.0.1 → 10.20.0.2): %v, want every request answered", res)
	}
	// What crossed the bridge from the VLAN 100 hosts: ARP and ICMP, all tagged 100.
	var fromA, fromB int
	for _, f := range peer.frames() {
		src := f.senderIP()
		if src != ip("10.20.0.1") && src != ip("10.20.0.2") {
			continue
		}
		if !f.tagged || f.vid != 100 {
			t.Errorf("a frame from %s crossed the bridge %s, want tagged with VLAN 100", src, f.tagString())
		}
		if src == ip("10.20.0.1") {
			fromA++
		} else {
			fromB++
		}
	}
	// An ARP request and reply, three echo requests and three replies at least.
	if fromA < 4 || fromB < 4 {
		t.Errorf("the trunk peer saw %d frames from 10.20.0.1 and %d from 10.20.0.2 during the ping, want at least 4 of each", fromA, fromB)
	}

	for _, c := range []struct {
		from *Netns
		what string
	}{{c200.NS, "VLAN 200 (10.20.0.3)"}, {plain, "the untagged segment (10.20.0.4)"}} {
		res, err := c.from.Ping(ctx, ip("10.20.0.1"), 2, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Lost() {
			t.Errorf("%s reached 10.20.0.1 on VLAN 100: %v", c.what, res)
		}
	}
	if !peer.saw(func(f frame) bool { return f.isARP(1) && f.senderIP() == ip("10.20.0.3") && f.tagged && f.vid == 200 }) {
		t.Error("the trunk peer saw no ARP request from 10.20.0.3 tagged with VLAN 200")
	}

	// The trunk asks on each VLAN; only the VLAN's own host answers, on that VLAN.
	peerMAC := mustMAC(t, "52:54:00:61:00:99")
	ask := func(vid int, sender, target string) {
		t.Helper()
		if err := peer.send(arpRequest(peerMAC, ip(sender), ip(target), vid)); err != nil {
			t.Fatal(err)
		}
	}
	replyTo := func(sender string) func(frame) bool {
		return func(f frame) bool { return f.isARP(2) && f.targetIP() == ip(sender) }
	}
	ask(100, "10.20.0.99", "10.20.0.1")
	ask(200, "10.20.0.97", "10.20.0.3")
	ask(200, "10.20.0.98", "10.20.0.1") // 10.20.0.1 is on VLAN 100
	ask(-1, "10.20.0.96", "10.20.0.1")  // untagged
	for _, w := range []struct {
		sender string
		vid    int
		who    string
	}{{"10.20.0.99", 100, "10.20.0.1"}, {"10.20.0.97", 200, "10.20.0.3"}} {
		f, ok := peer.wait(replyTo(w.sender), 5*time.Second)
		switch {
		case !ok:
			t.Errorf("no ARP reply from %s to a request tagged with VLAN %d", w.who, w.vid)
		case !f.tagged || f.vid != w.vid || f.senderIP() != ip(w.who):
			t.Errorf("ARP reply to a VLAN %d request: from %s %s, want from %s tagged %d", w.vid, f.senderIP(), f.tagString(), w.who, w.vid)
		}
	}
	for _, stray := range []string{"10.20.0.98", "10.20.0.96"} {
		if f, ok := peer.wait(replyTo(stray), 2*time.Second); ok {
			t.Errorf("10.20.0.1 (VLAN 100) answered an ARP request of %s sent %s; it must never see it", stray, f.tagString())
		}
	}

	for _, p := range []*VLANPort{a100, b100, c200} {
		if err := p.Err(); err != nil {
			t.Errorf("VLAN port %s: relay stopped: %v", p.NS.Name, err)
		}
		t.Logf("VLAN %d port %s: %+v", p.VID, p.NS.Name, p.Stats())
	}
	if a100.Stats().Dropped == 0 {
		t.Error("the VLAN 100 port dropped nothing, though VLAN 200 and untagged frames crossed the bridge")
	}
}

// trunkPeer is a test's own tap on a segment's bridge: it reads every frame the bridge
// floods or forwards there, tags inline, as a QEMU guest's NIC would get them.
type trunkPeer struct {
	f    *os.File
	mu   sync.Mutex
	seen []frame
	done chan struct{}
}

func newTrunkPeer(t *testing.T, seg *Segment) *trunkPeer {
	t.Helper()
	name := seg.nextPort("peer")
	p := &trunkPeer{done: make(chan struct{})}
	if err := seg.NS.Do(func() error { var err error; p.f, err = openTap(name); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.f.Close(); <-p.done })
	if err := seg.NS.IP("link", "set", "dev", name, "master", seg.Bridge, "up"); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		buf := make([]byte, 65536)
		for {
			n, err := p.f.Read(buf)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					t.Errorf("trunk peer: %v", err)
				}
				return
			}
			p.mu.Lock()
			p.seen = append(p.seen, parseFrame(buf[:n]))
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *trunkPeer) send(b []byte) error { _, err := p.f.Write(b); return err }

func (p *trunkPeer) frames() []frame {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]frame(nil), p.seen...)
}

func (p *trunkPeer) saw(match func(frame) bool) bool {
	for _, f := range p.frames() {
		if match(f) {
			return true
		}
	}
	return false
}

// wait polls for a frame that matches until timeout.
func (p *trunkPeer) wait(match func(frame) bool, timeout time.Duration) (frame, bool) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, f := range p.frames() {
			if match(f) {
				return f, true
			}
		}
	}
	return frame{}, false
}

// frame is an Ethernet frame as the trunk saw it.
type frame struct {
	tagged    bool
	vid       int
	etherType uint16
	payload   []byte
}

func parseFrame(b []byte) frame {
	if len(b) < 14 {
		return frame{}
	}
	f := frame{etherType: binary.BigEndian.Uint16(b[12:14]), payload: b[14:]}
	if f.etherType == etherTypeVLAN && len(b) >= 18 {
		f.tagged, f.vid = true, int(binary.BigEndian.Uint16(b[14:16])&vidMask)
		f.etherType, f.payload = binary.BigEndian.Uint16(b[16:18]), b[18:]
	}
	f.payload = bytes.Clone(f.payload)
	return f
}

func (f frame) tagString() string {
	if !f.tagged {
		return "untagged"
	}
	return fmt.Sprintf("tagged %d", f.vid)
}

// isARP reports an IPv4-over-Ethernet ARP message with op (1 request, 2 reply).
func (f frame) isARP(op uint16) bool {
	return f.etherType == 0x0806 && len(f.payload) >= 28 && binary.BigEndian.Uint16(f.payload[6:8]) == op
}

// senderIP is an ARP message's sender or an IPv4 packet's source.
func (f frame) senderIP() netip.Addr {
	switch {
	case f.etherType == 0x0806 && len(f.payload) >= 28:
		return netip.AddrFrom4([4]byte(f.payload[14:18]))
	case f.etherType == 0x0800 && len(f.payload) >= 20:
		return netip.AddrFrom4([4]byte(f.payload[12:16]))
	}
	return netip.Addr{}
}

// targetIP is an ARP message's target.
func (f frame) targetIP() netip.Addr {
	if f.etherType == 0x0806 && len(f.payload) >= 28 {
		return netip.AddrFrom4([4]byte(f.payload[24:28]))
	}
	return netip.Addr{}
}

// arpRequest is a broadcast who-has target from sender, tagged with vid (-1: untagged).
func arpRequest(mac net.HardwareAddr, sender, target netip.Addr, vid int) []byte {
	b := append(bytes.Repeat([]byte{0xff}, 6), mac...)
	if vid >= 0 {
		b = binary.BigEndian.AppendUint16(b, etherTypeVLAN)
		b = binary.BigEndian.AppendUint16(b, uint16(vid))
	}
	b = binary.BigEndian.AppendUint16(b, 0x0806)
	b = append(b, 0, 1, 8, 0, 6, 4, 0, 1) // Ethernet, IPv4, lengths, request
	b = append(b, mac...)
	b = append(b, sender.AsSlice()...)
	b = append(b, make([]byte, 6)...)
	return append(b, target.AsSlice()...)
}
