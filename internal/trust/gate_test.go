package trust

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/inventory"
)

type fakeStore struct {
	mu     sync.Mutex
	hosts  []inventory.Host
	events map[string][]inventory.Event
}

func (s *fakeStore) HostByIP(_ context.Context, ip string) (inventory.Host, error) {
	for _, h := range s.hosts {
		if h.IP == ip {
			return h, nil
		}
	}
	return inventory.Host{}, inventory.ErrNotFound
}

func (s *fakeStore) ListHosts(context.Context) ([]inventory.Host, error) { return s.hosts, nil }

func (s *fakeStore) AppendEvent(_ context.Context, id string, e inventory.Event) (inventory.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.events == nil {
		s.events = map[string][]inventory.Event{}
	}
	s.events[id] = append(s.events[id], e)
	return e, nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newGate(t *testing.T, mode Mode, st *fakeStore, c *clock) *Gate {
	t.Helper()
	g, err := New(Config{Mode: mode, Store: st, Now: c.now, MaxKeys: 8})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

var (
	mac      = "52:54:00:12:34:56"
	hostAddr = netip.MustParseAddr("10.0.0.5")
	other    = netip.MustParseAddr("10.0.0.9")
)

func TestScriptBinding(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)}
	st := &fakeStore{}
	reserved := &inventory.Host{ID: "r", MACs: []string{mac}, IP: hostAddr.String()}
	free := &inventory.Host{ID: "f", MACs: []string{mac}}

	g := newGate(t, ModeServer, st, c)
	key := g.IssueKey(mac, hostAddr)
	if again := g.IssueKey(mac, hostAddr); again != key {
		t.Errorf("a retransmitted reply got another key")
	}
	wrongAddrKey := g.IssueKey(mac, other)
	for _, tc := range []struct {
		name   string
		host   *inventory.Host
		key    string
		src    netip.Addr
		reason string // "" when allowed
	}{
		{"key from its address", free, key, hostAddr, ""},
		{"reserved host, key bound to its reservation", reserved, key, hostAddr, ""},
		{"no key", free, "", hostAddr, ReasonNoKey},
		{"made-up key", free, "AAAAAAAAAAAAAAAAAAAAAAAA", hostAddr, ReasonBadKey},
		{"key from another address", free, key, other, ReasonWrongAddress},
		{"reserved host, key bound elsewhere", reserved, wrongAddrKey, other, ReasonNotReserved},
		{"invalid source", free, key, netip.Addr{}, ReasonWrongAddress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := g.ScriptBinding(tc.host, mac, tc.key, tc.src)
			if tc.reason == "" {
				if err != nil || got != tc.src {
					t.Errorf("= %v, %v; want bound to %v", got, err, tc.src)
				}
				return
			}
			if ReasonOf(err) != tc.reason {
				t.Errorf("err %v (reason %s), want %s", err, ReasonOf(err), tc.reason)
			}
		})
	}
	t.Run("key expires", func(t *testing.T) {
		c.t = c.t.Add(DefaultKeyTTL + time.Second)
		if _, err := g.ScriptBinding(free, mac, key, hostAddr); ReasonOf(err) != ReasonBadKey {
			t.Errorf("expired key: %v", err)
		}
	})

	off := newGate(t, ModeOff, st, c)
	if got, err := off.ScriptBinding(reserved, mac, "", hostAddr); err != nil || got != hostAddr {
		t.Errorf("off mode, reservation: %v %v", got, err)
	}
	if _, err := off.ScriptBinding(reserved, mac, "", other); ReasonOf(err) != ReasonWrongAddress {
		t.Errorf("off mode, other address: %v", err)
	}
	if _, err := off.ScriptBinding(free, mac, "", hostAddr); ReasonOf(err) != ReasonNotReserved {
		t.Errorf("off mode, no reservation: %v", err)
	}
}

