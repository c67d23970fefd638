package dhcp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rackboot/rackboot/internal/inventory"
)

// datagramPair is a connected AF_UNIX datagram socket pair: each write is one packet,
// whatever address it names. Wrapped in nclient4's raw UDP conn on both ends, it
// carries real IPv4/UDP headers, so the server sees source addresses and the client
// filters on destination ports as on a wire, with no port or interface of the host.
func datagramPair(t *testing.T) (a, b net.PacketConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.PacketConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FilePacketConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return unixDgram{c.(*net.UnixConn)}
	}
	a, b = conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

type unixDgram struct{ *net.UnixConn }

func (u unixDgram) WriteTo(p []byte, _ net.Addr) (int, error) { return u.Write(p) }
func (u unixDgram) ReadFrom(p []byte) (int, net.Addr, error) {
	n, err := u.Read(p)
	return n, nil, err
}

// recordingConn notes where the server sends each reply.
type recordingConn struct {
	net.PacketConn
	dests chan netip.AddrPort
}

func (r recordingConn) WriteTo(p []byte, a net.Addr) (int, error) {
	r.dests <- a.(*net.UDPAddr).AddrPort()
	return r.PacketConn.WriteTo(p, a)
}

type runningServer struct {
	srv  *Server
	done chan error
	stop context.CancelFunc
}

// startServer runs a Server until the test ends, and checks that it stops cleanly.
func startServer(t *testing.T, cfg Config, opts ...Option) *runningServer {
	t.Helper()
	srv, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningServer{srv: srv, done: make(chan error, 1), stop: cancel}
	go func() { rs.done <- srv.Start(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-rs.done:
		t.Fatalf("Start returned early: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-rs.done:
			if err != nil {
				t.Errorf("Start returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Start did not return after cancel")
		}
	})
	return rs
}

func serverConfig(t *testing.T, st Store, mutate func(*Config)) Config {
	cfg := baseConfig()
	cfg.Store = st
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Registerer = prometheus.NewRegistry()
	if mutate != nil {
		mutate(&cfg)
	}
	return cfg
}

// TestServerDORAWithNclient4 runs a full DISCOVER-OFFER-REQUEST-ACK between the
// library's client and a real Server over a socket pair, with the real bbolt store.
func TestServerDORAWithNclient4(t *testing.T) {
	st := openBolt(t, time.Now, testHosts()...)
	cliRaw, srvRaw := datagramPair(t)
	dests := make(chan netip.AddrPort, 16)
	srvConn := recordingConn{nclient4.NewBroadcastUDPConn(srvRaw, &net.UDPAddr{Port: 67}), dests}
	startServer(t, serverConfig(t, st, nil), WithConn(srvConn))

	cli, err := nclient4.NewWithConn(nclient4.NewBroadcastUDPConn(cliRaw, &net.UDPAddr{Port: 68}), mustMAC(macReserved),
		nclient4.WithTimeout(5*time.Second), nclient4.WithRetry(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lease, err := cli.Request(ctx, pxe(iana.EFI_X86_64))
	if err != nil {
		t.Fatalf("DORA: %v", err)
	}
	ack := lease.ACK
	if got := ack.YourIPAddr.String(); got != "10.0.0.11" {
		t.Errorf("yiaddr = %s, want the reservation 10.0.0.11", got)
	}
	if ack.BootFileName != "snponly.efi" || !ack.ServerIPAddr.Equal(net.IPv4(10, 0, 0, 1)) || ack.HostName() != "node1" {
		t.Errorf("boot options: file %q siaddr %s hostname %q", ack.BootFileName, ack.ServerIPAddr, ack.HostName())
	}
	if got := ack.IPAddressLeaseTime(0); got != time.Hour {
		t.Errorf("lease time %v", got)
	}
	for range 2 {
		if d := nextDest(t, dests); d.String() != bcast {
			t.Errorf("reply sent to %s, want %s", d, bcast)
		}
	}
	l, err := st.GetLease(context.Background(), macReserved)
	if err != nil || l.State != inventory.LeaseBound {
		t.Errorf("lease in the inventory: %+v %v", l, err)
	}

	// A relayed request through the same socket is answered to the relay.
	relayedReq := msg(dhcpv4.MessageTypeDiscover, macRemote, relayed("10.0.1.1"))
	if _, err := cliRaw.WriteTo(udpFrame(t, relayedReq, "10.0.1.1:67", "255.255.255.255:67"), nil); err != nil {
		t.Fatal(err)
	}
	if d := nextDest(t, dests); d.String() != "10.0.1.1:67" {
		t.Errorf("relayed reply sent to %s, want 10.0.1.1:67", d)
	}
}

func nextDest(t *testing.T, dests <-chan netip.AddrPort) netip.AddrPort {
	t.Helper()
	select {
	case d := <-dests:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("the server sent no reply")
		return netip.AddrPort{}
	}
}

// udpFrame wraps m in IPv4/UDP headers as nclient4's raw conn would send it from src.
func udpFrame(t *testing.T, m *dhcpv4.DHCPv4, src, dst string) []byte {
	t.Helper()
	var frame []byte
	capture := captureConn{out: &frame}
	c := nclient4.NewBroadcastUDPConn(capture, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(src)))
	if _, err := c.WriteTo(m.ToBytes(), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst))); err != nil {
		t.Fatal(err)
	}
	return frame
}

type captureConn struct {
	net.PacketConn
	out *[]byte
}

