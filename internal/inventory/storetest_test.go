package inventory

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fakeClock is a settable clock shared by a store under test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// provisioningStore is what a store that keeps the provisioning records (provision.go)
// offers beyond Store; the contract checks those records too where it can.
type provisioningStore interface {
	TransitionHost(ctx context.Context, id string, fn func(h *Host, c *HostChange) error) (Host, []Event, error)
	ProvisionData(ctx context.Context, hostID string) (ProvisionData, error)
	HostByTokenHash(ctx context.Context, hash string) (Host, error)
}

// storeFactory opens a fresh, empty store driven by clock.
type storeFactory func(t *testing.T, clock Clock) Store

// runContract is the one test suite every Store implementation must pass.
func runContract(t *testing.T, open storeFactory) {
	ctx := context.Background()
	newStore := func(t *testing.T) (Store, *fakeClock) {
		c := &fakeClock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
		return open(t, c.Now), c
	}
	ignoreTimes := cmpopts.IgnoreFields(Host{}, "CreatedAt", "UpdatedAt")

	t.Run("CreateGetNormalises", func(t *testing.T) {
		s, _ := newStore(t)
		got, err := s.CreateHosts(ctx, Host{MACs: []string{"52-54-00-AA-BB-01"}, Hostname: "node1.rack1", IP: "10.0.0.11", Labels: map[string]string{"role": "worker"}})
		if err != nil {
			t.Fatal(err)
		}
		want := Host{ID: "node1", MACs: []string{"52:54:00:aa:bb:01"}, Hostname: "node1.rack1", IP: "10.0.0.11", Labels: map[string]string{"role": "worker"}, State: StateEnrolled, Revision: 1}
		if d := cmp.Diff([]Host{want}, got, ignoreTimes); d != "" {
			t.Fatalf("created (-want +got):\n%s", d)
		}
		h, err := s.GetHost(ctx, "node1")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, h, ignoreTimes); d != "" {
			t.Fatalf("get (-want +got):\n%s", d)
		}
		byMAC, err := s.HostByMAC(ctx, "52:54:00:aa:bb:01")
		if err != nil || byMAC.ID != "node1" {
			t.Fatalf("HostByMAC = %v, %v", byMAC.ID, err)
		}
		byIP, err := s.HostByIP(ctx, "10.0.0.11")
		if err != nil || byIP.ID != "node1" {
			t.Fatalf("HostByIP = %v, %v", byIP.ID, err)
		}
	})

	t.Run("DefaultIDFromMAC", func(t *testing.T) {
		s, _ := newStore(t)
		got, err := s.CreateHosts(ctx, Host{MACs: []string{"525400aabb02"}})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].ID != "mac-525400aabb02" {
			t.Fatalf("ID = %q", got[0].ID)
		}
	})

	t.Run("InvalidWritesNothing", func(t *testing.T) {
		cases := []struct {
			name string
			h    Host
		}{
			{"bad MAC", Host{MACs: []string{"52:54:00:zz:00:01"}}},
			{"no MAC", Host{ID: "x"}},
			{"bad IP", Host{MACs: []string{"52:54:00:00:00:01"}, IP: "10.0.0.300"}},
			{"IPv6", Host{MACs: []string{"52:54:00:00:00:01"}, IP: "fd00::1"}},
			{"bad ID", Host{ID: "Node_1", MACs: []string{"52:54:00:00:00:01"}}},
			{"bad label", Host{MACs: []string{"52:54:00:00:00:01"}, Labels: map[string]string{"a b": "c"}}},
			{"dup MAC in host", Host{MACs: []string{"52:54:00:00:00:01", "52-54-00-00-00-01"}}},
			{"bad state", Host{MACs: []string{"52:54:00:00:00:01"}, State: "sleeping"}},
			{"profile without kernel", Host{MACs: []string{"52:54:00:00:00:01"}, Boot: &BootProfile{Cmdline: "x"}}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				s, _ := newStore(t)
				_, err := s.CreateHosts(ctx, c.h)
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				if hs, _ := s.ListHosts(ctx); len(hs) != 0 {
					t.Fatalf("wrote %d hosts", len(hs))
				}
			})
		}
	})

	t.Run("BatchIsAllOrNothing", func(t *testing.T) {
		s, _ := newStore(t)
		if _, err := s.CreateHosts(ctx, Host{ID: "a", MACs: []string{"52:54:00:00:00:0a"}, IP: "10.0.0.10"}); err != nil {
			t.Fatal(err)
		}
		cases := map[string][]Host{
			"dup MAC with store": {{ID: "b", MACs: []string{"52:54:00:00:00:0b"}}, {ID: "c", MACs: []string{"52:54:00:00:00:0a"}}},
			"dup IP with store":  {{ID: "b", MACs: []string{"52:54:00:00:00:0b"}}, {ID: "c", MACs: []string{"52:54:00:00:00:0c"}, IP: "10.0.0.10"}},
			"dup ID with store":  {{ID: "b", MACs: []string{"52:54:00:00:00:0b"}}, {ID: "a", MACs: []string{"52:54:00:00:00:0c"}}},
			"dup MAC in batch":   {{ID: "b", MACs: []string{"52:54:00:00:00:0b"}}, {ID: "c", MACs: []string{"52:54:00:00:00:0b"}}},
			"dup IP in batch":    {{ID: "b", MACs: []string{"52:54:00:00:00:0b"}, IP: "10.0.0.20"}, {ID: "c", MACs: []string{"52:54:00:00:00:0c"}, IP: "10.0.0.20"}},
			"invalid second":     {{ID: "b", MACs: []string{"52:54:00:00:00:0b"}}, {ID: "c", MACs: []string{"nope"}}},
		}
		for name, batch := range cases {
			t.Run(name, func(t *testing.T) {
				if _, err := s.CreateHosts(ctx, batch...); err == nil {
					t.Fatal("batch accepted")
				}
				hs, err := s.ListHosts(ctx)
				if err != nil || len(hs) != 1 || hs[0].ID != "a" {
					t.Fatalf("after failed batch: %d hosts, %v", len(hs), err)
				}
				if _, err := s.HostByMAC(ctx, "52:54:00:00:00:0b"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("index of rolled-back host remains: %v", err)
				}
			})
		}
	})

	t.Run("UpdateReindexes", func(t *testing.T) {
		s, _ := newStore(t)
		if _, err := s.CreateHosts(ctx,
			Host{ID: "a", MACs: []string{"52:54:00:00:00:0a"}, IP: "10.0.0.10"},
			Host{ID: "b", MACs: []string{"52:54:00:00:00:0b"}, IP: "10.0.0.11"}); err != nil {
			t.Fatal(err)
		}
		h, err := s.UpdateHost(ctx, "a", func(h *Host) error {
			h.MACs = []string{"52:54:00:00:00:aa"}
			h.IP = "10.0.0.12"
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if h.Revision != 2 {
			t.Fatalf("revision = %d, want 2", h.Revision)
		}
		if _, err := s.HostByMAC(ctx, "52:54:00:00:00:0a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old MAC still indexed: %v", err)
		}
		if _, err := s.HostByIP(ctx, "10.0.0.10"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old IP still indexed: %v", err)
		}
		if got, _ := s.HostByIP(ctx, "10.0.0.12"); got.ID != "a" {
			t.Fatalf("new IP -> %q", got.ID)
		}
		_, err = s.UpdateHost(ctx, "a", func(h *Host) error { h.IP = "10.0.0.11"; return nil })
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("taking b's IP: %v, want ErrConflict", err)
		}
		if got, _ := s.GetHost(ctx, "a"); got.IP != "10.0.0.12" || got.Revision != 2 {
			t.Fatalf("failed update changed the host: %+v", got)
		}
		sentinel := errors.New("stop")
		if _, err := s.UpdateHost(ctx, "a", func(h *Host) error { h.Hostname = "x"; return sentinel }); !errors.Is(err, sentinel) {
			t.Fatalf("fn error not returned: %v", err)
		}
		if _, err := s.UpdateHost(ctx, "a", func(h *Host) error { h.ID = "z"; return nil }); !errors.Is(err, ErrInvalid) {
			t.Fatalf("ID change: %v", err)
		}
		if _, err := s.UpdateHost(ctx, "nope", func(*Host) error { return nil }); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing host: %v", err)
		}
	})

	t.Run("DeleteRemovesEverything", func(t *testing.T) {
		s, clock := newStore(t)
		if _, err := s.CreateHosts(ctx, Host{ID: "a", MACs: []string{"52:54:00:00:00:0a"}, IP: "10.0.0.10"}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutLease(ctx, Lease{MAC: "52:54:00:00:00:0a", IP: "10.0.0.10", State: LeaseBound, Expires: clock.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendEvent(ctx, "a", Event{Type: "dhcp.ack"}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteHost(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetHost(ctx, "a"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if _, err := s.HostByMAC(ctx, "52:54:00:00:00:0a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("HostByMAC after delete: %v", err)
		}
		if _, err := s.Events(ctx, "a", 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("events after delete: %v", err)
		}
		// The lease outlives the host: the machine may still use the address, so it is
		// not handed to anyone else before it expires. It names no host any more.
		if l, err := s.GetLease(ctx, "52:54:00:00:00:0a"); err != nil || l.IP != "10.0.0.10" {
			t.Fatalf("lease after delete: %+v, %v", l, err)
		}
		if h, err := s.HostByIP(ctx, "10.0.0.10"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("HostByIP after delete = %s, %v", h.ID, err)
		}
		if _, err := s.CreateHosts(ctx, Host{ID: "c", MACs: []string{"52:54:00:00:00:0c"}, IP: "10.0.0.10"}); !errors.Is(err, ErrConflict) {
			t.Fatalf("reserving a deleted host's live lease for another MAC: %v", err)
		}
		// The same NIC enrolled again carries on with its lease; nothing else of the
		// old host comes back.
		if _, err := s.CreateHosts(ctx, Host{ID: "b", MACs: []string{"52:54:00:00:00:0a"}, IP: "10.0.0.10"}); err != nil {
			t.Fatal(err)
		}
		if ev, err := s.Events(ctx, "b", 0); err != nil || len(ev) != 0 {
			t.Fatalf("events leaked to the new host: %v %v", ev, err)
		}
		if err := s.DeleteHost(ctx, "a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleting twice: %v", err)
		}
		// Once the lease has expired the address is free for another MAC.
		if err := s.DeleteHost(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		clock.Add(2 * time.Hour)
		if _, err := s.CreateHosts(ctx, Host{ID: "c", MACs: []string{"52:54:00:00:00:0c"}, IP: "10.0.0.10"}); err != nil {
			t.Fatalf("reserving an expired lease's address: %v", err)
		}
	})

	t.Run("DeleteDropsProvisioningRecords", func(t *testing.T) {
		s, _ := newStore(t)
		ps, ok := s.(provisioningStore)
		if !ok {
			t.Skipf("%T keeps no provisioning records", s)
		}
		const mac = "52:54:00:00:00:0a"
		userData := []byte("#cloud-config\nkubeadm-join-token: abcdef.0123456789abcdef\n")
		if _, err := s.CreateHosts(ctx, Host{ID: "a", MACs: []string{mac}, BMC: &BMC{URL: "ipmi://admin@10.0.1.10", Password: "hunter2"}}); err != nil {
			t.Fatal(err)
		}
		_, _, err := ps.TransitionHost(ctx, "a", func(h *Host, c *HostChange) error {
			h.State = StateProvisioning
			h.Operation = &Operation{State: StateProvisioning, Phase: PhaseAgent, Attempt: 1, TokenHash: "agent-hash"}
			h.Provision = &Provision{ID: "p1", Image: "debian-12", MetadataTokenHash: "meta-hash"}
			c.Data = &ProvisionData{ProvisionID: "p1", Kind: ConfigCloudConfig, UserData: userData}
			c.Events = append(c.Events, Event{Type: "state.changed"})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, hash := range []string{"agent-hash", "meta-hash"} {
			if h, err := ps.HostByTokenHash(ctx, hash); err != nil || h.ID != "a" {
				t.Fatalf("before delete, token %s: %s, %v", hash, h.ID, err)
			}
		}
		if d, err := ps.ProvisionData(ctx, "a"); err != nil || string(d.UserData) != string(userData) {
			t.Fatalf("before delete, provisioning data: %+v, %v", d, err)
		}
		if err := s.DeleteHost(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		gone := func(when string) {
			t.Helper()
			for _, hash := range []string{"agent-hash", "meta-hash"} {
				if h, err := ps.HostByTokenHash(ctx, hash); !errors.Is(err, ErrNotFound) {
					t.Errorf("%s: token %s still finds host %q (%v)", when, hash, h.ID, err)
				}
			}
			if d, err := ps.ProvisionData(ctx, "a"); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: the user-data survived: %q, %v", when, d.UserData, err)
			}
		}
		gone("after delete")
		if _, err := s.BMCCredentials(ctx, "a"); !errors.Is(err, ErrNotFound) {
			t.Errorf("BMC credentials after delete: %v", err)
		}
		// A new host with the same ID and MAC starts clean: no user-data (the kubeadm
		// secrets of the old one), no tokens, no timeline, no password.
		if _, err := s.CreateHosts(ctx, Host{ID: "a", MACs: []string{mac}, BMC: &BMC{URL: "ipmi://admin@10.0.1.10"}}); err != nil {
			t.Fatal(err)
		}
		gone("a new host with the same ID")
		h, err := s.GetHost(ctx, "a")
		if err != nil || h.State != StateEnrolled || h.Provision != nil || h.Operation != nil || h.Revision != 1 {
			t.Errorf("new host = %+v, %v", h, err)
		}
		if ev, err := s.Events(ctx, "a", 0); err != nil || len(ev) != 0 {
			t.Errorf("new host's timeline: %v, %v", ev, err)
		}
		if creds, err := s.BMCCredentials(ctx, "a"); err != nil || creds.Password != "" || creds.PasswordSet {
			t.Errorf("new host's BMC credentials: %+v, %v", creds, err)
		}
	})

	t.Run("Leases", func(t *testing.T) {
		s, clock := newStore(t)
		if _, err := s.CreateHosts(ctx, Host{ID: "r", MACs: []string{"52:54:00:00:00:01"}, IP: "10.0.0.5"}); err != nil {
			t.Fatal(err)
		}
		exp := clock.Now().Add(time.Hour)
		if err := s.PutLease(ctx, Lease{MAC: "52:54:00:00:00:02", IP: "10.0.0.5", State: LeaseBound, Expires: exp}); !errors.Is(err, ErrConflict) {
			t.Fatalf("leasing a reserved IP to a stranger: %v", err)
		}
		if err := s.PutLease(ctx, Lease{MAC: "52:54:00:00:00:01", IP: "10.0.0.5", State: LeaseBound, Expires: exp.Add(2 * time.Hour)}); err != nil {
			t.Fatalf("leasing the reservation to its host: %v", err)
		}
		if err := s.PutLease(ctx, Lease{MAC: "52:54:00:00:00:02", IP: "10.0.0.100", State: LeaseOffered, Expires: exp}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutLease(ctx, Lease{MAC: "52:54:00:00:00:03", IP: "10.0.0.100", State: LeaseOffered, Expires: exp}); !errors.Is(err, ErrConflict) {
			t.Fatalf("double lease: %v", err)
		}
		// Moving a MAC's lease frees its old address.
		if err := s.PutLease(ctx, Lease{MAC: "52:54:00:00:00:02", IP: "10.0.0.101", State: LeaseBound, Expires: exp}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.LeaseByIP(ctx, "10.0.0.100"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old address still leased: %v", err)
		}
		// An expired lease gives its address up.
		clock.Add(2 * time.Hour)
		if err := s.PutLease(ctx, Lease{MAC: "52:54:00:00:00:03", IP: "10.0.0.101", State: LeaseBound, Expires: clock.Now().Add(time.Hour)}); err != nil {
			t.Fatalf("taking an expired lease's address: %v", err)
		}
		if _, err := s.GetLease(ctx, "52:54:00:00:00:02"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired lease kept: %v", err)
		}
		ls, err := s.ListLeases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range ls {
			got = append(got, l.MAC+"="+l.IP)
		}
		if d := cmp.Diff([]string{"52:54:00:00:00:01=10.0.0.5", "52:54:00:00:00:03=10.0.0.101"}, got); d != "" {
			t.Fatalf("leases (-want +got):\n%s", d)
		}
		// HostByIP falls back to leases of enrolled MACs, and ignores expired ones.
		if _, err := s.UpdateHost(ctx, "r", func(h *Host) error { h.IP = ""; return nil }); err != nil {
			t.Fatal(err)
		}
		if h, err := s.HostByIP(ctx, "10.0.0.5"); err != nil || h.ID != "r" {
			t.Fatalf("HostByIP via lease: %v %v", h.ID, err)
		}
		clock.Add(2 * time.Hour)
		if _, err := s.HostByIP(ctx, "10.0.0.5"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("HostByIP via expired lease: %v", err)
		}
		if err := s.DeleteLease(ctx, "52:54:00:00:00:03"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteLease(ctx, "52:54:00:00:00:03"); err != nil {
			t.Fatalf("deleting a missing lease: %v", err)
		}
		if err := s.PutLease(ctx, Lease{MAC: "bad", IP: "10.0.0.9", State: LeaseBound}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bad MAC: %v", err)
		}
	})

	t.Run("ReservationVsLiveLease", func(t *testing.T) {
		s, clock := newStore(t)
		if err := s.PutLease(ctx, Lease{MAC: "52:54:00:00:00:09", IP: "10.0.0.50", State: LeaseBound, Expires: clock.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		_, err := s.CreateHosts(ctx, Host{ID: "n", MACs: []string{"52:54:00:00:00:01"}, IP: "10.0.0.50"})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("reserving a leased address: %v", err)
		}
		// The leaseholder itself may reserve it.
		if _, err := s.CreateHosts(ctx, Host{ID: "m", MACs: []string{"52:54:00:00:00:09"}, IP: "10.0.0.50"}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("EventsOrderedAndBounded", func(t *testing.T) {
		s, _ := newStore(t)
		if _, err := s.CreateHosts(ctx, Host{ID: "a", MACs: []string{"52:54:00:00:00:0a"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendEvent(ctx, "missing", Event{Type: "x"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("event for missing host: %v", err)
		}
		if _, err := s.AppendEvent(ctx, "a", Event{}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("event without type: %v", err)
		}
		n := MaxEventsPerHost + 5
		for i := 1; i <= n; i++ {
			if _, err := s.AppendEvent(ctx, "a", Event{Type: "t", Message: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
		ev, err := s.Events(ctx, "a", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ev) != MaxEventsPerHost {
			t.Fatalf("%d events kept, want %d", len(ev), MaxEventsPerHost)
		}
		if ev[0].Seq != 6 || ev[len(ev)-1].Seq != uint64(n) || ev[0].Message != "6" {
			t.Fatalf("kept seq %d..%d (%q)", ev[0].Seq, ev[len(ev)-1].Seq, ev[0].Message)
		}
		tail, err := s.Events(ctx, "a", uint64(n-2))
		if err != nil || len(tail) != 2 || tail[0].Seq != uint64(n-1) {
			t.Fatalf("tail after %d: %v %v", n-2, tail, err)
		}
	})

	t.Run("BMCPasswordWriteOnly", func(t *testing.T) {
		s, _ := newStore(t)
		const pw = "pw-Contract-7f3a"
		created, err := s.CreateHosts(ctx,
			Host{ID: "a", MACs: []string{"52:54:00:00:00:0a"}, BMC: &BMC{URL: "ipmi://admin@10.0.0.2", Password: pw}},
			Host{ID: "b", MACs: []string{"52:54:00:00:00:0b"}, BMC: &BMC{URL: "ipmi://admin@10.0.0.3", PasswordSet: true}})
		if err != nil {
			t.Fatal(err)
		}
		want := []*BMC{{URL: "ipmi://admin@10.0.0.2", PasswordSet: true}, {URL: "ipmi://admin@10.0.0.3"}}
		if d := cmp.Diff(want, []*BMC{created[0].BMC, created[1].BMC}); d != "" {
			t.Fatalf("created BMCs (-want +got):\n%s", d)
		}
		// No read but BMCCredentials returns the password.
		got, _ := s.GetHost(ctx, "a")
		byMAC, _ := s.HostByMAC(ctx, "52:54:00:00:00:0a")
		list, _ := s.ListHosts(ctx)
		for name, h := range map[string]Host{"GetHost": got, "HostByMAC": byMAC, "ListHosts": list[0]} {
			if d := cmp.Diff(want[0], h.BMC); d != "" {
				t.Errorf("%s BMC (-want +got):\n%s", name, d)
			}
		}
		creds, err := s.BMCCredentials(ctx, "a")
		if err != nil || creds != (BMC{URL: "ipmi://admin@10.0.0.2", Password: pw, PasswordSet: true}) {
			t.Fatalf("BMCCredentials = %+v, %v", creds, err)
		}
		// An update that does not touch the BMC keeps the password...
		if _, err := s.UpdateHost(ctx, "a", func(h *Host) error { h.Hostname = "a1"; return nil }); err != nil {
			t.Fatal(err)
		}
		// ...so does changing the URL alone...
		if _, err := s.UpdateHost(ctx, "a", func(h *Host) error { h.BMC.URL = "ipmi://admin@10.0.0.9:6230"; return nil }); err != nil {
			t.Fatal(err)
		}
		if creds, _ := s.BMCCredentials(ctx, "a"); creds.Password != pw || creds.URL != "ipmi://admin@10.0.0.9:6230" {
			t.Fatalf("after URL change: %+v", creds)
		}
		// ...a new password replaces it...
		h, err := s.UpdateHost(ctx, "a", func(h *Host) error { h.BMC.Password = "second"; return nil })
		if err != nil || h.BMC.Password != "" || !h.BMC.PasswordSet {
			t.Fatalf("update returned %+v, %v", h.BMC, err)
		}
		if creds, _ := s.BMCCredentials(ctx, "a"); creds.Password != "second" {
			t.Fatalf("after new password: %+v", creds)
		}
		// ...a failed update keeps the old one...
		stop := errors.New("stop")
		if _, err := s.UpdateHost(ctx, "a", func(h *Host) error { h.BMC.Password = "third"; return stop }); !errors.Is(err, stop) {
			t.Fatal(err)
		}
		if creds, _ := s.BMCCredentials(ctx, "a"); creds.Password != "second" {
			t.Fatalf("aborted update changed the password: %+v", creds)
		}
		// ...PasswordSet false removes it, and no BMC removes everything.
		if _, err := s.UpdateHost(ctx, "a", func(h *Host) error { h.BMC = &BMC{URL: h.BMC.URL}; return nil }); err != nil {
			t.Fatal(err)
		}
		if creds, _ := s.BMCCredentials(ctx, "a"); creds.Password != "" || creds.PasswordSet {
			t.Fatalf("password not removed: %+v", creds)
		}
		if _, err := s.UpdateHost(ctx, "a", func(h *Host) error { h.BMC = &BMC{URL: h.BMC.URL, Password: "x"}; return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpdateHost(ctx, "a", func(h *Host) error { h.BMC = nil; return nil }); err != nil {
			t.Fatal(err)
		}
		if creds, err := s.BMCCredentials(ctx, "a"); err != nil || creds != (BMC{}) {
			t.Fatalf("host without BMC: %+v, %v", creds, err)
		}
		// A deleted host's password does not come back with a new host of the same ID.
		if err := s.DeleteHost(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.BMCCredentials(ctx, "b"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted host: %v", err)
		}
		if _, err := s.UpdateHost(ctx, "a", func(h *Host) error { h.BMC = &BMC{URL: "ipmi://u@h", Password: "gone"}; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteHost(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateHosts(ctx, Host{ID: "a", MACs: []string{"52:54:00:00:00:0a"}, BMC: &BMC{URL: "ipmi://u@h", PasswordSet: true}}); err != nil {
			t.Fatal(err)
		}
		if creds, _ := s.BMCCredentials(ctx, "a"); creds.Password != "" || creds.PasswordSet {
			t.Fatalf("a recreated host inherited a password: %+v", creds)
		}
	})

	t.Run("ConcurrentUpdatesSerialise", func(t *testing.T) {
		s, _ := newStore(t)
		if _, err := s.CreateHosts(ctx, Host{ID: "a", MACs: []string{"52:54:00:00:00:0a"}}); err != nil {
			t.Fatal(err)
		}
		const n = 20
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				_, err := s.UpdateHost(ctx, "a", func(h *Host) error {
					if h.Labels == nil {
						h.Labels = map[string]string{}
					}
					h.Labels[fmt.Sprintf("k%d", i)] = "v"
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}(i)
		}
		wg.Wait()
		h, _ := s.GetHost(ctx, "a")
		if len(h.Labels) != n || h.Revision != n+1 {
			t.Fatalf("labels=%d revision=%d: an update was lost", len(h.Labels), h.Revision)
		}
	})
}

func TestBoltStoreContract(t *testing.T) {
	runContract(t, func(t *testing.T, clock Clock) Store {
		dir := t.TempDir()
		s, err := Open(filepath.Join(dir, "inventory.db"), Options{Now: clock, SecretKeyFile: filepath.Join(dir, "secret.key")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
