package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/rackboot/rackboot/internal/inventory"
)

// dora runs DISCOVER, then REQUEST for what was offered, and returns the ACK or NAK.
func (e *env) dora(mac string, mods ...dhcpv4.Modifier) (offer, ack *Reply) {
	e.t.Helper()
	offer = e.send(msg(dhcpv4.MessageTypeDiscover, mac, mods...))
	if offer == nil {
		e.t.Fatalf("%s: no OFFER", mac)
	}
	ack = e.send(msg(dhcpv4.MessageTypeRequest, mac, append(mods, sid("10.0.0.1"), requested(offer.Msg.YourIPAddr.String()))...))
	if ack == nil {
		e.t.Fatalf("%s: no reply to REQUEST", mac)
	}
	return offer, ack
}

func yiaddr(r *Reply) string {
	if r == nil {
		return "<no reply>"
	}
	return r.Msg.YourIPAddr.String()
}

func forEachStore(t *testing.T, f func(t *testing.T, open openStore)) {
	for _, sk := range storeKinds() {
		t.Run(sk.name, func(t *testing.T) { f(t, sk.open) })
	}
}

func discoverOn(c *Config) { c.UnknownHosts = UnknownDiscover }

func TestDORA(t *testing.T) {
	forEachStore(t, func(t *testing.T, open openStore) {
		e := newEnv(t, open, discoverOn)
		offer, ack := e.dora(macUnknown, pxe(iana.INTEL_X86PC))
		if got := viewOf(ack); got.Type != "ACK" || got.YIAddr != "10.0.0.100" || got.File != "undionly.kpxe" || got.Dest != bcast {
			t.Errorf("ACK = %+v", got)
		}
		if yiaddr(offer) != yiaddr(ack) {
			t.Errorf("offered %s, acked %s", yiaddr(offer), yiaddr(ack))
		}
		l, ok := e.lease(macUnknown)
		if !ok || l.State != inventory.LeaseBound || l.IP != "10.0.0.100" {
			t.Errorf("lease = %+v", l)
		}
		if diff := cmp.Diff([]string{"dhcp.discover", "dhcp.offer", "dhcp.ack"}, e.eventTypes("mac-525400999999")); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if e.count("discover", outReplied) != 1 || e.count("request", outReplied) != 1 {
			t.Error("packets not counted")
		}
	})
}

func TestTwoClientsNeverShareAnOffer(t *testing.T) {
	forEachStore(t, func(t *testing.T, open openStore) {
		e := newEnv(t, open, discoverOn)
		a := e.send(msg(dhcpv4.MessageTypeDiscover, macUnknown))
		b := e.send(msg(dhcpv4.MessageTypeDiscover, macOther))
		if yiaddr(a) != "10.0.0.100" || yiaddr(b) != "10.0.0.101" {
			t.Errorf("offers %s and %s, want 10.0.0.100 and 10.0.0.101", yiaddr(a), yiaddr(b))
		}
		// A repeated DISCOVER gets the same held offer.
		if again := e.send(msg(dhcpv4.MessageTypeDiscover, macUnknown)); yiaddr(again) != "10.0.0.100" {
			t.Errorf("repeat DISCOVER offered %s", yiaddr(again))
		}
		// Once the hold expires, the address goes to whoever asks.
		e.clock.Advance(2 * time.Minute)
		if c := e.send(msg(dhcpv4.MessageTypeDiscover, "52:54:00:99:99:97")); yiaddr(c) != "10.0.0.100" {
			t.Errorf("after the hold expired, a third client got %s, want 10.0.0.100", yiaddr(c))
		}
	})
}

func TestConcurrentDiscoversGetDistinctAddresses(t *testing.T) {
	e := newEnv(t, storeKinds()[0].open, discoverOn)
	const n = 8
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i] = yiaddr(e.send(msg(dhcpv4.MessageTypeDiscover, fmt.Sprintf("52:54:00:aa:00:%02x", i))))
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, a := range got {
		if seen[a] || a == "<no reply>" {
			t.Fatalf("offers %v: duplicate or missing", got)
		}
		seen[a] = true
	}
}