func (c captureConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	*c.out = append([]byte(nil), p...)
	return len(p), nil
}

// TestServerProxyMode runs proxyDHCP over two socket pairs: an address-less OFFER on
// port 67, then the boot file from the PXE port to a client that has its address.
func TestServerProxyMode(t *testing.T) {
	st := newFakeStore(time.Now, testHosts()...)
	cliRaw, srvRaw := datagramPair(t)
	pxeCliRaw, pxeSrvRaw := datagramPair(t)
	startServer(t, serverConfig(t, st, proxyMode),
		WithConn(nclient4.NewBroadcastUDPConn(srvRaw, &net.UDPAddr{Port: 67})),
		WithPXEConn(nclient4.NewBroadcastUDPConn(pxeSrvRaw, &net.UDPAddr{Port: 4011})))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cli, err := nclient4.NewWithConn(nclient4.NewBroadcastUDPConn(cliRaw, &net.UDPAddr{Port: 68}), mustMAC(macReserved),
		nclient4.WithTimeout(5*time.Second), nclient4.WithRetry(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	offer, err := cli.DiscoverOffer(ctx, pxe(iana.INTEL_X86PC))
	if err != nil {
		t.Fatalf("proxy DISCOVER: %v", err)
	}
	if !offer.YourIPAddr.IsUnspecified() || offer.BootFileName != "undionly.kpxe" || offer.ClassIdentifier() != "PXEClient" {
		t.Errorf("proxy offer: yiaddr %s file %q class %q", offer.YourIPAddr, offer.BootFileName, offer.ClassIdentifier())
	}

	// The client now has 10.0.0.77 from the site server and asks the PXE port.
	pxeCli, err := nclient4.NewWithConn(nclient4.NewBroadcastUDPConn(pxeCliRaw, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 77), Port: 68}),
		mustMAC(macReserved), nclient4.WithTimeout(5*time.Second), nclient4.WithRetry(2))
	if err != nil {
		t.Fatal(err)
	}
	defer pxeCli.Close()
	req := msg(dhcpv4.MessageTypeRequest, macReserved, pxe(iana.EFI_X86_64), ciaddr("10.0.0.77"))
	ack, err := pxeCli.SendAndRead(ctx, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 4011}, req, nclient4.IsMessageType(dhcpv4.MessageTypeAck))
	if err != nil {
		t.Fatalf("PXE port REQUEST: %v", err)
	}
	if ack.BootFileName != "snponly.efi" || !ack.YourIPAddr.IsUnspecified() {
		t.Errorf("PXE ACK: file %q yiaddr %s", ack.BootFileName, ack.YourIPAddr)
	}
}

func TestServerSurvivesGarbage(t *testing.T) {
	st := newFakeStore(time.Now, testHosts()...)
	cliRaw, srvRaw := datagramPair(t)
	rs := startServer(t, serverConfig(t, st, nil), WithConn(nclient4.NewBroadcastUDPConn(srvRaw, &net.UDPAddr{Port: 67})))
	good := msg(dhcpv4.MessageTypeDiscover, macReserved)
	for _, b := range [][]byte{{0xff}, make([]byte, 300), good.ToBytes()[:241]} {
		frame := udpFrame(t, good, "0.0.0.0:68", "255.255.255.255:67")
		frame = append(frame[:28], b...) // same headers, bad payload
		frame[2], frame[3] = byte(len(frame)>>8), byte(len(frame))
		frame[24], frame[25], frame[26], frame[27] = byte((len(b)+8)>>8), byte(len(b)+8), 0, 0
		if _, err := cliRaw.WriteTo(frame, nil); err != nil {
			t.Fatal(err)
		}
	}
	cli, err := nclient4.NewWithConn(nclient4.NewBroadcastUDPConn(cliRaw, &net.UDPAddr{Port: 68}), mustMAC(macReserved),
		nclient4.WithTimeout(5*time.Second), nclient4.WithRetry(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cli.DiscoverOffer(ctx); err != nil {
		t.Fatalf("no OFFER after garbage: %v", err)
	}
	// Workers handle packets concurrently: the OFFER can come back while another worker
	// is still dropping the last bad packet, so the count is awaited, not read once.
	malformed := rs.srv.Handler().m.packets.WithLabelValues("unknown", string(outMalformed))
	for deadline := time.Now().Add(5 * time.Second); counterValue(malformed) < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := counterValue(malformed); n != 3 {
		t.Errorf("malformed = %v, want 3", n)
	}
}

func TestServerModeOffWaitsForContext(t *testing.T) {
	srv, err := New(Config{Mode: ModeOff})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	<-srv.Ready()
	select {
	case err := <-done:
		t.Fatalf("Start returned before cancel: %v", err)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start = %v", err)
	}
}

func TestServerBadInterface(t *testing.T) {
	cfg := serverConfig(t, newFakeStore(time.Now), nil)
	cfg.Interface = "nosuchif0"
	cfg.Port = 40067 // never a real DHCP port outside a namespace; the bind fails first anyway
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), `interface "nosuchif0" does not exist`) {
		t.Errorf("Start = %v, want an error naming the missing interface", err)
	}
}

func TestNewRequiresInterfaceOrConn(t *testing.T) {
	_, err := New(serverConfig(t, newFakeStore(time.Now), nil))
	var fe *fieldError
	if !errors.As(err, &fe) || fe.field != "Interface" {
		t.Errorf("New without interface = %v", err)
	}
}
