package agent

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/rackboot/rackboot/agentapi"
)

// CollectFacts reads the hardware facts from the sysfs and procfs under root ("/" on a
// host; a copy of their files in tests). Missing files leave fields empty: a VM has no
// board serial, a container no DMI at all. bootMAC marks the booting NIC.
func CollectFacts(root, bootMAC string) agentapi.Facts {
	f := agentapi.Facts{
		System: systemFacts(root),
		CPU:    cpuFacts(root),
		Memory: memoryFacts(root),
		Disks:  diskFacts(root),
		NICs:   nicFacts(root, bootMAC),
		Kernel: readTrim(filepath.Join(root, "proc/sys/kernel/osrelease")),
	}
	if _, err := os.Stat(filepath.Join(root, "sys/firmware/efi")); err == nil {
		f.Firmware = "uefi"
	} else {
		f.Firmware = "bios"
	}
	return f
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// dmiString drops the placeholders firmware vendors put in unset SMBIOS strings.
func dmiString(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none", "n/a", "na", "not specified", "not applicable", "to be filled by o.e.m.",
		"default string", "system serial number", "system product name", "system manufacturer",
		"0", "0123456789", "unknown", "not available":
		return ""
	}
	return strings.TrimSpace(s)
}

func systemFacts(root string) agentapi.System {
	dmi := func(name string) string { return dmiString(readTrim(filepath.Join(root, "sys/class/dmi/id", name))) }
	s := agentapi.System{
		UUID:         strings.ToLower(dmi("product_uuid")),
		Vendor:       dmi("sys_vendor"),
		Product:      dmi("product_name"),
		Serial:       dmi("product_serial"),
		BoardVendor:  dmi("board_vendor"),
		BoardProduct: dmi("board_name"),
		BoardSerial:  dmi("board_serial"),
		BIOSVendor:   dmi("bios_vendor"),
		BIOSVersion:  dmi("bios_version"),
	}
	// An all-zero or all-F UUID is the firmware's "not set".
	if strings.Trim(s.UUID, "0-") == "" || strings.Trim(s.UUID, "f-") == "" {
		s.UUID = ""
	}
	return s
}

func cpuFacts(root string) agentapi.CPU {
	var c agentapi.CPU
	f, err := os.Open(filepath.Join(root, "proc/cpuinfo"))
	if err != nil {
		return c
	}
	defer f.Close()
	packages := map[string]bool{}
	flags := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "processor":
			c.Count++
		case "model name":
			if c.Model == "" {
				c.Model = v
			}
		case "physical id":
			packages[v] = true
		case "flags":
			if c.Count == 1 {
				for _, fl := range strings.Fields(v) {
					flags[fl] = true
				}
			}
		}
	}
	c.Sockets = len(packages)
	// Only the flags worth a scheduler's attention, not the whole list.
	for _, fl := range []string{"vmx", "svm", "aes", "avx2", "avx512f", "hypervisor"} {
		if flags[fl] {
			c.Flags = append(c.Flags, fl)
		}
	}
	return c
}

func memoryFacts(root string) agentapi.Memory {
	var m agentapi.Memory
	if b, err := os.ReadFile(filepath.Join(root, "proc/meminfo")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				fs := strings.Fields(rest)
				if len(fs) >= 1 {
					if kb, err := strconv.ParseUint(fs[0], 10, 64); err == nil {
						m.UsableBytes = kb * 1024
					}
				}
			}
		}
	}
	entries, _ := filepath.Glob(filepath.Join(root, "sys/firmware/dmi/entries/17-*/raw"))
	for _, e := range entries {
		raw, err := os.ReadFile(e)
		if err != nil {
			continue
		}
		if size, ok := parseMemoryDevice(raw); ok && size > 0 {
			m.InstalledBytes += size
			m.DIMMs++
		}
	}
	return m
}

// parseMemoryDevice returns the size of an SMBIOS type 17 (Memory Device) structure:
// the word at offset 0x0C is the size in MiB (KiB when bit 15 is set), 0 for an empty
// slot, 0xFFFF for unknown, 0x7FFF meaning "see the extended size", a dword at 0x1C in
// MiB (SMBIOS 2.7+).
func parseMemoryDevice(raw []byte) (uint64, bool) {
	if len(raw) < 0x0E || raw[0] != 17 || int(raw[1]) > len(raw) || raw[1] < 0x0E {
		return 0, false
	}
	formatted := raw[:raw[1]]
	size := binary.LittleEndian.Uint16(formatted[0x0C:])
	switch {
	case size == 0 || size == 0xFFFF:
		return 0, true
	case size == 0x7FFF:
		if len(formatted) < 0x20 {
			return 0, false
		}
		ext := binary.LittleEndian.Uint32(formatted[0x1C:]) & 0x7FFFFFFF
		return uint64(ext) << 20, true
	case size&0x8000 != 0:
		return uint64(size&0x7FFF) << 10, true
	default:
		return uint64(size) << 20, true
	}
}