func TestKeyCap(t *testing.T) {
	c := &clock{t: time.Now()}
	g := newGate(t, ModeProxy, &fakeStore{}, c)
	first := g.IssueKey("02:00:00:00:00:00", hostAddr)
	for i := 1; i <= 20; i++ {
		g.IssueKey("02:00:00:00:00:"+string(rune('a'+i%26))+"0", hostAddr)
	}
	if g.nkeys > 8 {
		t.Errorf("%d keys held, want at most 8", g.nkeys)
	}
	if _, ok := g.keyAddr("02:00:00:00:00:00", first); ok {
		t.Error("the oldest key survived the cap")
	}
}

func TestBound(t *testing.T) {
	g := newGate(t, ModeProxy, &fakeStore{}, &clock{t: time.Now()})
	reserved := &inventory.Host{ID: "r", IP: hostAddr.String()}
	free := &inventory.Host{ID: "f"}
	for _, tc := range []struct {
		name  string
		host  *inventory.Host
		bound string
		src   netip.Addr
		ok    bool
	}{
		{"bound address", free, hostAddr.String(), hostAddr, true},
		{"other address", free, hostAddr.String(), other, false},
		{"no binding", free, "", hostAddr, false},
		{"reservation required", reserved, other.String(), other, false},
		{"reservation", reserved, hostAddr.String(), hostAddr, true},
	} {
		if err := g.Bound(tc.host, tc.bound, tc.src); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestRejectBudget: a stranger's refusals are all counted, but only its event budget
// reaches the timeline.
func TestRejectBudget(t *testing.T) {
	st := &fakeStore{}
	c := &clock{t: time.Now()}
	g := newGate(t, ModeServer, st, c)
	for range 100 {
		g.Reject("victim", "script", "http.script.rejected", other, &Refusal{Reason: ReasonNoKey, Msg: "no key"}, nil)
	}
	g.Reject("victim", "script", "http.script.rejected", hostAddr, errors.New("x"), nil)
	if got := g.RejectedCount("script"); got != 101 {
		t.Errorf("counted %v, want 101", got)
	}
	if got := len(st.events["victim"]); got != DefaultRejectBurst+1 {
		t.Errorf("%d events written, want the burst %d plus one from another source", got, DefaultRejectBurst)
	}
	c.t = c.t.Add(5 * time.Second)
	g.Reject("victim", "script", "http.script.rejected", other, errors.New("x"), nil)
	if got := len(st.events["victim"]); got != DefaultRejectBurst+2 {
		t.Errorf("after 5 s: %d events, want one more", got)
	}
}

// TestWhoForTimeline: answers, a stranger's too, are remembered for a second per
// address, then asked again; Who itself never remembers.
func TestWhoForTimeline(t *testing.T) {
	st := &fakeStore{hosts: []inventory.Host{{ID: "node-1", IP: hostAddr.String()}}}
	c := &clock{t: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)}
	g := newGate(t, ModeServer, st, c)
	ctx := context.Background()
	if id, ok := g.WhoForTimeline(ctx, hostAddr); !ok || id != "node-1" {
		t.Fatalf("host's address: %q %v", id, ok)
	}
	if id, ok := g.WhoForTimeline(ctx, other); ok || id != "" {
		t.Fatalf("stranger: %q %v", id, ok)
	}
	// The address changes hands: within the second the old answers stand...
	st.hosts = []inventory.Host{{ID: "node-2", IP: other.String()}}
	if id, _ := g.WhoForTimeline(ctx, hostAddr); id != "node-1" {
		t.Errorf("within a second: %q, want the remembered node-1", id)
	}
	if _, ok := g.Who(ctx, hostAddr); ok {
		t.Error("Who remembered an answer")
	}
	// ...and after it the inventory is asked again.
	c.t = c.t.Add(seenFor)
	if id, ok := g.WhoForTimeline(ctx, hostAddr); ok || id != "" {
		t.Errorf("after a second: %q %v, want nobody", id, ok)
	}
	if id, ok := g.WhoForTimeline(ctx, other); !ok || id != "node-2" {
		t.Errorf("after a second: %q %v, want node-2", id, ok)
	}
}
