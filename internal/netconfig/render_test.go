package netconfig

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
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
		t.Fatalf("%v (run go test ./internal/netconfig -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got; go test ./internal/netconfig -update rewrites it):\n%s", p, diff)
	}
}

// labSpec is the lab's main case: bond0, active-backup over two NICs, and VLAN 100 on
// it carrying the node's address.
func labSpec() Spec {
	return Spec{
		Ethernets: []Ethernet{
			{Name: "nic0", MAC: "52:54:00:00:01:01"},
			{Name: "nic1", MAC: "52:54:00:00:01:02"},
		},
		Bonds: []Bond{{Name: "bond0", Mode: ModeActiveBackup, Members: []string{"nic0", "nic1"}, Primary: "nic0"}},
		VLANs: []VLAN{{ID: 100, Link: "bond0", Addresses: []string{"10.20.0.5/24"}}},
		Routes: []Route{
			{To: "default", Via: "10.20.0.1"},
		},
		Nameservers: Nameservers{Addresses: []string{"10.20.0.1"}, Search: []string{"lab.example"}},
	}
}

// renderCases are the golden cases: each renders to NAME.yaml (network-config) and
// NAME.networkd, and its spec is kept as NAME.json, the form the API takes.
func renderCases() []struct {
	name string
	spec Spec
} {
	return []struct {
		name string
		spec Spec
	}{
		{"default-static", Default("52:54:00:12:34:56", "10.0.0.50/24", "10.0.0.1", []string{"10.0.0.1"}, []string{"rack1.example.com"})},
		{"default-dhcp", Default("52:54:00:12:34:56", "", "10.0.0.1", nil, nil)},
		{"static-routes-dns", Spec{
			// Written as an operator might: uppercase MAC, "default".
			Ethernets: []Ethernet{{Name: "eno1", MAC: "0C:C4:7A:DB:DC:B0", Addresses: []string{"192.168.10.20/24", "2001:db8:10::20/64"}}},
			Routes: []Route{
				{To: "default", Via: "192.168.10.1", Metric: 100},
				{To: "172.16.0.0/12", Via: "192.168.10.254"},
			},
			Nameservers: Nameservers{Addresses: []string{"192.168.10.2", "192.168.10.3"}, Search: []string{"dc1.example.com", "example.com"}},
		}},
		{"bond-active-backup-vlan", labSpec()},
		{"bond-802.3ad", Spec{
			Ethernets: []Ethernet{
				{Name: "eno1", MAC: "3c:ec:ef:10:00:01"},
				{Name: "eno2", MAC: "3c:ec:ef:10:00:02"},
			},
			Bonds: []Bond{{
				Name: "bond0", Mode: Mode8023AD, Members: []string{"eno1", "eno2"},
				MIIMon: 100, LACPRate: "fast", TransmitHashPolicy: "layer3+4",
				MTU: 9000, Addresses: []string{"10.30.0.10/24"},
			}},
			Routes:      []Route{{To: "0.0.0.0/0", Via: "10.30.0.1", Metric: 50}},
			Nameservers: Nameservers{Addresses: []string{"10.30.0.2"}},
		}},
		{"vlan-on-nic", Spec{
			Ethernets: []Ethernet{{Name: "eno1", MAC: "3c:ec:ef:20:00:01"}},
			VLANs:     []VLAN{{ID: 200, Link: "eno1", Addresses: []string{"10.40.0.10/24"}}},
			Routes:    []Route{{To: "default", Via: "10.40.0.1"}},
		}},
		{"dhcp-and-static", Spec{
			Ethernets: []Ethernet{
				{Name: "eno1", MAC: "3c:ec:ef:30:00:01", DHCP4: true},
				{Name: "eno2", MAC: "3c:ec:ef:30:00:02", Addresses: []string{"192.168.50.10/24"}},
			},
			Routes: []Route{
				{To: "10.0.0.0/8", Via: "192.168.50.1"},
				// A gateway behind the DHCP interface, which only interface can place.
				{To: "198.51.100.0/24", Via: "10.1.0.254", Interface: "eno1"},
			},
			Nameservers: Nameservers{Addresses: []string{"192.168.50.2"}, Search: []string{"storage.example"}},
		}},
	}
}

