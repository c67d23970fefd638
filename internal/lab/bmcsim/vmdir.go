package bmcsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Files in a VM directory (see the package documentation for the contract).
const (
	SpecFile  = "vm.json"
	BootFile  = "boot.json"
	PIDFile   = "qemu.pid"
	RunFile   = "qemu.run.json"
	QMPSocket = "qmp.sock"
	QEMULog   = "qemu.log"
	SerialLog = "serial.log"
	LockFile  = "lock"
)

// Timeouts of the power path. QEMU (TCG) answers its first QMP greeting about 80 ms after
// exec on an idle machine; the rest is headroom for two shared cores running other guests.
const (
	startTimeout = 5 * time.Second
	quitTimeout  = 2 * time.Second
	killTimeout  = 5 * time.Second
	// maxSocketPath is sun_path's size minus its NUL.
	maxSocketPath = 107
)

// qmpChardev is the monitor bmcsim adds to every QEMU: a QMP server on a listening socket
// bmcsim created and passes as fd 3, so the socket exists before QEMU does and a connect
// right after exec only waits for QEMU to be ready, with no polling for the file.
var qmpArgs = []string{
	"-chardev", "socket,id=bmcsim-qmp,fd=3,server=on,wait=off",
	"-mon", "chardev=bmcsim-qmp,mode=control",
}

// BootArgs are the QEMU arguments appended to Spec.Argv for each boot device.
type BootArgs struct {
	PXE  []string `json:"pxe"`
	Disk []string `json:"disk"`
	// Default applies when no override is set: the machine's own boot order.
	Default []string `json:"default,omitempty"`
}

func (b BootArgs) args(t BootTarget) []string {
	switch t {
	case BootPXE:
		return b.PXE
	case BootDisk:
		return b.Disk
	}
	return b.Default
}

// BootIndexArgs returns boot argument sets that order the NIC and the disk with
// bootindex, set through QEMU's -set option on the devices' ids. Both SeaBIOS and OVMF
// (2022.11, also with a reused OVMF_VARS) honour bootindex; OVMF ignores -boot order.
// The devices in Spec.Argv must carry id=nicID / id=diskID and no bootindex of their own
// (SeaBIOS lets any bootindex outrank -boot order). diskID may be empty for a diskless
// VM. Default, like a server out of the box, tries the disk first and then the network.
func BootIndexArgs(nicID, diskID string) BootArgs {
	set := func(id string, index int) []string {
		return []string{"-set", "device." + id + ".bootindex=" + strconv.Itoa(index)}
	}
	if diskID == "" {
		return BootArgs{PXE: set(nicID, 1)}
	}
	disk := append(set(diskID, 1), set(nicID, 2)...)
	return BootArgs{
		PXE:     append(set(nicID, 1), set(diskID, 2)...),
		Disk:    disk,
		Default: disk,
	}
}

// Spec is vm.json: how to start one lab VM.
type Spec struct {
	Name string `json:"name"`
	// Argv is the full QEMU command line (argv[0] is the binary) without boot-order
	// arguments, monitors for bmcsim, -daemonize or -pidfile. It should send the serial
	// console to the directory's serial.log.
	Argv []string `json:"argv"`
	Boot BootArgs `json:"boot"`
	// Firmware is the VM's firmware interface, the default boot mode: uefi or legacy.
	Firmware BootMode `json:"firmware"`
}

func (s Spec) validate() error {
	if s.Name == "" || len(s.Argv) == 0 {
		return errors.New("vm.json: name and argv are required")
	}
	if s.Firmware != BootUEFI && s.Firmware != BootLegacy {
		return fmt.Errorf("vm.json %s: firmware %q: use uefi or legacy", s.Name, s.Firmware)
	}
	for _, a := range s.Argv {
		if a == "-daemonize" || a == "-pidfile" {
			return fmt.Errorf("vm.json %s: argv must not contain %s: bmcsim tracks the QEMU process itself", s.Name, a)
		}
	}
	return nil
}

// noReboot reports whether a guest reset ends QEMU (-no-reboot). Then QMP system_reset
// ends it too (QEMU 7.2 treats a host reset like a guest one), so Reset restarts it.
func (s Spec) noReboot() bool {
	for i, a := range s.Argv {
		if a == "-no-reboot" {
			return true
		}
		if a == "-action" && i+1 < len(s.Argv) && strings.Contains(s.Argv[i+1], "reboot=shutdown") {
			return true
		}
	}
	return false
}

// VMDir is one lab VM's directory: its power and stored boot device. Every operation is
// safe against other callers in any process (flock on the directory's lock file).
type VMDir struct {
	Path string
	Spec Spec
}

// CreateVMDir creates (or reuses) the directory and writes vm.json. The stored boot
// device is left as it is, so a rewritten spec keeps a pending override.
func CreateVMDir(path string, spec Spec) (*VMDir, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if len(filepath.Join(path, QMPSocket)) > maxSocketPath {
		return nil, fmt.Errorf("VM directory %s: path too long for its QMP unix socket (max %d bytes with /%s); use a shorter directory", path, maxSocketPath, QMPSocket)
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("VM directory: %w", err)
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(path, SpecFile), append(b, '\n')); err != nil {
		return nil, err
	}
	return &VMDir{Path: path, Spec: spec}, nil
}

