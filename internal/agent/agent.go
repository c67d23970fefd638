package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rackboot/rackboot/agentapi"
)

// Config is the agent's configuration. The zero value (plus a Log) runs on a live host
// without touching its network or power; the boot environment sets PID1, LoadModules
// and Network.
type Config struct {
	Log *slog.Logger
	// Version is reported in hello.
	Version string
	// Root is where proc/, sys/, dev/ and lib/modules/ are: "/" on a host, a fake tree
	// in tests. Default "/".
	Root string
	// DevDir holds the disks' device nodes (default Root/dev); in tests, plain files
	// standing in for disks.
	DevDir string
	// RunDir is scratch space for mount points and device nodes (default Root/run/rackboot).
	RunDir string
	// Cmdline replaces Root/proc/cmdline.
	Cmdline string
	// PID1 mounts the pseudo filesystems and takes the console first, and makes Run
	// never return: it ends by powering the machine off or rebooting it.
	PID1 bool
	// LoadModules loads drivers by modalias from ModulesDir and waits for the boot NIC.
	LoadModules bool
	// ModulesDir defaults to Root/lib/modules/RELEASE.
	ModulesDir string
	// Network takes a DHCP address on the boot NIC; false uses the network as it is.
	Network bool
	// NICTimeout bounds the wait for the boot NIC to appear (default 90 s).
	NICTimeout time.Duration
	// MaxWait bounds the time spent in "wait" plans (default 30 min).
	MaxWait time.Duration
	// HTTPClient carries the API calls and the image download (default: one with
	// connection and header timeouts but no overall timeout: images are large).
	HTTPClient *http.Client
	// Retry overrides the API client's retry policy (tests).
	Retry agentapi.Retry
	// Power ends the run; nil uses reboot(2) when PID1 and only logs otherwise.
	Power func(PowerAction) error
	// MountPartition mounts a partition of a disk (fstype "ext4" for the cloud-init
	// drop-in, "vfat" to read the CIDATA partition back, "btrfs" or "ext4" for the
	// Ignition config); nil mounts the block device (tests pass a fake).
	MountPartition func(diskName string, p Partition, fstype, target string) (unmount func() error, err error)
	// VerifyInMemoryMax is the largest image (as served) downloaded and verified before
	// the disk is touched. 0: half of MemAvailable; negative: always stream.
	VerifyInMemoryMax int64
}

func (c *Config) defaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Root == "" {
		c.Root = "/"
	}
	if c.RunDir == "" {
		c.RunDir = filepath.Join(c.Root, "run/rackboot")
	}
	if c.NICTimeout == 0 {
		c.NICTimeout = 90 * time.Second
	}
	if c.MaxWait == 0 {
		c.MaxWait = 30 * time.Minute
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: 60 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			// The image reader handles Accept-Encoding itself; API bodies are small.
			DisableCompression: true,
		}}
	}
}

// Run is the agent: it brings the machine up (PID1), loads drivers, takes an address,
// says hello with the hardware facts, runs the plan the server answers with, reports the
// result and powers off or reboots. An error before hello cannot be reported and is
// returned (as PID 1 the machine is powered off instead); an error after it is reported
// as a failed Result and the machine powered off.
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	log := cfg.Log
	if cfg.PID1 {
		if err := setupPID1(cfg.Root); err != nil {
			log.Warn("setting up the boot environment", "err", err)
		}
	}
	r := &runner{cfg: cfg, log: log, start: time.Now()}
	next, err := r.run(ctx)
	if err != nil {
		log.Error("rackboot agent failed", "err", err)
		next = PowerOff
	}
	return r.finish(next, err)
}

// runner carries one run's state.
type runner struct {
	cfg     Config
	log     *slog.Logger
	start   time.Time
	args    agentapi.KernelArgs
	client  *agentapi.Client
	facts   agentapi.Facts
	modules *ModuleLoader
	ifname  string

	progressCh   chan agentapi.Progress
	progressDone chan struct{}
	cancelPlan   context.CancelFunc
	// progressCancel stops posting progress.
	progressCancel context.CancelFunc
	mu             sync.Mutex
	cancelled      bool
	last           map[string]progressMark
}

type progressMark struct {
	pct int64
	at  time.Time
}

