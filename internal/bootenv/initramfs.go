package bootenv

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// newcDeviceArchive returns a complete newc cpio archive (with its trailer) holding
// /dev and the /dev/console character device (5:1). github.com/cavaliergopher/cpio
// cannot write device numbers, and the kernel unpacks concatenated archives, so this
// small one goes first. With /dev/console in the initramfs the kernel gives /init the
// console as stdin, stdout and stderr from its first instruction.
func newcDeviceArchive() []byte {
	var b []byte
	entry := func(ino int, name string, mode uint32, rdevMajor, rdevMinor int) {
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, 0, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
		b = append(b, hdr...)
		b = append(b, name...)
		b = append(b, 0)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	entry(1, "dev", 0o040755, 0, 0)
	entry(2, "dev/console", 0o020600, 5, 1)
	entry(0, "TRAILER!!!", 0, 0, 0)
	return b
}

// fileEntry is one regular file of the initramfs.
type fileEntry struct {
	name string
	mode cpio.FileMode
	open func() (io.ReadCloser, int64, error)
}

// writeCPIO writes a newc archive of the directories, symlinks and files, parents
// first, sorted, with fixed times and owners: the same inputs give the same bytes.
func writeCPIO(w io.Writer, dirs []string, files []fileEntry) error {
	cw := cpio.NewWriter(w)
	all := map[string]bool{}
	for _, d := range dirs {
		for p := d; p != "." && p != "/" && p != ""; p = path.Dir(p) {
			all[p] = true
		}
	}
	for _, f := range files {
		for p := path.Dir(f.name); p != "." && p != "/" && p != ""; p = path.Dir(p) {
			all[p] = true
		}
	}
	var ds []string
	for d := range all {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	var ino int64 = 100
	mtime := time.Unix(0, 0)
	for _, d := range ds {
		ino++
		if err := cw.WriteHeader(&cpio.Header{Name: d, Mode: cpio.TypeDir | 0o755, Links: 2, Inode: ino, ModTime: mtime}); err != nil {
			return err
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	for _, f := range files {
		if strings.HasPrefix(f.name, "/") {
			return fmt.Errorf("initramfs entry %q: names are relative", f.name)
		}
		rc, size, err := f.open()
		if err != nil {
			return err
		}
		ino++
		// Unique inodes and one link each: the kernel's unpacker treats entries sharing
		// an inode as hard links.
		err = cw.WriteHeader(&cpio.Header{Name: f.name, Mode: cpio.TypeReg | f.mode, Size: size, Links: 1, Inode: ino, ModTime: mtime})
		if err == nil {
			var n int64
			n, err = io.Copy(cw, rc)
			if err == nil && n != size {
				err = fmt.Errorf("initramfs entry %s: %d bytes, expected %d", f.name, n, size)
			}
		}
		rc.Close()
		if err != nil {
			return err
		}
	}
	return cw.Close()
}
