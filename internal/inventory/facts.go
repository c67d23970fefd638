package inventory

// The inventory's own records of what agents report and what plans hold. They mirror
// agentapi v1 field for field today, JSON names included (the stored schema predates
// the split), but they are the schema, not the wire: package provision converts at the
// boundary, so a change of the agent protocol is never silently a change of what
// inventory.db holds, and the other way round.

// Facts is the hardware an agent reported.
type Facts struct {
	System System `json:"system"`
	CPU    CPU    `json:"cpu"`
	Memory Memory `json:"memory"`
	Disks  []Disk `json:"disks"`
	NICs   []NIC  `json:"nics"`
	// Firmware is "uefi" when the agent was booted by UEFI, else "bios".
	Firmware string `json:"firmware,omitempty"`
	// Kernel is the agent kernel's release (uname -r).
	Kernel string `json:"kernel,omitempty"`
}

// System is the SMBIOS system and board identity.
type System struct {
	// UUID is the SMBIOS system UUID in lower case.
	UUID         string `json:"uuid,omitempty"`
	Vendor       string `json:"vendor,omitempty"`
	Product      string `json:"product,omitempty"`
	Serial       string `json:"serial,omitempty"`
	BoardVendor  string `json:"boardVendor,omitempty"`
	BoardProduct string `json:"boardProduct,omitempty"`
	BoardSerial  string `json:"boardSerial,omitempty"`
	BIOSVendor   string `json:"biosVendor,omitempty"`
	BIOSVersion  string `json:"biosVersion,omitempty"`
}

// CPU summarises the processors.
type CPU struct {
	// Count is the number of logical CPUs.
	Count   int    `json:"count"`
	Sockets int    `json:"sockets,omitempty"`
	Model   string `json:"model,omitempty"`
	// Flags are the ones that matter for scheduling (e.g. vmx, svm, avx2).
	Flags []string `json:"flags,omitempty"`
}

// Memory is the RAM.
type Memory struct {
	// InstalledBytes is the sum of SMBIOS's memory devices; 0 when the firmware has no
	// such table.
	InstalledBytes uint64 `json:"installedBytes"`
	// UsableBytes is what the kernel sees (MemTotal).
	UsableBytes uint64 `json:"usableBytes"`
	DIMMs       int    `json:"dimms,omitempty"`
}

// Disk is a block device.
type Disk struct {
	// Name is the kernel name (sda, nvme0n1, vda).
	Name       string `json:"name"`
	SizeBytes  uint64 `json:"sizeBytes"`
	Model      string `json:"model,omitempty"`
	Serial     string `json:"serial,omitempty"`
	WWN        string `json:"wwn,omitempty"`
	Rotational bool   `json:"rotational"`
	Removable  bool   `json:"removable"`
	ReadOnly   bool   `json:"readOnly,omitempty"`
	// LogicalSectorBytes is the logical block size.
	LogicalSectorBytes int `json:"logicalSectorBytes,omitempty"`
}

// NIC is a network interface.
type NIC struct {
	Name      string `json:"name"`
	MAC       string `json:"mac"`
	SpeedMbps int    `json:"speedMbps,omitempty"`
	Carrier   bool   `json:"carrier"`
	Driver    string `json:"driver,omitempty"`
	// Boot marks the NIC the agent booted through.
	Boot bool `json:"boot,omitempty"`
}

// RootDiskHint chooses the disk an image is written to: every field set must match;
// Prefer ("smallest", the default, or "largest") picks among the disks left.
type RootDiskHint struct {
	Name         string `json:"name,omitempty"`
	Serial       string `json:"serial,omitempty"`
	WWN          string `json:"wwn,omitempty"`
	MinSizeBytes uint64 `json:"minSizeBytes,omitempty"`
	MaxSizeBytes uint64 `json:"maxSizeBytes,omitempty"`
	Prefer       string `json:"prefer,omitempty"`
}

// CloudInitMode says how the installed system is pointed at its per-host data.
type CloudInitMode string

const (
	CloudInitNone     CloudInitMode = "none"
	CloudInitDropIn   CloudInitMode = "dropin"
	CloudInitCIData   CloudInitMode = "cidata"
	CloudInitIgnition CloudInitMode = "ignition"
)

// WipeMode is how thoroughly a deprovisioning wipes: "quick" (partition tables and
// signatures) or "full" (every block).
type WipeMode string

const (
	WipeQuick WipeMode = "quick"
	WipeFull  WipeMode = "full"
)

// Action is what an operation's plan made the agent do.
type Action string

const (
	ActionInspect     Action = "inspect"
	ActionProvision   Action = "provision"
	ActionDeprovision Action = "deprovision"
	ActionWait        Action = "wait"
)

// AgentPhase is a step of the agent's plan, as its progress reports name it.
type AgentPhase string

const (
	AgentNetwork   AgentPhase = "network"
	AgentInspect   AgentPhase = "inspect"
	AgentWipe      AgentPhase = "wipe"
	AgentDownload  AgentPhase = "download" // to memory, to verify before writing
	AgentWrite     AgentPhase = "write"    // streaming the image to disk
	AgentVerify    AgentPhase = "verify"
	AgentCloudInit AgentPhase = "cloud-init"
	AgentDone      AgentPhase = "done"
)

// Progress is how far the agent says its plan is.
type Progress struct {
	Phase      AgentPhase `json:"phase"`
	Disk       string     `json:"disk,omitempty"`
	BytesDone  int64      `json:"bytesDone,omitempty"`
	BytesTotal int64      `json:"bytesTotal,omitempty"`
	Message    string     `json:"message,omitempty"`
}

// ImageFormat is how an image file is compressed; empty (or "auto") detects it.
type ImageFormat string

const (
	FormatAuto ImageFormat = ""
	FormatRaw  ImageFormat = "raw"
	FormatGzip ImageFormat = "gzip"
	FormatZstd ImageFormat = "zstd"
	FormatXz   ImageFormat = "xz"
	// FormatQcow2 is a source format only: the catalog converts a qcow2 image to a
	// zstd-compressed raw file, which is what agents get.
	FormatQcow2 ImageFormat = "qcow2"
)

// Valid reports whether f is a known format (FormatAuto and "auto" included).
func (f ImageFormat) Valid() bool {
	switch f {
	case FormatAuto, FormatRaw, FormatGzip, FormatZstd, FormatXz, "auto":
		return true
	}
	return false
}

// ValidSource reports whether f is a format an image may be added in: the served
// formats and qcow2.
func (f ImageFormat) ValidSource() bool { return f == FormatQcow2 || f.Valid() }
