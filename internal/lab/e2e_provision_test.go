package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

// Issue 4's provisioning, end to end, driven only through rackboot's CLI: a SeaBIOS VM
// behind an IPMI BMC (ipmi_sim) with a 64 MiB disk, a real `rackboot serve` with the agent
// boot environment built from Debian's kernel package and a static rackboot, and the
// agent running as PID 1 of that initramfs in the VM.
//
//  1. inspect: the facts report the VM's MAC, memory, disk size and SMBIOS UUID;
//  2. provision an image (a boot sector that prints MarkerDiskBoot): the agent writes it,
//     rackboot sets the boot device to disk and powers the VM on after the agent's
//     reboot (QEMU runs with -no-reboot), and the VM boots its own disk;
//  3. release: the disk's signatures are gone, the VM is off, the host available;
//  4. an image whose cached bytes no longer match its sha256: the agent refuses it, the
//     host fails with the reason, and the disk is untouched;
//  5. rackboot killed (SIGKILL) while the agent writes: restarted, the host finishes its
//     provisioning (or fails cleanly) and nothing is lost from the inventory.
//
// Cloud-init and the phone-home ("provisioned") need the Debian lab image with
// cloud-init (make lab-image); this test stops at "boots its own disk".
func TestQEMUProvisionLifecycle(t *testing.T) {
	Require(t, "qemu-system-x86_64", "ipmi_sim", "ipmitool", "apt-get", "dpkg-deb")
	t.Parallel()
	ctx := t.Context()
	logs := logDir(t)

	// One static binary is the server, the CLI and the agent.
	bin := staticRackboot(t)

	seg := newSegment(t, "prov", "10.77.44.1/24")
	if _, err := seg.StartRouterAdvertisements(t, filepath.Join(logs, "ra.log")); err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(t, ServerConfig{Bin: bin, NS: seg.NS, Dir: logs, Addr: "10.77.44.1", Flags: []string{
		"--dhcp-mode", "server", "--dhcp-range", "10.77.44.100-10.77.44.149", "--dhcp-router", "10.77.44.1", "--unknown-hosts", "ignore"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.ImportBootEnv(ctx, io.Discard); err != nil {
		t.Fatal(err)
	}
	t.Logf("boot environment built in %v", time.Since(start).Round(time.Millisecond))
	rb := &rackboot{Server: s, t: t, dataDir: s.DataDir}
	rb.start()

	const (
		id   = "prov-1"
		mac  = "52:54:00:44:00:01"
		ip   = "10.77.44.21"
		uuid = "7d3c1b2a-5e4f-4a6b-8c9d-0e1f2a3b4c5d"
		mem  = 768
		disk = 64 << 20
	)
	dir := vmDirFor(t, logs, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	diskPath := filepath.Join(dir, "disk.img")
	if err := WriteBlankDisk(diskPath, disk); err != nil {
		t.Fatal(err)
	}
	v, err := seg.StartBMCVM(ctx, t, BMCVMConfig{
		VM:  VM{Name: id, MAC: mac, Firmware: SeaBIOS, MemoryMB: mem, UUID: uuid, Disk: diskPath},
		Dir: dir, BMC: BMCConfig{Protocol: IPMI},
	})
	if err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) string { t.Helper(); return mustLogged(t, rb, args...) }
	host := func() admin.Host {
		t.Helper()
		var h admin.Host
		if err := json.Unmarshal([]byte(mustQuiet(t, rb, "host", "show", id, "-o", "json")), &h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	// waitHost polls the host until cond holds, failing early when it fails instead.
	waitHost := func(what string, timeout time.Duration, cond func(admin.Host) bool) admin.Host {
		t.Helper()
		var h admin.Host
		err := Poll(ctx, timeout, what, Alive(func(context.Context) (bool, error) {
			h = host()
			if cond(h) {
				return true, nil
			}
			if h.State == inventory.StateFailed {
				return false, fmt.Errorf("host failed: %s", h.StateReason)
			}
			return false, nil
		}, rb.Proc))
		if err != nil {
			evs, _ := rb.events(id)
			t.Fatalf("%v\ntimeline:\n%s\nconsole:\n%s", err, formatEvents(evs), Tail(v.SerialLog(), 40))
		}
		return h
	}
	diskSum := func() string {
		t.Helper()
		b, err := os.ReadFile(diskPath)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}

	cli("host", "add", "--id", id, "--mac", mac, "--ip", ip, "--bmc", v.BMC.URL(), "--bmc-password-file", v.BMC.PasswordFile)

	// 1. Inspection.
	start = time.Now()
	cli("host", "inspect", id)
	h := waitHost("inspection", 8*time.Minute, func(h admin.Host) bool { return h.State == inventory.StateAvailable })
	t.Logf("inspected in %v", time.Since(start).Round(time.Second))
	f := h.Facts
	if f == nil {
		t.Fatal("no facts after inspection")
	}
	if !strings.EqualFold(f.System.UUID, uuid) {
		t.Errorf("SMBIOS UUID = %q, want %q", f.System.UUID, uuid)
	}
	if f.Memory.InstalledBytes != mem<<20 {
		t.Errorf("installed memory = %d, want %d (QEMU -m %d)", f.Memory.InstalledBytes, uint64(mem)<<20, mem)
	}
	var sawMAC, sawDisk bool
	for _, n := range f.NICs {
		sawMAC = sawMAC || n.MAC == mac
	}
	for _, d := range f.Disks {
		sawDisk = sawDisk || d.SizeBytes == disk
	}
	if !sawMAC || !sawDisk {
		t.Errorf("facts lack the NIC %s or a %d-byte disk: NICs %+v, disks %+v", mac, disk, f.NICs, f.Disks)
	}
	waitPowerOff(t, v)

	// 2. Provision a boot-sector image; the VM then boots its disk.
	img := filepath.Join(logs, "boot.img")
	if err := WriteBootDisk(img, 4<<20); err != nil {
		t.Fatal(err)
	}
	imgSum, err := fileSHA256(img)
	if err != nil {
		t.Fatal(err)
	}
	cli("image", "add", "bootsector", "--file", img, "--sha256", imgSum, "--format", "raw")
	start = time.Now()
	cli("host", "provision", id, "--image", "bootsector", "--cloud-init", "none")
	h = waitHost("image written", 8*time.Minute, func(h admin.Host) bool {
		return h.Operation != nil && h.Operation.Phase == inventory.PhaseDiskBoot
	})
	t.Logf("image written to %s in %v", h.Provision.WrittenDisk, time.Since(start).Round(time.Second))
	waitSerialMatch(t, v, regexp.MustCompile(MarkerDiskBoot), 3*time.Minute)
	want, _ := os.ReadFile(img)
	got, _ := os.ReadFile(diskPath)
	if len(got) < 512 || !bytes.Equal(got[:512], want[:512]) {
		t.Error("the disk does not start with the image's boot sector")
	}
	evs := rb.waitTimeline(id, 10*time.Second, []eventStep{
		{Type: "provision.request"}, {Type: "bmc.bootdev", Fields: map[string]string{"device": "pxe"}},
		{Type: "bmc.power", Fields: map[string]string{"action": "cycle"}}, {Type: "agent.boot"}, {Type: "agent.hello"},
		{Type: "image.fetch"}, {Type: "agent.result"}, {Type: "bmc.bootdev", Fields: map[string]string{"device": "disk"}},
	})
	t.Logf("timeline:\n%s", formatEvents(evs))

	// 3. Release: wiped, off, available.
	start = time.Now()
	cli("host", "release", id, "--wipe", "quick")
	waitHost("release", 8*time.Minute, func(h admin.Host) bool { return h.State == inventory.StateAvailable })
	t.Logf("released in %v", time.Since(start).Round(time.Second))
	got, _ = os.ReadFile(diskPath)
	if len(got) >= 512 && got[510] == 0x55 && got[511] == 0xaa {
		t.Error("the boot signature survived the wipe")
	}
	if !bytes.Equal(got[:1<<20], make([]byte, 1<<20)) {
		t.Error("the first MiB of the disk is not zero after a quick wipe")
	}
	waitPowerOff(t, v)
	if out := cli("host", "show", id, "-o", "json"); strings.Contains(out, `"provision"`) {
		t.Errorf("a released host keeps its provisioning: %s", out)
	}

	// 4. The cached image no longer matches its checksum: refused, disk untouched.
	before := diskSum()
	cached := filepath.Join(s.DataDir, "images", "bootsector")
	b, err := os.ReadFile(cached)
	if err != nil {
		t.Fatal(err)
	}
	b[1000] ^= 0xff
	if err := os.WriteFile(cached, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cli("host", "provision", id, "--image", "bootsector", "--cloud-init", "none")
	err = Poll(ctx, 8*time.Minute, "the agent to refuse the image", Alive(func(context.Context) (bool, error) {
		return host().State == inventory.StateFailed, nil
	}, rb.Proc))
	if err != nil {
		t.Fatal(err)
	}
	h = host()
	if !strings.Contains(h.StateReason, "sha256") {
		t.Errorf("failure reason %q does not name the checksum", h.StateReason)
	}
	t.Logf("failed as it should: %s", h.StateReason)
	waitPowerOff(t, v)
	if after := diskSum(); after != before {
		t.Error("the disk changed although the image failed its checksum")
	}
	cli("host", "release", id)
	waitHost("release after the failure", 8*time.Minute, func(h admin.Host) bool { return h.State == inventory.StateAvailable })
	waitPowerOff(t, v)
	cli("image", "rm", "bootsector")

	// 5. Kill rackboot while the agent writes; the restarted rackboot takes over.
	if err := WriteBootDisk(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if imgSum, err = fileSHA256(img); err != nil {
		t.Fatal(err)
	}
	cli("image", "add", "bootsector2", "--file", img, "--sha256", imgSum, "--format", "raw")
	cli("host", "provision", id, "--image", "bootsector2", "--cloud-init", "none")
	waitHost("the agent's plan", 8*time.Minute, func(h admin.Host) bool {
		return h.Operation != nil && h.Operation.Phase == inventory.PhaseAgent && h.Operation.Plan == "provision"
	})
	nBefore := len(mustEvents(t, rb, id))
	if err := rb.Proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-rb.Proc.Done()
	rb.start()
	h = waitHost("provisioning to finish after the restart", 8*time.Minute, func(h admin.Host) bool {
		return h.Operation != nil && h.Operation.Phase == inventory.PhaseDiskBoot
	})
	evs = mustEvents(t, rb, id)
	if len(evs) <= nBefore {
		t.Errorf("timeline shrank across the restart: %d events, had %d", len(evs), nBefore)
	}
	if err := inOrder(evs, []eventStep{{Type: "provision.resume"}, {Type: "agent.result"}}); err != nil {
		t.Errorf("%v:\n%s", err, formatEvents(evs[nBefore-1:]))
	}
	waitSerialMatch(t, v, regexp.MustCompile(MarkerDiskBoot), 3*time.Minute)
}

// mustLogged runs the CLI, fails t if it fails and logs the command with its answer.
func mustLogged(t *testing.T, rb *rackboot, args ...string) string {
	t.Helper()
	out := mustQuiet(t, rb, args...)
	t.Logf("rackboot %s: %s", strings.Join(args, " "), strings.TrimSpace(out))
	return out
}

func mustQuiet(t *testing.T, rb *rackboot, args ...string) string {
	t.Helper()
	out, err := rb.cli(args...)
	if err != nil {
		t.Fatalf("rackboot %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func mustEvents(t *testing.T, rb *rackboot, id string) []admin.Event {
	t.Helper()
	evs, err := rb.events(id)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// waitPowerOff waits for the agent to power the VM off.
func waitPowerOff(t *testing.T, v *BMCVM) {
	t.Helper()
	WaitFor(t, 2*time.Minute, "VM "+v.VM.Name+" to power off", func(ctx context.Context) (bool, error) {
		st, err := v.PowerState(ctx)
		return err == nil && st == "off", nil
	})
}

// staticRackboot is the rackboot binary the boot environment's /init needs: static.
func staticRackboot(t *testing.T) string { return rackbootBinary(t) }
