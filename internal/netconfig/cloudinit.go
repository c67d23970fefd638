package netconfig

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// CloudInit renders s as cloud-init network-config version 2, the document served as
// NoCloud's network-config. It is written for the two ways cloud-init uses it: passed
// through to netplan (Ubuntu), and converted by cloud-init itself for ifupdown (Debian's
// ENI renderer, cloud-init 22.4 and later); see the package documentation for what
// that takes and what does not carry over. Keys come in a fixed order. s is normalized
// and validated first; an invalid s gives Validate's error and no document.
func CloudInit(s Spec) ([]byte, error) {
	l, err := prepare(s)
	if err != nil {
		return nil, err
	}
	doc := mapping()
	put(doc, "version", integer(2))
	if len(l.spec.Ethernets) > 0 {
		eths := mapping()
		for _, e := range l.spec.Ethernets {
			m := mapping()
			match := mapping()
			put(match, "macaddress", scalar(e.MAC))
			put(m, "match", match)
			// set-name, and the same name as the key: cloud-init 22.4 names an ethernet by
			// set-name but looks bond members and VLAN links up by key.
			put(m, "set-name", scalar(e.Name))
			if e.DHCP4 {
				// A client ID from the MAC, as dhclient sends none and networkd would send
				// one from the machine ID, which changes on every install.
				put(m, "dhcp-identifier", scalar("mac"))
			}
			l.v2Common(m, e.Name, e.MTU, e.DHCP4, e.Addresses)
			add(eths, scalar(e.Name), m)
		}
		put(doc, "ethernets", eths)
	}
	if len(l.spec.Bonds) > 0 {
		bonds := mapping()
		for _, b := range l.spec.Bonds {
			m := mapping()
			members := sequence()
			for _, name := range b.Members {
				members.Content = append(members.Content, scalar(name))
			}
			put(m, "interfaces", members)
			p := mapping()
			put(p, "mode", scalar(b.Mode))
			// A string: netplan takes either, cloud-init's v2 schema only a string.
			put(p, "mii-monitor-interval", scalar(strconv.Itoa(miimon(b))))
			if b.Primary != "" {
				put(p, "primary", scalar(b.Primary))
			}
			if b.LACPRate != "" {
				put(p, "lacp-rate", scalar(b.LACPRate))
			}
			if b.TransmitHashPolicy != "" {
				put(p, "transmit-hash-policy", scalar(b.TransmitHashPolicy))
			}
			put(m, "parameters", p)
			l.v2Common(m, b.Name, b.MTU, false, b.Addresses)
			add(bonds, scalar(b.Name), m)
		}
		put(doc, "bonds", bonds)
	}
	if len(l.spec.VLANs) > 0 {
		vlans := mapping()
		for _, v := range l.spec.VLANs {
			m := mapping()
			put(m, "id", integer(v.ID))
			put(m, "link", scalar(v.Link))
			l.v2Common(m, v.Name, v.MTU, false, v.Addresses)
			add(vlans, scalar(v.Name), m)
		}
		put(doc, "vlans", vlans)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("network-config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("network-config: %w", err)
	}
	return buf.Bytes(), nil
}

// v2Common writes what every interface kind has: MTU, DHCP, addresses, and the routes
// and nameservers the layout put on it.
func (l layout) v2Common(m *yaml.Node, name string, mtu int, dhcp4 bool, addrs []string) {
	if mtu != 0 {
		put(m, "mtu", integer(mtu))
	}
	if dhcp4 {
		put(m, "dhcp4", boolean(true))
	}
	if len(addrs) > 0 {
		seq := sequence()
		for _, a := range addrs {
			seq.Content = append(seq.Content, scalar(a))
		}
		put(m, "addresses", seq)
	}
	if routes := l.routes[name]; len(routes) > 0 {
		seq := sequence()
		for _, r := range routes {
			rm := mapping()
			// 0.0.0.0/0, never "default": cloud-init before 25.3 cannot parse it.
			put(rm, "to", scalar(r.To))
			put(rm, "via", scalar(r.Via))
			if r.Metric != 0 {
				put(rm, "metric", integer(r.Metric))
			}
			seq.Content = append(seq.Content, rm)
		}
		put(m, "routes", seq)
	}
	if l.dns == name {
		ns := mapping()
		if len(l.spec.Nameservers.Addresses) > 0 {
			seq := sequence()
			for _, a := range l.spec.Nameservers.Addresses {
				seq.Content = append(seq.Content, scalar(a))
			}
			put(ns, "addresses", seq)
		}
		if len(l.spec.Nameservers.Search) > 0 {
			seq := sequence()
			for _, d := range l.spec.Nameservers.Search {
				seq.Content = append(seq.Content, scalar(d))
			}
			put(ns, "search", seq)
		}
		put(m, "nameservers", ns)
	}
}

func mapping() *yaml.Node  { return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"} }
func sequence() *yaml.Node { return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"} }

// put adds one of the schema's own keys (plain identifiers) to m.
func put(m *yaml.Node, key string, v *yaml.Node) {
	add(m, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

func add(m, k, v *yaml.Node) { m.Content = append(m.Content, k, v) }

func integer(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

func boolean(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

// scalar is a string from the spec. cloud-init reads YAML with PyYAML, which follows
// YAML 1.1: there an all-digit MAC such as 52:54:00:12:34:56 is a base-60 integer and
// on, off, yes and no are booleans, in keys as in values. So a string is written plain
// only when it is an identifier that no YAML version reads as anything else, and
// double-quoted otherwise (every MAC and address).
func scalar(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if !plainSafe(s) {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func plainSafe(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for _, c := range s {
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null":
		return false
	}
	return true
}
