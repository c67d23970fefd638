//go:build linux

package dhcp

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func udpConn(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("no %s socket on %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// TestMmsgConn sends a batch with one sendmmsg and reads it back with one recvmmsg, on
// an IPv4 socket and from a dual-stack one (v4-mapped on the wire, plain IPv4 to us).
func TestMmsgConn(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"udp4", "udp4", "127.0.0.1:0"},
		{"dual-stack", "udp", ":0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := udpConn(t, tc.network, tc.addr)
			to := udpConn(t, "udp4", "127.0.0.1:0")
			w, r := newMmsgConn(from), newMmsgConn(to)
			if w == nil || r == nil {
				t.Fatal("newMmsgConn: nil for a UDP socket")
			}
			dest := to.LocalAddr().(*net.UDPAddr).AddrPort()
			var out []dgram
			for i := range 5 {
				out = append(out, dgram{b: bytes.Repeat([]byte{byte('a' + i)}, 100+i*50), addr: dest})
			}
			if n, err := w.writeBatch(out); n != len(out) || err != nil {
				t.Fatalf("writeBatch = %d, %v; want %d, nil", n, err, len(out))
			}
			in := make([]dgram, 8)
			for i := range in {
				in[i].b = make([]byte, maxPacket)
			}
			to.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := 0
			for got < len(out) {
				n, err := r.readBatch(in[got:])
				if err != nil {
					t.Fatalf("readBatch after %d: %v", got, err)
				}
				got += n
			}
			wantFrom := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(from.LocalAddr().(*net.UDPAddr).Port))
			for i, d := range in[:got] {
				if !bytes.Equal(d.b[:d.n], out[i].b) {
					t.Errorf("datagram %d: got %d bytes %q..., want %d bytes of %q", i, d.n, d.b[:1], len(out[i].b), out[i].b[:1])
				}
				if d.addr != wantFrom {
					t.Errorf("datagram %d from %v, want %v", i, d.addr, wantFrom)
				}
			}
		})
	}
}

// TestMmsgConnErrors: a destination the socket's family cannot reach ends the batch
// there with an error (the sender then tries it on its own); a read past the deadline
// is a timeout, as the read loop's shutdown needs.
func TestMmsgConnErrors(t *testing.T) {
	from := udpConn(t, "udp4", "127.0.0.1:0")
	to := udpConn(t, "udp4", "127.0.0.1:0")
	w := newMmsgConn(from)
	dest := to.LocalAddr().(*net.UDPAddr).AddrPort()
	batch := []dgram{
		{b: []byte("one"), addr: dest},
		{b: []byte("two"), addr: netip.MustParseAddrPort("[2001:db8::1]:67")},
		{b: []byte("three"), addr: dest},
	}
	n, err := w.writeBatch(batch)
	if n != 1 || !errors.Is(err, errAddrFamily) {
		t.Fatalf("writeBatch with an IPv6 destination on an IPv4 socket = %d, %v; want 1, errAddrFamily", n, err)
	}

	r := newMmsgConn(to)
	in := []dgram{{b: make([]byte, maxPacket)}, {b: make([]byte, maxPacket)}}
	if n, err := r.readBatch(in); n != 1 || err != nil || string(in[0].b[:in[0].n]) != "one" {
		t.Fatalf("readBatch = %d, %v, %q; want the one datagram sent", n, err, in[0].b[:in[0].n])
	}
	to.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err = r.readBatch(in)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("readBatch past the deadline: %v; want a timeout", err)
	}
	if newMmsgConn(fakePacketConn{}) != nil {
		t.Error("newMmsgConn of a non-UDP conn: want nil (the read loop then reads one at a time)")
	}
}

type fakePacketConn struct{ net.PacketConn }
