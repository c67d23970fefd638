// Package admin is the contract of rackboot's admin HTTP API: the JSON interface under
// /api/v1/ through which operators (and the `rackboot host` CLI) enrol, label,
// boot-configure and remove hosts, read their event timelines and see DHCP leases. It
// holds the API's request and response types, the typed Go client (NewClient), the
// validation a client can run before sending (HostSpec, ValidateBatch), and the host
// file formats (YAML, CSV) that `rackboot host import` reads. It is one of rackboot's
// three public packages (with api/v1alpha1 and agentapi); the server is
// internal/adminserver.
//
// A few small value types of the inventory appear in the API as they are (State,
// Firmware, BootProfile, BMC, ...): they are re-exported here under the same names, so
// another module can name them. Their JSON is pinned by the server's golden files
// (internal/adminserver/testdata), so a change of the store that would change the API
// fails there first.
//
// Every request needs the bearer token the server was started with. Inputs are decoded
// strictly (unknown fields are errors), validated before anything is written, and bounded
// in size; a request that fails writes nothing. BMC passwords are write-only: no response
// ever carries one.
//
// Routes (all JSON; errors are {"error": "..."}):
//
//	GET    /api/v1/hosts                  list hosts, sorted by ID
//	POST   /api/v1/hosts                  create one host from a HostSpec → 201 + host
//	POST   /api/v1/hosts/import           create {"hosts": [HostSpec...]} all-or-nothing → 201 + {"hosts": [...]}
//	GET    /api/v1/hosts/{id}             one host
//	PATCH  /api/v1/hosts/{id}             change ip, hostname, macs, labels (HostPatch; validated as on create) → host
//	DELETE /api/v1/hosts/{id}             remove a host with its events, provisioning data and BMC secret (leases stay until they expire) → 204
//	POST   /api/v1/hosts/{id}/labels      {"set": {k: v}, "remove": [k]} → host
//	PUT    /api/v1/hosts/{id}/boot        set the boot profile (BootProfile) → host
//	DELETE /api/v1/hosts/{id}/boot        clear the boot profile → host
//	GET    /api/v1/hosts/{id}/events      timeline, oldest first; ?after=SEQ for newer ones only
//	GET    /api/v1/leases                 DHCP leases, sorted by MAC
//	GET    /api/v1/version                the server's build (VersionInfo)
//	PUT    /api/v1/hosts/{id}/bmc         {"url": ..., "password": ...} set the BMC (password write-only; empty keeps it) → host
//	DELETE /api/v1/hosts/{id}/bmc         remove the BMC and its password → host
//	GET    /api/v1/hosts/{id}/power       ask the BMC for the power state → BMCResponse
//	POST   /api/v1/hosts/{id}/power       {"action": "on|off|soft|cycle|reset"} → BMCResponse
//	POST   /api/v1/hosts/{id}/bootdev     {"device": "pxe|disk", "persistent": bool, "uefi": bool} → BMCResponse
//
// Provisioning (inspect, provision, release, retry, watch) and the image catalog
// (/api/v1/images) are listed in provision.go and images.go.
//
// BMC operations answer within the BMC service's timeout. Their failures carry a code
// ("bmc_auth", "bmc_unreachable", "bmc_timeout", ...) beside the message: 502 when the
// BMC refused or could not be reached, 504 when it did not answer in time, 503 when
// every BMC worker is busy, 409 when the host has no usable BMC URL.
//
// Every mutation except deletion appends an event to the host's timeline
// ("admin.created", "admin.edited", "admin.labels", "admin.boot", "admin.bmc"; power actions are
// recorded by the BMC service as "bmc.power", "bmc.bootdev" and "bmc.error").
package admin

import (
	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/netconfig"
)

// The inventory's value types the API carries as they are.
type (
	// State is a host's lifecycle state ("enrolled", "available", "provisioned", ...).
	State = inventory.State
	// Firmware is "bios" or "uefi".
	Firmware = inventory.Firmware
	// BootProfile is a host's own kernel, initrds and command line.
	BootProfile = inventory.BootProfile
	// BMC is how to reach a host's BMC; its Password is write-only.
	BMC = inventory.BMC
	// ConfigKind says what a provisioning's user config is (cloud-config, Ignition, ...).
	ConfigKind = inventory.ConfigKind
	// OpPhase is the phase of an operation in progress.
	OpPhase = inventory.OpPhase
	// LeaseState is "offered" or "bound".
	LeaseState = inventory.LeaseState
	// ImageStatus is "pending", "ready" or "failed".
	ImageStatus = inventory.ImageStatus
	// PowerAction is on, off, soft, cycle or reset.
	PowerAction = bmc.PowerAction
	// NetworkSpec is the installed OS's network: NICs by MAC, bonds, VLANs, static
	// addresses, routes and DNS (rendered as cloud-init network-config v2, or
	// systemd-networkd units for Ignition).
	NetworkSpec = netconfig.Spec
)

// Errors a Client's APIError matches with errors.Is, by HTTP status.
var (
	ErrNotFound = inventory.ErrNotFound
	ErrConflict = inventory.ErrConflict
	ErrInvalid  = inventory.ErrInvalid
)

// Body size limits. An import of a few thousand hosts fits comfortably in 4 MiB.
const (
	MaxBodyBytes       = 1 << 20
	MaxImportBodyBytes = 4 << 20
	// MaxImportHosts bounds one import so a single transaction stays short.
	MaxImportHosts = 10000
)

// ErrorResponse is the body of every error the API returns.
type ErrorResponse struct {
	Error string `json:"error"`
	// Code classifies BMC failures: bmc_auth, bmc_unreachable, bmc_timeout, ...
	Code string `json:"code,omitempty"`
}