func (r *runner) devDir() string {
	if r.cfg.DevDir != "" {
		return r.cfg.DevDir
	}
	return filepath.Join(r.cfg.Root, "dev")
}

// finish powers the machine off or reboots it. As PID 1 it never returns: init exiting
// would panic the kernel, so if reboot(2) fails it waits forever.
func (r *runner) finish(next PowerAction, runErr error) error {
	power := r.cfg.Power
	if power == nil && r.cfg.PID1 {
		power = systemPower
	}
	if power != nil {
		r.log.Info("rackboot agent done", "next", next, "seconds", time.Since(r.start).Seconds())
		if err := power(next); err != nil {
			r.log.Error("power action failed", "action", next, "err", err)
			runErr = errors.Join(runErr, err)
		}
	} else {
		r.log.Info("rackboot agent done; not powering off (not PID 1)", "next", next)
	}
	if r.cfg.PID1 {
		for {
			time.Sleep(time.Hour)
		}
	}
	return runErr
}

// run does everything up to and including the result, and says what to do next.
func (r *runner) run(ctx context.Context) (PowerAction, error) {
	cmdline := r.cfg.Cmdline
	if cmdline == "" {
		b, err := os.ReadFile(filepath.Join(r.cfg.Root, "proc/cmdline"))
		if err != nil {
			return PowerOff, fmt.Errorf("read the kernel command line: %w", err)
		}
		cmdline = string(b)
	}
	args, err := agentapi.ParseKernelArgs(cmdline)
	if err != nil {
		return PowerOff, err
	}
	r.args = args
	r.log.Info("rackboot agent starting", "version", r.cfg.Version, "server", args.URL, "mac", args.MAC, "uptime", uptime(r.cfg.Root))

	if err := r.bringUp(ctx); err != nil {
		return PowerOff, err
	}
	r.client = &agentapi.Client{
		BaseURL: args.URL, Token: args.Token, UserAgent: "rackboot-agent/" + r.cfg.Version,
		HTTP:  &http.Client{Transport: r.cfg.HTTPClient.Transport, Timeout: 30 * time.Second},
		Retry: r.cfg.Retry, Log: r.log,
	}
	r.facts = CollectFacts(r.cfg.Root, args.MAC)
	r.log.Info("hardware facts", "facts", formatFacts(r.facts))

	plan, err := r.hello(ctx)
	if errors.Is(err, agentapi.ErrInvalidPlan) && plan.Action != "" {
		return PowerOff, r.refuse(ctx, plan, err)
	}
	if err != nil {
		return PowerOff, err
	}
	return r.runPlan(ctx, plan)
}

