// Package bmcsim owns the QEMU lab's BMCs: power control and stored boot device of a lab
// VM (a VM directory), the ipmi_sim configuration and chassis_control protocol that put
// IPMI-over-LAN in front of it, and a Redfish service emulator. Every lab test of power
// and boot device goes over a real protocol: ipmitool (lanplus, cipher suite 3) against
// Debian's ipmi_sim, or a Redfish client (bmclib/gofish, python3-sushy) against
// RedfishServer. Nothing here chooses addresses or starts namespaces: the lab harness
// (package lab) runs the BMCs inside a lab namespace, and whatever a BMC starts (QEMU)
// inherits that namespace.
//
// # The VM directory
//
// A VM directory is the contract between the lab and its BMCs. The lab writes vm.json
// (CreateVMDir); the BMCs own everything else:
//
//	vm.json        Spec: name, argv (full QEMU command line without boot order, without
//	               -daemonize/-pidfile), boot argument sets "pxe", "disk" and optional
//	               "default" (no override), firmware "uefi" or "legacy"
//	boot.json      stored boot device: {"target": "none|pxe|disk",
//	               "persistence": "once|persistent", "mode": "uefi|legacy"};
//	               absent means none, in the firmware's mode
//	qemu.pid       PID of the running QEMU (plain number)
//	qemu.run.json  PID, its start time in clock ticks (so a reused PID is not mistaken
//	               for the VM) and the boot target it was started with
//	qmp.sock       QMP socket of the running QEMU
//	qemu.log       QEMU's stdout/stderr, and one line per power-on with its argv
//	serial.log     serial console, by convention: argv should say -serial file:DIR/serial.log
//	lock           flock(2) taken by every operation that changes anything
//
// Power: the VM is on exactly while the recorded QEMU process is alive (a zombie counts
// as off: QEMU started by a short-lived chassis-control process is reparented to PID 1,
// which in a container may never reap it). On execs argv + the boot set of the stored
// target + a QMP monitor on a socket bmcsim creates and passes as fd 3, in QEMU's own
// process group, stdout/stderr to qemu.log, and returns once QEMU answers QMP (about
// 80 ms with TCG on an idle machine); a "once" override is consumed then. Off is QMP
// quit, else SIGKILL through a pidfd, waiting for the exit. Soft is QMP system_powerdown
// (ACPI; the guest may ignore it). Reset is QMP system_reset, but restarts QEMU when
// the boot order must change (a pending or once override) or argv has -no-reboot
// (QEMU 7.2 then exits on system_reset too). Cycle is off then on. Reset and Cycle of a
// VM that is off power it on. Everything is idempotent and serialised by the lock, across
// processes and within one. QEMU outlives the BMC process that started it: teardown
// calls ForceOff. The socket path limits a VM directory's path to about 98 bytes.
//
// # Boot order in QEMU 7.2 (measured, SeaBIOS 1.16.2 and OVMF 2022.11)
//
//   - bootindex works for both firmwares and is what BootIndexArgs generates: the NIC and
//     the disk carry id= (the disk as -drive if=none,id=X -device virtio-blk-pci,
//     drive=X,id=disk0) and no bootindex of their own, and each boot set is
//     "-set device.ID.bootindex=N" for both, e.g. pxe = nic0:1, disk0:2. SeaBIOS then
//     prints "Booting from ROM" (the NIC's iPXE) or "Booting from Hard Disk"; OVMF starts
//     ">>Start PXE over IPv4" or loads the disk ("UEFI Misc Device") first.
//   - OVMF honours a changed bootindex with a reused OVMF_VARS (it reorders BootOrder from
//     QEMU's fw_cfg "bootorder" on every boot): no fresh VARS copy is needed.
//   - -boot order=n / order=c works for SeaBIOS only, and only while no device has a
//     bootindex (any bootindex outranks it). OVMF ignores -boot order.
//
// # IPMI
//
// WriteIPMI writes ipmi_sim's lan.conf (one LAN channel on a lab address, one admin
// user, a chassis_control command) and command file and returns the ipmi_sim argv for the
// harness to run in the namespace. ChassisControl is the Go side of chassis_control:
// `rackboot-bmcsim chassis-control --dir DIR get|set ...`. ipmi_sim passes only the boot
// device selector of Set System Boot Options, not its persistent or EFI bits, so an IPMI
// boot override is always once and keeps the stored mode.
//
// # Redfish
//
// RedfishServer implements the subset of DSP0266 that bmclib's gofish provider, gofish
// and sushy use: service root, Systems (PowerState, Boot override target None/Pxe/Hdd,
// Disabled/Once/Continuous, Legacy/UEFI, with @Redfish.AllowableValues), PATCH of Boot
// with ETag/If-Match, #ComputerSystem.Reset (On, ForceOff, GracefulShutdown,
// ForceRestart = Reset, PowerCycle = Cycle), SessionService with X-Auth-Token sessions
// and HTTP basic auth, one Manager and a Chassis per system, $metadata and the OData
// service document, and Base.1.16.0 error bodies with @Message.ExtendedInfo.
package bmcsim
