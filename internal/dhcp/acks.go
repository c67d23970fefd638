package dhcp

import (
	"context"
	"net"

	"golang.org/x/time/rate"

	"github.com/rackboot/rackboot/internal/udpbatch"
)

// This file is the reply senders. Workers do not write replies: they hand them over and
// go on with the next packet, and two goroutines send them, many per system call
// (sendmmsg) on a UDP socket:
//
//   - sendReplies sends every reply that may leave at once (OFFERs, NAKs, proxyDHCP
//     answers), as they come. One sendto per reply cost 7 µs of the server's CPU at
//     20,000 DORA/s, a reply in a sendmmsg 2.3 µs (pprof, 2026-12-04): the system
//     call's fixed cost, and the veth or NIC driver's, are paid once per batch.
//   - sendAcks sends ACKs. An ACK promises a lease, so it may leave only once the lease
//     is durable (the inventory's group commit); sendAcks takes them in the order they
//     came, each once its commit has told it so. So a commit is not bounded by the
//     number of workers, and the ACKs one commit makes durable leave together.
//
// ACKs leave paced: at most ackBurst (a send batch) at once and ackRate per second. A
// commit can make hundreds of ACKs sendable at the same moment, and a burst that size
// overflows the socket buffer of a relay or client that reads a little late (perfdhcp
// with the default 208 KiB lost 2-25 % of its ACKs at 20,000 DORA/s unpaced, 0.1-0.4 %
// paced; four runs each, measured 2026-12-03).
//
// The bucket holds one burst, so a sender that runs late has not saved up more: when
// the socket loop and the workers keep the server's one CPU busy, sendAcks runs about
// once a millisecond, and its rate is then ackBurst per run whatever ackRate says. A
// burst of 16 capped ACKs near 20,000/s under overload (dhcpload offering 112,500
// DORA/s, server on one CPU: 20,000 ACKs/s, REQUESTs shed as their queue filled behind
// the stalled sender); a burst of 64 gave 28,000 ACKs/s there, and capacity (≤ 2.5 %
// lost) rose from 22,500 to 27,500 DORA/s (2026-12-04). ackRate is far above what one
// CPU answers, so pacing spreads bursts without lowering throughput.
// Other replies need no pacing: they leave as the workers make them, at most a read
// batch (batchLen) at a time.
const (
	ackBurst   = batchLen
	ackRate    = 100_000
	replyBurst = 16
)

// ackJob is a reply to send, with the packet it answers.
type ackJob struct {
	r *Reply
	p *packet
}

// sendReplies sends the jobs' replies, which need not wait for anything (counted when
// they were made), until jobs is closed and drained.
func (s *Server) sendReplies(q *queue, jobs <-chan ackJob) {
	b := &ackBatch{s: s, q: q}
	for j := range jobs {
		b.add(j)
	more:
		for len(b.jobs) < replyBurst {
			select {
			case j, ok := <-jobs:
				if !ok {
					break more
				}
				b.add(j)
				continue
			default:
			}
			break more
		}
		b.flush()
	}
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
		b.settle(next, <-next.r.durable)
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
					b.settle(j, err)
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

// ackBatch collects replies to send through one socket.
type ackBatch struct {
	s    *Server
	q    *queue
	conn net.PacketConn
	bc   *udpbatch.Conn // conn's batch writer, nil when it has none
	jobs []ackJob
	ends []int // where each job's bytes end in buf
	buf  []byte
	ds   []udpbatch.Datagram
	one  []byte        // scratch for a reply sent on its own
	pace *rate.Limiter // nil: unpaced
}

// settle counts the ACK of j (its lease committed, or not: err) and adds it to the
// batch if it may go.
func (b *ackBatch) settle(j ackJob, err error) {
	s, r := b.s, j.r
	if err != nil {
		s.h.m.packets.WithLabelValues(r.typ, string(outError)).Inc()
		s.log.Warn("dhcp: request not answered", "type", r.typ, "mac", r.Msg.ClientHWAddr.String(), "xid", r.Msg.TransactionID.String(), "reason", "lease not durable: "+err.Error())
		b.q.done(j.p)
		return
	}
	s.h.m.packets.WithLabelValues(r.typ, string(outReplied)).Inc()
	b.add(j)
}

// add queues j's reply, or sends it at once when it cannot go in a batch (a frame to a
// hardware address).
func (b *ackBatch) add(j ackJob) {
	s, r := b.s, j.r
	if r.HWDest != nil && s.frames != nil {
		b.one = s.send(j.p.conn, r, b.one)
		b.q.done(j.p)
		return
	}
	if j.p.conn != b.conn {
		b.flush()
		b.conn, b.bc = j.p.conn, udpbatch.NewConn(j.p.conn)
	}
	b.buf = appendMsg(b.buf, r.Msg)
	b.jobs = append(b.jobs, j)
	b.ends = append(b.ends, len(b.buf))
}

// flush sends the queued replies: one sendmmsg for as many as it takes, one by one
// where the socket has no batch writer or a message fails (counted and logged).
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
	if b.pace != nil {
		b.pace.WaitN(context.Background(), len(b.jobs)) // never more than ackBurst
	}
	bytesOf := func(i int) []byte {
		start := 0
		if i > 0 {
			start = b.ends[i-1]
		}
		return b.buf[start:b.ends[i]]
	}
	sent := 0
	if b.bc != nil {
		b.ds = b.ds[:0]
		for i, j := range b.jobs {
			b.ds = append(b.ds, udpbatch.Datagram{B: bytesOf(i), Addr: j.r.Dest})
		}
		// A message not sent goes one by one below, with its error.
		sent, _ = b.bc.WriteBatch(b.ds)
		clear(b.ds)
	}
	for i := sent; i < len(b.jobs); i++ {
		if err := b.s.write(b.conn, b.jobs[i].r, bytesOf(i)); err != nil {
			b.s.sendFailed(b.jobs[i].r, err)
		}
	}
}
