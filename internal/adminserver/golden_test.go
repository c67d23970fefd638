package adminserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/images"
	"github.com/rackboot/rackboot/internal/inventory"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Token material the store holds for the golden host. None of it may appear in any
// response.
const (
	goldenAgentToken    = "agent-token-do-not-show-0001"
	goldenMetadataToken = "metadata-token-do-not-show-0002"
	goldenBootID        = "boot-id-do-not-show-0003"
	goldenBMCPassword   = "bmc-password-do-not-show-0004"
	goldenMirrorPass    = "mirror-password-do-not-show-0005"
)

// fixedCatalog is an ImageCatalog that answers one image.
type fixedCatalog struct{ im inventory.Image }

func (c fixedCatalog) Add(context.Context, images.AddRequest) (inventory.Image, error) {
	return c.im, nil
}
func (c fixedCatalog) Upload(context.Context, string, io.Reader) (inventory.Image, error) {
	return c.im, nil
}
func (c fixedCatalog) Get(_ context.Context, name string) (inventory.Image, error) {
	if name != c.im.Name {
		return inventory.Image{}, inventory.ErrNotFound
	}
	return c.im, nil
}
func (c fixedCatalog) List(context.Context) ([]inventory.Image, error) {
	return []inventory.Image{c.im}, nil
}
func (c fixedCatalog) Remove(context.Context, string) error { return errors.New("not here") }

