package netconfig

// layout is a valid, normalized spec with what both renderers derive from it, decided
// once here: the interface each route goes on, the interface carrying the nameservers,
// the VLANs on each parent and the bond of each member.
type layout struct {
	spec   Spec
	routes map[string][]Route // interface name → its routes, in spec order
	dns    string             // the interface carrying the nameservers ("" if none)
	vlans  map[string][]VLAN  // parent name → its VLANs, in spec order
	bondOf map[string]Bond    // member name → its bond
}

// prepare normalizes and validates s: the renderers never write a spec Validate
// refuses. The host's NICs are not checked here; that is Validate's job where the
// inventory is at hand.
func prepare(s Spec) (layout, error) {
	n := Normalize(s)
	if err := Validate(n, nil); err != nil {
		return layout{}, err
	}
	if err := resolved(n); err != nil {
		return layout{}, err
	}
	ifs := interfaces(n)
	l := layout{
		spec:   n,
		routes: map[string][]Route{},
		vlans:  map[string][]VLAN{},
		bondOf: map[string]Bond{},
	}
	for _, r := range n.Routes {
		name := routeInterface(ifs, r)
		l.routes[name] = append(l.routes[name], r)
	}
	if len(n.Nameservers.Addresses) > 0 || len(n.Nameservers.Search) > 0 {
		l.dns = dnsInterface(ifs, n.Routes)
	}
	for _, v := range n.VLANs {
		l.vlans[v.Link] = append(l.vlans[v.Link], v)
	}
	for _, b := range n.Bonds {
		for _, m := range b.Members {
			l.bondOf[m] = b
		}
	}
	return l, nil
}

// miimon is a bond's link monitoring interval, with the default filled in.
func miimon(b Bond) int {
	if b.MIIMon == 0 {
		return defaultMIIMon
	}
	return b.MIIMon
}
