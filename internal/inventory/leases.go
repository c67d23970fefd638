package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	bolt "go.etcd.io/bbolt"
)

// loadLeases fills the in-memory table from the durable copy.
func (s *BoltStore) loadLeases() error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLeases).ForEach(func(k, v []byte) error {
			var l Lease
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("lease %s: %w", k, err)
			}
			a, err := netip.ParseAddr(l.IP)
			if err != nil {
				return fmt.Errorf("lease %s: IP %q: %w", k, l.IP, err)
			}
			l.MAC = string(k)
			s.leases.set(l, a)
			return nil
		})
	})
}

// leaseOn returns the lease on ip (a string address) from memory.
func (s *BoltStore) leaseOn(ip string) (Lease, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return Lease{}, false
	}
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	return s.leases.ByIP(a.Unmap())
}

// GetLease implements Store.
func (s *BoltStore) GetLease(ctx context.Context, mac string) (Lease, error) {
	n, err := NormalizeMAC(mac)
	if err != nil {
		return Lease{}, invalid(err)
	}
	s.leaseMu.Lock()
	l, ok := s.leases.Get(n)
	s.leaseMu.Unlock()
	if !ok {
		return Lease{}, fmt.Errorf("lease for %s: %w", n, ErrNotFound)
	}
	return l, nil
}

// LeaseByIP implements Store.
func (s *BoltStore) LeaseByIP(ctx context.Context, ip string) (Lease, error) {
	l, ok := s.leaseOn(ip)
	if !ok {
		return Lease{}, fmt.Errorf("lease for IP %s: %w", ip, ErrNotFound)
	}
	return l, nil
}

// ListLeases implements Store; leases come sorted by MAC.
func (s *BoltStore) ListLeases(ctx context.Context) ([]Lease, error) {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	return s.leases.List(), nil
}

// PutLease implements Store. It returns once the lease is durable.
func (s *BoltStore) PutLease(ctx context.Context, l Lease) error {
	mac, err := NormalizeMAC(l.MAC)
	if err != nil {
		return invalid(err)
	}
	a, err := netip.ParseAddr(l.IP)
	if err != nil || !a.Is4() {
		return invalid(fmt.Errorf("lease for %s: IP %q is not an IPv4 address", mac, l.IP))
	}
	if err := validLeaseState(mac, l.State); err != nil {
		return err
	}
	l.MAC, l.IP, l.Updated = mac, a.String(), s.now().UTC()
	done := make(chan error, 1)
	err = s.withReservations(func(reservedForOther func(netip.Addr, string) bool) error {
		if reservedForOther(a, mac) {
			return fmt.Errorf("%w: IP %s is reserved for another host", ErrConflict, l.IP)
		}
		if err := s.leases.Put(l, s.now()); err != nil {
			return err
		}
		put := l
		s.commits.enqueue(commitOp{put: &put, done: done})
		return nil
	})
	if err != nil {
		return err
	}
	return wait(ctx, done)
}

// wait waits for a commit. A caller that gives up learns that its change may or may
// not be durable: it must not promise it (no ACK).
func wait(ctx context.Context, done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the lease commit: %w", ctx.Err())
	}
}

// DeleteLease implements Store; deleting a missing lease is not an error. It returns
// once the deletion is durable.
func (s *BoltStore) DeleteLease(ctx context.Context, mac string) error {
	n, err := NormalizeMAC(mac)
	if err != nil {
		return invalid(err)
	}
	done := make(chan error, 1)
	s.leaseMu.Lock()
	_, had := s.leases.Delete(n)
	if had {
		s.commits.enqueue(commitOp{del: n, done: done})
	}
	s.leaseMu.Unlock()
	if !had {
		return nil
	}
	return wait(ctx, done)
}

// BindLease decides and records a lease claim in one step (see LeaseClaim): the only
// place an address is allocated. A bound or declined lease returns once it (and the
// claim's events) are durable, or at once with LeaseClaim.Durable told later; an offer
// returns at once and is committed with the next group. Errors: ErrConflict (no wanted address is free), ErrPoolExhausted, ErrInvalid.
func (s *BoltStore) BindLease(ctx context.Context, c LeaseClaim) (Lease, error) {
	mac, err := NormalizeMAC(c.MAC)
	if err != nil {
		return Lease{}, invalid(err)
	}
	if err := validLeaseState(mac, c.State); err != nil {
		return Lease{}, err
	}
	c.MAC = mac
	now := s.now()
	for i := range c.Events {
		if c.Events[i].Event.Time.IsZero() {
			c.Events[i].Event.Time = now.UTC()
		}
	}
	var done chan<- error
	var wait1 chan error
	switch {
	case c.State == LeaseOffered:
	case c.Durable != nil:
		done = c.Durable
	default:
		wait1 = make(chan error, 1)
		done = wait1
	}
	var l Lease
	err = s.withReservations(func(reservedForOther func(netip.Addr, string) bool) error {
		var changed bool
		var err error
		l, changed, err = s.leases.Claim(c, now, func(a netip.Addr) bool { return reservedForOther(a, mac) })
		if err != nil {
			return err
		}
		op := commitOp{events: c.Events, done: done}
		if changed {
			put := l
			op.put = &put
		}
		if op.put != nil || op.events != nil || op.done != nil {
			s.commits.enqueue(op)
		}
		return nil
	})
	if err != nil {
		return Lease{}, err
	}
	if wait1 != nil {
		if err := wait(ctx, wait1); err != nil {
			return Lease{}, fmt.Errorf("commit lease of %s for %s: %w", l.IP, mac, err)
		}
	} else if c.Durable != nil && done == nil {
		c.Durable <- nil // an offer: nothing to wait for
	}
	return l, nil
}

// RecordEvents queues events for host timelines with the next group commit and
// returns at once: the DHCP service's events cost no transaction of their own. Events
// of hosts deleted meanwhile are dropped. Events reads see them (it waits for the
// commit).
func (s *BoltStore) RecordEvents(ctx context.Context, evs ...HostEvent) error {
	now := s.now().UTC()
	for i := range evs {
		if evs[i].Event.Type == "" {
			return invalid(errors.New("event has no type"))
		}
		if evs[i].Event.Time.IsZero() {
			evs[i].Event.Time = now
		}
	}
	if len(evs) > 0 {
		s.commits.enqueue(commitOp{events: evs})
	}
	return nil
}

// withReservations runs fn under the lease lock with a reader of the reservations (the
// in-memory mirror of the index, hostindex.go): reservedForOther(a, mac) says a is
// reserved for a host that does not own mac.
func (s *BoltStore) withReservations(fn func(reservedForOther func(netip.Addr, string) bool) error) error {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	return fn(s.hosts.reservedForOther)
}

func validLeaseState(mac string, st LeaseState) error {
	switch st {
	case LeaseOffered, LeaseBound, LeaseDeclined:
		return nil
	}
	return invalid(fmt.Errorf("lease for %s: unknown state %q", mac, st))
}
