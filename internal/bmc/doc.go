// Package bmc owns rackboot's control of hosts through their baseboard management
// controllers: power status, on, off (hard), soft off, cycle and reset, and the next
// boot device (PXE or disk, once or persistent, UEFI or legacy), over IPMI and Redfish
// through github.com/bmc-toolbox/bmclib/v2.
//
// # BMC URLs
//
// A host's BMC is a URL (ParseURL), never with a password in it:
//
//	ipmi://USER@HOST[:PORT][?cipher=N]        IPMI v2 lanplus via ipmitool (port 623, cipher suite 3)
//	redfish://USER@HOST[:PORT][?OPTIONS]      Redfish over HTTPS, certificate verified (port 443)
//	redfish+http://USER@HOST[:PORT][?OPTIONS] Redfish over plain HTTP (port 80), for labs
//
// Redfish options: insecure=1 (skip certificate verification), auth=session (default)
// or auth=basic, system=NAME when the BMC manages several systems. CAs for verification
// come from the serve configuration (bmc.redfishCAFile), else the system's.
//
// Each call builds a bmclib client restricted to the one provider the URL names
// (Registry.For), so nothing probes the others. Before each IPMI call an RMCP/ASF
// presence ping (one UDP round trip) tells a closed port ("connection refused") at
// once, and afterwards tells a refused session (wrong password: the BMC answered the
// ping) from a dead BMC — ipmitool words both the same way.
//
// # The pool
//
// Service runs operations for hosts of the inventory on a bounded set of workers
// (Config.Workers, default 8). Operations on one host run one at a time; different
// hosts run in parallel. Every operation has a deadline (Config.Timeout, default 30 s,
// retries included): the caller gets an answer by then whatever the BMC does, and a
// backend call that overstays is abandoned (counted in rackboot_bmc_calls_abandoned),
// so one dead BMC holds one worker for at most Timeout and never blocks the others.
// Waiting for a worker is bounded by Config.QueueTimeout (ErrBusy past it).
//
// Transient failures (nothing answered; the BMC failed internally) are retried with
// jittered exponential backoff while the deadline allows; wrong credentials, refusals,
// TLS problems and timeouts are not. Cycle and reset are retried only when the BMC was
// not reached at all, since a half-done cycle must not be repeated.
//
// # Errors, events, metrics
//
// Every failure is an *Error wrapping one class (ErrAuth, ErrUnreachable, ErrTimeout,
// ErrTLS, ErrRejected, ErrBMCFailure, ErrNoBMC, ErrInvalidURL, ErrBusy, ErrStopped,
// ErrSetup) with a message that says what happened and what to do. Power actions
// ("bmc.power"), boot-device changes ("bmc.bootdev") and failures ("bmc.error") go on
// the host's timeline; status reads only when what they see changes, so a poller does
// not bury the history. Metrics: rackboot_bmc_operations_total{protocol,operation,outcome},
// rackboot_bmc_operation_duration_seconds{protocol,operation}, rackboot_bmc_retries_total,
// and gauges of calls in flight, abandoned and waiting.
//
// # Passwords
//
// Passwords come from the inventory (inventory.Store.BMCCredentials, sealed at rest
// there) for each call and travel as Password, whose every printed, logged or JSON form
// is "REDACTED". ipmitool gets it in its environment (IPMITOOL_PASSWORD), never on its
// command line; any error text that still contains it is scrubbed.
package bmc
