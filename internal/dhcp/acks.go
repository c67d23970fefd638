package dhcp

import (
	"context"
	"net"

	"golang.org/x/time/rate"

	"golang.org/x/net/ipv4"
)

// This file is the ACK sender. An ACK promises a lease, so it may leave only once the
// lease is durable (the inventory's group commit). Workers do not wait for that: they
// hand the ACK over and go on with the next packet, and one goroutine sends the ACKs
// in the order they came, each once its commit has told it so. So a commit is not
// bounded by the number of workers, and the ACKs one commit makes durable leave
// together, many per system call (sendmmsg) on a UDP socket.
//
// They leave paced: at most ackBurst at once and ackRate per second. A commit can make
// hundreds of ACKs sendable at the same moment, and a burst that size overflows the
// socket buffer of a relay or client that reads a little late (perfdhcp with the
// default 208 KiB lost 2-25 % of its ACKs at 20,000 DORA/s unpaced, 0.1-0.4 % paced;
// four runs each, measured 2026-12-03). ackRate is well above what one CPU answers
// (about 23,000 DORA/s there), so pacing spreads bursts without lowering throughput.
const (
	ackBurst = 16
	ackRate  = 40_000
)

// ackJob is an ACK waiting for its lease's commit, with the packet it answers.
type ackJob struct {
	r *Reply
	p *packet
}

// sendAcks sends the jobs' ACKs until jobs is closed and drained.
func (s *Server) sendAcks(q *queue, jobs <-chan ackJob) {
	b := &ackBatch{s: s, q: q, pace: rate.NewLimiter(ackRate, ackBurst)}
	var next ackJob
	held := false
	for {
		if !held {
			j, ok := <-jobs
			if !ok {
				return
			}
			next = j
		}
		held = false
		b.add(next, <-next.r.durable)
		// Take the ACKs whose commits are done too, up to a batch; the first one still
		// waiting is held for the next round.
	more:
		for len(b.jobs) < ackBurst {
			select {
			case j, ok := <-jobs:
				if !ok {
					b.flush()
					return
				}
				select {
				case err := <-j.r.durable:
					b.add(j, err)
					continue
				default:
					next, held = j, true
				}
			default:
			}
			break more
		}
		b.flush()
	}
}

// ackBatch collects ACKs to send through one socket.
type ackBatch struct {
	s    *Server
	q    *queue
	conn net.PacketConn
	pc   *ipv4.PacketConn // conn's batch writer, nil when it has none
	jobs []ackJob
	ends []int // where each job's bytes end in buf
	buf  []byte
	ms   []ipv4.Message
	one  []byte // scratch for an ACK sent on its own
	pace *rate.Limiter
}

// add counts j (its lease committed, or not: err) and queues its ACK, or sends it at
// once when it cannot go in a batch.
func (b *ackBatch) add(j ackJob, err error) {
	s, r := b.s, j.r
	if err != nil {
		s.h.m.packets.WithLabelValues(r.typ, string(outError)).Inc()
		s.log.Warn("dhcp: request not answered", "type", r.typ, "mac", r.Msg.ClientHWAddr.String(), "xid", r.Msg.TransactionID.String(), "reason", "lease not durable: "+err.Error())
		b.q.done(j.p)
		return
	}
	s.h.m.packets.WithLabelValues(r.typ, string(outReplied)).Inc()
	if r.HWDest != nil && s.frames != nil {
		b.one = s.send(j.p.conn, r, b.one)
		b.q.done(j.p)
		return
	}
	if j.p.conn != b.conn {
		b.flush()
		b.conn, b.pc = j.p.conn, nil
		if uc, ok := j.p.conn.(*net.UDPConn); ok {
			b.pc = ipv4.NewPacketConn(uc)
		}
	}
	b.buf = appendMsg(b.buf, r.Msg)
	b.jobs = append(b.jobs, j)
	b.ends = append(b.ends, len(b.buf))
}

// flush sends the queued ACKs: one sendmmsg for as many as it takes, one by one where
// the socket has no batch writer or a message fails (counted and logged).
func (b *ackBatch) flush() {
	defer func() {
		for _, j := range b.jobs {
			b.q.done(j.p)
		}
		clear(b.jobs)
		b.jobs, b.ends, b.buf = b.jobs[:0], b.ends[:0], b.buf[:0]
	}()
	if len(b.jobs) == 0 {
		return
	}
	b.pace.WaitN(context.Background(), len(b.jobs)) // never more than ackBurst
	bytesOf := func(i int) []byte {
		start := 0
		if i > 0 {
			start = b.ends[i-1]
		}
		return b.buf[start:b.ends[i]]
	}
	sent := 0
	if b.pc != nil && len(b.jobs) > 1 {
		b.ms = b.ms[:0]
		for i, j := range b.jobs {
			b.ms = append(b.ms, ipv4.Message{Buffers: [][]byte{bytesOf(i)}, Addr: net.UDPAddrFromAddrPort(j.r.Dest)})
		}
		for sent < len(b.ms) {
			n, err := b.pc.WriteBatch(b.ms[sent:], 0)
			if err != nil || n <= 0 {
				break // the message at sent goes one by one below, with its error
			}
			sent += n
		}
		clear(b.ms)
	}
	for i := sent; i < len(b.jobs); i++ {
		if err := b.s.write(b.conn, b.jobs[i].r, bytesOf(i)); err != nil {
			b.s.sendFailed(b.jobs[i].r, err)
		}
	}
}
