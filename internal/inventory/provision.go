package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/rackboot/rackboot/internal/netconfig"
	bolt "go.etcd.io/bbolt"
)

// Provisioning records (issue 4). The provision package owns their meaning; the
// inventory stores them with the host, so one bbolt transaction changes a host's state,
// its operation, its token index entries, its sealed provisioning data and its
// timeline together (TransitionHost).
//
// Extra buckets (created on first use, so older files need no migration):
//
//	tokens    sha256(token) hex -> host ID     (index of agent and metadata tokens)
//	provdata  host ID -> ProvisionData, sealed (user-data and Ignition: kubeadm secrets)
//	images    image name -> Image               (image.go)
//
// Tokens are stored only as their SHA-256: a copy of the file does not let anyone talk
// to the agent API or read a host's cloud-init.
var (
	bucketTokens   = []byte("tokens")
	bucketProvData = []byte("provdata")
)

// HostFacts is the hardware an agent reported.
type HostFacts struct {
	Facts
	// ReportedAt is when the agent said hello with these facts.
	ReportedAt time.Time `json:"reportedAt"`
}

// ConfigKind says what a host's provisioning data holds.
type ConfigKind string

const (
	ConfigNone        ConfigKind = ""
	ConfigCloudConfig ConfigKind = "cloud-init" // user-data: #cloud-config, a script, MIME multipart...
	ConfigIgnition    ConfigKind = "ignition"   // Ignition JSON (rendered from Butane or given as is)
)

// Provision is the image a host holds or is getting. The user-data itself is not here:
// it is sealed in the provdata bucket (ProvisionData), so host reads never carry it.
type Provision struct {
	// ID is random per provisioning request; it makes the cloud-init instance-id, so a
	// re-provisioned host runs its (new) user-data again.
	ID    string `json:"id"`
	Image string `json:"image"`
	// ImageSHA256 is the catalog's checksum when the request was made.
	ImageSHA256 string        `json:"imageSHA256,omitempty"`
	RootDisk    RootDiskHint  `json:"rootDisk,omitzero"`
	CloudInit   CloudInitMode `json:"cloudInit,omitempty"`
	Config      ConfigKind    `json:"config,omitempty"`
	// Metadata is served in the host's NoCloud meta-data beside its labels.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Requester is who asked (the CLI, or a CAPI owner).
	Requester   string    `json:"requester,omitempty"`
	RequestedAt time.Time `json:"requestedAt"`
	// MetadataTokenHash is sha256(token) of the NoCloud/Ignition URL token; the token
	// itself exists only in the plan sent to the agent and on the host's disk.
	MetadataTokenHash string `json:"metadataTokenHash,omitempty"`
	// Network is this provisioning's network for the installed OS (from the request, a
	// RackbootMachine's spec.network); it wins over the host's own. nil: the host's.
	Network *netconfig.Spec `json:"network,omitempty"`
	// InstallNetwork is the network the installed OS gets, decided when the plan was
	// made: Network, else the host's, else the boot NIC with the reserved address,
	// static. nil: DHCP on the boot NIC (no spec and no reservation rackboot serves).
	InstallNetwork *netconfig.Spec `json:"installNetwork,omitempty"`
	// BootMAC is the NIC the agent provisioned through; network-config matches it.
	BootMAC string `json:"bootMAC,omitempty"`
	// HostIP is the address the agent spoke from (verified, or first seen in
	// proxy/off DHCP modes where rackboot sees no leases).
	HostIP string `json:"hostIP,omitempty"`

	// PlanSHA256 is the checksum of the file the plan sent the agent when it is not
	// ImageSHA256 (a converted qcow2 image); the agent's report is checked against it.
	PlanSHA256 string `json:"planSHA256,omitempty"`

	// Set when the agent reported the image written.
	WrittenDisk   string    `json:"writtenDisk,omitempty"`
	WrittenSHA256 string    `json:"writtenSHA256,omitempty"`
	BytesWritten  int64     `json:"bytesWritten,omitempty"`
	WrittenAt     time.Time `json:"writtenAt,omitzero"`
	// PhonedHomeAt is when cloud-init (or the Ignition unit) phoned home.
	PhonedHomeAt time.Time `json:"phonedHomeAt,omitzero"`
}

