package adminserver

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

// TestEditHost changes a host through PATCH /api/v1/hosts/{id} and checks that it is
// refused what POST /api/v1/hosts refuses, plus what would strand a host mid-boot.
func TestEditHost(t *testing.T) {
	e := newAPI(t, "192.168.50.0/24")
	ctx := context.Background()
	for _, s := range []admin.HostSpec{
		{ID: "web1", MACs: []string{"52:54:00:00:00:01"}, IP: "192.168.50.11", Labels: map[string]string{"role": "web"}},
		{ID: "db1", MACs: []string{"52:54:00:00:00:02"}, IP: "192.168.50.12"},
	} {
		if _, err := e.client.CreateHost(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	str := func(s string) *string { return &s }

	host, err := e.client.EditHost(ctx, "web1", admin.HostPatch{IP: str("192.168.50.21"), Hostname: str("www1"),
		MACs: []string{"52-54-00-00-00-0A", "52:54:00:00:00:0b"}, Labels: &admin.LabelsRequest{Set: map[string]string{"rack": "r1"}, Remove: []string{"role"}}})
	if err != nil {
		t.Fatal(err)
	}
	if host.IP != "192.168.50.21" || host.Hostname != "www1" || strings.Join(host.MACs, ",") != "52:54:00:00:00:0a,52:54:00:00:00:0b" ||
		len(host.Labels) != 1 || host.Labels["rack"] != "r1" {
		t.Fatalf("edited host %+v", host)
	}
	// The old MAC and IP are free again; the new ones resolve to the host.
	if _, err := e.store.HostByMAC(ctx, "52:54:00:00:00:01"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("old MAC still indexed: %v", err)
	}
	if h, err := e.store.HostByIP(ctx, "192.168.50.21"); err != nil || h.ID != "web1" {
		t.Errorf("new IP: %v %v", h.ID, err)
	}
	evs, err := e.client.Events(ctx, "web1", 0)
	if err != nil || evs[len(evs)-1].Type != "admin.edited" || evs[len(evs)-1].Fields["changed"] != "ip,hostname,macs,labels" {
		t.Errorf("events %+v %v", evs, err)
	}

	for _, c := range []struct {
		name   string
		id     string
		patch  admin.HostPatch
		status int
		want   string
	}{
		{"nothing", "web1", admin.HostPatch{}, 400, "nothing to change"},
		{"bad IP", "web1", admin.HostPatch{IP: str("192.168.50.300")}, 400, "not an IPv4 address"},
		{"outside subnets", "web1", admin.HostPatch{IP: str("10.0.0.1")}, 400, "outside the DHCP subnets"},
		{"broadcast", "web1", admin.HostPatch{IP: str("192.168.50.255")}, 400, "broadcast address"},
		{"bad MAC", "web1", admin.HostPatch{MACs: []string{"zz"}}, 400, "not a MAC address"},
		{"MAC twice", "web1", admin.HostPatch{MACs: []string{"52:54:00:00:00:0c", "52:54:00:00:00:0C"}}, 400, "given twice"},
		{"bad hostname", "web1", admin.HostPatch{Hostname: str("a b")}, 400, "hostname"},
		{"bad label", "web1", admin.HostPatch{Labels: &admin.LabelsRequest{Set: map[string]string{"k": "a b"}}}, 400, "invalid"},
		{"MAC taken", "web1", admin.HostPatch{MACs: []string{"52:54:00:00:00:02"}}, 409, "db1"},
		{"IP taken", "web1", admin.HostPatch{IP: str("192.168.50.12")}, 409, "db1"},
		{"unknown host", "nope", admin.HostPatch{Hostname: str("x")}, 404, `no host with ID "nope"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.client.EditHost(ctx, c.id, c.patch)
			var ae *admin.APIError
			if !errors.As(err, &ae) || ae.StatusCode != c.status || !strings.Contains(ae.Message, c.want) {
				t.Fatalf("got %v, want %d %q", err, c.status, c.want)
			}
		})
	}
	if r := e.raw("PATCH", "/api/v1/hosts/web1", `{"state": "available"}`); r.status != 400 || !strings.Contains(r.body, "unknown field") {
		t.Errorf("PATCH of a read-only field: %d %s", r.status, r.body)
	}

	// A host the agent is provisioning keeps its MACs and IP; its labels may change.
	if _, err := e.store.UpdateHost(ctx, "db1", func(h *inventory.Host) error {
		h.State = inventory.StateProvisioning
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.EditHost(ctx, "db1", admin.HostPatch{IP: str("192.168.50.40")}); err == nil || !strings.Contains(err.Error(), "is provisioning") {
		t.Errorf("IP change while provisioning: %v", err)
	}
	if _, err := e.client.EditHost(ctx, "db1", admin.HostPatch{Labels: &admin.LabelsRequest{Set: map[string]string{"tier": "gold"}}}); err != nil {
		t.Errorf("label change while provisioning: %v", err)
	}
	if r := e.raw("PATCH", "/api/v1/hosts/db1", `{"hostname": "x"}`, "Bearer wrong"); r.status != http.StatusUnauthorized {
		t.Errorf("PATCH with a wrong token: %d", r.status)
	}
}
