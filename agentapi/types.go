package agentapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Protocol version and endpoint paths.
const (
	Version      = "v1"
	PathPrefix   = "/agent/v1/"
	PathHello    = PathPrefix + "hello"
	PathProgress = PathPrefix + "progress"
	PathResult   = PathPrefix + "result"
	// ContentType is the media type of every request and response body.
	ContentType = "application/json"
	// MaxBodyBytes bounds a request or response body: a host with many disks and NICs
	// stays far below it.
	MaxBodyBytes = 1 << 20
	// MaxIgnitionBytes bounds Provision.Ignition.Config, so a plan that carries one
	// (base64 in JSON, 4/3 of it) stays under MaxBodyBytes.
	MaxIgnitionBytes = 640 << 10
)

// Hello is the agent's first message: who it is and what the hardware is.
type Hello struct {
	// MAC is the NIC the host booted from (rackboot.mac), normalised lower-case
	// colon-separated.
	MAC string `json:"mac"`
	// AgentVersion is the rackboot version of the agent binary.
	AgentVersion string `json:"agentVersion"`
	// BootID is random per agent start, so the server can tell a restarted agent (a new
	// BootID with the same token) from a repeated hello.
	BootID string `json:"bootID"`
	// IP is the address the agent took by DHCP on MAC, without a prefix length.
	IP string `json:"ip,omitempty"`
	// UptimeSeconds is the kernel's uptime when hello was sent: how long the boot
	// environment took to come up.
	UptimeSeconds float64 `json:"uptimeSeconds,omitempty"`
	Facts         Facts   `json:"facts"`
}

// Facts is the hardware inventory the agent reports.
type Facts struct {
	System System `json:"system"`
	CPU    CPU    `json:"cpu"`
	Memory Memory `json:"memory"`
	Disks  []Disk `json:"disks"`
	NICs   []NIC  `json:"nics"`
	// Firmware is "uefi" when the kernel was booted by UEFI, else "bios".
	Firmware string `json:"firmware,omitempty"`
	// Kernel is the agent kernel's release (uname -r).
	Kernel string `json:"kernel,omitempty"`
}

// System is the SMBIOS system and board identity (/sys/class/dmi/id). Empty strings are
// values the firmware left unset or filled with placeholders.
type System struct {
	// UUID is the SMBIOS system UUID in lower case (DHCP option 97 of a PXE client).
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
	// Count is the number of logical CPUs the kernel sees.
	Count int `json:"count"`
	// Sockets is the number of physical packages, when the kernel says.
	Sockets int    `json:"sockets,omitempty"`
	Model   string `json:"model,omitempty"`
	// Flags that matter for scheduling workloads (virtualisation and AES), not the full
	// list.
	Flags []string `json:"flags,omitempty"`
}

// Memory sizes in bytes.
type Memory struct {
	// InstalledBytes is the sum of the memory devices in SMBIOS (type 17): what was
	// bought, and what QEMU's -m says. 0 when the firmware has no such table.
	InstalledBytes uint64 `json:"installedBytes"`
	// UsableBytes is the kernel's MemTotal: installed memory less what firmware and the
	// kernel keep.
	UsableBytes uint64 `json:"usableBytes"`
	// DIMMs is the number of populated memory devices in SMBIOS.
	DIMMs int `json:"dimms,omitempty"`
}

// Disk is a whole block device (loop, ram, zram and optical devices are left out).
type Disk struct {
	// Name is the kernel name, e.g. sda, vda, nvme0n1; the device is /dev/Name.
	Name      string `json:"name"`
	SizeBytes uint64 `json:"sizeBytes"`
	Model     string `json:"model,omitempty"`
	Serial    string `json:"serial,omitempty"`
	// WWN is the World Wide Name (or NVMe EUI/NGUID) when the device has one.
	WWN        string `json:"wwn,omitempty"`
	Rotational bool   `json:"rotational"`
	Removable  bool   `json:"removable"`
	ReadOnly   bool   `json:"readOnly,omitempty"`
	// LogicalSectorBytes is the addressing unit (512 or 4096).
	LogicalSectorBytes int `json:"logicalSectorBytes,omitempty"`
}

// NIC is an Ethernet interface with a device behind it (no virtual interfaces).
type NIC struct {
	Name string `json:"name"`
	MAC  string `json:"mac"`
	// SpeedMbps is the negotiated link speed; 0 when unknown or the link is down.
	SpeedMbps int  `json:"speedMbps,omitempty"`
	Carrier   bool `json:"carrier"`
	// Driver is the kernel driver bound to the device, e.g. virtio_net, e1000e, ixgbe.
	Driver string `json:"driver,omitempty"`
	// Boot is true for the NIC named by rackboot.mac.
	Boot bool `json:"boot,omitempty"`
}

