package inventory

import (
	"errors"
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
const (
	linger    = 2 * time.Millisecond
	maxBatch  = 1024
	idleFlush = 50 * time.Millisecond
)

// maxRetry bounds the lease writes kept for the next commit after a failed one.
const maxRetry = 100_000

// commitOp is one change for the durable copy: a lease put or delete, timeline events,
// or nothing (a barrier). done, when set, receives the commit's result.
type commitOp struct {
	put    *Lease
	del    string
	events []HostEvent
	done   chan error
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
	stopped chan struct{}

	// Counters for /metrics (read with stats).
	commits, committedOps, failures uint64
}

func newCommitter(db *bolt.DB, log *slog.Logger) *committer {
	c := &committer{db: db, log: log, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
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
	c.mu.Unlock()
	if urgent {
		c.poke()
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
			c.mu.Lock()
			n := len(c.queue)
			c.mu.Unlock()
			if n < maxBatch {
				time.Sleep(linger)
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
	return c.db.Update(func(tx *bolt.Tx) error {
		for _, op := range ops {
			if op.del != "" {
				if err := deleteLease(tx, op.del); err != nil {
					return err
				}
			}
			if op.put != nil {
				if err := putLeaseTx(tx, op.put); err != nil {
					return err
				}
			}
			for _, he := range op.events {
				if tx.Bucket(bucketHosts).Get([]byte(he.HostID)) == nil {
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
	<-c.stopped
}

// putLeaseTx writes l, replacing the MAC's previous lease and whatever lease the
// address had: the in-memory table already decided that l may hold it.
func putLeaseTx(tx *bolt.Tx, l *Lease) error {
	ipKey := []byte(l.IP)
	if other := tx.Bucket(bucketLeaseIPs).Get(ipKey); other != nil && string(other) != l.MAC {
		if err := deleteLease(tx, string(other)); err != nil {
			return err
		}
	}
	if err := deleteLease(tx, l.MAC); err != nil {
		return err
	}
	if err := tx.Bucket(bucketLeaseIPs).Put(ipKey, []byte(l.MAC)); err != nil {
		return err
	}
	return putJSON(tx.Bucket(bucketLeases), []byte(l.MAC), l)
}

// CommitStats is what the group commit has done: transactions, the changes they carried
// (leases, event batches, barriers) and the transactions that failed.
type CommitStats struct {
	Commits, Ops, Failures uint64
}

// CommitStats reports the lease and event group commit's counters.
func (s *BoltStore) CommitStats() CommitStats {
	c := s.commits
	c.mu.Lock()
	defer c.mu.Unlock()
	return CommitStats{Commits: c.commits, Ops: c.committedOps, Failures: c.failures}
}
