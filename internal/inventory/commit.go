package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrClosed: the store was closed before a write could be committed.
var ErrClosed = errors.New("inventory is closed")

// linger is how long a commit waits for more changes to share its fsync once a caller
// waits for it, unless maxBatch changes are queued; idleFlush commits changes nobody
// waits for (offers, events) when no waiter comes.
//
// A commit's fixed cost (two fdatasyncs, the meta page, the B+tree's branch pages, and
// the Go runtime handing its CPU to another thread while a sync blocks: some 0.7 ms of
// CPU on the lab machine) dominates a DHCP server's CPU at moderate rates. At 1,000
// DORA/s (perfdhcp, server on one CPU) a 2 ms linger cost 0.47 ms of CPU per DORA, 10 ms
// 0.30 ms and 25 ms 0.26 ms with a DHCP worker waiting for each ACK's commit; with the
// ACKs sent by the DHCP server's ACK sender instead, 25 ms cost 0.12-0.15 ms and 50 ms
// 0.10-0.12 ms (three runs each, 2026-12-03). An ACK 50 ms later is invisible to a
// client, which retransmits after 4 s (RFC 2131 §4.1); ISC dhcpd's delayed-ack holds
// ACKs up to 250 ms (max-ack-delay) to batch its lease writes the same way.
//
// Under heavy load a commit starts once lingerWaiters callers wait: the callers' answers
// (ACKs) come back together, and a larger burst and a longer wait cost more than the
// commits saved (perfdhcp, whose send rate falls as its exchanges wait longer, measured
// it).
const (
	linger        = 50 * time.Millisecond
	lingerWaiters = 64
	maxBatch      = 1024
	idleFlush     = 50 * time.Millisecond
)

// maxRetry bounds the lease writes kept for the next commit after a failed one.
const maxRetry = 100_000

// commitOp is one change for the durable copy: a lease put or delete, timeline events,
// or nothing (a barrier). done, when set, receives the commit's result.
type commitOp struct {
	put    *Lease
	del    string
	events []HostEvent
	done   chan<- error
	retry  bool // carried over from a failed commit: already out of pending
}

// committer is the group commit behind the in-memory leases and the DHCP timeline
// events: it writes everything queued while the previous commit ran in one bbolt
// transaction, so one fsync covers them all. Nobody waits for a window: under light
// load each change commits at once; under heavy load changes queue during an fsync and
// share the next one. Ops commit in the order they were queued, which is the order the
// table changed in (the store queues under its lease lock).
type committer struct {
	db  *bolt.DB
	log *slog.Logger

	mu      sync.Mutex
	queue   []commitOp
	retry   []commitOp // lease writes of a failed commit, without waiters
	pending int        // queued or committing ops
	waiters int        // queued ops someone waits for
	closed  bool
	wake    chan struct{}
	enough  chan struct{} // ends a linger early: lingerWaiters waiters or maxBatch ops
	linger  time.Duration // linger, which tests may lengthen
	stopped chan struct{}

	// Counters for /metrics (read with stats).
	commits, committedOps, failures uint64
}

func newCommitter(db *bolt.DB, log *slog.Logger) *committer {
	c := &committer{db: db, log: log, wake: make(chan struct{}, 1), enough: make(chan struct{}, 1), linger: linger, stopped: make(chan struct{})}
	go c.loop()
	return c
}

// enqueue adds op; with a done channel the caller can wait for its commit.
func (c *committer) enqueue(op commitOp) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		if op.done != nil {
			op.done <- ErrClosed
		}
		return
	}
	c.queue = append(c.queue, op)
	c.pending++
	// Only a waiter (or a full batch) starts a commit; offers and events ride along
	// with the next one, or the idle flush.
	if op.done != nil {
		c.waiters++
	}
	urgent := op.done != nil || len(c.queue) >= maxBatch
	enough := c.enoughLocked()
	c.mu.Unlock()
	if urgent {
		c.poke()
	}
	if enough {
		c.endLinger()
	}
}

// enoughLocked says a commit need not linger for more changes (c.mu held).
func (c *committer) enoughLocked() bool {
	return c.waiters >= lingerWaiters || len(c.queue) >= maxBatch
}

func (c *committer) endLinger() {
	select {
	case c.enough <- struct{}{}:
	default:
	}
}

func (c *committer) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// flush waits until everything queued before it is committed (read-your-writes for
// readers of the bbolt copy, such as timelines).
func (c *committer) flush() error {
	c.mu.Lock()
	idle := c.pending == 0 || c.closed
	c.mu.Unlock()
	if idle {
		return nil
	}
	done := make(chan error, 1)
	c.enqueue(commitOp{done: done})
	return <-done
}

func (c *committer) loop() {
	defer close(c.stopped)
	idle := time.NewTicker(idleFlush)
	defer idle.Stop()
	for {
		select {
		case <-c.wake:
			// Linger: let the changes of the next moment share this fsync.
			select {
			case <-c.enough: // left over from a batch already committed
			default:
			}
			c.mu.Lock()
			enough := c.enoughLocked() || c.closed
			c.mu.Unlock()
			if !enough {
				t := time.NewTimer(c.linger)
				select {
				case <-t.C:
				case <-c.enough:
				}
				t.Stop()
			}
		case <-idle.C:
		}
		for {
			c.mu.Lock()
			ops := append(c.retry, c.queue...)
			c.retry, c.queue, c.waiters = nil, nil, 0
			closed := c.closed
			c.mu.Unlock()
			if len(ops) == 0 {
				if closed {
					return
				}
				break
			}
			err := c.commit(ops)
			c.mu.Lock()
			c.commits++
			if err != nil {
				c.failures++
				for _, op := range ops {
					if (op.put != nil || op.del != "") && len(c.retry) < maxRetry {
						c.retry = append(c.retry, commitOp{put: op.put, del: op.del, retry: true})
					}
				}
			} else {
				c.committedOps += uint64(len(ops))
			}
			for _, op := range ops {
				if !op.retry {
					c.pending--
				}
			}
			c.mu.Unlock()
			for _, op := range ops {
				if op.done != nil {
					op.done <- err
				}
			}
			c.mu.Lock()
			more := c.waiters > 0 || len(c.queue) >= maxBatch || c.closed
			c.mu.Unlock()
			if err == nil && !more {
				break
			}
			if err != nil {
				c.log.Error("inventory: lease commit failed; retrying with the next one (replies that needed it were not sent)", "ops", len(ops), "err", err)
				if closed {
					return
				}
				break
			}
		}
	}
}

