package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/rackboot/rackboot/inventory"
)

// HostPatch is the body of PATCH /api/v1/hosts/{id}: what an operator may change on an
// enrolled host. A field left out is kept; "ip": "" and "hostname": "" clear them; macs
// replaces the whole list (the first is the PXE one); labels sets and removes keys as
// POST .../labels does.
type HostPatch struct {
	IP       *string        `json:"ip,omitempty"`
	Hostname *string        `json:"hostname,omitempty"`
	MACs     []string       `json:"macs,omitempty"`
	Labels   *LabelsRequest `json:"labels,omitempty"`
}

// Empty reports whether the patch changes nothing.
func (p HostPatch) Empty() bool {
	return p.IP == nil && p.Hostname == nil && p.MACs == nil && p.Labels == nil
}

// Apply returns h with the patch applied and validated as `host add` validates a new
// host (HostSpec.Host: MACs, IP, hostname, labels), without the server's subnets, which
// the server checks itself. The CLI runs it before sending, so it fails the same way.
func (p HostPatch) Apply(h inventory.Host) (inventory.Host, error) {
	if p.Empty() {
		return inventory.Host{}, fmt.Errorf("nothing to change: give ip, hostname, macs and/or labels")
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
	spec := HostSpec{ID: h.ID, MACs: h.MACs, Hostname: h.Hostname, IP: h.IP, Labels: h.Labels, Arch: h.Arch, Firmware: h.Firmware, Boot: h.Boot}
	checked, err := spec.Host()
	if err != nil {
		return inventory.Host{}, err
	}
	h.MACs, h.IP, h.Hostname, h.Labels = checked.MACs, checked.IP, checked.Hostname, checked.Labels
	return h, nil
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

func (h *handler) editHost(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	var p HostPatch
	if err := decodeBody(w, r, MaxBodyBytes, &p); err != nil {
		return err
	}
	var changed []string
	host, err := h.store.UpdateHost(r.Context(), id, func(host *inventory.Host) error {
		next, err := p.Apply(*host)
		if err != nil {
			return badRequest("%v", err)
		}
		if err := h.rules.check(&next); err != nil {
			return badRequest("%v", err)
		}
		changed = changes(*host, next)
		*host = next
		return nil
	})
	if err != nil {
		return notFound(id, err)
	}
	fields := map[string]string{"changed": strings.Join(changed, ","), "remoteAddr": r.RemoteAddr}
	if slices.Contains(changed, "ip") {
		fields["ip"] = host.IP
	}
	if slices.Contains(changed, "macs") {
		fields["macs"] = strings.Join(host.MACs, ",")
	}
	if slices.Contains(changed, "hostname") {
		fields["hostname"] = host.Hostname
	}
	if slices.Contains(changed, "labels") {
		fields["labels"] = formatLabels(host.Labels)
	}
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "host edited", slog.String("hostID", id), slog.String("changed", fields["changed"]))
	h.appendEvent(r, id, inventory.Event{Type: "admin.edited", Message: "edited through the admin API", Fields: fields})
	writeJSON(w, http.StatusOK, hostView(host))
	return nil
}

// changes names the fields that differ between a and b.
func changes(a, b inventory.Host) []string {
	var out []string
	if a.IP != b.IP {
		out = append(out, "ip")
	}
	if a.Hostname != b.Hostname {
		out = append(out, "hostname")
	}
	if !slices.Equal(a.MACs, b.MACs) {
		out = append(out, "macs")
	}
	if formatLabels(a.Labels) != formatLabels(b.Labels) {
		out = append(out, "labels")
	}
	return out
}

// EditHost changes an enrolled host's IP, hostname, MACs or labels.
func (c *Client) EditHost(ctx context.Context, id string, p HostPatch) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodPatch, hostPath(id, ""), p, &out)
}
