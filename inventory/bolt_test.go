package inventory

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