// refuse reports a plan this agent cannot run as a failed result, most likely sent by a
// server newer than this boot environment: the host's timeline then says why rather
// than the server timing the boot out.
func (r *runner) refuse(ctx context.Context, plan agentapi.Plan, err error) error {
	err = fmt.Errorf("the agent refuses this plan (a boot environment older than the server? rebuild it): %w", err)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if rerr := r.client.Result(rctx, agentapi.Result{Action: plan.Action, Error: err.Error(), Next: string(PowerOff)}); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// bringUp loads drivers, waits for the boot NIC and takes an address, as configured.
func (r *runner) bringUp(ctx context.Context) error {
	if r.cfg.LoadModules {
		if err := r.loadDrivers(ctx); err != nil {
			return err
		}
	}
	if !r.cfg.Network {
		return nil
	}
	if r.ifname == "" {
		r.ifname = nicByMAC(r.cfg.Root, r.args.MAC)
	}
	if r.ifname == "" {
		return fmt.Errorf("no NIC with MAC %s: its driver is not in the boot environment", r.args.MAC)
	}
	_, uefiErr := os.Stat(filepath.Join(r.cfg.Root, "sys/firmware/efi"))
	l, err := configureNetwork(ctx, r.log, r.cfg.Root, r.ifname, uefiErr == nil, 5)
	if err != nil {
		return err
	}
	r.log.Info("network up", "iface", r.ifname, "lease", l.String(), "uptime", uptime(r.cfg.Root))
	return nil
}

// loadDrivers loads the modules for every device until the boot NIC shows up, then
// keeps scanning until the set of disks has been stable for a moment: storage drivers
// probe asynchronously (a SCSI scan takes seconds).
func (r *runner) loadDrivers(ctx context.Context) error {
	dir := r.cfg.ModulesDir
	if dir == "" {
		rel := readTrim(filepath.Join(r.cfg.Root, "proc/sys/kernel/osrelease"))
		dir = filepath.Join(r.cfg.Root, "lib/modules", rel)
	}
	ix, err := LoadModuleIndex(dir)
	if err != nil {
		return err
	}
	r.modules = &ModuleLoader{Index: ix, Root: r.cfg.Root, Log: r.log}
	start := time.Now()
	deadline := start.Add(r.cfg.NICTimeout)
	var loaded []string
	for {
		mods, err := r.modules.ScanDevices()
		if err != nil {
			return err
		}
		loaded = append(loaded, mods...)
		if r.ifname = nicByMAC(r.cfg.Root, r.args.MAC); r.ifname != "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the boot NIC %s did not appear within %v (modules loaded: %s): its driver (or firmware) is not in the boot environment",
				r.args.MAC, r.cfg.NICTimeout, strings.Join(loaded, " "))
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	r.log.Info("boot NIC found", "iface", r.ifname, "mac", r.args.MAC, "modules", len(loaded), "seconds", time.Since(start).Seconds())
	// Disks: scan until nothing new loads and /sys/block stays the same for a second,
	// at most 20 s.
	prev, stableSince := "", time.Now()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
		mods, _ := r.modules.ScanDevices()
		loaded = append(loaded, mods...)
		cur := blockList(r.cfg.Root)
		if cur != prev || len(mods) > 0 {
			prev, stableSince = cur, time.Now()
		} else if time.Since(stableSince) >= time.Second {
			break
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	r.log.Info("drivers loaded", "modules", strings.Join(loaded, " "), "disks", prev, "seconds", time.Since(start).Seconds())
	return nil
}

func blockList(root string) string {
	ents, _ := os.ReadDir(filepath.Join(root, "sys/block"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// hello sends the facts until the plan is something other than "wait", within MaxWait.
func (r *runner) hello(ctx context.Context) (agentapi.Plan, error) {
	// math/rand, not crypto/rand: the BootID is no secret, and crypto/rand blocks until
	// the kernel's random pool is initialised, which without a hardware RNG takes
	// minutes this early in boot.
	h := agentapi.Hello{
		MAC: r.args.MAC, AgentVersion: r.cfg.Version, BootID: fmt.Sprintf("%016x", mathrand.Uint64()),
		Facts: r.facts,
	}
	if h.MAC == "" {
		for _, n := range r.facts.NICs {
			if n.Name == r.ifname {
				h.MAC = n.MAC
			}
		}
	}
	if r.ifname != "" {
		if ifc, err := net.InterfaceByName(r.ifname); err == nil {
			if addrs, err := ifc.Addrs(); err == nil {
				for _, a := range addrs {
					if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
						h.IP = ipn.IP.String()
					}
				}
			}
		}
	}
	waitUntil := time.Now().Add(r.cfg.MaxWait)
	for {
		h.UptimeSeconds = uptime(r.cfg.Root)
		plan, err := r.client.Hello(ctx, h)
		if err != nil {
			return plan, err
		}
		r.log.Info("plan received", "action", plan.Action, "powerOff", plan.PowerOff, "message", plan.Message, "uptime", h.UptimeSeconds)
		if plan.Action != agentapi.ActionWait {
			return plan, nil
		}
		d := time.Duration(plan.WaitSeconds) * time.Second
		if d == 0 {
			d = 10 * time.Second
		}
		if time.Now().Add(d).After(waitUntil) {
			return plan, fmt.Errorf("the server kept the agent waiting for more than %v: giving up", r.cfg.MaxWait)
		}
		if err := sleepCtx(ctx, d); err != nil {
			return plan, err
		}
	}
}

// runPlan runs the plan and reports its result. The returned action is what to do next.
func (r *runner) runPlan(ctx context.Context, plan agentapi.Plan) (PowerAction, error) {
	if err := plan.Validate(); err != nil {
		return PowerOff, r.refuse(ctx, plan, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.cancelPlan = cancel
	r.startProgress(ctx)
	start := time.Now()
	res := agentapi.Result{Action: plan.Action}
	var err error
	switch plan.Action {
	case agentapi.ActionInspect:
		res.Phase = agentapi.PhaseInspect
	case agentapi.ActionProvision:
		err = r.provision(ctx, plan.Provision, &res)
	case agentapi.ActionDeprovision:
		res.Phase = agentapi.PhaseWipe
		res.Wiped, err = r.wipeDisks(ctx, plan.Deprovision.Disks, plan.Deprovision.Wipe)
	}
	r.stopProgress()
	next := Reboot
	if plan.PowerOff {
		next = PowerOff
	}
	r.mu.Lock()
	cancelled := r.cancelled
	r.mu.Unlock()
	if cancelled && err != nil {
		err = fmt.Errorf("%w (%v)", agentapi.ErrCancelled, err)
	}
	res.Seconds = time.Since(start).Seconds()
	if err != nil {
		res.OK, res.Error, next = false, err.Error(), PowerOff
	} else {
		res.OK, res.Phase = true, agentapi.PhaseDone
	}
	res.Next = string(next)
	// The result must get through even when the plan's context was cancelled.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer rcancel()
	if rerr := r.client.Result(rctx, res); rerr != nil {
		return PowerOff, errors.Join(err, rerr)
	}
	r.log.Info("result reported", "action", plan.Action, "ok", res.OK, "error", res.Error, "seconds", res.Seconds)
	return next, err
}

// provision writes the image to the chosen disk and points it at its cloud-init.
func (r *runner) provision(ctx context.Context, p *agentapi.Provision, res *agentapi.Result) error {
	res.Phase = agentapi.PhaseWrite
	target, err := p.RootDisk.Choose(r.facts.Disks)
	if err != nil {
		return err
	}
	res.RootDisk = target.Name
	d, err := openDisk(r.devDir(), target.Name)
	if err != nil {
		return err
	}
	defer d.Close()
	r.log.Info("provisioning", "disk", target.Name, "size", agentapi.FormatBytes(uint64(d.size)), "image", p.ImageURL, "format", p.Format)
	budget := r.cfg.VerifyInMemoryMax
	if budget == 0 {
		budget = memAvailable(r.cfg.Root) / 2
	}
	job := imageJob{
		URL: p.ImageURL, SHA256: p.SHA256, Format: p.Format, Size: p.Size, MemoryBudget: max(budget, 0),
		Client: r.cfg.HTTPClient, Log: r.log,
		Progress: func(phase agentapi.Phase, done, total int64) {
			res.Phase = phase
			r.rateLimited(phase, target.Name)(done, total)
		},
		BeforeWrite: func() error {
			res.Phase = agentapi.PhaseWipe
			r.progress(agentapi.Progress{Phase: agentapi.PhaseWipe, Disk: target.Name, Message: "quick wipe before writing"})
			if _, err := quickWipe(r.cfg.Root, d); err != nil {
				return fmt.Errorf("wipe %s before writing: %w", target.Name, err)
			}
			res.Phase = agentapi.PhaseWrite
			return nil
		},
	}
	t0 := time.Now()
	w, err := writeImage(ctx, d, job)
	res.ImageSHA256, res.ImageBytes, res.BytesWritten = w.SHA256, w.Served, w.Written
	if err != nil {
		if errors.Is(err, ErrChecksum) {
			res.Phase = agentapi.PhaseVerify
		}
		return err
	}
	secs := time.Since(t0).Seconds()
	r.log.Info("image written", "disk", target.Name, "format", w.Format, "served", w.Served, "written", w.Written, "zeroedNotWritten", w.Zeroed,
		"sha256", w.SHA256, "verifiedFirst", w.VerifiedFirst, "seconds", secs,
		"MiBps", strconv.FormatFloat(float64(w.Written)/(1<<20)/max(secs, 0.001), 'f', 1, 64))
	r.progress(agentapi.Progress{Phase: agentapi.PhaseVerify, Disk: target.Name, BytesDone: w.Served, BytesTotal: w.Served,
		Message: "sha256 verified: " + w.SHA256})
	if err := d.rereadPartitions(); err != nil {
		return err
	}
	switch p.CloudInit.Mode {
	case agentapi.CloudInitDropIn, agentapi.CloudInitCIData, agentapi.CloudInitIgnition:
	default:
		return nil
	}
	// The exclusive open would keep the kernel from mounting a partition (EBUSY): let
	// go of the disk and look at it without claiming it.
	if err := d.Close(); err != nil {
		return err
	}
	d, err = openDiskReadOnly(r.devDir(), target.Name)
	if err != nil {
		return err
	}
	defer d.Close()
	res.Phase = agentapi.PhaseCloudInit
	switch p.CloudInit.Mode {
	case agentapi.CloudInitDropIn:
		r.progress(agentapi.Progress{Phase: agentapi.PhaseCloudInit, Disk: target.Name, Message: "writing the cloud-init drop-in"})
		part, err := r.cloudInitDropIn(ctx, d, p.CloudInit.SeedURL)
		if err != nil {
			return err
		}
		res.RootPartition = part
	case agentapi.CloudInitCIData:
		r.progress(agentapi.Progress{Phase: agentapi.PhaseCloudInit, Disk: target.Name, Message: "writing the CIDATA partition"})
		part, err := r.cloudInitCIData(ctx, d, p.CloudInit.SeedURL)
		if err != nil {
			return err
		}
		res.RootPartition = part
	case agentapi.CloudInitIgnition:
		r.progress(agentapi.Progress{Phase: agentapi.PhaseCloudInit, Disk: target.Name, Message: "writing the Ignition config"})
		part, err := r.installIgnition(d, p.Ignition.Config)
		if err != nil {
			return err
		}
		res.RootPartition = part
	}
	return nil
}

// memAvailable reads MemAvailable from meminfo, in bytes (0 if unknown).
func memAvailable(root string) int64 {
	b, err := os.ReadFile(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

func trimDev(name string) string { return strings.TrimPrefix(name, "/dev/") }

// startProgress starts the goroutine that posts progress, so a slow server never
// stalls a disk write.
func (r *runner) startProgress(ctx context.Context) {
	r.progressCh = make(chan agentapi.Progress, 64)
	r.progressDone = make(chan struct{})
	r.last = map[string]progressMark{}
	pctx, cancel := context.WithCancel(ctx)
	r.progressCancel = cancel
	go func() {
		defer close(r.progressDone)
		for p := range r.progressCh {
			if pctx.Err() != nil {
				continue
			}
			err := r.client.Progress(pctx, p)
			if errors.Is(err, agentapi.ErrCancelled) {
				r.log.Warn("the server cancelled the plan: stopping")
				r.mu.Lock()
				r.cancelled = true
				r.mu.Unlock()
				r.cancelPlan()
			} else if err != nil {
				r.log.Debug("progress not delivered", "err", err)
			}
		}
	}()
}

// stopProgress lets queued progress go out for a few seconds, then drops the rest: the
// result must not wait behind progress to a server that does not answer.
func (r *runner) stopProgress() {
	close(r.progressCh)
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-r.progressDone:
	case <-t.C:
		r.progressCancel()
		<-r.progressDone
	}
	r.progressCancel()
}

// progress queues a progress message; phase changes are always queued, byte counts
// are dropped when the queue is full.
func (r *runner) progress(p agentapi.Progress) {
	if p.Message != "" || p.BytesDone == 0 {
		r.log.Info("progress", "phase", p.Phase, "disk", p.Disk, "message", p.Message)
		r.progressCh <- p
		return
	}
	select {
	case r.progressCh <- p:
	default:
	}
}

// rateLimited returns a progress function for a long phase that sends at every 5 % and
// at least every 10 s, and at the end.
func (r *runner) rateLimited(phase agentapi.Phase, diskName string) func(done, total int64) {
	key := string(phase) + "/" + diskName
	return func(done, total int64) {
		var pct int64 = -1
		if total > 0 {
			pct = done * 100 / total
		}
		last, seen := r.last[key]
		if seen && done != total && (pct < 0 || pct < last.pct+5) && time.Since(last.at) < 10*time.Second {
			return
		}
		r.last[key] = progressMark{pct: pct, at: time.Now()}
		r.log.Info("progress", "phase", phase, "disk", diskName, "done", done, "total", total, "pct", pct)
		select {
		case r.progressCh <- agentapi.Progress{Phase: phase, Disk: diskName, BytesDone: max(done, 1), BytesTotal: total}:
		default:
		}
	}
}
