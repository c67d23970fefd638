package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Claim records who owns a host. Owners are opaque strings chosen by the claimer; the
// Cluster API controller uses "NAMESPACE/NAME" of the RackbootMachine. The zero Claim
// means the host is free.
//
// A claim is independent of the host's State: the provisioner moves the state
// (provisioning, provisioned, deprovisioning, available); the claim says for whom. A
// host can be claimed only while it is available and unclaimed, so a host still being
// wiped after its release is never handed to the next claimer.
type Claim struct {
	Owner     string    `json:"owner,omitempty"`
	ClaimedAt time.Time `json:"claimedAt,omitzero"`
}

// IsZero reports whether the claim is empty (the host is unclaimed).
func (c Claim) IsZero() bool { return c.Owner == "" }

// ErrNoHost: no available, unclaimed host matches a claim request. The error returned
// wraps it in a *NoHostError that says why.
var ErrNoHost = errors.New("no available host matches")

// NoHostError explains a failed claim: how many hosts the request matched and what
// they are doing instead of being free.
type NoHostError struct {
	Total    int           // hosts in the inventory
	Matching int           // hosts the request's Match accepts
	Claimed  int           // of Matching: claimed by another owner
	ByState  map[State]int // of Matching and unclaimed: not available, by state
}

func (e *NoHostError) Error() string {
	if e.Matching == 0 {
		return fmt.Sprintf("%v: none of the %d hosts in the inventory matches the selector: enroll matching hosts or relax the selector", ErrNoHost, e.Total)
	}
	var parts []string
	if e.Claimed > 0 {
		parts = append(parts, fmt.Sprintf("%d claimed", e.Claimed))
	}
	states := make([]string, 0, len(e.ByState))
	for s := range e.ByState {
		states = append(states, string(s))
	}
	sort.Strings(states)
	for _, s := range states {
		parts = append(parts, fmt.Sprintf("%d %s", e.ByState[State(s)], s))
	}
	return fmt.Sprintf("%v: %d hosts match the selector but none is free (%s): wait for a release or enroll more hosts", ErrNoHost, e.Matching, strings.Join(parts, ", "))
}

func (e *NoHostError) Unwrap() error { return ErrNoHost }

// ClaimRequest asks for one host.
type ClaimRequest struct {
	// Owner identifies the claimer; required. Claiming again with the same Owner returns
	// the host it already holds, so a claimer that crashed after claiming gets the same
	// host back.
	Owner string
	// Match selects candidate hosts (labels, architecture, ...); nil accepts every host.
	// It runs inside the write transaction: keep it pure and fast.
	Match func(*Host) bool
}

// ClaimHost gives req.Owner a host in one bbolt transaction: the host it already
// owns if there is one, else the first host (by ID) that is available, unclaimed and
// matched by req.Match. Two concurrent claimers can never get the same host: bbolt runs
// one write transaction at a time and the check and the write are in the same one.
// When nothing is free it fails with a *NoHostError (errors.Is ErrNoHost).
//
// A read transaction looks first, so claimers that will find nothing (the many
// machines waiting in a full rack) never queue for the write lock.
func (s *BoltStore) ClaimHost(ctx context.Context, req ClaimRequest) (Host, error) {
	if err := ctx.Err(); err != nil {
		return Host{}, err
	}
	if req.Owner == "" {
		return Host{}, invalid(errors.New("claim: the owner is empty"))
	}
	ownerJSON, err := json.Marshal(req.Owner)
	if err != nil {
		return Host{}, invalid(fmt.Errorf("claim: owner: %w", err))
	}
	var out Host
	var found bool
	err = s.db.View(func(tx *bolt.Tx) error {
		owned, free, err := scanClaim(tx, req, ownerJSON)
		switch {
		case err != nil:
			return err
		case owned != nil:
			out, found = *owned, true
			return nil
		case free == nil:
			return noHost(tx, req)
		}
		return nil
	})
	if err != nil || found {
		stripPassword(&out)
		return out, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		owned, free, err := scanClaim(tx, req, ownerJSON)
		switch {
		case err != nil:
			return err
		case owned != nil:
			out = *owned
			return nil
		case free == nil:
			// Another claimer took the last free host since the look.
			return noHost(tx, req)
		}
		now := s.now().UTC()
		free.Claim = Claim{Owner: req.Owner, ClaimedAt: now}
		free.UpdatedAt = now
		free.Revision++
		out = *free
		return putJSON(tx.Bucket(bucketHosts), []byte(free.ID), free)
	})
	stripPassword(&out)
	return out, err
}