// RunsAgent reports whether the host's iPXE script boots the agent now: one rule for the
// script (package ipxe) and the agent API (package provision), which owns the states.
// A discovered host runs it once, to be inspected, then waits to be accepted; a
// provisioning host whose image is written boots its own disk.
func (h *Host) RunsAgent() bool {
	switch h.State {
	case StateDiscovered:
		return h.Facts == nil
	case StateInspecting, StateDeprovisioning:
		return true
	case StateProvisioning:
		return h.Operation == nil || h.Operation.Phase != PhaseDiskBoot
	}
	return false
}

// OpPhase is where an operation is.
type OpPhase string

const (
	// PhasePower: rackboot must set the next boot to PXE and power the host on or cycle it.
	PhasePower OpPhase = "power"
	// PhaseBooting: powered; waiting for the agent's hello.
	PhaseBooting OpPhase = "booting"
	// PhaseAgent: the agent has its plan and is running it.
	PhaseAgent OpPhase = "agent"
	// PhaseDiskBoot (provisioning only): the image is written; the host boots its own
	// disk and rackboot waits for cloud-init's phone-home.
	PhaseDiskBoot OpPhase = "disk-boot"
)

// Operation is an agent-driven operation: inspection, provisioning or deprovisioning.
type Operation struct {
	// State is the state the operation runs in; a failed host keeps it, so retry knows
	// what to retry.
	State State   `json:"state"`
	Phase OpPhase `json:"phase"`
	// Attempt counts boots of the agent for this operation, from 1.
	Attempt   int       `json:"attempt"`
	StartedAt time.Time `json:"startedAt"`
	// Deadline is when the current phase times out.
	Deadline time.Time `json:"deadline,omitzero"`
	// RetryAt delays the next power attempt after a BMC failure.
	RetryAt time.Time `json:"retryAt,omitzero"`
	// PowerTries counts failed BMC sequences in the current phase.
	PowerTries int `json:"powerTries,omitempty"`
	// Wipe is the wipe mode of a deprovisioning.
	Wipe WipeMode `json:"wipe,omitempty"`

	// Boots counts agent tokens issued (one per iPXE script that booted the agent).
	Boots         uint64    `json:"boots,omitempty"`
	TokenHash     string    `json:"tokenHash,omitempty"`
	TokenIssuedAt time.Time `json:"tokenIssuedAt,omitzero"`
	// BootID, AgentIP and LastSeen describe the agent that last spoke.
	BootID   string    `json:"bootID,omitempty"`
	AgentIP  string    `json:"agentIP,omitempty"`
	LastSeen time.Time `json:"lastSeen,omitzero"`
	// Plan is the action handed to the agent (empty until hello).
	Plan     Action    `json:"plan,omitempty"`
	Progress *Progress `json:"progress,omitempty"`
	// DiskBootSet records that the BMC was told to boot from disk (provisioning).
	DiskBootSet bool `json:"diskBootSet,omitempty"`
	// Discovery marks the inspection of a discovered host: it ends discovered again
	// (facts shown), not available, until an operator accepts the host.
	Discovery bool `json:"discovery,omitempty"`
}

// ProvisionData is a host's cloud-init or Ignition payload, kept sealed.
type ProvisionData struct {
	// ProvisionID ties the data to the Provision it belongs to.
	ProvisionID string     `json:"provisionID"`
	Kind        ConfigKind `json:"kind"`
	// UserData is served as NoCloud user-data (cloud-init).
	UserData []byte `json:"userData,omitempty"`
	// Ignition is Ignition JSON, served at .../ignition.
	Ignition []byte `json:"ignition,omitempty"`
}

// HostChange is what a TransitionHost callback writes besides the host.
type HostChange struct {
	// Events are appended to the host's timeline in the same transaction.
	Events []Event
	// Data, when set, replaces the host's sealed provisioning data.
	Data *ProvisionData
	// ClearData deletes it.
	ClearData bool
}

// errNoChange lets a TransitionHost callback end without writing.
var errNoChange = errors.New("no change")

// ErrNoChange is returned by a TransitionHost callback that decides nothing needs to be
// written; TransitionHost then returns the host unchanged and a nil error.
var ErrNoChange = errNoChange

// TransitionHost applies fn to the stored host in one transaction, together with what
// fn puts in the HostChange: the host, its events, its sealed provisioning data and the
// token index all change, or none does. fn returning ErrNoChange writes nothing.
func (s *BoltStore) TransitionHost(ctx context.Context, id string, fn func(h *Host, c *HostChange) error) (Host, []Event, error) {
	return s.transitionWithTx(ctx, id, func(_ *bolt.Tx, h *Host, c *HostChange) error { return fn(h, c) })
}

