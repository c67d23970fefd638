package lab

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/agent"
)

// TestQEMULabImage boots the lab's Debian image (EnsureLabImage; a cold build takes a few
// minutes) from a virtio-blk disk under SeaBIOS and under OVMF, with the cloud-init
// drop-in rackboot's agent writes (agent.DropIn) pointing NoCloud at a Go HTTP server in
// the lab namespace. Each guest's user-data writes a marker of its own to the serial
// console, so the marker proves the image booted under that firmware, took its address
// by DHCP and ran cloud-init with the data the drop-in named.
func TestQEMULabImage(t *testing.T) {
	Require(t, append([]string{"qemu-system-x86_64", "dnsmasq", "debugfs"}, LabImageTools()...)...)
	buildCtx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	start := time.Now()
	image, sum, err := EnsureLabImage(buildCtx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lab image %s (sha256 %s) ready after %v", image, sum, time.Since(start).Round(time.Second))
	if got, err := fileSHA256(image); err != nil || got != sum {
		t.Fatalf("sha256 of %s = %s (%v), EnsureLabImage said %s", image, got, err, sum)
	}

	dir := logDir(t)
	seg := newSegment(t, "labimg", "10.77.0.1/24")
	startDnsmasq(t, seg.NS, dir, seg.Bridge, "--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h")
	seeds := &noCloudSeeds{}
	serveInNetns(t, seg.NS, "10.77.0.1:8080", seeds)

	for i, fw := range []Firmware{SeaBIOS, OVMFPXE} {
		t.Run(string(fw), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			name := "labimg-" + string(fw)
			marker := fmt.Sprintf("RACKBOOT-LAB-IMAGE-%s-%d", fw, time.Now().UnixNano())
			seeds.Set(name, marker)
			// A disk larger than the image, as on a real host: cloud-init grows the root.
			disk := diskFromImage(t, image, filepath.Join(dir, name+".raw"), 4<<30, "http://10.77.0.1:8080/nocloud/"+name+"/")

			tap, err := seg.AddTap()
			if err != nil {
				t.Fatal(err)
			}
			vm := VM{
				Name: name, MAC: fmt.Sprintf("52:54:00:77:01:%02x", i+1), Tap: tap, Firmware: fw,
				MemoryMB: 1024, Disk: disk, SerialLog: filepath.Join(dir, name+".serial"),
			}
			var vars string
			if vm.UEFI() {
				vars = filepath.Join(dir, name+"-OVMF_VARS.fd")
				if err := copyFile(OVMFVars, vars); err != nil {
					t.Fatal(err)
				}
			}
			booted := time.Now()
			qemu := startFromDisk(t, seg.NS, vm, vars)
			if err := Poll(ctx, 8*time.Minute, "cloud-init's marker on the serial console", Alive(FileContains(vm.SerialLog, marker), qemu)); err != nil {
				t.Fatalf("%v\nserial log:\n%s", err, Tail(vm.SerialLog, 40))
			}
			t.Logf("%s: QEMU start to cloud-init runcmd %v", fw, time.Since(booted).Round(100*time.Millisecond))
			if got := seeds.Requests(name); !strings.Contains(got, "user-data") || !strings.Contains(got, "meta-data") {
				t.Errorf("%s fetched %q from the NoCloud server, want meta-data and user-data", name, got)
			}
		})
	}
}

// noCloudSeeds serves NoCloud-net documents under /nocloud/NAME/ and records what each
// guest fetched.
type noCloudSeeds struct {
	mu       sync.Mutex
	markers  map[string]string
	requests map[string][]string
}

func (s *noCloudSeeds) Set(name, marker string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.markers == nil {
		s.markers, s.requests = map[string]string{}, map[string][]string{}
	}
	s.markers[name] = marker
}

func (s *noCloudSeeds) Requests(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.requests[name], " ")
}

func (s *noCloudSeeds) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, doc, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/nocloud/"), "/")
	s.mu.Lock()
	marker, known := s.markers[name]
	if known {
		s.requests[name] = append(s.requests[name], doc)
	}
	s.mu.Unlock()
	if !ok || !known {
		http.NotFound(w, r)
		return
	}
	switch doc {
	case "meta-data":
		fmt.Fprintf(w, "instance-id: %s\nlocal-hostname: %s\n", name, name)
	case "user-data":
		fmt.Fprintf(w, "#cloud-config\nruncmd:\n  - echo %s > /dev/ttyS0\n", marker)
	case "vendor-data", "network-config":
		// Absent documents are optional in NoCloud.
		http.NotFound(w, r)
	default:
		http.NotFound(w, r)
	}
}

// startFromDisk starts vm in ns booting from its disk (no network boot), as a
// provisioned host does. vars is its OVMF_VARS copy (UEFI only).
func startFromDisk(t *testing.T, ns *Netns, vm VM, vars string) *Process {
	t.Helper()
	args, err := vm.QEMUArgs(vars)
	if err != nil {
		t.Fatal(err)
	}
	qemu, err := ns.Start(t, vm.SerialLog+".qemu", append(args, vm.bootOrder().Disk...)...)
	if err != nil {
		t.Fatal(err)
	}
	return qemu
}

// diskFromImage decompresses a zstd image into disk, grows the file to size bytes and
// writes the agent's cloud-init drop-in naming the NoCloud URL into its root, as the
// agent leaves a provisioned host's disk.
func diskFromImage(t *testing.T, image, disk string, size int64, noCloudURL string) string {
	t.Helper()
	if out, err := exec.CommandContext(t.Context(), "zstd", "-q", "-d", "-f", image, "-o", disk).CombinedOutput(); err != nil {
		t.Fatalf("zstd -d %s: %v: %s", image, err, out)
	}
	if err := os.Truncate(disk, size); err != nil {
		t.Fatal(err)
	}
	writeDropInWithDebugfs(t, disk, agent.DropIn(noCloudURL, nil))
	return disk
}

// writeDropInWithDebugfs writes the agent's drop-in into the root partition (the second
// MBR partition) of the raw disk without mounting it, as the agent would after writing
// the image.
func writeDropInWithDebugfs(t *testing.T, disk string, dropIn []byte) {
	t.Helper()
	dev := rootPartition(t, disk)
	src := filepath.Join(t.TempDir(), "99-rackboot.cfg")
	if err := os.WriteFile(src, dropIn, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("debugfs", "-w", "-R", "write "+src+" /"+agent.DropInPath, dev).CombinedOutput()
	if err != nil || strings.Contains(string(out), "rror") {
		t.Fatalf("debugfs write %s into %s: %v: %s", agent.DropInPath, dev, err, out)
	}
	out, err = exec.Command("debugfs", "-R", "cat /"+agent.DropInPath, dev).Output()
	if err != nil || string(out) != string(dropIn) {
		t.Fatalf("reading the drop-in back from %s: %v: got %q", dev, err, out)
	}
}

// rootPartition names the lab image's root filesystem (the second MBR partition, Linux)
// inside a raw disk file the way debugfs takes it: FILE?offset=BYTES.
func rootPartition(t *testing.T, disk string) string {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	mbr := make([]byte, 512)
	_, err = f.ReadAt(mbr, 0)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		t.Fatalf("%s has no MBR", disk)
	}
	entry := mbr[446+16 : 446+32]
	if entry[4] != 0x83 {
		t.Fatalf("partition 2 of %s has type %#x, want 0x83 (Linux)", disk, entry[4])
	}
	offset := int64(binary.LittleEndian.Uint32(entry[8:12])) * 512
	return disk + "?offset=" + strconv.FormatInt(offset, 10)
}
