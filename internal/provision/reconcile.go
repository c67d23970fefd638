package provision

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
)

// Start resumes the hosts a previous run left in transient states, then reconciles
// every Interval and after every change until ctx ends. Only errors reading the
// inventory at start are returned; a failing pass is logged and retried.
func (p *Provisioner) Start(ctx context.Context) error {
	if err := p.Resume(ctx); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	p.log.Info("provisioner running", "interval", p.cfg.Interval, "bootTimeout", p.t.Boot, "stallTimeout", p.t.Stall,
		"diskBootTimeout", p.t.DiskBoot, "bootAttempts", p.t.BootAttempts)
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		if err := p.Reconcile(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("reconcile pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-p.kick:
		}
	}
}

// sameOp reports whether h still runs the operation phase `want` was read in: a
// decision taken on a stale read must not apply.
func sameOp(h *inventory.Host, want *inventory.Operation) bool {
	op := h.Operation
	return op != nil && want != nil && h.State == want.State && op.State == want.State &&
		op.StartedAt.Equal(want.StartedAt) && op.Attempt == want.Attempt && op.Phase == want.Phase
}

// fail moves h to failed with reason, keeping the operation (for Retry) without its
// agent token.
func (p *Provisioner) fail(h *inventory.Host, c *inventory.HostChange, reason string, fields map[string]string) {
	if h.Operation != nil {
		h.Operation.TokenHash = ""
		h.Operation.Deadline, h.Operation.RetryAt = time.Time{}, time.Time{}
	}
	p.setState(h, c, inventory.StateFailed, reason, fields)
}

