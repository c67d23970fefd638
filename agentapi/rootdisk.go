package agentapi

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Prefer values of RootDiskHint.
const (
	PreferSmallest = "smallest"
	PreferLargest  = "largest"
)

// RootDiskHint chooses the root disk among the host's fixed disks (not removable, not
// read-only). Every field that is set must match; among the disks left, Prefer picks one.
// The zero value picks the smallest fixed disk, which on a server is the boot SSD rather
// than a data array (the same default as Ironic).
type RootDiskHint struct {
	// Name is a kernel name (sda, nvme0n1), with or without /dev/.
	Name   string `json:"name,omitempty"`
	Serial string `json:"serial,omitempty"`
	WWN    string `json:"wwn,omitempty"`
	// MinSizeBytes and MaxSizeBytes bound the disk size (0: no bound).
	MinSizeBytes uint64 `json:"minSizeBytes,omitempty"`
	MaxSizeBytes uint64 `json:"maxSizeBytes,omitempty"`
	// Prefer is "smallest" (default) or "largest".
	Prefer string `json:"prefer,omitempty"`
}

// Validate checks the hint's own consistency.
func (h RootDiskHint) Validate() error {
	if h.Name != "" && !validDiskName(h.Name) {
		return fmt.Errorf("root disk hint: name %q is not a kernel block device name", h.Name)
	}
	switch h.Prefer {
	case "", PreferSmallest, PreferLargest:
	default:
		return fmt.Errorf("root disk hint: prefer %q: use smallest or largest", h.Prefer)
	}
	if h.MaxSizeBytes != 0 && h.MinSizeBytes > h.MaxSizeBytes {
		return fmt.Errorf("root disk hint: min size %d is above max size %d", h.MinSizeBytes, h.MaxSizeBytes)
	}
	return nil
}

// ErrNoRootDisk means no disk matched the hint.
var ErrNoRootDisk = errors.New("no disk matches the root disk hint")

// Choose picks the root disk from disks. The error lists the disks there are, so the
// operator can fix the hint.
func (h RootDiskHint) Choose(disks []Disk) (Disk, error) {
	if err := h.Validate(); err != nil {
		return Disk{}, err
	}
	name := strings.TrimPrefix(h.Name, "/dev/")
	var cand []Disk
	for _, d := range disks {
		switch {
		case d.Removable || d.ReadOnly || d.SizeBytes == 0:
		case name != "" && d.Name != name:
		case h.Serial != "" && d.Serial != h.Serial:
		case h.WWN != "" && !strings.EqualFold(d.WWN, h.WWN):
		case h.MinSizeBytes != 0 && d.SizeBytes < h.MinSizeBytes:
		case h.MaxSizeBytes != 0 && d.SizeBytes > h.MaxSizeBytes:
		default:
			cand = append(cand, d)
		}
	}
	if len(cand) == 0 {
		var have []string
		for _, d := range disks {
			s := fmt.Sprintf("%s (%s", d.Name, FormatBytes(d.SizeBytes))
			if d.Serial != "" {
				s += ", serial " + d.Serial
			}
			if d.Removable {
				s += ", removable"
			}
			if d.ReadOnly {
				s += ", read-only"
			}
			have = append(have, s+")")
		}
		if len(have) == 0 {
			have = []string{"none: is the storage driver in the boot environment?"}
		}
		return Disk{}, fmt.Errorf("%w %s; the host has: %s", ErrNoRootDisk, h, strings.Join(have, ", "))
	}
	sort.SliceStable(cand, func(i, j int) bool {
		if cand[i].SizeBytes != cand[j].SizeBytes {
			if h.Prefer == PreferLargest {
				return cand[i].SizeBytes > cand[j].SizeBytes
			}
			return cand[i].SizeBytes < cand[j].SizeBytes
		}
		return cand[i].Name < cand[j].Name
	})
	return cand[0], nil
}

// String renders the hint in the syntax ParseRootDiskHint reads.
func (h RootDiskHint) String() string {
	var parts []string
	if h.Name != "" {
		parts = append(parts, "name="+h.Name)
	}
	if h.Serial != "" {
		parts = append(parts, "serial="+h.Serial)
	}
	if h.WWN != "" {
		parts = append(parts, "wwn="+h.WWN)
	}
	if h.MinSizeBytes != 0 {
		parts = append(parts, "min="+strconv.FormatUint(h.MinSizeBytes, 10))
	}
	if h.MaxSizeBytes != 0 {
		parts = append(parts, "max="+strconv.FormatUint(h.MaxSizeBytes, 10))
	}
	if h.Prefer != "" {
		parts = append(parts, h.Prefer)
	}
	if len(parts) == 0 {
		return "smallest"
	}
	return strings.Join(parts, ",")
}

// ParseRootDiskHint reads the CLI form of a hint (`rackboot host provision --root-disk`):
// comma-separated terms name=sda (or /dev/sda), serial=S, wwn=W, min=SIZE, max=SIZE,
// smallest, largest. SIZE is bytes or a number with K, M, G, T (powers of 1024, an
// optional "i" and "B" accepted: 100G, 1.5TiB). A bare /dev/NAME is a name.
func ParseRootDiskHint(s string) (RootDiskHint, error) {
	var h RootDiskHint
	for _, term := range strings.Split(s, ",") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		k, v, ok := strings.Cut(term, "=")
		if !ok {
			switch {
			case term == PreferSmallest || term == PreferLargest:
				h.Prefer = term
			case strings.HasPrefix(term, "/dev/"):
				h.Name = term
			default:
				return RootDiskHint{}, fmt.Errorf("root disk hint %q: unknown term %q: use name=, serial=, wwn=, min=, max=, smallest or largest", s, term)
			}
			continue
		}
		var err error
		switch k {
		case "name":
			h.Name = v
		case "serial":
			h.Serial = v
		case "wwn":
			h.WWN = v
		case "min":
			h.MinSizeBytes, err = ParseBytes(v)
		case "max":
			h.MaxSizeBytes, err = ParseBytes(v)
		case "prefer":
			h.Prefer = v
		default:
			return RootDiskHint{}, fmt.Errorf("root disk hint %q: unknown key %q: use name, serial, wwn, min, max or prefer", s, k)
		}
		if err != nil {
			return RootDiskHint{}, fmt.Errorf("root disk hint %q: %w", s, err)
		}
	}
	if err := h.Validate(); err != nil {
		return RootDiskHint{}, err
	}
	return h, nil
}

// ParseBytes reads a size: plain bytes, or a number with a K, M, G, T or P suffix
// (powers of 1024; "KiB", "KB" and "k" all mean 1024).
func ParseBytes(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "b")
	t = strings.TrimSuffix(t, "i")
	mult := uint64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		case 't', 'T':
			mult = 1 << 40
		case 'p', 'P':
			mult = 1 << 50
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	if u, err := strconv.ParseUint(t, 10, 64); err == nil {
		if u > ^uint64(0)/mult {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return u * mult, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || f*float64(mult) >= 1<<64 {
		return 0, fmt.Errorf("size %q: want bytes or a number with K, M, G, T (e.g. 100G)", s)
	}
	return uint64(f * float64(mult)), nil
}

// FormatBytes renders n in binary units with one decimal (e.g. "1.0 GiB").
func FormatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
