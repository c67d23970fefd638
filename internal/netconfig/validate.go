package netconfig

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// FieldError is one thing wrong with a Spec: the field as the operator wrote it (e.g.
// network.bonds[0].members) and what is wrong with it. Validate joins them with
// errors.Join; an API can walk them (Unwrap() []error) to point at each field.
type FieldError struct {
	Field  string
	Detail string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Detail }

// root is the field the Spec is embedded under in rackboot's APIs, so that a message
// names the field as the operator wrote it.
const root = "network"

// Validate checks s against Linux, the renderers and, when nics is not empty, the host's
// inspected NICs, and returns every problem found (FieldErrors joined with errors.Join,
// in the order of the spec's fields), or nil.
//
// nics is the host's inventory. A host not inspected yet has none, and then an
// Ethernet's MAC cannot be checked against the hardware: a mistyped MAC shows only when
// the installed OS comes up without that NIC configured. Validate again once the host
// has been inspected.
//
// Validate normalizes s first (see Normalize), so messages show values in canonical
// form: MACs in lowercase, "default" as 0.0.0.0/0.
func Validate(s Spec, nics []NIC) error {
	v := newValidator(Normalize(s), nics)
	v.validate()
	return errors.Join(v.errs...)
}

type ifaceKind int

const (
	kindEthernet ifaceKind = iota
	kindBond
	kindVLAN
)

func (k ifaceKind) String() string {
	return [...]string{"ethernet", "bond", "VLAN"}[k]
}

// iface is an Ethernet, Bond or VLAN seen through what they have in common.
type iface struct {
	kind      ifaceKind
	index     int
	name      string
	path      string // network.ethernets[0]
	addresses []string
	dhcp4     bool
	mtu       int
}

// interfaces lists s's interfaces in the order the renderers write them: ethernets,
// bonds, VLANs, each in spec order.
func interfaces(s Spec) []iface {
	var out []iface
	for i, e := range s.Ethernets {
		out = append(out, iface{kindEthernet, i, e.Name, fmt.Sprintf("%s.ethernets[%d]", root, i), e.Addresses, e.DHCP4, e.MTU})
	}
	for i, b := range s.Bonds {
		out = append(out, iface{kindBond, i, b.Name, fmt.Sprintf("%s.bonds[%d]", root, i), b.Addresses, false, b.MTU})
	}
	for i, v := range s.VLANs {
		out = append(out, iface{kindVLAN, i, v.Name, fmt.Sprintf("%s.vlans[%d]", root, i), v.Addresses, false, v.MTU})
	}
	return out
}