// Action is what a Plan makes the agent do.
type Action string

const (
	// ActionInspect: report facts (hello already did) and end.
	ActionInspect Action = "inspect"
	// ActionProvision: write an image to the root disk and point it at its cloud-init.
	ActionProvision Action = "provision"
	// ActionDeprovision: wipe disks.
	ActionDeprovision Action = "deprovision"
	// ActionWait: ask again after WaitSeconds (the server is not ready, e.g. an image is
	// still being downloaded and verified).
	ActionWait Action = "wait"
)

// Plan is the server's answer to hello.
type Plan struct {
	Action Action `json:"action"`
	// PowerOff makes the agent power the host off when the action succeeded; false
	// reboots it (the server sets the next boot device). Inspection and deprovisioning
	// normally power off, provisioning reboots into the installed system. On an error the
	// agent always powers off.
	PowerOff bool `json:"powerOff"`
	// WaitSeconds is how long a "wait" plan waits before the next hello (1-600; 0 means 10).
	WaitSeconds int          `json:"waitSeconds,omitempty"`
	Provision   *Provision   `json:"provision,omitempty"`
	Deprovision *Deprovision `json:"deprovision,omitempty"`
	// Message is logged on the host's console, for the operator watching it.
	Message string `json:"message,omitempty"`
}

// Format is how an image file is compressed.
type Format string

const (
	// FormatAuto detects gzip, zstd and xz by their magic bytes, else raw.
	FormatAuto Format = ""
	FormatRaw  Format = "raw"
	FormatGzip Format = "gzip"
	FormatZstd Format = "zstd"
	FormatXz   Format = "xz"
)

// Valid reports whether f is a known format (FormatAuto included).
func (f Format) Valid() bool {
	switch f {
	case FormatAuto, FormatRaw, FormatGzip, FormatZstd, FormatXz, "auto":
		return true
	}
	return false
}

// Provision is a provisioning plan.
type Provision struct {
	// ImageURL is an http(s) URL the agent GETs, with Range requests to resume; the
	// server serves its cached copy.
	ImageURL string `json:"imageURL"`
	// SHA256 is the hex sha256 of the file as served (before decompression).
	SHA256 string `json:"sha256"`
	// Format of the file; FormatAuto (empty or "auto") detects it.
	Format Format `json:"format,omitempty"`
	// Size is the file's size as served, in bytes; 0 if unknown. It drives progress and
	// whether the agent can verify the image in memory before touching the disk.
	Size int64 `json:"size,omitempty"`
	// RootDisk chooses the disk to write; the zero value takes the smallest fixed disk.
	RootDisk  RootDiskHint `json:"rootDisk"`
	CloudInit CloudInit    `json:"cloudInit"`
	// Ignition is the host's Ignition config, for CloudInit.Mode "ignition" (and only
	// then).
	Ignition *Ignition `json:"ignition,omitempty"`
}

// Ignition is an Ignition config the agent installs on the written disk, where the
// image's own Ignition reads it in the initramfs of the first boot, with no network
// needed for it (see CloudInitIgnition).
type Ignition struct {
	// Config is the Ignition JSON (spec 3.x) as the server rendered it for this host
	// (the user's config plus rackboot's phone-home unit), written byte for byte; base64
	// in JSON. At most MaxIgnitionBytes.
	Config []byte `json:"config"`
}

// CloudInitMode says how the installed system is pointed at its cloud-init.
type CloudInitMode string

const (
	// CloudInitNone leaves the installed system as the image made it.
	CloudInitNone CloudInitMode = "none"
	// CloudInitDropIn mounts the image's root filesystem (the ext4 partition holding
	// etc/cloud) and writes etc/cloud/cloud.cfg.d/99-rackboot.cfg pointing the NoCloud
	// datasource at SeedURL. Works with stock cloud images that ship cloud-init.
	CloudInitDropIn CloudInitMode = "dropin"
	// CloudInitCIData adds a small VFAT partition labelled CIDATA at the end of the root
	// disk holding meta-data, user-data, vendor-data and network-config fetched from
	// SeedURL, for images whose root filesystem the agent cannot write.
	CloudInitCIData CloudInitMode = "cidata"
	// CloudInitIgnition is for Flatcar and Fedora CoreOS images, which have Ignition
	// instead of cloud-init: the agent writes Provision.Ignition.Config where the
	// image's first boot reads it on bare metal (platform "metal"): config.ign at the
	// root of the filesystem labelled OEM (Flatcar; btrfs, ext4 before Flatcar moved
	// it to btrfs), or ignition/config.ign in the filesystem labelled boot (Fedora
	// CoreOS; ext4), mode 0600: it may hold secrets. SeedURL is not used. Added within
	// v1: an agent that predates it refuses the plan (Validate) and powers off, so no
	// host boots an Ignition image without its config.
	CloudInitIgnition CloudInitMode = "ignition"
)

