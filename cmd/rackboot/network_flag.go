package main

import (
	"fmt"
	"io"

	"sigs.k8s.io/yaml"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/netconfig"
)

// networkFlagHelp is the --network flag's help, shared by host add, edit and provision.
const networkFlagHelp = "network spec file for the installed OS (YAML or JSON: ethernets by MAC, bonds, vlans, routes, nameservers; '-': standard input); see 'rackboot host add --help'"

// networkSpecHelp explains the file --network reads, for the commands' long help.
const networkSpecHelp = `The installed OS's network (--network FILE, YAML or JSON) is checked against the NICs the
host's inspection found, and rendered as cloud-init network-config v2 (systemd-networkd
units for Ignition hosts). Without one, a host with a reserved IP gets that address as a
static configuration on the NIC it provisioned through. Example, an active-backup bond
of two NICs carrying VLAN 100 with a static address:

  ethernets:
    - {name: nic0, mac: "52:54:00:00:01:01"}
    - {name: nic1, mac: "52:54:00:00:01:02"}
  bonds:
    - {name: bond0, mode: active-backup, members: [nic0, nic1], primary: nic0}
  vlans:
    - {id: 100, link: bond0, addresses: ["10.20.0.5/24"]}
  routes:
    - {to: default, via: 10.20.0.1}
  nameservers: {addresses: [10.20.0.1], search: [lab.example]}`

// readNetworkSpec reads a --network file: YAML or JSON, decoded strictly (an unknown
// key is an error that names it), checked on its own (the server checks it again
// against the host's NICs).
func readNetworkSpec(name string, stdin io.Reader) (*admin.NetworkSpec, error) {
	text, err := readConfigFile(name, stdin)
	if err != nil {
		return nil, fmt.Errorf("--network: %w", err)
	}
	js, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("--network %s: %w", name, err)
	}
	var spec admin.NetworkSpec
	if err := admin.DecodeStrict(js, &spec); err != nil {
		return nil, fmt.Errorf("--network %s: %w", name, err)
	}
	if spec.IsZero() {
		return nil, fmt.Errorf("--network %s: the spec configures nothing (use --clear-network to go back to the default)", name)
	}
	if err := netconfig.Validate(spec, nil); err != nil {
		return nil, fmt.Errorf("--network %s: %w", name, err)
	}
	return &spec, nil
}
