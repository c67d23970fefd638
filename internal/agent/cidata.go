package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf16"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
)

// CIData mode: a NoCloud config drive on the root disk itself. A server usually has no
// second disk and no virtual CD, so the agent adds a small partition at the end of the
// disk (in the free space past the image), formats it FAT12 with the volume label CIDATA
// (github.com/diskfs/go-diskfs) and copies the host's meta-data, user-data, vendor-data
// and network-config into it from SeedURL. cloud-init's ds-identify finds the label and
// NoCloud reads the files, with no change to the image's own filesystems; growpart then
// grows the root partition up to the CIDATA partition. The image must have a GPT (every
// current cloud image has): the entry is added with the other entries' GUIDs kept, since
// images boot by PARTUUID, and the backup GPT moves to the end of the disk.

// CIDataSize is the size of the CIDATA partition: FAT12, room for megabytes of
// user-data (cloud-init's own limit is far lower).
const CIDataSize = 4 << 20

// CIDataLabel is the volume label NoCloud looks for (it accepts either case).
const CIDataLabel = "CIDATA"

// seedFiles are the NoCloud documents; meta-data is required, the others are copied
// when the server has them.
func seedFiles() []string { return []string{"meta-data", "user-data", "vendor-data", "network-config"} }

// fetchSeed GETs the NoCloud documents from seedURL.
func fetchSeed(ctx context.Context, client *http.Client, seedURL string) (map[string][]byte, error) {
	docs := map[string][]byte{}
	for _, name := range seedFiles() {
		data, err := fetchDoc(ctx, client, seedURL, name)
		if err != nil {
			return nil, fmt.Errorf("cidata: %w", err)
		}
		if data == nil && name != "meta-data" {
			continue
		}
		if data == nil {
			return nil, fmt.Errorf("cidata: GET %s: 404 Not Found", seedURL+name)
		}
		docs[name] = data
	}
	// NoCloud wants a user-data file even when there is nothing in it.
	if _, ok := docs["user-data"]; !ok {
		docs["user-data"] = nil
	}
	return docs, nil
}

// cloudInitCIData adds the CIDATA partition to the root disk and fills it. ro is the
// disk opened without claiming it; the partition table is changed through an exclusive
// handle of its own.
func (r *runner) cloudInitCIData(ctx context.Context, ro *disk, seedURL string) (string, error) {
	docs, err := fetchSeed(ctx, r.cfg.HTTPClient, seedURL)
	if err != nil {
		return "", err
	}
	d, err := openDisk(r.devDir(), ro.name)
	if err != nil {
		return "", err
	}
	defer d.Close()
	p, err := writeCIData(d, docs)
	if err != nil {
		return "", err
	}
	if err := d.rereadPartitions(); err != nil {
		return "", err
	}
	name := partitionName(d.name, p.Number)
	r.log.Info("CIDATA partition written", "partition", name, "files", strings.Join(sortedKeys(docs), " "))
	if !d.block && r.cfg.MountPartition == nil {
		return name, nil
	}
	// Read it back through the kernel's own vfat, as cloud-init will.
	if err := d.Close(); err != nil {
		return "", err
	}
	if err := r.verifyCIData(d, p, docs); err != nil {
		return "", fmt.Errorf("cidata: reading %s back: %w", name, err)
	}
	r.log.Info("CIDATA partition verified through the kernel's vfat", "partition", name)
	return name, nil
}

// verifyCIData mounts the CIDATA partition read-only and compares its files with docs.
func (r *runner) verifyCIData(d *disk, p Partition, docs map[string][]byte) error {
	target := filepath.Join(r.cfg.RunDir, "cidata")
	unmount, err := r.mount(d, p, "vfat", target)
	if err != nil {
		return err
	}
	err = func() error {
		root, err := os.OpenRoot(target)
		if err != nil {
			return err
		}
		defer root.Close()
		for name, want := range docs {
			got, err := root.ReadFile(name)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, want) {
				return fmt.Errorf("%s differs from what was written", name)
			}
		}
		return nil
	}()
	return errors.Join(err, unmount())
}

// writeCIData adds the partition to d's GPT, formats it and writes docs into it.
func writeCIData(d *disk, docs map[string][]byte) (Partition, error) {
	p, err := addGPTPartition(d, GPTTypeBasicData, CIDataLabel, CIDataSize)
	if err != nil {
		return Partition{}, fmt.Errorf("cidata: %w", err)
	}
	fs, err := fat12.Create(file.New(d.f, false), p.Size, p.Start, 512, CIDataLabel, false)
	if err != nil {
		return p, fmt.Errorf("cidata: format FAT12: %w", err)
	}
	for _, name := range sortedKeys(docs) {
		f, err := fs.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return p, fmt.Errorf("cidata: create %s: %w", name, err)
		}
		_, err = f.Write(docs[name])
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return p, fmt.Errorf("cidata: write %s: %w", name, err)
		}
	}
	return p, d.sync()
}

func sortedKeys(m map[string][]byte) []string {
	var out []string
	for _, k := range seedFiles() {
		if _, ok := m[k]; ok {
			out = append(out, k)
		}
	}
	return out
}

