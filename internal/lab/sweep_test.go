package lab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// TestNetnsSweepStale plays a lab run killed before its teardown: its namespace still
// holds a process, and a BMC-managed VM it recorded still has its "QEMU" running (a
// sleep standing in, recorded in qemu.run.json as bmcsim records QEMU). SweepStale must
// end both, delete the namespace and drop the record, and leave alone a namespace whose
// creator (this test) still runs.
func TestNetnsSweepStale(t *testing.T) {
	Require(t)
	// A PID that was ours and is gone: the "killed run".
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := gone.Process.Pid
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s%d-%s-sweep", NamePrefix, deadPID, hex.EncodeToString(b[:]))
	if err := run("ip", "netns", "add", stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run("ip", "netns", "del", stale) })
	inStale := startSleep(t, "ip", "netns", "exec", stale, "sleep", "300")

	// The killed run's VM: a VM directory whose recorded QEMU is alive.
	dir := filepath.Join(t.TempDir(), "vm")
	if _, err := bmcsim.CreateVMDir(dir, bmcsim.Spec{Name: "sweep", Argv: []string{"qemu-system-x86_64"}, Firmware: bmcsim.BootLegacy}); err != nil {
		t.Fatal(err)
	}
	qemu := startSleep(t, "sleep", "300")
	ticks := startTicks(t, qemu.pid())
	// bmcsim's qemu.run.json: PID, start time in clock ticks, boot target.
	runJSON := fmt.Sprintf(`{"pid":%d,"startTicks":%d,"boot":"none"}`+"\n", qemu.pid(), ticks)
	if err := os.WriteFile(filepath.Join(dir, bmcsim.RunFile), []byte(runJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, bmcsim.PIDFile), []byte(strconv.Itoa(qemu.pid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(vmRecordDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(vmRecordDir(), fmt.Sprintf("%s%d-%s-sweep", NamePrefix, deadPID, hex.EncodeToString(b[:])))
	if err := os.Symlink(dir, record); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(record) })

	// A live run's namespace and process: untouched.
	live, err := NewNetns(t, "sweeplive")
	if err != nil {
		t.Fatal(err)
	}
	liveProc, err := live.Start(t, filepath.Join(t.TempDir(), "sleep.log"), "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}

	if err := SweepStale(); err != nil {
		t.Errorf("SweepStale: %v", err)
	}
	for name, p := range map[string]*sleeper{"process in the stale namespace": inStale, "recorded QEMU": qemu} {
		if !p.exited(5 * time.Second) {
			t.Errorf("%s (pid %d) still runs after SweepStale", name, p.pid())
		}
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte(stale)) {
		t.Errorf("stale namespace %s survived SweepStale", stale)
	}
	if !bytes.Contains(out, []byte(live.Name)) {
		t.Errorf("SweepStale deleted the live namespace %s", live.Name)
	}
	if done, _ := liveProc.Exited(); done {
		t.Errorf("SweepStale killed a process of a live run")
	}
	if _, err := os.Lstat(record); !os.IsNotExist(err) {
		t.Errorf("VM record %s survived SweepStale (%v)", record, err)
	}
	if _, err := os.Stat(filepath.Join(dir, bmcsim.RunFile)); !os.IsNotExist(err) {
		t.Errorf("%s survived the forced off (%v)", bmcsim.RunFile, err)
	}
}

// sleeper is a process the test started itself, reaped in the background.
type sleeper struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startSleep starts a process in its own process group, killed at the end of the test
// should the code under test fail to.
func startSleep(t *testing.T, args ...string) *sleeper {
	t.Helper()
	s := &sleeper{cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{})}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	})
	return s
}

func (s *sleeper) pid() int { return s.cmd.Process.Pid }

// exited reports whether the process ends within timeout.
func (s *sleeper) exited(timeout time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// startTicks reads a process's start time (field 22 of /proc/PID/stat).
func startTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	fields := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
	v, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
