package adminserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/images"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/provision"
)

type provEnv struct {
	*apiEnv
	prov *provision.Provisioner
	cat  *images.Catalog
}

// newProvAPI serves the admin API with a real provisioner (no BMC: hosts are booted by
// hand) and a real image catalog.
func newProvAPI(t *testing.T) *provEnv {
	t.Helper()
	store := openTestStore(t)
	cat, err := images.New(images.Config{Dir: filepath.Join(t.TempDir(), "images"), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	prov, err := provision.New(provision.Config{Store: store, Images: cat, ServerURL: "http://10.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(Config{Store: store, Token: testToken, Provisioner: prov, Images: cat})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &apiEnv{t: t, store: store, srv: srv, client: &admin.Client{BaseURL: srv.URL, Token: testToken, HTTPClient: srv.Client()}}
	return &provEnv{apiEnv: e, prov: prov, cat: cat}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (e *provEnv) addImage(name string, data []byte) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.client.AddImage(ctx, admin.AddImageRequest{Name: name, SHA256: sum(data), Format: "raw"}); err != nil {
		e.t.Fatal(err)
	}
	im, err := e.client.UploadImage(ctx, name, bytes.NewReader(data), int64(len(data)))
	if err != nil || im.Status != inventory.ImageReady {
		e.t.Fatalf("upload: %+v %v", im, err)
	}
}

func TestImageRoutes(t *testing.T) {
	e := newProvAPI(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("rackboot"), 1<<12)
	e.addImage("debian-12", data)

	// A wrong checksum: the upload is refused with both sums, and the image is failed.
	if _, err := e.client.AddImage(ctx, admin.AddImageRequest{Name: "bad", SHA256: strings.Repeat("0", 64)}); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.UploadImage(ctx, "bad", bytes.NewReader(data), int64(len(data)))
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !strings.Contains(ae.Message, "sha256 mismatch") || !strings.Contains(ae.Message, sum(data)) {
		t.Fatalf("upload with a wrong sum = %v", err)
	}
	ims, err := e.client.ListImages(ctx)
	if err != nil || len(ims) != 2 || ims[0].Name != "bad" || ims[0].Status != inventory.ImageFailed || ims[1].Status != inventory.ImageReady {
		t.Fatalf("list = %+v, %v", ims, err)
	}
	if _, err := e.client.GetImage(ctx, "nope"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("get unknown = %v", err)
	}
	for _, body := range []string{`{"name":"x","sha256":"12"}`, `{"name":"Bad","sha256":"` + strings.Repeat("a", 64) + `"}`, `{"name":"x","bogus":1}`} {
		if r := e.raw("POST", "/api/v1/images", body); r.status != http.StatusBadRequest {
			t.Errorf("POST %s: %d, want 400", body, r.status)
		}
	}
	if _, err := e.client.AddImage(ctx, admin.AddImageRequest{Name: "debian-12", SHA256: sum(data)}); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("adding an existing image = %v, want a conflict", err)
	}
	if err := e.client.RemoveImage(ctx, "bad"); err != nil {
		t.Errorf("remove: %v", err)
	}
	if err := e.client.RemoveImage(ctx, "bad"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("remove twice = %v", err)
	}
}

func TestProvisionRoutes(t *testing.T) {
	e := newProvAPI(t)
	ctx := context.Background()
	e.addImage("debian-12", []byte("an image"))
	e.mustCreate(admin.HostSpec{ID: "node-1", MACs: []string{"52:54:00:12:34:56"}})

	// Enrolled: provisioning is refused with the way out.
	_, err := e.client.Provision(ctx, "node-1", admin.ProvisionRequest{Image: "debian-12"})
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict || !strings.Contains(ae.Message, "rackboot host inspect node-1") {
		t.Fatalf("provision of an enrolled host = %v", err)
	}
	h, err := e.client.Inspect(ctx, "node-1", admin.OwnerRequest{})
	if err != nil || h.State != inventory.StateInspecting {
		t.Fatalf("inspect = %v %v", h.State, err)
	}
	// Watch: nothing changes within the timeout, so the host comes back as it is.
	w, err := e.client.Watch(ctx, "node-1", h.Revision, time.Second)
	if err != nil || w.Revision != h.Revision {
		t.Errorf("idle watch = rev %d, %v", w.Revision, err)
	}
	// Bring it to available as the agent would, then provision.
	if _, err := e.store.UpdateHost(ctx, "node-1", func(h *inventory.Host) error {
		h.State, h.Operation = inventory.StateAvailable, nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  admin.ProvisionRequest
		code int
	}{
		{"no image", admin.ProvisionRequest{}, http.StatusBadRequest},
		{"bad hint", admin.ProvisionRequest{Image: "debian-12", RootDisk: "size=big"}, http.StatusBadRequest},
		{"unknown image", admin.ProvisionRequest{Image: "nope"}, http.StatusNotFound},
		{"bad user-data", admin.ProvisionRequest{Image: "debian-12", UserData: "hello"}, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.client.Provision(ctx, "node-1", tc.req)
			if !errors.As(err, &ae) || ae.StatusCode != tc.code {
				t.Errorf("err = %v, want %d", err, tc.code)
			}
		})
	}
	h, err = e.client.Provision(ctx, "node-1", admin.ProvisionRequest{Image: "debian-12", RootDisk: "min=8G,smallest",
		UserData: "#cloud-config\nruncmd: [true]\n", Labels: map[string]string{"role": "worker"}})
	if err != nil {
		t.Fatal(err)
	}
	if h.State != inventory.StateProvisioning || h.Provision.RootDisk.MinSizeBytes != 8<<30 || h.Labels["role"] != "worker" {
		t.Errorf("provisioned host = %+v", h)
	}
	// The host's answers never carry its user-data.
	if r := e.raw("GET", "/api/v1/hosts/node-1", ""); strings.Contains(r.body, "runcmd") {
		t.Errorf("GET host shows the user-data: %s", r.body)
	}
	// An image in use cannot go.
	if err := e.client.RemoveImage(ctx, "debian-12"); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("remove of an image in use = %v", err)
	}
	done := make(chan admin.Host, 1)
	go func() {
		w, err := e.client.Watch(ctx, "node-1", h.Revision, 20*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- w
	}()
	if h, err = e.client.Release(ctx, "node-1", admin.ReleaseRequest{Wipe: "full"}); err != nil || h.State != inventory.StateDeprovisioning {
		t.Fatalf("release = %v %v", h.State, err)
	}
	if w := <-done; w.Revision < h.Revision {
		t.Errorf("watch returned revision %d, before the release's %d", w.Revision, h.Revision)
	}
	if _, err := e.client.Retry(ctx, "node-1", admin.OwnerRequest{}); !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict {
		t.Errorf("retry of a host that is not failed = %v", err)
	}
	if r := e.raw("POST", "/api/v1/hosts/node-1/release", `{"wipe":"sometimes"}`); r.status != http.StatusBadRequest {
		t.Errorf("release with a bad wipe: %d", r.status)
	}
	if _, err := e.client.Inspect(ctx, "nobody", admin.OwnerRequest{}); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("inspect of an unknown host = %v", err)
	}
}

func TestProvisionRoutesDisabled(t *testing.T) {
	e := newAPI(t)
	e.mustCreate(admin.HostSpec{ID: "node-1", MACs: []string{"52:54:00:12:34:56"}})
	for _, r := range []struct{ method, path string }{
		{"POST", "/api/v1/hosts/node-1/inspect"}, {"POST", "/api/v1/hosts/node-1/release"},
		{"GET", "/api/v1/hosts/node-1/watch"}, {"GET", "/api/v1/images"},
	} {
		if got := e.raw(r.method, r.path, ""); got.status != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d, want 503", r.method, r.path, got.status)
		}
	}
	if got := e.raw("GET", "/api/v1/images", "", ""); got.status != http.StatusUnauthorized {
		t.Errorf("images without a token: %d, want 401", got.status)
	}
}

// TestWatchCarriesProgress pins what `rackboot host watch` draws its bars from: the
// watch route's host carries the agent's last report (step, disk, bytes) and when the
// server got it (operation.lastSeen), from which the CLI computes rate and time left.
func TestWatchCarriesProgress(t *testing.T) {
	e := newProvAPI(t)
	ctx := context.Background()
	if _, err := e.store.CreateHosts(ctx, inventory.Host{ID: "node-1", MACs: []string{"52:54:00:00:00:01"}}); err != nil {
		t.Fatal(err)
	}
	seen := time.Date(2026, 11, 24, 10, 0, 10, 0, time.UTC)
	stored := inventory.Progress{Phase: inventory.AgentWrite, Disk: "vda", BytesDone: 1 << 29, BytesTotal: 1 << 30}
	want := agentapi.Progress{Phase: agentapi.PhaseWrite, Disk: "vda", BytesDone: 1 << 29, BytesTotal: 1 << 30}
	if _, err := e.store.UpdateHost(ctx, "node-1", func(h *inventory.Host) error {
		h.State = inventory.StateProvisioning
		h.Operation = &inventory.Operation{State: inventory.StateProvisioning, Phase: inventory.PhaseAgent, Attempt: 1,
			StartedAt: seen.Add(-time.Minute), LastSeen: seen, Progress: &stored}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h, err := e.client.Watch(ctx, "node-1", 0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	op := h.Operation
	if op == nil || op.Progress == nil || *op.Progress != want || !op.LastSeen.Equal(seen) || op.Phase != inventory.PhaseAgent {
		t.Fatalf("watch answered operation %+v", op)
	}
	// The same bytes in the JSON a client of another language reads.
	resp, err := e.srv.Client().Do(func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/hosts/node-1/watch?after=0&timeout=1", nil)
		r.Header.Set("Authorization", "Bearer "+testToken)
		return r
	}())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	for _, s := range []string{`"progress":{"phase":"write","disk":"vda","bytesDone":536870912,"bytesTotal":1073741824}`, `"lastSeen":"2026-11-24T10:00:10Z"`} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("watch JSON lacks %s:\n%s", s, buf.String())
		}
	}
}
