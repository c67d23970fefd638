// Package agentapi owns the wire protocol between the rackboot agent (the in-memory
// environment a host boots to be inspected, provisioned or wiped) and the rackboot server:
// the kernel command line that hands the agent its server, the JSON messages, the HTTP
// endpoints, the status codes and what each side does with them. Both sides import it;
// it depends on the standard library only, so the inventory can store Facts as they are.
//
// # Kernel command line
//
// The server boots the agent (ipxe.BootEnv) with
//
//	rackboot.url=http://SERVER:PORT rackboot.token=TOKEN rackboot.mac=MAC console=ttyS0,115200 console=tty0
//
// url is the server's HTTP base URL as the host reaches it (no trailing slash). token is a
// fresh random token for this one boot (NewToken: 43 URL-safe characters); it names the
// host and the plan on the server, so an agent never sends its host ID. mac is the MAC of
// the NIC the host booted from: the agent takes its DHCP address on that NIC. Format and
// parse both with KernelArgs. (rackboot.server= is accepted as an alias of rackboot.url.)
//
// # Endpoints (protocol version v1)
//
// Every request is JSON (Content-Type: application/json, at most MaxBodyBytes) with
// "Authorization: Bearer TOKEN" and "User-Agent: rackboot-agent/VERSION". The server checks
// the token and that the request's source address is the host's (its reserved or leased
// IP); it answers 401 for an unknown or expired token and 403 for a wrong address, both
// with an Error body. The agent never retries a 4xx other than 408 and 429: it reports
// nothing more and powers the host off.
//
//	POST /agent/v1/hello     Hello → 200 Plan
//	POST /agent/v1/progress  Progress → 204 (carry on) | 409 (stop: the plan was cancelled)
//	POST /agent/v1/result    Result → 204
//
// hello may be sent again (an agent that was restarted, or after a "wait" plan); the
// server answers with the host's current plan each time. Action "wait" makes the agent
// ask again after Plan.WaitSeconds, within its own bound (about 30 minutes), after which
// it powers off. After the result the agent reboots (Plan.PowerOff false) or powers off
// (true); after any error it reports a Result with OK false and powers off, whatever the
// plan said, so a failing host never loops. Setting the next boot device to disk is the
// server's job (through the BMC), before or after the result; the agent only reboots.
//
// progress is best effort: the agent sends one at each phase change and every few per
// cent of a long phase, and carries on if the server does not answer. A 409 is the one
// answer that stops it (e.g. the host was released while provisioning): the agent stops
// writing, reports a Result with OK false and powers off.
//
// Every call is retried with exponential backoff, within a bound (Client), on network
// errors, 5xx, 408 and 429.
//
// # Provisioning guarantees
//
// The image's sha256 is computed over the bytes as the server sends them (compressed, if
// the image is) and checked before the agent reports success or reboots. When Size is
// known and small enough for the host's memory the agent downloads and verifies before it
// touches the disk, so a wrong checksum leaves the disk untouched; otherwise it streams
// to disk, holding the first MiB (the partition table) back until the checksum is
// verified, and on a mismatch wipes the signatures of what it wrote and fails. The server
// must verify its cached image against the catalog's checksum before it hands out a plan.
//
// # Stability
//
// Fields are added, never renamed or removed, within v1; both sides ignore fields they
// do not know. A change that breaks either side gets a new path prefix (/agent/v2/).
// A new value of an enumeration (an Action, a CloudInitMode) is a v1 addition when an
// agent that does not know it refuses the plan rather than running part of it: Validate
// rejects unknown values and the agent powers off (agents since the Ignition mode also
// report the refusal as a failed Result; older ones leave the server to time the boot
// out). So cloudInit.mode "ignition" with provision.ignition was added in v1: an older
// agent refuses it instead of writing an Ignition image that would boot without its
// config.
package agentapi
