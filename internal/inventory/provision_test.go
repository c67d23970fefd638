package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func openProvStore(t *testing.T) (*BoltStore, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "inventory.db"), Options{SecretKeyFile: filepath.Join(dir, "secret.key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.CreateHosts(context.Background(), Host{ID: "node-1", MACs: []string{"52:54:00:00:00:01"}}); err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func TestTransitionHostIsOneTransaction(t *testing.T) {
	s, _ := openProvStore(t)
	ctx := context.Background()
	h, evs, err := s.TransitionHost(ctx, "node-1", func(h *Host, c *HostChange) error {
		h.State = StateInspecting
		h.Operation = &Operation{State: StateInspecting, Phase: PhasePower, Attempt: 1}
		c.Events = append(c.Events, Event{Type: "state.changed", Message: "enrolled → inspecting"}, Event{Type: "x.y", Message: "second"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if h.Revision != 2 || len(evs) != 2 || evs[0].Seq != 1 || evs[1].Seq != 2 || evs[0].Time.IsZero() {
		t.Fatalf("host rev %d, events %+v", h.Revision, evs)
	}
	// A failing callback writes nothing: neither the host nor its events.
	boom := errors.New("boom")
	_, _, err = s.TransitionHost(ctx, "node-1", func(h *Host, c *HostChange) error {
		h.State = StateFailed
		c.Events = append(c.Events, Event{Type: "state.changed"})
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	// So does a callback whose host does not validate, after it added events.
	_, _, err = s.TransitionHost(ctx, "node-1", func(h *Host, c *HostChange) error {
		h.State = "sideways"
		c.Events = append(c.Events, Event{Type: "state.changed"})
		return nil
	})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid state: err = %v", err)
	}
	// ErrNoChange: no write, no error.
	got, evs, err := s.TransitionHost(ctx, "node-1", func(h *Host, c *HostChange) error { return ErrNoChange })
	if err != nil || got.Revision != 2 || len(evs) != 0 {
		t.Fatalf("no change: rev %d events %d err %v", got.Revision, len(evs), err)
	}
	all, err := s.Events(ctx, "node-1", 0)
	if err != nil || len(all) != 2 {
		t.Fatalf("timeline has %d events, want 2 (%v)", len(all), err)
	}
	cur, _ := s.GetHost(ctx, "node-1")
	if cur.State != StateInspecting || cur.Revision != 2 {
		t.Errorf("host = %s rev %d", cur.State, cur.Revision)
	}
}

func TestTokenIndex(t *testing.T) {
	s, _ := openProvStore(t)
	ctx := context.Background()
	set := func(agent, meta string) {
		t.Helper()
		_, _, err := s.TransitionHost(ctx, "node-1", func(h *Host, c *HostChange) error {
			h.Operation = &Operation{State: StateProvisioning, TokenHash: agent}
			h.Provision = &Provision{ID: "p", Image: "img", MetadataTokenHash: meta}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	find := func(hash string) bool {
		h, err := s.HostByTokenHash(ctx, hash)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil && h.ID == "node-1"
	}
	set("a1", "m1")
	if !find("a1") || !find("m1") || find("zz") {
		t.Fatal("tokens a1, m1 not indexed")
	}
	set("a2", "m1")
	if find("a1") || !find("a2") || !find("m1") {
		t.Error("a replaced agent token still works, or the new one does not")
	}
	set("", "")
	if find("a2") || find("m1") {
		t.Error("cleared tokens still work")
	}
	set("a3", "m3")
	if err := s.DeleteHost(ctx, "node-1"); err != nil {
		t.Fatal(err)
	}
	if find("a3") {
		t.Error("a deleted host's token still finds it")
	}
}

func TestProvisionDataIsSealed(t *testing.T) {
	s, dir := openProvStore(t)
	ctx := context.Background()
	secret := "#cloud-config\nkubeadm-join-token: abcdef.0123456789abcdef\n"
	_, _, err := s.TransitionHost(ctx, "node-1", func(h *Host, c *HostChange) error {
		h.Provision = &Provision{ID: "p1", Image: "img"}
		c.Data = &ProvisionData{ProvisionID: "p1", Kind: ConfigCloudConfig, UserData: []byte(secret)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.ProvisionData(ctx, "node-1")
	if err != nil || string(d.UserData) != secret || d.ProvisionID != "p1" {
		t.Fatalf("data = %+v, %v", d, err)
	}
	h, _ := s.GetHost(ctx, "node-1")
	if strings.Contains(mustJSON(t, h), "kubeadm") {
		t.Error("the host record carries the user-data")
	}
	s.Close()
	raw, err := os.ReadFile(filepath.Join(dir, "inventory.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("abcdef.0123456789abcdef")) {
		t.Error("the user-data is in the inventory file in clear")
	}
	// Without the key the data cannot be read.
	s2, err := Open(filepath.Join(dir, "inventory.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.ProvisionData(ctx, "node-1"); err == nil || !strings.Contains(err.Error(), "secret key") {
		t.Errorf("ProvisionData without the key = %v", err)
	}
	_, _, err = s2.TransitionHost(ctx, "node-1", func(h *Host, c *HostChange) error {
		c.Data = &ProvisionData{ProvisionID: "p2"}
		return nil
	})
	if err == nil {
		t.Error("stored user-data without a key")
	}
}

func TestImageCatalog(t *testing.T) {
	s, _ := openProvStore(t)
	ctx := context.Background()
	sum := strings.Repeat("A", 64)
	im, err := s.CreateImage(ctx, Image{Name: "debian-12", Source: "https://example.com/d.raw", SHA256: sum, Format: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	if im.SHA256 != strings.ToLower(sum) || im.Status != ImagePending || im.Format != FormatAuto {
		t.Errorf("created = %+v", im)
	}
	if _, err := s.CreateImage(ctx, Image{Name: "debian-12", SHA256: sum}); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate = %v", err)
	}
	for _, bad := range []Image{{Name: "Debian", SHA256: sum}, {Name: "a/b", SHA256: sum}, {Name: "a..b", SHA256: sum}, {Name: "x", SHA256: "abc"}, {Name: "x", SHA256: sum, Format: "rar"}} {
		if _, err := s.CreateImage(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateImage(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	im, err = s.UpdateImage(ctx, "debian-12", func(im *Image) error { im.Status, im.Size = ImageReady, 42; return nil })
	if err != nil || im.Revision != 2 || im.Status != ImageReady {
		t.Fatalf("update = %+v %v", im, err)
	}
	list, err := s.ListImages(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("list = %v %v", list, err)
	}
	// StartProvisioning sees the image in the same transaction.
	_, _, err = s.StartProvisioning(ctx, "node-1", "nope", func(h *Host, im Image, c *HostChange) error { return nil })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("StartProvisioning with an unknown image = %v", err)
	}
	_, _, err = s.StartProvisioning(ctx, "node-1", "debian-12", func(h *Host, im Image, c *HostChange) error {
		h.Provision = &Provision{ID: "p", Image: im.Name}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	users, err := s.ImageUsers(ctx, "debian-12")
	if diff := cmp.Diff([]string{"node-1"}, users); diff != "" || err != nil {
		t.Errorf("users (-want +got): %s %v", diff, err)
	}
	if err := s.DeleteImage(ctx, "debian-12"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "node-1") {
		t.Errorf("delete in use = %v", err)
	}
	if err := s.DeleteImage(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete unknown = %v", err)
	}
}

func TestCloneCopiesProvisioning(t *testing.T) {
	h := Host{ID: "a", Facts: &HostFacts{Facts: Facts{Disks: []Disk{{Name: "vda"}}}},
		Provision: &Provision{Metadata: map[string]string{"k": "v"}},
		Operation: &Operation{Progress: &Progress{Phase: AgentWrite}}}
	c := h.Clone()
	c.Facts.Disks[0].Name = "sda"
	c.Provision.Metadata["k"] = "w"
	c.Operation.Progress.Phase = AgentWipe
	if h.Facts.Disks[0].Name != "vda" || h.Provision.Metadata["k"] != "v" || h.Operation.Progress.Phase != AgentWrite {
		t.Errorf("Clone shares memory with the original: %+v", h)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
