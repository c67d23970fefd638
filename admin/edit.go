package admin

import (
	"context"
	"fmt"
	"net/http"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/netconfig"
)

// HostPatch is the body of PATCH /api/v1/hosts/{id}: what an operator may change on an
// enrolled host. A field left out is kept; "ip": "" and "hostname": "" clear them; macs
// replaces the whole list (the first is the PXE one); labels sets and removes keys as
// POST .../labels does; network replaces the host's network spec, and an empty one ({})
// removes it (the host then gets the default). The spec is checked against the NICs the
// host's inspection found; it takes effect at the next provisioning.
type HostPatch struct {
	IP       *string        `json:"ip,omitempty"`
	Hostname *string        `json:"hostname,omitempty"`
	MACs     []string       `json:"macs,omitempty"`
	Labels   *LabelsRequest `json:"labels,omitempty"`
	Network  *NetworkSpec   `json:"network,omitempty"`
}

// Empty reports whether the patch changes nothing.
func (p HostPatch) Empty() bool {
	return p.IP == nil && p.Hostname == nil && p.MACs == nil && p.Labels == nil && p.Network == nil
}

// Apply returns h with the patch applied and validated as `host add` validates a new
// host (HostSpec.Host: MACs, IP, hostname, labels), without the server's subnets, which
// the server checks itself. The CLI runs it before sending, so it fails the same way.
func (p HostPatch) Apply(h inventory.Host) (inventory.Host, error) {
	if p.Empty() {
		return inventory.Host{}, fmt.Errorf("nothing to change: give ip, hostname, macs, labels and/or network")
	}
	if p.Labels != nil {
		if err := p.Labels.Validate(); err != nil {
			return inventory.Host{}, err
		}
	}
	if (p.IP != nil || p.MACs != nil) && bootBound(h.State) {
		return inventory.Host{}, fmt.Errorf("host %s is %s: its MACs and IP are bound to the boot in progress or installed system (per-boot secret, DHCP reservation): change them when it is enrolled, available or failed ('rackboot host release %s' first)", h.ID, h.State, h.ID)
	}
	h = h.Clone()
	if p.IP != nil {
		h.IP = *p.IP
	}
	if p.Hostname != nil {
		h.Hostname = *p.Hostname
	}
	if p.MACs != nil {
		h.MACs = append([]string(nil), p.MACs...)
	}
	if p.Labels != nil {
		if h.Labels == nil {
			h.Labels = map[string]string{}
		}
		for k, v := range p.Labels.Set {
			h.Labels[k] = v
		}
		for _, k := range p.Labels.Remove {
			delete(h.Labels, k)
		}
		if len(h.Labels) == 0 {
			h.Labels = nil
		}
	}
	if p.Network != nil {
		n := p.Network.Clone()
		h.Network = &n
	}
	spec := HostSpec{ID: h.ID, MACs: h.MACs, Hostname: h.Hostname, IP: h.IP, Labels: h.Labels, Arch: h.Arch, Firmware: h.Firmware, Boot: h.Boot, Network: h.Network}
	checked, err := spec.Host()
	if err != nil {
		return inventory.Host{}, err
	}
	if h.Network != nil && checked.Network != nil {
		// Against the NICs the host's inspection found (HostSpec.Host has no facts).
		if err := netconfig.Validate(*checked.Network, h.InspectedNICs()); err != nil {
			return inventory.Host{}, fmt.Errorf("host %s: %w", h.ID, err)
		}
	}
	h.MACs, h.IP, h.Hostname, h.Labels, h.Network = checked.MACs, checked.IP, checked.Hostname, checked.Labels, checked.Network
	return h, nil
}

// EditHost changes an enrolled host's IP, hostname, MACs or labels.
func (c *Client) EditHost(ctx context.Context, id string, p HostPatch) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodPatch, hostPath(id, ""), p, &out)
}

// bootBound says whether a host in state s is using its MACs and address for a boot or
// an installed system, so changing them would strand it.
func bootBound(s inventory.State) bool {
	switch s {
	case inventory.StateInspecting, inventory.StateProvisioning, inventory.StateProvisioned, inventory.StateDeprovisioning:
		return true
	}
	return false
}
