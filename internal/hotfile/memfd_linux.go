package hotfile

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// newMemFile copies data into an anonymous in-memory file (memfd), which the kernel
// can hand to a socket with sendfile(2): nginx's way of sending a file, without
// copying every byte from the process into the kernel first. nil when the kernel
// cannot (no memfd, no /proc); the caller then writes from data.
func newMemFile(name string, data []byte) *memFile {
	fd, err := unix.MemfdCreate("rackboot-"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil
	}
	// Sealed: nothing in the process can change what is served.
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL)
	m := &memFile{f: f, path: fmt.Sprintf("/proc/self/fd/%d", fd), pool: make(chan *os.File, descPool)}
	// A first description proves that the file can be reopened.
	d, err := m.reopen()
	if err != nil {
		f.Close()
		return nil
	}
	m.put(d)
	return m
}

// reopen opens another description of the memfd, with its own file offset, so that
// concurrent requests can each seek and sendfile.
func (m *memFile) reopen() (*os.File, error) { return os.Open(m.path) }
