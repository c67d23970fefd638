package agent

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/agentapi"
)

func TestCollectFacts(t *testing.T) {
	got := CollectFacts("testdata/root", "52:54:00:AA:BB:CC")
	want := agentapi.Facts{
		System: agentapi.System{
			UUID: "8c3f2a10-1b2c-4d5e-8f90-a1b2c3d4e5f6", Vendor: "Dell Inc.", Product: "PowerEdge R650", Serial: "ABC1234",
			BoardVendor: "Dell Inc.", BoardProduct: "0XYZ12", BIOSVendor: "Dell Inc.", BIOSVersion: "1.6.5",
			// board_serial is "To Be Filled By O.E.M.": dropped.
		},
		CPU: agentapi.CPU{Count: 3, Sockets: 2, Model: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", Flags: []string{"vmx", "aes", "avx2", "hypervisor"}},
		// 2048 MiB + an empty slot + 64 GiB through the extended size field.
		Memory: agentapi.Memory{InstalledBytes: 2048<<20 + 64<<30, UsableBytes: 3988236 * 1024, DIMMs: 2},
		Disks: []agentapi.Disk{
			{Name: "nvme0n1", SizeBytes: 937703088 * 512, Model: "SAMSUNG MZQL2480HCJQ-00A07", Serial: "S64HNE0R123456", WWN: "eui.36344830526001230025384500000001", LogicalSectorBytes: 512},
			{Name: "sda", SizeBytes: 7814037168 * 512, Model: "ST4000NM0035-1V4", Serial: "ZC1ABCDE", WWN: "naa.5000c500a1b2c3d4", Rotational: true, LogicalSectorBytes: 4096},
			{Name: "sdb", SizeBytes: 62914560 * 512, Model: "USB Flash", Rotational: true, Removable: true},
			{Name: "vda", SizeBytes: 1 << 30, Serial: "VIRTIO-SER-1", Rotational: true, LogicalSectorBytes: 512},
		},
		NICs: []agentapi.NIC{
			{Name: "eth0", MAC: "52:54:00:aa:bb:cc", SpeedMbps: 10000, Carrier: true, Driver: "ixgbe", Boot: true},
			{Name: "eth1", MAC: "52:54:00:aa:bb:cd", Driver: "ixgbe"},
		},
		Firmware: "uefi",
		Kernel:   "6.1.0-56-amd64",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("facts (-want +got):\n%s", diff)
	}
}

func TestCollectFactsEmptyRoot(t *testing.T) {
	got := CollectFacts(t.TempDir(), "")
	want := agentapi.Facts{Firmware: "bios"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("facts of an empty root (-want +got):\n%s", diff)
	}
}

func TestParseMemoryDevice(t *testing.T) {
	t17 := func(size uint16, ext uint32, length byte) []byte {
		b := make([]byte, 0x28)
		b[0], b[1] = 17, length
		binary.LittleEndian.PutUint16(b[0x0C:], size)
		binary.LittleEndian.PutUint32(b[0x1C:], ext)
		return append(b, "DIMM\x00\x00"...)
	}
	for _, tc := range []struct {
		name string
		raw  []byte
		size uint64
		ok   bool
	}{
		{"1024 MiB as QEMU -m 1024 writes it", t17(1024, 0, 0x28), 1 << 30, true},
		{"KiB granularity", t17(0x8000|512, 0, 0x28), 512 << 10, true},
		{"extended size", t17(0x7FFF, 128*1024, 0x28), 128 << 30, true},
		{"extended size ignores bit 31", t17(0x7FFF, 0x80000000|1024, 0x28), 1 << 30, true},
		{"empty slot", t17(0, 0, 0x28), 0, true},
		{"unknown size", t17(0xFFFF, 0, 0x28), 0, true},
		{"SMBIOS 2.3 structure without extended size", t17(0x7FFF, 5, 0x1B), 0, false},
		{"not type 17", append([]byte{16, 0x28}, make([]byte, 0x26)...), 0, false},
		{"truncated", []byte{17, 0x28, 0, 0}, 0, false},
		{"length past the data", append([]byte{17, 0xFF}, make([]byte, 0x20)...), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size, ok := parseMemoryDevice(tc.raw)
			if size != tc.size || ok != tc.ok {
				t.Errorf("parseMemoryDevice = %d, %v; want %d, %v", size, ok, tc.size, tc.ok)
			}
		})
	}
}

func TestDMIString(t *testing.T) {
	for in, want := range map[string]string{
		"  PowerEdge R650 ":        "PowerEdge R650",
		"To Be Filled By O.E.M.":   "",
		"Default string":           "",
		"Not Specified":            "",
		"System Serial Number":     "",
		"QEMU":                     "QEMU",
		"Standard PC (i440FX+PIIX": "Standard PC (i440FX+PIIX",
	} {
		if got := dmiString(in); got != want {
			t.Errorf("dmiString(%q) = %q, want %q", in, got, want)
		}
	}
}
