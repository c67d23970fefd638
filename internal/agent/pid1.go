package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// PowerAction is how a boot of the agent ends.
type PowerAction string

const (
	PowerOff PowerAction = "poweroff"
	Reboot   PowerAction = "reboot"
)

// setupPID1 does what an init does before anything else: the pseudo filesystems the
// agent reads (proc, sysfs, devtmpfs for device nodes, tmpfs for scratch) and the
// console on stdin/stdout/stderr. The initramfs ships /dev/console so the kernel gives
// init a console; it is reopened on the devtmpfs anyway in case it did not.
func setupPID1(root string) error {
	mounts := []struct{ src, dir, fstype, data string }{
		{"proc", "proc", "proc", ""},
		{"sysfs", "sys", "sysfs", ""},
		{"devtmpfs", "dev", "devtmpfs", "mode=0755"},
		{"tmpfs", "run", "tmpfs", "mode=0755"},
		{"tmpfs", "tmp", "tmpfs", "mode=1777"},
	}
	var errs []error
	for _, m := range mounts {
		dir := filepath.Join(root, m.dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		// EBUSY: already mounted (a kernel with CONFIG_DEVTMPFS_MOUNT, or a restart).
		if err := unix.Mount(m.src, dir, m.fstype, unix.MS_NOSUID, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, dir, err))
		}
	}
	if fd, err := unix.Open(filepath.Join(root, "dev/console"), unix.O_RDWR|unix.O_NOCTTY, 0); err == nil {
		for _, target := range []int{0, 1, 2} {
			if fd != target {
				_ = unix.Dup3(fd, target, 0)
			}
		}
		if fd > 2 {
			unix.Close(fd)
		}
	}
	// Kernel messages at warning and above only: driver chatter would bury the agent's
	// own lines on a serial console.
	_ = os.WriteFile(filepath.Join(root, "proc/sys/kernel/printk"), []byte("4 4 1 7"), 0o644)
	return errors.Join(errs...)
}

// systemPower flushes and powers off or reboots the machine with reboot(2). It returns
// only if the kernel refused.
func systemPower(a PowerAction) error {
	unix.Sync()
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if a == Reboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	if err := unix.Reboot(cmd); err != nil {
		return fmt.Errorf("reboot(2) %s: %w", a, err)
	}
	return nil
}
