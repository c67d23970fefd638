package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// TestCommitWritesEachMACsLastChange drives one group commit with batches such as the
// DHCP service queues them (an offer and its ACK, an address moving between MACs, a
// lease put then deleted) and checks that the durable copy holds exactly each MAC's last
// state, with the address index agreeing, however the batch's changes interleave.
func TestCommitWritesEachMACsLastChange(t *testing.T) {
	const a, b, c = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"
	exp := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	lease := func(mac, ip string, st LeaseState) commitOp {
		return commitOp{put: &Lease{MAC: mac, IP: ip, State: st, Expires: exp}}
	}
	cases := []struct {
		name    string
		before  [][]commitOp // committed first, one batch each
		batch   []commitOp
		want    map[string]string // MAC → "IP state" in the leases bucket
		wantIPs map[string]string // IP → MAC in the address index
	}{
		{
			name:    "offer then ack",
			batch:   []commitOp{lease(a, "10.0.0.5", LeaseOffered), lease(a, "10.0.0.5", LeaseBound)},
			want:    map[string]string{a: "10.0.0.5 bound"},
			wantIPs: map[string]string{"10.0.0.5": a},
		},
		{
			name:    "a moves away and b takes a's old address, in one batch",
			before:  [][]commitOp{{lease(a, "10.0.0.5", LeaseBound)}},
			batch:   []commitOp{lease(a, "10.0.0.6", LeaseBound), lease(b, "10.0.0.5", LeaseBound)},
			want:    map[string]string{a: "10.0.0.6 bound", b: "10.0.0.5 bound"},
			wantIPs: map[string]string{"10.0.0.5": b, "10.0.0.6": a},
		},
		{
			name:    "b takes a's address first, then a moves (the order reversed)",
			before:  [][]commitOp{{lease(a, "10.0.0.5", LeaseBound)}},
			batch:   []commitOp{lease(b, "10.0.0.5", LeaseBound), lease(a, "10.0.0.6", LeaseOffered), lease(a, "10.0.0.6", LeaseBound)},
			want:    map[string]string{a: "10.0.0.6 bound", b: "10.0.0.5 bound"},
			wantIPs: map[string]string{"10.0.0.5": b, "10.0.0.6": a},
		},
		{
			name:    "an expired lease's address reused by another MAC",
			before:  [][]commitOp{{lease(a, "10.0.0.5", LeaseBound)}},
			batch:   []commitOp{lease(c, "10.0.0.5", LeaseOffered)},
			want:    map[string]string{c: "10.0.0.5 offered"},
			wantIPs: map[string]string{"10.0.0.5": c},
		},
		{
			name:    "put then delete",
			before:  [][]commitOp{{lease(b, "10.0.0.7", LeaseBound)}},
			batch:   []commitOp{lease(a, "10.0.0.5", LeaseOffered), {del: a}, lease(b, "10.0.0.8", LeaseBound)},
			want:    map[string]string{b: "10.0.0.8 bound"},
			wantIPs: map[string]string{"10.0.0.8": b},
		},
		{
			name:    "delete then put",
			before:  [][]commitOp{{lease(a, "10.0.0.5", LeaseBound)}},
			batch:   []commitOp{{del: a}, lease(a, "10.0.0.9", LeaseOffered)},
			want:    map[string]string{a: "10.0.0.9 offered"},
			wantIPs: map[string]string{"10.0.0.9": a},
		},
		{
			name:    "renewal keeps the address",
			before:  [][]commitOp{{lease(a, "10.0.0.5", LeaseBound)}},
			batch:   []commitOp{lease(a, "10.0.0.5", LeaseBound)},
			want:    map[string]string{a: "10.0.0.5 bound"},
			wantIPs: map[string]string{"10.0.0.5": a},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := commitDB(t)
			c := &committer{db: db, log: slog.New(slog.DiscardHandler)}
			for _, ops := range append(tc.before, tc.batch) {
				if err := c.commit(ops); err != nil {
					t.Fatal(err)
				}
			}
			got, gotIPs := map[string]string{}, map[string]string{}
			if err := db.View(func(tx *bolt.Tx) error {
				if err := tx.Bucket(bucketLeases).ForEach(func(k, v []byte) error {
					var l Lease
					if err := json.Unmarshal(v, &l); err != nil {
						return err
					}
					got[string(k)] = l.IP + " " + string(l.State)
					return nil
				}); err != nil {
					return err
				}
				return tx.Bucket(bucketLeaseIPs).ForEach(func(k, v []byte) error {
					gotIPs[string(k)] = string(v)
					return nil
				})
			}); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("leases (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantIPs, gotIPs); d != "" {
				t.Errorf("address index (-want +got):\n%s", d)
			}
		})
	}
}

