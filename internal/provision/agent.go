package provision

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/metadata"
)

// Route labels of the agent API in rackboot_http_requests_total.
const (
	// RouteAgent labels the agent API in rackboot_trust_rejected_total.
	RouteAgent    = "agent"
	RouteHello    = "agent_hello"
	RouteProgress = "agent_progress"
	RouteResult   = "agent_result"
)

// agentTimeout is the write deadline of an agent API answer.
const agentTimeout = 30 * time.Second

// needsAgent is the host's rule for booting the agent (inventory.Host.RunsAgent).
func needsAgent(h *inventory.Host) bool { return h.RunsAgent() }

// AgentArgs issues a fresh agent token for a boot of host through mac, bound to addr,
// and returns the kernel arguments that carry it (rackboot.token=...). The ipxe handler
// calls it for every script that boots the agent, once the trust gate has said the
// fetch came from the host itself (addr); the previous token of the host stops working.
func (p *Provisioner) AgentArgs(ctx context.Context, host inventory.Host, mac string, addr netip.Addr) (string, error) {
	if !addr.IsValid() {
		return "", errors.New("provision: an agent token must be bound to the address of the host's script fetch")
	}
	tok, err := agentapi.NewToken()
	if err != nil {
		return "", err
	}
	hash := metadata.TokenHash(tok)
	_, err = p.transition(ctx, host.ID, func(h *inventory.Host, c *inventory.HostChange) error {
		if !needsAgent(h) {
			return conflict("host %s is %s: it does not run the agent now", h.ID, h.State)
		}
		if h.Operation == nil {
			// A discovered host boots on its own; its operation starts with this boot.
			h.Operation = p.newOperation(h.State)
			h.Operation.Discovery = h.State == inventory.StateDiscovered
			h.Operation.Phase = inventory.PhaseBooting
			h.Operation.Deadline = p.now().UTC().Add(p.t.Boot)
		}
		op := h.Operation
		op.Boots++
		op.TokenHash, op.TokenIssuedAt, op.AgentIP = hash, p.now().UTC(), addr.String()
		c.Events = append(c.Events, inventory.Event{Type: EventAgentBoot,
			Message: fmt.Sprintf("iPXE boots the agent through %s from %s (boot %d, %s)", mac, addr, op.Boots, h.State),
			Fields:  map[string]string{"mac": mac, "ip": addr.String(), "boot": strconv.FormatUint(op.Boots, 10), "phase": string(op.Phase)}})
		return nil
	})
	if err != nil {
		return "", err
	}
	return agentapi.ParamToken + "=" + tok, nil
}

// Register adds the agent API (POST /agent/v1/hello, progress, result) to mux.
func (p *Provisioner) Register(mux *http.ServeMux) {
	mux.Handle("POST "+agentapi.PathHello, p.http.Wrap(RouteHello, http.HandlerFunc(p.serveHello)))
	mux.Handle("POST "+agentapi.PathProgress, p.http.Wrap(RouteProgress, http.HandlerFunc(p.serveProgress)))
	mux.Handle("POST "+agentapi.PathResult, p.http.Wrap(RouteResult, http.HandlerFunc(p.serveResult)))
}

// agentError is an answer to the agent: status and message.
type agentError struct {
	status int
	msg    string
}

func (e *agentError) Error() string { return e.msg }

func agentErr(status int, format string, args ...any) error {
	return &agentError{status: status, msg: fmt.Sprintf(format, args...)}
}

// agentCall is an authenticated agent request.
type agentCall struct {
	host inventory.Host
	hash string
	src  netip.Addr
}

