package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFnmatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", true},
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00008086d00001000sv00001AF4sd00000001bc02sc00i00", false},
		{"virtio:d00000001v*", "virtio:d00000001v00001AF4", true},
		{"virtio:d00000001v*", "virtio:d00000002v00001AF4", false},
		// * crosses "/" (a DMI modalias has a date in it), unlike path.Match.
		{"dmi:*:bd04/01/2014:*", "dmi:bvnSeaBIOS:bd04/01/2014:svnQEMU:", true},
		{"dmi:*:bd04/01/20[0-9][0-9]:*svnQEMU:*", "dmi:bvnSeaBIOS:bvr1:bd04/01/2014:br0.0:svnQEMU:pn", true},
		{"dmi:*:bd04/01/20[0-9][0-9]:*svnQEMU:*", "dmi:bvnSeaBIOS:bvr1:bd04/01/20X4:br0.0:svnQEMU:pn", false},
		{"usb:v*p*d*dc*dsc*dp*ic09isc*ip*in*", "usb:v1D6Bp0002d0601dc09dsc00dp01ic09isc00ip00in00", true},
		{"acpi*:PNP0A0[38]:*", "acpi:PNP0A03:", true},
		{"acpi*:PNP0A0[38]:*", "acpi:PNP0A05:", false},
		{"x[!0-9]y", "xay", true},
		{"x[!0-9]y", "x5y", false},
		{"x[^a]y", "xby", true},
		{"x[]]y", "x]y", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{`a\*c`, "a*c", true},
		{`a\*c`, "abc", false},
		{"x[ab", "x[ab", true}, // an unterminated class is literal
		{"crypto-crc32c", "crypto-crc32c", true},
		{"crypto-crc32c", "crypto-crc32c-intel", false},
		{"**a", "bba", true},
		{"", "", true},
		{"*", "", true},
	} {
		if got := fnmatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("fnmatch(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func testIndex(t *testing.T) *ModuleIndex {
	t.Helper()
	ix, err := LoadModuleIndex("testdata/root/lib/modules/6.1.0-56-amd64")
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestModuleIndexLookup(t *testing.T) {
	ix := testIndex(t)
	for s, want := range map[string][]string{
		"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00": {"virtio_pci"},
		"virtio:d00000002v00001AF4":                             {"virtio_blk"},
		"crypto-crc32c":                                         {"crc32c_intel", "crc32c_generic"},
		"virtio-net":                                            {"virtio_net"}, // a module name, - read as _
		"fs-ext4":                                               {"ext4"},
		"pci:v000010ECd00008168sv*":                             nil,
	} {
		if diff := cmp.Diff(want, ix.Lookup(s)); diff != "" {
			t.Errorf("Lookup(%q) (-want +got):\n%s", s, diff)
		}
	}
	if p, ok := ix.Path("crc32c_intel"); !ok || p != "kernel/arch/x86/crypto/crc32c-intel.ko" {
		t.Errorf("Path(crc32c_intel) = %q, %v", p, ok)
	}
}

// recorder is a fake finit_module: it records the module names in load order and fails
// for the names in fail.
type recorder struct {
	loaded []string
	fail   map[string]bool
}

func (r *recorder) insert(p string) error {
	name := ModuleName(p)
	if r.fail[name] {
		return errors.New("no such device")
	}
	r.loaded = append(r.loaded, name)
	return nil
}

func TestModuleLoaderScanDevices(t *testing.T) {
	rec := &recorder{}
	l := &ModuleLoader{Index: testIndex(t), Root: "testdata/root", Insert: rec.insert}
	got, err := l.ScanDevices()
	if err != nil {
		t.Fatal(err)
	}
	// The virtio PCI devices need virtio_pci with its dependencies first; the virtio-net
	// device (a child of the PCI one) needs virtio_net; the DMI alias holds "/" in a date.
	want := []string{
		"virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio", "virtio_pci",
		"failover", "net_failover", "virtio_net",
		"fake_dmi_quirk",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ScanDevices loaded (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, rec.loaded); diff != "" {
		t.Errorf("insert order (-want +got):\n%s", diff)
	}
	again, err := l.ScanDevices()
	if err != nil || len(again) != 0 {
		t.Errorf("a second scan with no new devices loaded %v (err %v), want nothing", again, err)
	}
}

func TestModuleLoaderSoftdepAndFailures(t *testing.T) {
	rec := &recorder{fail: map[string]bool{"crc32c_intel": true}}
	root := t.TempDir()
	// crc16 is already loaded (it has a /sys/module entry): never inserted again.
	if err := os.MkdirAll(filepath.Join(root, "sys/module/crc16"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := &ModuleLoader{Index: testIndex(t), Root: root, Insert: rec.insert}
	got, err := l.Load("ext4")
	// crc32c-intel fails (no SSE4.2), the generic one loads, and ext4 still does.
	want := []string{"crc32c_generic", "jbd2", "mbcache", "ext4"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load(ext4) (-want +got):\n%s", diff)
	}
	if err == nil || !strings.Contains(err.Error(), "crc32c_intel") {
		t.Errorf("Load(ext4) error = %v, want the crc32c_intel failure reported", err)
	}
	if got, _ := l.Load("ext4"); len(got) != 0 {
		t.Errorf("loading ext4 again inserted %v", got)
	}
	if _, err := l.Load("no_such_module"); err == nil {
		t.Error("Load(no_such_module) succeeded")
	}
}

func TestLoadModuleIndexMissing(t *testing.T) {
	if _, err := LoadModuleIndex(t.TempDir()); err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("LoadModuleIndex(empty dir) = %v, want an error naming modules.dep", err)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/arch/x86/crypto/crc32c-intel.ko":        "crc32c_intel",
		"kernel/drivers/net/virtio_net.ko.xz":           "virtio_net",
		"kernel/drivers/net/ethernet/intel/e1000e.ko":   "e1000e",
		"kernel/drivers/scsi/sd_mod.ko.zst":             "sd_mod",
		"/lib/modules/6.1.0-56-amd64/kernel/fs/ext4.ko": "ext4",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}
