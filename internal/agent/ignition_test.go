package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/agentapi"
)

// imagePart is a partition of a test image and the filesystem made in it.
type imagePart struct {
	Partition
	// FS is "ext4", "btrfs", "vfat" or "" (left blank).
	FS, Label string
	Files     map[string]string
}

// buildPartitionedImage makes a GPT disk image of size bytes with parts, each
// filesystem made by its own mkfs (ext4 in place with -E offset; btrfs and vfat, which
// have no offset option, in a file of their own copied in): real superblocks, no loop
// device, no mount.
func buildPartitionedImage(t testing.TB, size int64, parts []imagePart) []byte {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	var table []Partition
	for _, p := range parts {
		table = append(table, p.Partition)
	}
	if err := WriteGPT(f, size, 512, table); err != nil {
		t.Fatal(err)
	}
	for i, p := range parts {
		src := filepath.Join(dir, fmt.Sprintf("root%d", i))
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range p.Files {
			full := filepath.Join(src, name)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		kib := strconv.FormatInt(p.Size/1024, 10)
		var cmd *exec.Cmd
		own := filepath.Join(dir, fmt.Sprintf("fs%d", i))
		switch p.FS {
		case "":
			continue
		case "ext4":
			requireTool(t, "mkfs.ext4")
			cmd = exec.Command("mkfs.ext4", "-q", "-F", "-L", p.Label, "-E", "offset="+strconv.FormatInt(p.Start, 10), "-d", src, img, kib+"k")
		case "btrfs":
			requireTool(t, "mkfs.btrfs")
			if err := os.WriteFile(own, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(own, p.Size); err != nil {
				t.Fatal(err)
			}
			// Mixed block groups keep a small filesystem small (a plain one takes at
			// least 114 MiB); the kernel mounts both alike.
			cmd = exec.Command("mkfs.btrfs", "-q", "-f", "--mixed", "-L", p.Label, "--rootdir", src, own)
		case "vfat":
			requireTool(t, "mkfs.vfat")
			cmd = exec.Command("mkfs.vfat", "-C", "-n", p.Label, own, kib)
		default:
			t.Fatalf("filesystem %q", p.FS)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", cmd, err, out)
		}
		if p.FS == "ext4" {
			continue
		}
		b, err := os.ReadFile(own)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) > p.Size {
			t.Fatalf("%s made %d bytes for a partition of %d", p.FS, len(b), p.Size)
		}
		if _, err := f.WriteAt(b, p.Start); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mib(n int64) int64 { return n << 20 }

func TestProbeFS(t *testing.T) {
	parts := []imagePart{
		{Partition: Partition{Number: 1, Start: mib(1), Size: mib(4), Type: GPTTypeESP, Name: "EFI-SYSTEM"}, FS: "vfat", Label: "EFI-SYSTEM"},
		{Partition: Partition{Number: 3, Start: mib(5), Size: mib(4), Type: GPTTypeLinux, Name: "boot"}, FS: "ext4", Label: "boot"},
		{Partition: Partition{Number: 6, Start: mib(9), Size: mib(20), Type: GPTTypeLinux, Name: "OEM"}, FS: "btrfs", Label: "OEM"},
		{Partition: Partition{Number: 7, Start: mib(29), Size: mib(2), Type: GPTTypeLinux, Name: "OEM-CONFIG"}},
		{Partition: Partition{Number: 9, Start: mib(31), Size: mib(4), Type: GPTTypeLinux, Name: "ROOT"}, FS: "ext4"},
	}
	img := buildPartitionedImage(t, mib(36), parts)
	d, _ := newDiskFile(t, mib(36), 0)
	if _, err := d.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	got := map[int]fsInfo{}
	for _, p := range d.partitions(t.TempDir()) {
		got[p.Number] = probeFS(d, p)
	}
	want := map[int]fsInfo{
		1: {Type: "vfat", Label: "EFI-SYSTEM"},
		3: {Type: "ext4", Label: "boot"},
		6: {Type: "btrfs", Label: "OEM"},
		7: {},
		9: {Type: "ext4"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("probeFS by partition (-want +got):\n%s", diff)
	}
	// A partition too small for the superblock it would need is nothing, not a panic.
	if fi := probeFS(d, Partition{Start: mib(9), Size: 4096}); fi != (fsInfo{}) {
		t.Errorf("probeFS of a 4 KiB slice = %+v", fi)
	}
}

func TestFindIgnitionTarget(t *testing.T) {
	part := func(n int, name, fstype, label string) probedPartition {
		return probedPartition{Partition: Partition{Number: n, Type: GPTTypeLinux, Name: name}, FS: fsInfo{Type: fstype, Label: label}}
	}
	esp := part(1, "EFI-SYSTEM", "vfat", "EFI-SYSTEM")
	flatcarRoot := part(9, "ROOT", "ext4", "ROOT")
	for _, tc := range []struct {
		name      string
		parts     []probedPartition
		wantPart  int
		wantPath  string
		wantError []string
	}{
		{"Flatcar, btrfs OEM", []probedPartition{esp, part(6, "OEM", "btrfs", "OEM"), flatcarRoot}, 6, "config.ign", nil},
		{"Flatcar before btrfs, ext4 OEM", []probedPartition{esp, part(6, "OEM", "ext4", "OEM"), flatcarRoot}, 6, "config.ign", nil},
		{"Fedora CoreOS", []probedPartition{part(2, "EFI-SYSTEM", "vfat", "EFI-SYSTEM"), part(3, "boot", "ext4", "boot"), part(4, "root", "xfs", "root")}, 3, "ignition/config.ign", nil},
		{"filesystem label only", []probedPartition{part(3, "", "ext4", "boot")}, 3, "ignition/config.ign", nil},
		{"GPT name only", []probedPartition{part(6, "OEM", "btrfs", "")}, 6, "config.ign", nil},
		// A partition the kernel reports but the GPT reader did not parse (named after
		// its device) is found by its filesystem label.
		{"kernel-only partition", []probedPartition{{Partition: Partition{Number: 6, Name: "vda6"}, FS: fsInfo{Type: "btrfs", Label: "OEM"}}}, 6, "config.ign", nil},
		{"a Debian cloud image", []probedPartition{part(1, "", "ext4", ""), part(15, "", "vfat", "")}, 0, "",
			[]string{"no partition of vda", "labelled OEM (Flatcar, btrfs or ext4, gets config.ign)", "labelled boot (Fedora CoreOS, ext4, gets ignition/config.ign)", "vda1 (ext4, no label)", "vda15 (vfat, no label)", "cloud-init mode none"}},
		{"no partitions", nil, 0, "", []string{"no partition table the agent can read"}},
		{"both", []probedPartition{part(3, "boot", "ext4", "boot"), part(6, "OEM", "btrfs", "OEM")}, 0, "",
			[]string{"more than one partition", "vda6 (Flatcar's OEM)", "vda3 (Fedora CoreOS's boot)"}},
		{"two OEMs", []probedPartition{part(6, "OEM", "btrfs", "OEM"), part(7, "OEM", "btrfs", "OEM")}, 0, "", []string{"more than one partition", "vda6", "vda7"}},
		{"boot on xfs", []probedPartition{part(3, "boot", "xfs", "boot")}, 0, "", []string{"vda3 is labelled boot", "holds a xfs filesystem", "ext4"}},
		{"OEM unformatted", []probedPartition{part(6, "OEM", "", "")}, 0, "", []string{"vda6 is labelled OEM", "no filesystem the agent recognises", "btrfs or ext4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, target, err := findIgnitionTarget("vda", tc.parts)
			if tc.wantError != nil {
				if err == nil {
					t.Fatalf("found %+v (%+v), want an error", p, target)
				}
				for _, s := range tc.wantError {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q\nlacks %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Number != tc.wantPart || target.Path != tc.wantPath {
				t.Errorf("found partition %d, path %s; want %d, %s", p.Number, target.Path, tc.wantPart, tc.wantPath)
			}
		})
	}
}

func TestWriteIgnitionConfig(t *testing.T) {
	config := []byte("{\"ignition\":{\"version\":\"3.4.0\"}}\n")
	t.Run("Flatcar OEM root", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "grub.cfg"), []byte("set linux_append=\"\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := writeIgnitionConfig(openRoot(t, dir), "config.ign", config); err != nil {
			t.Fatal(err)
		}
		checkFile(t, filepath.Join(dir, "config.ign"), config, 0o600)
		checkFile(t, filepath.Join(dir, "grub.cfg"), []byte("set linux_append=\"\"\n"), 0o644)
		if left, _ := filepath.Glob(filepath.Join(dir, "*tmp*")); len(left) != 0 {
			t.Errorf("temporary files left: %v", left)
		}
	})
	t.Run("Fedora CoreOS boot creates ignition/ 0700", func(t *testing.T) {
		dir := t.TempDir()
		if err := writeIgnitionConfig(openRoot(t, dir), "ignition/config.ign", config); err != nil {
			t.Fatal(err)
		}
		checkFile(t, filepath.Join(dir, "ignition/config.ign"), config, 0o600)
		if st, err := os.Stat(filepath.Join(dir, "ignition")); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("ignition/ = %v, %v; want a directory of mode 0700", st, err)
		}
	})
	t.Run("replaces an old config and a stale temporary file", func(t *testing.T) {
		dir := t.TempDir()
		for name, mode := range map[string]os.FileMode{"config.ign": 0o644, "config.ign.rackboot-tmp": 0o666} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("{\"old\": true, \"and\": \"longer than the new one\"}"), mode); err != nil {
				t.Fatal(err)
			}
		}
		if err := writeIgnitionConfig(openRoot(t, dir), "config.ign", config); err != nil {
			t.Fatal(err)
		}
		checkFile(t, filepath.Join(dir, "config.ign"), config, 0o600)
	})
	t.Run("symlink out of the filesystem", func(t *testing.T) {
		dir, outside := t.TempDir(), t.TempDir()
		if err := os.Symlink(outside, filepath.Join(dir, "ignition")); err != nil {
			t.Fatal(err)
		}
		if err := writeIgnitionConfig(openRoot(t, dir), "ignition/config.ign", config); err == nil {
			t.Error("writeIgnitionConfig followed a symlink out of the root")
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Errorf("files written outside the root: %v", ents)
		}
	})
	t.Run("ignition is a file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "ignition"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		err := writeIgnitionConfig(openRoot(t, dir), "ignition/config.ign", config)
		if err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("writeIgnitionConfig = %v, want not a directory", err)
		}
	})
}