// authenticate checks the bearer token (the host's current agent token) and the
// source address.
func (p *Provisioner) authenticate(r *http.Request) (agentCall, error) {
	tok, ok := agentapi.BearerToken(r)
	if !ok {
		return agentCall{}, agentErr(http.StatusUnauthorized, "no agent token: send Authorization: Bearer with the rackboot.token of this boot")
	}
	hash := metadata.TokenHash(tok)
	h, err := p.store.HostByTokenHash(r.Context(), hash)
	if errors.Is(err, inventory.ErrNotFound) || (err == nil && (h.Operation == nil || h.Operation.TokenHash != hash)) {
		return agentCall{}, agentErr(http.StatusUnauthorized, "unknown or expired agent token: a newer boot of this host replaced it, or the host is no longer being inspected, provisioned or wiped")
	}
	if err != nil {
		return agentCall{}, err
	}
	src := metadata.SourceIP(r)
	if err := p.gate.Bound(&h, h.Operation.AgentIP, src); err != nil {
		p.gate.Reject(h.ID, RouteAgent, EventRejected, src, err, map[string]string{"path": r.URL.Path})
		return agentCall{}, agentErr(http.StatusForbidden, "%s is not the address of host %s", src, h.ID)
	}
	return agentCall{host: h, hash: hash, src: src}, nil
}

func (p *Provisioner) writeAgentError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *agentError
	if errors.As(err, &ae) {
		if ae.status >= 400 {
			p.log.Warn("agent request refused", "path", r.URL.Path, "ip", r.RemoteAddr, "code", ae.status, "err", ae.msg)
		}
		agentapi.WriteError(w, ae.status, ae.msg)
		return
	}
	switch {
	case errors.Is(err, inventory.ErrConflict):
		agentapi.WriteError(w, http.StatusConflict, err.Error())
	case errors.Is(err, inventory.ErrNotFound):
		agentapi.WriteError(w, http.StatusUnauthorized, "the host of this token is gone from the inventory")
	default:
		p.log.Error("agent request failed", "path", r.URL.Path, "ip", r.RemoteAddr, "err", err)
		agentapi.WriteError(w, http.StatusInternalServerError, "rackboot could not handle this request; it is logged")
	}
}

// deadline gives an answer agentTimeout to be written and clears it after, since
// net/http keeps a handler's deadline for the next request on the connection.
func deadline(w http.ResponseWriter) func() {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(agentTimeout))
	return func() { _ = rc.Flush(); _ = rc.SetWriteDeadline(time.Time{}) }
}

func (p *Provisioner) serverURL(r *http.Request) string {
	return metadata.ServerURL(p.cfg.ServerURL, r)
}

func (p *Provisioner) serveHello(w http.ResponseWriter, r *http.Request) {
	defer deadline(w)()
	plan, err := p.hello(r)
	if err != nil {
		p.writeAgentError(w, r, err)
		return
	}
	agentapi.WriteJSON(w, http.StatusOK, plan)
}

