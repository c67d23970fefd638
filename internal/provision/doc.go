// Package provision owns the host state machine of DESIGN.md ("A host's life"): it
// moves hosts through inspection, provisioning and deprovisioning, drives their power
// and boot device through the BMC service, hands the agent its plan over the agent API
// (agentapi, server side), and notices timeouts, retries and failures. Every change of
// state or phase is one bbolt transaction (inventory.BoltStore.TransitionHost) that
// also appends its events to the host's timeline.
//
// # States
//
//	from                      to              when
//	enrolled/available/failed inspecting      Inspect (CLI host inspect, API)
//	discovered (no facts)     inspecting      the agent's hello (the host PXE-booted itself)
//	inspecting                available       the agent's result: facts stored, agent powers off
//	inspecting (discovered)   discovered      the same, for a discovered host: facts shown, the
//	                                          host boots no agent again and cannot be claimed
//	discovered                available       Accept (CLI host accept, API): inspected hosts;
//	                          enrolled        not yet inspected ones
//	available                 provisioning    Provision (CLI host provision, API, CAPI)
//	provisioning              provisioned     cloud-init (or the Ignition unit) phoned home
//	provisioned/provisioning  deprovisioning  Release (CLI host release, API, CAPI delete)
//	failed (with an image)    deprovisioning  Release
//	deprovisioning            available       the agent's result: disks wiped, agent powers off
//	inspecting/provisioning/  failed          timeout after the last retry, BMC failure,
//	deprovisioning                            agent error (reason kept in StateReason)
//	failed                    (its state)     Retry: the operation it failed in, from the start
//
// # Phases of an operation (inventory.Operation)
//
//	phase      what happens                                       timeout (default)  on timeout
//	power      BMC: next boot PXE (once), power cycle (or on)     BMC: 3 tries,       failed
//	                                                              30s backoff
//	booting    waiting for the agent's hello                      Boot 15m            retry*
//	agent      the agent runs its plan; each progress extends     Stall 15m           retry*
//	           the deadline
//	disk-boot  provisioning only: BMC next boot disk              DiskBoot 30m        failed
//	           (persistent); the host reboots into its image and
//	           rackboot waits for the phone-home; a host found off
//	           after RebootGrace (30s) is powered on (3 times)
//
// *retry: back to "power" (another PXE boot of the agent) while Attempt < BootAttempts
// (default 3), then failed. An agent that reports failure (wrong checksum, no disk
// matching the hint...) fails the host at once: retrying would fail the same way.
//
// A host without a BMC skips the power phase: the operator (or the host itself, for a
// discovered host) boots it from the network. The agent powers a host off after
// inspection and deprovisioning and reboots it after provisioning; rackboot sets the
// next boot device to disk before that reboot matters (a host that still PXE-boots
// gets an iPXE script that exits to its disk, because the host is in disk-boot).
//
// # Tokens
//
// Each iPXE script that boots the agent carries a fresh token (AgentArgs, called by the
// ipxe handler): 32 random bytes, stored only as SHA-256 in the host's Operation and the
// inventory's token index, so one token names one host and one boot, and the next boot
// invalidates it. The token is bound, when issued, to the address the trust gate found
// the script fetch came from (the boot key's, or the reservation in DHCP off mode): the
// agent API checks the bearer token and that the request comes from that address (and
// the reservation, when there is one), in every DHCP mode. The
// metadata token (cloud-init's URL) is a second, separate token minted for the
// provisioning plan and revoked on release.
//
// # Restarts
//
// All state is in bbolt; nothing lives only in memory. Resume (called by Start) looks
// at every host in a transient state: power phases are re-issued by the next pass;
// booting and agent phases get their deadline pushed out by a full timeout (a live
// agent retries its calls and re-hellos); disk-boot continues (the BMC call is made if
// it had not been); a host in an agent state without an operation record fails with a
// reason. Nothing is dropped.
//
// # Concurrency
//
// Start runs one reconcile pass every Interval and whenever something changed; a pass
// runs BMC calls for different hosts in parallel (bounded by the BMC service) and waits
// for them. The agent handler and the API change hosts at the same time; every change
// re-checks, inside its transaction, that the host is still where the change expects
// it (state, phase, attempt), so a late BMC answer or a stale agent cannot undo a newer
// decision. After each committed change of a host's state, Config.OnTransition (when
// set) is called with the host's ID: `rackboot serve` hands it to the Cluster API
// controllers (controllers.Manager.HostChanged), so a machine follows its host at once
// rather than at its next poll.
package provision
