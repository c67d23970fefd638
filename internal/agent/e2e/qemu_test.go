package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat12"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/agent"
	"github.com/rackboot/rackboot/internal/bootenv"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/lab"
	"github.com/rackboot/rackboot/internal/metadata"
)

const (
	token  = "e2e-token-0123456789abcdef"
	vmMAC  = "52:54:00:41:00:01"
	vmUUID = "5f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
	subnet = "10.77.41.1/24"
)

// server is a stand-in of rackboot's agent API: it hands out plans in order, serves the
// image with Range support and records what the agent says, with times.
type server struct {
	mu       sync.Mutex
	plans    []agentapi.Plan
	hellos   []stamped[agentapi.Hello]
	progress []stamped[agentapi.Progress]
	results  []stamped[agentapi.Result]
	// images are served under /images/NAME.
	images   map[string][]byte
	imageGet []time.Time // start and end of each image response
	log      func(string, ...any)
}

type stamped[T any] struct {
	At  time.Time
	Msg T
	// From is the request's source address.
	From string
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	from, _, _ := net.SplitHostPort(r.RemoteAddr)
	if name, ok := strings.CutPrefix(r.URL.Path, "/nocloud/"+token+"/"); ok {
		doc, found := seedDocs()[name]
		if !found {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(doc))
		return
	}
	if name, ok := strings.CutPrefix(r.URL.Path, "/images/"); ok {
		s.mu.Lock()
		img, found := s.images[name]
		s.mu.Unlock()
		if !found {
			http.NotFound(w, r)
			return
		}
		start := time.Now()
		http.ServeContent(w, r, name, time.Unix(0, 0), bytes.NewReader(img))
		s.mu.Lock()
		s.imageGet = append(s.imageGet, start, time.Now())
		s.mu.Unlock()
		return
	}
	if tok, ok := agentapi.BearerToken(r); !ok || tok != token {
		agentapi.WriteError(w, http.StatusUnauthorized, "unknown token")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	switch r.URL.Path {
	case agentapi.PathHello:
		var h agentapi.Hello
		if err := agentapi.DecodeRequest(r, &h); err != nil {
			agentapi.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.hellos = append(s.hellos, stamped[agentapi.Hello]{now, h, from})
		if len(s.plans) == 0 {
			agentapi.WriteError(w, http.StatusServiceUnavailable, "no plan")
			return
		}
		p := s.plans[0]
		s.plans = s.plans[1:]
		s.log("hello from %s (uptime %.1fs): plan %s", from, h.UptimeSeconds, p.Action)
		agentapi.WriteJSON(w, http.StatusOK, p)
	case agentapi.PathProgress:
		var p agentapi.Progress
		if err := agentapi.DecodeRequest(r, &p); err != nil {
			agentapi.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.progress = append(s.progress, stamped[agentapi.Progress]{now, p, from})
		w.WriteHeader(http.StatusNoContent)
	case agentapi.PathResult:
		var res agentapi.Result
		if err := agentapi.DecodeRequest(r, &res); err != nil {
			agentapi.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.results = append(s.results, stamped[agentapi.Result]{now, res, from})
		s.log("result from %s: %+v", from, res)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

// seedDocs is the host's NoCloud data (no network-config: 404).
func seedDocs() map[string]string {
	return map[string]string{
		"meta-data":   "instance-id: e2e-1\nlocal-hostname: e2e-1\n",
		"user-data":   "#cloud-config\nruncmd: [[touch, /var/lib/rackboot-marker]]\n",
		"vendor-data": "#cloud-config\n{}\n",
	}
}

func (s *server) resultCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.results)
}

// TestQEMUAgent boots the Debian kernel with rackboot's initramfs in QEMU (TCG, SeaBIOS,
// direct kernel boot, 1 GiB of memory, a 1 GiB virtio disk, a known MAC and SMBIOS UUID)
// on a lab segment with dnsmasq for DHCP, four times: a provisioning plan (a gzip image
// with a GPT and an ext4 root, cloud-init drop-in), the same in cidata mode, a Flatcar
// layout in Ignition mode (the config lands on the btrfs OEM partition), then a
// quick-wipe deprovisioning plan.
func TestQEMUAgent(t *testing.T) {
	lab.Require(t, "qemu-system-x86_64", "dnsmasq", "apt-get", "go", "mkfs.ext4", "debugfs", "wipefs", "blkid")
	ctx := t.Context()
	dir := logDir(t)

	// The boot environment: the lab's Debian kernel package and this tree's rackboot.
	cache, err := lab.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	deb, err := bootenv.DownloadDebianKernel(dctx, filepath.Join(cache, "debs"), os.Getenv(lab.KernelPackageEnv))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	bin := buildRackboot(t)
	t0 := time.Now()
	env, err := bootenv.Build(ctx, bootenv.Config{DataDir: filepath.Join(cache, "bootenv-e2e"), KernelDeb: deb, Agent: bin})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot environment %s: kernel %s, %d modules, initramfs %.1f MiB (cached %v, %v)",
		env.Key, env.KernelVersion, env.Modules, float64(env.InitramfsSize)/(1<<20), env.Cached, time.Since(t0).Round(time.Millisecond))

	// The image: GPT, ext4 root with etc/cloud and 24 MiB of incompressible data.
	blob := make([]byte, 24<<20)
	rng := rand.New(rand.NewPCG(41, 1))
	for i := range blob {
		blob[i] = byte(rng.Uint32())
	}
	img := buildImage(t, 64<<20, map[string][]byte{
		"etc/hostname":        []byte("rackboot-e2e\n"),
		"etc/cloud/cloud.cfg": []byte("datasource_list: [ NoCloud, ConfigDrive ]\n"),
		"var/lib/blob":        blob,
	})
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	zw.Write(img)
	zw.Close()
	served := gz.Bytes()

	seg, err := lab.NewSegment(t, "agent", netip.MustParsePrefix(subnet))
	if err != nil {
		t.Fatal(err)
	}
	dnsmasq, err := seg.NS.Start(t, filepath.Join(dir, "dnsmasq.log"),
		"dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface="+seg.Bridge, "--bind-interfaces", "--except-interface=lo",
		"--log-dhcp", "--log-facility=-", "--user=root", "--group=root", "--pid-file=",
		"--dhcp-leasefile="+filepath.Join(dir, "dnsmasq.leases"),
		"--dhcp-range=10.77.41.100,10.77.41.150,255.255.255.0,1h", "--no-ping")
	if err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, 10*time.Second, "dnsmasq to start", lab.Alive(lab.FileContains(dnsmasq.Log, "DHCP, IP range"), dnsmasq))

	srv := &server{images: map[string][]byte{"test.img.gz": served}, log: t.Logf}
	l, err := seg.NS.Listen("tcp", "10.77.41.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(l)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	})
	base := "http://" + l.Addr().String()
	seed := base + "/nocloud/" + token + "/"

	diskPath := filepath.Join(dir, "disk.raw")
	if f, err := os.Create(diskPath); err != nil {
		t.Fatal(err)
	} else {
		f.Truncate(1 << 30)
		f.Close()
	}
	tap, err := seg.AddTap()
	if err != nil {
		t.Fatal(err)
	}
	args := agentapi.KernelArgs{URL: base, Token: token, MAC: vmMAC}
	vm := lab.VM{
		Name: "agent", MAC: vmMAC, Tap: tap, Firmware: lab.SeaBIOS, MemoryMB: 1024, UUID: vmUUID,
		Disk: diskPath, Kernel: env.Kernel, Initrd: env.Initramfs, Append: "console=ttyS0,115200n8 " + args.String(),
	}

	boot := func(t *testing.T, name string, plan agentapi.Plan) (stamped[agentapi.Hello], stamped[agentapi.Result], time.Time, string) {
		t.Helper()
		srv.mu.Lock()
		srv.plans = append(srv.plans, plan)
		nHello, nResult := len(srv.hellos), len(srv.results)
		srv.mu.Unlock()
		vm.Name = "agent-" + name
		vm.SerialLog = filepath.Join(dir, name+".serial")
		start := time.Now()
		qemu, err := seg.NS.StartVM(t, vm)
		if err != nil {
			t.Fatal(err)
		}
		// The result first: the agent powers off right after sending it, so QEMU may
		// be gone by the time the condition is checked.
		lab.WaitFor(t, 5*time.Minute, "the agent's result", func(ctx context.Context) (bool, error) {
			if srv.resultCount() > nResult {
				return true, nil
			}
			return lab.Alive(func(context.Context) (bool, error) { return false, nil }, qemu)(ctx)
		})
		// After the result the agent reboots or powers off; with -no-reboot either ends QEMU.
		select {
		case <-qemu.Done():
		case <-time.After(2 * time.Minute):
			t.Fatalf("QEMU still runs 2 minutes after the result; serial:\n%s", lab.Tail(vm.SerialLog, 40))
		}
		serial, _ := os.ReadFile(vm.SerialLog)
		srv.mu.Lock()
		defer srv.mu.Unlock()
		if len(srv.hellos) != nHello+1 {
			t.Fatalf("%d hellos in this boot, want 1", len(srv.hellos)-nHello)
		}
		return srv.hellos[nHello], srv.results[nResult], start, string(serial)
	}

	t.Run("provision", func(t *testing.T) {
		hello, res, start, serial := boot(t, "provision", agentapi.Plan{Action: agentapi.ActionProvision, Provision: &agentapi.Provision{
			ImageURL: base + "/images/test.img.gz", SHA256: sum(served), Size: int64(len(served)),
			CloudInit: agentapi.CloudInit{Mode: agentapi.CloudInitDropIn, SeedURL: seed},
		}})
		f := hello.Msg.Facts
		t.Logf("facts: %+v", f)
		var vda *agentapi.Disk
		for i := range f.Disks {
			if f.Disks[i].Name == "vda" {
				vda = &f.Disks[i]
			}
		}
		var bootNIC *agentapi.NIC
		for i := range f.NICs {
			if f.NICs[i].Boot {
				bootNIC = &f.NICs[i]
			}
		}
		switch {
		case hello.Msg.MAC != vmMAC:
			t.Errorf("hello MAC %s, want %s", hello.Msg.MAC, vmMAC)
		case f.System.UUID != vmUUID:
			t.Errorf("SMBIOS UUID %q, want %s", f.System.UUID, vmUUID)
		case f.Memory.InstalledBytes != 1<<30:
			t.Errorf("installed memory %d, want 1 GiB (QEMU -m 1024)", f.Memory.InstalledBytes)
		case vda == nil || vda.SizeBytes != 1<<30:
			t.Errorf("disks %+v, want vda of 1 GiB", f.Disks)
		case bootNIC == nil || bootNIC.MAC != vmMAC || bootNIC.Driver != "virtio_net":
			t.Errorf("NICs %+v, want the boot NIC %s on virtio_net", f.NICs, vmMAC)
		case f.CPU.Count != 1 || f.Memory.UsableBytes == 0 || f.Memory.UsableBytes >= 1<<30:
			t.Errorf("CPU %+v, memory %+v", f.CPU, f.Memory)
		case hello.From != hello.Msg.IP || !strings.HasPrefix(hello.From, "10.77.41."):
			t.Errorf("hello from %s says IP %s, want a lease from 10.77.41.100-150", hello.From, hello.Msg.IP)
		}
		want := agentapi.Result{Action: agentapi.ActionProvision, OK: true, Phase: agentapi.PhaseDone, RootDisk: "vda",
			ImageSHA256: sum(served), ImageBytes: int64(len(served)), BytesWritten: int64(len(img)), RootPartition: "vda1", Next: "reboot"}
		res.Msg.Seconds = 0
		if fmt.Sprint(res.Msg) != fmt.Sprint(want) {
			t.Errorf("result\n%+v\nwant\n%+v", res.Msg, want)
		}
		if !strings.Contains(serial, "reboot: Restarting system") {
			t.Errorf("the agent did not reboot; serial tail:\n%s", tail(serial, 30))
		}

		disk, err := os.ReadFile(diskPath)
		if err != nil {
			t.Fatal(err)
		}
		// The partition table (held back until verified) and the image's backup GPT are
		// the image's bytes; the filesystem changed by being mounted and written, so its
		// files are compared instead.
		if !bytes.Equal(disk[:1<<20], img[:1<<20]) || !bytes.Equal(disk[len(img)-1<<20:len(img)], img[len(img)-1<<20:]) {
			t.Error("the disk's GPT areas differ from the image's")
		}
		if !allZero(disk[len(img):]) {
			t.Error("bytes past the image were written")
		}
		for path, want := range map[string]string{
			"/etc/hostname":        "rackboot-e2e\n",
			"/" + agent.DropInPath: string(agent.DropIn(seed, nil)),
		} {
			if got := debugfsCat(t, diskPath, 1<<20, path); got != want {
				t.Errorf("%s on the disk = %q, want %q", path, got, want)
			}
		}
		if got := debugfsCat(t, diskPath, 1<<20, "/var/lib/blob"); sum([]byte(got)) != sum(blob) {
			t.Errorf("/var/lib/blob on the disk has sha256 %s, want %s", sum([]byte(got)), sum(blob))
		}

		// Timings.
		srv.mu.Lock()
		get := append([]time.Time(nil), srv.imageGet...)
		var writeStart, writeEnd time.Time
		for _, p := range srv.progress {
			if p.Msg.Phase == agentapi.PhaseWipe && writeStart.IsZero() {
				writeStart = p.At
			}
			if p.Msg.Phase == agentapi.PhaseVerify {
				writeEnd = p.At
			}
		}
		srv.mu.Unlock()
		t.Logf("boot to hello: %v from QEMU start (kernel uptime at hello %.1f s)", hello.At.Sub(start).Round(100*time.Millisecond), hello.Msg.UptimeSeconds)
		if len(get) >= 2 {
			d := get[len(get)-1].Sub(get[0])
			t.Logf("download: %.1f MiB gzip in %v = %.1f MiB/s", float64(len(served))/(1<<20), d.Round(time.Millisecond), float64(len(served))/(1<<20)/d.Seconds())
		}
		if !writeStart.IsZero() && !writeEnd.IsZero() {
			d := writeEnd.Sub(writeStart)
			t.Logf("wipe+decompress+write: %.0f MiB in %v = %.1f MiB/s (TCG guest)", float64(len(img))/(1<<20), d.Round(time.Millisecond), float64(len(img))/(1<<20)/d.Seconds())
		}
		t.Logf("hello to result: %v; QEMU start to result: %v", res.At.Sub(hello.At).Round(100*time.Millisecond), res.At.Sub(start).Round(100*time.Millisecond))
		if i := strings.Index(serial, "image written"); i >= 0 {
			t.Logf("agent: %s", firstLine(serial[i:]))
		}
	})
	if t.Failed() {
		return
	}

	t.Run("provision-cidata", func(t *testing.T) {
		_, res, _, serial := boot(t, "provision-cidata", agentapi.Plan{Action: agentapi.ActionProvision, Provision: &agentapi.Provision{
			ImageURL: base + "/images/test.img.gz", SHA256: sum(served), Size: int64(len(served)),
			CloudInit: agentapi.CloudInit{Mode: agentapi.CloudInitCIData, SeedURL: seed},
		}})
		if !res.Msg.OK || res.Msg.RootPartition != "vda2" || res.Msg.Next != "reboot" {
			t.Errorf("result %+v", res.Msg)
		}
		if !strings.Contains(serial, "CIDATA partition verified through the kernel's vfat") {
			t.Errorf("the agent did not read CIDATA back; serial tail:\n%s", tail(serial, 30))
		}
		// The partition sits in the last MiBs of the disk, before the backup GPT.
		off := int64(1<<30 - 1<<20 - agent.CIDataSize)
		out, err := exec.Command("blkid", "-p", "-O", strconv.FormatInt(off, 10), "-o", "export", diskPath).Output()
		if err != nil || !strings.Contains(string(out), "LABEL=CIDATA") || !strings.Contains(string(out), "TYPE=vfat") {
			t.Errorf("blkid at the CIDATA offset: %v\n%s", err, out)
		}
		f, err := os.Open(diskPath)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fs, err := fat12.Read(file.New(f, true), agent.CIDataSize, off, 512)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range seedDocs() {
			if got, err := fs.ReadFile("/" + name); err != nil || string(got) != want {
				t.Errorf("CIDATA %s = %q, %v; want %q", name, got, err, want)
			}
		}
		// The image's own root filesystem has no drop-in this time.
		if out, _ := exec.Command("debugfs", "-R", "stat /"+agent.DropInPath, diskPath+"?offset=1048576").CombinedOutput(); !strings.Contains(string(out), "not found") {
			t.Errorf("a drop-in exists in cidata mode: %s", out)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("provision-ignition", func(t *testing.T) {
		lab.Require(t, "sfdisk", "mkfs.vfat", "mkfs.btrfs", "btrfs")
		// Flatcar's layout, small: EFI-SYSTEM, OEM (btrfs, holding grub.cfg, as
		// Flatcar's does) and ROOT, made by sfdisk and the mkfs tools, not by rackboot.
		img := buildFlatcarImage(t, map[string]string{"grub.cfg": "set linux_append=\"flatcar.autologin\"\n"})
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
		zw.Write(img)
		zw.Close()
		srv.mu.Lock()
		srv.images["flatcar.img.gz"] = gz.Bytes()
		srv.mu.Unlock()
		// The config as the server renders it: Butane to Ignition, plus the phone-home
		// unit pointing at this host's metadata URL.
		ign, err := metadata.RenderButane([]byte(flatcarButane))
		if err != nil {
			t.Fatal(err)
		}
		config, err := metadata.Ignition(metadata.Input{BaseURL: seed}, inventory.ProvisionData{Kind: inventory.ConfigIgnition, Ignition: ign})
		if err != nil {
			t.Fatal(err)
		}
		_, res, start, serial := boot(t, "provision-ignition", agentapi.Plan{Action: agentapi.ActionProvision, Provision: &agentapi.Provision{
			ImageURL: base + "/images/flatcar.img.gz", SHA256: sum(gz.Bytes()), Size: int64(gz.Len()),
			CloudInit: agentapi.CloudInit{Mode: agentapi.CloudInitIgnition}, Ignition: &agentapi.Ignition{Config: config},
		}})
		if !res.Msg.OK || res.Msg.RootPartition != "vda6" || res.Msg.Next != "reboot" || res.Msg.BytesWritten != int64(len(img)) {
			t.Errorf("result %+v", res.Msg)
		}
		if !strings.Contains(serial, "Ignition config written") {
			t.Errorf("no Ignition line on the console; serial tail:\n%s", tail(serial, 30))
		}
		disk, err := os.ReadFile(diskPath)
		if err != nil {
			t.Fatal(err)
		}
		// Everything but the OEM filesystem is the image's, byte for byte.
		oem := flatcarOEM
		if !bytes.Equal(disk[:oem.start], img[:oem.start]) || !bytes.Equal(disk[oem.start+oem.size:len(img)], img[oem.start+oem.size:]) {
			t.Error("the agent changed the disk outside the OEM partition")
		}
		// The OEM filesystem read back on this side by btrfs-progs, without mounting:
		// the config byte for byte, mode 0600, the image's file kept, and a filesystem
		// btrfs check finds consistent after the kernel's write and unmount.
		part := filepath.Join(t.TempDir(), "oem.btrfs")
		if err := os.WriteFile(part, disk[oem.start:oem.start+oem.size], 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("btrfs", "check", "--readonly", part).CombinedOutput(); err != nil {
			t.Errorf("btrfs check of the OEM partition: %v\n%s", err, out)
		}
		files := t.TempDir()
		if out, err := exec.Command("btrfs", "restore", "-m", part, files).CombinedOutput(); err != nil {
			t.Fatalf("btrfs restore: %v\n%s", err, out)
		}
		got, err := os.ReadFile(filepath.Join(files, "config.ign"))
		if err != nil || !bytes.Equal(got, config) {
			t.Errorf("config.ign on the OEM partition = %q, %v;\nwant what the server rendered:\n%s", got, err, config)
		}
		if st, err := os.Stat(filepath.Join(files, "config.ign")); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("config.ign: %v, %v; want mode 0600", st, err)
		}
		if got, _ := os.ReadFile(filepath.Join(files, "grub.cfg")); string(got) != "set linux_append=\"flatcar.autologin\"\n" {
			t.Errorf("grub.cfg = %q", got)
		}
		if ents, _ := os.ReadDir(files); len(ents) != 2 {
			t.Errorf("OEM partition holds %v, want grub.cfg and config.ign only", ents)
		}
		t.Logf("provision-ignition: QEMU start to result %v; agent: %s", res.At.Sub(start).Round(100*time.Millisecond), firstLine(serial[strings.Index(serial, "Ignition config written"):]))
	})
	if t.Failed() {
		return
	}

	t.Run("deprovision", func(t *testing.T) {
		if got := signatures(t, diskPath); got == "" {
			t.Fatal("no signatures on the disk before the wipe")
		}
		hello, res, start, serial := boot(t, "deprovision", agentapi.Plan{Action: agentapi.ActionDeprovision, PowerOff: true,
			Deprovision: &agentapi.Deprovision{Wipe: agentapi.WipeQuick}})
		if !res.Msg.OK || fmt.Sprint(res.Msg.Wiped) != "[vda]" || res.Msg.Next != "poweroff" {
			t.Errorf("result %+v", res.Msg)
		}
		if !strings.Contains(serial, "reboot: Power down") {
			t.Errorf("the agent did not power off; serial tail:\n%s", tail(serial, 30))
		}
		if got := signatures(t, diskPath); got != "" {
			t.Errorf("signatures after the wipe: %q", got)
		}
		off := strconv.FormatInt(1<<30-1<<20-agent.CIDataSize, 10)
		if out, _ := exec.Command("blkid", "-p", "-O", off, diskPath).Output(); len(out) != 0 {
			t.Errorf("the CIDATA filesystem survived the wipe: %s", out)
		}
		t.Logf("deprovision: boot to hello %v, hello to result %v", hello.At.Sub(start).Round(100*time.Millisecond), res.At.Sub(hello.At).Round(100*time.Millisecond))
	})
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// logDir is $RACKBOOT_LAB_LOGS/TEST (kept after the test) or a temporary directory.
func logDir(t *testing.T) string {
	base := os.Getenv("RACKBOOT_LAB_LOGS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// buildRackboot builds the static rackboot binary of this tree.
func buildRackboot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(t.TempDir(), "rackboot")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=e2e", "-o", bin, "./cmd/rackboot")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/rackboot: %v\n%s", err, out)
	}
	return bin
}

// buildImage makes a GPT disk image of size bytes whose partition 1 (1 MiB to 1 MiB
// before the end) is ext4 with files.
func buildImage(t *testing.T, size int64, files map[string][]byte) []byte {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "root")
	for p, c := range files {
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, c, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	part := agent.Partition{Number: 1, Start: 1 << 20, Size: size - 2<<20, Type: agent.GPTTypeLinux, Name: "root"}
	if err := agent.WriteGPT(f, size, 512, []agent.Partition{part}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "root", "-E", "offset="+strconv.FormatInt(part.Start, 10),
		"-d", src, img, strconv.FormatInt(part.Size/1024, 10)+"k").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func debugfsCat(t *testing.T, image string, offset int64, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, image+"?offset="+strconv.FormatInt(offset, 10)).Output()
	if err != nil {
		t.Errorf("debugfs cat %s: %v", path, err)
	}
	return string(out)
}

// signatures is what wipefs finds on the disk and blkid at partition 1's offset.
func signatures(t *testing.T, image string) string {
	t.Helper()
	out, err := exec.Command("wipefs", "--noheadings", "--output", "TYPE,OFFSET", image).CombinedOutput()
	if err != nil {
		t.Fatalf("wipefs: %v: %s", err, out)
	}
	s := strings.TrimSpace(string(out))
	b, _ := exec.Command("blkid", "-p", "-O", "1048576", "-o", "value", "-s", "TYPE", image).Output()
	if v := strings.TrimSpace(string(b)); v != "" {
		s += "\n" + v + " at 1 MiB"
	}
	return strings.TrimSpace(s)
}

const flatcarButane = "variant: flatcar\nversion: 1.1.0\npasswd:\n  users:\n    - name: core\n      ssh_authorized_keys: [\"ssh-ed25519 AAAA e2e\"]\n"

// flatcarOEM is where buildFlatcarImage puts the OEM partition (partition 6), in bytes.
var flatcarOEM = struct{ start, size int64 }{10 << 20, 32 << 20}

// buildFlatcarImage makes a 52 MiB disk image laid out like Flatcar's (partition
// numbers, GPT names and filesystem labels), with sfdisk and the mkfs tools: 1
// EFI-SYSTEM (vfat), 6 OEM (btrfs holding oemFiles; mixed block groups keep it at 32
// MiB, a plain btrfs needs 114), 9 ROOT (ext4). No loop device, no mount.
func buildFlatcarImage(t *testing.T, oemFiles map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "flatcar.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 52<<20); err != nil {
		t.Fatal(err)
	}
	const linux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	script := fmt.Sprintf(`label: gpt
unit: sectors
p1 : start=2048, size=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI-SYSTEM"
p6 : start=%d, size=%d, type=%s, name="OEM"
p9 : start=%d, size=16384, type=%s, name="ROOT"
`, flatcarOEM.start/512, flatcarOEM.size/512, linux, (flatcarOEM.start+flatcarOEM.size)/512, linux)
	cmd := exec.Command("sfdisk", "-q", img)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	src := filepath.Join(dir, "oem")
	for name, content := range oemFiles {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	esp, oem := filepath.Join(dir, "esp.vfat"), filepath.Join(dir, "oem.btrfs")
	if err := os.WriteFile(oem, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(oem, flatcarOEM.size); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"mkfs.vfat", "-C", "-n", "EFI-SYSTEM", esp, "8192"},
		{"mkfs.btrfs", "-q", "-f", "--mixed", "-L", "OEM", "--rootdir", src, oem},
		{"mkfs.ext4", "-q", "-F", "-L", "ROOT", "-E", "offset=" + strconv.FormatInt(flatcarOEM.start+flatcarOEM.size, 10), img, "8192k"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []struct {
		file string
		at   int64
		max  int64
	}{{esp, 1 << 20, 8 << 20}, {oem, flatcarOEM.start, flatcarOEM.size}} {
		fs, err := os.ReadFile(part.file)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(fs)) > part.max {
			t.Fatalf("%s is %d bytes, more than its partition", part.file, len(fs))
		}
		copy(b[part.at:], fs)
	}
	if int64(len(b)) != 52<<20 {
		t.Fatalf("image is %d bytes", len(b))
	}
	return b
}