// TestCommitLingerEndsWithEnoughWaiters: with a linger far longer than the test, a
// commit still starts once lingerWaiters callers wait (each holds a DHCP worker), and
// they all get their result; close commits a caller queued after them.
func TestCommitLingerEndsWithEnoughWaiters(t *testing.T) {
	db := commitDB(t)
	c := &committer{db: db, log: slog.New(slog.DiscardHandler), wake: make(chan struct{}, 1),
		enough: make(chan struct{}, 1), linger: time.Hour, stopped: make(chan struct{})}
	go c.loop()
	dones := make([]chan error, lingerWaiters)
	for i := range dones {
		dones[i] = make(chan error, 1)
		c.enqueue(commitOp{put: &Lease{MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff), IP: fmt.Sprintf("10.0.%d.%d", i>>8, i&0xff+1), State: LeaseBound}, done: dones[i]})
	}
	guard := time.After(time.Minute) // a liveness guard, not a speed limit
	for i, d := range dones {
		select {
		case err := <-d:
			if err != nil {
				t.Fatalf("waiter %d: %v", i, err)
			}
		case <-guard:
			t.Fatalf("waiter %d not committed: the linger did not end with %d waiters", i, lingerWaiters)
		}
	}
	if st := c.stats(); st.Commits == 0 || st.Ops != lingerWaiters {
		t.Fatalf("commit stats %+v, want the %d waiters committed", st, lingerWaiters)
	}
	lone := make(chan error, 1)
	c.enqueue(commitOp{put: &Lease{MAC: "52:54:00:00:ff:ff", IP: "10.0.9.9", State: LeaseBound}, done: lone})
	c.close() // ends the hour-long linger the lone waiter started
	select {
	case err := <-lone:
		if err != nil {
			t.Fatalf("lone waiter at close: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("close did not commit the lone waiter: it did not end the linger")
	}
}

// commitDB is a bbolt file with the inventory's buckets, closed when the test ends.
func commitDB(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestLeaseIP: the address of a stored lease, read from the front of the records this
// package writes and through encoding/json from anything else.
func TestLeaseIP(t *testing.T) {
	written, err := json.Marshal(Lease{MAC: "52:54:00:00:00:01", IP: "10.0.0.7", Hostname: `a"b`, State: LeaseBound})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := leadingIP(written); !ok {
		t.Fatalf("leadingIP(%s): not read from the front: Lease's field order changed?", written)
	}
	for _, c := range []struct{ in, want string }{
		{string(written), "10.0.0.7"},
		{`{"ip":"10.0.0.8","mac":"52:54:00:00:00:01"}`, "10.0.0.8"},                // another order
		{`{"mac":"52:54:00:00:00:01", "ip":"10.0.0.9"}`, "10.0.0.9"},               // spacing
		{`{"mac":"52:54:00:00:00:01","ip":"10.0.0.\u0031"}`, "10.0.0.1"},           // an escape
		{`{"mac":"x\"","ip":"10.0.0.2"}`, "10.0.0.2"},                              // a quote in the MAC
		{`{"mac":"52:54:00:00:00:01","hostname":"n","ip":"10.0.0.3"}`, "10.0.0.3"}, // ip later
	} {
		got, err := leaseIP([]byte(c.in))
		if err != nil || got != c.want {
			t.Errorf("leaseIP(%s) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := leaseIP([]byte(`{"mac":"52:54:00:00:00:01","ip":`)); err == nil {
		t.Error("leaseIP of a cut record: no error")
	}
}

// TestBindLeaseDurableLater: with LeaseClaim.Durable, BindLease returns once the claim
// is decided, before its commit (here: held back by an hour-long linger), and the
// commit's result arrives on Durable; the lease is on disk after that. An offer's
// Durable gets nil at once.
func TestBindLeaseDurableLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inv.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.commits.linger = time.Hour // before any change: the loop reads it after a wake
	ctx := context.Background()
	durable := make(chan error, 1)
	bound := make(chan error, 1)
	go func() {
		_, err := s.BindLease(ctx, LeaseClaim{MAC: "52:54:00:00:00:01", State: LeaseBound, TTL: time.Hour,
			Want: []netip.Addr{netip.MustParseAddr("10.0.0.5")}, Durable: durable})
		bound <- err
	}()
	select {
	case err := <-bound:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // a liveness guard, not a speed limit
		t.Fatal("BindLease with Durable waited for its commit")
	}
	select {
	case err := <-durable:
		t.Fatalf("Durable told (%v) while the commit still lingers", err)
	default:
	}
	if l, err := s.GetLease(ctx, "52:54:00:00:00:01"); err != nil || l.IP != "10.0.0.5" {
		t.Fatalf("lease in memory: %+v, %v", l, err)
	}

	offered := make(chan error, 1)
	if _, err := s.BindLease(ctx, LeaseClaim{MAC: "52:54:00:00:00:02", State: LeaseOffered, TTL: time.Minute,
		Want: []netip.Addr{netip.MustParseAddr("10.0.0.6")}, Durable: offered}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-offered:
		if err != nil {
			t.Fatalf("offer's Durable: %v", err)
		}
	default:
		t.Fatal("an offer's Durable got nothing at once")
	}

	if err := s.Close(); err != nil { // ends the linger: the commit runs
		t.Fatal(err)
	}
	if err := <-durable; err != nil {
		t.Fatalf("commit result: %v", err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if l, err := s.GetLease(ctx, "52:54:00:00:00:01"); err != nil || l.IP != "10.0.0.5" || l.State != LeaseBound {
		t.Fatalf("lease after reopening: %+v, %v", l, err)
	}
}

// TestAppendEventKeepsQueuedOrder: an event queued for the group commit (RecordEvents,
// as DHCP's ACK is) and then one appended directly (AppendEvent, as the iPXE script
// fetch that follows the ACK is) come back from the timeline in that order, though
// the queued one had not been committed when the second was written.
func TestAppendEventKeepsQueuedOrder(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "inventory.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.CreateHosts(ctx, Host{ID: "h1", MACs: []string{"52:54:00:00:00:01"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := s.RecordEvents(ctx, HostEvent{HostID: "h1", Event: Event{Type: "dhcp.ack", Message: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendEvent(ctx, "h1", Event{Type: "http.script", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.Events(ctx, "h1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		if e.Type != "dhcp.ack" && e.Type != "http.script" {
			continue
		}
		got = append(got, e.Type+" "+e.Message)
	}
	var want []string
	for i := range 5 {
		want = append(want, fmt.Sprintf("dhcp.ack %d", i), fmt.Sprintf("http.script %d", i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("timeline order:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