func checkFile(t *testing.T, p string, want []byte, mode os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil || string(got) != string(want) {
		t.Errorf("%s = %q, %v; want %q", p, got, err, want)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, %v; want %v", p, st.Mode().Perm(), err, mode)
	}
}

// fakeMount is Config.MountPartition for disks that are files: it hands the agent a
// directory standing in for the partition and records what it was asked to mount.
type fakeMount struct {
	fsRoot  string
	mounted []string
}

func (m *fakeMount) mount(diskName string, p Partition, fstype, target string) (func() error, error) {
	m.mounted = append(m.mounted, fmt.Sprintf("%s/%d %s", diskName, p.Number, fstype))
	if err := os.Remove(target); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return nil, err
	}
	if err := os.Symlink(m.fsRoot, target); err != nil {
		return nil, err
	}
	return func() error { return os.Remove(target) }, nil
}

// fcosLikeImage is a small disk image laid out like Fedora CoreOS's metal image:
// EFI-SYSTEM (vfat), boot (ext4, label boot), root.
func fcosLikeImage(t *testing.T) []byte {
	return buildPartitionedImage(t, mib(12), []imagePart{
		{Partition: Partition{Number: 2, Start: mib(1), Size: mib(2), Type: GPTTypeESP, Name: "EFI-SYSTEM"}, FS: "vfat", Label: "EFI-SYSTEM"},
		{Partition: Partition{Number: 3, Start: mib(3), Size: mib(4), Type: GPTTypeLinux, Name: "boot"}, FS: "ext4", Label: "boot",
			Files: map[string]string{"ignition.firstboot": ""}},
		{Partition: Partition{Number: 4, Start: mib(7), Size: mib(4), Type: GPTTypeLinux, Name: "root"}},
	})
}

