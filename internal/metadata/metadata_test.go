package metadata

import (
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/netconfig"
	"github.com/rackboot/rackboot/internal/trust"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./metadata -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got; go test ./metadata -update rewrites it):\n%s", p, diff)
	}
}

const (
	testToken = "tok-0123456789abcdefghijklmnopqrstuvwxyzABCDE"
	testBase  = "http://10.0.0.1:8080/metadata/" + testToken + "/"
	hostIP    = "10.0.0.5"
	leasedIP  = "10.0.0.77"
	otherIP   = "10.0.0.9"
)

func testHost() inventory.Host {
	return inventory.Host{
		ID: "node-1", Hostname: "node-1.rack1.example.com", MACs: []string{"52:54:00:12:34:56", "52:54:00:12:34:57"}, IP: hostIP,
		Labels: map[string]string{"rack": "r1", "topology.kubernetes.io/zone": "dc1-r1"},
		State:  inventory.StateProvisioning,
		Provision: &inventory.Provision{ID: "3f9a2c7d1e0b4a55", Image: "debian-12", Metadata: map[string]string{"cluster": "prod", "providerID": "rackboot://rack1/node-1"},
			MetadataTokenHash: TokenHash(testToken), BootMAC: "52:54:00:12:34:57"},
	}
}

const testButane = `variant: flatcar
version: 1.1.0
passwd:
  users:
    - name: core
      ssh_authorized_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest core@example
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      contents:
        inline: node-1
systemd:
  units:
    - name: hello.service
      enabled: true
      contents: |
        [Unit]
        Description=Say hello
        [Service]
        Type=oneshot
        ExecStart=/usr/bin/echo hello
        [Install]
        WantedBy=multi-user.target
`

// TestDocumentsGolden renders every document of a host and checks it against its
// golden file; the YAML ones must also parse.
func TestDocumentsGolden(t *testing.T) {
	in := Input{Host: testHost(), BaseURL: testBase, BootMAC: "52:54:00:12:34:57"}
	ign, err := RenderButane([]byte(testButane))
	if err != nil {
		t.Fatal(err)
	}
	ignition, err := Ignition(in, inventory.ProvisionData{Kind: inventory.ConfigIgnition, Ignition: ign})
	if err != nil {
		t.Fatal(err)
	}
	md, err := MetaData(in)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := NetworkConfig(in)
	if err != nil {
		t.Fatal(err)
	}
	// The default of a host with a reservation (provision.installNetwork), and a bond
	// with a VLAN, as network-config and as Ignition's networkd files.
	static := in
	static.Host = in.Host.Clone()
	def := netconfig.Normalize(netconfig.Default("52:54:00:12:34:57", "10.0.0.21/24", "10.0.0.1", []string{"10.0.0.2"}, []string{"rack1.example.com"}))
	static.Host.Provision.InstallNetwork = &def
	ncStatic, err := NetworkConfig(static)
	if err != nil {
		t.Fatal(err)
	}
	bonded := in
	bonded.Host = in.Host.Clone()
	bonded.Host.Provision.InstallNetwork = &netconfig.Spec{
		Ethernets: []netconfig.Ethernet{{Name: "nic0", MAC: "52:54:00:12:34:56"}, {Name: "nic1", MAC: "52:54:00:12:34:57"}},
		Bonds:     []netconfig.Bond{{Name: "bond0", Mode: "active-backup", Members: []string{"nic0", "nic1"}}},
		VLANs:     []netconfig.VLAN{{ID: 100, Link: "bond0", Addresses: []string{"10.20.0.5/24"}}},
		Routes:    []netconfig.Route{{To: "default", Via: "10.20.0.1"}},
	}
	ncBond, err := NetworkConfig(bonded)
	if err != nil {
		t.Fatal(err)
	}
	ignBond, err := Ignition(bonded, inventory.ProvisionData{Kind: inventory.ConfigIgnition, Ignition: ign})
	if err != nil {
		t.Fatal(err)
	}
	bare := in
	bare.Host.Hostname, bare.Host.Labels, bare.Host.Provision = "", nil, nil
	bareMD, err := MetaData(bare)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string][]byte{
		"meta-data":                    md,
		"meta-data-bare":               bareMD,
		"vendor-data":                  VendorData(in),
		"network-config":               nc,
		"network-config-static":        ncStatic,
		"network-config-bond-vlan":     ncBond,
		"ignition-networkd.json":       ignBond,
		"user-data-empty":              UserData(inventory.ProvisionData{}),
		"butane-flatcar.ign.json":      ign,
		"ignition-with-phonehome.json": ignition,
	}
	for name, got := range docs {
		t.Run(name, func(t *testing.T) {
			if !strings.HasSuffix(name, ".json") {
				var v any
				if err := yaml.Unmarshal(got, &v); err != nil {
					t.Errorf("not YAML: %v", err)
				}
			}
			golden(t, name, got)
		})
	}
	if _, err := ParseIgnition(ignition); err != nil {
		t.Errorf("the served Ignition does not validate: %v", err)
	}
	if !strings.Contains(string(ignition), PhoneHomeURL(testBase)) {
		t.Error("the Ignition config lacks the phone-home URL")
	}
}

