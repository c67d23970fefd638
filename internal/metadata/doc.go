// Package metadata owns the per-host configuration rackboot serves to installed
// systems: cloud-init's NoCloud-net documents and, for Flatcar and Fedora CoreOS hosts,
// Ignition rendered from Butane.
//
// # URLs
//
//	GET  /metadata/TOKEN/meta-data       instance-id, local-hostname, labels, metadata
//	GET  /metadata/TOKEN/user-data       the user-data given when provisioning (verbatim)
//	GET  /metadata/TOKEN/vendor-data     rackboot's phone_home (cloud-init final stage)
//	GET  /metadata/TOKEN/network-config  version 2: DHCP on the NIC the host booted from
//	GET  /metadata/TOKEN/ignition        Ignition JSON plus rackboot's phone-home unit
//	GET|POST /metadata/TOKEN/phonehome   the installed system reports it is up
//
// TOKEN is random per provisioning (32 bytes, base64url); the inventory holds only its
// SHA-256. It is written into the host's cloud-init drop-in by the agent, so the
// installed system, and nothing else, knows its URL. The token is revoked when the host
// is released.
//
// Knowing the token is not enough: user-data carries secrets (kubeadm join tokens), so
// every request must also come from the address the host's provisioning is bound to
// (its agent's, itself bound when its token was issued; and the reservation, when the
// host has one), as the trust gate (Config.Gate) decides. Anyone else gets 403 and a
// metadata.rejected event on that host's security record, so a leaked URL shows up.
// An unknown token is 404 and names no host. Served documents are recorded as
// metadata.fetch events, the phone-home as boot.phonehome (by the provisioner).
//
// # Documents
//
// The documents are pure functions of the host (MetaData, VendorData, NetworkConfig,
// UserData, Ignition), golden-tested. instance-id is HOSTID-PROVISIONID, so a host
// re-provisioned runs its new user-data, and a reboot does not re-run it.
//
// "Provisioned" must mean the host's configuration ran, not merely that the disk was
// written: vendor-data enables cloud-init's phone_home module, which runs at the end of
// the final stage, after the user's runcmd and scripts, and POSTs instance_id, hostname
// and fqdn to the phone-home URL. user-data that disables vendor-data disables that too,
// and such a provisioning times out. For Ignition hosts rackboot adds a oneshot systemd
// unit, rackboot-phonehome.service, that curls the same URL once the network is online
// on first boot.
//
// RenderButane turns Butane (variants fcos and flatcar, github.com/coreos/butane
// v0.29.0) into Ignition at provisioning time, so a broken config is refused then and
// not discovered on a booting host. Local file references are not allowed.
package metadata
