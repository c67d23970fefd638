package tftp

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The transfer state machine (xfer) with no socket: packets in, packets out, the clock
// handed in. The engines that drive it over sockets are tested end to end in
// server_test.go and window_test.go.

// sent records what an xfer writes, as DATA block numbers (OACK: "oack").
type sent struct{ pkts [][]byte }

func (s *sent) Write(p []byte) (int, error) {
	s.pkts = append(s.pkts, bytes.Clone(p))
	return len(p), nil
}

// take returns what was written since the last take, as "oack" or block numbers.
func (s *sent) take() []any {
	var out []any
	for _, p := range s.pkts {
		switch binary.BigEndian.Uint16(p) {
		case opOACK:
			out = append(out, "oack")
		case opDATA:
			out = append(out, int(binary.BigEndian.Uint16(p[2:])))
		default:
			out = append(out, p)
		}
	}
	s.pkts = nil
	return out
}

func ack(block uint16) []byte { return binary.BigEndian.AppendUint16([]byte{0, opACK}, block) }

func newXfer(window int, oack bool) *xfer {
	x := &xfer{src: readerAtSource{bytes.NewReader(windowFile)}, blksize: 512, window: window, timeout: time.Second, retries: 3}
	if oack {
		x.oack = appendOACK(nil, []option{{"windowsize", "4"}})
	}
	return x
}

func TestXfer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type step struct {
		in      []byte // a packet from the client; nil: the deadline passed
		want    []any  // what is sent in answer
		done    bool
		wantErr error
	}
	for _, tc := range []struct {
		name   string
		window int
		oack   bool
		begin  []any
		steps  []step
	}{{
		name: "lock-step, no options", window: 1, begin: []any{1},
		steps: []step{
			{in: ack(1), want: []any{2}},
			{in: ack(1)},                // a duplicate: ignored, nothing sent again
			{in: []byte{0, 3, 0, 1, 9}}, // not an ACK: ignored
			{in: nil, want: []any{2}},   // the timeout sends it again
			{in: ack(2), want: []any{3}},
		},
	}, {
		name: "OACK then a window; a gap rolls it back", window: 4, oack: true, begin: []any{"oack"},
		steps: []step{
			{in: ack(1)}, // not ACK 0: ignored
			{in: ack(0), want: []any{1, 2, 3, 4}},
			{in: ack(2), want: []any{3, 4, 5, 6}},
			{in: ack(6), want: []any{7, 8, 9, 10}},
		},
	}, {
		name: "the whole file; done at the last block's ACK", window: 8, begin: []any{1, 2, 3, 4, 5, 6, 7, 8},
		steps: []step{
			{in: ack(8), want: []any{9, 10, 11, 12, 13, 14, 15, 16}},
			{in: ack(16), want: []any{17, 18, 19, 20, 21}}, // 21 is the short one
			{in: ack(20), want: []any{21}},
			{in: ack(21), done: true},
		},
	}, {
		name: "the OACK is sent Retries times, then the transfer fails", window: 1, oack: true, begin: []any{"oack"},
		steps: []step{
			{in: nil, want: []any{"oack"}},
			{in: nil, want: []any{"oack"}},
			{in: nil, wantErr: errTimeout},
		},
	}, {
		name: "the client's error ends it", window: 1, begin: []any{1},
		steps: []step{
			{in: appendError(nil, errOptionRefuse, "no thanks", 100), wantErr: &clientError{code: errOptionRefuse, msg: "no thanks"}},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			x, w := newXfer(tc.window, tc.oack), &sent{}
			if err := x.begin(w, t0); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.begin, w.take()); diff != "" {
				t.Fatalf("begin sent (-want +got):\n%s", diff)
			}
			now := t0
			for i, st := range tc.steps {
				var (
					done bool
					err  error
				)
				if st.in == nil {
					if x.deadline.After(now.Add(x.timeout)) || !x.deadline.After(now) {
						t.Fatalf("step %d: deadline %v, want within the timeout after %v", i, x.deadline, now)
					}
					now = x.deadline
					err = x.expire(w, now)
				} else {
					now = now.Add(time.Millisecond)
					done, err = x.packet(w, st.in, now)
				}
				if st.wantErr != nil {
					if err == nil || err.Error() != st.wantErr.Error() {
						t.Fatalf("step %d: error %v, want %v", i, err, st.wantErr)
					}
					return
				}
				if err != nil || done != st.done {
					t.Fatalf("step %d: done %v, error %v; want done %v", i, done, err, st.done)
				}
				if diff := cmp.Diff(st.want, w.take()); diff != "" {
					t.Fatalf("step %d sent (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

func TestXferCountsAckedBytes(t *testing.T) {
	x, w := newXfer(1, false), &sent{}
	now := time.Unix(1000, 0)
	if err := x.begin(w, now); err != nil {
		t.Fatal(err)
	}
	for b := uint16(1); ; b++ {
		if b == 3 {
			if err := x.expire(w, now); err != nil { // one retransmission
				t.Fatal(err)
			}
		}
		done, err := x.packet(w, ack(b), now)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
	}
	if x.acked != int64(len(windowFile)) || x.retransmits != 1 {
		t.Errorf("acked %d bytes, %d retransmits; want %d, 1", x.acked, x.retransmits, len(windowFile))
	}
}

// discard is a writer that keeps nothing.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkXferBlock is the state machine's own cost of one lock-step block: an ACK
// parsed, a block read (io.ReaderAt) and its packet written. It allocates nothing.
func BenchmarkXferBlock(b *testing.B) {
	data := make([]byte, 1<<20)
	now := time.Unix(1000, 0)
	b.ReportAllocs()
	x := &xfer{src: readerAtSource{bytes.NewReader(data)}, blksize: 1468, window: 1, timeout: time.Second, retries: 3}
	_ = x.begin(discard{}, now)
	b.SetBytes(1468)
	blk := uint16(1)
	p := ack(0)
	for b.Loop() {
		binary.BigEndian.PutUint16(p[2:], blk)
		done, err := x.packet(discard{}, p, now)
		if err != nil {
			b.Fatal(err)
		}
		blk++
		if done {
			x = &xfer{src: x.src, blksize: 1468, window: 1, timeout: time.Second, retries: 3}
			_ = x.begin(discard{}, now)
			blk = 1
		}
	}
}