func TestPoolSkipsReservedServerRouterAndDNS(t *testing.T) {
	forEachStore(t, func(t *testing.T, open openStore) {
		c := newClock()
		hosts := append(testHosts(), inventory.Host{ID: "pinned", MACs: []string{"52:54:00:00:00:09"}, IP: "10.0.0.104"})
		st := open(t, c.Now, hosts...)
		e := newEnvWith(t, st, c, func(c *Config) {
			c.UnknownHosts = UnknownDiscover
			c.ServerIP = ip("10.0.0.100")
			c.Subnets[0].Router = ip("10.0.0.101")
			c.Subnets[0].DNS = []netip.Addr{ip("10.0.0.102"), ip("10.0.0.103")}
			c.Subnets[0].Range = Range{ip("10.0.0.100"), ip("10.0.0.106")}
		})
		a := e.send(msg(dhcpv4.MessageTypeDiscover, macUnknown))
		b := e.send(msg(dhcpv4.MessageTypeDiscover, macOther))
		if yiaddr(a) != "10.0.0.105" || yiaddr(b) != "10.0.0.106" {
			t.Errorf("offers %s, %s; want 10.0.0.105, 10.0.0.106", yiaddr(a), yiaddr(b))
		}
		// Pool exhausted: no offer, counted as our error.
		if r := e.send(msg(dhcpv4.MessageTypeDiscover, "52:54:00:99:99:97")); r != nil {
			t.Errorf("offered %s from an exhausted pool", yiaddr(r))
		}
		if e.count("discover", outError) != 1 {
			t.Error("exhausted pool not counted as error")
		}
	})
}

func TestRequestedAddressHonouredWhenFree(t *testing.T) {
	e := newEnv(t, storeKinds()[0].open, discoverOn)
	if r := e.send(msg(dhcpv4.MessageTypeDiscover, macUnknown, requested("10.0.0.107"))); yiaddr(r) != "10.0.0.107" {
		t.Errorf("offered %s, want the requested 10.0.0.107", yiaddr(r))
	}
	if r := e.send(msg(dhcpv4.MessageTypeDiscover, macOther, requested("10.0.0.107"))); yiaddr(r) != "10.0.0.100" {
		t.Errorf("offered %s to a second client asking for a held address, want 10.0.0.100", yiaddr(r))
	}
	if r := e.send(msg(dhcpv4.MessageTypeDiscover, "52:54:00:99:99:97", requested("10.0.0.5"))); yiaddr(r) != "10.0.0.101" {
		t.Errorf("offered %s for a request outside the range, want 10.0.0.101", yiaddr(r))
	}
}

func TestSelectingAnotherServerFreesOurOffer(t *testing.T) {
	forEachStore(t, func(t *testing.T, open openStore) {
		e := newEnv(t, open, discoverOn)
		e.send(msg(dhcpv4.MessageTypeDiscover, macUnknown))
		if _, ok := e.lease(macUnknown); !ok {
			t.Fatal("offer not held")
		}
		if r := e.send(msg(dhcpv4.MessageTypeRequest, macUnknown, sid("10.0.0.2"), requested("10.0.0.200"))); r != nil {
			t.Fatalf("answered a REQUEST for another server: %+v", viewOf(r))
		}
		if l, ok := e.lease(macUnknown); ok {
			t.Errorf("offer still held: %+v", l)
		}
		if r := e.send(msg(dhcpv4.MessageTypeDiscover, macOther)); yiaddr(r) != "10.0.0.100" {
			t.Errorf("freed address not reused: %s", yiaddr(r))
		}
	})
}

