// Package lab owns rackboot's test lab: network namespaces with a bridge, veth-connected
// client namespaces and taps, processes started inside them and killed by process group,
// polling waits with deadlines, a packet capture without tcpdump, the boot fixtures (a
// Debian kernel, a "phone-home" initramfs cached outside the repository, a boot-sector
// disk) and QEMU guests, started directly or powered through lab BMCs (internal/lab/bmcsim). The
// end-to-end tests of issues 2 and 3 live here too: their names start with TestNetns
// (root, iproute2) or TestQEMU (also QEMU); they skip when a prerequisite is missing and
// fail instead when RACKBOOT_REQUIRE_LAB=1, which `make test` sets; -short skips them.
//
// # Isolation
//
// Everything the lab creates lives in namespaces named rb<pid>-<random>-<role>: lab
// addresses (10.77.x.0/24, fd77::/64) never exist in the root namespace, no namespace has
// a route out, and QEMU guests have only a tap on a lab bridge (-nodefaults, so no
// user-mode network either). Teardown is registered with the caller's Cleaner (a
// *testing.T, or a Stack for programs) and runs even when a test fails: processes first
// (SIGTERM to their process group, SIGKILL after 10 s), then namespaces, after killing whatever still runs in them. SweepStale cleans up after
// a creating process that is gone (a test binary killed before its cleanup): it forces
// off the QEMUs of its BMC-managed VMs (recorded under /run/rackboot-lab/vms), kills
// what runs in its namespaces and deletes them.
//
// Netns.Do runs a function on an OS thread switched into a namespace, so a test can open
// sockets there (an HTTP client, a listener, an AF_PACKET capture, a DHCP client) without
// helper processes.
//
// # BMC-managed VMs
//
// Segment.StartBMCVM makes a VM whose power and boot device belong to a lab BMC, as on
// a rack: it writes the VM directory (bmcsim.CreateVMDir; argv from VM.QEMUArgs, which
// gives the NIC id nic0 and the disk id disk0 and no boot order, and boot argument sets
// from bmcsim.BootIndexArgs), then starts the BMC inside the segment's namespace on a
// lab address (a /32 on that namespace's loopback, 10.77.250.11 and up by default):
// ipmi_sim configured by bmcsim.WriteIPMI with `rackboot-bmcsim chassis-control --dir DIR`
// as its chassis_control, or `rackboot-bmcsim redfish`. It returns once a stock client gets
// an answer (ipmitool -I lanplus -C 3, or GET /redfish/v1/); the VM is off until the BMC
// powers it on, and QEMU then runs inside the namespace too. BMC.URL is what `rackboot
// host add --bmc` takes, BMC.PasswordFile what --bmc-password-file takes. Teardown stops
// the BMC, then forces the VM off (QEMU runs in its own process group and outlives the
// BMC that started it), then deletes the namespace.
//
// Lab addresses exist only in the lab's namespaces; a client in the root namespace must
// never talk to them (nothing routes there, but a host HTTP proxy might answer). Tests
// run their clients inside: CLI and ipmitool through Netns.Exec, Go HTTP through
// Netns.HTTPClient. For bmclib from a test in the root namespace: give it
// bmclib.WithHTTPClient(ns.HTTPClient()) (v2.3.5's gofish provider ignores
// WithRedfishHTTPClient and would dial from the root namespace), and for IPMI
// WithIpmitoolPath pointing at Netns.WriteIPMIToolWrapper's script (`exec ip netns exec
// NS ipmitool "$@"`), since bmclib runs ipmitool as a process in the caller's namespace. `rackboot serve` inside
// the namespace needs neither.
//
// # VLANs and a second NIC
//
// The machine's kernel may lack 8021q, bonding and bridge VLAN filtering; the guests'
// Debian kernel has them. Segment.AddVLANPort puts a namespace on one VLAN of a
// segment's (plain, non-filtering) bridge: its eth0 is a tap whose untagged frames a
// relay in the test process tags with the VLAN id onto a second tap on the bridge, and
// of what that tap receives it passes on only the frames tagged with that id, untagged.
// Taps rather than veths with AF_PACKET: a tap gives the reader the tag inline (an
// AF_PACKET socket finds it only in PACKET_AUXDATA, the kernel moving a received tag
// into metadata even without 8021q) and whole frames with their checksums (no GSO
// super-frames). Netns.Ping is an ICMP echo client on a raw socket (the machine may have
// no ping(8)). VM.ExtraNICs adds NICs nic1, nic2, ... without option ROM or bootindex,
// so the VM still network-boots from nic0; BMCVM.SetLink pulls or plugs a NIC's cable
// through QMP set_link (bmcsim's VMDir.QMP runs any command with arguments).
//
// # Boot fixtures
//
// FetchKernel runs `apt-get download` for the package linux-image-amd64 currently depends
// on (RACKBOOT_LAB_KERNEL_PKG overrides it) and keeps vmlinuz and the NIC modules under
// $RACKBOOT_CACHE or ~/.cache/rackboot-lab, behind a flock so parallel tests fetch once.
// PhoneHomeInitramfs builds, with github.com/cavaliergopher/cpio, a gzip newc archive of
// busybox-static, the virtio-net and e1000 modules and an /init that loads them, runs
// udhcpc, GETs rackboot.url/healthz?mac=MAC (both from the kernel command line; the
// MAC defaults to eth0's), prints RACKBOOT-PHONEHOME-OK or -FAIL on ttyS0 and powers off.
// WriteBootDisk writes a raw disk whose boot sector prints RACKBOOT-DISK-BOOT on COM1
// and halts: a BIOS guest that boots its disk shows it and stays on; OVMF finds no EFI
// system partition on it, says `failed to load BootNNNN "UEFI Misc Device"` and goes on
// to the network.
//
// # QEMU findings (QEMU 7.2, SeaBIOS 1.16.2, OVMF 2022.11, iPXE 1.0.0+git-20190125)
//
// Checked by TestQEMUStandinNetboot (dnsmasq as the server) and the rackboot boot tests:
//
//   - Always -accel tcg: the /dev/kvm here cannot run guests.
//   - SeaBIOS: QEMU's NIC option ROM is iPXE, so the first DHCP already carries user class
//     "iPXE" and option 175 and the guest never asks for undionly.kpxe. -machine
//     pc,graphics=off sends SeaBIOS's console, and with it the iPXE ROM's text, to the
//     serial log (-device sga does the same but is deprecated in 7.2).
//   - OVMF native PXE: romfile= (empty) on the virtio-net device keeps the iPXE ROM off,
//     so OVMF's own VirtioNetDxe and PXE client run: DHCP with arch 7 and vendor class
//     PXEClient:Arch:00007:UNDI:003010, TFTP of the boot file, then snponly.efi DHCPs
//     again as iPXE. OVMF has no e1000 driver, so this needs virtio-net-pci.
//   - OVMF UEFI HTTP boot: as native PXE plus -fw_cfg
//     name=opt/org.tianocore/IPv4PXESupport,string=no (and IPv6PXESupport), which leaves
//     "UEFI HTTPv4" as the first network boot option: DHCP with vendor class
//     HTTPClient:Arch:00016:UNDI:003000 and arch 16, the server must echo option 60
//     "HTTPClient", then an HTTP GET of the URL in the boot file field.
//   - Each UEFI VM needs its own writable copy of OVMF_VARS_4M.fd (boot entries are
//     written there); OVMF_CODE_4M.fd is shared read-only.
//   - iPXE waits about 13 s for IPv6 autoconfiguration on each `dhcp` unless the segment
//     sends router advertisements (Segment.StartRouterAdvertisements); a DHCP server that
//     pings before offering (dnsmasq without --no-ping) adds 3 s more.
//   - QEMU start to phone-home, with RA, two or three VMs at once on 2 shared cores:
//     rackboot as the server SeaBIOS 8-12 s, OVMF PXE 15-18 s, OVMF HTTP boot 16-20 s,
//     SeaBIOS through proxyDHCP 8-9 s; dnsmasq as the server (no ping) 11-17, 18-21 and
//     18-25 s (24, 31 and 40 s without RA and with ping). Direct kernel boot of the
//     fixture: virtio-net 8.5 s, e1000 12-14 s. The whole package (`go test ./lab/`,
//     warm caches, standin test off) takes about 105 s with the BMC tests (55 s without).
//   - Boot order by bootindex through -set device.nic0.bootindex=N (no bootindex on the
//     devices themselves) works for all four firmware paths: TestQEMURackbootNetboot
//     boots SeaBIOS, OVMF PXE, OVMF HTTP boot and OVMF with QEMU's iPXE EFI ROM that
//     way, and the BMC tests flip SeaBIOS, OVMF HTTP boot and OVMF+iPXE ROM between
//     network first ("Booting from ROM", ">>Start HTTP Boot over IPv4", the iPXE banner)
//     and disk first ("Booting from Hard Disk", `failed to load Boot0001 "UEFI Misc
//     Device"`), with one OVMF_VARS per VM reused across power-ons.
//   - Lab BMCs: ipmi_sim answers ipmitool about 70 ms after it starts; an ipmitool call
//     takes 40-160 ms (power on about 150 ms, QEMU answering QMP included); Redfish calls
//     through sushy 200-500 ms (a Python start each), power on 60-120 ms in the
//     emulator. Through rackboot's CLI (serve in the namespace): `host power ID cycle`
//     380 ms over IPMI, 120 ms over Redfish; power cycle to phone-home 15 s (SeaBIOS,
//     IPMI) and 23-28 s (OVMF HTTP boot, Redfish), two VMs at once.
//   - QEMU -serial file: truncates the log at every power-on, so a BMC-managed VM's
//     serial.log is the console of its current (or last) power-on only.
//   - PID 1 of this container does not reap orphans: a QEMU whose BMC exited stays a
//     zombie after it is powered off; bmcsim and the lab's helpers count zombies as gone.
//   - OVMF's PXE client first reads the boot file with tsize only and aborts after the
//     OACK (TFTP error 8), then reads it for real; OVMF's HTTP boot likewise makes a
//     0-byte request for the size before the GET. Both show on a host's timeline.
//   - With UEFI, iPXE 2019 hands initrds to the kernel's EFI stub only by name, so the
//     kernel line needs initrd=NAME matching `initrd --name NAME` (the ipxe package's
//     scripts do this).
//   - -no-reboot plus poweroff -f in the guest makes QEMU exit, so a finished or failed
//     boot ends the process instead of looping.
//   - Two virtio NICs, an active-backup bond of both with a VLAN on it (TestQEMUBondVLAN,
//     lab image: cloud-init 22.4.2's ENI renderer, ifupdown, ifenslave): the installed
//     system comes up with bond0 (its first member's MAC) and bond0.100 as rendered, and
//     QMP set_link on nic0 shows as "link status definitely down" in the guest and a
//     failover to nic1. Pinging every 100 ms across six link changes (three runs) lost
//     one request once (the first after nic0 went down) and none otherwise, and the
//     bridge learned the bond's MAC on nic1's tap. Provisioning takes 2.5 min after
//     `host provision`, the whole test about 3.5 min.
package lab