// Resume takes over hosts a previous run left in transient states (see the package
// documentation). Start calls it; tests call it after reopening the inventory.
func (p *Provisioner) Resume(ctx context.Context) error {
	hosts, err := p.store.ListHosts(ctx)
	if err != nil {
		return err
	}
	now := p.now().UTC()
	for _, h := range hosts {
		if !Transient(h.State) {
			continue
		}
		_, err := p.transition(ctx, h.ID, func(h *inventory.Host, c *inventory.HostChange) error {
			if !Transient(h.State) {
				return inventory.ErrNoChange
			}
			op := h.Operation
			if op == nil || op.State != h.State {
				h.Operation = p.newOperation(h.State)
				p.fail(h, c, fmt.Sprintf("found %s without its operation record when rackboot started: retry or release it", h.State), nil)
				return nil
			}
			var msg string
			switch op.Phase {
			case inventory.PhasePower:
				msg = "rackboot restarted: powering the host again"
			case inventory.PhaseBooting:
				op.Deadline = later(op.Deadline, now.Add(p.t.Boot))
				msg = "rackboot restarted: still waiting for the agent's hello until " + op.Deadline.Format(time.RFC3339)
			case inventory.PhaseAgent:
				op.Deadline = later(op.Deadline, now.Add(p.t.Stall))
				msg = fmt.Sprintf("rackboot restarted: the agent (plan %s) has until %s to report again", op.Plan, op.Deadline.Format(time.RFC3339))
			case inventory.PhaseDiskBoot:
				op.Deadline = later(op.Deadline, now.Add(p.t.Boot))
				msg = "rackboot restarted: waiting for the installed system to phone home until " + op.Deadline.Format(time.RFC3339)
			default:
				p.fail(h, c, fmt.Sprintf("found %s in unknown phase %q when rackboot started: retry or release it", h.State, op.Phase), nil)
				return nil
			}
			c.Events = append(c.Events, inventory.Event{Type: EventResume, Message: msg,
				Fields: map[string]string{"state": string(h.State), "phase": string(op.Phase), "attempt": strconv.Itoa(op.Attempt)}})
			return nil
		})
		if err != nil && !errors.Is(err, inventory.ErrNotFound) {
			return fmt.Errorf("resuming host %s: %w", h.ID, err)
		}
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Reconcile runs one pass: BMC sequences for hosts in the power phase (and the disk
// boot device after provisioning), and timeouts. It returns when the BMC calls it
// started have finished.
func (p *Provisioner) Reconcile(ctx context.Context) error {
	hosts, err := p.store.ListHosts(ctx)
	if err != nil {
		return err
	}
	counts := map[inventory.State]int{}
	for _, s := range inventory.States {
		counts[s] = 0
	}
	now := p.now()
	var wg sync.WaitGroup
	var errs []error
	var emu sync.Mutex
	run := func(h inventory.Host, fn func(context.Context, inventory.Host) error) {
		p.mu.Lock()
		if p.busy[h.ID] {
			p.mu.Unlock()
			return
		}
		p.busy[h.ID] = true
		p.mu.Unlock()
		wg.Go(func() {
			defer func() {
				p.mu.Lock()
				delete(p.busy, h.ID)
				p.mu.Unlock()
			}()
			if err := fn(ctx, h); err != nil && !errors.Is(err, inventory.ErrNotFound) {
				emu.Lock()
				errs = append(errs, fmt.Errorf("host %s: %w", h.ID, err))
				emu.Unlock()
			}
		})
	}
	for _, h := range hosts {
		counts[h.State]++
		if !Transient(h.State) {
			continue
		}
		op := h.Operation
		if op == nil || op.State != h.State {
			run(h, p.failOrphan)
			continue
		}
		switch op.Phase {
		case inventory.PhasePower:
			if now.Before(op.RetryAt) {
				continue
			}
			run(h, p.powerUp)
		case inventory.PhaseBooting, inventory.PhaseAgent:
			if !op.Deadline.IsZero() && !now.Before(op.Deadline) {
				run(h, p.timeout)
			}
		case inventory.PhaseDiskBoot:
			switch {
			case !op.Deadline.IsZero() && !now.Before(op.Deadline):
				run(h, p.timeout)
			case !op.DiskBootSet && !now.Before(op.RetryAt):
				run(h, p.setDiskBoot)
			case op.DiskBootSet && p.hasBMC(&h) && !op.RetryAt.IsZero() && !now.Before(op.RetryAt):
				run(h, p.ensureOn)
			}
		}
	}
	wg.Wait()
	for s, n := range counts {
		p.m.hosts.WithLabelValues(string(s)).Set(float64(n))
	}
	return errors.Join(errs...)
}

func (p *Provisioner) failOrphan(ctx context.Context, read inventory.Host) error {
	_, err := p.transition(ctx, read.ID, func(h *inventory.Host, c *inventory.HostChange) error {
		if !Transient(h.State) || (h.Operation != nil && h.Operation.State == h.State) {
			return inventory.ErrNoChange
		}
		h.Operation = p.newOperation(h.State)
		p.fail(h, c, fmt.Sprintf("%s without an operation record (changed outside rackboot?): retry or release it", h.State), nil)
		return nil
	})
	return err
}

// hasBMC reports whether rackboot can power h.
func (p *Provisioner) hasBMC(h *inventory.Host) bool {
	return p.cfg.BMC != nil && h.BMC != nil && h.BMC.URL != ""
}

// uefi follows the admin API's default: legacy only for hosts known to boot BIOS.
func uefi(h *inventory.Host) bool { return h.Firmware != inventory.FirmwareBIOS }

// powerUp sets the next boot to PXE and power-cycles the host (a host that is off is
// powered on), then waits for the agent.
func (p *Provisioner) powerUp(ctx context.Context, read inventory.Host) error {
	want := *read.Operation
	what := fmt.Sprintf("attempt %d/%d", want.Attempt, p.t.BootAttempts)
	var bmcErr error
	if p.hasBMC(&read) {
		if _, err := p.cfg.BMC.SetBootDevice(ctx, read.ID, bmc.BootOptions{Device: bmc.BootPXE, UEFI: uefi(&read)}); err != nil {
			bmcErr = fmt.Errorf("setting the next boot to PXE: %w", err)
		} else if _, err := p.cfg.BMC.Power(ctx, read.ID, bmc.ActionCycle); err != nil {
			bmcErr = fmt.Errorf("power cycle: %w", err)
		}
		if ctx.Err() != nil {
			// Shutting down mid-call: the next start re-issues the sequence.
			return nil
		}
	}
	_, err := p.transition(ctx, read.ID, func(h *inventory.Host, c *inventory.HostChange) error {
		if !sameOp(h, &want) {
			return inventory.ErrNoChange
		}
		op := h.Operation
		now := p.now().UTC()
		if bmcErr != nil {
			op.PowerTries++
			fields := map[string]string{"err": bmcErr.Error(), "try": strconv.Itoa(op.PowerTries)}
			if op.PowerTries >= p.t.PowerAttempts {
				p.fail(h, c, fmt.Sprintf("the BMC failed %d times (%v): check it with rackboot host power %s status, then retry", op.PowerTries, bmcErr, h.ID), fields)
				return nil
			}
			op.RetryAt = now.Add(p.t.PowerBackoff)
			c.Events = append(c.Events, inventory.Event{Type: EventPower,
				Message: fmt.Sprintf("BMC failed (try %d/%d): %v: trying again at %s", op.PowerTries, p.t.PowerAttempts, bmcErr, op.RetryAt.Format(time.RFC3339)), Fields: fields})
			return nil
		}
		op.Phase, op.PowerTries, op.RetryAt = inventory.PhaseBooting, 0, time.Time{}
		op.Deadline = now.Add(p.t.Boot)
		msg := "next boot PXE, power cycled: waiting for the agent (" + what + ")"
		if !p.hasBMC(h) {
			msg = "no BMC: power the host on and let it boot from the network; waiting for the agent (" + what + ")"
		}
		c.Events = append(c.Events, inventory.Event{Type: EventPower, Message: msg,
			Fields: map[string]string{"attempt": strconv.Itoa(op.Attempt), "deadline": op.Deadline.Format(time.RFC3339)}})
		return nil
	})
	return err
}

// setDiskBoot makes the host boot from its disk from now on (after provisioning).
func (p *Provisioner) setDiskBoot(ctx context.Context, read inventory.Host) error {
	want := *read.Operation
	var bmcErr error
	if p.hasBMC(&read) {
		_, bmcErr = p.cfg.BMC.SetBootDevice(ctx, read.ID, bmc.BootOptions{Device: bmc.BootDisk, Persistent: true, UEFI: uefi(&read)})
		if ctx.Err() != nil {
			return nil
		}
	}
	_, err := p.transition(ctx, read.ID, func(h *inventory.Host, c *inventory.HostChange) error {
		if !sameOp(h, &want) || h.Operation.DiskBootSet {
			return inventory.ErrNoChange
		}
		op := h.Operation
		switch {
		case !p.hasBMC(h):
			op.DiskBootSet = true
			c.Events = append(c.Events, inventory.Event{Type: EventDiskBoot, Message: "no BMC: the host's iPXE script now exits to its local disk"})
		case bmcErr == nil:
			op.DiskBootSet, op.PowerTries = true, 0
			op.RetryAt = p.now().UTC().Add(p.t.RebootGrace)
			c.Events = append(c.Events, inventory.Event{Type: EventDiskBoot, Message: "next boot: disk (persistent)"})
		default:
			op.PowerTries++
			if op.PowerTries >= p.t.PowerAttempts {
				// Not fatal: a host that still PXE-boots gets a script that exits to disk.
				op.DiskBootSet, op.PowerTries = true, 0
				c.Events = append(c.Events, inventory.Event{Type: EventDiskBoot,
					Message: fmt.Sprintf("could not set the boot device to disk (%v): relying on the iPXE script, which exits to the local disk", bmcErr)})
				return nil
			}
			op.RetryAt = p.now().UTC().Add(p.t.PowerBackoff)
			c.Events = append(c.Events, inventory.Event{Type: EventDiskBoot,
				Message: fmt.Sprintf("setting the boot device to disk failed (try %d/%d): %v", op.PowerTries, p.t.PowerAttempts, bmcErr)})
		}
		return nil
	})
	return err
}

// ensureOn powers on a host that is off while rackboot waits for its phone-home: the
// agent's reboot may have ended as a power-off (firmware quirks; QEMU's -no-reboot), and
// an installed system that never boots never phones home.
func (p *Provisioner) ensureOn(ctx context.Context, read inventory.Host) error {
	want := *read.Operation
	res, err := p.cfg.BMC.PowerStatus(ctx, read.ID)
	if ctx.Err() != nil {
		return nil
	}
	var onErr error
	off := err == nil && res.State == bmc.PowerOff
	tries := want.PowerTries
	if off && tries < p.t.PowerAttempts {
		_, onErr = p.cfg.BMC.Power(ctx, read.ID, bmc.ActionOn)
		if ctx.Err() != nil {
			return nil
		}
	}
	_, terr := p.transition(ctx, read.ID, func(h *inventory.Host, c *inventory.HostChange) error {
		if !sameOp(h, &want) || !h.Operation.DiskBootSet {
			return inventory.ErrNoChange
		}
		op := h.Operation
		if tries >= p.t.PowerAttempts {
			// Given up: the phone-home timeout decides.
			op.RetryAt = time.Time{}
			return nil
		}
		op.RetryAt = p.now().UTC().Add(p.t.RebootGrace)
		if !off {
			return nil
		}
		op.PowerTries++
		msg := "the host is off after its image was written: powering it on to boot its disk"
		if onErr != nil {
			msg = fmt.Sprintf("the host is off after its image was written and powering it on failed: %v", onErr)
		}
		c.Events = append(c.Events, inventory.Event{Type: EventDiskBoot, Message: msg, Fields: map[string]string{"try": strconv.Itoa(op.PowerTries)}})
		return nil
	})
	return terr
}

// timeout handles a phase past its deadline: another boot of the agent while attempts
// remain, else failed.
func (p *Provisioner) timeout(ctx context.Context, read inventory.Host) error {
	want := *read.Operation
	_, err := p.transition(ctx, read.ID, func(h *inventory.Host, c *inventory.HostChange) error {
		if !sameOp(h, &want) {
			return inventory.ErrNoChange
		}
		op := h.Operation
		now := p.now().UTC()
		if op.Deadline.IsZero() || now.Before(op.Deadline) {
			return inventory.ErrNoChange
		}
		p.m.timeouts.WithLabelValues(string(h.State), string(op.Phase)).Inc()
		fields := map[string]string{"phase": string(op.Phase), "attempt": strconv.Itoa(op.Attempt)}
		var what string
		switch op.Phase {
		case inventory.PhaseBooting:
			what = fmt.Sprintf("no hello from the agent within %s of powering the host", p.t.Boot)
		case inventory.PhaseAgent:
			what = fmt.Sprintf("the agent (plan %s) was silent for %s", op.Plan, p.t.Stall)
			if pr := op.Progress; pr != nil {
				what += fmt.Sprintf(" during %s", pr.Phase)
				fields["agentPhase"] = string(pr.Phase)
			}
		case inventory.PhaseDiskBoot:
			what = fmt.Sprintf("the image is written but the installed system did not phone home within %s", p.t.DiskBoot)
			c.Events = append(c.Events, inventory.Event{Type: EventTimeout, Message: what, Fields: fields})
			p.fail(h, c, what+": check that the host boots from its disk and that cloud-init runs there (serial console, /var/log/cloud-init.log), then retry or release it", fields)
			return nil
		}
		c.Events = append(c.Events, inventory.Event{Type: EventTimeout, Message: what, Fields: fields})
		if op.Attempt < p.t.BootAttempts {
			op.Attempt++
			op.Phase, op.Deadline, op.PowerTries, op.RetryAt = inventory.PhasePower, time.Time{}, 0, time.Time{}
			op.TokenHash, op.Plan, op.Progress = "", "", nil
			c.Events = append(c.Events, inventory.Event{Type: EventRetry,
				Message: fmt.Sprintf("booting the agent again (attempt %d/%d)", op.Attempt, p.t.BootAttempts), Fields: fields})
			return nil
		}
		hint := "check the host's console, that it boots from the network first and reaches rackboot"
		if op.Phase == inventory.PhaseAgent {
			hint = "check the host's console for the agent's log"
		}
		p.fail(h, c, fmt.Sprintf("%s, %d times: %s; then retry or release it", what, op.Attempt, hint), fields)
		return nil
	})
	return err
}
