package lab

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/google/go-cmp/cmp"
)

// TestBuildPhoneHomeInitramfs checks the archive layout the kernel unpacks: /init
// executable, a static busybox with /bin/sh, every NIC module and their load order.
func TestBuildPhoneHomeInitramfs(t *testing.T) {
	dir := t.TempDir()
	busybox := filepath.Join(dir, "busybox")
	if err := os.WriteFile(busybox, []byte("BUSYBOX"), 0o755); err != nil {
		t.Fatal(err)
	}
	mods := filepath.Join(dir, "modules")
	if err := os.Mkdir(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, m := range netModules() {
		name := filepath.Base(m)
		order = append(order, name)
		if err := os.WriteFile(filepath.Join(mods, name), []byte("module "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := BuildPhoneHomeInitramfs(&buf, busybox, mods); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(zr)
	type entry struct {
		Mode cpio.FileMode
		Body string
	}
	got := map[string]entry{}
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if h.Mode&cpio.ModeType == cpio.TypeSymlink {
			b = []byte(h.Linkname)
		}
		got[h.Name] = entry{Mode: h.Mode, Body: string(b)}
	}
	want := map[string]entry{
		"init":              {cpio.TypeReg | 0o755, phoneHomeInit},
		"etc/udhcpc.script": {cpio.TypeReg | 0o755, udhcpcScript},
		"bin/busybox":       {cpio.TypeReg | 0o755, "BUSYBOX"},
		"bin/sh":            {cpio.TypeSymlink | 0o777, "busybox"},
		"lib/modules/order": {cpio.TypeReg | 0o644, strings.Join(order, "\n") + "\n"},
	}
	for _, name := range order {
		want["lib/modules/"+name] = entry{cpio.TypeReg | 0o644, "module " + name}
	}
	for _, d := range []string{"bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp"} {
		want[d] = entry{cpio.TypeDir | 0o755, ""}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("initramfs entries (-want +got):\n%s", diff)
	}
}

// TestQEMUPhoneHomeFixtureDirectBoot boots the cached kernel and phone-home initramfs
// straight from QEMU (-kernel/-initrd) in a namespace where dnsmasq is the DHCP server
// and a Go handler stands in for rackboot's /healthz. It proves the fixture on
// its own, so a failing rackboot boot test points at rackboot, not at the fixture.
func TestQEMUPhoneHomeFixtureDirectBoot(t *testing.T) {
	Require(t, "qemu-system-x86_64", "dnsmasq")
	t.Parallel()
	k, initrd := bootFixtures(t)
	dir := logDir(t)
	seg := newSegment(t, "fixture", "10.77.0.1/24")
	startDnsmasq(t, seg.NS, dir, seg.Bridge, "--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h")
	var rec phoneHomeRecorder
	serveInNetns(t, seg.NS, "10.77.0.1:8080", &rec)

	for _, nic := range []string{"virtio-net-pci", "e1000"} {
		t.Run(nic, func(t *testing.T) {
			t.Parallel()
			tap, err := seg.AddTap()
			if err != nil {
				t.Fatal(err)
			}
			mac := map[string]string{"virtio-net-pci": "52:54:00:77:00:01", "e1000": "52:54:00:77:00:02"}[nic]
			vm := VM{
				Name: "fixture-" + nic, MAC: mac, Tap: tap, Firmware: SeaBIOS, NIC: nic,
				SerialLog: filepath.Join(dir, "fixture-"+nic+".serial"),
				Kernel:    k.Vmlinuz, Initrd: initrd,
				Append: "console=ttyS0 quiet rackboot.url=http://10.77.0.1:8080",
			}
			start := time.Now()
			qemu, err := seg.NS.StartVM(t, vm)
			if err != nil {
				t.Fatal(err)
			}
			ip := waitPhoneHome(t, vm, qemu, 90*time.Second)
			t.Logf("%s: phoned home from %s after %v", nic, ip, time.Since(start).Round(100*time.Millisecond))
			var found bool
			for _, c := range rec.Calls() {
				if c.MAC == mac {
					found = true
					if c.Source != ip {
						t.Errorf("phone-home for %s came from %s, the guest reported %s", mac, c.Source, ip)
					}
				}
			}
			if !found {
				t.Errorf("no phone-home request for %s reached the server; got %+v", mac, rec.Calls())
			}
			WaitFor(t, 30*time.Second, "QEMU to exit after the guest powered off", func(ctx context.Context) (bool, error) {
				exited, _ := qemu.Exited()
				return exited, nil
			})
		})
	}
}
