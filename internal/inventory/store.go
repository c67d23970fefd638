// Package inventory owns rackboot's hardware inventory: hosts, their DHCP leases and
// their event timelines, kept in one bbolt file so that a crash at any point leaves it
// consistent and a restart resumes where it stopped.
//
// Every change is one bbolt transaction. Readers get copies: nothing returned aliases
// memory that bbolt owns. The DHCP hot path is the exception in how, not whether, it
// is durable: leases are served from memory (LeaseTable) and written, with the DHCP
// timeline events, by group commit (commit.go): the changes queued while one commit
// runs, or within 2 ms of a waiter, share one transaction and one fsync. BindLease is
// the only place an address is allocated, and returns a bound lease only once it is
// durable. Offers are committed in the background: a crash may forget one.
//
// BMC passwords are the only secrets: they are sealed with AES-256-GCM under a key file
// kept beside the database (secret.go), never stored in a host record, and returned by
// BMCCredentials alone; every other read carries only BMC.PasswordSet.
package inventory

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrNotFound: no host, lease or event stream with that key.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the write would break uniqueness (ID, MAC, reserved IP, leased IP).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the input does not validate; the wrapped message names the field.
	ErrInvalid = errors.New("invalid")
	// ErrLocked: another process holds the inventory file.
	ErrLocked = errors.New("inventory is locked")
)

// MaxEventsPerHost bounds a host's timeline: the oldest events are dropped past it.
const MaxEventsPerHost = 2000

// Store is the inventory contract. BoltStore implements it; the contract test suite in
// storetest_test.go runs against every implementation.
type Store interface {
	// CreateHosts adds hosts all-or-nothing: if any one is invalid or conflicts (with the
	// inventory or with another in the batch), nothing is written.
	CreateHosts(ctx context.Context, hosts ...Host) ([]Host, error)
	GetHost(ctx context.Context, id string) (Host, error)
	HostByMAC(ctx context.Context, mac string) (Host, error)
	ListHosts(ctx context.Context) ([]Host, error)
	// HostByIP finds the host that holds ip: its reservation, else an unexpired lease of
	// one of its MACs. Used to put TFTP and HTTP fetches on the right timeline.
	HostByIP(ctx context.Context, ip string) (Host, error)
	// UpdateHost applies fn to the stored host inside one transaction; returning an error
	// from fn aborts the update. Uniqueness is re-checked after fn.
	UpdateHost(ctx context.Context, id string, fn func(*Host) error) (Host, error)
	// DeleteHost removes, in one transaction, the host, its MAC and reservation index
	// entries, its events, its BMC password and (stores that keep them) its
	// provisioning data and agent/metadata tokens. Its DHCP leases stay, per MAC, until
	// they expire: the machine may still be using the address (see BoltStore.DeleteHost).
	DeleteHost(ctx context.Context, id string) error
	// BMCCredentials returns the host's BMC URL with its password decrypted: the only
	// read that returns a password (every other returns Host.BMC without it). A host
	// without a BMC gives the zero BMC.
	BMCCredentials(ctx context.Context, id string) (BMC, error)

	GetLease(ctx context.Context, mac string) (Lease, error)
	LeaseByIP(ctx context.Context, ip string) (Lease, error)
	ListLeases(ctx context.Context) ([]Lease, error)
	// PutLease stores l, replacing the lease of the same MAC; it fails with ErrConflict if
	// another MAC holds an unexpired lease on the same IP or the IP is reserved for
	// another host.
	PutLease(ctx context.Context, l Lease) error
	DeleteLease(ctx context.Context, mac string) error
	// BindLease is the one allocation decision (see LeaseClaim): it picks a free address,
	// records the lease and the claim's events, and returns once a bound or declined
	// lease is durable (offers are not waited for).
	BindLease(ctx context.Context, c LeaseClaim) (Lease, error)
	// RecordEvents queues timeline events for the next group commit and returns at once.
	RecordEvents(ctx context.Context, evs ...HostEvent) error

	// AppendEvent adds e to the host's timeline (Seq and, if zero, Time are assigned).
	AppendEvent(ctx context.Context, hostID string, e Event) (Event, error)
	// Events returns the host's events with Seq > after, oldest first.
	Events(ctx context.Context, hostID string, after uint64) ([]Event, error)

	Close() error
}

// Clock lets tests control time; the zero value of BoltStore uses time.Now.
type Clock func() time.Time