// OpenVMDir reads the directory's vm.json.
func OpenVMDir(path string) (*VMDir, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(path, SpecFile))
	if err != nil {
		return nil, fmt.Errorf("VM directory %s: %w (is it a lab VM directory?)", path, err)
	}
	var spec Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(path, SpecFile), err)
	}
	if err := spec.validate(); err != nil {
		return nil, err
	}
	return &VMDir{Path: path, Spec: spec}, nil
}

func (d *VMDir) file(name string) string { return filepath.Join(d.Path, name) }

// runState is qemu.run.json: which process is the VM and what it booted with.
type runState struct {
	procIdentity
	Boot BootTarget `json:"boot"`
}

// running returns the recorded process and whether it is alive.
func (d *VMDir) running() (runState, bool, error) {
	var rs runState
	b, err := os.ReadFile(d.file(RunFile))
	if errors.Is(err, fs.ErrNotExist) {
		return rs, false, nil
	}
	if err != nil {
		return rs, false, err
	}
	if err := json.Unmarshal(b, &rs); err != nil {
		return rs, false, fmt.Errorf("%s: %w", d.file(RunFile), err)
	}
	return rs, rs.alive(), nil
}

// PowerState is on while the recorded QEMU process is alive.
func (d *VMDir) PowerState(context.Context) (PowerState, error) {
	_, on, err := d.running()
	if err != nil {
		return "", err
	}
	if on {
		return PowerOn, nil
	}
	return PowerOff, nil
}

// PID returns the QEMU process ID while the VM is on, else 0.
func (d *VMDir) PID() (int, error) {
	rs, on, err := d.running()
	if err != nil || !on {
		return 0, err
	}
	return rs.PID, nil
}

// BootOverride returns the stored boot device; with none stored, no override in the
// firmware's own mode.
func (d *VMDir) BootOverride(context.Context) (BootOverride, error) {
	return d.readBoot()
}

func (d *VMDir) readBoot() (BootOverride, error) {
	o := BootOverride{Target: BootNone, Persistence: BootOnce, Mode: d.Spec.Firmware}
	b, err := os.ReadFile(d.file(BootFile))
	if errors.Is(err, fs.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return o, err
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("%s: %w", d.file(BootFile), err)
	}
	if o.Mode == "" {
		o.Mode = d.Spec.Firmware
	}
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("%s: %w", d.file(BootFile), err)
	}
	return o, nil
}

// SetBootOverride stores the next boot device. An empty Mode means the firmware's.
// It takes effect at the next power-on, cycle or reset.
func (d *VMDir) SetBootOverride(_ context.Context, o BootOverride) error {
	if o.Mode == "" {
		o.Mode = d.Spec.Firmware
	}
	if o.Persistence == "" {
		o.Persistence = BootOnce
	}
	if err := o.Validate(); err != nil {
		return err
	}
	unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return d.writeBoot(o)
}

func (d *VMDir) writeBoot(o BootOverride) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return writeFileAtomic(d.file(BootFile), append(b, '\n'))
}

// Power performs op. It returns once the new state holds: after On, QEMU answers QMP;
// after Off, the process has exited. Soft only asks the guest.
func (d *VMDir) Power(ctx context.Context, op PowerOp) error {
	if _, err := ParsePowerOp(string(op)); err != nil {
		return err
	}
	unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	rs, on, err := d.running()
	if err != nil {
		return err
	}
	switch op {
	case OpOn:
		if on {
			return nil
		}
		return d.start(ctx)
	case OpOff:
		if !on {
			d.forget()
			return nil
		}
		return d.stop(ctx, rs)
	case OpSoft:
		if !on {
			return nil
		}
		return qmpCommand(ctx, d.file(QMPSocket), "system_powerdown")
	case OpReset:
		if !on {
			return d.start(ctx)
		}
		o, err := d.readBoot()
		if err != nil {
			return err
		}
		if !d.needsRestart(rs, o) {
			return qmpCommand(ctx, d.file(QMPSocket), "system_reset")
		}
		if err := d.stop(ctx, rs); err != nil {
			return err
		}
		return d.start(ctx)
	default: // OpCycle
		if on {
			if err := d.stop(ctx, rs); err != nil {
				return err
			}
		}
		return d.start(ctx)
	}
}

// needsRestart reports whether a reset must restart QEMU rather than reset it in place:
// boot order is fixed at exec, so a pending change (or a once override to consume) needs
// a new process, and with -no-reboot a reset would end QEMU anyway.
func (d *VMDir) needsRestart(rs runState, o BootOverride) bool {
	if d.Spec.noReboot() {
		return true
	}
	if o.Target != BootNone && o.Persistence == BootOnce {
		return true
	}
	return o.Target != rs.Boot
}

