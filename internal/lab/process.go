package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long Stop waits after SIGTERM before SIGKILL: long enough for
// rackboot's graceful shutdown, short enough not to stall a failing test.
const stopGrace = 10 * time.Second

// Process is a command the lab started inside a namespace, in its own process group, with
// stdout and stderr appended to one log file.
type Process struct {
	Name string
	Log  string
	Cmd  *exec.Cmd

	done chan struct{}
	err  error // valid after done is closed
}

// Start runs args inside the namespace (ip netns exec, which execs the command, so the PID
// is the command's own) with output going to log, and registers with c a Stop that kills
// its whole process group. When the test failed, the Stop also prints the log's tail.
func (n *Netns) Start(c Cleaner, log string, args ...string) (*Process, error) {
	return n.StartEnv(c, log, nil, args...)
}

// StartEnv is Start with extra environment variables ("K=V").
func (n *Netns) StartEnv(c Cleaner, log string, env []string, args ...string) (*Process, error) {
	if len(args) == 0 {
		return nil, errors.New("lab: Start needs a command")
	}
	if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("process log: %w", err)
	}
	defer f.Close() // the child has its own copy
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	// Own process group: Stop signals the group, so children a tool forks die too, and
	// a Ctrl-C aimed at `go test` does not reach it before cleanup does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", args[0], n.Name, err)
	}
	p := &Process{Name: filepath.Base(args[0]), Log: log, Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.Cleanup(func() {
		p.Stop()
		if r, ok := c.(failureReporter); ok && r.Failed() {
			r.Logf("lab: last lines of %s (%s):\n%s", p.Name, p.Log, Tail(p.Log, 60))
		}
	})
	return p, nil
}

// PID is the process's ID, which is also its process group ID.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Signal sends sig to the process group.
func (p *Process) Signal(sig syscall.Signal) error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	return syscall.Kill(-p.PID(), sig)
}

// Stop sends SIGTERM to the process group, waits up to stopGrace, then SIGKILLs it. It
// returns the process's exit error (nil for a clean exit after SIGTERM).
func (p *Process) Stop() error {
	return p.StopWithin(stopGrace)
}

// StopWithin is Stop with another grace period.
func (p *Process) StopWithin(grace time.Duration) error {
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		// The leader is not reaped yet, so its PID (the group ID) cannot have been
		// reused: this reaches only our group. After it is reaped nothing is signalled
		// any more, for the same reason.
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
		}
		<-p.done
	}
	return p.err
}

// Tail returns the last n lines of a file, or a note saying why it cannot.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimRight(string(bytes.Join(lines, []byte("\n"))), "\n")
}
