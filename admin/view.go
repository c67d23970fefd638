package admin

import (
	"time"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
)

// The API's response types. They are not the inventory's storage types: every field
// here is chosen to be shown to an operator, so a field added to the store (a token
// hash, an index, a binding secret) never reaches a client until someone adds it here
// on purpose. testdata/*.golden.json pins their JSON, and the tests check that no
// token material appears in it.

// Host is a host as the API shows it.
type Host struct {
	ID       string             `json:"id"`
	MACs     []string           `json:"macs"`
	Hostname string             `json:"hostname,omitempty"`
	IP       string             `json:"ip,omitempty"`
	Labels   map[string]string  `json:"labels,omitempty"`
	Arch     string             `json:"arch,omitempty"`
	Firmware inventory.Firmware `json:"firmware,omitempty"`
	// BMC never carries a password: PasswordSet says whether one is stored.
	BMC         *BMCInfo               `json:"bmc,omitempty"`
	State       inventory.State        `json:"state"`
	StateReason string                 `json:"stateReason,omitempty"`
	Boot        *inventory.BootProfile `json:"boot,omitempty"`
	// Network is the operator's network spec for the installed OS (nil: the default).
	Network   *NetworkSpec `json:"network,omitempty"`
	CreatedAt time.Time    `json:"createdAt"`
	UpdatedAt time.Time    `json:"updatedAt"`
	// Revision increases on every write (the watch route's "after").
	Revision  uint64     `json:"revision"`
	Claim     *Claim     `json:"claim,omitempty"`
	Facts     *Facts     `json:"facts,omitempty"`
	Provision *Provision `json:"provision,omitempty"`
	Operation *Operation `json:"operation,omitempty"`
}

// BMCInfo is a host's BMC without its password.
type BMCInfo struct {
	URL         string `json:"url"`
	PasswordSet bool   `json:"passwordSet,omitempty"`
}

// Claim says who owns a host.
type Claim struct {
	Owner     string    `json:"owner"`
	ClaimedAt time.Time `json:"claimedAt,omitzero"`
}

// Facts is the hardware the agent reported at the host's last agent boot.
type Facts struct {
	agentapi.Facts
	ReportedAt time.Time `json:"reportedAt"`
}

// Provision is the image a host holds or is getting. The metadata URL's token and its
// hash are not here: the token exists only in the agent's plan and on the host's disk.
type Provision struct {
	ID          string                 `json:"id"`
	Image       string                 `json:"image"`
	ImageSHA256 string                 `json:"imageSHA256,omitempty"`
	RootDisk    agentapi.RootDiskHint  `json:"rootDisk,omitzero"`
	CloudInit   agentapi.CloudInitMode `json:"cloudInit,omitempty"`
	Config      inventory.ConfigKind   `json:"config,omitempty"`
	Metadata    map[string]string      `json:"metadata,omitempty"`
	// InstallNetwork is the network the installed OS gets, decided when the plan was made
	// (Network, else the host's, else the reserved address as a static configuration);
	// absent: DHCP on the boot NIC.
	InstallNetwork *NetworkSpec `json:"installNetwork,omitempty"`
	// Network is this provisioning's own network spec, which wins over the host's.
	Network       *NetworkSpec `json:"network,omitempty"`
	Requester     string       `json:"requester,omitempty"`
	RequestedAt   time.Time    `json:"requestedAt"`
	BootMAC       string       `json:"bootMAC,omitempty"`
	HostIP        string       `json:"hostIP,omitempty"`
	WrittenDisk   string       `json:"writtenDisk,omitempty"`
	WrittenSHA256 string       `json:"writtenSHA256,omitempty"`
	BytesWritten  int64        `json:"bytesWritten,omitempty"`
	WrittenAt     time.Time    `json:"writtenAt,omitzero"`
	PhonedHomeAt  time.Time    `json:"phonedHomeAt,omitzero"`
}

// Operation is the agent-driven operation in progress, or the one a failed host failed
// in. The agent's token (and its hash) and the agent's boot ID are not shown.
type Operation struct {
	State      inventory.State    `json:"state"`
	Phase      inventory.OpPhase  `json:"phase"`
	Attempt    int                `json:"attempt"`
	StartedAt  time.Time          `json:"startedAt"`
	Deadline   time.Time          `json:"deadline,omitzero"`
	RetryAt    time.Time          `json:"retryAt,omitzero"`
	PowerTries int                `json:"powerTries,omitempty"`
	Wipe       agentapi.WipeMode  `json:"wipe,omitempty"`
	Boots      uint64             `json:"boots,omitempty"`
	AgentIP    string             `json:"agentIP,omitempty"`
	LastSeen   time.Time          `json:"lastSeen,omitzero"`
	Plan       agentapi.Action    `json:"plan,omitempty"`
	Progress   *agentapi.Progress `json:"progress,omitempty"`
}

// Event is one step on a host's timeline.
type Event struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Type    string            `json:"type"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// Lease is a DHCP address binding.
type Lease struct {
	MAC      string               `json:"mac"`
	IP       string               `json:"ip"`
	Hostname string               `json:"hostname,omitempty"`
	State    inventory.LeaseState `json:"state"`
	Expires  time.Time            `json:"expires"`
	Updated  time.Time            `json:"updated"`
}

// Image is an OS image in the catalog. Source never shows a password given in its URL.
type Image struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	// SHA256 is the operator's checksum of the file as published; SHA256URL the
	// checksum file it was read from, if any.
	SHA256    string `json:"sha256"`
	SHA256URL string `json:"sha256URL,omitempty"`
	// Format is the served file's compression; SourceFormat the format the image was
	// added in (qcow2 is converted once to zstd-compressed raw, whose checksum is
	// ServedSHA256 and whose disk is DiskSize bytes).
	Format       agentapi.Format       `json:"format,omitempty"`
	SourceFormat inventory.ImageFormat `json:"sourceFormat,omitempty"`
	ServedSHA256 string                `json:"servedSHA256,omitempty"`
	DiskSize     int64                 `json:"diskSize,omitempty"`
	Size         int64                 `json:"size,omitempty"`
	Status       inventory.ImageStatus `json:"status"`
	Error        string                `json:"error,omitempty"`
	// Phase (download, upload, verify, convert) and BytesDone of BytesTotal (0:
	// unknown) are a pending image's progress.
	Phase      inventory.ImagePhase `json:"phase,omitempty"`
	BytesDone  int64                `json:"bytesDone,omitempty"`
	BytesTotal int64                `json:"bytesTotal,omitempty"`
	CreatedAt  time.Time            `json:"createdAt"`
	UpdatedAt  time.Time            `json:"updatedAt"`
	VerifiedAt time.Time            `json:"verifiedAt,omitzero"`
	Revision   uint64               `json:"revision"`
}
