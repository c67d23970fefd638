package bootenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
)

// elfWithModinfo returns a minimal ELF64 relocatable file whose .modinfo section holds
// the key=value pairs, as a kernel module's does. With no program headers it also passes
// for a static binary.
func elfWithModinfo(kv ...string) []byte {
	var modinfo []byte
	for _, s := range kv {
		modinfo = append(modinfo, s...)
		modinfo = append(modinfo, 0)
	}
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	modOff := ehsize
	strOff := modOff + len(modinfo)
	shOff := (strOff + len(shstr) + 7) &^ 7
	b := make([]byte, shOff+3*shentsize)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // 64-bit, little endian, version 1
	le := binary.LittleEndian
	le.PutUint16(b[16:], 1)  // ET_REL
	le.PutUint16(b[18:], 62) // x86-64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[40:], uint64(shOff))
	le.PutUint16(b[52:], ehsize)
	le.PutUint16(b[58:], shentsize)
	le.PutUint16(b[60:], 3) // sections
	le.PutUint16(b[62:], 2) // .shstrtab index
	copy(b[modOff:], modinfo)
	copy(b[strOff:], shstr)
	sh := func(i int, name, typ uint32, off, size int) {
		s := b[shOff+i*shentsize:]
		le.PutUint32(s[0:], name)
		le.PutUint32(s[4:], typ)
		le.PutUint64(s[24:], uint64(off))
		le.PutUint64(s[32:], uint64(size))
		le.PutUint64(s[48:], 1)
	}
	sh(1, 1, 1, modOff, len(modinfo)) // .modinfo, PROGBITS
	sh(2, 10, 3, strOff, len(shstr))  // .shstrtab, STRTAB
	return b
}

// testKernel is the content of a fake linux-image package.
func testKernel(t testing.TB) map[string][]byte {
	t.Helper()
	xzed := func(b []byte) []byte {
		var buf bytes.Buffer
		w, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	const v = "6.1.0-99-amd64"
	m := "./lib/modules/" + v + "/kernel/"
	return map[string][]byte{
		"./boot/vmlinuz-" + v:                                     []byte("fake kernel image"),
		"./boot/config-" + v:                                      []byte("CONFIG_X=y\n"),
		m + "drivers/net/virtio_net.ko":                           elfWithModinfo("alias=virtio:d00000001v*", "depends=net_failover,virtio,virtio_ring", "name=virtio_net"),
		m + "drivers/net/net_failover.ko":                         elfWithModinfo("depends=failover", "name=net_failover"),
		"./usr/lib/modules/" + v + "/kernel/net/core/failover.ko": elfWithModinfo("depends=", "name=failover"),
		m + "drivers/virtio/virtio.ko":                            elfWithModinfo("depends=virtio_ring", "name=virtio"),
		m + "drivers/virtio/virtio_ring.ko":                       elfWithModinfo("depends=", "name=virtio_ring"),
		m + "drivers/virtio/virtio_pci.ko":                        elfWithModinfo("alias=pci:v00001AF4d*sv*sd*bc*sc*i*", "depends=virtio,virtio_ring", "name=virtio_pci"),
		m + "drivers/net/ethernet/intel/e1000/e1000.ko.xz":        xzed(elfWithModinfo("alias=pci:v00008086d0000100Esv*sd*bc*sc*i*", "depends=", "name=e1000")),
		m + "fs/ext4/ext4.ko":                                     elfWithModinfo("alias=fs-ext4", "softdep=pre: crypto-crc32c", "depends=jbd2,crc16", "name=ext4"),
		m + "fs/jbd2/jbd2.ko":                                     elfWithModinfo("softdep=pre: crypto-crc32c", "depends=", "name=jbd2"),
		m + "lib/crc16.ko":                                        elfWithModinfo("depends=", "name=crc16"),
		m + "crypto/crc32c_generic.ko":                            elfWithModinfo("alias=crypto-crc32c", "alias=crc32c", "depends=", "name=crc32c_generic"),
		m + "arch/x86/crypto/crc32c-intel.ko":                     elfWithModinfo("alias=crypto-crc32c", "alias=cpu:type:x86,ven*fam*mod*:feature:*0094*", "depends=", "name=crc32c_intel"),
		m + "drivers/gpu/drm/huge_gpu.ko":                         elfWithModinfo("alias=pci:v000010DEd*sv*sd*bc03sc*i*", "depends=", "name=huge_gpu"),
		m + "sound/snd.ko":                                        elfWithModinfo("depends=", "name=snd"),
		"./lib/modules/" + v + "/modules.order":                   []byte("kernel/lib/crc16.ko\n"),
		"./usr/share/doc/linux-image/changelog":                   []byte("changes\n"),
	}
}

// writeDeb writes a .deb (ar: debian-binary, control.tar.xz, data.tar.EXT) holding files.
func writeDeb(t testing.TB, path, ext string, files map[string][]byte) {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		tw.Write(files[n])
	}
	tw.WriteHeader(&tar.Header{Name: "./lib/modules/link.ko", Linkname: "x", Typeflag: tar.TypeSymlink})
	tw.Close()
	var data bytes.Buffer
	switch ext {
	case ".xz":
		w, _ := xz.NewWriter(&data)
		w.Write(tarBuf.Bytes())
		w.Close()
	case ".zst":
		w, _ := zstd.NewWriter(&data)
		w.Write(tarBuf.Bytes())
		w.Close()
	case ".gz":
		w := gzip.NewWriter(&data)
		w.Write(tarBuf.Bytes())
		w.Close()
	case "":
		data = tarBuf
	}
	var ar bytes.Buffer
	ar.WriteString(arMagic)
	member := func(name string, b []byte) {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(b))
		ar.Write(b)
		if len(b)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	member("debian-binary", []byte("2.0\n"))
	member("control.tar.xz", []byte("odd")) // odd length: exercises the padding
	member("data.tar"+ext, data.Bytes())
	if err := os.WriteFile(path, ar.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readInitramfs returns the initramfs's entries (name → content; directories and
// devices as "<dir>" and "<dev>").
func readInitramfs(t testing.TB, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	dev := newcDeviceArchive()
	if !bytes.HasPrefix(all, dev) {
		t.Fatal("the initramfs does not start with the /dev/console archive")
	}
	// The device archive is checked by cpio(1) in TestDeviceArchive; here, the rest.
	r := cpio.NewReader(bytes.NewReader(all[len(dev):]))
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case h.Mode.IsDir():
			out[h.Name] = "<dir>"
		default:
			b, _ := io.ReadAll(r)
			out[h.Name] = string(b)
		}
	}
	return out
}