func TestCheckUserData(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		want string
	}{
		{"#cloud-config\nruncmd: [ls]\n", true, ""},
		{"#cloud-config\n", true, ""},
		{"#!/bin/sh\necho hi\n", true, ""},
		{"Content-Type: multipart/mixed; boundary=x\n", true, ""},
		{"#cloud-config\n- a list\n", false, "not a YAML mapping"},
		{"#cloud-config\nfoo: [\n", false, "not valid YAML"},
		{"hello", false, "start it with #cloud-config"},
		{"#cloud-config\n" + strings.Repeat("a", MaxConfigBytes), false, "at most"},
	}
	for _, tc := range tests {
		err := CheckUserData([]byte(tc.in))
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckUserData(%.30q) = %v, want ok=%v (%q)", tc.in, err, tc.ok, tc.want)
		}
	}
}

func TestRenderButaneRefusals(t *testing.T) {
	for _, src := range []string{
		"variant: fcos\nversion: 9.0.0\n",
		"version: 1.5.0\n",
		"variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /x\n      contents:\n        local: /etc/shadow\n",
		"variant: fcos\nversion: 1.5.0\nbogus: [\n",
	} {
		if _, err := RenderButane([]byte(src)); err == nil {
			t.Errorf("RenderButane(%q) succeeded", src)
		}
	}
}

// fakeStore serves one host by token and IP.
type fakeStore struct {
	mu     sync.Mutex
	host   inventory.Host
	data   inventory.ProvisionData
	events []inventory.Event
}

func (s *fakeStore) HostByTokenHash(_ context.Context, hash string) (inventory.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.host.Provision != nil && hash == s.host.Provision.MetadataTokenHash {
		return s.host.Clone(), nil
	}
	return inventory.Host{}, inventory.ErrNotFound
}

func (s *fakeStore) HostByIP(_ context.Context, ip string) (inventory.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ip == s.host.IP || ip == leasedIP {
		return s.host.Clone(), nil
	}
	return inventory.Host{}, inventory.ErrNotFound
}

func (s *fakeStore) ListHosts(context.Context) ([]inventory.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []inventory.Host{s.host.Clone()}, nil
}

