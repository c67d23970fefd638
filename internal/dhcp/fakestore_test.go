package dhcp

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/rackboot/rackboot/internal/inventory"
)

// fakeStore is an in-memory Store with the inventory contract's semantics for what
// DHCP uses (unique MACs and reserved IPs, lease conflicts on unexpired leases only).
type fakeStore struct {
	mu     sync.Mutex
	now    func() time.Time
	hosts  map[string]inventory.Host // by ID
	leases *inventory.LeaseTable
	events map[string][]inventory.Event
	// failLeases makes every lease operation fail, to test store errors.
	failLeases error
}

var _ Store = (*fakeStore)(nil)

func newFakeStore(now func() time.Time, hosts ...inventory.Host) *fakeStore {
	s := &fakeStore{now: now, hosts: map[string]inventory.Host{}, leases: inventory.NewLeaseTable(), events: map[string][]inventory.Event{}}
	if _, err := s.CreateHosts(context.Background(), hosts...); err != nil {
		panic(err)
	}
	return s
}

func (s *fakeStore) hostByMAC(mac string) (inventory.Host, bool) {
	for _, h := range s.hosts {
		if h.HasMAC(mac) {
			return h, true
		}
	}
	return inventory.Host{}, false
}

func (s *fakeStore) HostByMAC(_ context.Context, mac string) (inventory.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := inventory.NormalizeMAC(mac)
	if err != nil {
		return inventory.Host{}, fmt.Errorf("%w: %w", inventory.ErrInvalid, err)
	}
	if h, ok := s.hostByMAC(n); ok {
		return h.Clone(), nil
	}
	return inventory.Host{}, fmt.Errorf("host with MAC %s: %w", mac, inventory.ErrNotFound)
}

func (s *fakeStore) HostByIP(_ context.Context, ip string) (inventory.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.hosts {
		if h.IP == ip {
			return h.Clone(), nil
		}
	}
	for _, l := range s.leases.List() {
		if l.IP == ip && l.Expires.After(s.now()) {
			if h, ok := s.hostByMAC(l.MAC); ok {
				return h.Clone(), nil
			}
		}
	}
	return inventory.Host{}, fmt.Errorf("host with IP %s: %w", ip, inventory.ErrNotFound)
}

func (s *fakeStore) ListHosts(context.Context) ([]inventory.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []inventory.Host
	for _, h := range s.hosts {
		out = append(out, h.Clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s *fakeStore) CreateHosts(_ context.Context, hosts ...inventory.Host) ([]inventory.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []inventory.Host
	for _, h := range hosts {
		h = h.Clone()
		if err := h.Normalize(); err != nil {
			return nil, fmt.Errorf("%w: %w", inventory.ErrInvalid, err)
		}
		if _, ok := s.hosts[h.ID]; ok {
			return nil, fmt.Errorf("%w: host %s exists", inventory.ErrConflict, h.ID)
		}
		for _, m := range h.MACs {
			if _, ok := s.hostByMAC(m); ok {
				return nil, fmt.Errorf("%w: MAC %s taken", inventory.ErrConflict, m)
			}
		}
		h.CreatedAt, h.UpdatedAt, h.Revision = s.now(), s.now(), 1
		out = append(out, h)
	}
	for _, h := range out {
		s.hosts[h.ID] = h
	}
	return out, nil
}

func (s *fakeStore) UpdateHost(_ context.Context, id string, fn func(*inventory.Host) error) (inventory.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hosts[id]
	if !ok {
		return inventory.Host{}, fmt.Errorf("host %s: %w", id, inventory.ErrNotFound)
	}
	h = h.Clone()
	if err := fn(&h); err != nil {
		return inventory.Host{}, err
	}
	h.Revision++
	s.hosts[id] = h
	return h.Clone(), nil
}

func (s *fakeStore) GetLease(_ context.Context, mac string) (inventory.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failLeases != nil {
		return inventory.Lease{}, s.failLeases
	}
	if l, ok := s.leases.Get(mac); ok {
		return l, nil
	}
	return inventory.Lease{}, fmt.Errorf("lease %s: %w", mac, inventory.ErrNotFound)
}

func (s *fakeStore) LeaseByIP(_ context.Context, ip string) (inventory.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failLeases != nil {
		return inventory.Lease{}, s.failLeases
	}
	if a, err := netip.ParseAddr(ip); err == nil {
		if l, ok := s.leases.ByIP(a); ok {
			return l, nil
		}
	}
	return inventory.Lease{}, fmt.Errorf("lease of %s: %w", ip, inventory.ErrNotFound)
}

func (s *fakeStore) ListLeases(context.Context) ([]inventory.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failLeases != nil {
		return nil, s.failLeases
	}
	return s.leases.List(), nil
}

func (s *fakeStore) reservedForOther(mac string) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		for _, h := range s.hosts {
			if h.IP == a.String() && !h.HasMAC(mac) {
				return true
			}
		}
		return false
	}
}

func (s *fakeStore) PutLease(_ context.Context, l inventory.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failLeases != nil {
		return s.failLeases
	}
	mac, err := inventory.NormalizeMAC(l.MAC)
	if err != nil {
		return fmt.Errorf("%w: %w", inventory.ErrInvalid, err)
	}
	if a, err := netip.ParseAddr(l.IP); err == nil && s.reservedForOther(mac)(a) {
		return fmt.Errorf("%w: %s reserved", inventory.ErrConflict, l.IP)
	}
	l.MAC, l.Updated = mac, s.now()
	return s.leases.Put(l, s.now())
}

// BindLease runs the inventory's own allocation (inventory.LeaseTable) in memory.
func (s *fakeStore) BindLease(_ context.Context, c inventory.LeaseClaim) (inventory.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failLeases != nil {
		return inventory.Lease{}, s.failLeases
	}
	mac, err := inventory.NormalizeMAC(c.MAC)
	if err != nil {
		return inventory.Lease{}, fmt.Errorf("%w: %w", inventory.ErrInvalid, err)
	}
	c.MAC = mac
	l, _, err := s.leases.Claim(c, s.now(), s.reservedForOther(mac))
	if err != nil {
		return inventory.Lease{}, err
	}
	for _, he := range c.Events {
		s.appendEvent(he.HostID, he.Event)
	}
	if c.Durable != nil {
		c.Durable <- nil // nothing here is more durable than it is now
	}
	return l, nil
}

func (s *fakeStore) DeleteLease(_ context.Context, mac string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failLeases != nil {
		return s.failLeases
	}
	s.leases.Delete(mac)
	return nil
}

func (s *fakeStore) RecordEvents(_ context.Context, evs ...inventory.HostEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, he := range evs {
		s.appendEvent(he.HostID, he.Event)
	}
	return nil
}

func (s *fakeStore) appendEvent(hostID string, e inventory.Event) {
	if _, ok := s.hosts[hostID]; !ok {
		return
	}
	evs := s.events[hostID]
	e.Seq = 1
	if len(evs) > 0 {
		e.Seq = evs[len(evs)-1].Seq + 1
	}
	evs = append(evs, e)
	if len(evs) > 2*inventory.MaxEventsPerHost { // the contract's bound, trimmed in batches
		evs = append(evs[:0:0], evs[len(evs)-inventory.MaxEventsPerHost:]...)
	}
	s.events[hostID] = evs
}

// Events is the contract's reader, used by the shared assertions.
func (s *fakeStore) Events(_ context.Context, hostID string, after uint64) ([]inventory.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []inventory.Event
	for _, e := range s.events[hostID] {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out, nil
}