func TestGolden(t *testing.T) {
	for _, c := range renderCases() {
		t.Run(c.name, func(t *testing.T) {
			if err := Validate(c.spec, nil); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			spec, err := json.MarshalIndent(c.spec, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, c.name+".json", append(spec, '\n'))

			y, err := CloudInit(c.spec)
			if err != nil {
				t.Fatalf("CloudInit: %v", err)
			}
			golden(t, c.name+".yaml", y)
			checkNetworkConfig(t, c.spec, y)

			files, err := Networkd(c.spec)
			if err != nil {
				t.Fatalf("Networkd: %v", err)
			}
			golden(t, c.name+".networkd", concat(files))
		})
	}
}

// concat writes files as one text, each under a header line.
func concat(files []File) []byte {
	var b strings.Builder
	for i, f := range files {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "==> %s (%#o) <==\n%s", f.Path, f.Mode, f.Contents)
	}
	return []byte(b.String())
}

// checkNetworkConfig parses a rendered network-config back: YAML, version 2, one
// ethernet per spec ethernet, matched by its MAC as a string.
func checkNetworkConfig(t *testing.T, s Spec, y []byte) {
	t.Helper()
	var doc struct {
		Version   int `yaml:"version"`
		Ethernets map[string]struct {
			Match   map[string]any `yaml:"match"`
			SetName string         `yaml:"set-name"`
		} `yaml:"ethernets"`
	}
	if err := yaml.Unmarshal(y, &doc); err != nil {
		t.Fatalf("network-config is not YAML: %v\n%s", err, y)
	}
	if doc.Version != 2 {
		t.Errorf("version = %d, want 2", doc.Version)
	}
	n := Normalize(s)
	if len(doc.Ethernets) != len(n.Ethernets) {
		t.Errorf("%d ethernets, want %d", len(doc.Ethernets), len(n.Ethernets))
	}
	for _, e := range n.Ethernets {
		got, ok := doc.Ethernets[e.Name]
		if !ok {
			t.Errorf("ethernet %s missing", e.Name)
			continue
		}
		if mac, ok := got.Match["macaddress"].(string); !ok || mac != e.MAC {
			t.Errorf("ethernets.%s.match.macaddress = %#v, want the string %q", e.Name, got.Match["macaddress"], e.MAC)
		}
		if got.SetName != e.Name {
			t.Errorf("ethernets.%s.set-name = %q", e.Name, got.SetName)
		}
	}
}