// testGate is the trust gate over st, as serve builds it.
func testGate(t testing.TB, st trust.Store) *trust.Gate {
	t.Helper()
	g, err := trust.New(trust.Config{Mode: trust.ModeServer, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (s *fakeStore) ProvisionData(_ context.Context, id string) (inventory.ProvisionData, error) {
	if s.data.ProvisionID == "" {
		return inventory.ProvisionData{}, inventory.ErrNotFound
	}
	return s.data, nil
}

func (s *fakeStore) AppendEvent(_ context.Context, id string, e inventory.Event) (inventory.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
	return e, nil
}

type phoneHomes struct {
	mu    sync.Mutex
	calls []map[string]string
}

func (p *phoneHomes) PhoneHome(_ context.Context, id string, f map[string]string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, f)
	return nil
}

func TestHandlerAccess(t *testing.T) {
	st := &fakeStore{host: testHost(), data: inventory.ProvisionData{ProvisionID: "3f9a2c7d1e0b4a55", Kind: inventory.ConfigCloudConfig,
		UserData: []byte("#cloud-config\nruncmd: [touch /root/marker]\n")}}
	ph := &phoneHomes{}
	h, err := NewHandler(Config{Store: st, Gate: testGate(t, st), PhoneHome: ph, ServerURL: "http://10.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	do := func(method, path, src string, form url.Values) *httptest.ResponseRecorder {
		var req *http.Request
		if form != nil {
			req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req = httptest.NewRequest(method, path, nil)
		}
		req.RemoteAddr = src + ":5000"
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	base := "/metadata/" + testToken + "/"
	tests := []struct {
		name, method, path, src string
		want                    int
		body                    string
	}{
		{"user-data from the host", "GET", base + "user-data", hostIP, 200, "touch /root/marker"},
		// A host with a reservation is reached at its reservation only.
		{"user-data from a lease that is not its reservation", "GET", base + "user-data", leasedIP, 403, ""},
		{"meta-data", "GET", base + "meta-data", hostIP, 200, "instance-id: node-1-3f9a2c7d1e0b4a55"},
		{"vendor-data", "GET", base + "vendor-data", hostIP, 200, "phone_home:"},
		{"network-config", "GET", base + "network-config", hostIP, 200, `macaddress: "52:54:00:12:34:57"`},
		{"user-data from another address", "GET", base + "user-data", otherIP, 403, ""},
		{"meta-data from another address", "GET", base + "meta-data", otherIP, 403, ""},
		{"wrong token", "GET", "/metadata/tok-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX/user-data", hostIP, 404, ""},
		{"malformed token", "GET", "/metadata/short/user-data", hostIP, 404, ""},
		{"unknown document", "GET", base + "secrets", hostIP, 404, ""},
		{"ignition of a cloud-init host", "GET", base + "ignition", hostIP, 404, ""},
		{"POST user-data", "POST", base + "user-data", hostIP, 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(tc.method, tc.path, tc.src, nil)
			if rec.Code != tc.want {
				t.Fatalf("code = %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("body %q lacks %q", rec.Body, tc.body)
			}
			if tc.want == 403 && strings.Contains(rec.Body.String(), "marker") {
				t.Error("a refused request got the user-data")
			}
		})
	}
	st.mu.Lock()
	var rejected int
	for _, e := range st.events {
		if e.Type == EventRejected && e.Fields["ip"] == otherIP {
			rejected++
		}
	}
	st.mu.Unlock()
	if rejected != 2 {
		t.Errorf("%d metadata.rejected events from %s, want 2", rejected, otherIP)
	}

	// Phone-home: from another address refused and not passed on; from the host passed on.
	if rec := do("POST", base+"phonehome", otherIP, url.Values{"instance_id": {"x"}}); rec.Code != 403 {
		t.Errorf("phone-home from another address: %d", rec.Code)
	}
	if rec := do("POST", base+"phonehome", hostIP, url.Values{"instance_id": {"node-1-3f9a2c7d1e0b4a55"}, "hostname": {"node-1"}}); rec.Code != 200 {
		t.Errorf("phone-home: %d", rec.Code)
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	if len(ph.calls) != 1 || ph.calls[0]["instance_id"] != "node-1-3f9a2c7d1e0b4a55" || ph.calls[0]["hostname"] != "node-1" {
		t.Errorf("phone-homes = %v", ph.calls)
	}
}

// TestBoundAddress: without a reservation, a host's metadata goes only to the address
// its provisioning is bound to (its agent's); with one, only to the reservation.
func TestBoundAddress(t *testing.T) {
	for _, tc := range []struct {
		name, reserved, bound, src string
		want                       int
	}{
		{"bound address", "", "192.168.7.20", "192.168.7.20", 200},
		{"another address", "", "192.168.7.20", "192.168.7.21", 403},
		{"no binding", "", "", "192.168.7.20", 403},
		{"reservation wins over the binding", hostIP, "192.168.7.20", "192.168.7.20", 403},
		{"reservation", hostIP, hostIP, hostIP, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := testHost()
			host.IP = tc.reserved
			host.Provision.HostIP = tc.bound
			st := &fakeStore{host: host}
			h, err := NewHandler(Config{Store: st, Gate: testGate(t, st)})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest("GET", "/metadata/"+testToken+"/meta-data", nil)
			req.SetPathValue("token", testToken)
			req.SetPathValue("doc", "meta-data")
			req.RemoteAddr = tc.src + ":1000"
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("code %d, want %d", rec.Code, tc.want)
			}
		})
	}
}

func TestStaleProvisionDataIsNotServed(t *testing.T) {
	// Data sealed for an earlier provisioning of the host (or a deleted host of the
	// same ID) must never be served under the new one.
	st := &fakeStore{host: testHost(), data: inventory.ProvisionData{ProvisionID: "old", UserData: []byte("#cloud-config\nold: secret\n")}}
	h, err := NewHandler(Config{Store: st, Gate: testGate(t, st)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	req := httptest.NewRequest("GET", "/metadata/"+testToken+"/user-data", nil)
	req.RemoteAddr = hostIP + ":1"
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != 200 || strings.Contains(rec.Body.String(), "secret") {
		t.Errorf("code %d body %q", rec.Code, rec.Body)
	}
}