// start execs QEMU with the stored boot device and waits until it answers QMP. A once
// override is consumed when QEMU is up. The caller holds the lock.
func (d *VMDir) start(ctx context.Context) error {
	o, err := d.readBoot()
	if err != nil {
		return err
	}
	sock := d.file(QMPSocket)
	if err := os.Remove(sock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("QMP socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	lf, err := l.File()
	l.Close() // lf is a duplicate: the socket stays listening
	if err != nil {
		return fmt.Errorf("QMP socket: %w", err)
	}
	args := slices.Concat(d.Spec.Argv, d.Spec.Boot.args(o.Target), qmpArgs)
	logf, err := os.OpenFile(d.file(QEMULog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		lf.Close()
		return fmt.Errorf("QEMU log: %w", err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	fmt.Fprintf(logf, "bmcsim: %s: power on, boot %s: %s\n", time.Now().Format(time.RFC3339Nano), o.Target, strings.Join(args, " "))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = d.Path
	// Not the caller's stdout: ipmi_sim reads chassis_control's output until EOF, which
	// would never come while QEMU held the pipe.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{lf}
	// Its own process group, detached from the BMC that started it: a chassis-control
	// process exits right after, and a signal to the BMC's group must not reach the VM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	lf.Close() // only QEMU holds the listener now, so its exit resets our connect
	logf.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", args[0], err)
	}
	// Reaps QEMU while this process lives (the Redfish server); a short-lived
	// chassis-control process leaves it to PID 1.
	go func() { _ = cmd.Wait() }()
	id, err := identify(cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("%w: %v\n%s", errQEMUExited, err, d.logSince(logStart))
	}
	rs := runState{procIdentity: id, Boot: o.Target}
	if err := d.record(rs); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	s, err := dialQMP(ctx, sock)
	if err != nil {
		_ = d.stop(context.WithoutCancel(ctx), rs)
		return fmt.Errorf("%w: %v\n%s", errQEMUExited, err, d.logSince(logStart))
	}
	s.close()
	if o.Target != BootNone && o.Persistence == BootOnce {
		o.Target = BootNone
		if err := d.writeBoot(o); err != nil {
			return fmt.Errorf("consume once boot override: %w", err)
		}
	}
	return nil
}

// stop ends QEMU: QMP quit, else SIGKILL. The caller holds the lock.
func (d *VMDir) stop(ctx context.Context, rs runState) error {
	defer d.forget()
	fd, err := openProc(rs.procIdentity)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	if err != nil {
		return err
	}
	defer fd.close()
	if err := qmpCommand(ctx, d.file(QMPSocket), "quit"); err == nil {
		if exited, _ := fd.wait(quitTimeout); exited {
			return nil
		}
	}
	if err := fd.kill(); err != nil {
		return fmt.Errorf("kill QEMU %d: %w", rs.PID, err)
	}
	exited, err := fd.wait(killTimeout)
	if err != nil {
		return err
	}
	if !exited {
		return fmt.Errorf("QEMU %d still runs %v after SIGKILL", rs.PID, killTimeout)
	}
	return nil
}

func (d *VMDir) record(rs runState) error {
	b, err := json.Marshal(rs)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(d.file(RunFile), append(b, '\n')); err != nil {
		return err
	}
	return writeFileAtomic(d.file(PIDFile), []byte(strconv.Itoa(rs.PID)+"\n"))
}

// forget removes the files of a process that is gone.
func (d *VMDir) forget() {
	for _, f := range []string{RunFile, PIDFile, QMPSocket} {
		_ = os.Remove(d.file(f))
	}
}

// logSince returns what QEMU wrote to its log since offset, for start errors.
func (d *VMDir) logSince(offset int64) string {
	f, err := os.Open(d.file(QEMULog))
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, 64<<10))
	return strings.TrimSpace(string(b))
}

// lock takes the directory's exclusive flock. Locks on separate opens conflict even
// within one process, so concurrent Redfish requests serialise like separate processes.
func (d *VMDir) lock() (func(), error) {
	f, err := os.OpenFile(d.file(LockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("VM directory lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// writeFileAtomic replaces path so readers without the lock never see half a file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ForceOff powers the VM in dir off; for teardown, where the BMC that started QEMU may
// already be gone (QEMU runs in its own process group).
func ForceOff(dir string) error {
	d, err := OpenVMDir(dir)
	if err != nil {
		return err
	}
	return d.Power(context.Background(), OpOff)
}

// PowerCommand is `rackboot-bmcsim vm-power --dir DIR OP`: OP is status (prints on or off)
// or a PowerOp.
func PowerCommand(ctx context.Context, dir, op string, stdout io.Writer) error {
	d, err := OpenVMDir(dir)
	if err != nil {
		return err
	}
	if op == "status" {
		st, err := d.PowerState(ctx)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, st)
		return err
	}
	pop, err := ParsePowerOp(op)
	if err != nil {
		return fmt.Errorf("%w (or status)", err)
	}
	return d.Power(ctx, pop)
}
