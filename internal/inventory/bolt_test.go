package inventory

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

func TestOpenLockedFileSaysWhy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(path, Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "another rackboot") {
		t.Fatalf("error does not say what to check: %v", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "inventory.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateHosts(ctx, Host{ID: "a", MACs: []string{"52:54:00:00:00:0a"}, IP: "10.0.0.10"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutLease(ctx, Lease{MAC: "52:54:00:00:00:0a", IP: "10.0.0.10", State: LeaseBound, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendEvent(ctx, "a", Event{Type: "dhcp.ack"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if h, err := s.HostByMAC(ctx, "52:54:00:00:00:0a"); err != nil || h.IP != "10.0.0.10" {
		t.Fatalf("host after reopen: %+v %v", h, err)
	}
	if l, err := s.GetLease(ctx, "52:54:00:00:00:0a"); err != nil || l.IP != "10.0.0.10" {
		t.Fatalf("lease after reopen: %+v %v", l, err)
	}
	ev, err := s.Events(ctx, "a", 0)
	if err != nil || len(ev) != 1 {
		t.Fatalf("events after reopen: %v %v", ev, err)
	}
	// Sequence numbers continue rather than restart.
	e, err := s.AppendEvent(ctx, "a", Event{Type: "x"})
	if err != nil || e.Seq != 2 {
		t.Fatalf("next event seq = %d, %v", e.Seq, err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keySchema, []byte("99"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), "newer rackboot") {
		t.Fatalf("open of a schema-99 file: %v", err)
	}
}

func TestRedactedDropsPassword(t *testing.T) {
	h := Host{ID: "a", BMC: &BMC{URL: "ipmi://admin@10.0.0.2", Password: "hunter2"}}
	r := h.Redacted()
	if r.BMC.Password != "" {
		t.Fatal("password kept")
	}
	if h.BMC.Password != "hunter2" {
		t.Fatal("Redacted changed the original")
	}
}

// fullHost creates node-1 with everything DeleteHost must remove: index entries, a
// sealed BMC password, a timeline, agent and metadata tokens and sealed user-data.
func fullHost(t *testing.T) *BoltStore {
	t.Helper()
	ctx := context.Background()
	s, _ := openProvStore(t) // node-1, 52:54:00:00:00:01
	if _, err := s.UpdateHost(ctx, "node-1", func(h *Host) error {
		h.IP = "10.0.0.21"
		h.BMC = &BMC{URL: "ipmi://admin@10.0.1.21", Password: "hunter2"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.TransitionHost(ctx, "node-1", func(h *Host, c *HostChange) error {
		h.State = StateProvisioning
		h.Operation = &Operation{State: StateProvisioning, Phase: PhaseAgent, Attempt: 1, TokenHash: "agent-hash"}
		h.Provision = &Provision{ID: "p1", Image: "img", MetadataTokenHash: "meta-hash"}
		c.Data = &ProvisionData{ProvisionID: "p1", Kind: ConfigCloudConfig, UserData: []byte("#cloud-config\n")}
		c.Events = append(c.Events, Event{Type: "state.changed"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tokenEntries lists the token index as hash=hostID.
func tokenEntries(t *testing.T, s *BoltStore) []string {
	t.Helper()
	var out []string
	if err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out = append(out, string(k)+"="+string(v))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDeleteHostDropsEveryTokenEntry(t *testing.T) {
	ctx := context.Background()
	s := fullHost(t)
	if _, err := s.CreateHosts(ctx, Host{ID: "node-2", MACs: []string{"52:54:00:00:00:02"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TransitionHost(ctx, "node-2", func(h *Host, c *HostChange) error {
		h.Operation = &Operation{State: StateInspecting, TokenHash: "other-hash"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// An entry naming node-1 that it no longer holds, as an older build could leave.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).Put([]byte("stale-hash"), []byte("node-1"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteHost(ctx, "node-1"); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"other-hash=node-2"}, tokenEntries(t, s)); d != "" {
		t.Errorf("token index after delete (-want +got):\n%s", d)
	}
	if h, err := s.HostByTokenHash(ctx, "other-hash"); err != nil || h.ID != "node-2" {
		t.Errorf("another host's token: %s, %v", h.ID, err)
	}
}

// TestDeleteHostIsOneTransaction makes the delete fail at its last step (the sealed
// user-data is made a bucket, which bbolt refuses to delete as a value) and checks that
// nothing before it took effect: a crash mid-delete can only leave the whole host.
func TestDeleteHostIsOneTransaction(t *testing.T) {
	ctx := context.Background()
	s := fullHost(t)
	sabotage := func(on bool) {
		t.Helper()
		if err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketProvData)
			if on {
				if err := b.Delete([]byte("node-1")); err != nil {
					return err
				}
				_, err := b.CreateBucket([]byte("node-1"))
				return err
			}
			return b.DeleteBucket([]byte("node-1"))
		}); err != nil {
			t.Fatal(err)
		}
	}
	sabotage(true)
	if err := s.DeleteHost(ctx, "node-1"); err == nil {
		t.Fatal("DeleteHost succeeded over a damaged provdata entry; the test cannot check atomicity")
	}
	if h, err := s.GetHost(ctx, "node-1"); err != nil || h.State != StateProvisioning {
		t.Errorf("host after a failed delete: %+v, %v", h, err)
	}
	if h, err := s.HostByMAC(ctx, "52:54:00:00:00:01"); err != nil || h.ID != "node-1" {
		t.Errorf("MAC index after a failed delete: %v", err)
	}
	if h, err := s.HostByIP(ctx, "10.0.0.21"); err != nil || h.ID != "node-1" {
		t.Errorf("IP index after a failed delete: %v", err)
	}
	if ev, err := s.Events(ctx, "node-1", 0); err != nil || len(ev) != 1 {
		t.Errorf("timeline after a failed delete: %v, %v", ev, err)
	}
	if c, err := s.BMCCredentials(ctx, "node-1"); err != nil || c.Password != "hunter2" {
		t.Errorf("BMC password after a failed delete: %+v, %v", c, err)
	}
	for _, hash := range []string{"agent-hash", "meta-hash"} {
		if h, err := s.HostByTokenHash(ctx, hash); err != nil || h.ID != "node-1" {
			t.Errorf("token %s after a failed delete: %v", hash, err)
		}
	}
	// Repaired, the same delete goes through and leaves nothing.
	sabotage(false)
	if err := s.DeleteHost(ctx, "node-1"); err != nil {
		t.Fatal(err)
	}
	if got := tokenEntries(t, s); len(got) != 0 {
		t.Errorf("token index after delete: %v", got)
	}
	if _, err := s.ProvisionData(ctx, "node-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("provisioning data after delete: %v", err)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketHosts, bucketSecrets, bucketProvData} {
			if v := tx.Bucket(b).Get([]byte("node-1")); v != nil {
				t.Errorf("bucket %s still holds node-1", b)
			}
		}
		if tx.Bucket(bucketEvents).Bucket([]byte("node-1")) != nil {
			t.Error("the timeline bucket survived")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
