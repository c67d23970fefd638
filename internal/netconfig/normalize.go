package netconfig

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Normalize returns a copy of s in canonical form, for storing and comparing: MACs in
// lowercase colon form (cloud-init's udev rules compare them with sysfs, which is
// lowercase), addresses and networks as net/netip prints them, a route To "default" as
// 0.0.0.0/0 or ::/0 (cloud-init before 25.3 cannot parse "default"), and an empty VLAN
// name as LINK.ID. A value that does not parse is left as written, for Validate to
// report. Normalize does not validate, and Validate and the renderers normalize by
// themselves, so callers may store either form.
func Normalize(s Spec) Spec {
	var n Spec
	for _, e := range s.Ethernets {
		e.MAC = normalizeMAC(e.MAC)
		e.Addresses = normalizePrefixes(e.Addresses)
		n.Ethernets = append(n.Ethernets, e)
	}
	for _, b := range s.Bonds {
		b.Members = slices.Clone(b.Members)
		b.Addresses = normalizePrefixes(b.Addresses)
		n.Bonds = append(n.Bonds, b)
	}
	for _, v := range s.VLANs {
		if v.Name == "" {
			v.Name = vlanName(v)
		}
		v.Addresses = normalizePrefixes(v.Addresses)
		n.VLANs = append(n.VLANs, v)
	}
	for _, r := range s.Routes {
		r.Via = normalizeAddr(r.Via)
		r.To = normalizeRouteTo(r.To, r.Via)
		n.Routes = append(n.Routes, r)
	}
	for _, a := range s.Nameservers.Addresses {
		n.Nameservers.Addresses = append(n.Nameservers.Addresses, normalizeAddr(a))
	}
	n.Nameservers.Search = slices.Clone(s.Nameservers.Search)
	return n
}

// vlanName is the name ifupdown derives a VLAN from: LINK.ID.
func vlanName(v VLAN) string {
	if v.Link == "" || v.ID == 0 {
		return ""
	}
	return v.Link + "." + strconv.Itoa(v.ID)
}

func normalizeMAC(s string) string {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return s
	}
	return hw.String()
}

func normalizePrefixes(in []string) []string {
	var out []string
	for _, a := range in {
		if p, err := netip.ParsePrefix(strings.TrimSpace(a)); err == nil {
			a = p.String()
		}
		out = append(out, a)
	}
	return out
}

func normalizeAddr(s string) string {
	if a, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
		return a.String()
	}
	return s
}

// normalizeRouteTo spells "default" as the all-addresses network of the gateway's
// family, which every renderer accepts.
func normalizeRouteTo(to, via string) string {
	if strings.TrimSpace(to) == "default" {
		gw, err := netip.ParseAddr(via)
		switch {
		case err != nil:
			return to
		case gw.Is4():
			return "0.0.0.0/0"
		default:
			return "::/0"
		}
	}
	if p, err := netip.ParsePrefix(strings.TrimSpace(to)); err == nil {
		return p.String()
	}
	return to
}