func (c *committer) commit(ops []commitOp) error {
	// Only each MAC's last lease change in the batch is written: a DORA's offer and its
	// ACK usually share a commit, and the offer's record would be overwritten in the
	// same transaction. The final states come from the in-memory table, which never
	// gives one address to two MACs, so they can be written in any order.
	final := make(map[string]int, len(ops))
	for i, op := range ops {
		switch {
		case op.put != nil:
			final[op.put.MAC] = i
		case op.del != "":
			final[op.del] = i
		}
	}
	return c.db.Update(func(tx *bolt.Tx) error {
		leases, ips, hosts := tx.Bucket(bucketLeases), tx.Bucket(bucketLeaseIPs), tx.Bucket(bucketHosts)
		for i, op := range ops {
			if op.put != nil && final[op.put.MAC] == i {
				if err := putLease(leases, ips, op.put); err != nil {
					return err
				}
			} else if op.del != "" && final[op.del] == i {
				if err := deleteLeaseIn(leases, ips, op.del); err != nil {
					return err
				}
			}
			for _, he := range op.events {
				if hosts.Get([]byte(he.HostID)) == nil {
					continue // deleted since: its timeline went with it
				}
				if _, err := appendEventTx(tx, he.HostID, he.Event); err != nil {
					c.log.Warn("inventory: event not recorded", "hostID", he.HostID, "event", he.Event.Type, "err", err)
				}
			}
		}
		return nil
	})
}

// close commits what is queued and stops the loop.
func (c *committer) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.stopped
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.poke()
	c.endLinger() // a commit lingering now goes at once
	<-c.stopped
}

// putLease writes l, replacing the MAC's previous lease and whatever lease the address
// had: the in-memory table already decided that l may hold it. Renewals and an offer's
// ACK keep the address, and then only the lease record is rewritten.
func putLease(leases, ips *bolt.Bucket, l *Lease) error {
	ipKey, macKey := []byte(l.IP), []byte(l.MAC)
	owner := ips.Get(ipKey)
	if owner != nil && !bytes.Equal(owner, macKey) {
		if err := deleteLeaseIn(leases, ips, string(owner)); err != nil {
			return err
		}
		owner = nil
	}
	if prev := leases.Get(macKey); prev != nil {
		if old, err := leaseIP(prev); err != nil {
			return fmt.Errorf("decoding %s/%s: %w", bucketLeases, macKey, err)
		} else if old != l.IP && bytes.Equal(ips.Get([]byte(old)), macKey) {
			if err := ips.Delete([]byte(old)); err != nil {
				return err
			}
		}
	}
	if owner == nil {
		if err := ips.Put(ipKey, macKey); err != nil {
			return err
		}
	}
	return putJSON(leases, macKey, l)
}

// deleteLeaseIn removes mac's lease and its address's index entry, if it has one.
func deleteLeaseIn(leases, ips *bolt.Bucket, mac string) error {
	v := leases.Get([]byte(mac))
	if v == nil {
		return nil
	}
	ip, err := leaseIP(v)
	if err != nil {
		return fmt.Errorf("decoding %s/%s: %w", bucketLeases, mac, err)
	}
	if owner := ips.Get([]byte(ip)); string(owner) == mac {
		if err := ips.Delete([]byte(ip)); err != nil {
			return err
		}
	}
	return leases.Delete([]byte(mac))
}

// leaseIP is the address of a stored lease, decoded without the rest of the record.
// The records putLease writes begin {"mac":"…","ip":"…" (Lease's field order), and
// those two are read from there; anything else goes through encoding/json.
func leaseIP(v []byte) (string, error) {
	if ip, ok := leadingIP(v); ok {
		return ip, nil
	}
	var l struct {
		IP string `json:"ip"`
	}
	err := json.Unmarshal(v, &l)
	return l.IP, err
}

// leadingIP reads the "ip" of a record that starts with the "mac" and "ip" fields as
// encoding/json writes a Lease, or reports false. A string holding a quote or an escape
// is left to encoding/json.
func leadingIP(v []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(v, []byte(`{"mac":"`))
	if !ok {
		return "", false
	}
	i := bytes.IndexByte(rest, '"')
	if i < 0 || bytes.IndexByte(rest[:i], '\\') >= 0 {
		return "", false
	}
	if rest, ok = bytes.CutPrefix(rest[i:], []byte(`","ip":"`)); !ok {
		return "", false
	}
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// CommitStats is what the group commit has done: transactions, the changes they carried
// (leases, event batches, barriers) and the transactions that failed.
type CommitStats struct {
	Commits, Ops, Failures uint64
}

// CommitStats reports the lease and event group commit's counters.
func (s *BoltStore) CommitStats() CommitStats { return s.commits.stats() }

func (c *committer) stats() CommitStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CommitStats{Commits: c.commits, Ops: c.committedOps, Failures: c.failures}
}
