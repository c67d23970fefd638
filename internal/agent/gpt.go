package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// Partition is one entry of a disk's partition table, in bytes.
type Partition struct {
	// Number is the 1-based entry number: the kernel names the partition sdaN / nvme0n1pN.
	Number int
	Start  int64
	Size   int64
	// Type is the GPT partition type GUID in its usual text form, or "mbr:XX" for an MBR
	// partition type.
	Type string
	Name string
}

// End is the first byte after the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

// PartitionTable is what readPartitionTable found.
type PartitionTable struct {
	// Kind is "gpt", "mbr" or "" (none).
	Kind       string
	Partitions []Partition
	// GPT header fields, for a GPT: where the primary and backup headers sit (LBAs) and
	// the usable range, which tell whether the image was written to a larger disk.
	CurrentLBA, BackupLBA, FirstUsableLBA, LastUsableLBA uint64
	// PrimaryValid is false when only the backup GPT could be read.
	PrimaryValid bool
}

// GPT partition type GUIDs used here.
const (
	GPTTypeLinux    = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	GPTTypeBIOSBoot = "21686148-6294-6E49-744E-656564454649"
	GPTTypeESP      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	// GPTTypeBasicData is Microsoft basic data, the type of a VFAT CIDATA volume.
	GPTTypeBasicData = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
)

const gptSignature = "EFI PART"

// readPartitionTable reads a GPT (primary, else backup) or an MBR's primary partitions
// from a disk or image of size bytes with the given logical sector size. No table is not
// an error: Kind is "".
func readPartitionTable(r io.ReaderAt, size int64, sector int) (PartitionTable, error) {
	if sector <= 0 {
		sector = 512
	}
	ss := int64(sector)
	if t, err := readGPT(r, 1, size, ss); err == nil {
		t.PrimaryValid = true
		return t, nil
	}
	if size >= 2*ss {
		if t, err := readGPT(r, uint64(size/ss-1), size, ss); err == nil {
			return t, nil
		}
	}
	return readMBR(r)
}

func readGPT(r io.ReaderAt, lba uint64, size, ss int64) (PartitionTable, error) {
	hdr := make([]byte, ss)
	if _, err := r.ReadAt(hdr, int64(lba)*ss); err != nil {
		return PartitionTable{}, err
	}
	if string(hdr[:8]) != gptSignature {
		return PartitionTable{}, errors.New("no GPT signature")
	}
	hsize := binary.LittleEndian.Uint32(hdr[12:])
	if hsize < 92 || int64(hsize) > ss {
		return PartitionTable{}, errors.New("bad GPT header size")
	}
	h := append([]byte(nil), hdr[:hsize]...)
	want := binary.LittleEndian.Uint32(h[16:])
	binary.LittleEndian.PutUint32(h[16:], 0)
	if crc32.ChecksumIEEE(h) != want {
		return PartitionTable{}, errors.New("GPT header checksum mismatch")
	}
	t := PartitionTable{
		Kind:           "gpt",
		CurrentLBA:     binary.LittleEndian.Uint64(hdr[24:]),
		BackupLBA:      binary.LittleEndian.Uint64(hdr[32:]),
		FirstUsableLBA: binary.LittleEndian.Uint64(hdr[40:]),
		LastUsableLBA:  binary.LittleEndian.Uint64(hdr[48:]),
	}
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:])
	n := binary.LittleEndian.Uint32(hdr[80:])
	esize := binary.LittleEndian.Uint32(hdr[84:])
	if esize < 128 || esize > 4096 || n > 1024 {
		return PartitionTable{}, errors.New("bad GPT entry layout")
	}
	entries := make([]byte, int64(n)*int64(esize))
	if _, err := r.ReadAt(entries, int64(entriesLBA)*ss); err != nil {
		return PartitionTable{}, fmt.Errorf("GPT entries: %w", err)
	}
	if crc32.ChecksumIEEE(entries) != binary.LittleEndian.Uint32(hdr[88:]) {
		return PartitionTable{}, errors.New("GPT entries checksum mismatch")
	}
	for i := range int(n) {
		e := entries[i*int(esize):]
		typ := e[:16]
		if bytes.Equal(typ, make([]byte, 16)) {
			continue
		}
		first := binary.LittleEndian.Uint64(e[32:])
		last := binary.LittleEndian.Uint64(e[40:])
		if last < first {
			continue
		}
		u16 := make([]uint16, 36)
		for j := range u16 {
			u16[j] = binary.LittleEndian.Uint16(e[56+2*j:])
		}
		name := string(utf16.Decode(u16))
		if k := bytes.IndexByte([]byte(name), 0); k >= 0 {
			name = name[:k]
		}
		t.Partitions = append(t.Partitions, Partition{
			Number: i + 1, Start: int64(first) * ss, Size: int64(last-first+1) * ss,
			Type: guidString(typ), Name: name,
		})
	}
	return t, nil
}