// staticPrefixes are an interface's addresses that parse.
func (f iface) staticPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range f.addresses {
		if p, err := netip.ParsePrefix(a); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// routeInterface is the interface a route goes on: the one it names, else the first
// whose static subnet holds the gateway; "" if there is none. Validate and both
// renderers use this one rule.
func routeInterface(ifs []iface, r Route) string {
	if r.Interface != "" {
		return r.Interface
	}
	via, err := netip.ParseAddr(r.Via)
	if err != nil {
		return ""
	}
	for _, f := range ifs {
		for _, p := range f.staticPrefixes() {
			if p.Contains(via) {
				return f.name
			}
		}
	}
	return ""
}

// dnsInterface is the interface that carries the nameservers (cloud-init's network
// config v2 and networkd have no global DNS, only per interface): the default route's,
// else the first with a static address, else the first with DHCP.
func dnsInterface(ifs []iface, routes []Route) string {
	for _, r := range routes {
		if r.To == "0.0.0.0/0" || r.To == "::/0" {
			if name := routeInterface(ifs, r); name != "" {
				return name
			}
		}
	}
	for _, f := range ifs {
		if len(f.addresses) > 0 {
			return f.name
		}
	}
	for _, f := range ifs {
		if f.dhcp4 {
			return f.name
		}
	}
	return ""
}

type validator struct {
	s    Spec
	nics []NIC
	ifs  []iface
	errs []error

	byName   map[string]iface // the first interface of each name
	memberOf map[string]int   // ethernet name → index of the first bond listing it
	seen     []seenAddr       // static addresses checked so far
}

type seenAddr struct {
	prefix netip.Prefix
	iface  string
	path   string
}

func newValidator(s Spec, nics []NIC) *validator {
	v := &validator{s: s, ifs: interfaces(s), byName: map[string]iface{}, memberOf: map[string]int{}}
	for _, n := range nics {
		v.nics = append(v.nics, NIC{Name: n.Name, MAC: normalizeMAC(n.MAC)})
	}
	for _, f := range v.ifs {
		if _, dup := v.byName[f.name]; !dup && f.name != "" {
			v.byName[f.name] = f
		}
	}
	for i, b := range s.Bonds {
		for _, m := range b.Members {
			if f, ok := v.byName[m]; ok && f.kind == kindEthernet {
				if _, dup := v.memberOf[m]; !dup {
					v.memberOf[m] = i
				}
			}
		}
	}
	return v
}

func (v *validator) errorf(field, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
}

func (v *validator) validate() {
	if len(v.s.Ethernets) == 0 {
		v.errorf(root+".ethernets", "at least one ethernet is required")
	} else if !slices.ContainsFunc(v.ifs, func(f iface) bool { return len(f.addresses) > 0 || f.dhcp4 }) {
		v.errorf(root, "no interface has an address or dhcp4, so the host would have no network")
	}
	macs := map[string]int{}
	for i, e := range v.s.Ethernets {
		v.ethernet(i, e, macs)
	}
	for i, b := range v.s.Bonds {
		v.bond(i, b)
	}
	links := map[string]int{}
	for i, vl := range v.s.VLANs {
		v.vlan(i, vl, links)
	}
	routes := map[string]int{}
	for i, r := range v.s.Routes {
		v.route(i, r, routes)
	}
	v.nameservers(v.s.Nameservers)
}

func (v *validator) ethernet(i int, e Ethernet, macs map[string]int) {
	path := v.ifs[i].path
	v.name(path+".name", e.Name, false)
	switch {
	case e.NIC != "" && e.MAC != "":
		v.errorf(path+".nic", "give mac or nic, not both")
	case e.NIC != "":
		v.nicName(path+".nic", e.NIC)
	default:
		v.mac(path+".mac", i, e.MAC, macs)
	}
	v.addresses(v.ifs[i])
	v.mtu(path+".mtu", e.MTU)
	// A member is the first ethernet of its name; a second one is reported above.
	if b, ok := v.memberOf[e.Name]; ok && v.byName[e.Name].path == path {
		bond := v.s.Bonds[b].Name
		if len(e.Addresses) > 0 {
			v.errorf(path+".addresses", "%s is a member of %s (%s.bonds[%d]) and has no address of its own: put the addresses on %s", e.Name, bond, root, b, bond)
		}
		if e.DHCP4 {
			v.errorf(path+".dhcp4", "%s is a member of %s (%s.bonds[%d]) and takes no DHCP of its own", e.Name, bond, root, b)
		}
		if e.MTU != 0 {
			v.errorf(path+".mtu", "%s is a member of %s (%s.bonds[%d]), which sets its members' MTU: set mtu on %s instead", e.Name, bond, root, b, bond)
		}
	}
}

func (v *validator) mac(path string, i int, mac string, macs map[string]int) {
	if mac == "" {
		v.errorf(path, "a MAC is required: the NIC is found by it")
		return
	}
	hw, err := net.ParseMAC(mac)
	switch {
	case err != nil:
		v.errorf(path, "%q is not a MAC address", mac)
		return
	case len(hw) != 6:
		v.errorf(path, "%s is not a 6-byte Ethernet MAC", mac)
		return
	case hw[0]&1 == 1:
		v.errorf(path, "%s is a multicast address, not a NIC's", mac)
		return
	}
	if first, dup := macs[mac]; dup {
		v.errorf(path, "%s is already %s.ethernets[%d]'s MAC", mac, root, first)
		return
	}
	macs[mac] = i
	if len(v.nics) == 0 {
		return
	}
	var known []string
	for _, n := range v.nics {
		if n.MAC == mac {
			return
		}
		known = append(known, n.MAC)
	}
	slices.Sort(known)
	v.errorf(path, "%s is not one of this host's NICs (%s)", mac, strings.Join(known, ", "))
}

// nicName checks an ethernet given by its kernel name against the host's NICs, when
// they are known.
func (v *validator) nicName(path, name string) {
	if len(v.nics) == 0 {
		return
	}
	var known []string
	for _, n := range v.nics {
		if n.Name == name {
			return
		}
		known = append(known, n.Name)
	}
	slices.Sort(known)
	v.errorf(path, "%s is not one of this host's NICs (%s)", name, strings.Join(known, ", "))
}

// name checks an interface name against Linux (dev_valid_name: at most 15 bytes, no
// '/', ':' or whitespace) and against ifupdown, which reads NAME:N as an alias and
// LINK.ID as a VLAN; vlan allows the dot.
func (v *validator) name(path, name string, vlan bool) {
	if name == "" {
		v.errorf(path, "a name is required")
		return
	}
	if len(name) > 15 {
		v.errorf(path, "%q is %d bytes; a Linux interface name is at most 15", name, len(name))
		return
	}
	if name == "lo" {
		v.errorf(path, "lo is the loopback interface")
		return
	}
	for _, c := range name {
		switch {
		case c == '.' && vlan: // LINK.ID
		case c == '.':
			v.errorf(path, "%q has a '.', which ifupdown reads as a VLAN (LINK.ID); only VLANs are named so", name)
			return
		case c == ':':
			v.errorf(path, "%q has a ':', which ifupdown reads as an alias (NAME:N)", name)
			return
		case c == '/' || c == ' ' || c == '\t' || c == '\n':
			v.errorf(path, "%q has %q, which a Linux interface name cannot have", name, c)
			return
		case c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		default:
			v.errorf(path, "%q has %q: use letters, digits, '-' and '_'", name, c)
			return
		}
	}
	if first := v.byName[name]; first.path+".name" != path {
		v.errorf(path, "%q is already the name of %s", name, first.path)
	}
}

func (v *validator) mtu(path string, mtu int) {
	if mtu != 0 && (mtu < minMTU || mtu > maxMTU) {
		v.errorf(path, "%d is out of range: %d..%d (0 leaves the default, %d)", mtu, minMTU, maxMTU, defaultMTU)
	}
}

// addresses checks an interface's static addresses, and each against those of the
// interfaces before it: subnets on two interfaces must not overlap, or the kernel
// routes the subnet out of one of them only and replies to the other leave by the wrong
// interface (or reverse-path filtering drops them). Several addresses in one subnet on
// the same interface are fine.
func (v *validator) addresses(f iface) {
	for j, a := range f.addresses {
		path := fmt.Sprintf("%s.addresses[%d]", f.path, j)
		if a == Reserved {
			// The host's reservation, known only when it is resolved (Resolve).
			continue
		}
		p, err := netip.ParsePrefix(a)
		if err != nil {
			if ip, err := netip.ParseAddr(a); err == nil {
				v.errorf(path, "%s has no prefix length: write the subnet's, e.g. %s/%d", a, ip, examplePrefixLen(ip))
			} else {
				v.errorf(path, "%q is not an address with a prefix length, e.g. 10.20.0.5/24", a)
			}
			continue
		}
		ip := p.Addr()
		switch {
		case ip.Is4In6():
			v.errorf(path, "%s is an IPv4-mapped IPv6 address: write it as IPv4", a)
			continue
		case ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast():
			v.errorf(path, "%s is not a unicast address a NIC can have", a)
			continue
		case ip.Is4() && p.Bits() <= 30 && ip == p.Masked().Addr():
			v.errorf(path, "%s is the network address of %s; a host address is needed", ip, p.Masked())
			continue
		case ip.Is4() && p.Bits() <= 30 && ip == broadcast(p):
			v.errorf(path, "%s is the broadcast address of %s; a host address is needed", ip, p.Masked())
			continue
		}
		if v.againstSeen(path, f, p) {
			v.seen = append(v.seen, seenAddr{prefix: p, iface: f.name, path: path})
		}
	}
}

// againstSeen reports p's conflicts with the addresses checked before it, and whether
// p is to be remembered.
func (v *validator) againstSeen(path string, f iface, p netip.Prefix) bool {
	for _, s := range v.seen {
		switch {
		case s.prefix.Addr() == p.Addr() && s.iface == f.name:
			v.errorf(path, "%s is already %s", p.Addr(), s.path)
			return false
		case s.prefix.Addr() == p.Addr():
			v.errorf(path, "%s is already the address of %s (%s)", p.Addr(), s.iface, s.path)
			return false
		case s.iface != f.name && s.prefix.Masked().Overlaps(p.Masked()):
			v.errorf(path, "%s overlaps %s on %s (%s): subnets on two interfaces must not overlap, or the kernel sends the subnet's traffic out of one of them only and replies to the other leave by the wrong interface", p, s.prefix, s.iface, s.path)
			return false
		}
	}
	return true
}

func examplePrefixLen(ip netip.Addr) int {
	if ip.Is4() {
		return 24
	}
	return 64
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	for i := range 4 {
		b[i] |= byte(host >> (8 * (3 - i)))
	}
	return netip.AddrFrom4(b)
}

func (v *validator) bond(i int, b Bond) {
	f := v.ifs[len(v.s.Ethernets)+i]
	path := f.path
	v.name(path+".name", b.Name, false)
	modeOK := false
	switch {
	case b.Mode == "":
		v.errorf(path+".mode", "a mode is required: one of %s", strings.Join(bondModes(), ", "))
	case !slices.Contains(bondModes(), b.Mode):
		v.errorf(path+".mode", "%q is not a bond mode: one of %s", b.Mode, strings.Join(bondModes(), ", "))
	default:
		modeOK = true
	}
	if len(b.Members) < 2 {
		v.errorf(path+".members", "a bond needs at least 2 members, got %d", len(b.Members))
	}
	for j, m := range b.Members {
		mp := fmt.Sprintf("%s.members[%d]", path, j)
		target, ok := v.byName[m]
		switch {
		case !ok:
			v.errorf(mp, "%q is not the name of an ethernet (%s)", m, v.names(kindEthernet))
		case target.kind != kindEthernet:
			v.errorf(mp, "%s is a %s; bond members are ethernets", m, target.kind)
		case slices.Index(b.Members, m) < j:
			v.errorf(mp, "%s is listed twice", m)
		case v.memberOf[m] != i:
			v.errorf(mp, "%s is already a member of %s (%s.bonds[%d])", m, v.s.Bonds[v.memberOf[m]].Name, root, v.memberOf[m])
		}
	}
	if b.Primary != "" {
		switch {
		case modeOK && !slices.Contains(primaryModes(), b.Mode):
			v.errorf(path+".primary", "a primary member applies to %s bonds, not %s", strings.Join(primaryModes(), ", "), b.Mode)
		case !slices.Contains(b.Members, b.Primary):
			v.errorf(path+".primary", "%q is not one of %s's members (%s)", b.Primary, b.Name, strings.Join(b.Members, ", "))
		}
	}
	if b.MIIMon < 0 || b.MIIMon > 60000 {
		v.errorf(path+".miimon", "%d is out of range: 1..60000 milliseconds (0 means %d)", b.MIIMon, defaultMIIMon)
	}
	if b.LACPRate != "" {
		switch {
		case !slices.Contains(lacpRates(), b.LACPRate):
			v.errorf(path+".lacpRate", "%q is not slow or fast", b.LACPRate)
		case modeOK && b.Mode != Mode8023AD:
			v.errorf(path+".lacpRate", "lacpRate applies to 802.3ad bonds only, not %s", b.Mode)
		}
	}
	if b.TransmitHashPolicy != "" {
		switch {
		case !slices.Contains(transmitHashPolicies(), b.TransmitHashPolicy):
			v.errorf(path+".transmitHashPolicy", "%q is not one of %s", b.TransmitHashPolicy, strings.Join(transmitHashPolicies(), ", "))
		case modeOK && !slices.Contains(hashPolicyModes(), b.Mode):
			v.errorf(path+".transmitHashPolicy", "transmitHashPolicy applies to %s bonds, not %s", strings.Join(hashPolicyModes(), ", "), b.Mode)
		}
	}
	v.addresses(f)
	v.mtu(path+".mtu", b.MTU)
}

// names lists the names of one kind of interface, for messages.
func (v *validator) names(kinds ...ifaceKind) string {
	var out []string
	for _, f := range v.ifs {
		if slices.Contains(kinds, f.kind) && f.name != "" {
			out = append(out, f.name)
		}
	}
	if len(out) == 0 {
		return "there are none"
	}
	return strings.Join(out, ", ")
}

func (v *validator) vlan(i int, vl VLAN, links map[string]int) {
	f := v.ifs[len(v.s.Ethernets)+len(v.s.Bonds)+i]
	path := f.path
	idOK := vl.ID >= 1 && vl.ID <= 4094
	switch {
	case vl.ID == 0:
		v.errorf(path+".id", "a VLAN id is required (1..4094)")
	case !idOK:
		v.errorf(path+".id", "%d is out of range: 1..4094", vl.ID)
	}
	parent, linkOK := v.byName[vl.Link]
	switch {
	case vl.Link == "":
		v.errorf(path+".link", "a link is required: the ethernet or bond the VLAN is tagged on")
	case !linkOK:
		v.errorf(path+".link", "%q is not the name of an ethernet or bond (%s)", vl.Link, v.names(kindEthernet, kindBond))
	case parent.kind == kindVLAN:
		linkOK = false
		v.errorf(path+".link", "%s is a VLAN; a VLAN's link is an ethernet or a bond", vl.Link)
	case parent.kind == kindEthernet && v.isMember(vl.Link):
		b := v.memberOf[vl.Link]
		v.errorf(path+".link", "%s is a member of %s (%s.bonds[%d]): put the VLAN on %s", vl.Link, v.s.Bonds[b].Name, root, b, v.s.Bonds[b].Name)
	}
	if linkOK && idOK {
		key := fmt.Sprintf("%s/%d", vl.Link, vl.ID)
		if first, dup := links[key]; dup {
			v.errorf(path+".id", "VLAN %d on %s is already %s.vlans[%d]", vl.ID, vl.Link, root, first)
		} else {
			links[key] = i
		}
		// Debian's ifupdown creates a VLAN from its name alone (LINK.ID, with no vlan
		// package), so no other name can work there.
		switch want := vlanName(vl); {
		case vl.Name != want:
			v.errorf(path+".name", "%q must be %s (LINK.ID, or empty): Debian's ifupdown creates a VLAN only from a name of that form", vl.Name, want)
		case len(want) > 15:
			v.errorf(path+".name", "%s (LINK.ID) is %d bytes; a Linux interface name is at most 15: shorten %s's name", want, len(want), vl.Link)
		default:
			v.name(path+".name", vl.Name, true)
		}
	}
	v.addresses(f)
	v.mtu(path+".mtu", vl.MTU)
	if linkOK && vl.MTU >= minMTU && vl.MTU <= maxMTU {
		pmtu := parent.mtu
		if pmtu == 0 {
			pmtu = defaultMTU
		}
		if vl.MTU > pmtu {
			v.errorf(path+".mtu", "%d is larger than %s's MTU (%d): raise %s's mtu too", vl.MTU, vl.Link, pmtu, vl.Link)
		}
	}
}

func (v *validator) isMember(name string) bool {
	_, ok := v.memberOf[name]
	return ok
}

func (v *validator) route(i int, r Route, seen map[string]int) {
	path := fmt.Sprintf("%s.routes[%d]", root, i)
	via, viaErr := netip.ParseAddr(r.Via)
	switch {
	case r.Via == "":
		v.errorf(path+".via", "a gateway is required")
	case viaErr != nil:
		v.errorf(path+".via", "%q is not an IP address", r.Via)
	case via.Is4In6():
		v.errorf(path+".via", "%s is an IPv4-mapped IPv6 address: write it as IPv4", r.Via)
		viaErr = errors.New("mapped")
	case via.IsUnspecified() || via.IsMulticast() || via.IsLoopback():
		v.errorf(path+".via", "%s is not a unicast address a gateway can have", r.Via)
		viaErr = errors.New("not unicast")
	}
	to, toErr := netip.ParsePrefix(r.To)
	switch {
	case r.To == "":
		v.errorf(path+".to", "a destination is required: a network (CIDR) or default")
	case r.To == "default":
		// Normalize leaves "default" only when via does not parse, reported above.
	case toErr != nil:
		if ip, err := netip.ParseAddr(r.To); err == nil {
			v.errorf(path+".to", "%s has no prefix length: write %s/%d for that one address", r.To, ip, ip.BitLen())
		} else {
			v.errorf(path+".to", "%q is not a network (CIDR) or default", r.To)
		}
	case to != to.Masked():
		v.errorf(path+".to", "%s has host bits set: the network is %s", r.To, to.Masked())
		toErr = errors.New("host bits")
	case viaErr == nil && to.Addr().Is4() != via.Is4():
		v.errorf(path+".via", "%s is %s but to (%s) is %s", via, family(via), to, family(to.Addr()))
		viaErr = errors.New("family")
	}
	if r.Metric < 0 || int64(r.Metric) > math.MaxUint32 {
		v.errorf(path+".metric", "%d is out of range: 0..%d", r.Metric, uint32(math.MaxUint32))
	}
	if r.Interface != "" {
		f, ok := v.byName[r.Interface]
		switch {
		case !ok:
			v.errorf(path+".interface", "%q is not the name of an ethernet, bond or VLAN (%s)", r.Interface, v.names(kindEthernet, kindBond, kindVLAN))
			return
		case v.isMember(r.Interface):
			b := v.s.Bonds[v.memberOf[r.Interface]].Name
			v.errorf(path+".interface", "%s is a member of %s: routes go on %s", r.Interface, b, b)
			return
		case viaErr == nil && !f.dhcp4:
			v.reachable(path+".via", via, f)
		}
	} else if viaErr == nil {
		v.reachableAnywhere(path+".via", via)
	}
	if viaErr == nil {
		for _, s := range v.seen {
			if s.prefix.Addr() == via {
				v.errorf(path+".via", "%s is this host's own address (%s)", via, s.path)
			}
		}
	}
	if toErr == nil && r.To != "" && r.To != "default" {
		key := fmt.Sprintf("%s/%d", r.To, r.Metric)
		if first, dup := seen[key]; dup {
			v.errorf(path+".to", "%s with metric %d is already %s.routes[%d]: the kernel keeps one route per destination and metric", r.To, r.Metric, root, first)
		} else {
			seen[key] = i
		}
	}
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// reachable checks that gw is in a static subnet of f (a DHCP interface's subnet is
// not known in advance, and is not checked).
func (v *validator) reachable(path string, gw netip.Addr, f iface) {
	ps := f.staticPrefixes()
	if len(ps) == 0 {
		v.errorf(path, "%s has no address or dhcp4, so %s is not reachable through it", f.name, gw)
		return
	}
	var subnets []string
	for _, p := range ps {
		if p.Contains(gw) {
			return
		}
		subnets = append(subnets, p.Masked().String())
	}
	v.errorf(path, "%s is not in a subnet of %s (%s)", gw, f.name, strings.Join(subnets, ", "))
}

func (v *validator) reachableAnywhere(path string, gw netip.Addr) {
	if routeInterface(v.ifs, Route{Via: gw.String()}) != "" {
		return
	}
	var subnets []string
	dhcp := false
	for _, f := range v.ifs {
		for _, p := range f.staticPrefixes() {
			subnets = append(subnets, p.Masked().String()+" on "+f.name)
		}
		dhcp = dhcp || f.dhcp4
	}
	msg := fmt.Sprintf("%s is not in any configured subnet", gw)
	if len(subnets) > 0 {
		msg += " (" + strings.Join(subnets, ", ") + ")"
	}
	if dhcp {
		msg += "; for a gateway reached through a DHCP interface, set interface"
	}
	v.errorf(path, "%s", msg)
}

func (v *validator) nameservers(ns Nameservers) {
	path := root + ".nameservers"
	for j, a := range ns.Addresses {
		ap := fmt.Sprintf("%s.addresses[%d]", path, j)
		ip, err := netip.ParseAddr(a)
		switch {
		case err != nil:
			v.errorf(ap, "%q is not an IP address", a)
		case ip.IsUnspecified() || ip.IsMulticast():
			v.errorf(ap, "%s is not a unicast address a nameserver can have", a)
		case slices.Index(ns.Addresses, a) < j:
			v.errorf(ap, "%s is listed twice", a)
		}
	}
	if len(ns.Addresses) > 3 {
		v.errorf(path+".addresses", "%d nameservers; the C library's resolver (resolv.conf) uses only the first 3", len(ns.Addresses))
	}
	if len(ns.Search) > 0 && len(ns.Addresses) == 0 {
		v.errorf(path+".search", "search domains need nameservers (addresses): cloud-init refuses a nameservers entry without addresses")
	}
	for j, d := range ns.Search {
		sp := fmt.Sprintf("%s.search[%d]", path, j)
		switch {
		case !isDomain(d):
			v.errorf(sp, "%q is not a DNS domain name", d)
		case slices.Index(ns.Search, d) < j:
			v.errorf(sp, "%s is listed twice", d)
		}
	}
}

// isDomain reports whether d is a DNS name: dot-separated labels of letters, digits,
// '-' and '_' (service labels), none longer than 63 bytes or starting or ending with
// '-', at most 253 bytes in all; one trailing dot is allowed.
func isDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return false
			}
		}
	}
	return true
}
