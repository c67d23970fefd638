package bmcsim

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// procIdentity is what tells one process from a later one that reuses its PID: the start
// time in clock ticks since boot (field 22 of /proc/PID/stat).
type procIdentity struct {
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"startTicks"`
}

// procStat reads a process's state letter and start time. A missing process is
// os.ErrNotExist.
func procStat(pid int) (state byte, startTicks uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may itself hold spaces or ")", so
	// fields are counted from the last ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
	if len(fields) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields, want at least 22", pid, len(fields)+2)
	}
	ticks, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat starttime: %w", pid, err)
	}
	return fields[0][0], ticks, nil
}

// identify returns the identity of a running process.
func identify(pid int) (procIdentity, error) {
	_, ticks, err := procStat(pid)
	if err != nil {
		return procIdentity{}, err
	}
	return procIdentity{PID: pid, StartTicks: ticks}, nil
}

// alive reports whether the process is still the one recorded and has not exited. A
// zombie counts as exited: QEMU started by a short-lived chassis-control process is
// reparented to PID 1, which in a container may never reap it.
func (p procIdentity) alive() bool {
	if p.PID <= 0 {
		return false
	}
	state, ticks, err := procStat(p.PID)
	if err != nil {
		return false
	}
	return ticks == p.StartTicks && state != 'Z' && state != 'X'
}

// pidfd is a handle on one process that stays valid (and never names another process)
// even after the PID is reused, so signalling and waiting through it is race-free.
type pidfd int

// openProc opens a pidfd for p, checking after opening that the PID still belongs to the
// recorded process. It returns os.ErrProcessDone if that process is gone.
func openProc(p procIdentity) (pidfd, error) {
	fd, err := unix.PidfdOpen(p.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return -1, os.ErrProcessDone
	}
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", p.PID, err)
	}
	if !p.alive() {
		unix.Close(fd)
		return -1, os.ErrProcessDone
	}
	return pidfd(fd), nil
}

func (fd pidfd) close() { unix.Close(int(fd)) }

func (fd pidfd) kill() error {
	err := unix.PidfdSendSignal(int(fd), unix.SIGKILL, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// wait blocks until the process has exited (a zombie counts) or d passes; it reports
// whether it exited. A pidfd polls readable on exit, for children and non-children alike.
func (fd pidfd) wait(d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		ms := int(time.Until(deadline).Milliseconds())
		if ms < 0 {
			ms = 0
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll pidfd: %w", err)
		}
		return n > 0, nil
	}
}
