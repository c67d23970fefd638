package inventory

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A host's security record: the refusals of requests that named it (a script fetch
// without its boot key, an agent call or a metadata fetch from another address...),
// kept apart from its timeline so that no amount of ordinary traffic pushes the
// evidence out:
//
//	security  host ID -> bucket{ seq (8-byte big-endian) -> Event }   (created on first use)
//
// Security events take their numbers from the host's timeline, so Events returns both in
// order. The record holds at most MaxSecurityEventsPerHost events: past it the oldest go,
// except the first KeepFirstSecurityEvents, so the start of an attack always survives. A
// refusal that repeats the last one (same type, source address, route and reason, within
// SecurityRepeatWindow) is counted on it (fields "repeated" and "lastSeen") rather than
// stored again: a flood from one source is one entry.
var bucketSecurity = []byte("security")

// Bounds of the security record.
const (
	MaxSecurityEventsPerHost = 1000
	KeepFirstSecurityEvents  = 100
	SecurityRepeatWindow     = 10 * time.Minute
)

// IsSecurityEvent reports whether an event type is a refusal ("….rejected"), kept in
// the security record.
func IsSecurityEvent(t string) bool {
	return strings.HasSuffix(t, ".rejected") && len(t) > len(".rejected")
}

func appendSecurityTx(tx *bolt.Tx, timeline *bolt.Bucket, hostID string, e Event) (Event, error) {
	root, err := tx.CreateBucketIfNotExists(bucketSecurity)
	if err != nil {
		return Event{}, err
	}
	b, err := root.CreateBucketIfNotExists([]byte(hostID))
	if err != nil {
		return Event{}, err
	}
	if k, v := b.Cursor().Last(); k != nil {
		var last Event
		if err := json.Unmarshal(v, &last); err == nil && repeats(last, e) {
			n, _ := strconv.Atoi(last.Fields["repeated"])
			if n == 0 {
				n = 1
			}
			last.Fields["repeated"] = strconv.Itoa(n + 1)
			last.Fields["lastSeen"] = e.Time.UTC().Format(time.RFC3339)
			return last, putJSON(b, k, &last)
		}
	}
	seq, err := timeline.NextSequence()
	if err != nil {
		return Event{}, err
	}
	e.Seq = seq
	if err := putJSON(b, seqKey(seq), &e); err != nil {
		return Event{}, err
	}
	// The sub-bucket's own sequence counts what it holds.
	n := b.Sequence() + 1
	if n > MaxSecurityEventsPerHost {
		c := b.Cursor()
		k, _ := c.First()
		for i := 0; i < KeepFirstSecurityEvents && k != nil; i++ {
			k, _ = c.Next()
		}
		if k != nil {
			if err := c.Delete(); err != nil {
				return Event{}, err
			}
			n--
		}
	}
	return e, b.SetSequence(n)
}

func repeats(last, e Event) bool {
	if last.Type != e.Type || last.Fields == nil || e.Time.Sub(last.Time) > SecurityRepeatWindow {
		return false
	}
	for _, k := range []string{"ip", "route", "reason"} {
		if last.Fields[k] != e.Fields[k] {
			return false
		}
	}
	return true
}

// securityCursor is a cursor over the host's security record, or nil.
func securityCursor(tx *bolt.Tx, hostID string) *bolt.Cursor {
	root := tx.Bucket(bucketSecurity)
	if root == nil {
		return nil
	}
	b := root.Bucket([]byte(hostID))
	if b == nil {
		return nil
	}
	return b.Cursor()
}

func deleteSecurity(tx *bolt.Tx, hostID string) error {
	root := tx.Bucket(bucketSecurity)
	if root == nil || root.Bucket([]byte(hostID)) == nil {
		return nil
	}
	return root.DeleteBucket([]byte(hostID))
}

// readEvents merges the timeline and the security record (sec may be nil) after seq.
func readEvents(tl, sec *bolt.Cursor, after uint64) ([]Event, error) {
	var out []Event
	tk, tv := tl.Seek(seqKey(after + 1))
	var sk, sv []byte
	if sec != nil {
		sk, sv = sec.Seek(seqKey(after + 1))
	}
	for tk != nil || sk != nil {
		var k, v []byte
		if sk == nil || (tk != nil && bytes.Compare(tk, sk) < 0) {
			k, v = tk, tv
			tk, tv = tl.Next()
		} else {
			k, v = sk, sv
			sk, sv = sec.Next()
		}
		var e Event
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("event %d: %w", binary.BigEndian.Uint64(k), err)
		}
		out = append(out, e)
	}
	return out, nil
}
