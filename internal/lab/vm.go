package lab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// Firmware is how a lab VM boots.
type Firmware string

const (
	// SeaBIOS: legacy BIOS; the NIC's option ROM is QEMU's iPXE, so the VM sends DHCP as
	// iPXE (user class "iPXE", option 175) straight away and never fetches undionly.kpxe.
	SeaBIOS Firmware = "seabios"
	// OVMFIPXE: UEFI with the NIC's iPXE EFI ROM, which boots before OVMF's own PXE.
	OVMFIPXE Firmware = "ovmf-ipxe"
	// OVMFPXE: UEFI native PXE. The NIC gets romfile="" so OVMF's own driver and PXE
	// client run: DHCP arch 7, then TFTP of the boot file (snponly.efi), which then
	// DHCPs again as iPXE and fetches the script over HTTP. virtio-net only: OVMF has no
	// e1000 driver of its own.
	OVMFPXE Firmware = "ovmf-pxe"
	// OVMFHTTP: UEFI HTTP boot. As OVMFPXE, plus fw_cfg switches PXE off
	// (opt/org.tianocore/IPv4PXESupport and IPv6PXESupport = no), so OVMF's first boot
	// option is "UEFI HTTPv4": DHCP with vendor class HTTPClient and arch 16, then an
	// HTTP GET of the URL in the boot file field.
	OVMFHTTP Firmware = "ovmf-http"
)

// Default OVMF images (Debian's ovmf package): 4 MB flash, no secure boot.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// VM describes a lab guest. QEMU always runs with TCG (the /dev/kvm here cannot boot
// guests), without a display, with the serial console in a file and -no-reboot, so a
// guest that powers off or reboots ends the process.
type VM struct {
	Name string
	// MAC of the NIC, e.g. 52:54:00:12:34:56.
	MAC string
	// Tap is the tap device (Segment.AddTap) in the namespace QEMU runs in.
	Tap      string
	Firmware Firmware
	// NIC is the QEMU device model: "virtio-net-pci" (default) or "e1000", of every NIC.
	NIC string
	// ExtraNICs are NICs after the first, QEMU devices nic1, nic2, ... (NICDeviceID).
	// They carry no option ROM and no bootindex, so the VM network-boots from its first
	// NIC only, as a server set to PXE from one port.
	ExtraNICs []ExtraNIC
	// MemoryMB defaults to 512.
	MemoryMB int
	// CPUs defaults to 1 (a Kubernetes control plane wants 2).
	CPUs int
	// UUID is the SMBIOS system UUID (DHCP option 97 of a PXE client); optional.
	UUID string
	// Disk is an optional disk image (raw, or qcow2 by extension) on virtio-blk.
	Disk string
	// SerialLog receives the serial console (ttyS0); required.
	SerialLog string
	// Kernel, Initrd and Append boot a kernel directly (QEMU -kernel), skipping the
	// network boot: used to check the boot fixtures on their own.
	Kernel, Initrd, Append string
}

// ExtraNIC is a lab VM's second (third, ...) NIC.
type ExtraNIC struct {
	MAC string
	// Tap is its tap device in the namespace QEMU runs in; Segment.StartBMCVM makes one
	// on the segment when empty.
	Tap string
}

