package inventory

import (
	"container/heap"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sort"
	"time"
)

// ErrPoolExhausted: a LeaseClaim found no free address in its pool.
var ErrPoolExhausted = errors.New("pool exhausted")

// Pool is a dynamic range an address may be chosen from, lowest free first.
type Pool struct {
	Start, End netip.Addr
	// Exclude, when set, names addresses of the range never handed out (the server's,
	// the router's, DNS servers).
	Exclude func(netip.Addr) bool
}

// LeaseClaim asks for one address for one MAC. It is the single allocation decision
// of the inventory: whoever asks (a DHCP OFFER, an ACK, a DECLINE's quarantine), the
// address is free-checked and taken in one step, so nothing else can slip between a
// check and a write.
type LeaseClaim struct {
	MAC      string
	Hostname string
	State    LeaseState
	// TTL is how long the lease holds from now.
	TTL time.Duration
	// Want are the addresses to try, in order: the first free one is taken.
	Want []netip.Addr
	// Pool, when set, is searched after Want for its lowest free address.
	Pool *Pool
	// KeepHeld leaves the MAC's lease as it is when it already holds the chosen address
	// unexpired (an OFFER to a bound client must not demote its lease to "offered").
	KeepHeld bool
	// Events go on host timelines in the same commit as the lease, and only if the
	// claim succeeds.
	Events []HostEvent
	// Durable, when set, makes BindLease return as soon as the claim is decided instead
	// of waiting for its commit: if it returns no error, the commit's result (nil: the
	// lease and its events are durable) is sent on Durable once, from the committer, so
	// it must have room for it (capacity 1). An offer, which no commit is waited for,
	// gets nil at once. The DHCP server sends its ACKs this way: a worker does not wait
	// through a commit, so commits can batch more than there are workers.
	Durable chan<- error
}

// HostEvent is an event for one host's timeline.
type HostEvent struct {
	HostID string
	Event  Event
}

// LeaseTable is the in-memory lease set with its indexes: by MAC, by IP, and per pool a
// bitmap of held addresses with a heap of expiry times, so that the lowest free address
// of a pool is found by scanning words, not by reading every lease. It is not safe for
// concurrent use: its owner locks it (BoltStore does, around each change and the
// commit it queues).
type LeaseTable struct {
	byMAC map[string]Lease
	byIP  map[netip.Addr]string
	pools map[[2]netip.Addr]*poolIndex
}

// NewLeaseTable returns an empty table.
func NewLeaseTable() *LeaseTable {
	return &LeaseTable{byMAC: map[string]Lease{}, byIP: map[netip.Addr]string{}, pools: map[[2]netip.Addr]*poolIndex{}}
}

// Get returns mac's lease (mac normalised).
func (t *LeaseTable) Get(mac string) (Lease, bool) {
	l, ok := t.byMAC[mac]
	return l, ok
}

// ByIP returns the lease holding a.
func (t *LeaseTable) ByIP(a netip.Addr) (Lease, bool) {
	mac, ok := t.byIP[a]
	if !ok {
		return Lease{}, false
	}
	return t.byMAC[mac], true
}

