package lab

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// TestVMBootOrder pins the boot order StartVM gives a VM and a lab BMC chooses from:
// network first for StartVM, as the netboot tests measured; with a disk, BMC sets that
// put one device or the other first.
func TestVMBootOrder(t *testing.T) {
	diskless := VM{Name: "vm", Firmware: SeaBIOS}
	withDisk := VM{Name: "vm", Firmware: OVMFHTTP, Disk: "/l/d.img"}
	for _, tt := range []struct {
		name string
		vm   VM
		want bmcsim.BootArgs
		mode bmcsim.BootMode
	}{
		{"diskless", diskless, bmcsim.BootArgs{PXE: []string{"-set", "device.nic0.bootindex=1"}}, bmcsim.BootLegacy},
		{"disk", withDisk, bmcsim.BootArgs{
			PXE:     []string{"-set", "device.nic0.bootindex=1", "-set", "device.disk0.bootindex=2"},
			Disk:    []string{"-set", "device.disk0.bootindex=1", "-set", "device.nic0.bootindex=2"},
			Default: []string{"-set", "device.disk0.bootindex=1", "-set", "device.nic0.bootindex=2"},
		}, bmcsim.BootUEFI},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.vm.bootOrder()); diff != "" {
				t.Errorf("bootOrder (-want +got):\n%s", diff)
			}
			if got := tt.vm.firmwareMode(); got != tt.mode {
				t.Errorf("firmwareMode = %q, want %q", got, tt.mode)
			}
		})
	}
}

// TestBootSector checks the disk-boot fixture's MBR: the program, the address of its
// message (where the code's mov si,imm16 points), the message and the boot signature.
func TestBootSector(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := WriteBootDisk(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1<<20 {
		t.Fatalf("disk is %d bytes, want %d", len(b), 1<<20)
	}
	if b[510] != 0x55 || b[511] != 0xaa {
		t.Errorf("boot signature %#x %#x, want 0x55 0xaa", b[510], b[511])
	}
	if !bytes.HasPrefix(b, []byte{0xfa, 0xfc, 0x31, 0xc0, 0x8e, 0xd8, 0xbe}) {
		t.Errorf("boot sector does not start with the program: % x", b[:8])
	}
	msgAddr := int(binary.LittleEndian.Uint16(b[7:9]))
	off := msgAddr - 0x7c00
	if off != len(bootSectorCode) {
		t.Fatalf("message address %#x points at offset %d, want %d (right after the code)", msgAddr, off, len(bootSectorCode))
	}
	end := bytes.IndexByte(b[off:], 0)
	if got := string(b[off : off+end]); got != MarkerDiskBoot+"\r\n" {
		t.Errorf("message %q, want %q", got, MarkerDiskBoot+"\r\n")
	}
	if err := WriteBootDisk(path, 1000); err == nil {
		t.Error("WriteBootDisk with a size not a multiple of 512 succeeded")
	}
	if _, err := bootSector(strings.Repeat("x", 446)); err == nil {
		t.Error("bootSector with a message that cannot fit succeeded")
	}
}

// TestBMCDefaults checks the BMC defaults and URLs rackboot is given.
func TestBMCDefaults(t *testing.T) {
	s := &Segment{Addr: netip.MustParsePrefix("10.77.0.1/24")}
	ipmi, err := s.bmcDefaults(BMCConfig{Protocol: IPMI})
	if err != nil {
		t.Fatal(err)
	}
	rf, err := s.bmcDefaults(BMCConfig{Protocol: Redfish, Username: "root", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	given, err := s.bmcDefaults(BMCConfig{Protocol: Redfish, Addr: netip.MustParseAddrPort("10.77.0.5:8443")})
	if err != nil {
		t.Fatal(err)
	}
	noPort, err := s.bmcDefaults(BMCConfig{Protocol: IPMI, Addr: netip.AddrPortFrom(netip.MustParseAddr("10.77.0.6"), 0)})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"no port":   noPort.Addr.String(),
		"ipmi addr": ipmi.Addr.String(), "ipmi user": ipmi.Username, "redfish addr": rf.Addr.String(),
		"redfish user": rf.Username, "redfish password": rf.Password, "redfish system": rf.SystemID,
		"given addr":  given.Addr.String(),
		"ipmi url":    (&BMC{Protocol: IPMI, Username: ipmi.Username, Addr: ipmi.Addr}).URL(),
		"redfish url": (&BMC{Protocol: Redfish, Username: rf.Username, Addr: rf.Addr}).URL(),
	}
	want := map[string]string{
		"no port":   "10.77.0.6:623",
		"ipmi addr": "10.77.250.11:623", "ipmi user": "admin", "redfish addr": "10.77.250.12:80",
		"redfish user": "root", "redfish password": "pw", "redfish system": "1",
		"given addr":  "10.77.0.5:8443",
		"ipmi url":    "ipmi://admin@10.77.250.11:623",
		"redfish url": "redfish+http://root@10.77.250.12:80",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("BMC defaults (-want +got):\n%s", diff)
	}
	// A random password fits IPMI 2.0's 20 bytes and differs between BMCs.
	other, _ := s.bmcDefaults(BMCConfig{Protocol: IPMI})
	if len(ipmi.Password) == 0 || len(ipmi.Password) > 20 || ipmi.Password == other.Password {
		t.Errorf("random passwords %q, %q: want 1-20 bytes, different", ipmi.Password, other.Password)
	}
	if _, err := s.bmcDefaults(BMCConfig{Protocol: "snmp"}); err == nil {
		t.Error("protocol snmp accepted")
	}
	if _, err := s.bmcDefaults(BMCConfig{Protocol: IPMI, Addr: netip.MustParseAddrPort("[fd77::5]:623")}); err == nil {
		t.Error("IPv6 BMC address accepted")
	}
}

// TestBMCIPMIToolArgs: the password goes by file, never on the command line.
func TestBMCIPMIToolArgs(t *testing.T) {
	b := &BMC{Protocol: IPMI, Addr: netip.MustParseAddrPort("10.77.250.11:623"), Username: "admin", Password: "secret", PasswordFile: "/d/bmc/password"}
	want := []string{"ipmitool", "-I", "lanplus", "-C", "3", "-H", "10.77.250.11", "-p", "623", "-U", "admin", "-f", "/d/bmc/password", "power", "status"}
	got := b.IPMIToolArgs("power", "status")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("IPMIToolArgs (-want +got):\n%s", diff)
	}
}
