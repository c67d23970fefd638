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
// needs: read requests (RFC 1350), options (RFC 2347, 2348, 2349, 7440), blocks read
// in place with io.ReaderAt, nothing allocated per packet. Generic parts still
// come from libraries: golang.org/x/net/ipv4 and ipv6 for the request's destination
// address and interface (IP_PKTINFO), pin/tftp's netascii conversion. pin/tftp's
// client stays in the tests as an independent implementation to check this one
// against, beside curl, tftp-hpa and atftp.
//
// # One event loop and one port, not a goroutine and a socket per transfer
//
// A transfer's protocol is a state machine with no socket or clock of its own (xfer,
// transfer.go): it is handed the client's packets and the time, and writes what they
// call for. On Linux one goroutine runs the server port and every transfer
// (engine_linux.go): it waits on an epoll set of its few sockets, and a sweep every
// 10 ms sends again what timed out. Ended transfers go to one more goroutine, which
// counts and records them (a store lookup never holds up packets). Elsewhere, and in
// tests beside the loop, each transfer runs in a goroutine of its own on a socket of
// its own (goroutineEngine), as the whole server did until December 2026.
//
// The loop answers every client from one port per local address (bound to the
// address the request came to, on a port the kernel chose, not 69), and tells the
// transfers apart by the client's address and port, the client's TID. Their ACKs are
// read up to 64 per recvmmsg, and the blocks the loop wrote while handling one wake-up
// leave in one sendmmsg (internal/udpbatch). dnsmasq's --tftp-single-port answers from
// one port too (69 itself; this one is not, so that a client's next request is never
// mistaken for a transfer's packet). What that means for a client:
//
//   - Its transfer's packets come from a port it did not choose, as RFC 1350 wants,
//     and the pair of ports still names one transfer. A client asking again from the
//     same port (it started over, or its request crossed the OACK) gets a new
//     transfer, and the old one ends (outcome failed, no error packet: the port is
//     the new transfer's now).
//   - Packets from no transfer's client (late ones, a stranger's) are read, dropped and
//     counted in rackboot_tftp_dropped_packets_total.
//   - A closed client port (ICMP port unreachable) ends its transfer at once, as a
//     connected socket's error did: the port reads its error queue (IP_RECVERR), which
//     names the client.
//   - An attacker who knows a client's address and port can end that client's transfer
//     with a forged request or ERROR, as a forged ERROR to a port of its own always
//     could (the server's port was 16 more bits to guess; it is not a secret on the
//     wire). TFTP has no authentication, serves only the public iPXE binaries, and a
//     PXE client whose transfer fails asks again.
//
// Why: a boot storm is lock-step transfers of small blocks, so the server's work is
// one ACK in and one block out, over and over, for many clients at once. A goroutine
// per transfer on Go's net sockets paid, per block, a read that found nothing (the
// ACK was not there yet right after the block went out), a park and a wake-up
// through the netpoller, and a new read deadline (a timer), and per transfer a
// socket opened and closed; on the one CPU a storm's server gets, that made its CPU
// per transfer 1.13x dnsmasq's and its rate 0.84x (64 clients, undionly.kpxe,
// blksize 1468, with a tftp.read event per transfer; hack/bench-compare.sh). A loop
// over one connected socket per transfer (epoll, plain non-blocking system calls)
// brought the CPU per transfer to dnsmasq's, which makes the same calls. On this
// paravirtualised machine a system call's entry and exit were then about 30 % of the
// server's CPU (perf), one recvfrom, one sendto and part of an epoll_wait per block;
// sharing one socket lets a batch of ACKs and blocks cross in one call each: 0.44 ms of
// CPU per transfer against 0.46-0.47 with a socket per transfer and dnsmasq's 0.52,
// 1.12x dnsmasq's rate where the socket per transfer made 1.07x, and p99 0.87x where
// it made 0.97x (three interleaved runs, December 2026, with tftpload's event loop,
// which costs less than either server). Nor does a storm cost a socket, a bind or an
// epoll registration per transfer any more. The loop itself never blocks a thread: it
// waits for the epoll descriptor through Go's netpoller like any socket read, so the
// rest of rackboot shares the CPU with it without a thread hand-off per wake-up (an
// epoll_wait that blocked its thread left the server idle a quarter of the time, at
// 0.69x dnsmasq's rate).
package tftp
