package adminserver

import (
	"maps"
	"slices"

	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

func (h *handler) listHosts(w http.ResponseWriter, r *http.Request) error {
	hosts, err := h.store.ListHosts(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, hostViews(hosts))
	return nil
}

func (h *handler) createHost(w http.ResponseWriter, r *http.Request) error {
	var spec admin.HostSpec
	if err := decodeBody(w, r, admin.MaxBodyBytes, &spec); err != nil {
		return err
	}
	hosts, err := admin.ValidateBatch([]admin.HostSpec{spec}, h.rules, func(int) string { return "host" })
	if err != nil {
		// The single-host message reads better without the entry name.
		return badRequest("%s", strings.TrimPrefix(err.Error(), "host: "))
	}
	created, err := h.store.CreateHosts(r.Context(), hosts...)
	if err != nil {
		return err
	}
	h.recordCreated(r, created, "api")
	w.Header().Set("Location", "/api/v1/hosts/"+url.PathEscape(created[0].ID))
	writeJSON(w, http.StatusCreated, hostView(created[0]))
	return nil
}

func (h *handler) importHosts(w http.ResponseWriter, r *http.Request) error {
	var req admin.ImportRequest
	if err := decodeBody(w, r, admin.MaxImportBodyBytes, &req); err != nil {
		return err
	}
	if len(req.Hosts) == 0 {
		return badRequest(`nothing to import: send {"hosts": [...]} with at least one host`)
	}
	if len(req.Hosts) > admin.MaxImportHosts {
		return badRequest("%d hosts in one import is more than the %d allowed: split the file", len(req.Hosts), admin.MaxImportHosts)
	}
	hosts, err := admin.ValidateBatch(req.Hosts, h.rules, func(i int) string { return fmt.Sprintf("hosts[%d]", i) })
	if err != nil {
		return badRequest("%s: nothing was imported", err)
	}
	created, err := h.store.CreateHosts(r.Context(), hosts...)
	if err != nil {
		return fmt.Errorf("%w: nothing was imported", err)
	}
	h.recordCreated(r, created, "import")
	writeJSON(w, http.StatusCreated, admin.ImportResponse{Hosts: hostViews(created)})
	return nil
}

// recordCreated puts an "admin.created" event on each new host's timeline.
func (h *handler) recordCreated(r *http.Request, hosts []inventory.Host, source string) {
	for _, host := range hosts {
		fields := map[string]string{"macs": strings.Join(host.MACs, ","), "source": source, "remoteAddr": r.RemoteAddr}
		if host.IP != "" {
			fields["ip"] = host.IP
		}
		h.log.LogAttrs(r.Context(), slog.LevelInfo, "host enrolled", slog.String("hostID", host.ID),
			slog.String("macs", fields["macs"]), slog.String("ip", host.IP), slog.String("source", source))
		h.appendEvent(r, host.ID, inventory.Event{Type: "admin.created", Message: "enrolled through the admin API", Fields: fields})
	}
}

// appendEvent records e; the change it describes is already committed, so a failure is
// logged rather than reported to the client as if the change had not happened.
func (h *handler) appendEvent(r *http.Request, id string, e inventory.Event) {
	if _, err := h.store.AppendEvent(r.Context(), id, e); err != nil {
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "could not record admin event", slog.String("hostID", id),
			slog.String("type", e.Type), slog.Any("err", err))
	}
}

// hostID reads and validates the {id} path value.
func hostID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := inventory.ValidateID(id); err != nil {
		return "", badRequest("%v", err)
	}
	return id, nil
}

// notFound rewrites the store's ErrNotFound for a host ID into a message with the fix.
func notFound(id string, err error) error {
	if errors.Is(err, inventory.ErrNotFound) {
		return &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no host with ID %q: list the hosts with GET /api/v1/hosts (rackboot host list)", id)}
	}
	return err
}

func (h *handler) getHost(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	host, err := h.store.GetHost(r.Context(), id)
	if err != nil {
		return notFound(id, err)
	}
	writeJSON(w, http.StatusOK, hostView(host))
	return nil
}

