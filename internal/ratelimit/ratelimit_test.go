package ratelimit

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestAllowPerSource(t *testing.T) {
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	l, err := New(Config{PerSecond: 1, Burst: 2, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	got := []bool{l.Allow(a), l.Allow(a), l.Allow(a), l.Allow(b)}
	if want := []bool{true, true, false, true}; !slices.Equal(got, want) {
		t.Fatalf("burst of 2: %v, want %v", got, want)
	}
	if d := l.RetryAfter(a); d <= 0 || d > time.Second {
		t.Errorf("RetryAfter = %v, want up to 1 s", d)
	}
	now = now.Add(time.Second)
	if !l.Allow(a) || l.Allow(a) {
		t.Error("one token a second")
	}
	// IPv4-mapped IPv6 is the IPv4 source.
	if l.Allow(netip.MustParseAddr("::ffff:10.0.0.1")) {
		t.Error("::ffff:10.0.0.1 has its own bucket")
	}
	// An IPv6 host's /64 is one source.
	v6 := []netip.Addr{netip.MustParseAddr("2001:db8:0:1::1"), netip.MustParseAddr("2001:db8:0:1::2"), netip.MustParseAddr("2001:db8:0:1:ffff::3")}
	if !l.Allow(v6[0]) || !l.Allow(v6[1]) || l.Allow(v6[2]) {
		t.Error("addresses of one /64 are not one source")
	}
}

// TestAllowKey: sources named by a MAC have buckets of their own, apart from every
// address (even one whose text is the same).
func TestAllowKey(t *testing.T) {
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	l, err := New(Config{PerSecond: 1, Burst: 2, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:00:00:01"
	got := []bool{l.AllowKey(mac), l.AllowKey(mac), l.AllowKey(mac), l.AllowKey("52:54:00:00:00:02"), l.AllowKey("10.0.0.1")}
	if want := []bool{true, true, false, true, true}; !slices.Equal(got, want) {
		t.Fatalf("burst of 2 per key: %v, want %v", got, want)
	}
	if !l.Allow(netip.MustParseAddr("10.0.0.1")) || !l.Allow(netip.MustParseAddr("10.0.0.1")) {
		t.Error("the address 10.0.0.1 shares the bucket of the key \"10.0.0.1\"")
	}
	now = now.Add(time.Second)
	if !l.AllowKey(mac) || l.AllowKey(mac) {
		t.Error("one token a second per key")
	}
}

// TestMemoryBounded: 100,000 sources leave at most MaxSources buckets.
func TestMemoryBounded(t *testing.T) {
	l, err := New(Config{PerSecond: 1, Burst: 1, MaxSources: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100000 {
		l.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := l.Sources(); n != 1000 {
		t.Fatalf("%d sources remembered, want 1000", n)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{}, {PerSecond: 1}, {PerSecond: -1, Burst: 1}, {PerSecond: 1, Burst: 1, MaxSources: -1}} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
