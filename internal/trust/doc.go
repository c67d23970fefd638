// Package trust owns one question for every boot route: which host is asking, and what
// may it have. The DHCP service, the iPXE script, the binaries and boot environment, the
// agent API, the images and the per-host metadata all ask a Gate; none of them compares
// addresses itself. The provision package stays the only place that interprets host
// states: trust says who is asking, provision says what that host's state lets it do.
//
// # The binding
//
// A MAC address is no proof: any machine on the provisioning network can write any MAC
// into a DHCP packet or a URL. What a stranger on a switched network cannot do is receive
// a frame addressed to another machine's MAC. So rackboot hands each boot a secret only
// in a reply that travels to the host's own MAC and address:
//
//   - server mode: the OFFER and ACK to an iPXE client carry the script URL with a key
//     (…/ipxe/boot.ipxe?mac=MAC&key=KEY). They are sent as an Ethernet frame addressed
//     to the client's hardware address (chaddr), never broadcast, and the key is bound to
//     the address the reply gives (yiaddr: the reservation, or the lease).
//   - proxy mode: the proxyDHCP OFFER (broadcast on port 67) carries no boot file for
//     iPXE clients, so iPXE asks the PXE boot server port 4011 from its address; the
//     answer goes, by unicast, to that address and to the MAC the request names. The key
//     is bound to that address.
//   - relayed requests get a key only through a relay named in the configuration (the
//     subnet's router), which forwards the reply onto the host's own segment.
//   - off mode: the site's DHCP server cannot hand out our key. A script fetch gets an
//     agent token only when the host has a reserved address and the fetch comes from it:
//     the operator's reservation, mirrored in the site DHCP, is the binding. Hosts without
//     one can be booted to local disk or a boot profile, never given an agent token, in
//     off mode.
//
// A script fetch that would boot the agent must bring a live key for its MAC and come
// from the key's address; and when the host has a reserved address, the key must be bound
// to it. Only then does provision issue an agent token, itself bound to that address: the
// agent API answers that address only, the plan's metadata URL serves user-data and
// Ignition to it only, and images go only to it. A request from anywhere else changes
// nothing — it does not issue a token, so it cannot cancel the running agent's — and it
// leaves a rejected event on the named host (kept apart from the capped timeline, see the
// inventory) and a count in rackboot_trust_rejected_total{route,reason}. Rejected events
// are rate-limited per source address, so a stranger's flood costs a counter, not the
// disk.
//
// # What this defends against, and what it does not
//
// At L3 — another machine at another address that knows (or guesses) a victim's MAC and
// can send any packet from its own port — it can get no key, token, plan, user-data,
// Ignition or image, and cannot change the victim's state. At L2 a machine that takes the
// victim's MAC address (MAC spoofing, flooding the switch's table so that unicast frames
// are flooded) or its IP address (ARP spoofing) receives the victim's frames: that needs
// the switch — port security, DHCP snooping and IP source guard, dynamic ARP
// inspection — on the provisioning network. See the README's threat model.
package trust
