package tftp

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/ipxe"
)

// FuzzRequestPacket sends any datagram to a running server as a stranger would: a
// request with any name, mode and options (blksize, tsize, timeout, windowsize, junk),
// or no request at all. Whatever it was, the server answers it with at most a
// transfer or an error, never panics, and still answers the next client.
func FuzzRequestPacket(f *testing.F) {
	for _, p := range [][]byte{
		rrq(ipxe.UndionlyKPXE, "octet"),
		rrq(ipxe.SNPOnlyEFI, "octet", "blksize", "1468", "tsize", "0"),
		rrq(ipxe.IPXEEFI, "netascii", "blksize", "8", "windowsize", "4", "timeout", "1"),
		rrq(ipxe.UndionlyKPXE, "octet", "blksize", "99999999999999999999"),
		rrq(ipxe.UndionlyKPXE, "octet", "blksize", "-1", "tsize", "x"),
		rrq(ipxe.UndionlyKPXE, "octet", "blksize"),
		rrq("../../etc/passwd", "octet"),
		rrq(strings.Repeat("a/", 300), "octet"),
		rrq("", ""),
		rrq(ipxe.UndionlyKPXE, "mail"),
		{0, 2, 'x', 0, 'o', 'c', 't', 'e', 't', 0}, // write request
		{0, 1},
		{0, 1, 'x'},
		{0, 4, 0, 1}, // an ACK to the server port
		{0, 5, 0, 8, 0},
		{0, 6, 'b', 'l', 'k', 's', 'i', 'z', 'e', 0, '8', 0},
		{},
		{0xff, 0xff, 0xff},
	} {
		f.Add(p)
	}
	ts := startServerConfig(f, func(c *Config) {
		c.Timeout, c.Retries = 100*time.Millisecond, 1
		c.MaxTransfers, c.MaxTransfersPerSource = 10000, 10000
	}, nil)
	stranger := dialRawTB(f, net.IPv4(127, 0, 0, 1))
	ua, err := net.ResolveUDPAddr("udp4", ts.addr)
	if err != nil {
		f.Fatal(err)
	}
	buf := make([]byte, 70000)
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) > 1500 {
			p = p[:1500] // one Ethernet frame, as on the wire
		}
		if _, err := stranger.WriteTo(p, ua); err != nil {
			t.Fatal(err)
		}
		// A client that asks for a file that does not exist gets its error at once.
		c := dialRawTB(t, net.IPv4(127, 0, 0, 1))
		if _, err := c.WriteTo(rrq("no-such-file", "octet"), ua); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %q the server no longer answers: %v", p, err)
		}
		if n < 4 || binary.BigEndian.Uint16(buf) != opERROR {
			t.Fatalf("after %q: answer %x, want an error packet", p, buf[:n])
		}
	})
}

func dialRawTB(tb testing.TB, ip net.IP) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