func (vm *VM) validate() error {
	if vm.Name == "" || vm.Tap == "" || vm.SerialLog == "" {
		return fmt.Errorf("lab VM %q: Name, Tap and SerialLog are required", vm.Name)
	}
	if _, err := net.ParseMAC(vm.MAC); err != nil {
		return fmt.Errorf("lab VM %s: MAC %q: %w", vm.Name, vm.MAC, err)
	}
	switch vm.Firmware {
	case SeaBIOS, OVMFIPXE, OVMFPXE, OVMFHTTP:
	default:
		return fmt.Errorf("lab VM %s: firmware %q: use seabios, ovmf-ipxe, ovmf-pxe or ovmf-http", vm.Name, vm.Firmware)
	}
	switch vm.NIC {
	case "", "virtio-net-pci", "e1000":
	default:
		return fmt.Errorf("lab VM %s: NIC %q: use virtio-net-pci or e1000", vm.Name, vm.NIC)
	}
	for i, x := range vm.ExtraNICs {
		if x.Tap == "" {
			return fmt.Errorf("lab VM %s: NIC %s has no tap", vm.Name, NICDeviceID(i+1))
		}
		if _, err := net.ParseMAC(x.MAC); err != nil {
			return fmt.Errorf("lab VM %s: NIC %s: MAC %q: %w", vm.Name, NICDeviceID(i+1), x.MAC, err)
		}
	}
	if (vm.Firmware == OVMFPXE || vm.Firmware == OVMFHTTP) && vm.NIC == "e1000" {
		return fmt.Errorf("lab VM %s: %s needs virtio-net-pci: OVMF has no e1000 driver without the iPXE ROM", vm.Name, vm.Firmware)
	}
	return nil
}

// UEFI reports whether the VM boots OVMF.
func (vm *VM) UEFI() bool { return vm.Firmware != SeaBIOS }

// Device ids of a lab VM's NIC and disk in QEMU, which boot-order arguments name
// (-set device.nic0.bootindex=1; bmcsim.BootIndexArgs).
const (
	NICID  = "nic0"
	DiskID = "disk0"
)

// NICDeviceID is the QEMU device id of a lab VM's NIC i: nic0 (NICID) is the first,
// ExtraNICs[0] is nic1. QMP commands such as set_link name a NIC by it.
func NICDeviceID(i int) string { return "nic" + strconv.Itoa(i) }

// QEMUArgs returns the qemu-system-x86_64 command line without a boot order: the NIC is
// device NICID and the disk (if any) DiskID, neither with a bootindex, so the caller
// orders them (StartVM: network first; a lab BMC: per power-on, from its stored boot
// device). This is also the argv of a BMC-managed VM's vm.json. varsPath is the VM's own
// writable copy of OVMF_VARS (UEFI only): OVMF writes boot entries there, so VMs must not
// share it.
func (vm *VM) QEMUArgs(varsPath string) ([]string, error) {
	if err := vm.validate(); err != nil {
		return nil, err
	}
	mem := vm.MemoryMB
	if mem == 0 {
		mem = 512
	}
	cpus := max(vm.CPUs, 1)
	nic := vm.NIC
	if nic == "" {
		nic = "virtio-net-pci"
	}
	args := []string{
		"qemu-system-x86_64",
		"-name", vm.Name,
		"-accel", "tcg",
		"-m", strconv.Itoa(mem),
		"-smp", strconv.Itoa(cpus),
		// -nodefaults drops QEMU's default NIC (user-mode networking would be a way out of
		// the lab), floppy and CD; the display stays off but a VGA card is kept so BIOS
		// option ROMs have a console to print to.
		"-nodefaults", "-vga", "std", "-display", "none",
		"-serial", "file:" + vm.SerialLog,
		"-monitor", "none",
		"-no-reboot",
		"-netdev", "tap,id=net0,ifname=" + vm.Tap + ",script=no,downscript=no",
	}
	if vm.UUID != "" {
		args = append(args, "-uuid", vm.UUID)
	}
	// No bootindex here: boot order is the caller's (StartVM puts the NIC first, a lab
	// BMC picks the order per power-on), set with -set device.ID.bootindex=N on these ids.
	dev := nic + ",netdev=net0,mac=" + strings.ToLower(vm.MAC) + ",id=" + NICID
	switch vm.Firmware {
	case SeaBIOS:
		// graphics=off turns on SeaBIOS's serial console, which also carries the iPXE
		// ROM's text, so the serial log shows the whole boot.
		args = append(args, "-machine", "pc,graphics=off")
	case OVMFIPXE:
		args = append(args, "-machine", "q35")
	case OVMFPXE, OVMFHTTP:
		// romfile="" keeps QEMU's iPXE ROM off the NIC: OVMF's own network stack boots.
		args = append(args, "-machine", "q35")
		dev += ",romfile="
	}
	if vm.UEFI() {
		if varsPath == "" {
			return nil, fmt.Errorf("lab VM %s: UEFI needs a copy of OVMF_VARS", vm.Name)
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+varsPath)
	}
	if vm.Firmware == OVMFHTTP {
		args = append(args,
			"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
			"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no")
	}
	args = append(args, "-device", dev)
	for i, x := range vm.ExtraNICs {
		n := strconv.Itoa(i + 1)
		// romfile= (none): SeaBIOS would otherwise run an iPXE ROM per NIC and offer
		// each as a boot device after the ones with a bootindex.
		args = append(args,
			"-netdev", "tap,id=net"+n+",ifname="+x.Tap+",script=no,downscript=no",
			"-device", nic+",netdev=net"+n+",mac="+strings.ToLower(x.MAC)+",id="+NICDeviceID(i+1)+",romfile=")
	}
	if vm.Disk != "" {
		format := "raw"
		if strings.HasSuffix(vm.Disk, ".qcow2") {
			format = "qcow2"
		}
		// if=none plus a device of our own, so the disk has an id for bootindex.
		// cache=unsafe: the guest's flushes do not reach the machine's disk. A lab disk
		// is thrown away, and every write is still in the file (the page cache) for the
		// tests that read it; but a guest's etcd fsyncs its WAL on every write, and with
		// the machine's disk busy each flush took seconds: etcd answered a read in 20 s
		// and the control plane never came up.
		args = append(args,
			"-drive", "if=none,id="+DiskID+"drv,format="+format+",cache=unsafe,file="+vm.Disk,
			"-device", "virtio-blk-pci,drive="+DiskID+"drv,id="+DiskID)
	}
	if vm.Kernel != "" {
		args = append(args, "-kernel", vm.Kernel, "-append", vm.Append)
		if vm.Initrd != "" {
			args = append(args, "-initrd", vm.Initrd)
		}
	}
	return args, nil
}