// skipBlock says which /sys/block entries are not disks.
func skipBlock(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "sr", "fd", "nbd", "dm-", "md", "drbd", "rbd"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func diskFacts(root string) []agentapi.Disk {
	dir := filepath.Join(root, "sys/block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var disks []agentapi.Disk
	for _, e := range ents {
		name := e.Name()
		if skipBlock(name) {
			continue
		}
		d := filepath.Join(dir, name)
		sectors, _ := strconv.ParseUint(readTrim(filepath.Join(d, "size")), 10, 64)
		disk := agentapi.Disk{
			Name: name,
			// /sys/block/X/size is always in 512-byte units, whatever the sector size.
			SizeBytes:  sectors * 512,
			Model:      dmiString(readTrim(filepath.Join(d, "device/model"))),
			Rotational: readTrim(filepath.Join(d, "queue/rotational")) == "1",
			Removable:  readTrim(filepath.Join(d, "removable")) == "1",
			ReadOnly:   readTrim(filepath.Join(d, "ro")) == "1",
		}
		disk.LogicalSectorBytes, _ = strconv.Atoi(readTrim(filepath.Join(d, "queue/logical_block_size")))
		disk.Serial = diskSerial(d)
		disk.WWN = diskWWN(d)
		disks = append(disks, disk)
	}
	slices.SortFunc(disks, func(a, b agentapi.Disk) int { return strings.Compare(a.Name, b.Name) })
	return disks
}

// diskSerial tries where each driver keeps the serial: virtio-blk's serial attribute,
// NVMe's controller serial, then the SCSI unit serial number VPD page (0x80).
func diskSerial(d string) string {
	for _, f := range []string{"serial", "device/serial"} {
		if s := dmiString(readTrim(filepath.Join(d, f))); s != "" {
			return s
		}
	}
	if b, err := os.ReadFile(filepath.Join(d, "device/vpd_pg80")); err == nil && len(b) > 4 {
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if 4+n <= len(b) {
			return dmiString(string(bytes.Trim(b[4:4+n], " \x00")))
		}
	}
	return ""
}

func diskWWN(d string) string {
	for _, f := range []string{"wwid", "device/wwid", "device/wwn"} {
		if s := readTrim(filepath.Join(d, f)); s != "" {
			return s
		}
	}
	return ""
}

func nicFacts(root, bootMAC string) []agentapi.NIC {
	dir := filepath.Join(root, "sys/class/net")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var nics []agentapi.NIC
	for _, e := range ents {
		d := filepath.Join(dir, e.Name())
		// type 1 is ARPHRD_ETHER; a "device" link means real (or emulated) hardware, not
		// a bridge, bond or veth.
		if readTrim(filepath.Join(d, "type")) != "1" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "device")); err != nil {
			continue
		}
		n := agentapi.NIC{
			Name:    e.Name(),
			MAC:     strings.ToLower(readTrim(filepath.Join(d, "address"))),
			Carrier: readTrim(filepath.Join(d, "carrier")) == "1",
		}
		// speed reads as -1 (or fails with EINVAL) while the link is down.
		if s, err := strconv.Atoi(readTrim(filepath.Join(d, "speed"))); err == nil && s > 0 {
			n.SpeedMbps = s
		}
		if target, err := os.Readlink(filepath.Join(d, "device/driver")); err == nil {
			n.Driver = filepath.Base(target)
		}
		n.Boot = bootMAC != "" && strings.EqualFold(n.MAC, bootMAC)
		nics = append(nics, n)
	}
	slices.SortFunc(nics, func(a, b agentapi.NIC) int { return strings.Compare(a.Name, b.Name) })
	return nics
}

// uptime reads /proc/uptime's first field.
func uptime(root string) float64 {
	f := strings.Fields(readTrim(filepath.Join(root, "proc/uptime")))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// formatFacts is a one-line console summary.
func formatFacts(f agentapi.Facts) string {
	var disks []string
	for _, d := range f.Disks {
		disks = append(disks, d.Name+"="+agentapi.FormatBytes(d.SizeBytes))
	}
	var nics []string
	for _, n := range f.NICs {
		nics = append(nics, n.Name+"="+n.MAC)
	}
	return fmt.Sprintf("uuid=%s cpus=%d memory=%s disks=[%s] nics=[%s]", f.System.UUID, f.CPU.Count,
		agentapi.FormatBytes(f.Memory.InstalledBytes), strings.Join(disks, " "), strings.Join(nics, " "))
}
