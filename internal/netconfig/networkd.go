package netconfig

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// File is one file of a rendered configuration.
type File struct {
	Path     string
	Contents string
	Mode     fs.FileMode
}

// networkdDir is where the units go: /etc, so that they survive updates of a
// read-only /usr (Flatcar) and sort among the administrator's files.
const networkdDir = "/etc/systemd/network/"

// networkdPrefix starts every file name. systemd-networkd and udev use the first
// .network and .link file, in lexical order, that matches a link, so "10-" lets the
// image's catch-alls (Flatcar's zz-default.network, systemd's 99-default.link) come
// after rackboot's, and an operator's 05-*.network, or a drop-in such as
// 10-rackboot-bond0.network.d/mtu.conf, override them.
const networkdPrefix = "10-rackboot-"

// Networkd renders s as systemd-networkd units under /etc/systemd/network/, for hosts
// configured by Ignition (Flatcar, Fedora CoreOS):
//
//   - per ethernet, a .link naming the NIC and a .network configuring it, both matched
//     by PermanentMACAddress= (systemd 245 and later): a bond takes a member's MAC
//     (and a VLAN its parent's), so MACAddress= would match those too, and a member's
//     current MAC is the bond's, so it would stop matching the member;
//   - per bond and per VLAN, a .netdev creating it and a .network, matched by name;
//   - Bond= and PrimarySlave= on members, VLAN= on parents, routes and DNS on the
//     interfaces the layout chose, as CloudInit does.
//
// Files come in a fixed order: ethernets, bonds, VLANs, each in spec order. s is
// normalized and validated first; an invalid s gives Validate's error and no files.
func Networkd(s Spec) ([]File, error) {
	l, err := prepare(s)
	if err != nil {
		return nil, err
	}
	var files []File
	for _, e := range l.spec.Ethernets {
		var link unit
		link.section("Match")
		link.set("PermanentMACAddress", e.MAC)
		link.section("Link")
		link.set("Name", e.Name)
		files = append(files, link.file(e.Name, "link", fmt.Sprintf("names the NIC %s %s", e.MAC, e.Name)))

		var nw unit
		nw.section("Match")
		nw.set("PermanentMACAddress", e.MAC)
		if b, member := l.bondOf[e.Name]; member {
			nw.section("Network")
			// A member has no address of its own, not even a link-local one.
			nw.set("LinkLocalAddressing", "no")
			nw.set("Bond", b.Name)
			if b.Primary == e.Name {
				nw.set("PrimarySlave", "true")
			}
		} else {
			l.networkCommon(&nw, e.Name, e.MTU, e.DHCP4, e.Addresses, false)
		}
		files = append(files, nw.file(e.Name, "network", "configures "+e.Name))
	}
	for _, b := range l.spec.Bonds {
		var nd unit
		nd.section("NetDev")
		nd.set("Name", b.Name)
		nd.set("Kind", "bond")
		if b.MTU != 0 {
			nd.set("MTUBytes", strconv.Itoa(b.MTU))
		}
		nd.section("Bond")
		nd.set("Mode", b.Mode)
		nd.set("MIIMonitorSec", strconv.Itoa(miimon(b))+"ms")
		if b.LACPRate != "" {
			nd.set("LACPTransmitRate", b.LACPRate)
		}
		if b.TransmitHashPolicy != "" {
			nd.set("TransmitHashPolicy", b.TransmitHashPolicy)
		}
		files = append(files, nd.file(b.Name, "netdev", "creates the bond "+b.Name+" of "+strings.Join(b.Members, ", ")))

		var nw unit
		nw.section("Match")
		nw.set("Name", b.Name)
		l.networkCommon(&nw, b.Name, b.MTU, false, b.Addresses, true)
		files = append(files, nw.file(b.Name, "network", "configures "+b.Name))
	}
	for _, v := range l.spec.VLANs {
		var nd unit
		nd.section("NetDev")
		nd.set("Name", v.Name)
		nd.set("Kind", "vlan")
		if v.MTU != 0 {
			nd.set("MTUBytes", strconv.Itoa(v.MTU))
		}
		nd.section("VLAN")
		nd.set("Id", strconv.Itoa(v.ID))
		files = append(files, nd.file(v.Name, "netdev", fmt.Sprintf("creates VLAN %d on %s", v.ID, v.Link)))

		var nw unit
		nw.section("Match")
		nw.set("Name", v.Name)
		l.networkCommon(&nw, v.Name, v.MTU, false, v.Addresses, true)
		files = append(files, nw.file(v.Name, "network", "configures "+v.Name))
	}
	return files, nil
}

// networkCommon writes the [Link], [Network], [DHCPv4] and [Route] sections of an
// interface that is not a bond member.
func (l layout) networkCommon(u *unit, name string, mtu int, dhcp4 bool, addrs []string, virtual bool) {
	addressless := !dhcp4 && len(addrs) == 0
	if mtu != 0 || addressless {
		u.section("Link")
		if mtu != 0 {
			u.set("MTUBytes", strconv.Itoa(mtu))
		}
		if addressless {
			// It only carries VLANs: up, with no address, is as far as it gets, and
			// systemd-networkd-wait-online would otherwise wait for an address.
			u.set("RequiredForOnline", "carrier")
		}
	}
	u.section("Network")
	if dhcp4 {
		u.set("DHCP", "ipv4")
	}
	if addressless {
		u.set("LinkLocalAddressing", "no")
	}
	for _, a := range addrs {
		u.set("Address", a)
	}
	if l.dns == name {
		for _, a := range l.spec.Nameservers.Addresses {
			u.set("DNS", a)
		}
		if len(l.spec.Nameservers.Search) > 0 {
			u.set("Domains", strings.Join(l.spec.Nameservers.Search, " "))
		}
	}
	if virtual {
		// A bond or VLAN has carrier only once a member or its parent has; configure it
		// meanwhile, as netplan does, so its addresses and routes do not wait on LACP.
		u.set("ConfigureWithoutCarrier", "yes")
	}
	for _, v := range l.vlans[name] {
		u.set("VLAN", v.Name)
	}
	if dhcp4 {
		u.section("DHCPv4")
		// The MAC, as dhclient uses: networkd's default is an ID from the machine ID,
		// which changes on every install, and with it the lease a DHCP server keys on it.
		u.set("ClientIdentifier", "mac")
	}
	for _, r := range l.routes[name] {
		u.section("Route")
		u.set("Destination", r.To)
		u.set("Gateway", r.Via)
		if r.Metric != 0 {
			u.set("Metric", strconv.Itoa(r.Metric))
		}
	}
}

// unit builds a systemd unit file: sections of Key=Value lines.
type unit struct{ b strings.Builder }

func (u *unit) section(name string) {
	if u.b.Len() > 0 {
		u.b.WriteString("\n")
	}
	fmt.Fprintf(&u.b, "[%s]\n", name)
}

func (u *unit) set(key, value string) { fmt.Fprintf(&u.b, "%s=%s\n", key, value) }

func (u *unit) file(name, ext, what string) File {
	return File{
		Path:     networkdDir + networkdPrefix + name + "." + ext,
		Contents: "# rackboot " + what + ", from this host's network spec.\n" + u.b.String(),
		Mode:     0o644,
	}
}
