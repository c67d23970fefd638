package inventory

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/rackboot/rackboot/internal/netconfig"
)

// State is where a host is in its life (see DESIGN.md, "A host's life").
type State string

const (
	StateEnrolled       State = "enrolled"
	StateDiscovered     State = "discovered"
	StateInspecting     State = "inspecting"
	StateAvailable      State = "available"
	StateProvisioning   State = "provisioning"
	StateProvisioned    State = "provisioned"
	StateDeprovisioning State = "deprovisioning"
	StateFailed         State = "failed"
)

// States lists every state in life order; used for validation and metrics.
var States = []State{
	StateEnrolled, StateDiscovered, StateInspecting, StateAvailable,
	StateProvisioning, StateProvisioned, StateDeprovisioning, StateFailed,
}

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	for _, k := range States {
		if s == k {
			return true
		}
	}
	return false
}

// Firmware is how a host boots, as reported by DHCP (option 93) or set by the operator.
type Firmware string

const (
	FirmwareUnknown Firmware = ""
	FirmwareBIOS    Firmware = "bios"
	FirmwareUEFI    Firmware = "uefi"
)

// BootProfile is an explicit "boot this kernel" instruction, like Matchbox profiles or
// pixiecore: while a host carries one, its iPXE script boots it whatever its state.
type BootProfile struct {
	Kernel  string   `json:"kernel"`
	Initrds []string `json:"initrds,omitempty"`
	Cmdline string   `json:"cmdline,omitempty"`
}

// Validate checks that the profile names a kernel.
func (p *BootProfile) Validate() error {
	if p == nil {
		return nil
	}
	if strings.TrimSpace(p.Kernel) == "" {
		return fmt.Errorf("boot profile: kernel is empty: give the kernel's URL or a path under the assets directory")
	}
	return nil
}

// BMC is how to reach a host's baseboard management controller. The store keeps the
// password only sealed (secret.go); no read returns it except Store.BMCCredentials.
type BMC struct {
	// URL is ipmi://USER@HOST:PORT, redfish://USER@HOST or redfish+http://USER@HOST:PORT.
	URL string `json:"url"`
	// Password is write-only: set by callers when enrolling or changing it, never
	// returned by reads, the API or the CLI.
	Password string `json:"password,omitempty"`
	// PasswordSet says whether the store holds a password for this BMC. On writes, a
	// non-empty Password replaces the stored one; an empty Password keeps it when
	// PasswordSet is true and removes it when false.
	PasswordSet bool `json:"passwordSet,omitempty"`
}

// Host is one server in the rack.
type Host struct {
	// ID is a stable, DNS-label-like name: the operator's choice, else the hostname, else
	// derived from the first MAC ("mac-525400aabbcc").
	ID       string            `json:"id"`
	MACs     []string          `json:"macs"`
	Hostname string            `json:"hostname,omitempty"`
	IP       string            `json:"ip,omitempty"` // reserved IPv4 address, if any
	Labels   map[string]string `json:"labels,omitempty"`
	Arch     string            `json:"arch,omitempty"` // "x86_64", "arm64"; learned from DHCP option 93
	Firmware Firmware          `json:"firmware,omitempty"`
	BMC      *BMC              `json:"bmc,omitempty"`
	State    State             `json:"state"`
	// StateReason says why the host is in its state (always set for failed).
	StateReason string       `json:"stateReason,omitempty"`
	Boot        *BootProfile `json:"boot,omitempty"`
	// Network is the installed OS's network (NICs by MAC, bonds, VLANs, static
	// addresses, routes, DNS), set by the operator; nil means the default: the NIC the
	// host provisioned through, with its reserved address as a static configuration
	// (package metadata renders it). A provisioning may carry its own (Provision.Network),
	// which wins.
	Network   *netconfig.Spec `json:"network,omitempty"`
	CreatedAt time.Time       `json:"createdAt"`
	UpdatedAt time.Time       `json:"updatedAt"`
	// Revision increases on every write, so callers can see a host changed.
	Revision uint64 `json:"revision"`

	// Claim says who owns the host (claim.go). A value, not a pointer, so Clone copies
	// it; the zero Claim means unclaimed.
	Claim Claim `json:"claim,omitzero"`

	// ---- Provisioning (issue 4). Written only by the provision package, through
	// BoltStore.TransitionHost (provision.go), which keeps the token index in step. ----

	// Facts is the hardware the agent reported at the host's last agent boot.
	Facts *HostFacts `json:"facts,omitempty"`
	// Provision is the image the host holds or is getting, with its request and
	// result; nil while it holds none.
	Provision *Provision `json:"provision,omitempty"`
	// Operation is the agent-driven operation in progress (inspection, provisioning,
	// deprovisioning), or the one a failed host failed in; nil otherwise.
	Operation *Operation `json:"operation,omitempty"`
}