// An all-digit MAC is a base-60 integer to a YAML 1.1 parser such as cloud-init's
// (PyYAML), and on/off/yes/no are booleans, as keys too: those must come quoted.
func TestCloudInitQuotesYAML11Ambiguities(t *testing.T) {
	s := Spec{
		Ethernets: []Ethernet{
			{Name: "on", MAC: "52:54:00:12:34:56", DHCP4: true},
			{Name: "no", MAC: "52:54:00:12:34:57"},
			{Name: "off", MAC: "52:54:00:12:34:58"},
		},
		Bonds: []Bond{{Name: "yes", Mode: ModeBalanceRR, Members: []string{"no", "off"}, Addresses: []string{"10.0.0.2/24"}}},
	}
	y, err := CloudInit(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"on":`, `"no":`, `"yes":`, `macaddress: "52:54:00:12:34:56"`, `- "no"`, `set-name: "off"`} {
		if !strings.Contains(string(y), want) {
			t.Errorf("network-config lacks %s:\n%s", want, y)
		}
	}
	checkNetworkConfig(t, s, y)
}

func TestRenderersRefuseInvalidSpecs(t *testing.T) {
	s := labSpec()
	s.Bonds[0].Members = []string{"nic0"}
	want := "network.bonds[0].members: a bond needs at least 2 members, got 1"
	if y, err := CloudInit(s); err == nil || !strings.Contains(err.Error(), want) || y != nil {
		t.Errorf("CloudInit = %q, %v; want no document and %q", y, err, want)
	}
	if files, err := Networkd(s); err == nil || !strings.Contains(err.Error(), want) || files != nil {
		t.Errorf("Networkd = %v, %v; want no files and %q", files, err, want)
	}
}

func TestDefault(t *testing.T) {
	for _, c := range []struct {
		name          string
		mac, addr, gw string
		dns, search   []string
		want          Spec
	}{
		{
			name: "static", mac: "52:54:00:12:34:56", addr: "10.0.0.50/24", gw: "10.0.0.1",
			dns: []string{"10.0.0.1"}, search: []string{"lab.example"},
			want: Spec{
				Ethernets:   []Ethernet{{Name: "boot0", MAC: "52:54:00:12:34:56", Addresses: []string{"10.0.0.50/24"}}},
				Routes:      []Route{{To: "default", Via: "10.0.0.1"}},
				Nameservers: Nameservers{Addresses: []string{"10.0.0.1"}, Search: []string{"lab.example"}},
			},
		},
		{
			name: "no gateway", mac: "52:54:00:12:34:56", addr: "10.0.0.50/24",
			want: Spec{Ethernets: []Ethernet{{Name: "boot0", MAC: "52:54:00:12:34:56", Addresses: []string{"10.0.0.50/24"}}}},
		},
		{
			name: "no reservation", mac: "52:54:00:12:34:56", gw: "10.0.0.1",
			want: Spec{Ethernets: []Ethernet{{Name: "boot0", MAC: "52:54:00:12:34:56", DHCP4: true}}},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Default(c.mac, c.addr, c.gw, c.dns, c.search)
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("Default (-want +got):\n%s", diff)
			}
			if err := Validate(got, []NIC{{Name: "ens3", MAC: c.mac}}); err != nil {
				t.Errorf("Validate(Default) = %v", err)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	in := Spec{
		Ethernets: []Ethernet{{Name: "eno1", MAC: "0C-C4-7A-DB-DC-B0", Addresses: []string{"2001:DB8::0001/64", " 10.0.0.5/24"}}},
		VLANs:     []VLAN{{ID: 7, Link: "eno1"}, {Name: "eno1.8", ID: 8, Link: "eno1"}},
		Routes: []Route{
			{To: "default", Via: "10.0.0.1"},
			{To: "default", Via: "2001:db8::1"},
			{To: "default", Via: "bogus"},
			{To: "172.16.0.0/12", Via: "10.0.0.1"},
		},
		Nameservers: Nameservers{Addresses: []string{"2001:0db8::53", "not-an-ip"}},
	}
	want := Spec{
		Ethernets: []Ethernet{{Name: "eno1", MAC: "0c:c4:7a:db:dc:b0", Addresses: []string{"2001:db8::1/64", "10.0.0.5/24"}}},
		VLANs:     []VLAN{{Name: "eno1.7", ID: 7, Link: "eno1"}, {Name: "eno1.8", ID: 8, Link: "eno1"}},
		Routes: []Route{
			{To: "0.0.0.0/0", Via: "10.0.0.1"},
			{To: "::/0", Via: "2001:db8::1"},
			{To: "default", Via: "bogus"},
			{To: "172.16.0.0/12", Via: "10.0.0.1"},
		},
		Nameservers: Nameservers{Addresses: []string{"2001:db8::53", "not-an-ip"}},
	}
	got := Normalize(in)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Normalize (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(got, Normalize(got)); diff != "" {
		t.Errorf("Normalize is not idempotent (-once +twice):\n%s", diff)
	}
	in.Ethernets[0].Addresses[0] = "changed"
	if got.Ethernets[0].Addresses[0] == "changed" {
		t.Error("Normalize shares its input's slices")
	}
}

// The JSON form is what the API and the CRD carry: camelCase keys, empty fields left
// out, and it reads back to the same spec.
func TestSpecJSON(t *testing.T) {
	b, err := json.Marshal(Spec{Bonds: []Bond{{Name: "bond0", Mode: Mode8023AD, Members: []string{"a", "b"}, LACPRate: "fast", TransmitHashPolicy: "layer3+4", MIIMon: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"bonds":[{"name":"bond0","mode":"802.3ad","members":["a","b"],"miimon":100,"lacpRate":"fast","transmitHashPolicy":"layer3+4"}],"nameservers":{}}`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
	for _, c := range renderCases() {
		b, err := json.Marshal(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		var back Spec
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c.spec, back); diff != "" {
			t.Errorf("%s: JSON round trip (-want +got):\n%s", c.name, diff)
		}
	}
}

// FuzzRender: no input makes Validate or a renderer panic, and whatever Validate
// accepts renders to YAML that parses.
func FuzzRender(f *testing.F) {
	for _, c := range renderCases() {
		b, err := json.Marshal(c.spec)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Spec
		if json.Unmarshal(data, &s) != nil {
			return
		}
		verr := Validate(s, []NIC{{Name: "eth0", MAC: "52:54:00:00:00:01"}})
		y, yerr := CloudInit(s)
		_, nerr := Networkd(s)
		if Validate(s, nil) == nil {
			if yerr != nil || nerr != nil {
				t.Fatalf("valid spec does not render: %v, %v", yerr, nerr)
			}
			var v map[string]any
			if err := yaml.Unmarshal(y, &v); err != nil {
				t.Fatalf("rendered YAML does not parse: %v\n%s", err, y)
			}
		} else if yerr == nil || nerr == nil {
			t.Fatalf("invalid spec rendered (%v)", verr)
		}
	})
}