func (p *Provisioner) hello(r *http.Request) (agentapi.Plan, error) {
	call, err := p.authenticate(r)
	if err != nil {
		return agentapi.Plan{}, err
	}
	var hello agentapi.Hello
	if err := agentapi.DecodeRequest(r, &hello); err != nil {
		return agentapi.Plan{}, agentErr(http.StatusBadRequest, "%v", err)
	}
	if err := hello.Validate(); err != nil {
		return agentapi.Plan{}, agentErr(http.StatusBadRequest, "%v", err)
	}
	mac, _ := inventory.NormalizeMAC(hello.MAC)
	if !call.host.HasMAC(mac) {
		return agentapi.Plan{}, agentErr(http.StatusForbidden, "MAC %s is not one of host %s's", hello.MAC, call.host.ID)
	}
	ctx := r.Context()
	// Everything that needs I/O outside the transaction is prepared first.
	var im inventory.Image
	var imErr error
	if call.host.State == inventory.StateProvisioning && call.host.Provision != nil {
		im, imErr = p.cfg.Images.Lookup(ctx, call.host.Provision.Image)
	}
	data, err := p.planData(ctx, call.host)
	if err != nil {
		return agentapi.Plan{}, err
	}
	metaTok, err := agentapi.NewToken()
	if err != nil {
		return agentapi.Plan{}, err
	}
	base := p.serverURL(r)
	var plan agentapi.Plan
	var failMsg string
	_, err = p.transition(ctx, call.host.ID, func(h *inventory.Host, c *inventory.HostChange) error {
		failMsg = ""
		op := h.Operation
		if op == nil || op.TokenHash != call.hash || !needsAgent(h) {
			return agentErr(http.StatusConflict, "host %s no longer wants this agent (it is %s)", h.ID, h.State)
		}
		now := p.now().UTC()
		if h.State == inventory.StateDiscovered {
			p.setState(h, c, inventory.StateInspecting, "discovered host booted the agent", nil)
			op.State = inventory.StateInspecting
		}
		h.Facts = &inventory.HostFacts{Facts: factsFromAgent(hello.Facts), ReportedAt: now}
		if fw := hello.Facts.Firmware; fw == "uefi" || fw == "bios" {
			h.Firmware = inventory.Firmware(fw)
		}
		op.BootID, op.AgentIP, op.LastSeen = hello.BootID, call.src.String(), now
		op.Phase, op.Deadline, op.Progress = inventory.PhaseAgent, now.Add(p.t.Stall), nil
		f := hello.Facts
		c.Events = append(c.Events, inventory.Event{Type: EventHello,
			Message: fmt.Sprintf("agent %s on %s (%s) said hello after %.1fs: %d CPUs, %s memory, disks: %s", hello.AgentVersion, mac, call.src,
				hello.UptimeSeconds, f.CPU.Count, agentapi.FormatBytes(max(f.Memory.InstalledBytes, f.Memory.UsableBytes)), diskNames(f)),
			Fields: map[string]string{"mac": mac, "ip": call.src.String(), "bootID": hello.BootID, "agentVersion": hello.AgentVersion,
				"uuid": f.System.UUID, "uptime": strconv.FormatFloat(hello.UptimeSeconds, 'f', 1, 64)}})
		switch h.State {
		case inventory.StateInspecting:
			plan = agentapi.Plan{Action: agentapi.ActionInspect, PowerOff: true, Message: "rackboot: inspection of " + h.ID}
		case inventory.StateDeprovisioning:
			plan = agentapi.Plan{Action: agentapi.ActionDeprovision, PowerOff: true,
				Deprovision: &agentapi.Deprovision{Wipe: agentapi.WipeMode(op.Wipe)}, Message: "rackboot: wiping " + h.ID}
		case inventory.StateProvisioning:
			pv := h.Provision
			switch {
			case pv == nil:
				p.fail(h, c, "provisioning without a provisioning request: release the host and provision it again", nil)
				failMsg = "host " + h.ID + " has no provisioning request"
				return nil
			case imErr != nil || im.Status == inventory.ImageFailed:
				why := im.Error
				if imErr != nil {
					why = imErr.Error()
				}
				p.fail(h, c, fmt.Sprintf("image %s cannot be used: %s", pv.Image, why), map[string]string{"image": pv.Image})
				failMsg = "image " + pv.Image + " cannot be used: " + why
				return nil
			case im.SHA256 != pv.ImageSHA256:
				p.fail(h, c, fmt.Sprintf("image %s changed since the request (sha256 %s, requested %s): provision the host again", pv.Image, im.SHA256, pv.ImageSHA256), nil)
				failMsg = "image " + pv.Image + " changed since the provisioning request"
				return nil
			case im.Status == inventory.ImagePending:
				plan = agentapi.Plan{Action: agentapi.ActionWait, WaitSeconds: waitSeconds,
					Message: fmt.Sprintf("rackboot: image %s is still being downloaded and verified", pv.Image)}
			default:
				pv.MetadataTokenHash, pv.BootMAC, pv.HostIP = metadata.TokenHash(metaTok), mac, call.src.String()
				var perr error
				if pv.InstallNetwork, perr = installNetwork(h, mac, p.cfg.SubnetOf); perr != nil {
					perr = fmt.Errorf("the host's network spec does not fit it: %w", perr)
				} else {
					plan, perr = provisionPlan(*h, im, base, metaTok, data)
					pv.PlanSHA256 = im.ServedSHA256
				}
				if perr != nil {
					p.fail(h, c, perr.Error(), nil)
					failMsg = perr.Error()
					return nil
				}
			}
		}
		if err := plan.Validate(); err != nil {
			return fmt.Errorf("rackboot built an invalid plan: %w", err)
		}
		op.Plan = inventory.Action(plan.Action)
		c.Events = append(c.Events, inventory.Event{Type: EventHello, Message: "plan: " + describePlan(plan),
			Fields: map[string]string{"action": string(plan.Action)}})
		return nil
	})
	if err != nil {
		return agentapi.Plan{}, err
	}
	if failMsg != "" {
		return agentapi.Plan{}, agentErr(http.StatusConflict, "%s", failMsg)
	}
	return plan, nil
}

