package dhcp

import (
	"context"

	"github.com/rackboot/rackboot/internal/inventory"
)

// Store is the part of the inventory the DHCP service uses. inventory.BoltStore
// satisfies it; tests use an in-memory fake.
type Store interface {
	HostByMAC(ctx context.Context, mac string) (inventory.Host, error)
	// HostByIP tells whether an address is reserved (Host.IP == ip) for someone.
	HostByIP(ctx context.Context, ip string) (inventory.Host, error)
	// ListHosts gives the reserved addresses to keep out of the pool.
	ListHosts(ctx context.Context) ([]inventory.Host, error)
	// CreateHosts enrols discovered hosts.
	CreateHosts(ctx context.Context, hosts ...inventory.Host) ([]inventory.Host, error)
	// UpdateHost records the arch and firmware learned from option 93.
	UpdateHost(ctx context.Context, id string, fn func(*inventory.Host) error) (inventory.Host, error)

	// GetLease and LeaseByIP read the inventory's in-memory leases: no transaction.
	GetLease(ctx context.Context, mac string) (inventory.Lease, error)
	LeaseByIP(ctx context.Context, ip string) (inventory.Lease, error)
	ListLeases(ctx context.Context) ([]inventory.Lease, error)
	// BindLease is the only way DHCP allocates an address: free-check and write in one
	// step, durable on return for bound and declined leases (the ACK is a promise).
	BindLease(ctx context.Context, c inventory.LeaseClaim) (inventory.Lease, error)
	DeleteLease(ctx context.Context, mac string) error

	// RecordEvents queues timeline events with the next group commit of leases.
	RecordEvents(ctx context.Context, evs ...inventory.HostEvent) error
}

// The inventory's contract must keep satisfying what DHCP needs.
var _ Store = inventory.Store(nil)
