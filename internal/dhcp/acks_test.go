package dhcp

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/rackboot/rackboot/internal/inventory"
)

// heldStore holds back the commit results of bound leases until the test hands them
// over: a commit that has not finished yet.
type heldStore struct {
	*fakeStore
	held chan chan<- error
}

func (s *heldStore) BindLease(ctx context.Context, c inventory.LeaseClaim) (inventory.Lease, error) {
	durable := c.Durable
	if c.State == inventory.LeaseBound && durable != nil {
		c.Durable = make(chan error, 1) // the fake tells at once; the test tells later
	}
	l, err := s.fakeStore.BindLease(ctx, c)
	if err == nil && durable != nil && c.State == inventory.LeaseBound {
		s.held <- durable
	}
	return l, err
}

// TestServerSendsACKOnlyWhenDurable: the Server sends an ACK once its lease's commit
// succeeds, not before, and none when the commit fails (counted as an error); the
// worker that handled the REQUEST is not held meanwhile (a DISCOVER is answered while
// the commit is pending).
func TestServerSendsACKOnlyWhenDurable(t *testing.T) {
	st := &heldStore{fakeStore: newFakeStore(time.Now, testHosts()...), held: make(chan chan<- error, 4)}
	cliRaw, srvRaw := datagramPair(t)
	rs := startServer(t, serverConfig(t, st, func(c *Config) { c.Workers = 1 }),
		WithConn(nclient4.NewBroadcastUDPConn(srvRaw, &net.UDPAddr{Port: 67})))
	cli := nclient4.NewBroadcastUDPConn(cliRaw, &net.UDPAddr{Port: 68})
	send := func(m *dhcpv4.DHCPv4) {
		t.Helper()
		if _, err := cliRaw.WriteTo(udpFrame(t, m, "0.0.0.0:68", "255.255.255.255:67"), nil); err != nil {
			t.Fatal(err)
		}
	}
	// recv returns the next reply, or nil if none comes within wait.
	recv := func(wait time.Duration) *dhcpv4.DHCPv4 {
		t.Helper()
		buf := make([]byte, maxPacket)
		cli.SetReadDeadline(time.Now().Add(wait))
		n, _, err := cli.ReadFrom(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	commit := func() chan<- error {
		t.Helper()
		select {
		case d := <-st.held:
			return d
		case <-time.After(10 * time.Second): // a liveness guard
			t.Fatal("the REQUEST's lease was never bound")
			return nil
		}
	}

	send(msg(dhcpv4.MessageTypeRequest, macReserved, sid("10.0.0.1"), requested("10.0.0.11")))
	durable := commit()
	if m := recv(300 * time.Millisecond); m != nil {
		t.Fatalf("%s sent before the lease's commit finished", m.MessageType())
	}
	// The one worker is free: a DISCOVER is answered while the ACK waits.
	send(msg(dhcpv4.MessageTypeDiscover, macKnown))
	if m := recv(10 * time.Second); m == nil || m.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("reply to a DISCOVER while an ACK waits for its commit: %v, want an OFFER", m)
	}
	durable <- nil
	if m := recv(10 * time.Second); m == nil || m.MessageType() != dhcpv4.MessageTypeAck || m.YourIPAddr.String() != "10.0.0.11" {
		t.Fatalf("after the commit: %v, want the ACK of 10.0.0.11", m)
	}

	// A failed commit: no ACK, an error in the metrics. A new exchange, so a new xid:
	// the same packet again would be shed as a retransmission of the first if it came
	// before the first was done, which is only once its ACK's send has returned
	// (queue.go), and the client may read the ACK before that.
	failed := rs.srv.Handler().m.packets.WithLabelValues("request", string(outError))
	send(msg(dhcpv4.MessageTypeRequest, macReserved, sid("10.0.0.1"), requested("10.0.0.11"),
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{5, 6, 7, 8})))
	commit() <- errors.New("disk on fire")
	for deadline := time.Now().Add(10 * time.Second); counterValue(failed) < 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := counterValue(failed); n != 1 {
		t.Fatalf("requests counted as errors = %v, want 1", n)
	}
	if m := recv(300 * time.Millisecond); m != nil {
		t.Fatalf("%s sent for a lease whose commit failed", m.MessageType())
	}
}
