package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"unsafe"

	"golang.org/x/sys/unix"
)

// disk is an open whole disk: a block device on a host, a plain file in tests.
type disk struct {
	f      *os.File
	name   string
	size   int64
	sector int
	block  bool // a block device: ioctls apply
}

// openDisk opens devDir/name read-write. A block device is opened O_EXCL, which the
// kernel refuses while a partition of it is mounted: the agent never writes under a
// mounted filesystem (and, in turn, cannot mount a partition while it holds the disk).
func openDisk(devDir, name string) (*disk, error) {
	return openDiskMode(devDir, name, true)
}

// openDiskReadOnly opens devDir/name for reading, without claiming it.
func openDiskReadOnly(devDir, name string) (*disk, error) {
	return openDiskMode(devDir, name, false)
}

func openDiskMode(devDir, name string, write bool) (*disk, error) {
	p := filepath.Join(devDir, name)
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", name, err)
	}
	d := &disk{name: name, sector: 512}
	flags := os.O_RDONLY
	if write {
		flags = os.O_RDWR
	}
	if st.Mode()&os.ModeDevice != 0 {
		d.block = true
		if write {
			flags |= unix.O_EXCL
		}
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("disk %s: %s is neither a block device nor a file", name, p)
	}
	f, err := os.OpenFile(p, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("open disk %s: %w", name, err)
	}
	d.f = f
	if d.block {
		fd := int(f.Fd())
		var sz uint64
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&sz))); e != 0 {
			f.Close()
			return nil, fmt.Errorf("disk %s: size: %w", name, e)
		}
		d.size = int64(sz)
		if ss, err := unix.IoctlGetInt(fd, unix.BLKSSZGET); err == nil && ss > 0 {
			d.sector = ss
		}
	} else {
		d.size = st.Size()
	}
	return d, nil
}

func (d *disk) Close() error { return d.f.Close() }

func (d *disk) ReadAt(p []byte, off int64) (int, error)  { return d.f.ReadAt(p, off) }
func (d *disk) WriteAt(p []byte, off int64) (int, error) { return d.f.WriteAt(p, off) }

// sync flushes the disk's write cache (fsync on a block device is a cache flush).
func (d *disk) sync() error {
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("disk %s: fsync: %w", d.name, err)
	}
	return nil
}

// rereadPartitions makes the kernel read the partition table again (BLKRRPART), so the
// partitions just written (or wiped) show up as devices (or go away). The kernel says
// EBUSY while udev-like probers hold a partition open; nothing here does, but a few
// retries cost nothing.
func (d *disk) rereadPartitions() error {
	if !d.block {
		return nil
	}
	var err error
	for range 5 {
		if _, err = unix.IoctlRetInt(int(d.f.Fd()), unix.BLKRRPART); err == nil {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("disk %s: re-read partition table (BLKRRPART): %w", d.name, err)
}

// zeroRange writes zeros over [off, off+n), clipped to the disk. It uses BLKZEROOUT on a
// block device when the device supports it (a write-zeroes or discard-zeroes command,
// much faster than writing), else plain writes.
func (d *disk) zeroRange(off, n int64, buf []byte) error {
	if off < 0 {
		n += off
		off = 0
	}
	if off+n > d.size {
		n = d.size - off
	}
	if n <= 0 {
		return nil
	}
	if d.block && off%int64(d.sector) == 0 && n%int64(d.sector) == 0 {
		r := [2]uint64{uint64(off), uint64(n)}
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, d.f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r))); e == 0 {
			return nil
		}
	}
	for n > 0 {
		c := min(n, int64(len(buf)))
		if _, err := d.f.WriteAt(buf[:c], off); err != nil {
			return fmt.Errorf("disk %s: zero at %d: %w", d.name, off, err)
		}
		off += c
		n -= c
	}
	return nil
}

// zeroOut makes [off, off+n) read as zeros without writing them where it can:
// BLKZEROOUT on a block device (through zeroRange), a punched hole in a file (tests,
// and a disk image file given as the disk).
func (d *disk) zeroOut(off, n int64) error {
	if !d.block {
		if err := unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err == nil {
			return nil
		}
	}
	return d.zeroRange(off, n, zeroBuf)
}

// partitions returns the disk's partitions: the table on the disk and, for a block
// device, what the kernel has (which covers tables this reader does not parse).
func (d *disk) partitions(root string) []Partition {
	t, _ := readPartitionTable(d.f, d.size, d.sector)
	parts := t.Partitions
	if !d.block {
		return parts
	}
	for _, kp := range kernelPartitions(root, d.name) {
		dup := false
		for _, p := range parts {
			if p.Start == kp.Start && p.Size == kp.Size {
				dup = true
				break
			}
		}
		if !dup {
			parts = append(parts, kp)
		}
	}
	return parts
}

// kernelPartitions reads /sys/block/NAME/NAME*/{partition,start,size}.
func kernelPartitions(root, name string) []Partition {
	dir := filepath.Join(root, "sys/block", name)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var parts []Partition
	for _, e := range ents {
		pd := filepath.Join(dir, e.Name())
		num, err := strconv.Atoi(readTrim(filepath.Join(pd, "partition")))
		if err != nil {
			continue
		}
		start, err1 := strconv.ParseInt(readTrim(filepath.Join(pd, "start")), 10, 64)
		size, err2 := strconv.ParseInt(readTrim(filepath.Join(pd, "size")), 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		parts = append(parts, Partition{Number: num, Start: start * 512, Size: size * 512, Name: e.Name()})
	}
	return parts
}

// partitionName is the kernel's name for partition n of disk: sda1, but nvme0n1p1 and
// mmcblk0p1 when the disk name ends in a digit.
func partitionName(disk string, n int) string {
	if disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		return disk + "p" + strconv.Itoa(n)
	}
	return disk + strconv.Itoa(n)
}

// partitionDevice returns a device node for partition n of disk, creating it under
// nodeDir from the kernel's major:minor when devtmpfs has not yet (it creates nodes
// asynchronously after BLKRRPART). waitFor bounds how long the kernel may take to show
// the partition at all.
func partitionDevice(root, devDir, nodeDir, disk string, n int, waitFor time.Duration) (string, error) {
	name := partitionName(disk, n)
	sysDev := filepath.Join(root, "sys/block", disk, name, "dev")
	deadline := time.Now().Add(waitFor)
	for {
		if _, err := os.Stat(sysDev); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("partition %s did not appear within %v after re-reading the partition table", name, waitFor)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st, err := os.Stat(filepath.Join(devDir, name)); err == nil && st.Mode()&os.ModeDevice != 0 {
		return filepath.Join(devDir, name), nil
	}
	majmin := readTrim(sysDev)
	maj, mnr, ok := strings.Cut(majmin, ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(mnr, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return "", fmt.Errorf("partition %s: bad dev %q", name, majmin)
	}
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return "", err
	}
	node := filepath.Join(nodeDir, name)
	_ = os.Remove(node)
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(ma), uint32(mi)))); err != nil {
		return "", fmt.Errorf("partition %s: mknod: %w", name, err)
	}
	return node, nil
}

// copyAt copies n bytes from r to d at off in chunks of buf.
func copyAt(d io.WriterAt, off int64, r io.Reader, buf []byte) (int64, error) {
	var total int64
	for {
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			if _, werr := d.WriteAt(buf[:k], off+total); werr != nil {
				return total, werr
			}
			total += int64(k)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
