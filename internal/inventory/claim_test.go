package inventory

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func openClaimStore(t testing.TB) *BoltStore {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "inventory.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// addHosts enrolls n hosts named PREFIX-NNN with the given labels and state.
func addHosts(t testing.TB, s *BoltStore, prefix string, n int, state State, labels map[string]string) []string {
	t.Helper()
	hosts := make([]Host, n)
	ids := make([]string, n)
	for i := range hosts {
		ids[i] = fmt.Sprintf("%s-%03d", prefix, i)
		hosts[i] = Host{ID: ids[i], MACs: []string{fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", prefix[0], prefix[len(prefix)-1], i/256, i%256)}, State: state, Labels: labels}
	}
	if _, err := s.CreateHosts(context.Background(), hosts...); err != nil {
		t.Fatal(err)
	}
	return ids
}

func labelMatch(k, v string) func(*Host) bool {
	return func(h *Host) bool { return h.Labels[k] == v }
}

func TestClaimHost(t *testing.T) {
	ctx := context.Background()
	s := openClaimStore(t)
	addHosts(t, s, "cp", 2, StateAvailable, map[string]string{"role": "control-plane"})
	addHosts(t, s, "wk", 3, StateAvailable, map[string]string{"role": "worker"})
	addHosts(t, s, "new", 1, StateInspecting, map[string]string{"role": "worker"})

	t.Run("FirstMatchingByID", func(t *testing.T) {
		h, err := s.ClaimHost(ctx, ClaimRequest{Owner: "ns/m1", Match: labelMatch("role", "worker")})
		if err != nil {
			t.Fatal(err)
		}
		if h.ID != "wk-000" || h.Claim.Owner != "ns/m1" || h.Claim.ClaimedAt.IsZero() {
			t.Fatalf("claimed %s by %+v, want wk-000 by ns/m1", h.ID, h.Claim)
		}
		stored, err := s.GetHost(ctx, "wk-000")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(h, stored); d != "" {
			t.Fatalf("returned host differs from stored (-ret +stored):\n%s", d)
		}
	})
	t.Run("SameOwnerGetsSameHost", func(t *testing.T) {
		h, err := s.ClaimHost(ctx, ClaimRequest{Owner: "ns/m1", Match: labelMatch("role", "worker")})
		if err != nil || h.ID != "wk-000" {
			t.Fatalf("second claim = %s, %v; want wk-000 again", h.ID, err)
		}
		// Even a request that would no longer match returns what the owner holds: a
		// machine whose selector changed keeps its host until it is deleted.
		h, err = s.ClaimHost(ctx, ClaimRequest{Owner: "ns/m1", Match: labelMatch("role", "nothing")})
		if err != nil || h.ID != "wk-000" {
			t.Fatalf("claim with another selector = %s, %v; want wk-000", h.ID, err)
		}
		byOwner, err := s.HostByOwner(ctx, "ns/m1")
		if err != nil || byOwner.ID != "wk-000" {
			t.Fatalf("HostByOwner = %s, %v", byOwner.ID, err)
		}
	})
	t.Run("ExhaustedSaysWhy", func(t *testing.T) {
		for _, o := range []string{"ns/m2", "ns/m3"} {
			if _, err := s.ClaimHost(ctx, ClaimRequest{Owner: o, Match: labelMatch("role", "worker")}); err != nil {
				t.Fatal(err)
			}
		}
		_, err := s.ClaimHost(ctx, ClaimRequest{Owner: "ns/m4", Match: labelMatch("role", "worker")})
		var nh *NoHostError
		if !errors.As(err, &nh) || !errors.Is(err, ErrNoHost) {
			t.Fatalf("err = %v, want a NoHostError", err)
		}
		want := &NoHostError{Total: 6, Matching: 4, Claimed: 3, ByState: map[State]int{StateInspecting: 1}}
		if d := cmp.Diff(want, nh); d != "" {
			t.Fatalf("NoHostError (-want +got):\n%s", d)
		}
		if msg := err.Error(); !strings.Contains(msg, "3 claimed, 1 inspecting") {
			t.Fatalf("message %q does not say what the matching hosts are doing", msg)
		}
		_, err = s.ClaimHost(ctx, ClaimRequest{Owner: "ns/m4", Match: labelMatch("role", "gpu")})
		if !errors.Is(err, ErrNoHost) || !strings.Contains(err.Error(), "none of the 6 hosts") {
			t.Fatalf("no match at all: %v", err)
		}
	})
	t.Run("Release", func(t *testing.T) {
		if _, err := s.ReleaseHost(ctx, "wk-001", "ns/other"); !errors.Is(err, ErrConflict) {
			t.Fatalf("release by a non-owner: %v, want ErrConflict", err)
		}
		h, err := s.ReleaseHost(ctx, "wk-001", "ns/m2")
		if err != nil || !h.Claim.IsZero() {
			t.Fatalf("release = %+v, %v", h.Claim, err)
		}
		if _, err := s.ReleaseHost(ctx, "wk-001", "ns/m2"); err != nil {
			t.Fatalf("releasing twice: %v, want no error", err)
		}
		if _, err := s.HostByOwner(ctx, "ns/m2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("HostByOwner after release: %v, want ErrNotFound", err)
		}
		h, err = s.ClaimHost(ctx, ClaimRequest{Owner: "ns/m4", Match: labelMatch("role", "worker")})
		if err != nil || h.ID != "wk-001" {
			t.Fatalf("claim after release = %s, %v; want wk-001", h.ID, err)
		}
	})
	t.Run("VanishedHost", func(t *testing.T) {
		if err := s.DeleteHost(ctx, "wk-002"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReleaseHost(ctx, "wk-002", "ns/m3"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("release of a deleted host: %v, want ErrNotFound", err)
		}
		if _, err := s.HostByOwner(ctx, "ns/m3"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("HostByOwner of a deleted host: %v, want ErrNotFound", err)
		}
	})
	t.Run("EmptyOwnerIsInvalid", func(t *testing.T) {
		if _, err := s.ClaimHost(ctx, ClaimRequest{}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
	})
	t.Run("ClaimSurvivesUpdateAndReopen", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "inventory.db")
		s2, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		addHosts(t, s2, "h", 1, StateAvailable, nil)
		if _, err := s2.ClaimHost(ctx, ClaimRequest{Owner: "ns/x"}); err != nil {
			t.Fatal(err)
		}
		// Another part of rackboot (the provisioner) updating the host keeps the claim.
		if _, err := s2.UpdateHost(ctx, "h-000", func(h *Host) error { h.State = StateProvisioning; return nil }); err != nil {
			t.Fatal(err)
		}
		s2.Close()
		s3, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s3.Close()
		h, err := s3.ClaimHost(ctx, ClaimRequest{Owner: "ns/x"})
		if err != nil || h.ID != "h-000" || h.State != StateProvisioning {
			t.Fatalf("claim after reopen = %s %s, %v", h.ID, h.State, err)
		}
	})
}

// TestClaimHostConcurrent: more claimers than hosts, all at once. Every host goes to
// exactly one claimer and the rest are told there is none.
func TestClaimHostConcurrent(t *testing.T) {
	ctx := context.Background()
	s := openClaimStore(t)
	addHosts(t, s, "h", 40, StateAvailable, map[string]string{"pool": "a"})
	addHosts(t, s, "other", 10, StateAvailable, map[string]string{"pool": "b"})

	const claimers = 50
	got := make([]string, claimers)
	errs := make([]error, claimers)
	var wg sync.WaitGroup
	for i := range claimers {
		wg.Go(func() {
			h, err := s.ClaimHost(ctx, ClaimRequest{Owner: fmt.Sprintf("ns/m%02d", i), Match: labelMatch("pool", "a")})
			got[i], errs[i] = h.ID, err
		})
	}
	wg.Wait()
	owners := map[string]int{}
	waiting := 0
	for i := range claimers {
		switch {
		case errors.Is(errs[i], ErrNoHost):
			waiting++
		case errs[i] != nil:
			t.Fatalf("claimer %d: %v", i, errs[i])
		default:
			if prev, dup := owners[got[i]]; dup {
				t.Fatalf("host %s claimed by %d and %d", got[i], prev, i)
			}
			if !strings.HasPrefix(got[i], "h-") {
				t.Fatalf("claimer %d got %s, outside its selector", i, got[i])
			}
			owners[got[i]] = i
		}
	}
	if len(owners) != 40 || waiting != 10 {
		t.Fatalf("%d claimed, %d waiting; want 40 and 10", len(owners), waiting)
	}
	hosts, err := s.ListHosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if i, ok := owners[h.ID]; ok && h.Claim.Owner != fmt.Sprintf("ns/m%02d", i) {
			t.Fatalf("host %s stored owner %q, claimer %d was told it won", h.ID, h.Claim.Owner, i)
		}
	}
}

// BenchmarkClaimContention measures claims per second on a real bbolt file when N
// claimers race for M hosts. One iteration is one round: M free hosts, N goroutines
// claiming until none is left; the releases between rounds are not timed. sync=false
// turns off bbolt's fsync to show what the claim itself costs beside the disk.
func BenchmarkClaimContention(b *testing.B) {
	for _, tc := range []struct {
		claimers, hosts int
		sync            bool
	}{{1, 40, true}, {50, 40, true}, {200, 40, true}, {50, 500, true}, {50, 40, false}, {50, 500, false}} {
		b.Run(fmt.Sprintf("claimers=%d/hosts=%d/sync=%v", tc.claimers, tc.hosts, tc.sync), func(b *testing.B) {
			ctx := context.Background()
			s := openClaimStore(b)
			s.db.NoSync = !tc.sync
			addHosts(b, s, "h", tc.hosts, StateAvailable, map[string]string{"pool": "a"})
			match := labelMatch("pool", "a")
			b.ReportAllocs()
			b.ResetTimer()
			var claimed int
			var elapsed time.Duration
			for round := 0; b.Loop(); round++ {
				start := time.Now()
				var (
					wg  sync.WaitGroup
					mu  sync.Mutex
					won []Host
				)
				for g := range tc.claimers {
					wg.Go(func() {
						for n := 0; ; n++ {
							h, err := s.ClaimHost(ctx, ClaimRequest{Owner: fmt.Sprintf("r%d/g%d-%d", round, g, n), Match: match})
							if errors.Is(err, ErrNoHost) {
								return
							}
							if err != nil {
								b.Error(err)
								return
							}
							mu.Lock()
							won = append(won, h)
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				elapsed += time.Since(start)
				if len(won) != tc.hosts {
					b.Fatalf("round %d: %d claims, want %d", round, len(won), tc.hosts)
				}
				claimed += len(won)
				b.StopTimer()
				for _, h := range won {
					if _, err := s.ReleaseHost(ctx, h.ID, h.Claim.Owner); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(claimed)/elapsed.Seconds(), "claims/s")
		})
	}
}
