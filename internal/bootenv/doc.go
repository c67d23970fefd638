// Package bootenv owns the agent's boot environment: a kernel imported from a
// distribution kernel package, and the initramfs rackboot builds around itself.
//
// Build reads a Debian linux-image .deb in pure Go (an ar archive; its data.tar.xz,
// .zst or .gz through archive/tar), extracts boot/vmlinuz-VERSION and every module under
// lib/modules/VERSION (or usr/lib/modules, as newer packages have it), decompressing
// .ko.xz/.ko.zst/.ko.gz, and reads each module's .modinfo section (debug/elf): name,
// depends, alias, softdep, which is all depmod reads. Debian ships no modules.dep or
// modules.alias in the package (depmod runs at install time), so Build writes them,
// in depmod's text format, for the modules it packs: those matching Config.Modules
// (DefaultModules: Ethernet, virtio, block, NVMe, SCSI, ATA, ext4, vfat, btrfs, hardware
// RNGs) and everything they depend on, hard or soft (soft dependencies resolved through
// aliases, e.g. ext4's "crypto-crc32c"). Debian 6.1 packs 357 of its 4000 modules this
// way (79 MB uncompressed; btrfs and its 6 dependencies are 4.5 MB of it).
//
// The initramfs is a gzip-compressed newc cpio (github.com/cavaliergopher/cpio), made of
// two concatenated archives, as the kernel accepts: a hand-written one with /dev/console
// (the library cannot write device numbers; with it the kernel opens the console for
// init), then /init (the static rackboot binary: Config.Agent, default the running
// executable), lib/modules/VERSION/{modules.dep,modules.alias,modules.softdep,kernel/...}
// and etc/rackboot-bootenv.json (the Manifest). Entries are sorted with fixed times, so
// the same inputs give the same bytes.
//
// Cache: DataDir/bootenv/cache/KEY/{vmlinuz,initramfs.gz,manifest.json}, KEY a hash of
// the .deb, the agent binary, the module patterns and the layout version; a build runs
// under a lock (DataDir/bootenv/.lock) into a temporary directory renamed into place.
// The current build is published, by hard link and rename, as
// DataDir/bootenv/{vmlinuz,initramfs.gz,manifest.json}, the manifest last; Published
// reads it back. The build it replaces stays in the cache and older entries are
// removed: a running server follows the published manifest (provision.BootEnvs) and
// serves each build under its key, so a host that fetched the old kernel just before
// an import still gets the old initramfs that matches it. Building from the Debian 6.1 package takes about 10 s (xz decompression of
// 400 MB); a cached Build returns after hashing its inputs.
//
// Env.BootEnv converts a build into the ipxe package's BootEnv: the server serves
// Env.Dir (at an absolute URL, or under /assets) and adds the per-boot
// rackboot.token=... to the command line (CmdlineTemplate has the {{.ServerURL}} and
// {{.MAC}} placeholders the ipxe package fills in).
package bootenv
