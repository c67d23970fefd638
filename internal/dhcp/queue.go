package dhcp

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// This file is the overload policy between the socket loop and the workers.
//
// A rack powering on at once, or many relays renewing, can send more than the server
// can answer. Then the work must be shed before it is done, and shed where it costs
// clients least:
//
//   - A packet that repeats one still waiting or in hand (same listener, xid, chaddr
//     and message type: a client's retransmission) is dropped: the first copy will be
//     answered.
//   - REQUEST, RELEASE and DECLINE wait in a queue of their own that workers serve
//     first: a REQUEST finishes an exchange the server already spent an OFFER on, so
//     under overload the server completes exchanges instead of starting new ones it
//     cannot finish.
//   - When a queue is full the oldest waiting packet is dropped to make room: its
//     client has most likely retransmitted or given up already.
//   - A packet that waited longer than maxWait is dropped unhandled.
//
// Every drop is counted in rackboot_dhcp_shed_total{reason}.

// maxWait is how long a packet may wait for a worker: clients retransmit after about
// 4 s (RFC 2131 §4.1), PXE ROMs sooner; a reply later than this is worth less than the
// fresh packets behind it.
const maxWait = 2 * time.Second

// packet is one datagram waiting for a worker.
type packet struct {
	b    []byte
	peer netip.AddrPort
	kind Listener
	conn net.PacketConn
	at   time.Time
	key  dupKey
	// dup is false when the packet has no key (too short to carry one).
	dup bool
}

// dupKey identifies a retransmission.
type dupKey struct {
	kind Listener
	mt   byte
	xid  [4]byte
	mac  [16]byte
}

// peek reads the duplicate key and message type from a raw BOOTP/DHCP packet without
// parsing it (the worker parses and validates it in full).
func peek(b []byte) (key dupKey, ok bool) {
	const optionsAt = 240 // after the fixed header and the magic cookie
	if len(b) < optionsAt {
		return key, false
	}
	copy(key.xid[:], b[4:8])
	copy(key.mac[:], b[28:44])
	for i := optionsAt; i < len(b); {
		code := b[i]
		switch code {
		case 0: // pad
			i++
			continue
		case 255: // end
			return key, true
		}
		if i+1 >= len(b) {
			break
		}
		l := int(b[i+1])
		if code == 53 && l == 1 && i+2 < len(b) {
			key.mt = b[i+2]
			return key, true
		}
		i += 2 + l
	}
	return key, true
}

// urgent reports whether a message type completes or ends an exchange (REQUEST 3,
// DECLINE 4, RELEASE 7).
func urgent(mt byte) bool { return mt == 3 || mt == 4 || mt == 7 }

// ring is a bounded FIFO of packets.
type ring struct {
	buf        []*packet
	head, size int
}

func newRing(n int) ring { return ring{buf: make([]*packet, n)} }

func (r *ring) full() bool { return r.size == len(r.buf) }

func (r *ring) push(p *packet) {
	r.buf[(r.head+r.size)%len(r.buf)] = p
	r.size++
}

func (r *ring) pop() *packet {
	if r.size == 0 {
		return nil
	}
	p := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.size--
	return p
}

// queue holds packets for the workers: urgent ones first, each kind bounded, with
// duplicates of packets waiting or in hand refused.
type queue struct {
	mu sync.Mutex
	// idle are the workers waiting for a packet, the most recently busy last: a
	// packet wakes the worker that ran last, whose stack is still grown and cached,
	// instead of each of the Workers in turn (sync.Cond wakes the longest waiter: with
	// 256 workers every packet paid for growing a stack the GC had shrunk).
	idle    []chan struct{}
	urgent  ring
	normal  ring
	pending map[dupKey]int // waiting or in hand
	closed  bool
	m       *metrics
	now     func() time.Time
}

func newQueue(n int, m *metrics, now func() time.Time) *queue {
	half := max(n/2, 1)
	return &queue{urgent: newRing(half), normal: newRing(half), pending: map[dupKey]int{}, m: m, now: now}
}

// put queues p, or drops it (counted) when it duplicates one waiting or in hand.
func (q *queue) put(p *packet) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if p.dup {
		if q.pending[p.key] > 0 {
			q.m.shed.WithLabelValues("duplicate").Inc()
			return
		}
		q.pending[p.key]++
	}
	r := &q.normal
	if urgent(p.key.mt) {
		r = &q.urgent
	}
	if r.full() {
		q.release(r.pop())
		q.m.shed.WithLabelValues("queue_full").Inc()
	}
	r.push(p)
	q.m.queueDepth.Set(float64(q.urgent.size + q.normal.size))
	if n := len(q.idle); n > 0 {
		q.idle[n-1] <- struct{}{}
		q.idle = q.idle[:n-1]
	}
}

// get waits for the next packet worth handling; nil once the queue is closed. wake is
// the calling worker's own channel (capacity 1), on which put wakes it.
func (q *queue) get(wake chan struct{}) *packet {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for q.urgent.size == 0 && q.normal.size == 0 && !q.closed {
			q.idle = append(q.idle, wake)
			q.mu.Unlock()
			<-wake
			q.mu.Lock()
		}
		if q.closed {
			return nil
		}
		p := q.urgent.pop()
		if p == nil {
			p = q.normal.pop()
		}
		q.m.queueDepth.Set(float64(q.urgent.size + q.normal.size))
		if q.now().Sub(p.at) > maxWait {
			q.release(p)
			q.m.shed.WithLabelValues("stale").Inc()
			continue
		}
		return p
	}
}

// done marks p handled: a retransmission of it is welcome again.
func (q *queue) done(p *packet) {
	q.mu.Lock()
	q.release(p)
	q.mu.Unlock()
}

func (q *queue) release(p *packet) {
	if p == nil || !p.dup {
		return
	}
	if q.pending[p.key]--; q.pending[p.key] <= 0 {
		delete(q.pending, p.key)
	}
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	for _, w := range q.idle {
		w <- struct{}{}
	}
	q.idle = nil
	q.mu.Unlock()
}
