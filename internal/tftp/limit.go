package tftp

import (
	"net/netip"
	"sync"
)

// Limit labels of rackboot_tftp_limited_total.
const (
	limitGlobal    = "global"
	limitPerSource = "per_source"
)

// slots counts transfers in flight, in all and per source address. The per-source map
// holds only addresses with a transfer running, so it is bounded by max.
type slots struct {
	mu        sync.Mutex
	max, per  int
	total     int
	perSource map[netip.Addr]int
}

func newSlots(max, per int) *slots {
	return &slots{max: max, per: per, perSource: map[netip.Addr]int{}}
}

// acquire takes a slot for src, or says which limit refused it.
func (l *slots) acquire(src netip.Addr) (release func(), limit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perSource[src] >= l.per {
		return nil, limitPerSource
	}
	if l.total >= l.max {
		return nil, limitGlobal
	}
	l.total++
	l.perSource[src]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.perSource[src]--; l.perSource[src] <= 0 {
				delete(l.perSource, src)
			}
		})
	}, ""
}
