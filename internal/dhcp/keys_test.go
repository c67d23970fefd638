package dhcp

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/rackboot/rackboot/internal/inventory"
)

// fakeKeys records the keys issued: MAC and the address each is bound to.
type fakeKeys struct {
	mu     sync.Mutex
	issued []string
}

func (k *fakeKeys) IssueKey(mac string, addr netip.Addr) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.issued = append(k.issued, mac+"@"+addr.String())
	return fmt.Sprintf("KEY%d", len(k.issued))
}

func (k *fakeKeys) list() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.issued...)
}

func bootFile(r *Reply) string {
	if r == nil {
		return ""
	}
	return r.Msg.BootFileNameOption()
}

// TestBootKeys: a boot key goes only in a reply that reaches the client's own MAC and is
// bound to the address that reply gives or answers; replies a stranger could steer to
// itself (INFORM's ciaddr, a giaddr that is not the subnet's router, the broadcast
// proxy offer) carry none, and no event or log line shows a key.
func TestBootKeys(t *testing.T) {
	script := func(mac string) string { return "http://10.0.0.1:8080/ipxe/boot.ipxe?mac=" + mac }
	ctx := context.Background()

	t.Run("server ACK: to the client's MAC, bound to its reservation", func(t *testing.T) {
		keys := &fakeKeys{}
		e := newEnv(t, openBolt, func(c *Config) { c.Keys = keys })
		r := e.send(msg(dhcpv4.MessageTypeRequest, macReserved, ipxe(iana.EFI_X86_64), sid("10.0.0.1"), requested("10.0.0.11")))
		if got, want := bootFile(r), script(macReserved)+"&key=KEY1"; got != want {
			t.Fatalf("boot file %q, want %q", got, want)
		}
		if r.HWDest.String() != macReserved {
			t.Errorf("HWDest %v, want the client's MAC %s", r.HWDest, macReserved)
		}
		if got := keys.list(); len(got) != 1 || got[0] != macReserved+"@10.0.0.11" {
			t.Errorf("keys issued %v, want one bound to 10.0.0.11", got)
		}
		evs, _ := e.store.Events(ctx, "node1", 0)
		for _, ev := range evs {
			if strings.Contains(ev.Fields["bootfile"], "key=") || strings.Contains(ev.Message, "KEY") {
				t.Errorf("event %s shows the key: %+v", ev.Type, ev)
			}
		}
	})
	t.Run("server OFFER: bound to the offered address", func(t *testing.T) {
		keys := &fakeKeys{}
		e := newEnv(t, openBolt, func(c *Config) { c.Keys = keys })
		r := e.send(msg(dhcpv4.MessageTypeDiscover, macKnown, ipxe(iana.INTEL_X86PC)))
		if !strings.HasSuffix(bootFile(r), "&key=KEY1") || r.HWDest.String() != macKnown {
			t.Fatalf("offer: boot file %q to %v", bootFile(r), r.HWDest)
		}
		if got := keys.list(); got[0] != macKnown+"@"+r.Msg.YourIPAddr.String() {
			t.Errorf("key bound to %v, want the offered %s", got, r.Msg.YourIPAddr)
		}
	})
	t.Run("no key for PXE ROMs", func(t *testing.T) {
		keys := &fakeKeys{}
		e := newEnv(t, openBolt, func(c *Config) { c.Keys = keys })
		r := e.send(msg(dhcpv4.MessageTypeDiscover, macReserved, pxe(iana.INTEL_X86PC)))
		if bootFile(r) != "undionly.kpxe" || len(keys.list()) != 0 || r.HWDest != nil {
			t.Errorf("PXE ROM: boot file %q, keys %v, HWDest %v", bootFile(r), keys.list(), r.HWDest)
		}
	})
	t.Run("relayed through the subnet's router: key, to the relay", func(t *testing.T) {
		keys := &fakeKeys{}
		e := newEnv(t, openBolt, func(c *Config) { c.Keys = keys })
		r := e.send(msg(dhcpv4.MessageTypeRequest, macRemote, ipxe(iana.EFI_X86_64), relayed("10.0.1.1"), sid("10.0.0.1"), requested("10.0.1.11")))
		if !strings.HasSuffix(bootFile(r), "&key=KEY1") || r.HWDest != nil || r.Dest.Addr() != ip("10.0.1.1") {
			t.Errorf("boot file %q, HWDest %v, dest %v", bootFile(r), r.HWDest, r.Dest)
		}
	})
	t.Run("giaddr that is not the router: no key", func(t *testing.T) {
		keys := &fakeKeys{}
		e := newEnv(t, openBolt, func(c *Config) { c.Keys = keys })
		r := e.send(msg(dhcpv4.MessageTypeRequest, macRemote, ipxe(iana.EFI_X86_64), relayed("10.0.1.77"), sid("10.0.0.1"), requested("10.0.1.11")))
		if got := bootFile(r); got != script(macRemote) || len(keys.list()) != 0 {
			t.Errorf("boot file %q, keys %v: want the URL without a key", got, keys.list())
		}
	})
	t.Run("INFORM names its own ciaddr: no key", func(t *testing.T) {
		keys := &fakeKeys{}
		e := newEnv(t, openBolt, func(c *Config) { c.Keys = keys })
		r := e.send(msg(dhcpv4.MessageTypeInform, macReserved, ipxe(iana.EFI_X86_64), ciaddr("10.0.0.99")))
		if got := bootFile(r); got != script(macReserved) || len(keys.list()) != 0 {
			t.Errorf("boot file %q, keys %v", got, keys.list())
		}
	})
	t.Run("proxy: broadcast offer without a file, PXE port answer with a key", func(t *testing.T) {
		keys := &fakeKeys{}
		e := newEnv(t, openBolt, func(c *Config) { proxyMode(c); c.Keys = keys })
		offer := e.send(msg(dhcpv4.MessageTypeDiscover, macKnown, ipxe(iana.EFI_X86_64)))
		if offer == nil || bootFile(offer) != "" || offer.Msg.BootFileName != "" || len(keys.list()) != 0 {
			t.Fatalf("proxy offer to iPXE: %+v, keys %v: want no boot file and no key", offer, keys.list())
		}
		peer := netip.MustParseAddrPort("10.0.0.50:68")
		ack := e.h.Handle(ctx, msg(dhcpv4.MessageTypeRequest, macKnown, ipxe(iana.EFI_X86_64), ciaddr("10.0.0.77")), Meta{Peer: peer, Listener: ListenerPXE})
		if got := bootFile(ack); got != script(macKnown)+"&key=KEY1" {
			t.Fatalf("PXE port answer: boot file %q", got)
		}
		if ack.Dest != peer || ack.HWDest.String() != macKnown {
			t.Errorf("answer to %v / %v, want %v / %s", ack.Dest, ack.HWDest, peer, macKnown)
		}
		// Bound to the address the request came from, not the ciaddr it claims.
		if got := keys.list(); got[0] != macKnown+"@10.0.0.50" {
			t.Errorf("key bound to %v, want 10.0.0.50", got)
		}
	})
}

