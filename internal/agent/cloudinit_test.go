package agent

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestDropInGolden(t *testing.T) {
	golden(t, "99-rackboot.cfg", DropIn("http://10.77.0.1:8080/nocloud/Zm9vYmFy/", nil))
	golden(t, "99-rackboot-network.cfg", DropIn("http://10.77.0.1:8080/nocloud/Zm9vYmFy/",
		[]byte("version: 2\nethernets:\n  boot0:\n    match:\n      macaddress: \"52:54:00:00:00:01\"\n    set-name: boot0\n    addresses:\n      - \"10.0.0.5/24\"\n\n")))
}

func openRoot(t *testing.T, dir string) *os.Root {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestWriteDropIn(t *testing.T) {
	const seed = "http://10.77.0.1:8080/nocloud/tok/"
	t.Run("creates cloud.cfg.d", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "etc/cloud"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeDropIn(openRoot(t, dir), seed, nil); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, DropInPath))
		if err != nil || string(got) != string(DropIn(seed, nil)) {
			t.Errorf("drop-in = %q, %v", got, err)
		}
		if st, _ := os.Stat(filepath.Join(dir, DropInPath)); st.Mode().Perm() != 0o644 {
			t.Errorf("drop-in mode %v, want 0644", st.Mode().Perm())
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "etc/cloud/cloud.cfg.d/*tmp*")); len(left) != 0 {
			t.Errorf("temporary files left: %v", left)
		}
	})
	t.Run("replaces an old drop-in", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "etc/cloud/cloud.cfg.d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, DropInPath), []byte("old: stuff and more of it\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := writeDropIn(openRoot(t, dir), seed, nil); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, DropInPath)); string(got) != string(DropIn(seed, nil)) {
			t.Errorf("drop-in = %q", got)
		}
	})
	t.Run("no cloud-init", func(t *testing.T) {
		dir := t.TempDir()
		err := writeDropIn(openRoot(t, dir), seed, nil)
		if !errors.Is(err, errNoCloudInit) {
			t.Errorf("writeDropIn without etc/cloud = %v, want errNoCloudInit", err)
		}
	})
	t.Run("symlink out of the filesystem", func(t *testing.T) {
		// An image whose cloud.cfg.d points at an absolute path must not make the agent
		// write into its own initramfs.
		dir := t.TempDir()
		outside := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "etc/cloud"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(dir, "etc/cloud/cloud.cfg.d")); err != nil {
			t.Fatal(err)
		}
		if err := writeDropIn(openRoot(t, dir), seed, nil); err == nil {
			t.Error("writeDropIn followed a symlink out of the root")
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Errorf("files written outside the root: %v", ents)
		}
	})
}

func TestExt4Partitions(t *testing.T) {
	img := buildTestImage(t, 16<<20, map[string]string{"etc/cloud/cloud.cfg": "datasource_list: [None]\n"})
	d, _ := newDiskFile(t, 20<<20, 0)
	if _, err := d.WriteAt(img.data, 0); err != nil {
		t.Fatal(err)
	}
	parts := ext4Partitions(d, t.TempDir())
	if len(parts) != 1 || parts[0].Number != 1 || parts[0].Start != img.partStart || parts[0].Size != img.partSize {
		t.Fatalf("ext4Partitions = %+v, want partition 1 at %d", parts, img.partStart)
	}
	// The file-writing part against a real ext4: debugfs reads what mkfs.ext4 -d put
	// there, and the same tool reads the agent's drop-in back in the QEMU test.
	p := writeTemp(t, img.data)
	got, err := debugfsCat(t, p, img.partStart, "/etc/cloud/cloud.cfg")
	if err != nil || !strings.Contains(got, "datasource_list") {
		t.Errorf("debugfs cat = %q, %v", got, err)
	}
	// Without ext4 there is nothing to find, and the drop-in fails with a reason.
	blank, _ := newDiskFile(t, 4<<20, 0)
	if parts := ext4Partitions(blank, t.TempDir()); len(parts) != 0 {
		t.Errorf("ext4Partitions of a blank disk = %+v", parts)
	}
	r := &runner{cfg: Config{RunDir: t.TempDir()}, log: quietLog()}
	if _, err := r.cloudInitDropIn(t.Context(), blank, "http://x/"); err == nil || !strings.Contains(err.Error(), "no ext4 partition") {
		t.Errorf("cloudInitDropIn on a blank disk = %v", err)
	}
}

func TestPartitionName(t *testing.T) {
	for _, tc := range []struct {
		disk string
		n    int
		want string
	}{{"sda", 1, "sda1"}, {"vda", 2, "vda2"}, {"nvme0n1", 1, "nvme0n1p1"}, {"mmcblk0", 3, "mmcblk0p3"}} {
		if got := partitionName(tc.disk, tc.n); got != tc.want {
			t.Errorf("partitionName(%s, %d) = %s, want %s", tc.disk, tc.n, got, tc.want)
		}
	}
}
