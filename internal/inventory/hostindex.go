package inventory

import (
	"net/netip"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// hostIndex mirrors the macs (MAC → host ID) and ips (reserved IP → host ID) buckets in
// memory. The DHCP service asks for a host by MAC for every packet and checks every
// address it hands out against the reservations; in a storm most MACs are unknown, and
// those answers now cost a map read instead of a bbolt read transaction.
//
// The bbolt buckets stay the truth: the mirror is loaded from them at Open and changed
// only after a transaction that changed them has committed. Every such transaction runs
// through hostUpdate, which holds writeMu from before the transaction until the mirror
// has its changes, so the mirror applies them in commit order; a transaction that fails
// changes nothing.
type hostIndex struct {
	writeMu sync.Mutex    // one index-changing transaction at a time
	pending []indexChange // the running transaction's changes (under writeMu)

	mu   sync.RWMutex
	macs map[string]string
	ips  map[string]string
}

type indexKind uint8

const (
	indexMAC indexKind = iota
	indexIP
)

// indexChange sets key to id, or deletes key when id is empty.
type indexChange struct {
	kind    indexKind
	key, id string
}

func (x *hostIndex) load(db *bolt.DB) error {
	x.macs, x.ips = map[string]string{}, map[string]string{}
	return db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMACs).ForEach(func(k, v []byte) error {
			x.macs[string(k)] = string(v)
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketIPs).ForEach(func(k, v []byte) error {
			x.ips[string(k)] = string(v)
			return nil
		})
	})
}

// record notes a change made by the running hostUpdate transaction.
func (x *hostIndex) record(kind indexKind, key, id string) {
	x.pending = append(x.pending, indexChange{kind, key, id})
}

// hostUpdate runs fn in a write transaction that may change the MAC and reservation
// indexes (through index and unindex) and mirrors its changes once it has committed.
func (s *BoltStore) hostUpdate(fn func(tx *bolt.Tx) error) error {
	x := &s.hosts
	x.writeMu.Lock()
	defer x.writeMu.Unlock()
	x.pending = x.pending[:0]
	err := s.db.Update(fn)
	if err == nil {
		x.mu.Lock()
		for _, c := range x.pending {
			m := x.macs
			if c.kind == indexIP {
				m = x.ips
			}
			if c.id == "" {
				delete(m, c.key)
			} else {
				m[c.key] = c.id
			}
		}
		x.mu.Unlock()
	}
	x.pending = x.pending[:0]
	return err
}

// byMAC is the ID of the host with the (normalized) MAC.
func (x *hostIndex) byMAC(mac string) (string, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	id, ok := x.macs[mac]
	return id, ok
}

// reservedForOther says a is reserved for a host that does not own mac.
func (x *hostIndex) reservedForOther(a netip.Addr, mac string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	owner, ok := x.ips[a.String()]
	return ok && owner != x.macs[mac]
}