// TestDiscoveryLimits: unknown MACs are served at the discovery rate and enrolled up to
// the cap; the refusals are counted and a known host is served all along.
func TestDiscoveryLimits(t *testing.T) {
	e := newEnv(t, openBolt, func(c *Config) {
		c.UnknownHosts = UnknownDiscover
		c.Discovery = Discovery{MaxHosts: 3, Rate: 1, Burst: 2}
	})
	discover := func(i int) *Reply {
		return e.send(msg(dhcpv4.MessageTypeDiscover, fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), pxe(iana.INTEL_X86PC)))
	}
	served := 0
	for i := range 10 {
		if discover(i) != nil {
			served++
		}
	}
	if served != 2 {
		t.Errorf("%d of 10 unknown MACs served at once, want the burst of 2", served)
	}
	if r := e.send(msg(dhcpv4.MessageTypeDiscover, macReserved, pxe(iana.INTEL_X86PC))); r == nil {
		t.Fatal("a known host was refused during the flood")
	}
	for i := 10; i < 20; i++ {
		e.clock.Advance(2 * time.Second)
		discover(i)
	}
	if n := discovered(t, e); n != 3 {
		t.Errorf("%d discovered hosts, want the cap of 3", n)
	}
	if got := counterValue(e.h.m.discoveryRefused.WithLabelValues("rate")); got != 8 {
		t.Errorf("refused for rate: %v, want 8", got)
	}
	if got := counterValue(e.h.m.discoveryRefused.WithLabelValues("cap")); got < 1 {
		t.Errorf("refused for the cap: %v, want some", got)
	}
}

// TestEventBudgetPerMAC: packets naming one MAC (anyone can write any MAC into a
// packet) write a bounded number of events to its host's timeline; the rest are counted.
func TestEventBudgetPerMAC(t *testing.T) {
	e := newEnv(t, openBolt, nil)
	for range 100 {
		e.send(msg(dhcpv4.MessageTypeDiscover, macReserved, pxe(iana.INTEL_X86PC)))
	}
	evs, err := e.store.Events(context.Background(), "node1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != eventBurst {
		t.Errorf("%d events from 100 DISCOVERs, want the burst of %d", len(evs), eventBurst)
	}
	if got := counterValue(e.h.m.eventsSuppressed); got != 200-eventBurst {
		t.Errorf("suppressed %v, want %d", got, 200-eventBurst)
	}
}

// TestDiscoveryCapHoldsUnderConcurrency: packets are handled concurrently, and a burst
// of new MACs arriving together must not enrol past the cap.
func TestDiscoveryCapHoldsUnderConcurrency(t *testing.T) {
	e := newEnv(t, openBolt, func(c *Config) {
		c.UnknownHosts = UnknownDiscover
		c.Discovery = Discovery{MaxHosts: 5, Rate: 1000, Burst: 1000}
	})
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			e.h.HandlePacket(context.Background(), msg(dhcpv4.MessageTypeDiscover, fmt.Sprintf("02:00:00:00:01:%02x", i), pxe(iana.INTEL_X86PC)).ToBytes(), Meta{})
		})
	}
	wg.Wait()
	if n := discovered(t, e); n != 5 {
		t.Errorf("%d discovered hosts after a concurrent burst, want the cap of 5", n)
	}
}

// discovered counts the hosts the server enrolled as discovered.
func discovered(t *testing.T, e *env) int {
	t.Helper()
	hosts, err := e.store.ListHosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, h := range hosts {
		if h.State == inventory.StateDiscovered {
			n++
		}
	}
	return n
}
