package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

// TestQEMUProvisionQcow2 is issue 13's qcow2 "done when", through rackboot's CLI:
//
//   - the lab image, converted with qemu-img convert -c to a compressed qcow2, is added
//     by URL with the sum read from a SHA256SUMS file; the server verifies it, converts
//     it once to zstd-compressed raw and records both checksums;
//   - a qcow2 overlay (backing file) and the good qcow2 under a wrong sha256 are refused:
//     the images fail with messages saying why, and a host asked to provision with them
//     is refused with its disk untouched;
//   - host "qcow2-ci" (SeaBIOS, IPMI BMC) is provisioned with the image, boots it, and
//     cloud-init runs its user-data and phones home (provisionWithCloudInit);
//   - host "qcow2-exact" (SeaBIOS, no BMC, so nothing boots its disk after the agent's
//     reboot, and cloud-init mode none, so the agent writes nothing but the image) ends
//     with a disk that qemu-img compare finds identical to the raw image.
func TestQEMUProvisionQcow2(t *testing.T) {
	Require(t, append([]string{"qemu-system-x86_64", "qemu-img", "ipmi_sim", "ipmitool", "apt-get", "dpkg-deb", "debugfs"}, LabImageTools()...)...)
	t.Parallel()
	ctx := t.Context()
	logs := logDir(t)

	bin := staticRackboot(t)
	seg := newSegment(t, "qcow2", "10.77.47.1/24")
	if _, err := seg.StartRouterAdvertisements(t, filepath.Join(logs, "ra.log")); err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(t, ServerConfig{Bin: bin, NS: seg.NS, Dir: logs, Addr: "10.77.47.1",
		Flags: []string{"--dhcp-mode", "server", "--dhcp-range", "10.77.47.100-10.77.47.149", "--dhcp-router", "10.77.47.1", "--unknown-hosts", "ignore"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ImportBootEnv(ctx, io.Discard); err != nil {
		t.Fatal(err)
	}
	rb := &rackboot{Server: s, t: t, dataDir: s.DataDir}
	rb.start()
	cli := func(args ...string) string { t.Helper(); return mustLogged(t, rb, args...) }

	// The lab image, raw and as a compressed qcow2 with a published checksum file.
	zst, _, err := EnsureLabImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	raw := filepath.Join(work, "debian-12-lab.raw")
	runT(t, "zstd", "-d", "-q", "-f", "-o", raw, zst)
	qc := filepath.Join(work, "debian-12-lab.qcow2")
	start := time.Now()
	runT(t, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, qc)
	rawSize, qcSize := fileSize(t, raw), fileSize(t, qc)
	t.Logf("qemu-img convert -c: %d raw bytes to a %d-byte qcow2 in %v", rawSize, qcSize, time.Since(start).Round(100*time.Millisecond))
	qcSum := sha256File(t, qc)
	sums := filepath.Join(work, "SHA256SUMS")
	if err := os.WriteFile(sums, []byte(strings.Repeat("0", 64)+"  other.img\n"+qcSum+" *debian-12-lab.qcow2\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	const good = "debian-12-qcow2"
	start = time.Now()
	cli("image", "add", good, "--url", "file://"+qc, "--sha256-url", "file://"+sums, "--no-wait")
	im := waitImage(t, rb, good, 10*time.Minute)
	t.Logf("image %s ready %v after image add (verify + convert): %s, served %d bytes, disk %d bytes", good,
		time.Since(start).Round(100*time.Millisecond), im.Status, im.Size, im.DiskSize)
	if im.Status != inventory.ImageReady || im.SHA256 != qcSum || im.SHA256URL != "file://"+sums ||
		im.SourceFormat != inventory.FormatQcow2 || im.Format != "zstd" || im.ServedSHA256 == "" || im.DiskSize != rawSize {
		t.Fatalf("image %s = %+v", good, im)
	}
	if got := sha256File(t, filepath.Join(s.DataDir, "images", good)); got != im.ServedSHA256 {
		t.Errorf("served file's sha256 %s, recorded %s", got, im.ServedSHA256)
	}
	t.Log(cli("image", "list", "-o", "wide"))

	// Refusals: an overlay and a wrong sum fail, saying why.
	overlay := filepath.Join(work, "overlay.qcow2")
	runT(t, "qemu-img", "create", "-f", "qcow2", "-b", qc, "-F", "qcow2", overlay)
	if out, err := rb.cli("image", "add", "overlay", "--file", overlay); err == nil || !strings.Contains(err.Error(), "backing file") {
		t.Errorf("image add of an overlay: %v\n%s", err, out)
	}
	if im := waitImage(t, rb, "overlay", time.Minute); im.Status != inventory.ImageFailed || !strings.Contains(im.Error, "backing file") || !strings.Contains(im.Error, "flatten") {
		t.Errorf("overlay image: %s: %s", im.Status, im.Error)
	}
	wrong := strings.Repeat("ab", 32)
	if out, err := rb.cli("image", "add", "wrongsum", "--url", "file://"+qc, "--sha256", wrong); err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Errorf("image add with a wrong sha256: %v\n%s", err, out)
	}
	if im := waitImage(t, rb, "wrongsum", time.Minute); im.Status != inventory.ImageFailed || !strings.Contains(im.Error, qcSum) || im.ServedSHA256 != "" {
		t.Errorf("wrongsum image: %+v", im)
	}
	for _, name := range []string{"overlay", "wrongsum"} {
		ents, _ := filepath.Glob(filepath.Join(s.DataDir, "images", "*"+name+"*"))
		if len(ents) != 0 {
			t.Errorf("files kept for the failed image %s: %v", name, ents)
		}
	}

	t.Run("hosts", func(t *testing.T) {
		t.Run("qcow2-ci", func(t *testing.T) {
			t.Parallel()
			provisionWithCloudInit(t, rb, seg, logs, bin, good, "qcow2-ci", "52:54:00:47:00:01", "10.77.47.21", SeaBIOS, IPMI)
		})
		t.Run("qcow2-exact", func(t *testing.T) {
			t.Parallel()
			provisionExact(t, rb, seg, logs, good, raw)
		})
	})
}

// provisionExact provisions a BMC-less VM with image and cloud-init mode none, checks
// that provisioning it with the failed images is refused with its disk untouched, and
// that the disk the agent wrote is the raw image byte for byte.
func provisionExact(t *testing.T, rb *rackboot, seg *Segment, logs, image, raw string) {
	ctx := t.Context()
	const id, mac, ip = "qcow2-exact", "52:54:00:47:00:02", "10.77.47.22"
	dir := vmDirFor(t, logs, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.img")
	if err := WriteBlankDisk(disk, 4<<30); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) string { t.Helper(); return mustLogged(t, rb, args...) }
	cli("host", "add", "--id", id, "--mac", mac, "--ip", ip, "--hostname", id)
	boots := 0
	// boot starts the VM from the network, as an operator of a host without a BMC
	// would, and returns its QEMU, which exits when the agent powers off or reboots.
	boot := func() (*Process, string) {
		t.Helper()
		boots++
		tap, err := seg.AddTap()
		if err != nil {
			t.Fatal(err)
		}
		vm := VM{Name: id, MAC: mac, Tap: tap, Firmware: SeaBIOS, MemoryMB: 1024, Disk: disk,
			SerialLog: filepath.Join(dir, fmt.Sprintf("serial-%d.log", boots))}
		p, err := seg.NS.StartVM(t, vm)
		if err != nil {
			t.Fatal(err)
		}
		return p, vm.SerialLog
	}
	waitExit := func(p *Process, serial, what string, d time.Duration) {
		t.Helper()
		select {
		case <-p.Done():
		case <-time.After(d):
			t.Fatalf("QEMU of %s did not exit within %v after %s\nconsole:\n%s", id, d, what, Tail(serial, 40))
		}
	}

	cli("host", "inspect", id)
	p, serial := boot()
	if err := rb.WaitHosts(ctx, []string{id}, 10*time.Minute, id+" to be inspected",
		func(h admin.Host) bool { return h.State == inventory.StateAvailable }, nil); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, Tail(serial, 40))
	}
	waitExit(p, serial, "inspection", 3*time.Minute)

	before := sha256File(t, disk)
	for _, bad := range []string{"overlay", "wrongsum"} {
		out, err := rb.cli("host", "provision", id, "--image", bad, "--cloud-init", "none")
		if err == nil || !strings.Contains(err.Error(), "image "+bad+" failed") {
			t.Errorf("host provision --image %s: %v\n%s", bad, err, out)
		}
	}
	var h admin.Host
	if err := json.Unmarshal([]byte(mustQuiet(t, rb, "host", "show", id, "-o", "json")), &h); err != nil || h.State != inventory.StateAvailable {
		t.Errorf("after the refusals %s is %s (%v), want available", id, h.State, err)
	}
	if after := sha256File(t, disk); after != before {
		t.Errorf("the disk of %s changed after refused provisioning requests", id)
	}

	start := time.Now()
	cli("host", "provision", id, "--image", image, "--cloud-init", "none")
	p, serial = boot()
	steps := []eventStep{{Type: "provision.request"}, {Type: "agent.hello"}, {Type: "image.fetch"}, {Type: "agent.result"}}
	if err := rb.WaitHosts(ctx, []string{id}, 20*time.Minute, id+" to write the image", func(h admin.Host) bool {
		return h.State == inventory.StateFailed || (h.Operation != nil && h.Operation.Phase == inventory.PhaseDiskBoot)
	}, nil); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, Tail(serial, 40))
	}
	evs := rb.waitTimeline(id, 10*time.Second, steps)
	t.Logf("%s: image written %v after host provision; timeline:\n%s", id, time.Since(start).Round(time.Second), formatEvents(evs))
	// The agent reboots; -no-reboot makes QEMU exit, and without a BMC nothing starts
	// it again: the disk is what the agent left.
	waitExit(p, serial, "writing the image", 3*time.Minute)
	if b, err := os.ReadFile(serial); err == nil {
		if m := regexp.MustCompile(`[^\n]*image written[^\n]*`).Find(b); m != nil {
			t.Logf("agent: %s", m)
		}
	}
	out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "raw", raw, disk).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img compare %s %s: %v\n%s", raw, disk, err, out)
	}
	t.Logf("qemu-img compare raw image, %s's disk: %s", id, strings.TrimSpace(string(out)))
}

// waitImage polls `image show` until the image is no longer pending.
func waitImage(t *testing.T, rb *rackboot, name string, d time.Duration) admin.Image {
	t.Helper()
	var im admin.Image
	last := ""
	WaitFor(t, d, "image "+name+" to be ready or failed", func(ctx context.Context) (bool, error) {
		out, err := rb.cli("image", "show", name, "-o", "json")
		if err != nil {
			return false, nil
		}
		im = admin.Image{}
		if err := json.Unmarshal(out, &im); err != nil {
			return false, err
		}
		if p := fmt.Sprintf("%s %d/%d", im.Phase, im.BytesDone, im.BytesTotal); im.Status == inventory.ImagePending && p != last {
			last = p
			t.Logf("image %s: %s", name, p)
		}
		return im.Status != inventory.ImagePending, nil
	})
	return im
}

func runT(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
