package lab

import (
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// Console markers the phone-home init prints on ttyS0; tests wait for them in the serial log.
const (
	// MarkerInit is printed as soon as /init runs: the kernel and initramfs loaded.
	MarkerInit = "RACKBOOT-LAB-INIT"
	// MarkerPhoneHomeOK is followed by " mac=MAC ip=IP url=URL" once the phone-home request
	// answered 2xx.
	MarkerPhoneHomeOK = "RACKBOOT-PHONEHOME-OK"
	// MarkerPhoneHomeFail is followed by the reason when DHCP or the request failed.
	MarkerPhoneHomeFail = "RACKBOOT-PHONEHOME-FAIL"
)

// phoneHomeInit is /init of the phone-home initramfs. Kernel command line:
//
//	rackboot.url=http://SERVER:PORT  base URL of rackboot; without it, http://DHCP-SERVER:8080
//	rackboot.mac=MAC                 the MAC to report; without it, eth0's own
//
// It loads the NIC modules, runs udhcpc on eth0, GETs URL/healthz?mac=MAC (rackboot's
// unauthenticated liveness route, which writes nothing: the boot itself is on the host's
// timeline, from DHCP to the initrd fetch and Linux's own DHCP), prints
// a marker on the console and powers off, so QEMU (-no-reboot) exits and the test sees the
// result in the serial log whichever way it went. Waiting for eth0 polls in the guest:
// module probing is asynchronous.
const phoneHomeInit = `#!/bin/sh
/bin/busybox mkdir -p /dev /proc /sys /tmp /sbin /usr/bin /usr/sbin
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "` + MarkerInit + ` uptime=$(cut -d' ' -f1 /proc/uptime)"

fail() {
	echo "` + MarkerPhoneHomeFail + ` $*"
	poweroff -f
	sleep 60
}

for m in $(cat /lib/modules/order); do
	insmod "/lib/modules/$m" || echo "rackboot-lab: insmod $m failed"
done

url=""
mac=""
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	rackboot.url=*) url="${arg#rackboot.url=}" ;;
	rackboot.mac=*) mac="${arg#rackboot.mac=}" ;;
	esac
done

i=0
while [ ! -e /sys/class/net/eth0 ]; do
	i=$((i + 1))
	[ "$i" -gt 100 ] && fail "no eth0 after 10s: NIC driver missing?"
	usleep 100000
done
[ -n "$mac" ] || mac="$(cat /sys/class/net/eth0/address)"
ip link set lo up
ip link set eth0 up

udhcpc -i eth0 -s /etc/udhcpc.script -n -q -t 10 -T 2 || fail "udhcpc got no lease on eth0"
. /tmp/dhcp.env
[ -n "$url" ] || url="http://${serverid}:8080"

n=0
until wget -q -O /tmp/phonehome.out "${url}/healthz?mac=${mac}"; do
	n=$((n + 1))
	[ "$n" -ge 3 ] && fail "GET ${url}/healthz?mac=${mac} from ${ip} failed"
	sleep 1
done
echo "` + MarkerPhoneHomeOK + ` mac=${mac} ip=${ip} url=${url} uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
sleep 60
`

// udhcpcScript configures eth0 from the lease and keeps its variables for /init.
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
	{
		echo "ip='$ip'"
		echo "serverid='$serverid'"
		echo "router='$router'"
	} >/tmp/dhcp.env
	echo "rackboot-lab: lease ip=$ip router=$router serverid=$serverid"
	;;
esac
exit 0
`

// BuildPhoneHomeInitramfs writes a gzip-compressed newc cpio to w holding a static
// busybox, the NIC modules from moduleDir (see netModules) with their load order, the
// phone-home /init and its udhcpc script.
func BuildPhoneHomeInitramfs(w io.Writer, busybox, moduleDir string) error {
	zw := gzip.NewWriter(w)
	cw := cpio.NewWriter(zw)
	a := &archive{w: cw, mtime: time.Unix(0, 0)}
	for _, d := range []string{"bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp"} {
		a.dir(d)
	}
	a.file("init", 0o755, []byte(phoneHomeInit))
	a.file("etc/udhcpc.script", 0o755, []byte(udhcpcScript))
	a.copy("bin/busybox", 0o755, busybox)
	a.symlink("bin/sh", "busybox")
	var order []string
	for _, m := range netModules() {
		name := path.Base(m)
		a.copy("lib/modules/"+name, 0o644, filepath.Join(moduleDir, name))
		order = append(order, name)
	}
	a.file("lib/modules/order", 0o644, []byte(strings.Join(order, "\n")+"\n"))
	if a.err != nil {
		return fmt.Errorf("build initramfs: %w", a.err)
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	return zw.Close()
}

// archive writes cpio entries, keeping the first error.
type archive struct {
	w     *cpio.Writer
	mtime time.Time
	inode int64
	err   error
}

func (a *archive) header(name string, mode cpio.FileMode, size int64, link string) {
	if a.err != nil {
		return
	}
	// Unique inodes and one link each: the kernel's unpacker treats entries sharing an
	// inode as hard links.
	a.inode++
	a.err = a.w.WriteHeader(&cpio.Header{
		Name: name, Mode: mode, Size: size, Linkname: link,
		Links: 1, Inode: a.inode, ModTime: a.mtime,
	})
}

func (a *archive) dir(name string) { a.header(name, cpio.TypeDir|0o755, 0, "") }

func (a *archive) symlink(name, target string) {
	a.header(name, cpio.TypeSymlink|0o777, int64(len(target)), target)
	if a.err == nil {
		_, a.err = a.w.Write([]byte(target))
	}
}

func (a *archive) file(name string, perm cpio.FileMode, data []byte) {
	a.header(name, cpio.TypeReg|perm, int64(len(data)), "")
	if a.err == nil {
		_, a.err = a.w.Write(data)
	}
}

func (a *archive) copy(name string, perm cpio.FileMode, src string) {
	if a.err != nil {
		return
	}
	data, err := os.ReadFile(src)
	if err != nil {
		a.err = err
		return
	}
	a.file(name, perm, data)
}

// isStatic reports whether the ELF binary at path has no program interpreter.
func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}
