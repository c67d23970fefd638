package images

import (
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/rackboot/rackboot/internal/images/qcow2"
	"github.com/rackboot/rackboot/internal/inventory"
)

// sniffLen is how much of a file DetectFormat looks at: enough for every magic below
// (VDI's sits at byte 64).
const sniffLen = 512

// DetectFormat names an image file's format from its first bytes (up to sniffLen):
// qcow2, gzip, zstd or xz by their magic numbers, raw otherwise. Other virtual-disk
// formats an agent cannot write (VMDK, VHDX, VDI) are an error that says how to
// convert them.
func DetectFormat(head []byte) (inventory.ImageFormat, error) {
	switch {
	case qcow2.Detect(head):
		return inventory.FormatQcow2, nil
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return inventory.FormatGzip, nil
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return inventory.FormatZstd, nil
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return inventory.FormatXz, nil
	}
	other := ""
	switch {
	case bytes.HasPrefix(head, []byte("KDMV")), bytes.HasPrefix(head, []byte("# Disk DescriptorFile")):
		other = "a VMDK"
	case bytes.HasPrefix(head, []byte("vhdxfile")):
		other = "a VHDX"
	case len(head) >= 68 && bytes.Equal(head[64:68], []byte{0x7f, 0x10, 0xda, 0xbe}):
		other = "a VirtualBox VDI"
	}
	if other != "" {
		return "", fmt.Errorf("the file is %s disk image, which rackboot does not read: convert it (qemu-img convert -O qcow2 IN OUT.qcow2, or -O raw) and add that", other)
	}
	return inventory.FormatRaw, nil
}

// detectFile detects the format of the file r and, for a compressed one, what it
// holds: a compressed qcow2 (or VMDK...) would otherwise reach a disk as the
// container's bytes, not the guest's, so it is refused with what to do.
func detectFile(r io.ReaderAt) (inventory.ImageFormat, error) {
	head := make([]byte, sniffLen)
	n, err := r.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("reading the image's first bytes: %w", err)
	}
	head = head[:n]
	f, err := DetectFormat(head)
	if err != nil {
		return "", err
	}
	var dec io.Reader
	sr := io.NewSectionReader(r, 0, 1<<62)
	switch f {
	case inventory.FormatGzip:
		zr, err := gzip.NewReader(sr)
		if err != nil {
			return "", fmt.Errorf("the file starts like gzip but is not: %w", err)
		}
		defer zr.Close()
		dec = zr
	case inventory.FormatZstd:
		zr, err := zstd.NewReader(sr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return "", fmt.Errorf("the file starts like zstd but is not: %w", err)
		}
		defer zr.Close()
		dec = zr
	case inventory.FormatXz:
		zr, err := xz.NewReader(sr)
		if err != nil {
			return "", fmt.Errorf("the file starts like xz but is not: %w", err)
		}
		dec = zr
	default:
		return f, nil
	}
	inner := make([]byte, sniffLen)
	m, err := io.ReadFull(dec, inner)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return "", fmt.Errorf("the %s file does not decompress: %w", f, err)
	}
	in, err := DetectFormat(inner[:m])
	switch {
	case err != nil:
		return "", fmt.Errorf("inside the %s compression: %w", f, err)
	case in == inventory.FormatQcow2:
		return "", fmt.Errorf("the file is a %s-compressed qcow2 image: agents would write the qcow2 container, not the disk it holds; decompress it and add the .qcow2 file (rackboot converts qcow2 itself)", f)
	case in != inventory.FormatRaw:
		return "", fmt.Errorf("the file is %s compressed twice (%s inside %s): decompress it once and add that", in, in, f)
	}
	return f, nil
}
