package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// killWait bounds the wait for killed processes to exit.
const killWait = 5 * time.Second

// processesIn returns the processes whose network namespace is the named one (what `ip
// netns pids` prints: the namespace file's device and inode compared with each
// /proc/PID/ns/net), never this process: a Netns.Do thread of ours may be in it.
func processesIn(name string) ([]int, error) {
	var target unix.Stat_t
	if err := unix.Stat("/run/netns/"+name, &target); err != nil {
		return nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if inNetns(pid, target) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func inNetns(pid int, target unix.Stat_t) bool {
	var st unix.Stat_t
	err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &st)
	return err == nil && st.Dev == target.Dev && st.Ino == target.Ino
}

// killProcessesIn SIGKILLs every process in the named namespace and waits (up to
// killWait) for them to exit; it returns them as "name(pid)". Each is signalled through
// a pidfd opened and then checked to be in the namespace, so a PID reused meanwhile by
// some other process is never hit.
func killProcessesIn(name string) ([]string, error) {
	var target unix.Stat_t
	if err := unix.Stat("/run/netns/"+name, &target); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	pids, err := processesIn(name)
	if err != nil {
		return nil, err
	}
	var (
		killed []string
		fds    []int // to close
		waits  []int // killed, to wait for
		errs   []error
	)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone already
		}
		fds = append(fds, fd)
		if !inNetns(pid, target) {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d in namespace %s: %w", pid, name, err))
			continue
		}
		killed = append(killed, fmt.Sprintf("%s(%d)", strings.TrimSpace(string(comm)), pid))
		waits = append(waits, fd)
	}
	// A pidfd polls readable once its process has exited (zombies included), whoever
	// its parent is.
	deadline := time.Now().Add(killWait)
	for _, fd := range waits {
		for {
			ms := max(int(time.Until(deadline).Milliseconds()), 0)
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err == nil && n == 0 {
				errs = append(errs, fmt.Errorf("namespace %s: a process survived SIGKILL for %v", name, killWait))
			}
			break
		}
	}
	return killed, errors.Join(errs...)
}

// vmRecordDir holds one symlink per BMC-managed VM that a live lab process created,
// named like the lab's namespaces (rb<pid>-<random>-<vm>) and pointing at its VM
// directory. /run is a tmpfs: records never outlive a reboot, which is also when the
// PIDs in them would stop meaning anything.
func vmRecordDir() string {
	if os.Geteuid() == 0 {
		return "/run/rackboot-lab/vms"
	}
	return filepath.Join(os.TempDir(), "rackboot-lab-vms")
}

// recordVMDir notes a VM directory for sweepVMs; forget removes the note.
func recordVMDir(dir, vmName string) (forget func(), err error) {
	role := strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, vmName)
	name, err := uniqueName(role)
	if err != nil {
		return nil, err
	}
	rd := vmRecordDir()
	if err := os.MkdirAll(rd, 0o755); err != nil {
		return nil, fmt.Errorf("lab VM record: %w", err)
	}
	link := filepath.Join(rd, name)
	if err := os.Symlink(dir, link); err != nil {
		return nil, fmt.Errorf("lab VM record: %w", err)
	}
	return func() { _ = os.Remove(link) }, nil
}

// sweepVMs forces off the VMs recorded by lab processes that are gone. QEMU runs in a
// process group of its own, started by a BMC, so nothing else would end it; bmcsim's
// ForceOff recognises the recorded QEMU by PID and start time (qemu.run.json beside
// qemu.pid), so a PID reused by another process is never killed. A record whose
// directory is gone is dropped (its QEMU, if any, dies with its namespace's sweep).
func sweepVMs() error {
	rd := vmRecordDir()
	ents, err := os.ReadDir(rd)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lab VM records: %w", err)
	}
	var errs []error
	for _, e := range ents {
		pid, ok := creatorPID(e.Name())
		if !ok || processAlive(pid) {
			continue
		}
		link := filepath.Join(rd, e.Name())
		dir, err := os.Readlink(link)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, bmcsim.SpecFile)); err == nil {
			if err := bmcsim.ForceOff(dir); err != nil {
				errs = append(errs, fmt.Errorf("force off stale lab VM %s: %w", dir, err))
				continue
			}
		}
		if err := os.Remove(link); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
