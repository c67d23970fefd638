package adminserver

import (
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

func (h *handler) editHost(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	var p admin.HostPatch
	if err := decodeBody(w, r, admin.MaxBodyBytes, &p); err != nil {
		return err
	}
	var changed []string
	host, err := h.store.UpdateHost(r.Context(), id, func(host *inventory.Host) error {
		next, err := p.Apply(*host)
		if err != nil {
			return badRequest("%v", err)
		}
		if err := h.rules.Check(&next); err != nil {
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
	if !reflect.DeepEqual(a.Network, b.Network) {
		out = append(out, "network")
	}
	return out
}
