package dhcp

import (
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
)

func queued(t *testing.T, mt dhcpv4.MessageType, mac string, xid byte, at time.Time) *packet {
	t.Helper()
	m := msg(mt, mac)
	m.TransactionID = dhcpv4.TransactionID{0, 0, 0, xid}
	p := &packet{b: m.ToBytes(), at: at}
	p.key, p.dup = peek(p.b)
	if !p.dup || p.key.mt != byte(mt) {
		t.Fatalf("peek(%s) = %+v, %v", mt, p.key, p.dup)
	}
	return p
}

func shedCount(m *metrics, reason string) float64 {
	return counterValue(m.shed.WithLabelValues(reason))
}

func TestQueueShedsDuplicatesOldestAndStale(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry(), &Handler{})
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{m: m}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	q := newQueue(4, h.m, func() time.Time { return now }) // 2 urgent + 2 normal

	d1 := queued(t, dhcpv4.MessageTypeDiscover, macUnknown, 1, now)
	q.put(d1)
	q.put(queued(t, dhcpv4.MessageTypeDiscover, macUnknown, 1, now)) // retransmission
	if got := shedCount(h.m, "duplicate"); got != 1 {
		t.Errorf("duplicates shed = %v, want 1", got)
	}
	d2 := queued(t, dhcpv4.MessageTypeDiscover, macOther, 2, now)
	q.put(d2)
	d3 := queued(t, dhcpv4.MessageTypeDiscover, macKnown, 3, now)
	q.put(d3) // full: d1, the oldest, goes
	if got := shedCount(h.m, "queue_full"); got != 1 {
		t.Errorf("queue_full shed = %v, want 1", got)
	}
	r1 := queued(t, dhcpv4.MessageTypeRequest, macUnknown, 9, now)
	q.put(r1)
	// The REQUEST goes first, then the DISCOVERs in order.
	for i, want := range []*packet{r1, d2, d3} {
		if got := q.get(make(chan struct{}, 1)); got != want {
			t.Fatalf("get %d = %+v, want %+v", i, got.key, want.key)
		}
		q.done(want)
	}
	// d1 was shed, so its retransmission is welcome again; a packet that waited too
	// long is dropped at the worker.
	q.put(queued(t, dhcpv4.MessageTypeDiscover, macUnknown, 1, now.Add(-3*time.Second)))
	q.put(d2)
	if got := q.get(make(chan struct{}, 1)); got != d2 {
		t.Fatalf("stale packet not skipped: got %+v", got.key)
	}
	if got := shedCount(h.m, "stale"); got != 1 {
		t.Errorf("stale shed = %v, want 1", got)
	}
	q.close()
	if q.get(make(chan struct{}, 1)) != nil {
		t.Error("get after close returned a packet")
	}
}

func TestPeekSurvivesGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, make([]byte, 239), append(make([]byte, 240), 53), append(make([]byte, 240), 53, 9), append(make([]byte, 240), 0, 0, 1, 200)} {
		peek(b) // must not panic
	}
}

// TestQueueWakesTheLastIdleWorker: a packet goes to the worker that went idle last
// (its stack is still grown), the others stay parked, and close wakes them all.
func TestQueueWakesTheLastIdleWorker(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry(), &Handler{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	q := newQueue(4, m, func() time.Time { return now })
	idle := func() int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.idle)
	}
	type worker struct {
		wake chan struct{}
		got  chan *packet
	}
	start := func() worker {
		w := worker{make(chan struct{}, 1), make(chan *packet, 1)}
		n := idle()
		go func() { w.got <- q.get(w.wake) }()
		for idle() == n { // parked once it is on the idle list
			time.Sleep(time.Millisecond)
		}
		return w
	}
	first, last := start(), start()
	p := queued(t, dhcpv4.MessageTypeDiscover, macUnknown, 1, now)
	q.put(p)
	q.mu.Lock()
	left := append([]chan struct{}(nil), q.idle...)
	q.mu.Unlock()
	if len(left) != 1 || left[0] != first.wake {
		t.Fatalf("after put, the idle list is %v; want only the first worker's %v", left, first.wake)
	}
	if got := <-last.got; got != p {
		t.Fatalf("the last idle worker got %+v, want the packet", got)
	}
	q.close()
	if got := <-first.got; got != nil {
		t.Fatalf("the first worker got %+v after close, want nil", got)
	}
}