// bootOrder returns the boot argument sets of vm's devices (see bmcsim.BootIndexArgs).
func (vm *VM) bootOrder() bmcsim.BootArgs {
	disk := ""
	if vm.Disk != "" {
		disk = DiskID
	}
	return bmcsim.BootIndexArgs(NICID, disk)
}

// firmwareMode is the boot mode a lab BMC reports for vm.
func (vm *VM) firmwareMode() bmcsim.BootMode {
	if vm.UEFI() {
		return bmcsim.BootUEFI
	}
	return bmcsim.BootLegacy
}

// StartVM starts vm's QEMU inside n (where its tap lives) as a tracked Process logging
// QEMU's own messages to SerialLog+".qemu", network first in the boot order. UEFI VMs
// get a private OVMF_VARS copy next to the serial log. For a VM powered through a BMC,
// use Segment.StartBMCVM instead.
func (n *Netns) StartVM(c Cleaner, vm VM) (*Process, error) {
	var vars string
	if vm.UEFI() {
		vars = filepath.Join(filepath.Dir(vm.SerialLog), vm.Name+"-OVMF_VARS.fd")
		if err := copyFile(OVMFVars, vars); err != nil {
			return nil, fmt.Errorf("lab VM %s: copy OVMF vars (apt-get install ovmf): %w", vm.Name, err)
		}
	}
	args, err := vm.QEMUArgs(vars)
	if err != nil {
		return nil, err
	}
	args = append(args, vm.bootOrder().PXE...)
	if err := os.MkdirAll(filepath.Dir(vm.SerialLog), 0o755); err != nil {
		return nil, err
	}
	// A stale console from an earlier VM of the same name would satisfy a wait at once.
	if err := os.Remove(vm.SerialLog); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	return n.Start(c, vm.SerialLog+".qemu", args...)
}