func describePlan(pl agentapi.Plan) string {
	switch pl.Action {
	case agentapi.ActionProvision:
		pv := pl.Provision
		s := fmt.Sprintf("write %s (%s, sha256 %s) to the %s disk", pv.ImageURL, agentapi.FormatBytes(uint64(pv.Size)), pv.SHA256[:12], pv.RootDisk)
		switch pv.CloudInit.Mode {
		case agentapi.CloudInitNone:
		case agentapi.CloudInitIgnition:
			s += fmt.Sprintf(", install its Ignition config (%d bytes)", len(pv.Ignition.Config))
		default:
			s += ", cloud-init " + string(pv.CloudInit.Mode)
		}
		return s + ", then reboot"
	case agentapi.ActionDeprovision:
		return "wipe disks (" + string(pl.Deprovision.Wipe) + "), then power off"
	case agentapi.ActionInspect:
		return "report hardware, then power off"
	case agentapi.ActionWait:
		return fmt.Sprintf("wait %ds: %s", pl.WaitSeconds, pl.Message)
	}
	return string(pl.Action)
}

func (p *Provisioner) serveProgress(w http.ResponseWriter, r *http.Request) {
	defer deadline(w)()
	if err := p.progress(r); err != nil {
		p.writeAgentError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// stale answers an agent whose host has moved on: 409 stops it (agentapi).
func stale(h *inventory.Host) error {
	return agentErr(http.StatusConflict, "host %s is %s now: stop", h.ID, h.State)
}

func (p *Provisioner) progress(r *http.Request) error {
	call, err := p.authenticate(r)
	if err != nil {
		return err
	}
	var pr agentapi.Progress
	if err := agentapi.DecodeRequest(r, &pr); err != nil {
		return agentErr(http.StatusBadRequest, "%v", err)
	}
	pr.Message = truncate(pr.Message, 512)
	_, err = p.transition(r.Context(), call.host.ID, func(h *inventory.Host, c *inventory.HostChange) error {
		op := h.Operation
		if op == nil || op.TokenHash != call.hash || op.Phase != inventory.PhaseAgent || op.State != h.State {
			return stale(h)
		}
		now := p.now().UTC()
		prev := op.Progress
		op.Progress, op.LastSeen, op.Deadline = progressFromAgent(pr), now, now.Add(p.t.Stall)
		if prev == nil || prev.Phase != inventory.AgentPhase(pr.Phase) || pr.Message != "" {
			msg := "agent: " + string(pr.Phase)
			if pr.Disk != "" {
				msg += " " + pr.Disk
			}
			if pr.Message != "" {
				msg += ": " + pr.Message
			}
			fields := map[string]string{"phase": string(pr.Phase)}
			if pr.Disk != "" {
				fields["disk"] = pr.Disk
			}
			if pr.BytesTotal > 0 {
				fields["bytesDone"], fields["bytesTotal"] = strconv.FormatInt(pr.BytesDone, 10), strconv.FormatInt(pr.BytesTotal, 10)
			}
			c.Events = append(c.Events, inventory.Event{Type: EventProgress, Message: msg, Fields: fields})
		}
		return nil
	})
	return err
}

func (p *Provisioner) serveResult(w http.ResponseWriter, r *http.Request) {
	defer deadline(w)()
	if err := p.result(r); err != nil {
		p.writeAgentError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (p *Provisioner) result(r *http.Request) error {
	call, err := p.authenticate(r)
	if err != nil {
		return err
	}
	var res agentapi.Result
	if err := agentapi.DecodeRequest(r, &res); err != nil {
		return agentErr(http.StatusBadRequest, "%v", err)
	}
	res.Error = truncate(res.Error, 2048)
	_, err = p.transition(r.Context(), call.host.ID, func(h *inventory.Host, c *inventory.HostChange) error {
		op := h.Operation
		if op != nil && op.TokenHash == call.hash && op.Phase == inventory.PhaseDiskBoot && res.OK && res.Action == agentapi.ActionProvision {
			// The agent retried a result whose answer it lost: it must still reboot into
			// its image, so the token stays valid until the phone-home and this is a 204.
			return inventory.ErrNoChange
		}
		if op == nil || op.TokenHash != call.hash || op.Phase != inventory.PhaseAgent || op.State != h.State {
			return stale(h)
		}
		if inventory.Action(res.Action) != op.Plan {
			return agentErr(http.StatusConflict, "result for %s, but the plan was %s", res.Action, op.Plan)
		}
		now := p.now().UTC()
		op.LastSeen = now
		fields := map[string]string{"action": string(res.Action), "ok": strconv.FormatBool(res.OK),
			"seconds": strconv.FormatFloat(res.Seconds, 'f', 1, 64), "next": res.Next}
		if !res.OK {
			fields["phase"], fields["error"] = string(res.Phase), res.Error
			c.Events = append(c.Events, inventory.Event{Type: EventResult,
				Message: fmt.Sprintf("agent failed to %s in phase %s: %s", res.Action, res.Phase, res.Error), Fields: fields})
			p.fail(h, c, fmt.Sprintf("the agent failed to %s (%s): %s", res.Action, res.Phase, res.Error), fields)
			return nil
		}
		switch res.Action {
		case agentapi.ActionInspect:
			c.Events = append(c.Events, inventory.Event{Type: EventResult, Message: "inspection done; the agent powers the host off", Fields: fields})
			discovered := op.Discovery
			h.Operation = nil
			if discovered && p.acceptedByRule(h) {
				c.Events = append(c.Events, inventory.Event{Type: EventAccepted, Message: "accepted by rule: serial " + h.Facts.System.Serial + " is on the operator's list",
					Fields: map[string]string{"by": "rule", "serial": h.Facts.System.Serial}})
				p.setState(h, c, inventory.StateAvailable, "inspected; accepted by rule (serial on the list)", nil)
				break
			}
			if discovered {
				// Discovery is not enrolment: the facts are the host's own word.
				p.setState(h, c, inventory.StateDiscovered, "inspected; not claimable until an operator accepts it (rackboot host accept "+h.ID+")", nil)
				break
			}
			p.setState(h, c, inventory.StateAvailable, "inspected", nil)
		case agentapi.ActionDeprovision:
			fields["wiped"] = strings.Join(res.Wiped, ",")
			c.Events = append(c.Events, inventory.Event{Type: EventResult,
				Message: fmt.Sprintf("wiped %s (%s); the agent powers the host off", strings.Join(res.Wiped, ", "), op.Wipe), Fields: fields})
			h.Operation, h.Provision = nil, nil
			c.ClearData = true
			p.setState(h, c, inventory.StateAvailable, "released: disks wiped", nil)
		case agentapi.ActionProvision:
			pv := h.Provision
			if pv == nil {
				return stale(h)
			}
			want := pv.ImageSHA256
			if pv.PlanSHA256 != "" {
				want = pv.PlanSHA256 // a converted image: the agent hashed the file served
			}
			if res.ImageSHA256 != "" && !strings.EqualFold(res.ImageSHA256, want) {
				// The agent checks this itself; a disagreement is a bug somewhere.
				p.fail(h, c, fmt.Sprintf("the agent reports image sha256 %s, the catalog %s: release the host", res.ImageSHA256, want), fields)
				return nil
			}
			pv.WrittenDisk, pv.WrittenSHA256, pv.BytesWritten, pv.WrittenAt = res.RootDisk, res.ImageSHA256, res.BytesWritten, now
			fields["rootDisk"], fields["bytesWritten"], fields["rootPartition"] = res.RootDisk, strconv.FormatInt(res.BytesWritten, 10), res.RootPartition
			c.Events = append(c.Events, inventory.Event{Type: EventResult,
				Message: fmt.Sprintf("image %s written to %s (%s, sha256 verified) in %.0fs; the host reboots into it", pv.Image, res.RootDisk,
					agentapi.FormatBytes(uint64(res.BytesWritten)), res.Seconds), Fields: fields})
			op.Phase, op.Deadline, op.RetryAt, op.PowerTries = inventory.PhaseDiskBoot, now.Add(p.t.DiskBoot), time.Time{}, 0
		default:
			return agentErr(http.StatusBadRequest, "result for unknown action %q", res.Action)
		}
		return nil
	})
	return err
}

// acceptedByRule reports whether the inspected host's serial is on Config.AcceptSerials.
func (p *Provisioner) acceptedByRule(h *inventory.Host) bool {
	if h.Facts == nil || h.Facts.System.Serial == "" {
		return false
	}
	for _, s := range p.cfg.AcceptSerials {
		if s == h.Facts.System.Serial {
			return true
		}
	}
	return false
}

// PhoneHome records that the host's installed system phoned home (metadata calls it):
// a host waiting for it becomes provisioned.
func (p *Provisioner) PhoneHome(ctx context.Context, hostID string, fields map[string]string) error {
	_, err := p.transition(ctx, hostID, func(h *inventory.Host, c *inventory.HostChange) error {
		msg := "installed system phoned home from " + fields["ip"]
		c.Events = append(c.Events, inventory.Event{Type: EventPhoneHome, Message: msg, Fields: fields})
		switch {
		case h.State == inventory.StateProvisioning && h.Operation != nil && h.Operation.Phase == inventory.PhaseDiskBoot:
			if h.Provision != nil {
				h.Provision.PhonedHomeAt = p.now().UTC()
			}
			h.Operation = nil
			p.setState(h, c, inventory.StateProvisioned, "cloud-init ran and phoned home", nil)
		case h.State == inventory.StateProvisioned:
		default:
			c.Events[len(c.Events)-1].Message += fmt.Sprintf(" (ignored: the host is %s)", h.State)
		}
		return nil
	})
	return err
}

func (p *Provisioner) event(hostID string, e inventory.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.store.AppendEvent(ctx, hostID, e); err != nil {
		p.log.Warn("cannot record event", "hostID", hostID, "type", e.Type, "err", err)
	}
}

// recordEvent queues e for the host's timeline with the inventory's next group commit,
// for events of requests that come by the thousand in a boot storm (boot environment
// fetches): no transaction or fsync of their own, in the order queued.
func (p *Provisioner) recordEvent(hostID string, e inventory.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.store.RecordEvents(ctx, inventory.HostEvent{HostID: hostID, Event: e}); err != nil {
		p.log.Warn("cannot record event", "hostID", hostID, "type", e.Type, "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