// addGPTPartition adds a partition of size bytes (1 MiB aligned) at the end of d's
// usable space, editing the GPT in place: the other entries, their GUIDs and the disk
// GUID are kept; the usable range grows to the disk's size and the backup GPT moves to
// the disk's last sectors (an image written to a larger disk keeps its backup at the
// image's end). The protective MBR is resized to match.
func addGPTPartition(d *disk, typ, name string, size int64) (Partition, error) {
	ss := int64(d.sector)
	t, err := readGPT(d, 1, d.size, ss)
	if err != nil {
		return Partition{}, fmt.Errorf("the disk has no valid primary GPT (%v): cidata needs a GPT image; use the dropin mode", err)
	}
	hdr := make([]byte, ss)
	if _, err := d.ReadAt(hdr, ss); err != nil {
		return Partition{}, err
	}
	entriesLBA := int64(binary.LittleEndian.Uint64(hdr[72:]))
	n := int64(binary.LittleEndian.Uint32(hdr[80:]))
	esize := int64(binary.LittleEndian.Uint32(hdr[84:]))
	entries := make([]byte, n*esize)
	if _, err := d.ReadAt(entries, entriesLBA*ss); err != nil {
		return Partition{}, err
	}
	entrySectors := (n*esize + ss - 1) / ss
	lastLBA := d.size/ss - 1
	lastUsable := lastLBA - entrySectors - 1
	align := int64(1<<20) / ss
	first := (lastUsable + 1 - size/ss) / align * align
	last := first + size/ss - 1
	var used int64
	free := -1
	for i := int64(0); i < n; i++ {
		e := entries[i*esize:]
		if isZero(e[:16]) {
			if free < 0 {
				free = int(i)
			}
			continue
		}
		used = max(used, int64(binary.LittleEndian.Uint64(e[40:])))
	}
	switch {
	case free < 0:
		return Partition{}, errors.New("the GPT has no free entry")
	case first <= used || first < int64(t.FirstUsableLBA):
		return Partition{}, fmt.Errorf("no room for a %d MiB partition after the image's partitions (the last ends at LBA %d of %d): use a larger disk or the dropin mode", size>>20, used, lastLBA)
	}
	e := entries[int64(free)*esize:]
	tg, err := guidBytes(typ)
	if err != nil {
		return Partition{}, err
	}
	copy(e[0:16], tg[:])
	if _, err := rand.Read(e[16:32]); err != nil {
		return Partition{}, err
	}
	binary.LittleEndian.PutUint64(e[32:], uint64(first))
	binary.LittleEndian.PutUint64(e[40:], uint64(last))
	binary.LittleEndian.PutUint64(e[48:], 0)
	clear(e[56:128])
	for j, u := range utf16.Encode([]rune(name)) {
		if j < 36 {
			binary.LittleEndian.PutUint16(e[56+2*j:], u)
		}
	}
	oldBackup := int64(binary.LittleEndian.Uint64(hdr[32:]))
	crcEntries := crc32.ChecksumIEEE(entries)
	hsize := binary.LittleEndian.Uint32(hdr[12:])
	header := func(current, backup, entriesAt int64) []byte {
		h := append([]byte(nil), hdr...)
		binary.LittleEndian.PutUint64(h[24:], uint64(current))
		binary.LittleEndian.PutUint64(h[32:], uint64(backup))
		binary.LittleEndian.PutUint64(h[48:], uint64(lastUsable))
		binary.LittleEndian.PutUint64(h[72:], uint64(entriesAt))
		binary.LittleEndian.PutUint32(h[88:], crcEntries)
		binary.LittleEndian.PutUint32(h[16:], 0)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hsize]))
		return h
	}
	backupEntries := lastLBA - entrySectors
	writes := []struct {
		off  int64
		data []byte
	}{
		// The backup first: a crash between the writes leaves a valid primary (old) or
		// a valid backup (new), never neither.
		{backupEntries * ss, entries},
		{lastLBA * ss, header(lastLBA, 1, backupEntries)},
		{entriesLBA * ss, entries},
		{ss, header(1, lastLBA, entriesLBA)},
	}
	if oldBackup != lastLBA && oldBackup > 1 && oldBackup < first {
		// The image's old backup header, now in the middle of free space.
		writes = append(writes, struct {
			off  int64
			data []byte
		}{oldBackup * ss, make([]byte, ss)})
	}
	for _, w := range writes {
		if _, err := d.WriteAt(w.data, w.off); err != nil {
			return Partition{}, fmt.Errorf("write GPT: %w", err)
		}
	}
	mbr := make([]byte, 512)
	if _, err := d.ReadAt(mbr, 0); err == nil && mbr[510] == 0x55 && mbr[511] == 0xAA && mbr[446+4] == 0xEE {
		binary.LittleEndian.PutUint32(mbr[446+12:], uint32(min(lastLBA, 0xFFFFFFFF)))
		if _, err := d.WriteAt(mbr, 0); err != nil {
			return Partition{}, err
		}
	}
	return Partition{Number: free + 1, Start: first * ss, Size: (last - first + 1) * ss, Type: typ, Name: name}, d.sync()
}

// fetchDoc GETs one NoCloud document, seedURL+name: nil when the server has none (404),
// an error for any other failure or a document over CIDataSize/4 bytes.
func fetchDoc(ctx context.Context, client *http.Client, seedURL, name string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, seedURL+name, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", seedURL+name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, CIDataSize/4+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("GET %s: %w", seedURL+name, err)
	case resp.StatusCode == http.StatusNotFound:
		return nil, nil
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", seedURL+name, resp.Status)
	case len(data) > CIDataSize/4:
		return nil, fmt.Errorf("%s is over %d bytes", name, CIDataSize/4)
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}
