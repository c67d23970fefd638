package admin

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/internal/inventory"
)

func TestParseHostFile(t *testing.T) {
	web1 := HostSpec{ID: "web1", MACs: []string{"52:54:00:00:00:01"}, IP: "192.168.50.11", Hostname: "web1.rack1", Labels: map[string]string{"role": "web", "rack": "r1"}}
	db1 := HostSpec{MACs: []string{"52:54:00:00:00:02", "52:54:00:00:00:03"}, Labels: map[string]string{"role": "db"}}
	cases := []struct {
		name, file, data string
		want             []HostSpec
	}{
		{"YAML hosts map", "hosts.yaml", `
# rack 1
hosts:
  - id: web1
    macs: ["52:54:00:00:00:01"]
    ip: 192.168.50.11
    hostname: web1.rack1
    labels: {role: web, rack: r1}
  - macs: [52:54:00:00:00:02, 52:54:00:00:00:03]
    labels:
      role: db
`, []HostSpec{web1, db1}},
		{"YAML bare list", "hosts.yml", `
- id: web1
  macs: ["52:54:00:00:00:01"]
  ip: 192.168.50.11
  hostname: web1.rack1
  labels: {role: web, rack: r1}
`, []HostSpec{web1}},
		{"JSON is YAML", "hosts.json", `{"hosts": [{"id": "web1", "macs": ["52:54:00:00:00:01"], "ip": "192.168.50.11", "hostname": "web1.rack1", "labels": {"role": "web", "rack": "r1"}}]}`, []HostSpec{web1}},
		{"YAML by content", "hosts.txt", "hosts:\n- macs: ['52:54:00:00:00:02', '52:54:00:00:00:03']\n  labels: {role: db}\n", []HostSpec{db1}},
		{"YAML aliases inside the list", "hosts.yaml", `
- macs: ["52:54:00:00:00:01"]
  id: a1
  boot: &boot {kernel: debian/vmlinuz, initrds: [debian/initrd.img]}
- macs: ["52:54:00:00:00:02"]
  id: a2
  boot: *boot
`, []HostSpec{
			{ID: "a1", MACs: []string{"52:54:00:00:00:01"}, Boot: &inventory.BootProfile{Kernel: "debian/vmlinuz", Initrds: []string{"debian/initrd.img"}}},
			{ID: "a2", MACs: []string{"52:54:00:00:00:02"}, Boot: &inventory.BootProfile{Kernel: "debian/vmlinuz", Initrds: []string{"debian/initrd.img"}}},
		}},
		{"YAML scalars are strings as written", "hosts.yaml", "- macs: [525400000001, 001122334455]\n  labels: {ssd: yes, gen: 3, fw: 0755, on: off}\n", []HostSpec{
			{MACs: []string{"525400000001", "001122334455"}, Labels: map[string]string{"ssd": "yes", "gen": "3", "fw": "0755", "on": "off"}},
		}},
		{"YAML merge keys", "hosts.yaml", `
- &base
  macs: ["52:54:00:00:00:01"]
  id: m1
  labels: {rack: r1}
- <<: *base
  id: m2
  macs: ["52:54:00:00:00:02"]
`, []HostSpec{
			{ID: "m1", MACs: []string{"52:54:00:00:00:01"}, Labels: map[string]string{"rack": "r1"}},
			{ID: "m2", MACs: []string{"52:54:00:00:00:02"}, Labels: map[string]string{"rack": "r1"}},
		}},
		{"YAML BMC and boot", "hosts.yaml", `
- id: bmc1
  macs: ["52:54:00:00:00:01"]
  firmware: uefi
  arch: x86_64
  bmc: {url: "ipmi://admin@192.168.60.11:623", password: secret}
  boot: {kernel: "http://10.0.0.1/vmlinuz", cmdline: "console=ttyS0 quiet"}
`, []HostSpec{{ID: "bmc1", MACs: []string{"52:54:00:00:00:01"}, Firmware: inventory.FirmwareUEFI, Arch: "x86_64",
			BMC:  &inventory.BMC{URL: "ipmi://admin@192.168.60.11:623", Password: "secret"},
			Boot: &inventory.BootProfile{Kernel: "http://10.0.0.1/vmlinuz", Cmdline: "console=ttyS0 quiet"}}}},
		{"CSV", "hosts.csv", "mac,ip,hostname,labels,id\n52:54:00:00:00:01,192.168.50.11,web1.rack1,role=web;rack=r1,web1\n# a comment\n\n52:54:00:00:00:02;52:54:00:00:00:03,,,role=db,\n", []HostSpec{web1, db1}},
		{"CSV by content with BOM and spaces", "hosts", "\xef\xbb\xbfMAC, Hostname, IP, Labels, ID\n52:54:00:00:00:01, web1.rack1, 192.168.50.11, role=web;rack=r1, web1\n", []HostSpec{web1}},
		{"CSV all columns", "hosts.csv", "mac,id,ip,hostname,labels,arch,firmware,bmc_url,bmc_password,boot_kernel,boot_initrds,boot_cmdline\n" +
			`52:54:00:00:00:01,bmc1,,,,x86_64,uefi,ipmi://admin@192.168.60.11:623,secret,http://10.0.0.1/vmlinuz,a.img;b.img,"console=ttyS0,115200 quiet"` + "\n",
			[]HostSpec{{ID: "bmc1", MACs: []string{"52:54:00:00:00:01"}, Firmware: inventory.FirmwareUEFI, Arch: "x86_64",
				BMC:  &inventory.BMC{URL: "ipmi://admin@192.168.60.11:623", Password: "secret"},
				Boot: &inventory.BootProfile{Kernel: "http://10.0.0.1/vmlinuz", Initrds: []string{"a.img", "b.img"}, Cmdline: "console=ttyS0,115200 quiet"}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _, err := ParseHostFile(c.file, []byte(c.data))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Fatalf("specs (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseHostFileErrorsNameTheLine(t *testing.T) {
	cases := []struct {
		name, file, data, want string
	}{
		{"YAML syntax", "h.yaml", "hosts:\n  - macs: [a\n  - id: x\n", "h.yaml: not valid YAML: line 2"},
		{"YAML unknown field", "h.yaml", "hosts:\n  - macs: ['52:54:00:00:00:01']\n  - macs: ['52:54:00:00:00:02']\n    mcas: x\n", `h.yaml: line 4: unknown field "mcas"`},
		{"YAML nested unknown field", "h.yaml", "- macs: ['52:54:00:00:00:01']\n  boot:\n    kernel: vmlinuz\n    kernal: x\n", `h.yaml: line 4: unknown field "kernal"`},
		{"YAML wrong type", "h.yaml", "- macs: ['52:54:00:00:00:01']\n  hostname: [a, b]\n", "h.yaml: line 2: field hostname: got a YAML list, want a string"},
		{"YAML invalid MAC", "h.yaml", "- macs: ['52:54:00:00:00:01']\n- id: bad\n  macs: [zz]\n", `h.yaml: line 2: "zz" is not a MAC address`},
		{"YAML duplicate MAC", "h.yaml", "- macs: ['52:54:00:00:00:01']\n  id: a\n- id: b\n  macs: ['52-54-00-00-00-01']\n", "h.yaml: line 3: MAC 52:54:00:00:00:01 is also used by line 1"},
		{"YAML duplicate key", "h.yaml", "- macs: ['52:54:00:00:00:01']\n  id: a\n  id: b\n", `h.yaml: line 3: key "id" is given twice in the same map`},
		{"YAML unknown top key", "h.yaml", "defaults: {}\nhosts: []\n", `h.yaml: line 1: unknown key "defaults"`},
		{"YAML hosts not a list", "h.yaml", "hosts: {id: a}\n", "h.yaml: line 1: 'hosts' is not a list"},
		{"YAML scalar", "h.yaml", "just text\n", "h.yaml: line 1: a host file is a list of hosts"},
		{"YAML item not a map", "h.yaml", "- 52:54:00:00:00:01\n", "h.yaml: line 1: host 1 is not a map of fields"},
		{"YAML two documents", "h.yaml", "- macs: ['52:54:00:00:00:01']\n---\n- macs: ['52:54:00:00:00:02']\n", "h.yaml: line 2: a second YAML document"},
		{"YAML empty", "h.yaml", "# nothing\n", "h.yaml: no hosts in the file"},
		{"YAML empty hosts", "h.yaml", "hosts:\n", "h.yaml: no hosts in the file"},
		{"YAML bad boot", "h.yaml", "- macs: ['52:54:00:00:00:01']\n  boot: {kernel: /boot/vmlinuz}\n", "h.yaml: line 1: host mac-525400000001: boot profile: kernel"},
		{"CSV bad MAC row", "h.csv", "mac,hostname\n52:54:00:00:00:01,a\n\n52:54:00:00:00:0g,b\n", `h.csv: line 4: "52:54:00:00:00:0g" is not a MAC address`},
		{"CSV bad label", "h.csv", "mac,labels\n52:54:00:00:00:01,role\n", `h.csv: line 2: label "role": write it as key=value (write labels as k=v;k=v)`},
		{"CSV unknown column", "h.csv", "mac,rack\n", `h.csv: line 1: unknown CSV column "rack": the columns are mac, id, ip`},
		{"CSV duplicate column", "h.csv", "mac,ip,IP\n", `h.csv: line 1: CSV column "IP" appears twice`},
		{"CSV no mac column", "h.csv", "hostname,ip\na,10.0.0.1\n", "h.csv: line 1: the CSV header has no mac column"},
		{"CSV wrong field count", "h.csv", "mac,ip\n52:54:00:00:00:01\n", "h.csv: line 2, column 1: wrong number of fields"},
		{"CSV bad quote", "h.csv", "mac,ip\n\"52:54:00:00:00:01,10.0.0.1\n", "h.csv: line 2, column"},
		{"CSV duplicate IP", "h.csv", "mac,ip\n52:54:00:00:00:01,10.0.0.5\n52:54:00:00:00:02,10.0.0.5\n", "h.csv: line 3: IP 10.0.0.5 is also reserved by line 2"},
		{"CSV header only", "h.csv", "mac,ip\n", "h.csv: no hosts in the file"},
		{"too large", "h.csv", strings.Repeat("x", MaxHostFileBytes+1), "more than the 4194304 one import accepts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ParseHostFile(c.file, []byte(c.data))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, c.want)
			}
		})
	}
}

func TestParseHostFileAliasBomb(t *testing.T) {
	// Each level doubles the nodes: 2^30 after expansion if unbounded.
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x]\n")
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
	}
	_, _, err := ParseHostFile("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "alias") {
		t.Fatalf("err = %v", err)
	}
	t.Log(err)
}

func TestParseHostFileLines(t *testing.T) {
	cases := []struct {
		file, data string
		want       []int
	}{
		{"h.yaml", "# rack\nhosts:\n  - macs: ['52:54:00:00:00:01']\n\n  - id: b\n    macs: ['52:54:00:00:00:02']\n", []int{3, 5}},
		{"h.csv", "# rack\nmac\n52:54:00:00:00:01\n\n\"52:54:00:00:00:02\"\n", []int{3, 5}},
	}
	for _, c := range cases {
		_, lines, err := ParseHostFile(c.file, []byte(c.data))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(c.want, lines); d != "" {
			t.Errorf("%s lines (-want +got):\n%s", c.file, d)
		}
	}
}
