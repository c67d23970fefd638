package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/netconfig"
)

// HostSpec is what a client may set when enrolling a host. State, timestamps and revision
// belong to the server, so they are not part of it and sending them is an error.
type HostSpec struct {
	// ID defaults to the short hostname, else "mac-" and the first MAC's hex.
	ID       string                 `json:"id,omitempty"`
	MACs     []string               `json:"macs"`
	Hostname string                 `json:"hostname,omitempty"`
	IP       string                 `json:"ip,omitempty"`
	Labels   map[string]string      `json:"labels,omitempty"`
	Arch     string                 `json:"arch,omitempty"`
	Firmware inventory.Firmware     `json:"firmware,omitempty"`
	BMC      *inventory.BMC         `json:"bmc,omitempty"`
	Boot     *inventory.BootProfile `json:"boot,omitempty"`
	// Network is the installed OS's network; nil takes the default (the provisioning
	// NIC with the reserved address, static).
	Network *NetworkSpec `json:"network,omitempty"`
}

// ImportRequest is the body of POST /api/v1/hosts/import.
type ImportRequest struct {
	Hosts []HostSpec `json:"hosts"`
}

// ImportResponse is its reply: the hosts as stored.
type ImportResponse struct {
	Hosts []Host `json:"hosts"`
}

// LabelsRequest is the body of POST /api/v1/hosts/{id}/labels. Removing a label the host
// does not have is not an error, so a request can be repeated safely.
type LabelsRequest struct {
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// Validate checks the request's keys and values.
func (l LabelsRequest) Validate() error {
	if len(l.Set) == 0 && len(l.Remove) == 0 {
		return errors.New("nothing to change: give labels to set and/or keys to remove")
	}
	for _, k := range sortedKeys(l.Set) {
		if err := inventory.ValidateLabel(k, l.Set[k]); err != nil {
			return err
		}
	}
	for _, k := range l.Remove {
		if err := inventory.ValidateLabel(k, ""); err != nil {
			return err
		}
		if _, ok := l.Set[k]; ok {
			return fmt.Errorf("label %s is both set and removed: do one or the other", k)
		}
	}
	return nil
}

var archRe = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

// Host validates the spec and returns the host it describes, normalised (canonical MACs,
// default ID, state enrolled). It checks everything that does not need the inventory or
// the server's subnets, so the CLI runs it before sending and gets the same errors.
func (s HostSpec) Host() (inventory.Host, error) {
	if len(s.MACs) == 0 {
		return inventory.Host{}, errors.New("no MAC address: every host needs at least one (macs in the API and host files, --mac on the command line)")
	}
	h := inventory.Host{
		ID:       s.ID,
		MACs:     append([]string(nil), s.MACs...),
		Hostname: s.Hostname,
		IP:       s.IP,
		Labels:   s.Labels,
		Arch:     s.Arch,
		Firmware: s.Firmware,
		BMC:      s.BMC,
		Boot:     s.Boot,
		Network:  s.Network,
	}
	h = h.Clone()
	if err := h.Normalize(); err != nil {
		return inventory.Host{}, err
	}
	if h.Arch != "" && !archRe.MatchString(h.Arch) {
		return inventory.Host{}, fmt.Errorf("host %s: arch %q is invalid: use e.g. x86_64 or arm64", h.ID, h.Arch)
	}
	if err := validateBMC(h.BMC); err != nil {
		return inventory.Host{}, fmt.Errorf("host %s: %w", h.ID, err)
	}
	if err := ValidateBoot(h.Boot); err != nil {
		return inventory.Host{}, fmt.Errorf("host %s: %w", h.ID, err)
	}
	// The network spec is checked on its own here (a spec has no facts): HostPatch.Apply
	// and the provisioner check it against the NICs the host's inspection found.
	if h.Network != nil {
		if h.Network.IsZero() {
			h.Network = nil
		} else if err := netconfig.Validate(*h.Network, nil); err != nil {
			return inventory.Host{}, fmt.Errorf("host %s: %w", h.ID, err)
		} else {
			n := netconfig.Normalize(*h.Network)
			h.Network = &n
		}
	}
	return h, nil
}

func validateBMC(b *inventory.BMC) error {
	if b == nil {
		return nil
	}
	// The URL is returned by the API and logged; only the password field is write-only,
	// so ParseURL refuses a URL that carries one.
	if _, err := bmc.ParseURL(b.URL); err != nil {
		return err
	}
	return nil
}

// MaxCmdline bounds a kernel command line (Linux's own limit on x86 is 2048 by default,
// up to 4096 when configured).
const MaxCmdline = 4096

// ValidateBoot checks a boot profile before it reaches an iPXE script. Kernel and initrds
// are http(s)/tftp URLs or clean paths relative to the server's assets directory; no field
// may carry whitespace in URLs or control characters anywhere, because each ends up on a
// line of an iPXE script and a newline would inject commands.
func ValidateBoot(p *inventory.BootProfile) error {
	if p == nil {
		return nil
	}
	if err := p.Validate(); err != nil {
		return err
	}
	if err := validateBootLocation("kernel", p.Kernel); err != nil {
		return err
	}
	for i, initrd := range p.Initrds {
		if err := validateBootLocation(fmt.Sprintf("initrd %d", i+1), initrd); err != nil {
			return err
		}
	}
	if len(p.Cmdline) > MaxCmdline {
		return fmt.Errorf("boot profile: cmdline is %d bytes, more than the %d a kernel accepts", len(p.Cmdline), MaxCmdline)
	}
	for _, r := range p.Cmdline {
		if unicode.IsControl(r) {
			return fmt.Errorf("boot profile: cmdline contains the control character %U: write it on one line", r)
		}
	}
	return nil
}

func validateBootLocation(what, s string) error {
	if s == "" {
		return fmt.Errorf("boot profile: %s is empty", what)
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("boot profile: %s %q contains whitespace or a control character: percent-encode it", what, s)
		}
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("boot profile: %s %q is not a valid URL: %v", what, s, err)
		}
		switch u.Scheme {
		case "http", "https", "tftp":
		default:
			return fmt.Errorf("boot profile: %s %q: scheme %q is not one iPXE fetches: use http, https or tftp", what, s, u.Scheme)
		}
		if u.Host == "" {
			return fmt.Errorf("boot profile: %s %q has no host", what, s)
		}
		return nil
	}
	if !fs.ValidPath(s) || s == "." {
		return fmt.Errorf("boot profile: %s %q is neither a URL nor a clean path relative to the assets directory (no leading '/', no '..'): write e.g. http://HOST/vmlinuz or debian/vmlinuz", what, s)
	}
	return nil
}

