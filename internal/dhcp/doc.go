// Package dhcp owns rackboot's DHCPv4 service: addresses for the rack's hosts, and the
// boot options (PXE, UEFI HTTP boot, iPXE) that bring them to rackboot's TFTP and HTTP
// servers. It is built on github.com/insomniacslk/dhcp.
//
// # Shape
//
// Handler is the protocol: a request (plus which socket and peer it came from) in, a
// reply and its destination out. Server owns the sockets: it binds Config.Port (and
// Config.ProxyPort in proxy mode) to Config.Interface with SO_BINDTODEVICE, reads
// packets into a bounded queue, and Config.Workers workers handle them concurrently
// and write what the Handler returns. Tests drive the Handler directly or give the
// Server their own connection (WithConn).
//
// Where to read what:
//
//   - socket.go: the socket loop (Server, Start, the reader and the workers), l2_linux.go
//     the Ethernet frames that carry boot keys, sockopt_*.go the socket options.
//   - queue.go: the overload policy between the reader and the workers.
//   - handler.go: what every mode shares (parsing, the host lookup and discovery
//     policy, events, reply building and destinations).
//   - acks.go: the reply senders; encode.go: replies to bytes without allocating;
//     internal/udpbatch: recvmmsg and sendmmsg as raw system calls (why: there).
//   - authoritative.go: server mode (RFC 2131: DISCOVER, REQUEST, DECLINE, RELEASE,
//     INFORM).
//   - proxy.go: proxy mode (proxyDHCP and the PXE boot server port).
//   - netboot.go: what a client is (PXE, HTTP boot, iPXE, arch) and its boot options.
//
// # Throughput and durability
//
// Leases live in the inventory's memory with the bbolt file as their durable copy,
// written by group commit (inventory.BoltStore): everything changed while one commit
// runs shares the next transaction and fsync, with the DHCP timeline events. An ACK is
// sent only after its lease is durable; an OFFER is not waited for (it promises
// nothing, and a crash just makes the client ask again). A commit lingers up to 50 ms
// for more changes once an ACK waits for it (as ISC dhcpd's delayed-ack does; less once
// 64 wait), and writes only each MAC's last change of its batch, so a DORA's offer and
// ACK cost one lease write. Workers send no replies: the worker that decided an ACK does
// not wait for the commit, one sender (acks.go) sends ACKs in order as their commits
// tell them, many per sendmmsg, paced so that a commit's burst does not overflow a
// relay's socket; another sends every other reply (OFFERs, NAKs) at once, also batched. Packets
// of one MAC are decided one at a time (striped locks); packets of different MACs
// concurrently, by the worker that went idle last (queue.go). The socket loop reads many
// packets per recvmmsg, and a quiet server (under 5,000 packets/s) reads at most every
// 10 ms, which spares the Go runtime a wakeup per packet. Under overload the queue sheds
// duplicates, then the oldest waiting packets, and serves REQUESTs before DISCOVERs;
// the socket's receive buffer (4 MiB) holds bursts for it to shed instead of the
// kernel. Per-packet logs are at DEBUG: the metrics and the timelines tell the story.
//
// # Modes
//
//   - server: rackboot is the DHCP server of Config.Subnets (RFC 2131). Hosts enrolled
//     with a reserved IP get that address; other known hosts, and unknown MACs when
//     Config.UnknownHosts is discover, get the lowest free address of the subnet's
//     range. Leases live in the inventory (Store), so a restart forgets nothing and a
//     returning client gets its previous address back while nobody else holds it.
//   - proxy: another DHCP server hands out addresses; rackboot answers only PXE and
//     HTTP boot clients, with an address-less OFFER carrying the boot options on port
//     67 and an ACK on the PXE boot server port 4011 (PXE specification 2.1). Non-boot
//     traffic is left to the site's server. The port 67 socket sets SO_REUSEADDR and
//     SO_REUSEPORT so it can share the port with a DHCP server on the same host.
//   - off: nothing listens; the site's DHCP server must point clients at rackboot.
//
// # Policy
//
// Unknown MACs (not in the inventory) get no answer at all under "ignore", in both
// modes, so that rackboot never captures machines it was not asked to manage. Under
// "discover" they are served, and an unknown PXE or HTTP boot client is enrolled as a
// host in state "discovered" (ID from inventory.DefaultID) so it shows up for the
// operator. Option 93 teaches the inventory each host's arch and firmware.
//
// Netboot clients are told (see Boot): BIOS (arch 0) → undionly.kpxe over TFTP;
// x86-64 UEFI (7, 9) → snponly.efi over TFTP; UEFI HTTP boot (vendor class
// HTTPClient, arch 16) → http://SERVER/ipxe/bin/snponly.efi; arm64 → Boot.ARM64File
// when configured, else no boot options; iPXE (user class "iPXE" or option 175) →
// http://SERVER/ipxe/boot.ipxe?mac=MAC, which breaks the iPXE → iPXE boot loop. PXE
// replies echo option 60 and the client's UUID (97) and carry option 43 with
// PXE_DISCOVERY_CONTROL = 8, so ROMs boot the offered file without boot server
// discovery or menus. Clients that are not netbooting get no boot options at all.
//
// # Choices where the RFCs leave room
//
//   - An offered address is held (a lease in state "offered") for Config.OfferHold
//     (1m), so two clients are never offered the same address; a REQUEST naming another
//     server frees it at once. Offers are kept durably only on a best-effort basis:
//     after a crash an unACKed offer may be forgotten, which costs the client a retry.
//   - INIT-REBOOT and RENEWING/REBINDING requests from clients we have no record of are
//     not answered (RFC 2131 §4.3.2: lets non-communicating servers share a wire);
//     with a record, a wrong address or network is NAKed, the right one ACKed.
//   - Replies go to the relay (giaddr:67) when relayed, else to ciaddr:68 when set, else
//     are broadcast to 255.255.255.255:68; rackboot never injects ARP entries to unicast
//     to an address the client does not have yet. NAKs are broadcast (RFC 2131 §4.1).
//     A reply that carries iPXE's boot key (Config.Keys, package trust) is the
//     exception: the Server sends it from a packet socket as an Ethernet frame to the
//     client's MAC (chaddr), whatever its IP destination, so that no other port of a
//     switch sees the key. The key is bound to the address the reply gives (server
//     mode) or answers (the PXE port, proxy mode); the broadcast proxy OFFER carries no
//     boot file for iPXE, which then asks the PXE port. INFORM replies and replies
//     through a giaddr other than the subnet's router carry no key.
//   - Unknown MACs under discover are served at Discovery.Rate (burst Discovery.Burst)
//     and enrolled up to Discovery.MaxHosts discovered hosts; the rest get no answer
//     (rackboot_dhcp_discovery_refused_total{reason}). Events are rate-limited per MAC
//     (rackboot_dhcp_events_suppressed_total), since any packet can name any MAC.
//   - Relayed requests are served from the subnet containing giaddr; a giaddr in no
//     configured subnet is dropped and counted. Option 82 is echoed. In proxy mode no
//     subnet is needed: the relay just gets the boot options.
//   - A DECLINEd address is quarantined for Config.DeclineHold (10m) by a lease in
//     state "declined" held by the synthetic, locally administered MAC de:c1:A:B:C:D
//     (the address's bytes), so the quarantine survives restarts and does not stop the
//     client's next lease. A reserved address is never quarantined: the reservation
//     stands and the conflict is logged for the operator.
//   - RELEASE deletes the lease. Expired leases are kept until the address is reused,
//     so a client that comes back late usually gets its old address.
//   - No ICMP probe before offering: it costs seconds per offer (slow PXE ROMs time
//     out) and DECLINE covers the rare conflict.
//   - Option 121 (classless routes) goes only to clients that request it, with the
//     default route via the router appended, since RFC 3442 clients then ignore option 3.
//   - T1 is half the lease and T2 seven eighths; INFORM replies carry no lease times.
//   - BOOTP (no DHCP message type) and non-Ethernet clients are ignored.
//
// # Metrics and events
//
// rackboot_dhcp_packets_total{type,outcome} counts every packet: type is discover,
// request, decline, release, inform, bootp, other or unknown (unparseable); outcome is
// replied, accepted (RELEASE and DECLINE, which get no reply), ignored, dropped,
// malformed, nak or error. rackboot_dhcp_leases (server mode) is read from the
// inventory at scrape time. Known hosts get "dhcp.discover", "dhcp.offer", "dhcp.ack",
// "dhcp.nak", "dhcp.release" and "dhcp.decline" events with ip, arch, bootfile and
// relay fields. rackboot_dhcp_shed_total{reason} counts packets dropped unhandled under
// load (duplicate, queue_full, stale) and rackboot_dhcp_queue_length the packets
// waiting for a worker.
package dhcp
