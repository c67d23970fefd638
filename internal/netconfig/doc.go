// Package netconfig owns a host's network as its installed OS configures it: the Spec
// an operator sets (NICs found by MAC, bonds, VLANs, routes, DNS), its validation, and
// its rendering as cloud-init network-config version 2 (CloudInit, for NoCloud hosts) and
// as systemd-networkd units (Networkd, for Ignition hosts). It is pure: no I/O, no
// state. The API, CLI, CRD and metadata wiring live with those packages.
//
// # Use
//
// Validate(spec, nics) where the spec is set, with the host's inspected NICs (without
// them a MAC cannot be checked; validate again after inspection). Normalize gives the
// canonical form to store; storing what the operator wrote works as well. CloudInit and
// Networkd normalize and validate again (without NICs) and render nothing invalid.
// Default is the spec of a host that has none. Error messages name fields under
// "network" (network.bonds[0].members), the field the Spec is meant to sit under.
//
// # Decisions
//
//   - An Ethernet is matched by its permanent MAC and renamed to its Name (set-name, a
//     .link file), so names do not depend on the installed kernel's naming.
//   - A gateway is a Route (cloud-init's gateway4 is deprecated). A route goes on the
//     interface whose static subnet holds its gateway, or on the one it names (needed
//     for a gateway behind a DHCP interface).
//   - Network config v2 and networkd have no global DNS: the nameservers go on the
//     default route's interface, else the first with a static address, else the first
//     with DHCP. Search domains need nameservers (cloud-init refuses a nameservers
//     entry without addresses, in every version).
//   - Subnets on two interfaces may not overlap: the kernel would route the subnet out
//     of one of them only. Addresses of one subnet on one interface are fine.
//   - A VLAN is named LINK.ID (bond0.100): the only name Debian's ifupdown can create a
//     VLAN from without the vlan package.
//   - Interface names are letters, digits, '-' and '_', at most 15 bytes (Linux); '.'
//     and ':' mean VLAN and alias to ifupdown. Avoid ethN: the kernel hands out those
//     names too, and a rename into a name in use races it.
//   - A bond watches its links every 100 ms unless told otherwise (miimon), whatever
//     the kernel's default for the way it is created.
//   - DHCP sends the MAC as client identifier, as dhclient does: networkd and netplan
//     default to one derived from the machine ID, which changes on every install.
//   - A bond's MAC is left to the OS: ifenslave (ENI) gives it its first member's,
//     networkd (netplan, Networkd) one derived from the machine ID and bond name.
//
// # What the installed image needs
//
// cloud-init converts network-config with the first renderer its image has: on Debian
// (no netplan) the ENI renderer when ifupdown is installed, on Ubuntu netplan. Checked
// by running cloud-init 22.4.2 (Debian 12 ships 22.4.2-1+deb12u4) and cloud-init's
// main branch on the golden files in testdata/.
//
// ENI renderer, Debian 12 (cloud-init 22.4.2, ifupdown 0.8.41). cloud-init writes
// /etc/network/interfaces.d/50-cloud-init, which /etc/network/interfaces must source
// (the lab image's does), and udev rules naming each NIC by MAC
// (/etc/udev/rules.d/70-persistent-net.rules).
//
//   - static addresses, DHCP: ifupdown, isc-dhcp-client, iproute2 (in the lab image).
//   - bonds: ifenslave. Without it ifupdown ignores bond-master and bond-slaves and no
//     bond appears. The bond gets bond-slaves none, its members bond-master, both every
//     bond-* option.
//   - VLANs: nothing more. ifupdown 0.8 creates LINK.ID itself (ip link add … type
//     vlan) and brings LINK up; the vlan package is needed only for other names.
//   - static routes and gateways: net-tools. cloud-init before 25.3 writes them as
//     "post-up route add … || true", so without /sbin/route they are silently missing;
//     25.3 and later use ip route when it is there.
//   - DNS: resolvconf. ifupdown hands dns-nameservers and dns-search to it; without it
//     they are ignored and, with static addresses, nothing writes /etc/resolv.conf
//     (dhclient writes it for DHCP).
//
// So a Debian 12 image needs ifenslave, net-tools and resolvconf for bonds, routes and
// DNS; the lab image (hack/lab-image.sh) has none of the three yet.
//
// What the ENI renderer of cloud-init 22.4 does not carry over:
//
//   - route metrics (dropped from v2 routes until 23.3);
//   - IPv6 routes, when the interface's first address is IPv4: every route of an
//     interface goes under its first address's stanza, so a route of the other family
//     is tried before that family's address exists, and fails silently (fixed in
//     25.2); an IPv6 default route ::/0 also comes out as ::/64 (fixed in 23.1);
//   - the MTU of an ethernet that has no address and is no bond member (a NIC that only
//     carries VLANs): it gets no auto stanza, so ifupdown brings it up for the VLAN but
//     never applies its mtu line, and a VLAN on it cannot go above 1500 bytes. A bond
//     carrying VLANs is not affected;
//   - "to: default" (parsed from 25.3): CloudInit writes 0.0.0.0/0 or ::/0.
//
// Harmless oddities of 22.4: the nameservers are written on lo as well, and an extra
// "dns {…}" option line that ifupdown ignores (gone in 25.2).
//
// netplan (Ubuntu). cloud-init passes the document through unchanged to
// /etc/netplan/50-cloud-init.yaml; netplan.io and its networkd backend need nothing
// more for bonds and VLANs. netplan 0.106 and later match a MAC with
// PermanentMACAddress=, earlier ones with MACAddress= and Type=!vlan bond bridge, so in
// both a bond or VLAN sharing a member's MAC is not taken for the member. Metrics,
// IPv6 routes and MTUs carry over. mii-monitor-interval is written as a string, which
// netplan takes as milliseconds and cloud-init's v2 schema requires.
//
// cloud-init's own networkd renderer (a Debian or other image with neither ifupdown nor
// netplan): no bonds or VLANs before 25.2 (22.4 writes .network files only: no .netdev,
// no Bond=, no VLAN=); 25.2 and later render them. Give such an image ifupdown or
// netplan, or configure it through Ignition.
//
// Networkd (Ignition: Flatcar, Fedora CoreOS) needs systemd 245 or later for
// PermanentMACAddress=; both ship far newer. The .network files find their NICs by
// permanent MAC, not by name, so addresses, bonding and VLANs do not depend on the
// .link rename, which udev does not do to a link already up (one the initrd used). A
// NIC or bond with no address of its own (it carries VLANs) is RequiredForOnline=carrier,
// so systemd-networkd-wait-online does not wait for an address it will never get. A
// static route on a DHCP interface gets GatewayOnLink= from networkd (it says so when
// it loads the file), so the route does not wait for the lease.
package netconfig
