//go:build linux

package udpbatch

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// TestConn sends a batch with one sendmmsg and reads it back with one recvmmsg, on
// an IPv4 socket and from a dual-stack one (v4-mapped on the wire, plain IPv4 to us).
func TestConn(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"udp4", "udp4", "127.0.0.1:0"},
		{"dual-stack", "udp", ":0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := udpConn(t, tc.network, tc.addr)
			to := udpConn(t, "udp4", "127.0.0.1:0")
			w, r := NewConn(from), NewConn(to)
			if w == nil || r == nil {
				t.Fatal("NewConn: nil for a UDP socket")
			}
			dest := to.LocalAddr().(*net.UDPAddr).AddrPort()
			var out []Datagram
			for i := range 5 {
				out = append(out, Datagram{B: bytes.Repeat([]byte{byte('a' + i)}, 100+i*50), Addr: dest})
			}
			if n, err := w.WriteBatch(out); n != len(out) || err != nil {
				t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, len(out))
			}
			in := make([]Datagram, 8)
			for i := range in {
				in[i].B = make([]byte, 1500)
			}
			to.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := 0
			for got < len(out) {
				n, err := r.ReadBatch(in[got:])
				if err != nil {
					t.Fatalf("ReadBatch after %d: %v", got, err)
				}
				got += n
			}
			wantFrom := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(from.LocalAddr().(*net.UDPAddr).Port))
			for i, d := range in[:got] {
				if !bytes.Equal(d.B[:d.N], out[i].B) {
					t.Errorf("datagram %d: got %d bytes %q..., want %d bytes of %q", i, d.N, d.B[:1], len(out[i].B), out[i].B[:1])
				}
				if d.Addr != wantFrom {
					t.Errorf("datagram %d from %v, want %v", i, d.Addr, wantFrom)
				}
			}
		})
	}
}

// TestConnErrors: a destination the socket's family cannot reach ends the batch
// there with an error (the DHCP sender then tries it on its own); a read past the deadline
// is a timeout, as the read loop's shutdown needs.
func TestConnErrors(t *testing.T) {
	from := udpConn(t, "udp4", "127.0.0.1:0")
	to := udpConn(t, "udp4", "127.0.0.1:0")
	w := NewConn(from)
	dest := to.LocalAddr().(*net.UDPAddr).AddrPort()
	batch := []Datagram{
		{B: []byte("one"), Addr: dest},
		{B: []byte("two"), Addr: netip.MustParseAddrPort("[2001:db8::1]:67")},
		{B: []byte("three"), Addr: dest},
	}
	n, err := w.WriteBatch(batch)
	if n != 1 || !errors.Is(err, ErrAddrFamily) {
		t.Fatalf("WriteBatch with an IPv6 destination on an IPv4 socket = %d, %v; want 1, ErrAddrFamily", n, err)
	}

	r := NewConn(to)
	in := []Datagram{{B: make([]byte, 1500)}, {B: make([]byte, 1500)}}
	if n, err := r.ReadBatch(in); n != 1 || err != nil || string(in[0].B[:in[0].N]) != "one" {
		t.Fatalf("ReadBatch = %d, %v, %q; want the one datagram sent", n, err, in[0].B[:in[0].N])
	}
	to.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err = r.ReadBatch(in)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("ReadBatch past the deadline: %v; want a timeout", err)
	}
	if NewConn(fakePacketConn{}) != nil {
		t.Error("NewConn of a non-UDP conn: want nil (the read loop then reads one at a time)")
	}
}

type fakePacketConn struct{ net.PacketConn }

// TestHeadersFD: on a raw non-blocking socket, RecvFD returns nothing (and no error)
// when nothing waits, then one call's worth of what SendFD sent to several peers, each
// with its source; a destination of the wrong family stops SendFD there.
func TestHeadersFD(t *testing.T) {
	rawSocket := func() (int, netip.AddrPort) {
		t.Helper()
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			t.Fatal(err)
		}
		return fd, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	}
	srv, srvAddr := rawSocket()
	inet6, ok := SocketInet6(srv)
	if !ok || inet6 {
		t.Fatalf("SocketInet6 of an AF_INET socket = %v, %v; want false, true", inet6, ok)
	}
	var h Headers
	in := make([]Datagram, 4)
	for i := range in {
		in[i].B = make([]byte, 64)
	}
	if n, err := h.RecvFD(srv, in); n != 0 || err != nil {
		t.Fatalf("RecvFD on an empty socket = %d, %v; want 0, nil", n, err)
	}
	a, aAddr := rawSocket()
	b, bAddr := rawSocket()
	for _, p := range []struct {
		fd  int
		msg string
	}{{a, "from a"}, {b, "from b"}, {a, "a again"}} {
		if _, err := (&Headers{}).SendFD(p.fd, []Datagram{{B: []byte(p.msg), Addr: srvAddr}}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := h.RecvFD(srv, in)
	if n != 3 || err != nil {
		t.Fatalf("RecvFD = %d, %v; want the 3 datagrams sent", n, err)
	}
	for i, want := range []struct {
		msg  string
		from netip.AddrPort
	}{{"from a", aAddr}, {"from b", bAddr}, {"a again", aAddr}} {
		if got := string(in[i].B[:in[i].N]); got != want.msg || in[i].Addr != want.from {
			t.Errorf("datagram %d = %q from %v; want %q from %v", i, got, in[i].Addr, want.msg, want.from)
		}
	}

	out := []Datagram{
		{B: []byte("to a"), Addr: aAddr},
		{B: []byte("to b"), Addr: bAddr},
		{B: []byte("nowhere"), Addr: netip.MustParseAddrPort("[2001:db8::1]:69")},
		{B: []byte("never"), Addr: aAddr},
	}
	if n, err := h.SendFD(srv, out); n != 2 || !errors.Is(err, ErrAddrFamily) {
		t.Fatalf("SendFD with an IPv6 destination third = %d, %v; want 2, ErrAddrFamily", n, err)
	}
	for _, p := range []struct {
		fd   int
		want string
	}{{a, "to a"}, {b, "to b"}} {
		got := make([]Datagram, 2)
		got[0].B, got[1].B = make([]byte, 64), make([]byte, 64)
		if n, err := (&Headers{}).RecvFD(p.fd, got); n != 1 || err != nil || string(got[0].B[:got[0].N]) != p.want || got[0].Addr != srvAddr {
			t.Errorf("peer got %d, %v: %q from %v; want only %q from %v", n, err, got[0].B[:got[0].N], got[0].Addr, p.want, srvAddr)
		}
	}
}