func TestRunProvisionIgnition(t *testing.T) {
	config := []byte("{\n  \"ignition\": {\"version\": \"3.4.0\"},\n  \"passwd\": {\"users\": [{\"name\": \"core\"}]}\n}\n")
	img := fcosLikeImage(t)
	s, srv := startFake(t)
	s.images["/images/fcos.raw"] = img
	s.plans = []agentapi.Plan{{Action: agentapi.ActionProvision, Provision: &agentapi.Provision{
		ImageURL: srv.URL + "/images/fcos.raw", SHA256: sum(img), Size: int64(len(img)),
		CloudInit: agentapi.CloudInit{Mode: agentapi.CloudInitIgnition}, Ignition: &agentapi.Ignition{Config: config},
	}}}
	h := newTestHost(t, srv.URL, mib(16))
	cfg := h.config()
	m := &fakeMount{fsRoot: t.TempDir()}
	cfg.MountPartition = m.mount
	if err := Run(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	// Partition 3 by its label, mounted as the ext4 its superblock says.
	if diff := cmp.Diff([]string{"vda/3 ext4"}, m.mounted); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	checkFile(t, filepath.Join(m.fsRoot, "ignition/config.ign"), config, 0o600)
	want := []agentapi.Result{{
		Action: agentapi.ActionProvision, OK: true, Phase: agentapi.PhaseDone, RootDisk: "vda", ImageSHA256: sum(img),
		ImageBytes: int64(len(img)), BytesWritten: int64(len(img)), RootPartition: "vda3", Next: "reboot",
	}}
	if diff := cmp.Diff(want, s.results, cmpResult()); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	var msgs []string
	for _, p := range s.progress {
		if p.Phase == agentapi.PhaseCloudInit {
			msgs = append(msgs, p.Message)
		}
	}
	if diff := cmp.Diff([]string{"writing the Ignition config"}, msgs); diff != "" {
		t.Errorf("cloud-init phase progress (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]PowerAction{Reboot}, h.power); diff != "" {
		t.Errorf("power (-want +got):\n%s", diff)
	}
}

// TestRunProvisionIgnitionNoTarget: an image that is neither Flatcar nor Fedora CoreOS
// fails the plan in the cloud-init phase with a reason naming what was looked for,
// mounts nothing and powers off.
func TestRunProvisionIgnitionNoTarget(t *testing.T) {
	img := buildTestImage(t, mib(8), map[string]string{"etc/cloud/cloud.cfg": "x: 1\n"})
	s, srv := startFake(t)
	s.images["/images/debian.raw"] = img.data
	s.plans = []agentapi.Plan{{Action: agentapi.ActionProvision, Provision: &agentapi.Provision{
		ImageURL: srv.URL + "/images/debian.raw", SHA256: sum(img.data),
		CloudInit: agentapi.CloudInit{Mode: agentapi.CloudInitIgnition},
		Ignition:  &agentapi.Ignition{Config: []byte(`{"ignition":{"version":"3.4.0"}}`)},
	}}}
	h := newTestHost(t, srv.URL, mib(8))
	cfg := h.config()
	m := &fakeMount{fsRoot: t.TempDir()}
	cfg.MountPartition = m.mount
	if err := Run(t.Context(), cfg); err == nil {
		t.Fatal("Run succeeded without a place for the config")
	}
	if len(s.results) != 1 {
		t.Fatalf("results = %+v", s.results)
	}
	r := s.results[0]
	for _, want := range []string{"labelled OEM", "labelled boot", `vda1 named "root" (ext4 labelled "root")`} {
		if !strings.Contains(r.Error, want) {
			t.Errorf("error %q lacks %q", r.Error, want)
		}
	}
	if r.OK || r.Phase != agentapi.PhaseCloudInit || r.Next != "poweroff" || len(m.mounted) != 0 {
		t.Errorf("result %+v, mounts %v", r, m.mounted)
	}
	if diff := cmp.Diff([]PowerAction{PowerOff}, h.power); diff != "" {
		t.Errorf("power (-want +got):\n%s", diff)
	}
}

// TestRunRefusesUnknownPlan: a plan this agent cannot run (a server newer than its
// boot environment) is reported as a failed result, not dropped, and touches no disk.
func TestRunRefusesUnknownPlan(t *testing.T) {
	s, srv := startFake(t, agentapi.Plan{Action: agentapi.ActionProvision, Provision: &agentapi.Provision{
		ImageURL: "http://192.0.2.1/x.raw", SHA256: strings.Repeat("ab", 32), CloudInit: agentapi.CloudInit{Mode: "teleport"},
	}})
	h := newTestHost(t, srv.URL, mib(1))
	if err := Run(t.Context(), h.config()); err == nil {
		t.Fatal("Run accepted an unknown cloud-init mode")
	}
	if len(s.results) != 1 {
		t.Fatalf("results = %+v, want the refusal reported", s.results)
	}
	r := s.results[0]
	if r.OK || r.Action != agentapi.ActionProvision || r.Next != "poweroff" ||
		!strings.Contains(r.Error, "refuses this plan") || !strings.Contains(r.Error, `"teleport"`) {
		t.Errorf("result = %+v", r)
	}
	if disk, _ := os.ReadFile(h.disk); !allZero(disk) {
		t.Error("the disk was written")
	}
	if diff := cmp.Diff([]PowerAction{PowerOff}, h.power); diff != "" {
		t.Errorf("power (-want +got):\n%s", diff)
	}
}