func (s *BoltStore) transitionWithTx(ctx context.Context, id string, fn func(tx *bolt.Tx, h *Host, c *HostChange) error) (Host, []Event, error) {
	if err := ctx.Err(); err != nil {
		return Host{}, nil, err
	}
	var out Host
	var events []Event
	err := s.hostUpdate(func(tx *bolt.Tx) error {
		var old Host
		if err := getHost(tx, id, &old); err != nil {
			return err
		}
		h := old.Clone()
		var ch HostChange
		if err := fn(tx, &h, &ch); err != nil {
			if errors.Is(err, errNoChange) {
				out = old
			}
			return err
		}
		if h.ID != old.ID {
			return invalid(fmt.Errorf("host %s: the ID cannot change", old.ID))
		}
		if err := h.Normalize(); err != nil {
			return invalid(err)
		}
		if err := s.unindex(tx, &old); err != nil {
			return err
		}
		if err := s.index(tx, &h); err != nil {
			return err
		}
		if err := s.storeSecret(tx, &h); err != nil {
			return err
		}
		if err := syncTokens(tx, &old, &h); err != nil {
			return err
		}
		switch {
		case ch.ClearData:
			if b := tx.Bucket(bucketProvData); b != nil {
				if err := b.Delete([]byte(id)); err != nil {
					return err
				}
			}
		case ch.Data != nil:
			if err := s.putProvData(tx, id, ch.Data); err != nil {
				return err
			}
		}
		now := s.now().UTC()
		h.CreatedAt = old.CreatedAt
		h.UpdatedAt = now
		h.Revision = old.Revision + 1
		if err := putJSON(tx.Bucket(bucketHosts), []byte(h.ID), &h); err != nil {
			return err
		}
		for _, e := range ch.Events {
			if e.Time.IsZero() {
				e.Time = now
			}
			e, err := appendEventTx(tx, h.ID, e)
			if err != nil {
				return err
			}
			events = append(events, e)
		}
		out = h
		return nil
	})
	if errors.Is(err, errNoChange) {
		return out, nil, nil
	}
	if err != nil {
		return Host{}, nil, err
	}
	return out, events, nil
}

// tokenHashes lists the token hashes a host holds.
func tokenHashes(h *Host) []string {
	var out []string
	if h.Operation != nil && h.Operation.TokenHash != "" {
		out = append(out, h.Operation.TokenHash)
	}
	if h.Provision != nil && h.Provision.MetadataTokenHash != "" {
		out = append(out, h.Provision.MetadataTokenHash)
	}
	return out
}

// syncTokens keeps the token index equal to the hashes h holds.
func syncTokens(tx *bolt.Tx, old, h *Host) error {
	oldH, newH := tokenHashes(old), tokenHashes(h)
	if len(oldH) == 0 && len(newH) == 0 {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketTokens)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, k := range newH {
		keep[k] = true
	}
	for _, k := range oldH {
		if !keep[k] {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
	}
	for _, k := range newH {
		if owner := b.Get([]byte(k)); owner != nil && string(owner) != h.ID {
			// 256-bit random tokens do not collide; a duplicate is a bug.
			return fmt.Errorf("%w: token already belongs to host %s", ErrConflict, owner)
		}
		if err := b.Put([]byte(k), []byte(h.ID)); err != nil {
			return err
		}
	}
	return nil
}

// dropTokens removes, for a host being deleted, every token index entry that names it:
// the hashes it holds, and any entry left behind (by an older build, say) that
// HostByTokenHash would have ignored; no entry outlives its host. The index holds about
// two entries per host, so scanning it costs little, and deletes are rare.
func dropTokens(tx *bolt.Tx, h *Host) error {
	b := tx.Bucket(bucketTokens)
	if b == nil {
		return nil
	}
	var stale [][]byte
	// Collected first: bbolt does not allow deleting inside ForEach.
	err := b.ForEach(func(k, v []byte) error {
		if string(v) == h.ID {
			stale = append(stale, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("host %s: deleting its token index entry: %w", h.ID, err)
		}
	}
	return nil
}

// HostByTokenHash returns the host that holds the token whose SHA-256 (hex) is hash,
// as its current agent token or its metadata token; ErrNotFound otherwise. An index
// entry left behind by a deleted host is ignored.
func (s *BoltStore) HostByTokenHash(ctx context.Context, hash string) (Host, error) {
	var h Host
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return fmt.Errorf("unknown token: %w", ErrNotFound)
		}
		id := b.Get([]byte(hash))
		if id == nil {
			return fmt.Errorf("unknown token: %w", ErrNotFound)
		}
		if err := getHost(tx, string(id), &h); err != nil {
			return fmt.Errorf("unknown token: %w", ErrNotFound)
		}
		for _, k := range tokenHashes(&h) {
			if k == hash {
				return nil
			}
		}
		return fmt.Errorf("unknown token: %w", ErrNotFound)
	})
	return h, err
}