// Addr returns the reserved address, or the zero Addr when there is none.
func (h *Host) Addr() netip.Addr {
	a, err := netip.ParseAddr(h.IP)
	if err != nil {
		return netip.Addr{}
	}
	return a
}

// HasMAC reports whether mac (normalised) is one of the host's.
func (h *Host) HasMAC(mac string) bool {
	for _, m := range h.MACs {
		if m == mac {
			return true
		}
	}
	return false
}

// Clone returns a deep copy, so callers can change it without touching shared state.
func (h Host) Clone() Host {
	c := h
	c.MACs = append([]string(nil), h.MACs...)
	if h.Labels != nil {
		c.Labels = make(map[string]string, len(h.Labels))
		for k, v := range h.Labels {
			c.Labels[k] = v
		}
	}
	if h.BMC != nil {
		b := *h.BMC
		c.BMC = &b
	}
	if h.Boot != nil {
		b := *h.Boot
		b.Initrds = append([]string(nil), h.Boot.Initrds...)
		c.Boot = &b
	}
	if h.Network != nil {
		n := h.Network.Clone()
		c.Network = &n
	}
	cloneProvisioning(&c) // provision.go
	return c
}

// Redacted returns a copy safe to log or return from the API: no BMC password.
func (h Host) Redacted() Host {
	c := h.Clone()
	if c.BMC != nil {
		c.BMC.Password = ""
	}
	return c
}

// Lease is a DHCP address binding. Reservations live on Host; leases record what was
// actually handed out (reserved or from the pool), so both survive restarts.
type Lease struct {
	MAC      string     `json:"mac"`
	IP       string     `json:"ip"`
	Hostname string     `json:"hostname,omitempty"`
	State    LeaseState `json:"state"`
	Expires  time.Time  `json:"expires"`
	Updated  time.Time  `json:"updated"`
}

// LeaseState distinguishes an offer held for a client from a bound lease.
type LeaseState string

const (
	LeaseOffered  LeaseState = "offered"
	LeaseBound    LeaseState = "bound"
	LeaseDeclined LeaseState = "declined" // address reported in use by DHCPDECLINE; quarantined until Expires
)

// Event is one step on a host's timeline.
type Event struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Type    string            `json:"type"` // dotted, e.g. "dhcp.offer", "tftp.read", "http.script", "boot.phonehome"
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

var (
	idRe    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	labelRe = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	valueRe = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
)

// NormalizeMAC parses a 6-byte MAC in any form net.ParseMAC accepts (or bare hex) and
// returns it lower-case and colon-separated.
func NormalizeMAC(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) == 12 && !strings.ContainsAny(s, ":-.") {
		var b strings.Builder
		for i := 0; i < 12; i += 2 {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(s[i : i+2])
		}
		s = b.String()
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not a MAC address: write six hex bytes, e.g. 52:54:00:12:34:56", s)
	}
	return hw.String(), nil
}

// ValidateHostMAC refuses MACs no NIC has as its own: the all-zero address, the
// broadcast address and multicast (group) addresses, whose I/G bit is set. A host with
// one could never DHCP with it, and a reservation for it would answer whatever sent
// such a frame. mac is normalised (NormalizeMAC).
func ValidateHostMAC(mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("%q is not a MAC address: write six hex bytes, e.g. 52:54:00:12:34:56", mac)
	}
	switch {
	case mac == "00:00:00:00:00:00":
		return fmt.Errorf("MAC %s is all zeros: give the NIC's own address", mac)
	case mac == "ff:ff:ff:ff:ff:ff":
		return fmt.Errorf("MAC %s is the broadcast address: give the NIC's own address", mac)
	case hw[0]&1 == 1:
		return fmt.Errorf("MAC %s is a multicast address (the low bit of its first byte is set): give the NIC's own (unicast) address", mac)
	}
	return nil
}