var (
	availableJSON = []byte(`"state":"available"`)
	// claimJSON starts a non-zero Claim. Raw quotes never occur inside JSON strings,
	// so no label or free text can fake it.
	claimJSON = []byte(`"claim":{`)
)

// scanClaim finds the host req.Owner holds, or else the first free host it may take.
func scanClaim(tx *bolt.Tx, req ClaimRequest, ownerJSON []byte) (owned, free *Host, err error) {
	c := tx.Bucket(bucketHosts).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		// Decoding every host would cost most of a claim; only a host that names the
		// owner, or is available and unclaimed, can be the answer.
		mine := bytes.Contains(v, ownerJSON)
		if !mine && (free != nil || !bytes.Contains(v, availableJSON) || bytes.Contains(v, claimJSON)) {
			continue
		}
		var h Host
		if err := json.Unmarshal(v, &h); err != nil {
			return nil, nil, fmt.Errorf("host %s: %w", k, err)
		}
		if h.Claim.Owner == req.Owner {
			return &h, nil, nil
		}
		if free == nil && h.Claim.IsZero() && h.State == StateAvailable && (req.Match == nil || req.Match(&h)) {
			free = &h
		}
	}
	return nil, free, nil
}

// noHost counts, for the error, what the matching hosts are doing.
func noHost(tx *bolt.Tx, req ClaimRequest) error {
	e := &NoHostError{ByState: map[State]int{}}
	err := tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error {
		e.Total++
		var h Host
		if err := json.Unmarshal(v, &h); err != nil {
			return fmt.Errorf("host %s: %w", k, err)
		}
		if req.Match != nil && !req.Match(&h) {
			return nil
		}
		e.Matching++
		if !h.Claim.IsZero() {
			e.Claimed++
		} else {
			e.ByState[h.State]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	return e
}

// HostByOwner returns the host owner holds, or ErrNotFound.
func (s *BoltStore) HostByOwner(ctx context.Context, owner string) (Host, error) {
	if owner == "" {
		return Host{}, invalid(errors.New("host by owner: the owner is empty"))
	}
	ownerJSON, err := json.Marshal(owner)
	if err != nil {
		return Host{}, invalid(err)
	}
	var out Host
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHosts).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if !bytes.Contains(v, ownerJSON) {
				continue
			}
			var h Host
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("host %s: %w", k, err)
			}
			if h.Claim.Owner == owner {
				stripPassword(&h)
				out = h
				return nil
			}
		}
		return fmt.Errorf("no host is claimed by %s: %w", owner, ErrNotFound)
	})
	return out, err
}

// ReleaseHost clears owner's claim on host id. Releasing a host that is not claimed is
// not an error; releasing one that another owner holds fails with ErrConflict, and a
// host that is gone fails with ErrNotFound (a caller tearing down may treat that as
// released). Release does not wipe: deprovision first.
func (s *BoltStore) ReleaseHost(ctx context.Context, id, owner string) (Host, error) {
	if err := ctx.Err(); err != nil {
		return Host{}, err
	}
	var out Host
	err := s.db.Update(func(tx *bolt.Tx) error {
		var h Host
		if err := getJSON(tx.Bucket(bucketHosts), []byte(id), &h); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("host %s: %w", id, ErrNotFound)
			}
			return err
		}
		if h.Claim.IsZero() {
			out = h
			return nil
		}
		if h.Claim.Owner != owner {
			return fmt.Errorf("%w: host %s is claimed by %s, not %s", ErrConflict, id, h.Claim.Owner, owner)
		}
		h.Claim = Claim{}
		h.UpdatedAt = s.now().UTC()
		h.Revision++
		out = h
		return putJSON(tx.Bucket(bucketHosts), []byte(id), &h)
	})
	stripPassword(&out)
	return out, err
}