func TestBuild(t *testing.T) {
	for _, ext := range []string{".xz", ".zst", ".gz", ""} {
		t.Run("data.tar"+ext, func(t *testing.T) {
			dir := t.TempDir()
			deb := filepath.Join(dir, "linux-image-6.1.0-99-amd64_6.1.999-1_amd64.deb")
			writeDeb(t, deb, ext, testKernel(t))
			agent := filepath.Join(dir, "rackboot")
			agentBin := elfWithModinfo("not=a-module")
			if err := os.WriteFile(agent, agentBin, 0o755); err != nil {
				t.Fatal(err)
			}
			data := filepath.Join(dir, "data")
			cfg := Config{DataDir: data, KernelDeb: deb, Agent: agent,
				Modules: []string{"kernel/drivers/net/ethernet/**", "kernel/drivers/net/virtio_net.ko", "kernel/drivers/virtio/**", "kernel/fs/ext4/**"}}
			env, err := Build(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if env.Cached || env.KernelVersion != "6.1.0-99-amd64" || env.Kernel != filepath.Join(data, "bootenv/vmlinuz") ||
				env.Initramfs != filepath.Join(data, "bootenv/initramfs.gz") || env.Modules != 12 {
				t.Errorf("env = %+v", env)
			}
			if k, _ := os.ReadFile(env.Kernel); string(k) != "fake kernel image" {
				t.Errorf("vmlinuz = %q", k)
			}
			files := readInitramfs(t, env.Initramfs)
			if files["init"] != string(agentBin) {
				t.Error("/init is not the agent binary")
			}
			md := "lib/modules/6.1.0-99-amd64/"
			var mods []string
			for n := range files {
				if strings.HasSuffix(n, ".ko") {
					mods = append(mods, strings.TrimPrefix(n, md))
				}
			}
			sort.Strings(mods)
			// Selected, plus hard deps (failover from usr/lib), plus soft deps through
			// aliases (crypto-crc32c); not the GPU or sound modules. e1000 arrives
			// decompressed.
			wantMods := []string{
				"kernel/arch/x86/crypto/crc32c-intel.ko", "kernel/crypto/crc32c_generic.ko",
				"kernel/drivers/net/ethernet/intel/e1000/e1000.ko", "kernel/drivers/net/net_failover.ko",
				"kernel/drivers/net/virtio_net.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_pci.ko",
				"kernel/drivers/virtio/virtio_ring.ko", "kernel/fs/ext4/ext4.ko", "kernel/fs/jbd2/jbd2.ko",
				"kernel/lib/crc16.ko", "kernel/net/core/failover.ko",
			}
			if diff := cmp.Diff(wantMods, mods); diff != "" {
				t.Errorf("modules (-want +got):\n%s", diff)
			}
			if !strings.HasPrefix(files[md+"kernel/drivers/net/ethernet/intel/e1000/e1000.ko"], "\x7fELF") {
				t.Error("e1000.ko.xz was not decompressed")
			}
			wantDep := `kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
kernel/net/core/failover.ko:
`
			if diff := cmp.Diff(wantDep, files[md+"modules.dep"]); diff != "" {
				t.Errorf("modules.dep (-want +got):\n%s", diff)
			}
			for _, line := range []string{"alias virtio:d00000001v* virtio_net", "alias crypto-crc32c crc32c_intel", "alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000"} {
				if !strings.Contains(files[md+"modules.alias"], line+"\n") {
					t.Errorf("modules.alias lacks %q", line)
				}
			}
			if strings.Contains(files[md+"modules.alias"], "huge_gpu") {
				t.Error("modules.alias names a module that is not packed")
			}
			if want := "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\n"; files[md+"modules.softdep"] != want {
				t.Errorf("modules.softdep = %q", files[md+"modules.softdep"])
			}
			for _, d := range []string{"proc", "sys", "run", "tmp", "etc", "lib/modules"} {
				if files[d] != "<dir>" {
					t.Errorf("no directory %s", d)
				}
			}

			// The same inputs: the cache answers, nothing is rebuilt.
			st1, _ := os.Stat(filepath.Join(data, "bootenv/cache", env.Key, "initramfs.gz"))
			again, err := Build(t.Context(), cfg)
			if err != nil || !again.Cached || again.Key != env.Key {
				t.Errorf("second Build = %+v, %v; want the cached one", again, err)
			}
			st2, _ := os.Stat(filepath.Join(data, "bootenv/cache", env.Key, "initramfs.gz"))
			if !st1.ModTime().Equal(st2.ModTime()) {
				t.Error("the cached initramfs was rewritten")
			}
			// What a running server reads back is this build.
			pub, err := Published(filepath.Join(data, "bootenv"))
			if err != nil || pub.Key != env.Key || pub.KernelVersion != env.KernelVersion || pub.Modules != env.Modules ||
				pub.InitramfsSize != env.InitramfsSize || pub.Kernel != env.Kernel || pub.Initramfs != env.Initramfs {
				t.Errorf("Published = %+v, %v; want %+v", pub, err, env)
			}
			cacheKeys := func() []string {
				t.Helper()
				ents, err := os.ReadDir(filepath.Join(data, "bootenv/cache"))
				if err != nil {
					t.Fatal(err)
				}
				var keys []string
				for _, e := range ents {
					keys = append(keys, e.Name())
				}
				return keys
			}
			// A new agent binary is a new boot environment. The one it replaces stays
			// in the cache (a host may be half-way through booting it); the one before
			// goes.
			if err := os.WriteFile(agent, append(agentBin, 0), 0o755); err != nil {
				t.Fatal(err)
			}
			third, err := Build(t.Context(), cfg)
			if err != nil || third.Cached || third.Key == env.Key {
				t.Errorf("Build after the agent changed = %+v, %v", third, err)
			}
			if pub, err := Published(filepath.Join(data, "bootenv")); err != nil || pub.Key != third.Key {
				t.Errorf("Published after the rebuild = %+v, %v; want key %s", pub, err, third.Key)
			}
			if diff := cmp.Diff(sortedStrings(env.Key, third.Key), cacheKeys()); diff != "" {
				t.Errorf("cache entries (-want +got):\n%s", diff)
			}
			if k, err := os.ReadFile(filepath.Join(KeyDir(filepath.Join(data, "bootenv"), env.Key), InitramfsFile)); err != nil || len(k) == 0 {
				t.Errorf("the replaced build's initramfs: %d bytes, %v", len(k), err)
			}
			if err := os.WriteFile(agent, append(agentBin, 0, 0), 0o755); err != nil {
				t.Fatal(err)
			}
			fourth, err := Build(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(sortedStrings(third.Key, fourth.Key), cacheKeys()); diff != "" {
				t.Errorf("cache entries after a fourth build (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "rackboot")
	os.WriteFile(agent, elfWithModinfo(), 0o755)
	deb := filepath.Join(dir, "k.deb")
	writeDeb(t, deb, ".xz", testKernel(t))
	notDeb := filepath.Join(dir, "x.deb")
	os.WriteFile(notDeb, []byte("hello"), 0o644)
	noKernel := filepath.Join(dir, "docs.deb")
	writeDeb(t, noKernel, ".xz", map[string][]byte{"./usr/share/doc/x": []byte("x")})
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no deb", Config{DataDir: dir, Agent: agent}, "required"},
		{"not a deb", Config{DataDir: dir, KernelDeb: notDeb, Agent: agent}, "ar archive"},
		{"no kernel", Config{DataDir: dir, KernelDeb: noKernel, Agent: agent}, "vmlinuz"},
		{"dynamic agent", Config{DataDir: dir, KernelDeb: deb, Agent: "/bin/sh"}, "CGO_ENABLED=0"},
		{"nothing selected", Config{DataDir: dir, KernelDeb: deb, Agent: agent, Modules: []string{"kernel/nope/**"}}, "no module"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat(tc.cfg.Agent); tc.cfg.Agent == "/bin/sh" && err != nil {
				t.Skip("no /bin/sh")
			}
			_, err := Build(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestDeviceArchive checks the hand-written newc archive with cpio(1).
func TestDeviceArchive(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(newcDeviceArchive())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "drwxr-xr-x") || !strings.HasSuffix(lines[0], " dev") ||
		!strings.HasPrefix(lines[1], "crw-------") || !strings.Contains(lines[1], "5,") || !strings.HasSuffix(lines[1], " dev/console") {
		t.Errorf("cpio -t:\n%s", out)
	}
}

// TestBootEnvScript renders the agent's iPXE script from a built Env with the ipxe
// package, as the server will.
func TestBootEnvScript(t *testing.T) {
	env := Env{Kernel: "/var/lib/rackboot/bootenv/vmlinuz", Initramfs: "/var/lib/rackboot/bootenv/initramfs.gz"}
	for _, tc := range []struct{ base, kernelLine, initrdLine string }{
		{"http://10.0.0.1:8080/bootenv", "kernel http://10.0.0.1:8080/bootenv/vmlinuz initrd=initramfs.gz ", "initrd --name initramfs.gz http://10.0.0.1:8080/bootenv/initramfs.gz"},
		{"bootenv", "kernel ${base}/assets/bootenv/vmlinuz initrd=initramfs.gz ", "initrd --name initramfs.gz ${base}/assets/bootenv/initramfs.gz"},
	} {
		be := env.BootEnv(tc.base, "rackboot.token=abcdefghijklmnopqrstuvwxyz")
		s, err := ipxe.RenderScript(ipxe.ScriptInput{
			Host: &inventory.Host{ID: "node-1", MACs: []string{"52:54:00:12:34:56"}, State: inventory.StateInspecting},
			MAC:  "52:54:00:12:34:56", ServerURL: "http://10.0.0.1:8080", BootEnv: &be,
		})
		if err != nil {
			t.Fatal(err)
		}
		body := string(s.Body)
		want := tc.kernelLine + "console=tty0 console=ttyS0,115200n8 rackboot.url=http://10.0.0.1:8080 rackboot.mac=52:54:00:12:34:56 rackboot.token=abcdefghijklmnopqrstuvwxyz || goto failed"
		if s.Action != ipxe.ActionAgent || !strings.Contains(body, want) || !strings.Contains(body, tc.initrdLine) {
			t.Errorf("script for base %q:\n%s\nwant the lines\n%s\n%s", tc.base, body, want, tc.initrdLine)
		}
	}
}

func TestMatchAny(t *testing.T) {
	pats := []string{"kernel/drivers/net/ethernet/**", "kernel/drivers/net/virtio_net.ko", "kernel/fs/*/ext?.ko"}
	for p, want := range map[string]bool{
		"kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko": true,
		"kernel/drivers/net/ethernet2/x.ko":                  false,
		"kernel/drivers/net/virtio_net.ko":                   true,
		"kernel/drivers/net/wireless/ath/ath9k.ko":           false,
		"kernel/fs/ext4/ext4.ko":                             true,
	} {
		if got := matchAny(pats, p); got != want {
			t.Errorf("matchAny(%q) = %v, want %v", p, got, want)
		}
	}
}

func sortedStrings(s ...string) []string {
	sort.Strings(s)
	return s
}

func TestPublishedErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Published(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty directory: %v, want fs.ErrNotExist", err)
	}
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ manifest, want string }{
		{"{", "damaged"},
		{`{"key": "../../etc"}`, "no valid build key"},
		{`{"key": "0123456789abcdef0123"}`, "published kernel"},
	} {
		write(ManifestFile, c.manifest)
		if _, err := Published(dir); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("manifest %s: %v, want an error about %q", c.manifest, err, c.want)
		}
	}
	write(KernelFile, "k")
	write(InitramfsFile, "initrd")
	e, err := Published(dir)
	if err != nil || e.Key != "0123456789abcdef0123" || e.InitramfsSize != 6 {
		t.Errorf("Published = %+v, %v", e, err)
	}
}

func TestValidKey(t *testing.T) {
	for k, want := range map[string]bool{
		"0123456789abcdef0123": true, "deadbeef": true, "": false, "..": false, "0123456789ABCDEF0123": false,
		"0123456789abcdef0123/x": false, "abc": false,
	} {
		if got := ValidKey(k); got != want {
			t.Errorf("ValidKey(%q) = %v", k, got)
		}
	}
}
