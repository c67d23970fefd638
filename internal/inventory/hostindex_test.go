package inventory

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// indexFromBuckets reads the macs and ips buckets, the truth the mirror follows.
func indexFromBuckets(t *testing.T, s *BoltStore) (macs, ips map[string]string) {
	t.Helper()
	macs, ips = map[string]string{}, map[string]string{}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMACs).ForEach(func(k, v []byte) error { macs[string(k)] = string(v); return nil }); err != nil {
			return err
		}
		return tx.Bucket(bucketIPs).ForEach(func(k, v []byte) error { ips[string(k)] = string(v); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return macs, ips
}

func checkMirror(t *testing.T, s *BoltStore, when string) {
	t.Helper()
	macs, ips := indexFromBuckets(t, s)
	s.hosts.mu.RLock()
	defer s.hosts.mu.RUnlock()
	if d := cmp.Diff(macs, s.hosts.macs); d != "" {
		t.Errorf("%s: MAC mirror differs from the bucket (-bucket +mirror):\n%s", when, d)
	}
	if d := cmp.Diff(ips, s.hosts.ips); d != "" {
		t.Errorf("%s: reservation mirror differs from the bucket (-bucket +mirror):\n%s", when, d)
	}
}

// TestHostIndexMirrorsBuckets: after every kind of host write — created, edited,
// refused for a conflict, deleted, reopened — the in-memory index holds exactly what
// the bbolt buckets hold, and the DHCP service's questions get the answers they would
// from bbolt.
func TestHostIndexMirrorsBuckets(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "inventory.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const ma, mb, mc = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"
	if _, err := s.CreateHosts(ctx,
		Host{ID: "a", MACs: []string{ma}, IP: "10.0.0.10"},
		Host{ID: "b", MACs: []string{mb}, IP: "10.0.0.11"}); err != nil {
		t.Fatal(err)
	}
	checkMirror(t, s, "created")
	// A batch refused half way (c's MAC is a's) changes nothing.
	if _, err := s.CreateHosts(ctx, Host{ID: "d", MACs: []string{"52:54:00:00:00:0d"}, IP: "10.0.0.13"}, Host{ID: "c", MACs: []string{ma}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("create with a's MAC: %v, want ErrConflict", err)
	}
	checkMirror(t, s, "refused create")
	if _, ok := s.hosts.byMAC("52:54:00:00:00:0d"); ok {
		t.Error("a host of a refused batch is in the mirror")
	}
	// a moves to a new MAC and address; b's edit that would take a's old address after
	// it is free succeeds, one that takes a's new one is refused.
	if _, err := s.UpdateHost(ctx, "a", func(h *Host) error { h.MACs, h.IP = []string{mc}, "10.0.0.12"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateHost(ctx, "b", func(h *Host) error { h.IP = "10.0.0.12"; return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("b taking a's address: %v, want ErrConflict", err)
	}
	if _, err := s.UpdateHost(ctx, "b", func(h *Host) error { h.IP = "10.0.0.10"; return nil }); err != nil {
		t.Fatal(err)
	}
	checkMirror(t, s, "edited")
	if _, err := s.HostByMAC(ctx, ma); !errors.Is(err, ErrNotFound) {
		t.Errorf("a's old MAC: %v, want ErrNotFound", err)
	}
	if h, err := s.HostByMAC(ctx, mc); err != nil || h.ID != "a" {
		t.Errorf("a's new MAC: %+v %v, want host a", h, err)
	}
	for _, c := range []struct {
		ip, mac string
		want    bool
	}{
		{"10.0.0.12", mc, false}, // a's own
		{"10.0.0.12", mb, true},  // a's, asked for by b
		{"10.0.0.12", ma, true},  // a's, asked for by a MAC a no longer has
		{"10.0.0.10", mb, false}, // b's now
		{"10.0.0.11", ma, false}, // free since b moved
	} {
		if got := s.hosts.reservedForOther(netip.MustParseAddr(c.ip), c.mac); got != c.want {
			t.Errorf("reservedForOther(%s, %s) = %v, want %v", c.ip, c.mac, got, c.want)
		}
	}
	if err := s.DeleteHost(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	checkMirror(t, s, "deleted")
	s.Close()
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkMirror(t, s, "reopened")
	if h, err := s.HostByMAC(ctx, mc); err != nil || h.ID != "a" {
		t.Errorf("after reopen, a's MAC: %+v %v", h, err)
	}
}

// TestHostIndexConcurrentWrites: edits racing each other for the same MACs and
// addresses leave the mirror equal to the buckets (run with -race).
func TestHostIndexConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "inventory.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const hosts = 4
	for i := range hosts {
		if _, err := s.CreateHosts(ctx, Host{ID: fmt.Sprintf("h%d", i), MACs: []string{fmt.Sprintf("52:54:00:00:01:%02x", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range hosts {
		wg.Go(func() {
			for j := range 20 {
				// Each host tries to take one of three shared addresses and one of three
				// shared extra MACs: most edits conflict, some win.
				_, _ = s.UpdateHost(ctx, fmt.Sprintf("h%d", i), func(h *Host) error {
					h.IP = fmt.Sprintf("10.0.1.%d", (i+j)%3+1)
					h.MACs = []string{fmt.Sprintf("52:54:00:00:01:%02x", i), fmt.Sprintf("52:54:00:00:02:%02x", (i*j)%3)}
					return nil
				})
				_, _ = s.HostByMAC(ctx, fmt.Sprintf("52:54:00:00:02:%02x", j%3))
			}
		})
	}
	wg.Wait()
	checkMirror(t, s, "after racing edits")
}
