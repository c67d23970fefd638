package agent

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
	"github.com/google/go-cmp/cmp"
)

func seedServer(t *testing.T, docs map[string]string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, "/nocloud/tok/")
		d, found := docs[name]
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(d))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestCIData writes the CIDATA partition behind an image on a larger disk and reads
// it back: the image's partition keeps its place and GUIDs, both GPT copies are valid
// and at the disk's ends, blkid sees a vfat volume labelled CIDATA, and the files are
// the server's.
func TestCIData(t *testing.T) {
	const size = 32 << 20
	img := buildTestImage(t, 16<<20, map[string]string{"etc/hostname": "x\n"})
	docs := map[string]string{
		"meta-data":   "instance-id: node-1\nlocal-hostname: node-1\n",
		"user-data":   "#cloud-config\nruncmd: [[touch, /marker]]\n",
		"vendor-data": "#cloud-config\nphone_home: {url: 'http://10.0.0.1:8080/boot/phonehome', post: all}\n",
		// no network-config: the server has none for this host (404)
	}
	srv := seedServer(t, docs)
	h := newTestHost(t, "http://unused", size)
	if err := os.WriteFile(h.disk, append(img.data, make([]byte, size-len(img.data))...), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: h.config(), log: quietLog()}
	r.cfg.defaults()
	ro, err := openDiskReadOnly(h.dev, "vda")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	part, err := r.cloudInitCIData(t.Context(), ro, srv.URL+"/nocloud/tok/")
	if err != nil {
		t.Fatal(err)
	}
	if part != "vda2" {
		t.Errorf("partition %s, want vda2", part)
	}

	d, err := openDiskReadOnly(h.dev, "vda")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tab, err := readPartitionTable(d, size, 512)
	if err != nil {
		t.Fatal(err)
	}
	const lastLBA = size/512 - 1
	wantStart := int64(size - 1<<20 - CIDataSize) // aligned down below the backup GPT
	want := PartitionTable{Kind: "gpt", PrimaryValid: true, CurrentLBA: 1, BackupLBA: lastLBA, FirstUsableLBA: 34, LastUsableLBA: lastLBA - 33,
		Partitions: []Partition{
			{Number: 1, Start: img.partStart, Size: img.partSize, Type: GPTTypeLinux, Name: "root"},
			{Number: 2, Start: wantStart, Size: CIDataSize, Type: GPTTypeBasicData, Name: "CIDATA"},
		}}
	if diff := cmp.Diff(want, tab); diff != "" {
		t.Errorf("partition table (-want +got):\n%s", diff)
	}
	if _, err := readGPT(d, lastLBA, size, 512); err != nil {
		t.Errorf("backup GPT at the disk's last LBA: %v", err)
	}
	after, _ := os.ReadFile(h.disk)
	// Entry 1 (type, unique GUID, range, name) and the disk GUID are the image's.
	if !bytes.Equal(after[1024:1024+128], img.data[1024:1024+128]) {
		t.Error("the image's partition entry changed")
	}
	if !bytes.Equal(after[512+56:512+72], img.data[512+56:512+72]) {
		t.Error("the disk GUID changed")
	}
	// The image's old backup header (at its end) is gone.
	if bytes.HasPrefix(after[16<<20-512:], []byte(gptSignature)) {
		t.Error("the image's old backup GPT header is still there")
	}
	// The ext4 filesystem is untouched.
	if !bytes.Equal(after[img.partStart:img.partStart+img.partSize], img.data[img.partStart:img.partStart+img.partSize]) {
		t.Error("the root partition changed")
	}

	requireTool(t, "blkid")
	out, err := exec.Command("blkid", "-p", "-O", strconv.FormatInt(wantStart, 10), "-o", "export", h.disk).Output()
	if err != nil || !strings.Contains(string(out), "TYPE=vfat") || !strings.Contains(string(out), "LABEL=CIDATA") {
		t.Errorf("blkid of the CIDATA partition: %v\n%s", err, out)
	}
	if got := signatures(t, h.disk); !strings.Contains(got, "gpt") {
		t.Errorf("wipefs sees no GPT: %q", got)
	}

	f, err := os.Open(h.disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fs, err := fat12.Read(file.New(f, true), CIDataSize, wantStart, 512)
	if err != nil {
		t.Fatal(err)
	}
	if fs.Label() != CIDataLabel {
		t.Errorf("label %q", fs.Label())
	}
	got := map[string]string{}
	ents, err := fs.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := fs.ReadFile("/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = string(b)
	}
	if diff := cmp.Diff(docs, got); diff != "" {
		t.Errorf("CIDATA files (-want +got):\n%s", diff)
	}
}

func TestCIDataErrors(t *testing.T) {
	docs := map[string]string{"meta-data": "instance-id: x\n"}
	srv := seedServer(t, docs)
	t.Run("no meta-data", func(t *testing.T) {
		if _, err := fetchSeed(t.Context(), srv.Client(), srv.URL+"/other/"); err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("fetchSeed = %v", err)
		}
	})
	t.Run("user-data defaults to empty", func(t *testing.T) {
		got, err := fetchSeed(t.Context(), srv.Client(), srv.URL+"/nocloud/tok/")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got["user-data"]; !ok || len(got) != 2 {
			t.Errorf("documents %v, want meta-data and an empty user-data", got)
		}
	})
	t.Run("no GPT", func(t *testing.T) {
		d, _ := newDiskFile(t, 8<<20, 0)
		if _, err := writeCIData(d, map[string][]byte{"meta-data": nil}); err == nil || !strings.Contains(err.Error(), "GPT") {
			t.Errorf("writeCIData on a blank disk = %v", err)
		}
	})
	t.Run("no room", func(t *testing.T) {
		// The image fills the disk: no space after its last partition.
		img := buildTestImage(t, 16<<20, nil)
		d, _ := newDiskFile(t, 16<<20, 0)
		d.WriteAt(img.data, 0)
		if _, err := writeCIData(d, map[string][]byte{"meta-data": nil}); err == nil || !strings.Contains(err.Error(), "no room") {
			t.Errorf("writeCIData on a full disk = %v", err)
		}
	})
}