func (h *handler) deleteHost(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	if err := h.store.DeleteHost(r.Context(), id); err != nil {
		return notFound(id, err)
	}
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "host deleted", slog.String("hostID", id), slog.String("remoteAddr", r.RemoteAddr))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) updateLabels(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	var req admin.LabelsRequest
	if err := decodeBody(w, r, admin.MaxBodyBytes, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return badRequest("%v", err)
	}
	host, err := h.store.UpdateHost(r.Context(), id, func(host *inventory.Host) error {
		if host.Labels == nil {
			host.Labels = map[string]string{}
		}
		for k, v := range req.Set {
			host.Labels[k] = v
		}
		for _, k := range req.Remove {
			delete(host.Labels, k)
		}
		if len(host.Labels) == 0 {
			host.Labels = nil
		}
		return nil
	})
	if err != nil {
		return notFound(id, err)
	}
	fields := map[string]string{"remoteAddr": r.RemoteAddr}
	if len(req.Set) > 0 {
		fields["set"] = formatLabels(req.Set)
	}
	if len(req.Remove) > 0 {
		fields["removed"] = strings.Join(req.Remove, ",")
	}
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "host labels changed", slog.String("hostID", id),
		slog.String("set", fields["set"]), slog.String("removed", fields["removed"]))
	h.appendEvent(r, id, inventory.Event{Type: "admin.labels", Message: "labels changed through the admin API", Fields: fields})
	writeJSON(w, http.StatusOK, hostView(host))
	return nil
}

func (h *handler) setBoot(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	var p inventory.BootProfile
	if err := decodeBody(w, r, admin.MaxBodyBytes, &p); err != nil {
		return err
	}
	if err := admin.ValidateBoot(&p); err != nil {
		return badRequest("%v", err)
	}
	host, err := h.store.UpdateHost(r.Context(), id, func(host *inventory.Host) error {
		b := p
		host.Boot = &b
		return nil
	})
	if err != nil {
		return notFound(id, err)
	}
	fields := map[string]string{"kernel": p.Kernel, "remoteAddr": r.RemoteAddr}
	if len(p.Initrds) > 0 {
		fields["initrds"] = strings.Join(p.Initrds, ",")
	}
	if p.Cmdline != "" {
		fields["cmdline"] = p.Cmdline
	}
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "host boot profile set", slog.String("hostID", id), slog.String("kernel", p.Kernel))
	h.appendEvent(r, id, inventory.Event{Type: "admin.boot", Message: "boot profile set through the admin API", Fields: fields})
	writeJSON(w, http.StatusOK, hostView(host))
	return nil
}

func (h *handler) clearBoot(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	host, err := h.store.UpdateHost(r.Context(), id, func(host *inventory.Host) error {
		host.Boot = nil
		return nil
	})
	if err != nil {
		return notFound(id, err)
	}
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "host boot profile cleared", slog.String("hostID", id))
	h.appendEvent(r, id, inventory.Event{Type: "admin.boot", Message: "boot profile cleared through the admin API",
		Fields: map[string]string{"cleared": "true", "remoteAddr": r.RemoteAddr}})
	writeJSON(w, http.StatusOK, hostView(host))
	return nil
}

func (h *handler) events(w http.ResponseWriter, r *http.Request) error {
	id, err := hostID(r)
	if err != nil {
		return err
	}
	var after uint64
	if s := r.URL.Query().Get("after"); s != "" {
		after, err = strconv.ParseUint(s, 10, 64)
		if err != nil {
			return badRequest("after=%q is not an event sequence number: give the seq of the last event you have, e.g. after=42", s)
		}
	}
	events, err := h.store.Events(r.Context(), id, after)
	if err != nil {
		return notFound(id, err)
	}
	writeJSON(w, http.StatusOK, eventViews(events))
	return nil
}

func (h *handler) leases(w http.ResponseWriter, r *http.Request) error {
	leases, err := h.store.ListLeases(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, leaseViews(leases))
	return nil
}

// formatLabels renders labels as "k=v,k=v", sorted by key.
func formatLabels(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}