func TestRenewRebindAndLeaseConflicts(t *testing.T) {
	forEachStore(t, func(t *testing.T, open openStore) {
		e := newEnv(t, open, discoverOn)
		e.dora(macUnknown)
		e.clock.Advance(30 * time.Minute)

		// RENEWING: unicast, ciaddr set → ACK to ciaddr, lease extended.
		r := e.send(msg(dhcpv4.MessageTypeRequest, macUnknown, ciaddr("10.0.0.100")))
		if v := viewOf(r); v == nil || v.Type != "ACK" || v.Dest != "10.0.0.100:68" || v.CIAddr != "10.0.0.100" || v.YIAddr != "10.0.0.100" {
			t.Errorf("renew reply = %+v", v)
		}
		if l, _ := e.lease(macUnknown); !l.Expires.Equal(e.clock.Now().Add(time.Hour)) {
			t.Errorf("lease not extended: expires %v", l.Expires)
		}
		// REBINDING with the broadcast bit: same answer.
		r = e.send(msg(dhcpv4.MessageTypeRequest, macUnknown, ciaddr("10.0.0.100"), dhcpv4.WithBroadcast(true)))
		if v := viewOf(r); v == nil || v.Type != "ACK" || v.Dest != "10.0.0.100:68" || !v.Broadcast {
			t.Errorf("rebind reply = %+v", v)
		}
		// Renewing an address that is not its lease → NAK.
		r = e.send(msg(dhcpv4.MessageTypeRequest, macUnknown, ciaddr("10.0.0.105")))
		if v := viewOf(r); v == nil || v.Type != "NAK" || v.Dest != bcast {
			t.Errorf("renew of a foreign address = %+v", v)
		}
		// Another client renewing an address it never had: we have no record → silence.
		if r := e.send(msg(dhcpv4.MessageTypeRequest, macOther, ciaddr("10.0.0.100"))); r != nil {
			t.Errorf("answered a client with no record: %+v", viewOf(r))
		}
		// Another client SELECTING the bound address → NAK.
		r = e.send(msg(dhcpv4.MessageTypeRequest, macOther, sid("10.0.0.1"), requested("10.0.0.100")))
		if v := viewOf(r); v == nil || v.Type != "NAK" {
			t.Errorf("select of a bound address = %+v", v)
		}
	})
}

func TestExpiredLeaseGoesBackToItsClientOrToAnyone(t *testing.T) {
	forEachStore(t, func(t *testing.T, open openStore) {
		e := newEnv(t, open, discoverOn)
		e.dora(macUnknown)
		e.clock.Advance(3 * time.Hour)
		// The lease expired but nobody took the address: the client gets it back.
		if r := e.send(msg(dhcpv4.MessageTypeDiscover, macUnknown)); yiaddr(r) != "10.0.0.100" {
			t.Errorf("returning client got %s, want its old 10.0.0.100", yiaddr(r))
		}
		// INIT-REBOOT of the expired but free address: ACK.
		if r := e.send(msg(dhcpv4.MessageTypeRequest, macUnknown, requested("10.0.0.100"))); viewOf(r).Type != "ACK" {
			t.Errorf("INIT-REBOOT of its expired lease = %+v", viewOf(r))
		}
		e.clock.Advance(3 * time.Hour)
		// Now another client takes it; the first one gets something else.
		if r := e.send(msg(dhcpv4.MessageTypeRequest, macOther, sid("10.0.0.1"), requested("10.0.0.100"))); viewOf(r).Type != "ACK" {
			t.Fatalf("second client could not take the expired address: %+v", viewOf(r))
		}
		if r := e.send(msg(dhcpv4.MessageTypeDiscover, macUnknown)); yiaddr(r) != "10.0.0.101" {
			t.Errorf("first client got %s, want 10.0.0.101", yiaddr(r))
		}
	})
}