// ServerRules are what a host may not share with the server: its address as a
// reservation, and the MACs of its interfaces.
type ServerRules struct {
	Subnets []netip.Prefix
	IP      netip.Addr
	MACs    []string
}

// Check rejects a host that takes the server's own address or MAC, or a reserved IP
// that DHCP could never hand out.
func (sr ServerRules) Check(h *inventory.Host) error {
	if sr.IP.IsValid() && h.IP != "" && h.Addr() == sr.IP {
		return fmt.Errorf("host %s: IP %s is this rackboot server's own address: reserve another one", h.ID, h.IP)
	}
	for _, m := range h.MACs {
		if slices.Contains(sr.MACs, m) {
			return fmt.Errorf("host %s: MAC %s is this rackboot server's own interface: give the host's NIC", h.ID, m)
		}
	}
	return checkSubnet(h, sr.Subnets)
}

// checkSubnet rejects a reserved IP that DHCP could never hand out.
func checkSubnet(h *inventory.Host, subnets []netip.Prefix) error {
	if h.IP == "" || len(subnets) == 0 {
		return nil
	}
	a := h.Addr()
	for _, p := range subnets {
		p = p.Masked()
		if !p.Contains(a) {
			continue
		}
		if p.Bits() <= 30 {
			if a == p.Addr() {
				return fmt.Errorf("host %s: IP %s is the network address of subnet %s: pick a host address", h.ID, a, p)
			}
			if a == lastAddr(p) {
				return fmt.Errorf("host %s: IP %s is the broadcast address of subnet %s: pick a host address", h.ID, a, p)
			}
		}
		return nil
	}
	names := make([]string, len(subnets))
	for i, p := range subnets {
		names[i] = p.Masked().String()
	}
	return fmt.Errorf("host %s: IP %s is outside the DHCP subnets (%s): pick an address inside one of them", h.ID, a, strings.Join(names, ", "))
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	bits := p.Bits()
	for i := 0; i < 4; i++ {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	return netip.AddrFrom4(b)
}

// ValidateBatch validates specs as one all-or-nothing batch: each on its own, then against
// each other (IDs, MACs and reserved IPs must be unique within the batch; uniqueness
// against the inventory is the store's job). name says how errors refer to entry i.
func ValidateBatch(specs []HostSpec, rules ServerRules, name func(i int) string) ([]inventory.Host, error) {
	hosts := make([]inventory.Host, len(specs))
	ids, macs, ips := map[string]int{}, map[string]int{}, map[string]int{}
	for i, s := range specs {
		h, err := s.Host()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name(i), err)
		}
		if err := rules.Check(&h); err != nil {
			return nil, fmt.Errorf("%s: %w", name(i), err)
		}
		if j, dup := ids[h.ID]; dup {
			return nil, fmt.Errorf("%s: host ID %s is also used by %s: give each host its own id", name(i), h.ID, name(j))
		}
		ids[h.ID] = i
		for _, m := range h.MACs {
			if j, dup := macs[m]; dup {
				return nil, fmt.Errorf("%s: MAC %s is also used by %s", name(i), m, name(j))
			}
			macs[m] = i
		}
		if h.IP != "" {
			if j, dup := ips[h.IP]; dup {
				return nil, fmt.Errorf("%s: IP %s is also reserved by %s", name(i), h.IP, name(j))
			}
			ips[h.IP] = i
		}
		hosts[i] = h
	}
	return hosts, nil
}

// DecodeStrict decodes exactly one JSON value from data into v, rejecting unknown fields
// and trailing data; errors give the line and column of the problem.
func DecodeStrict(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("empty: send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("unexpected data after the JSON value at %s: send one JSON value", position(data, dec.InputOffset()))
	}
	return nil
}

func describeJSONError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		// Offset counts the offending byte itself.
		return fmt.Errorf("invalid JSON at %s: %s", position(data, syn.Offset-1), strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(top level)"
		}
		// Offset is the end of the value, so only its line is worth giving.
		line := bytes.Count(data[:min(max(typ.Offset, 0), int64(len(data)))], []byte("\n")) + 1
		return fmt.Errorf("field %s on line %d: got a JSON %s, want %s", field, line, typ.Value, jsonKind(typ.Type.String()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("JSON ends early: the body is truncated")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("unknown field %s: check its spelling; read-only fields (state, revision, timestamps) cannot be sent", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return fmt.Errorf("%w", err)
}

// jsonKind names a Go type the way a JSON author thinks of it.
func jsonKind(goType string) string {
	switch {
	case goType == "string" || strings.HasSuffix(goType, "Firmware"):
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["):
		return "an object"
	case strings.Contains(goType, "int"):
		return "a number"
	}
	return "an object"
}

// position turns a byte offset into "line L, column C" (both from 1).
func position(data []byte, off int64) string {
	if off < 0 {
		off = 0
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
