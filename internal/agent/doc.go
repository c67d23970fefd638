// Package agent is rackboot's in-memory agent: what a host runs, as PID 1 of the
// initramfs the bootenv package builds, while rackboot inspects, provisions or wipes it.
// It owns everything that happens on the host between the kernel starting /init and the
// host rebooting or powering off; the protocol it speaks is package agentapi.
//
// # A boot of the agent (Run)
//
//  1. As PID 1: mount proc, sysfs, devtmpfs, /run and /tmp; point stdin, stdout and
//     stderr at /dev/console (the serial console with console=ttyS0).
//  2. Read rackboot.url, rackboot.token and rackboot.mac from /proc/cmdline.
//  3. Load drivers as udev would, without modprobe: walk /sys/devices for modalias files,
//     match them against modules.alias (fnmatch, as modprobe does) and insert the
//     modules with their modules.dep dependencies and modules.softdep pre-dependencies by
//     finit_module(2). Rescan until the NIC with rackboot.mac exists (bounded, 90 s),
//     then until the set of disks has been stable for a second (bounded, 20 s).
//  4. DHCP on that NIC (github.com/insomniacslk/dhcp nclient4, vendor class
//     "rackboot-agent", option 93), then address, default route (netlink) and
//     resolv.conf.
//  5. Collect Facts (CollectFacts: /sys/class/dmi/id, SMBIOS type 17 memory devices,
//     /proc/cpuinfo and meminfo, /sys/block, /sys/class/net) and POST hello; run the
//     plan: inspect, provision, deprovision, or wait and ask again (bounded, 30 min).
//  6. POST the result, then reboot (a successful provisioning) or power off (anything
//     else, and always after an error) with reboot(2). As PID 1 Run never returns: the
//     kernel would panic.
//
// # Provisioning
//
// The root disk is chosen with agentapi.RootDiskHint. The image is downloaded over HTTP
// with Accept-Encoding: identity; a connection that drops or stalls (60 s without a
// byte) is resumed with Range and If-Range, at most 20 times. The sha256 covers the bytes
// as served. Images whose size is known and fits in half the free memory are downloaded
// and verified before the disk is touched, so a bad image leaves the disk exactly as it
// was. Larger ones are streamed: the disk is quick-wiped, the image decompressed (gzip,
// zstd, xz, detected by magic unless the plan says) and written as it arrives, except
// its first MiB (protective MBR and primary GPT), which is written only after the
// checksum verified; on a mismatch the agent zeroes the ends of every partition the
// held-back table describes and of the image, and fails. Then fsync, BLKRRPART, and the
// cloud-init step:
//
//   - dropin: the first ext4 partition holding etc/cloud is mounted (ext4 loaded first)
//     and etc/cloud/cloud.cfg.d/99-rackboot.cfg written through os.Root, so a symlink in
//     the image cannot redirect the write: datasource_list [NoCloud, None] and NoCloud's
//     seedfrom set to the host's NoCloud-net URL. Stock cloud images (Debian, Ubuntu)
//     work as they are.
//   - cidata: see cidata.go.
//   - ignition (Flatcar, Fedora CoreOS): the config carried in the plan is written
//     where the image's first boot reads it: config.ign at the root of the filesystem
//     labelled OEM (Flatcar; btrfs or ext4) or ignition/config.ign in the one labelled
//     boot (Fedora CoreOS; ext4), found by filesystem label or GPT partition name from
//     the superblocks, mounted (btrfs or ext4 loaded first), written 0600 through
//     os.Root with a temporary file, fsync and rename, read back, unmounted. No such
//     partition, or two, is an error naming what was looked for and what the disk
//     has. See ignition.go.
//
// The whole disk is opened O_EXCL while it is written (the kernel refuses while anything
// on it is mounted) and released before a partition is mounted.
//
// # Wiping
//
// Quick: zero the first and last MiB of the disk, of each partition (read from the disk's
// GPT or MBR, and from the kernel's view in sysfs) and around a GPT's backup header when
// it is not at the disk's end; that removes partition tables (both GPT copies) and
// filesystem, LVM, MD RAID and ZFS signatures. Full: every byte, with BLKZEROOUT where
// the device supports it, progress every 64 MiB.
//
// # Randomness
//
// Nothing before the first HTTP request needs the kernel's random pool: the DHCP
// transaction ID and the boot ID come from math/rand. crypto/rand (getrandom) blocks
// until the pool is initialised, which on a machine without a hardware RNG (QEMU TCG
// without -cpu max or virtio-rng; some old hardware) takes minutes after boot; an https
// image URL would wait for it. Servers with RDRAND or a TPM initialise it at once.
//
// # Tests
//
// The unit tests run against a fake root (testdata/root: sysfs and procfs snippets,
// modules.alias/dep/softdep), disks that are plain files, and httptest servers. The
// end-to-end test in internal/agent/e2e boots the Debian kernel with the real initramfs in QEMU.
package agent