// CloudInit points the installed system at its per-host NoCloud data.
type CloudInit struct {
	Mode CloudInitMode `json:"mode"`
	// SeedURL is the NoCloud-net base URL, ending in "/": cloud-init fetches
	// SeedURL+"meta-data", "user-data", "vendor-data" and "network-config".
	SeedURL string `json:"seedURL,omitempty"`
}

// WipeMode is how thoroughly a disk is wiped.
type WipeMode string

const (
	// WipeQuick zeroes the first and last MiB of the disk and of each partition:
	// partition tables (both GPT copies), filesystem, RAID and LVM signatures.
	WipeQuick WipeMode = "quick"
	// WipeFull zeroes every block, reporting progress; hours on a large disk.
	WipeFull WipeMode = "full"
)

// Deprovision is a wipe plan.
type Deprovision struct {
	Wipe WipeMode `json:"wipe"`
	// Disks names the disks to wipe (kernel names); empty wipes every fixed
	// (non-removable, writable) disk.
	Disks []string `json:"disks,omitempty"`
}

// Phase is a step of a plan, reported in Progress and, for failures, in Result.
type Phase string

const (
	PhaseNetwork   Phase = "network"
	PhaseInspect   Phase = "inspect"
	PhaseWipe      Phase = "wipe"
	PhaseDownload  Phase = "download" // downloading to memory to verify first
	PhaseWrite     Phase = "write"    // streaming the image to disk
	PhaseVerify    Phase = "verify"
	PhaseCloudInit Phase = "cloud-init"
	PhaseDone      Phase = "done"
)

// Progress reports how far a plan is.
type Progress struct {
	Phase Phase `json:"phase"`
	// Disk is the disk the phase works on, when it is about one.
	Disk       string `json:"disk,omitempty"`
	BytesDone  int64  `json:"bytesDone,omitempty"`
	BytesTotal int64  `json:"bytesTotal,omitempty"`
	Message    string `json:"message,omitempty"`
}

// Result is the outcome of a plan; the last message of a boot.
type Result struct {
	Action Action `json:"action"`
	OK     bool   `json:"ok"`
	// Error says what went wrong and, where it can, what to do; empty when OK.
	Error string `json:"error,omitempty"`
	// Phase is where it failed, or PhaseDone.
	Phase Phase `json:"phase,omitempty"`
	// RootDisk is the disk the image was written to.
	RootDisk string `json:"rootDisk,omitempty"`
	// ImageSHA256 is the checksum the agent computed over the bytes it received.
	ImageSHA256 string `json:"imageSHA256,omitempty"`
	// ImageBytes is how many bytes were downloaded; BytesWritten how many were written
	// to the root disk (after decompression).
	ImageBytes   int64 `json:"imageBytes,omitempty"`
	BytesWritten int64 `json:"bytesWritten,omitempty"`
	// RootPartition is the partition that got the cloud-init drop-in (e.g. vda1), the
	// CIDATA partition that was added, or the partition that got the Ignition config
	// (e.g. vda6, Flatcar's OEM).
	RootPartition string `json:"rootPartition,omitempty"`
	// Wiped lists the disks that were wiped.
	Wiped []string `json:"wiped,omitempty"`
	// Seconds is how long the plan took.
	Seconds float64 `json:"seconds,omitempty"`
	// Next is what the agent does after this message: "reboot" or "poweroff".
	Next string `json:"next,omitempty"`
}

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	Error string `json:"error"`
}

// Validate checks what the server relies on in a hello.
func (h *Hello) Validate() error {
	if _, err := net.ParseMAC(h.MAC); err != nil {
		return fmt.Errorf("hello: mac %q: %w", h.MAC, err)
	}
	if len(h.Facts.Disks) > 1024 || len(h.Facts.NICs) > 1024 {
		return errors.New("hello: more than 1024 disks or NICs")
	}
	return nil
}

