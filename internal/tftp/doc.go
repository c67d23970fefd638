// Package tftp owns rackboot's TFTP service: a read-only server for the iPXE binaries
// that PXE firmware fetches before it can speak HTTP.
//
// What it does and why:
//
//   - Read-only. A write request gets an error packet and is counted; nothing is
//     ever written.
//   - Names are parsed by CleanPath (a pure function, fuzzed) and opened only through
//     the fs.FS in Config (the embedded binaries, possibly with DATA_DIR/ipxe layered
//     over them via os.Root), so no request can reach a file outside it. Files up to
//     32 MiB are kept in memory (package hotfile, checked against the FS once a second,
//     so a replaced file is served within a second), so that a block is a copy and
//     the event loop never waits for a disk; larger ones are read from the FS.
//   - Options (packet.go, pure): blksize (RFC 2348), clamped so that a DATA packet fits
//     the MTU of the interface the request came in on and never fragments; tsize (RFC
//     2349), answered from the file's size; timeout (RFC 2349), taken only when it is
//     no longer than Config.Timeout, so a client cannot hold a transfer longer than the
//     server would; windowsize (RFC 7440), capped at MaxWindowSize (64). The OACK echoes
//     what was accepted and leaves out the rest. A client that asks for nothing gets RFC
//     1350 exactly: 512-byte blocks, one per ACK, no OACK. OVMF's and SeaBIOS/iPXE's
//     PXE ask blksize and tsize and get lock-step; a client that asks windowsize N gets
//     N blocks per ACK (transfer.go): a window is sent again from the block after the
//     last one acknowledged when the client ACKs an earlier block than the window's last
//     (it saw a gap) or when no ACK comes within the timeout; older and duplicate ACKs
//     are ignored. Modes: octet and netascii (converted by pin/tftp's netascii package);
//     others are refused.
//   - Every transfer ends with one log line, rackboot_tftp_transfers_total{file,outcome},
//     rackboot_tftp_bytes_total (file bytes the client acknowledged), a duration
//     observation and, when the client's address belongs to a host, a tftp.read event
//     on that host's timeline, queued at once for the inventory's group commit
//     (record.go says why). The file label is the served name, or "unknown" for names
//     that were refused or not found, so a client cannot grow the metric without
//     bound. Packets that are not a valid request are dropped and counted in
//     rackboot_tftp_dropped_packets_total.
//   - Limits: at most MaxTransfers transfers at once, and MaxTransfersPerSource from
//     one client address. A request beyond either gets one TFTP error packet ("server
//     busy", no bigger than the request, so a spoofed source gains nothing), writes no
//     timeline event, and is counted in rackboot_tftp_limited_total{limit}. Without
//     them, 30,000 read requests from one socket held 19,873 file descriptors, and each
//     request made the server resend a data block to a possibly spoofed source for
//     Timeout × Retries (≈180× amplification). A PXE client runs one transfer at a
//     time (UEFI two, briefly: the tsize probe it aborts, then the file).
//   - Shutdown (ctx cancelled) stops accepting requests, closes the server port and
//     waits for transfers in flight and their events; one whose client went silent
//     ends after Timeout × Retries (a window or OACK is sent Retries times).
//
// # Why rackboot has its own TFTP server
//
// The service ran on github.com/pin/tftp/v3 (v3.2.0) until issue 11 asked for RFC 7440
// windowsize and for dnsmasq's speed in a boot storm. The project's rule is a
// well-kept library over hand-written code for anything generic; no Go library serves
// both goals:
//
//   - pin/tftp, the maintained one, has no windowsize: it drops options it does not
//     know, and its sender is unexported, so adding RFC 7440 means a fork. Its
//     "anticipate" mode sends several blocks per ACK without negotiating it, which PXE
//     firmware does not expect. In a storm it also paid, per request, a netlink dump
//     of every interface (net.InterfaceByIndex, to learn the MTU: a third of all the
//     bytes the server allocated), slept a random 0-1 s before every retransmission,
//     and clamped blksize to MTU-28, 4 bytes too many for an unfragmented packet.
//   - pack.ag/tftp (github.com/vcabbage/trivialt) implements windowsize but has had no
//     release since 2018.
//   - Others found (lfkeitel/tftp-go, JNPRAutomate/nitro-tftp) list RFC 7440 as to do.
//
// So this package has its own sender, kept small by doing only what a PXE server
// needs: read requests (RFC 1350), options (RFC 2347, 2348, 2349, 7440), one connected
// socket per transfer (the kernel hands it only its client's packets; nothing is
// allocated per packet), blocks read in place with io.ReaderAt. Generic parts still
// come from libraries: golang.org/x/net/ipv4 and ipv6 for the request's destination
// address and interface (IP_PKTINFO), pin/tftp's netascii conversion. pin/tftp's
// client stays in the tests as an independent implementation to check this one
// against, beside curl, tftp-hpa and atftp.
//
// # One event loop, not a goroutine per transfer
//
// A transfer's protocol is a state machine with no socket or clock of its own (xfer,
// transfer.go): it is handed the client's packets and the time, and writes what they
// call for. On Linux one goroutine runs the server port and every transfer
// (engine_linux.go): it waits on an epoll set of all their sockets, reads the packet a
// ready socket holds, and answers it at once; a sweep every 10 ms sends again what
// timed out. A transfer's socket is kept when it ends and connected to a later client
// (oldest first, so TIDs do not repeat). Ended transfers go to one more goroutine,
// which counts and records them (a store lookup never holds up packets). Elsewhere,
// and in tests beside the loop, each transfer runs in a goroutine of its own
// (goroutineEngine), as the whole server did until December 2026.
//
// Why: a boot storm is lock-step transfers of small blocks, so the server's work is
// one ACK in and one block out, over and over, for many clients at once. A goroutine
// per transfer on Go's net sockets paid, per block, a read that found nothing (the
// ACK was not there yet right after the block went out), a park and a wake-up
// through the netpoller, and a new read deadline (a timer), and per transfer a
// socket opened and closed; on the one CPU a storm's server gets, that made its CPU
// per transfer 1.13x dnsmasq's and its rate 0.84x (64 clients, undionly.kpxe,
// blksize 1468, with a tftp.read event per transfer; hack/bench-compare.sh). The
// loop reads only sockets that epoll says hold a packet and sends with plain
// non-blocking system calls, so what is left is mostly the kernel's own cost of the
// two datagrams: the profile is send 62%, recvfrom 11%, epoll 5-10%, and the
// timeline events about 7%. That brought it to dnsmasq's level, which has the same
// kernel costs: 0.96-1.01x its rate, 1.01-1.08x its p99 and 0.94-0.98x its CPU per
// transfer (three runs of 3 rounds, December 2026; single rounds on the shared 2-CPU
// machine vary by 10%, and the load generator on the other CPU is nearly as busy as
// the server). The loop itself never blocks a thread: it waits for the epoll
// descriptor through Go's netpoller like any socket read, so the rest of rackboot
// shares the CPU with it without a thread hand-off per wake-up (an epoll_wait that
// blocked its thread left the server idle a quarter of the time, at 0.69x dnsmasq's
// rate).
package tftp
