package netconfig

import (
	"errors"
	"fmt"
)

// Reserved, as an address, is the host's reserved address with its DHCP subnet's
// prefix length: a spec shared by several hosts (a RackbootMachine template) puts each
// host's own provisioning address on, say, its bond.
const Reserved = "reserved"

// Resolve makes a spec written for any of several identical hosts (ethernets given by
// NIC name, addresses "reserved") concrete for one host: each NIC name becomes that
// host's MAC of the NIC its inspection found under that name, and "reserved" becomes
// reserved (e.g. 10.77.46.21/24; empty when the host has no reservation in a subnet
// rackboot serves, which makes "reserved" an error). A spec without either is returned
// as it is. Validate the result against the host's NICs before rendering it; the
// renderers refuse a spec that is not resolved.
func Resolve(s Spec, nics []NIC, reserved string) (Spec, error) {
	r := s.Clone()
	var errs []error
	for i := range r.Ethernets {
		e := &r.Ethernets[i]
		path := fmt.Sprintf("%s.ethernets[%d]", root, i)
		if e.NIC != "" && e.MAC == "" {
			for _, n := range nics {
				if n.Name == e.NIC {
					e.MAC = normalizeMAC(n.MAC)
				}
			}
			if e.MAC == "" {
				errs = append(errs, &FieldError{Field: path + ".nic", Detail: fmt.Sprintf("the host has no NIC named %s%s", e.NIC, nicNames(nics))})
				continue
			}
			e.NIC = ""
		}
		errs = append(errs, resolveAddrs(e.Addresses, path, reserved)...)
	}
	for i := range r.Bonds {
		errs = append(errs, resolveAddrs(r.Bonds[i].Addresses, fmt.Sprintf("%s.bonds[%d]", root, i), reserved)...)
	}
	for i := range r.VLANs {
		errs = append(errs, resolveAddrs(r.VLANs[i].Addresses, fmt.Sprintf("%s.vlans[%d]", root, i), reserved)...)
	}
	if err := errors.Join(errs...); err != nil {
		return Spec{}, err
	}
	return r, nil
}

func resolveAddrs(addrs []string, path, reserved string) []error {
	var errs []error
	for j, a := range addrs {
		if a != Reserved {
			continue
		}
		if reserved == "" {
			errs = append(errs, &FieldError{Field: fmt.Sprintf("%s.addresses[%d]", path, j),
				Detail: "the host has no reserved address in a subnet rackboot serves: reserve one (rackboot host edit --ip) or write the address"})
			continue
		}
		addrs[j] = reserved
	}
	return errs
}

func nicNames(nics []NIC) string {
	if len(nics) == 0 {
		return " (it has not been inspected: inspect it first)"
	}
	s := " (it has"
	for i, n := range nics {
		if i > 0 {
			s += ","
		}
		s += " " + n.Name
	}
	return s + ")"
}

// resolved refuses a spec that still has NIC names or "reserved" addresses in it.
func resolved(s Spec) error {
	for i, e := range s.Ethernets {
		if e.NIC != "" || e.MAC == "" {
			return &FieldError{Field: fmt.Sprintf("%s.ethernets[%d].mac", root, i), Detail: "the spec is not resolved for a host (Resolve): a MAC is needed to render it"}
		}
	}
	for _, addrs := range allAddrs(s) {
		for _, a := range addrs {
			if a == Reserved {
				return errors.New("network: the spec is not resolved for a host (Resolve): an address is \"reserved\"")
			}
		}
	}
	return nil
}

func allAddrs(s Spec) [][]string {
	var out [][]string
	for _, e := range s.Ethernets {
		out = append(out, e.Addresses)
	}
	for _, b := range s.Bonds {
		out = append(out, b.Addresses)
	}
	for _, v := range s.VLANs {
		out = append(out, v.Addresses)
	}
	return out
}
