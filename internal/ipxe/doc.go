// Package ipxe owns rackboot's network-boot payloads: the iPXE binaries shipped inside
// rackboot, the iPXE script each host gets, and the HTTP routes that serve them along
// with boot assets and the boot phone-home.
//
// # Binaries
//
// undionly.kpxe (BIOS), snponly.efi and ipxe.efi (x86-64 UEFI) are Debian's, copied
// unmodified from the ipxe package 1.0.0+git-20190125.36a4c85-5.1 into bin/ and
// embedded with go:embed; bin/PROVENANCE names the package and the sha256 of each file,
// bin/COPYRIGHT and bin/GPL-2 carry the licence (see Notices). Binaries returns them as
// an fs.FS that TFTP and HTTP both serve.
//
// Debian ships no arm64 EFI iPXE, so rackboot has none built in: an arm64 host gets a
// binary only when the operator puts one in DATA_DIR/ipxe (for example
// DATA_DIR/ipxe/arm64-efi/snponly.efi, mirroring boot.ipxe.org's layout) and points the
// DHCP arm64 boot file at that name. OpenBinaries layers that directory, opened through
// os.Root so nothing outside it can be reached, over the embedded files: a file there
// replaces the embedded one of the same name (a newer iPXE build, say), and anything
// else falls through to the embedded set. The directory is opened once at start (one
// created later is picked up on the next restart); the files served over HTTP are kept
// in memory and compared with it at most once a second (see HTTP), so a file replaced
// there is served within a second.
//
// # Scripts
//
// RenderScript is a pure function from (host or unknown MAC, discovery policy, server
// URL, agent boot environment) to script bytes. The decision, in order:
//
//   - unknown MAC, discovery off: no script (ErrNoScript; HTTP 404), so the firmware
//     falls through to its next boot device as if rackboot were not there.
//   - unknown MAC, discovery on: the agent's boot environment, to inspect and enrol the
//     machine; until provisioning provides one (BootEnv is nil), a script that says so
//     and exits.
//   - a host with a boot profile: boot it, whatever the state (an explicit operator
//     instruction, like Matchbox profiles or pixiecore).
//   - discovered, inspecting, provisioning, deprovisioning: these states need the agent;
//     boot BootEnv when set, else say so and exit to local boot.
//   - enrolled, available, provisioned, failed: exit to local boot, with an echo of why.
//
// "Exit to local boot" is iPXE's exit: control returns to the firmware, which tries the
// next boot device, so hosts must list network before disk in their boot order (the
// usual setting for managed racks). sanboot of a local disk is not used because its
// drive numbering differs between BIOS and UEFI machines.
//
// A kernel or initrd given as a bare path ("debian/vmlinuz") is served by rackboot
// from DATA_DIR/assets and becomes ${base}/assets/debian/vmlinuz, where the script sets
// base to the server URL; http, https and tftp URLs are used as given. Every initrd is
// fetched with an explicit --name and named on the kernel line as initrd=NAME, so a
// UEFI kernel's EFI stub finds it (BIOS kernels ignore the argument).
//
// The kernel command line may use exactly three placeholders, {{.MAC}} (the MAC that
// asked for the script), {{.HostID}} (empty for unknown hosts) and {{.ServerURL}}.
// They are substituted literally: this is not text/template, there are no functions,
// pipelines or conditionals, and anything else between {{ and }} is an error, so a
// host's profile can never run code in rackboot. Because iPXE splits lines on spaces and
// treats the tokens "||", "&&", ";" and a leading "#" specially, a command line holding
// such a token, or any control character, is refused rather than escaped (iPXE has no
// quoting). iPXE settings such as ${net0/mac} are left for iPXE to expand, on purpose.
// ValidateCmdline lets the admin API refuse a bad command line when it is written.
//
// BootEnv is the extension point for provisioning: HandlerConfig.BootEnv (kernel,
// initramfs, command line with the same placeholders) is what the four agent states
// boot. When HandlerConfig.AgentTokens is set (the provisioner), a script that boots the
// agent first asks the trust gate (HandlerConfig.Gate) whether the fetch is the host's
// own — the boot key DHCP gave it (?key=), from the address it was given to; in DHCP off
// mode, the reservation — and then the provisioner for a fresh per-boot token bound to
// that address, and appends "rackboot.token=TOKEN" to
// the command line (ScriptInput.AgentArgs): so the script is a pure function of the
// host and that token. A provisioning host whose image is written (operation phase
// disk-boot) exits to its local disk instead, so a host that still network-boots first
// runs its new system and its cloud-init rather than the agent again.
//
// # HTTP
//
// Handler serves, with Go 1.22 ServeMux patterns:
//
//	GET /ipxe/boot.ipxe?mac=MAC[&key=KEY]  the host's script (ParseScriptRequest)
//	GET /ipxe/MAC/boot.ipxe                the same, for firmware that cannot send a query
//	GET /ipxe/bin/NAME                     an iPXE binary, for UEFI HTTP boot
//	GET /assets/PATH                       a file under DATA_DIR/assets, with Range
//
// The two /ipxe/X/Y forms share one pattern ("/ipxe/{seg}/{file}"), because ServeMux
// refuses "/ipxe/{mac}/boot.ipxe" beside "/ipxe/bin/{name}" (both match
// /ipxe/bin/boot.ipxe and neither is more specific); nested binary names
// (arm64-efi/snponly.efi) have their own pattern.
//
// Every fetch is logged (at info, the attributes built only when the line is written),
// counted in rackboot_http_requests_total{route,code} and
// rackboot_http_request_duration_seconds{route}, and recorded on a host's timeline:
// scripts on the host the MAC names (with the source address, whether it brought a key
// and the address an agent token was bound to), a refused one as http.script.rejected
// (403, no token: the running agent keeps its own); binaries and assets on the host the
// gate says the source address is (trust.Gate.WhoForTimeline: an answer up to a second
// old, so a storm of fetches costs no inventory read each; nothing when the address is
// nobody's). The events of binaries and assets are queued for the inventory's group
// commit (Store.RecordEvents): no transaction or fsync per request, committed within
// about 50 ms in the order queued, behind the DHCP and TFTP events of the same boot.
// Script events are written at once (AppendEvent): a script that boots the agent
// writes its token anyway, the others are bounded per source address, and the agent's
// events, written directly, must not overtake them on the timeline. The source address is the TCP peer:
// rackboot serves the provisioning network directly and trusts no X-Forwarded-For.
// There is no unauthenticated phone-home: an installed system phones home to its
// per-provisioning metadata URL (package metadata).
//
// Binaries and assets are served from memory (package hotfile): read at the first
// request, kept with a strong ETag (from their SHA-256) and their modification time,
// compared with their directory at most once a second (the embedded binaries never),
// and sent with sendfile(2) from a memfd on Linux. Range, If-Range, If-None-Match,
// If-Modified-Since and HEAD are http.ServeContent's. A file larger than 128 MiB, or
// beyond 512 MiB kept in all, is served from its directory at each request as before.
// Profiled with 64 clients fetching snponly.efi on loopback (BenchmarkBinaryOverTCP),
// a request used to open the file, copy it through a fresh 32 KiB buffer in six
// writes, read the inventory twice (Who: the host by address, then every host) and
// build log attributes that were then discarded: about 190 us of CPU and 42 KB
// allocated per request (clients included), now about 130 us and 7 KB. Beside nginx
// (hack/bench-compare.sh, ONLY=http: wrk, 64 connections, snponly.efi, server and load
// pinned to one CPU each, on a 2-CPU VM that other jobs kept busy), rackboot served
// 0.90x nginx's requests per second (3440 against 3830) at 0.90x its CPU time per
// request (72 against 80 us); before, 0.39x. A rendered script is dearer than nginx's
// static copy of it (0.58x, 48 against 19 us).
//
// Transfers get per-request write deadlines instead of a server-wide WriteTimeout:
// scripts must be written within ScriptTimeout, while binaries and
// assets only need to keep moving (each write extends the deadline by StallTimeout), so
// a large initrd on a slow link is never cut off. The http.Server should set
// ReadHeaderTimeout and IdleTimeout, and no WriteTimeout.
package ipxe
