// Package lab owns rackboot's test lab: network namespaces with a bridge, veth-connected
// client namespaces and taps, processes started inside them and killed by process group,
// polling waits with deadlines, a packet capture without tcpdump, the boot fixtures (a
// Debian kernel and a "phone-home" initramfs, cached outside the repository) and QEMU
// guests. The end-to-end tests of issue 2 live here too: their names start with TestNetns
// (root, iproute2) or TestQEMU (also QEMU); they skip when a prerequisite is missing and
// fail instead when RACKBOOT_REQUIRE_LAB=1, which `make test` sets.
//
// # Isolation
//
// Everything the lab creates lives in namespaces named rb<pid>-<random>-<role>: lab
// addresses (10.77.x.0/24, fd77::/64) never exist in the root namespace, no namespace has
// a route out, and QEMU guests have only a tap on a lab bridge (-nodefaults, so no
// user-mode network either). Teardown is registered with the caller's Cleaner (a
// *testing.T, or a Stack for programs) and runs even when a test fails: processes first
// (SIGTERM to their process group, SIGKILL after 10 s), then namespaces. SweepStale removes
// namespaces whose creating process is gone (a test binary killed before its cleanup).
//
// Netns.Do runs a function on an OS thread switched into a namespace, so a test can open
// sockets there (an HTTP client, a listener, an AF_PACKET capture, a DHCP client) without
// helper processes.
//
// # Boot fixtures
//
// FetchKernel runs `apt-get download` for the package linux-image-amd64 currently depends
// on (RACKBOOT_LAB_KERNEL_PKG overrides it) and keeps vmlinuz and the NIC modules under
// $RACKBOOT_CACHE or ~/.cache/rackboot-lab, behind a flock so parallel tests fetch once.
// PhoneHomeInitramfs builds, with github.com/cavaliergopher/cpio, a gzip newc archive of
// busybox-static, the virtio-net and e1000 modules and an /init that loads them, runs
// udhcpc, GETs rackboot.url/boot/phonehome?mac=MAC (both from the kernel command line; the
// MAC defaults to eth0's), prints RACKBOOT-PHONEHOME-OK or -FAIL on ttyS0 and powers off.
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
//     fixture: virtio-net 8.5 s, e1000 12-14 s. The whole package (`go test ./lab/...`,
//     warm caches, standin test off) takes about 55 s.
//   - OVMF's PXE client first reads the boot file with tsize only and aborts after the
//     OACK (TFTP error 8), then reads it for real; OVMF's HTTP boot likewise makes a
//     0-byte request for the size before the GET. Both show on a host's timeline.
//   - With UEFI, iPXE 2019 hands initrds to the kernel's EFI stub only by name, so the
//     kernel line needs initrd=NAME matching `initrd --name NAME` (the ipxe package's
//     scripts do this).
//   - -no-reboot plus poweroff -f in the guest makes QEMU exit, so a finished or failed
//     boot ends the process instead of looping.
package lab