func TestRelease(t *testing.T) {
	forEachStore(t, func(t *testing.T, open openStore) {
		e := newEnv(t, open, nil)
		e.dora(macReserved, pxe(iana.INTEL_X86PC))
		// A RELEASE of an address that is not its lease changes nothing.
		if r := e.send(msg(dhcpv4.MessageTypeRelease, macReserved, ciaddr("10.0.0.12"), sid("10.0.0.1"))); r != nil {
			t.Error("RELEASE got a reply")
		}
		if _, ok := e.lease(macReserved); !ok {
			t.Fatal("lease freed by a RELEASE of another address")
		}
		e.send(msg(dhcpv4.MessageTypeRelease, macReserved, ciaddr("10.0.0.11"), sid("10.0.0.1")))
		if l, ok := e.lease(macReserved); ok {
			t.Errorf("lease not freed: %+v", l)
		}
		if e.count("release", outAccepted) != 1 || e.count("release", outIgnored) != 1 {
			t.Error("releases not counted")
		}
		if diff := cmp.Diff([]string{"dhcp.discover", "dhcp.offer", "dhcp.ack", "dhcp.release"}, e.eventTypes("node1")); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

func TestDeclineQuarantinesTheAddress(t *testing.T) {
	forEachStore(t, func(t *testing.T, open openStore) {
		e := newEnv(t, open, discoverOn)
		e.dora(macUnknown)
		if r := e.send(msg(dhcpv4.MessageTypeDecline, macUnknown, requested("10.0.0.100"), sid("10.0.0.1"))); r != nil {
			t.Error("DECLINE got a reply")
		}
		q, err := e.store.LeaseByIP(context.Background(), "10.0.0.100")
		if err != nil || q.State != inventory.LeaseDeclined || q.MAC != "de:c1:0a:00:00:64" || !q.Expires.Equal(e.clock.Now().Add(10*time.Minute)) {
			t.Errorf("quarantine = %+v, %v", q, err)
		}
		// The client retries and gets another address; so does everyone else.
		if _, ack := e.dora(macUnknown); yiaddr(ack) != "10.0.0.101" {
			t.Errorf("after DECLINE the client got %s, want 10.0.0.101", yiaddr(ack))
		}
		if r := e.send(msg(dhcpv4.MessageTypeDiscover, macOther)); yiaddr(r) != "10.0.0.102" {
			t.Errorf("quarantined address offered: %s", yiaddr(r))
		}
		e.clock.Advance(11 * time.Minute)
		if r := e.send(msg(dhcpv4.MessageTypeDiscover, "52:54:00:99:99:97")); yiaddr(r) != "10.0.0.100" {
			t.Errorf("after the quarantine, got %s, want 10.0.0.100", yiaddr(r))
		}
		if e.count("decline", outAccepted) != 1 {
			t.Error("decline not counted")
		}
	})
}

func TestDeclineOfAReservedAddressKeepsTheReservation(t *testing.T) {
	forEachStore(t, func(t *testing.T, open openStore) {
		e := newEnv(t, open, nil)
		e.dora(macReserved)
		e.send(msg(dhcpv4.MessageTypeDecline, macReserved, requested("10.0.0.11"), sid("10.0.0.1")))
		if _, ok := e.lease(macReserved); ok {
			t.Error("declined lease kept")
		}
		if r := e.send(msg(dhcpv4.MessageTypeDiscover, macReserved)); yiaddr(r) != "10.0.0.11" {
			t.Errorf("reserved host offered %s after DECLINE, want its reservation", yiaddr(r))
		}
		if diff := cmp.Diff([]string{"dhcp.discover", "dhcp.offer", "dhcp.ack", "dhcp.decline", "dhcp.discover", "dhcp.offer"}, e.eventTypes("node1")); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

// TestLeasesSurviveRestart runs a client against one handler, then against a new
// handler over a reopened bbolt file: it keeps its address, and its lease still blocks
// others.
func TestLeasesSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	c := newClock()
	st := openBoltAt(t, path, c.Now, testHosts()...)
	e := newEnvWith(t, st, c, discoverOn)
	e.send(msg(dhcpv4.MessageTypeDiscover, macOther)) // holds .100
	if _, ack := e.dora(macUnknown); yiaddr(ack) != "10.0.0.101" {
		t.Fatalf("first run: %s", yiaddr(ack))
	}
	st.(interface{ Close() error }).Close()

	c.Advance(10 * time.Minute)
	st2 := openBoltAt(t, path, c.Now)
	e2 := newEnvWith(t, st2, c, discoverOn)
	if r := e2.send(msg(dhcpv4.MessageTypeDiscover, macUnknown)); yiaddr(r) != "10.0.0.101" {
		t.Errorf("after restart the client got %s, want 10.0.0.101", yiaddr(r))
	}
	if r := e2.send(msg(dhcpv4.MessageTypeRequest, macUnknown, requested("10.0.0.101"))); viewOf(r).Type != "ACK" {
		t.Errorf("INIT-REBOOT after restart = %+v", viewOf(r))
	}
	// macOther's offer expired during the restart; a newcomer can take .100 but not .101.
	if r := e2.send(msg(dhcpv4.MessageTypeDiscover, "52:54:00:99:99:97")); yiaddr(r) != "10.0.0.100" {
		t.Errorf("newcomer got %s, want 10.0.0.100", yiaddr(r))
	}
}

func TestStoreFailureIsAnErrorNotAReply(t *testing.T) {
	c := newClock()
	st := newFakeStore(c.Now, testHosts()...)
	e := newEnvWith(t, st, c, nil)
	st.failLeases = errors.New("disk on fire")
	if r := e.send(msg(dhcpv4.MessageTypeDiscover, macKnown)); r != nil {
		t.Errorf("replied despite the store failing: %+v", viewOf(r))
	}
	if r := e.send(msg(dhcpv4.MessageTypeRequest, macKnown, sid("10.0.0.1"), requested("10.0.0.100"))); r != nil {
		t.Errorf("replied despite the store failing: %+v", viewOf(r))
	}
	if e.count("discover", outError) != 1 || e.count("request", outError) != 1 {
		t.Error("store failures not counted as errors")
	}
}

func TestArchRecordedOnlyWhenChanged(t *testing.T) {
	c := newClock()
	st := newFakeStore(c.Now, testHosts()...)
	e := newEnvWith(t, st, c, nil)
	for range 3 {
		e.send(msg(dhcpv4.MessageTypeDiscover, macKnown, pxe(iana.EFI_X86_64)))
	}
	h, _ := st.HostByMAC(context.Background(), macKnown)
	if h.Revision != 2 || h.Arch != "x86_64" || h.Firmware != inventory.FirmwareUEFI {
		t.Errorf("host = rev %d %q %q, want one update to x86_64/uefi", h.Revision, h.Arch, h.Firmware)
	}
	e.send(msg(dhcpv4.MessageTypeDiscover, macKnown, pxe(iana.INTEL_X86PC)))
	if h, _ = st.HostByMAC(context.Background(), macKnown); h.Firmware != inventory.FirmwareBIOS || h.Revision != 3 {
		t.Errorf("firmware change not recorded: rev %d %q", h.Revision, h.Firmware)
	}
}

func TestMalformedPacketsAreCounted(t *testing.T) {
	e := newEnv(t, storeKinds()[0].open, nil)
	good := msg(dhcpv4.MessageTypeDiscover, macKnown).ToBytes()
	for _, b := range [][]byte{nil, {1, 2, 3}, good[:100], append(append([]byte{}, good[:240]...), 53, 9, 1)} {
		if r := e.h.HandlePacket(context.Background(), b, Meta{}); r != nil {
			t.Errorf("replied to %d malformed bytes", len(b))
		}
	}
	if n := e.count("unknown", outMalformed); n != 4 {
		t.Errorf("malformed = %v, want 4", n)
	}
	if r := e.h.HandlePacket(context.Background(), good, Meta{}); r == nil {
		t.Error("no reply to a good packet")
	}
}

func TestPanicIsRecoveredAndCounted(t *testing.T) {
	c := newClock()
	st := &panicStore{fakeStore: newFakeStore(c.Now, testHosts()...)}
	e := newEnvWith(t, st, c, nil)
	if r := e.h.HandlePacket(context.Background(), msg(dhcpv4.MessageTypeDiscover, macKnown).ToBytes(), Meta{}); r != nil {
		t.Error("replied after a panic")
	}
	if counterValue(e.h.m.panics) != 1 || e.count("discover", outError) != 1 {
		t.Error("panic not counted")
	}
	// The handler still works (the lock was released).
	st.ok = true
	if r := e.send(msg(dhcpv4.MessageTypeDiscover, macKnown)); r == nil {
		t.Error("handler broken after a panic")
	}
}

type panicStore struct {
	*fakeStore
	ok bool
}

func (p *panicStore) GetLease(ctx context.Context, mac string) (inventory.Lease, error) {
	if !p.ok {
		panic("boom")
	}
	return p.fakeStore.GetLease(ctx, mac)
}