// ValidateID checks a host ID: lower-case letters, digits and '-', at most 63 characters.
func ValidateID(id string) error {
	if !idRe.MatchString(id) {
		return fmt.Errorf("host ID %q is invalid: use lower-case letters, digits and '-', 1-63 characters, starting and ending with a letter or digit", id)
	}
	return nil
}

// ValidateLabel checks a label key and value, Kubernetes-style, so labels can feed CAPI
// host selectors unchanged.
func ValidateLabel(k, v string) error {
	if !labelRe.MatchString(k) || len(k) > 253 {
		return fmt.Errorf("label key %q is invalid: use letters, digits, '-', '_' and '.', optionally prefixed by a DNS name and '/'", k)
	}
	if !valueRe.MatchString(v) {
		return fmt.Errorf("label %s: value %q is invalid: use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit", k, v)
	}
	return nil
}

// ParseLabel splits "k=v".
func ParseLabel(s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("label %q: write it as key=value", s)
	}
	return k, v, ValidateLabel(k, v)
}

// DefaultID derives an ID for a host that was given none.
func DefaultID(h *Host) string {
	if h.Hostname != "" {
		if short, _, _ := strings.Cut(strings.ToLower(h.Hostname), "."); idRe.MatchString(short) {
			return short
		}
	}
	if len(h.MACs) > 0 {
		return "mac-" + strings.ReplaceAll(h.MACs[0], ":", "")
	}
	return ""
}

// Normalize fills defaults and canonical forms in place and validates the host as a
// whole. It does not check uniqueness against other hosts: the store does that.
func (h *Host) Normalize() error {
	if len(h.MACs) == 0 {
		return fmt.Errorf("host %s: no MAC address: give at least one with --mac", h.ID)
	}
	seen := map[string]bool{}
	for i, m := range h.MACs {
		n, err := NormalizeMAC(m)
		if err != nil {
			return err
		}
		if err := ValidateHostMAC(n); err != nil {
			return err
		}
		if seen[n] {
			return fmt.Errorf("MAC %s is given twice", n)
		}
		seen[n] = true
		h.MACs[i] = n
	}
	if h.ID == "" {
		h.ID = DefaultID(h)
	}
	if err := ValidateID(h.ID); err != nil {
		return err
	}
	if h.IP != "" {
		a, err := netip.ParseAddr(h.IP)
		if err != nil || !a.Is4() {
			return fmt.Errorf("host %s: IP %q is not an IPv4 address", h.ID, h.IP)
		}
		h.IP = a.String()
	}
	if h.Hostname != "" && !validHostname(h.Hostname) {
		return fmt.Errorf("host %s: hostname %q is invalid: use letters, digits, '-' and '.' (RFC 1123)", h.ID, h.Hostname)
	}
	keys := make([]string, 0, len(h.Labels))
	for k := range h.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := ValidateLabel(k, h.Labels[k]); err != nil {
			return fmt.Errorf("host %s: %w", h.ID, err)
		}
	}
	if h.State == "" {
		h.State = StateEnrolled
	}
	if !h.State.Valid() {
		return fmt.Errorf("host %s: unknown state %q", h.ID, h.State)
	}
	switch h.Firmware {
	case FirmwareUnknown, FirmwareBIOS, FirmwareUEFI:
	default:
		return fmt.Errorf("host %s: firmware %q is invalid: use bios or uefi", h.ID, h.Firmware)
	}
	return h.Boot.Validate()
}

var hostnameLabel = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$`)

func validHostname(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !hostnameLabel.MatchString(l) {
			return false
		}
	}
	return true
}

// InspectedNICs are the NICs h's last inspection found, as netconfig.Validate takes
// them: nil for a host not yet inspected, whose network spec can then be checked only
// for its own consistency (it is checked again when the host is provisioned).
func (h *Host) InspectedNICs() []netconfig.NIC {
	if h.Facts == nil {
		return nil
	}
	nics := make([]netconfig.NIC, 0, len(h.Facts.NICs))
	for _, n := range h.Facts.NICs {
		nics = append(nics, netconfig.NIC{Name: n.Name, MAC: n.MAC})
	}
	return nics
}
