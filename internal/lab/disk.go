package lab

import (
	"encoding/binary"
	"fmt"
	"os"
)

// MarkerDiskBoot is what the boot sector of WriteBootDisk prints on the serial port: a
// BIOS guest that shows it has booted from its disk, not merely tried to.
const MarkerDiskBoot = "RACKBOOT-DISK-BOOT"

// bootSectorCode is a legacy-BIOS boot sector program, loaded at 0x7c00, that writes the
// NUL-terminated string following it to COM1 (polling the line status register, so no
// byte is dropped) and halts with interrupts off, so the VM stays on, quietly, until it
// is powered off. Assembled with GNU as (.code16, -Ttext 0x7c00):
//
//	cli; cld; xor ax,ax; mov ds,ax; mov si,MSG
//	next: lodsb; test al,al; jz halt; mov ah,al
//	      mov dx,0x3fd; wait: in al,dx; test al,0x20; jz wait
//	      mov dx,0x3f8; mov al,ah; out dx,al; jmp next
//	halt: hlt; jmp halt
//
// Bytes 7-8 are MSG's address, filled in by bootSector.
var bootSectorCode = []byte{
	0xfa, 0xfc, 0x31, 0xc0, 0x8e, 0xd8, 0xbe, 0x00, 0x00, 0xac, 0x84, 0xc0, 0x74, 0x12, 0x88, 0xc4,
	0xba, 0xfd, 0x03, 0xec, 0xa8, 0x20, 0x74, 0xfb, 0xba, 0xf8, 0x03, 0x88, 0xe0, 0xee, 0xeb, 0xe9,
	0xf4, 0xeb, 0xfd,
}

// bootSector returns a 512-byte MBR that prints msg on COM1 and halts. UEFI firmware
// finds nothing to boot on it (no EFI system partition) and moves on to the next device.
func bootSector(msg string) ([]byte, error) {
	// 446 bytes of code area, less the program and the string's NUL.
	if len(msg) > 446-len(bootSectorCode)-1 {
		return nil, fmt.Errorf("boot sector message of %d bytes does not fit", len(msg))
	}
	b := make([]byte, 512)
	copy(b, bootSectorCode)
	binary.LittleEndian.PutUint16(b[7:9], uint16(0x7c00+len(bootSectorCode)))
	copy(b[len(bootSectorCode):], msg)
	b[510], b[511] = 0x55, 0xaa
	return b, nil
}

// WriteBootDisk writes a raw disk image of size bytes (a multiple of 512, at least 512)
// whose boot sector prints MarkerDiskBoot on the serial console and halts: a SeaBIOS
// guest told to boot from disk shows "Booting from Hard Disk..." and then the marker,
// and stays on. Under OVMF the disk is not bootable (no EFI system partition): the
// firmware tries it, reports the failure and goes on to the network.
func WriteBootDisk(path string, size int64) error {
	if size < 512 || size%512 != 0 {
		return fmt.Errorf("boot disk %s: size %d: give a multiple of 512", path, size)
	}
	mbr, err := bootSector(MarkerDiskBoot + "\r\n")
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("boot disk: %w", err)
	}
	if _, err := f.Write(mbr); err != nil {
		f.Close()
		return fmt.Errorf("boot disk %s: %w", path, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("boot disk %s: %w", path, err)
	}
	return f.Close()
}

// WriteBlankDisk creates (or empties) a sparse raw disk of size bytes, all zeros: a new
// server's disk, for the agent to inspect and provision.
func WriteBlankDisk(path string, size int64) error {
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return err
	}
	return os.Truncate(path, size)
}