// List returns every lease sorted by MAC.
func (t *LeaseTable) List() []Lease {
	out := make([]Lease, 0, len(t.byMAC))
	for _, l := range t.byMAC {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out
}

// Len is the number of leases.
func (t *LeaseTable) Len() int { return len(t.byMAC) }

// Put stores l (MAC and IP normalised), replacing the MAC's lease and an expired lease
// of another MAC on the same address. It fails with ErrConflict when another MAC holds
// the address unexpired.
func (t *LeaseTable) Put(l Lease, now time.Time) error {
	a, err := netip.ParseAddr(l.IP)
	if err != nil {
		return invalid(fmt.Errorf("lease for %s: IP %q is not an IPv4 address", l.MAC, l.IP))
	}
	if owner, ok := t.byIP[a]; ok && owner != l.MAC && t.byMAC[owner].Expires.After(now) {
		return fmt.Errorf("%w: IP %s is leased to MAC %s", ErrConflict, a, owner)
	}
	t.set(l, a)
	return nil
}

func (t *LeaseTable) set(l Lease, a netip.Addr) {
	if owner, ok := t.byIP[a]; ok && owner != l.MAC {
		t.Delete(owner)
	}
	t.Delete(l.MAC)
	t.byMAC[l.MAC] = l
	t.byIP[a] = l.MAC
	for _, p := range t.pools {
		p.hold(a, l.Expires)
	}
}

// Delete removes mac's lease; it reports whether there was one.
func (t *LeaseTable) Delete(mac string) (Lease, bool) {
	l, ok := t.byMAC[mac]
	if !ok {
		return Lease{}, false
	}
	delete(t.byMAC, mac)
	if a, err := netip.ParseAddr(l.IP); err == nil && t.byIP[a] == mac {
		delete(t.byIP, a)
		for _, p := range t.pools {
			p.free(a)
		}
	}
	return l, true
}

// free reports whether a may be leased to mac: not reserved for another host, not
// held unexpired by another MAC.
func (t *LeaseTable) free(a netip.Addr, mac string, now time.Time, reservedForOther func(netip.Addr) bool) bool {
	if !a.Is4() || !a.IsValid() {
		return false
	}
	if owner, ok := t.byIP[a]; ok && owner != mac && t.byMAC[owner].Expires.After(now) {
		return false
	}
	return reservedForOther == nil || !reservedForOther(a)
}

// Claim decides and records c (its MAC normalised): the first free address of c.Want,
// else the lowest free one of c.Pool. changed is false when KeepHeld kept the MAC's
// lease as it was. It fails with ErrConflict when only Want was asked and none is free,
// and ErrPoolExhausted when the pool has none either.
func (t *LeaseTable) Claim(c LeaseClaim, now time.Time, reservedForOther func(netip.Addr) bool) (l Lease, changed bool, err error) {
	var chosen netip.Addr
	for _, a := range c.Want {
		if t.free(a, c.MAC, now, reservedForOther) {
			chosen = a
			break
		}
	}
	if !chosen.IsValid() && c.Pool != nil {
		chosen = t.pool(c.Pool).lowestFree(now, t, func(a netip.Addr) bool {
			return (c.Pool.Exclude == nil || !c.Pool.Exclude(a)) && t.free(a, c.MAC, now, reservedForOther)
		})
		if !chosen.IsValid() {
			return Lease{}, false, fmt.Errorf("%w: every address of %s-%s is leased, offered, reserved or quarantined", ErrPoolExhausted, c.Pool.Start, c.Pool.End)
		}
	}
	if !chosen.IsValid() {
		return Lease{}, false, fmt.Errorf("%w: no address asked for is free for %s", ErrConflict, c.MAC)
	}
	if cur, ok := t.byMAC[c.MAC]; ok && c.KeepHeld && cur.IP == chosen.String() &&
		cur.State != LeaseDeclined && cur.Expires.After(now) {
		return cur, false, nil
	}
	l = Lease{MAC: c.MAC, IP: chosen.String(), Hostname: c.Hostname, State: c.State,
		Expires: now.Add(c.TTL), Updated: now.UTC()}
	t.set(l, chosen)
	return l, true, nil
}

func (t *LeaseTable) pool(p *Pool) *poolIndex {
	key := [2]netip.Addr{p.Start, p.End}
	if pi, ok := t.pools[key]; ok {
		return pi
	}
	pi := newPoolIndex(p.Start, p.End)
	for a, mac := range t.byIP {
		pi.hold(a, t.byMAC[mac].Expires)
	}
	t.pools[key] = pi
	return pi
}

// maxPoolIndex bounds a pool's bitmap (a /12): larger ranges are searched in their
// first maxPoolIndex addresses only.
const maxPoolIndex = 1 << 20

// poolIndex marks the addresses of one range that hold an unexpired lease (as of the
// last sweep): a cleared bit is a candidate, checked against the table before use.
type poolIndex struct {
	start   uint32
	n       uint32
	held    []uint64
	expires expiryHeap
}

func newPoolIndex(start, end netip.Addr) *poolIndex {
	s, e := u32(start), u32(end)
	n := uint32(0)
	if e >= s {
		n = min(e-s+1, maxPoolIndex)
	}
	return &poolIndex{start: s, n: n, held: make([]uint64, (n+63)/64)}
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addrOf(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (p *poolIndex) offset(a netip.Addr) (uint32, bool) {
	if !a.Is4() {
		return 0, false
	}
	v := u32(a)
	if v < p.start || v-p.start >= p.n {
		return 0, false
	}
	return v - p.start, true
}

func (p *poolIndex) hold(a netip.Addr, exp time.Time) {
	if i, ok := p.offset(a); ok {
		p.held[i/64] |= 1 << (i % 64)
		heap.Push(&p.expires, expiry{at: exp, off: i})
	}
}

func (p *poolIndex) free(a netip.Addr) {
	if i, ok := p.offset(a); ok {
		p.held[i/64] &^= 1 << (i % 64)
	}
}

// sweep clears the bits of leases that expired by now. Heap entries whose lease was
// renewed or replaced since are stale: the bit stays as the table says.
func (p *poolIndex) sweep(now time.Time, t *LeaseTable) {
	for p.expires.Len() > 0 && !p.expires[0].at.After(now) {
		e := heap.Pop(&p.expires).(expiry)
		a := addrOf(p.start + e.off)
		if l, ok := t.ByIP(a); !ok || !l.Expires.After(now) {
			p.held[e.off/64] &^= 1 << (e.off % 64)
		}
	}
	// Renewals leave stale entries behind; rebuild when they dominate.
	if p.expires.Len() > 4*len(t.byIP)+1024 {
		p.expires = p.expires[:0]
		for a, mac := range t.byIP {
			if i, ok := p.offset(a); ok {
				p.expires = append(p.expires, expiry{at: t.byMAC[mac].Expires, off: i})
			}
		}
		heap.Init(&p.expires)
	}
}

// lowestFree returns the lowest address whose bit is clear and that ok accepts.
func (p *poolIndex) lowestFree(now time.Time, t *LeaseTable, ok func(netip.Addr) bool) netip.Addr {
	p.sweep(now, t)
	for w, word := range p.held {
		for free := ^word; free != 0; free &= free - 1 {
			i := uint32(w)*64 + uint32(bits.TrailingZeros64(free))
			if i >= p.n {
				return netip.Addr{}
			}
			if a := addrOf(p.start + i); ok(a) {
				return a
			}
		}
	}
	return netip.Addr{}
}

type expiry struct {
	at  time.Time
	off uint32
}

type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