// TestResponsesGolden pins the JSON of every kind of response (host, host list,
// import, events, leases, images, version, edit) against testdata/*.golden.json, for a host that
// carries every secret the store keeps: an agent token, a metadata token, a boot ID,
// a BMC password and an image URL with a password. None of them, nor their hashes,
// nor any field named like a token, may be in a response.
func TestResponsesGolden(t *testing.T) {
	store := openTestStore(t)
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	// A qcow2 image converted on the server, its sum read from a checksum file.
	im := inventory.Image{Name: "debian-12", Source: "https://ops:" + goldenMirrorPass + "@mirror.example.net/debian-12.qcow2",
		SHA256: strings.Repeat("5", 64), SHA256URL: "https://ops:" + goldenMirrorPass + "@mirror.example.net/SHA256SUMS",
		Format: inventory.FormatZstd, SourceFormat: inventory.FormatQcow2, ServedSHA256: strings.Repeat("6", 64), DiskSize: 2 << 30,
		Size: 1 << 30, Status: inventory.ImageReady, CreatedAt: at, UpdatedAt: at, VerifiedAt: at, Revision: 3}
	h, err := NewHandler(Config{Store: store, Token: testToken, Images: fixedCatalog{im},
		Version: admin.VersionInfo{Version: "v0.9.0", Commit: "0123456789abcdef0123456789abcdef01234567", BuildDate: "2026-12-01T00:00:00Z", GoVersion: "go1.26.0"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := &admin.Client{BaseURL: srv.URL, Token: testToken}

	if _, err := c.CreateHost(ctx, admin.HostSpec{ID: "node1", MACs: []string{"52:54:00:aa:00:01"}, Hostname: "node1.rack1",
		IP: "10.0.0.21", Labels: map[string]string{"role": "worker"},
		BMC: &inventory.BMC{URL: "ipmi://admin@10.0.9.21:623", Password: goldenBMCPassword}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.TransitionHost(ctx, "node1", func(host *inventory.Host, ch *inventory.HostChange) error {
		host.State = inventory.StateProvisioning
		host.Claim = inventory.Claim{Owner: "default/m1", ClaimedAt: at}
		host.Facts = &inventory.HostFacts{Facts: inventory.Facts{System: inventory.System{UUID: "4c4c4544-0000-0000-0000-000000000001", Serial: "S1"},
			Firmware: "uefi"}, ReportedAt: at}
		host.Provision = &inventory.Provision{ID: "prov-1", Image: "debian-12", ImageSHA256: im.SHA256, Requester: "cli",
			RequestedAt: at, MetadataTokenHash: sha256Hex(goldenMetadataToken), BootMAC: "52:54:00:aa:00:01", HostIP: "10.0.0.21"}
		host.Operation = &inventory.Operation{State: inventory.StateProvisioning, Phase: inventory.PhaseAgent, Attempt: 1,
			StartedAt: at, Deadline: at.Add(15 * time.Minute), Boots: 1, TokenHash: sha256Hex(goldenAgentToken),
			TokenIssuedAt: at, BootID: goldenBootID, AgentIP: "10.0.0.21", LastSeen: at, Plan: inventory.ActionProvision}
		ch.Events = []inventory.Event{{Type: "provision.plan", Message: "the agent has its plan", Fields: map[string]string{"plan": "provision"}}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	exp := at.Add(time.Hour)
	if err := store.PutLease(ctx, inventory.Lease{MAC: "52:54:00:aa:00:01", IP: "10.0.0.21", Hostname: "node1", State: inventory.LeaseBound, Expires: exp}); err != nil {
		t.Fatal(err)
	}

	get := func(method, path, body string) []byte {
		t.Helper()
		code, b := authed(t, srv.URL, method, path, body)
		if code >= 300 {
			t.Fatalf("%s %s = %d %s", method, path, code, b)
		}
		return []byte(b)
	}
	cases := []struct{ name, method, path, body string }{
		{"host", "GET", "/api/v1/hosts/node1", ""},
		{"hosts", "GET", "/api/v1/hosts", ""},
		{"import", "POST", "/api/v1/hosts/import", `{"hosts": [{"id": "node2", "macs": ["52:54:00:aa:00:02"], "bmc": {"url": "ipmi://admin@10.0.9.22:623", "password": "` + goldenBMCPassword + `"}}]}`},
		{"events", "GET", "/api/v1/hosts/node1/events", ""},
		{"leases", "GET", "/api/v1/leases", ""},
		{"images", "GET", "/api/v1/images", ""},
		{"image", "GET", "/api/v1/images/debian-12", ""},
		{"version", "GET", "/api/v1/version", ""},
		// Last: it changes node1. A provisioning host's labels and hostname may change.
		{"edit", "PATCH", "/api/v1/hosts/node1", `{"hostname": "node1.rack2", "labels": {"set": {"tier": "gold"}, "remove": ["role"]}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := normalizeJSON(t, get(tc.method, tc.path, tc.body))
			for _, secret := range []string{goldenAgentToken, goldenMetadataToken, goldenBootID, goldenBMCPassword, goldenMirrorPass,
				sha256Hex(goldenAgentToken), sha256Hex(goldenMetadataToken), testToken} {
				if bytes.Contains(got, []byte(secret)) {
					t.Errorf("the response carries %q:\n%s", secret, got)
				}
			}
			// passwordSet is the one field that may name a secret: it says one is stored.
			if m := regexp.MustCompile(`(?i)"([a-z]*(token|hash|secret|bootid)[a-z]*|password)"\s*:`).Find(got); m != nil {
				t.Errorf("the response has a field %s:\n%s", m, got)
			}
			golden := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./admin -run TestResponsesGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s %s differs from %s (-update rewrites it):\ngot:\n%s\nwant:\n%s", tc.method, tc.path, golden, got, want)
			}
		})
	}
}

// normalizeJSON indents a response and replaces the times the store stamps
// (createdAt, updatedAt, event times) and the client port so the golden files are
// stable.
func normalizeJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	stamped := regexp.MustCompile(`("(?:createdAt|updatedAt|time|updated|remoteAddr)": )"[^"]+"`)
	return append(stamped.ReplaceAll(out, []byte(`$1"STAMP"`)), '\n')
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// authed sends a request with the test token to base and returns the status and body.
func authed(t *testing.T, base, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