// Validate checks a plan before the server sends it (and the agent before it runs it),
// so a bad plan is an error on the server, never a half-run plan on a host.
func (p *Plan) Validate() error {
	switch p.Action {
	case ActionInspect:
	case ActionWait:
		if p.WaitSeconds < 0 || p.WaitSeconds > 600 {
			return fmt.Errorf("plan: waitSeconds %d: give 1-600", p.WaitSeconds)
		}
	case ActionProvision:
		if p.Provision == nil {
			return errors.New("plan: action provision without provision")
		}
		return p.Provision.Validate()
	case ActionDeprovision:
		if p.Deprovision == nil {
			return errors.New("plan: action deprovision without deprovision")
		}
		switch p.Deprovision.Wipe {
		case WipeQuick, WipeFull:
		default:
			return fmt.Errorf("plan: wipe %q: use quick or full", p.Deprovision.Wipe)
		}
		for _, d := range p.Deprovision.Disks {
			if !validDiskName(d) {
				return fmt.Errorf("plan: disk %q is not a kernel block device name", d)
			}
		}
	default:
		return fmt.Errorf("plan: unknown action %q: use inspect, provision, deprovision or wait", p.Action)
	}
	return nil
}

// Validate checks a provisioning plan.
func (p *Provision) Validate() error {
	u, err := url.Parse(p.ImageURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("provision: imageURL %q is not an http(s) URL", p.ImageURL)
	}
	if !isHexSHA256(p.SHA256) {
		return fmt.Errorf("provision: sha256 %q is not 64 hex digits", p.SHA256)
	}
	if !p.Format.Valid() {
		return fmt.Errorf("provision: format %q: use raw, gzip, zstd, xz or leave it empty to detect", p.Format)
	}
	if p.Size < 0 {
		return fmt.Errorf("provision: size %d is negative", p.Size)
	}
	if err := p.RootDisk.Validate(); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	switch p.CloudInit.Mode {
	case CloudInitNone, "":
	case CloudInitDropIn, CloudInitCIData:
		u, err := url.Parse(p.CloudInit.SeedURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.HasSuffix(u.Path, "/") {
			return fmt.Errorf("provision: cloudInit.seedURL %q: give the http(s) NoCloud-net URL ending in /", p.CloudInit.SeedURL)
		}
		// The URL lands in a YAML file and on no command line; still refuse what could
		// break the YAML line it is written on.
		if strings.ContainsAny(p.CloudInit.SeedURL, " \t\r\n\"'#{}[],&*!|>%@`") {
			return fmt.Errorf("provision: cloudInit.seedURL %q contains characters that need quoting in YAML: percent-encode them", p.CloudInit.SeedURL)
		}
	case CloudInitIgnition:
		if p.Ignition == nil {
			return errors.New("provision: cloudInit.mode ignition without an ignition config")
		}
		if err := p.Ignition.Validate(); err != nil {
			return fmt.Errorf("provision: %w", err)
		}
	default:
		return fmt.Errorf("provision: cloudInit.mode %q: use dropin, cidata, ignition or none", p.CloudInit.Mode)
	}
	if p.Ignition != nil && p.CloudInit.Mode != CloudInitIgnition {
		return fmt.Errorf("provision: an ignition config with cloudInit.mode %q: the agent installs it only in mode ignition", p.CloudInit.Mode)
	}
	return nil
}

// Validate checks what the agent can check without Ignition's own parser (the server
// validated the config against the spec when it was given): a JSON object, not too
// large, with ignition.version set, so a truncated or mistaken config is refused before
// the disk is touched.
func (ig *Ignition) Validate() error {
	if len(ig.Config) == 0 || len(ig.Config) > MaxIgnitionBytes {
		return fmt.Errorf("ignition config of %d bytes: give 1-%d", len(ig.Config), MaxIgnitionBytes)
	}
	var doc struct {
		Ignition struct {
			Version string `json:"version"`
		} `json:"ignition"`
	}
	if err := json.Unmarshal(ig.Config, &doc); err != nil {
		return fmt.Errorf("ignition config is not a JSON object: %w", err)
	}
	if doc.Ignition.Version == "" {
		return errors.New("ignition config has no ignition.version")
	}
	return nil
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
			return false
		}
	}
	return true
}

// validDiskName accepts a kernel block device name, with or without /dev/.
func validDiskName(s string) bool {
	s = strings.TrimPrefix(s, "/dev/")
	if s == "" || len(s) > 32 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '!') {
			return false
		}
	}
	return true
}