func readMBR(r io.ReaderAt) (PartitionTable, error) {
	mbr := make([]byte, 512)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return PartitionTable{}, nil
		}
		return PartitionTable{}, err
	}
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		return PartitionTable{}, nil
	}
	t := PartitionTable{Kind: "mbr"}
	for i := range 4 {
		e := mbr[446+16*i:]
		typ := e[4]
		start := binary.LittleEndian.Uint32(e[8:])
		n := binary.LittleEndian.Uint32(e[12:])
		// 0xEE is a GPT's protective entry (whose GPT failed to read); 0x05/0x0F/0x85
		// are extended containers, whose logical partitions are not read here.
		if typ == 0 || n == 0 || typ == 0xEE {
			continue
		}
		t.Partitions = append(t.Partitions, Partition{
			Number: i + 1, Start: int64(start) * 512, Size: int64(n) * 512, Type: fmt.Sprintf("mbr:%02x", typ),
		})
	}
	return t, nil
}

// guidString renders a GPT GUID (mixed-endian on disk) in its text form.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint16(b[4:]), binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

// guidBytes is guidString's inverse.
func guidBytes(s string) ([16]byte, error) {
	var out [16]byte
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(raw) != 16 {
		return out, fmt.Errorf("GUID %q: want 32 hex digits", s)
	}
	binary.LittleEndian.PutUint32(out[0:], binary.BigEndian.Uint32(raw[0:]))
	binary.LittleEndian.PutUint16(out[4:], binary.BigEndian.Uint16(raw[4:]))
	binary.LittleEndian.PutUint16(out[6:], binary.BigEndian.Uint16(raw[6:]))
	copy(out[8:], raw[8:])
	return out, nil
}

// WriteGPT writes a protective MBR and both GPT copies for a disk of size bytes with
// the given partitions (Start and Size in bytes, multiples of the sector size; Number
// is the entry number, 1-based; 128 entries). It is how the CIDATA partition is added
// and how tests build disks.
func WriteGPT(w io.WriterAt, size int64, sector int, parts []Partition) error {
	ss := int64(sector)
	if ss <= 0 {
		ss = 512
	}
	const nEntries, esize = 128, 128
	entrySectors := int64(nEntries*esize) / ss
	lastLBA := uint64(size/ss - 1)
	firstUsable := uint64(2 + entrySectors)
	lastUsable := lastLBA - uint64(entrySectors) - 1
	if size/ss < int64(2*entrySectors+4) {
		return fmt.Errorf("disk of %d bytes is too small for a GPT", size)
	}
	entries := make([]byte, nEntries*esize)
	for _, p := range parts {
		if p.Number < 1 || p.Number > nEntries {
			return fmt.Errorf("partition number %d: want 1-%d", p.Number, nEntries)
		}
		if p.Start%ss != 0 || p.Size%ss != 0 || p.Size <= 0 {
			return fmt.Errorf("partition %d: start and size must be positive multiples of %d", p.Number, ss)
		}
		first, last := uint64(p.Start/ss), uint64(p.End()/ss-1)
		if first < firstUsable || last > lastUsable {
			return fmt.Errorf("partition %d (LBA %d-%d) is outside the usable LBAs %d-%d", p.Number, first, last, firstUsable, lastUsable)
		}
		e := entries[(p.Number-1)*esize:]
		typ, err := guidBytes(p.Type)
		if err != nil {
			return err
		}
		copy(e[0:], typ[:])
		if _, err := rand.Read(e[16:32]); err != nil {
			return err
		}
		binary.LittleEndian.PutUint64(e[32:], first)
		binary.LittleEndian.PutUint64(e[40:], last)
		for j, u := range utf16.Encode([]rune(p.Name)) {
			if j >= 36 {
				break
			}
			binary.LittleEndian.PutUint16(e[56+2*j:], u)
		}
	}
	var diskGUID [16]byte
	if _, err := rand.Read(diskGUID[:]); err != nil {
		return err
	}
	header := func(current, backup, entriesLBA uint64) []byte {
		h := make([]byte, ss)
		copy(h, gptSignature)
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], current)
		binary.LittleEndian.PutUint64(h[32:], backup)
		binary.LittleEndian.PutUint64(h[40:], firstUsable)
		binary.LittleEndian.PutUint64(h[48:], lastUsable)
		copy(h[56:], diskGUID[:])
		binary.LittleEndian.PutUint64(h[72:], entriesLBA)
		binary.LittleEndian.PutUint32(h[80:], nEntries)
		binary.LittleEndian.PutUint32(h[84:], esize)
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(entries))
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	mbr := make([]byte, ss)
	pe := mbr[446:]
	pe[4] = 0xEE
	binary.LittleEndian.PutUint32(pe[8:], 1)
	binary.LittleEndian.PutUint32(pe[12:], uint32(min(lastLBA, 0xFFFFFFFF)))
	pe[1], pe[2], pe[3] = 0x00, 0x02, 0x00
	pe[5], pe[6], pe[7] = 0xFF, 0xFF, 0xFF
	mbr[510], mbr[511] = 0x55, 0xAA
	backupEntries := lastLBA - uint64(entrySectors)
	for _, wr := range []struct {
		off  int64
		data []byte
	}{
		{0, mbr},
		{ss, header(1, lastLBA, 2)},
		{2 * ss, entries},
		{int64(backupEntries) * ss, entries},
		{int64(lastLBA) * ss, header(lastLBA, 1, backupEntries)},
	} {
		if _, err := w.WriteAt(wr.data, wr.off); err != nil {
			return fmt.Errorf("write GPT: %w", err)
		}
	}
	return nil
}