func provDataLabel(hostID string) string { return "rackboot/provision-data/v1/" + hostID }

func (s *BoltStore) putProvData(tx *bolt.Tx, hostID string, d *ProvisionData) error {
	if s.sealer == nil {
		return fmt.Errorf("host %s: cannot store its user-data: the inventory was opened without a secret key (Options.SecretKeyFile)", hostID)
	}
	buf, err := json.Marshal(d)
	if err != nil {
		return err
	}
	sealed, err := s.sealer.Seal(buf, provDataLabel(hostID))
	if err != nil {
		return fmt.Errorf("host %s: sealing its user-data: %w", hostID, err)
	}
	b, err := tx.CreateBucketIfNotExists(bucketProvData)
	if err != nil {
		return err
	}
	return b.Put([]byte(hostID), sealed)
}

// ProvisionData returns the host's sealed cloud-init or Ignition data, or ErrNotFound.
func (s *BoltStore) ProvisionData(ctx context.Context, hostID string) (ProvisionData, error) {
	var out ProvisionData
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketProvData)
		var sealed []byte
		if b != nil {
			sealed = b.Get([]byte(hostID))
		}
		if sealed == nil {
			return fmt.Errorf("host %s has no provisioning data: %w", hostID, ErrNotFound)
		}
		if s.sealer == nil {
			return fmt.Errorf("host %s: its user-data is encrypted but the inventory was opened without the secret key", hostID)
		}
		buf, err := s.sealer.Open(sealed, provDataLabel(hostID))
		if err != nil {
			return fmt.Errorf("host %s: %w its user-data: the secret key is not the one it was stored with", hostID, err)
		}
		return json.Unmarshal(buf, &out)
	})
	return out, err
}

// appendEventTx is AppendEvent inside a transaction the caller holds. Every event takes
// the next number of the host's timeline; refusals (IsSecurityEvent) are kept in the
// host's security record instead (security.go), which the timeline's cap never trims.
func appendEventTx(tx *bolt.Tx, hostID string, e Event) (Event, error) {
	if e.Type == "" {
		return Event{}, invalid(errors.New("event has no type"))
	}
	b, err := tx.Bucket(bucketEvents).CreateBucketIfNotExists([]byte(hostID))
	if err != nil {
		return Event{}, err
	}
	if IsSecurityEvent(e.Type) {
		return appendSecurityTx(tx, b, hostID, e)
	}
	seq, err := b.NextSequence()
	if err != nil {
		return Event{}, err
	}
	e.Seq = seq
	if err := putJSON(b, seqKey(seq), &e); err != nil {
		return Event{}, err
	}
	if seq > MaxEventsPerHost {
		limit := seqKey(seq - MaxEventsPerHost + 1)
		c := b.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k, limit) < 0; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return Event{}, err
			}
		}
	}
	return e, nil
}

// cloneProvisioning deep-copies the provisioning records of c (called by Host.Clone).
func cloneProvisioning(c *Host) {
	if c.Facts != nil {
		f := *c.Facts
		f.Disks = append([]Disk(nil), f.Disks...)
		f.NICs = append([]NIC(nil), f.NICs...)
		f.CPU.Flags = append([]string(nil), f.CPU.Flags...)
		c.Facts = &f
	}
	if c.Provision != nil {
		p := *c.Provision
		p.Metadata = maps.Clone(p.Metadata)
		for _, n := range []**netconfig.Spec{&p.Network, &p.InstallNetwork} {
			if *n != nil {
				c := (*n).Clone()
				*n = &c
			}
		}
		c.Provision = &p
	}
	if c.Operation != nil {
		o := *c.Operation
		if o.Progress != nil {
			pr := *o.Progress
			o.Progress = &pr
		}
		c.Operation = &o
	}
}
