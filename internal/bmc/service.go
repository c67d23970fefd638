package bmc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/internal/inventory"
)

// Store is what the Service needs from the inventory: a host's BMC URL with its
// decrypted password, and the host's timeline.
type Store interface {
	BMCCredentials(ctx context.Context, hostID string) (inventory.BMC, error)
	AppendEvent(ctx context.Context, hostID string, e inventory.Event) (inventory.Event, error)
}

var _ Store = inventory.Store(nil)

// Defaults for Config's zero values.
const (
	DefaultWorkers     = 8
	DefaultTimeout     = 30 * time.Second
	DefaultMaxAttempts = 3
	DefaultBackoff     = 250 * time.Millisecond
	maxBackoff         = 5 * time.Second
)

// Config configures a Service. Store is required; the rest has defaults.
type Config struct {
	Store Store
	// Backend performs the operations; nil means NewLibBackend(Lib).
	Backend Backend
	// Lib configures the bmclib backend when Backend is nil.
	Lib LibConfig `yaml:",inline"`
	// Workers bounds how many BMC operations run at once (default 8).
	Workers int `yaml:"workers" doc:"BMC operations at once (one dead BMC never blocks the others)"`
	// Timeout bounds one operation, retries included (default 30s). When it passes,
	// the caller gets ErrTimeout and the worker moves on, whatever the BMC does.
	Timeout time.Duration `yaml:"timeout" doc:"one BMC operation, retries included"`
	// QueueTimeout bounds the wait for a free worker, and for an operation already
	// running on the same host to finish (default: Timeout). Past it: ErrBusy.
	QueueTimeout time.Duration `yaml:"queueTimeout" doc:"wait for a free worker (0: bmc.timeout)"`
	// MaxAttempts per operation (default 3; 1 disables retries). Only transient
	// failures are retried: never wrong credentials, refusals or timeouts.
	MaxAttempts int `yaml:"maxAttempts" doc:"attempts per operation; only transient failures are retried"`
	// Backoff before the first retry, doubled for each further one, with jitter
	// (default 250ms, at most 5s).
	Backoff time.Duration `yaml:"backoff" doc:"wait before the first retry, doubled for each further one (at most 5s)"`
	// Logger receives one line per operation; nil discards. Passwords never reach it.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means they are not exported.
	Registerer prometheus.Registerer
}

// Service runs BMC operations for hosts in the inventory through a bounded pool of
// workers. Operations on one host run one at a time, in arrival order; operations on
// different hosts run in parallel up to Workers. Start must be running for calls to
// be served.
type Service struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	m       metrics

	jobs    chan *job
	started chan struct{}
	stopped chan struct{}
	once    sync.Once

	mu    sync.Mutex
	hosts map[string]*hostLock
	last  map[string]string // last power status observation per host, for the timeline
}

type metrics struct {
	ops       *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	retries   *prometheus.CounterVec
	inFlight  prometheus.Gauge
	abandoned prometheus.Gauge
	waiting   prometheus.Gauge
}

// DefaultConfig is the settings part of Config with every default written out.
func DefaultConfig() Config {
	return Config{Workers: DefaultWorkers, Timeout: DefaultTimeout, MaxAttempts: DefaultMaxAttempts, Backoff: DefaultBackoff, Lib: LibConfig{PingWait: time.Second}}
}

// Validate checks the operator's settings (zeros mean the defaults). Each message
// starts with the setting's name in the configuration file (workers, timeout, ...), so
// the caller can prefix its own path ("bmc.").
func (c Config) Validate() error {
	var errs []error
	if c.Workers < 0 || c.Workers > 1024 {
		errs = append(errs, fmt.Errorf("workers: %d: give 1-1024 (default %d)", c.Workers, DefaultWorkers))
	}
	if c.Timeout < 0 || (c.Timeout > 0 && c.Timeout < time.Second) {
		errs = append(errs, fmt.Errorf("timeout: %s: give at least 1s (ipmitool alone needs a few hundred ms per call)", c.Timeout))
	}
	if c.QueueTimeout < 0 {
		errs = append(errs, fmt.Errorf("queueTimeout: %s: give a positive duration, or 0 for bmc.timeout", c.QueueTimeout))
	}
	if c.MaxAttempts < 0 || c.MaxAttempts > 10 {
		errs = append(errs, fmt.Errorf("maxAttempts: %d: give 1-10 (default %d)", c.MaxAttempts, DefaultMaxAttempts))
	}
	if c.Lib.PingWait < 0 || c.Lib.PingWait > 30*time.Second {
		errs = append(errs, fmt.Errorf("pingWait: %s: give 0-30s (0: 1s)", c.Lib.PingWait))
	}
	if c.Backoff < 0 || c.Backoff > maxBackoff {
		errs = append(errs, fmt.Errorf("backoff: %s: give 0-%s (default %s)", c.Backoff, maxBackoff, DefaultBackoff))
	}
	if err := c.Lib.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// New validates cfg and returns a Service; call Start to run its workers.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("bmc: no inventory store configured")
	}
	// Validate is the operator's rule (serve applies it); New refuses only what cannot
	// work, so tests may use short timeouts.
	if cfg.Workers < 0 || cfg.Timeout < 0 || cfg.QueueTimeout < 0 || cfg.MaxAttempts < 0 || cfg.Backoff < 0 {
		return nil, errors.New("bmc: workers, timeouts, attempts and backoff cannot be negative")
	}
	if err := cfg.Lib.Validate(); err != nil {
		return nil, fmt.Errorf("bmc: %w", err)
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.QueueTimeout == 0 {
		cfg.QueueTimeout = cfg.Timeout
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg:     cfg,
		backend: cfg.Backend,
		log:     cfg.Logger,
		jobs:    make(chan *job),
		started: make(chan struct{}),
		stopped: make(chan struct{}),
		hosts:   map[string]*hostLock{},
		last:    map[string]string{},
	}
	if s.backend == nil {
		s.backend = newLibBackend(cfg.Lib, cfg.Logger)
	}
	s.m = metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackboot_bmc_operations_total",
			Help: "BMC operations by protocol, operation and outcome (ok, auth, unreachable, timeout, tls, rejected, bmc_error, busy, ...).",
		}, []string{"protocol", "operation", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rackboot_bmc_operation_duration_seconds",
			Help:    "Time a BMC operation took once a worker ran it, retries included, by protocol and operation.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"protocol", "operation"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackboot_bmc_retries_total",
			Help: "BMC operation attempts after the first, by protocol and operation.",
		}, []string{"protocol", "operation"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rackboot_bmc_calls_in_flight",
			Help: "BMC calls running now, including abandoned ones that have not returned yet.",
		}),
		abandoned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rackboot_bmc_calls_abandoned",
			Help: "BMC calls that overstayed their deadline and still have not returned (the caller already got a timeout).",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rackboot_bmc_operations_waiting",
			Help: "BMC operations waiting for a worker or for another operation on the same host.",
		}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.m.ops, s.m.duration, s.m.retries, s.m.inFlight, s.m.abandoned, s.m.waiting} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("bmc: registering metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Start runs the workers until ctx ends, then waits for the operations they are
// running (each bounded by Timeout) and returns nil. It may be called once.
func (s *Service) Start(ctx context.Context) error {
	first := false
	s.once.Do(func() { first = true })
	if !first {
		return errors.New("bmc: Start called twice")
	}
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-s.jobs:
					s.run(j)
				}
			}
		}()
	}
	close(s.started)
	s.log.Info("bmc: workers running", "workers", s.cfg.Workers, "timeout", s.cfg.Timeout)
	<-ctx.Done()
	close(s.stopped)
	wg.Wait()
	return nil
}

// Ready is closed once Start's workers run.
func (s *Service) Ready() <-chan struct{} { return s.started }

// Result is what a successful operation reports.
type Result struct {
	HostID    string
	Operation Operation
	// Endpoint is the canonical BMC URL.
	Endpoint string
	// State is the power state, for power_status.
	State    PowerState
	Attempts int
	Duration time.Duration
}

// PowerStatus asks the host's BMC for its power state.
func (s *Service) PowerStatus(ctx context.Context, hostID string) (Result, error) {
	var state PowerState
	res, err := s.exec(ctx, hostID, OpPowerStatus, true, func(ctx context.Context, t Target) error {
		var err error
		state, err = s.backend.PowerState(ctx, t)
		return err
	})
	if err != nil {
		return res, err
	}
	res.State = state
	s.recordStatus(ctx, res)
	return res, nil
}

// Power performs a power action on the host.
func (s *Service) Power(ctx context.Context, hostID string, a PowerAction) (Result, error) {
	if _, err := ParsePowerAction(string(a)); err != nil {
		return Result{}, fmt.Errorf("%w: %w", inventory.ErrInvalid, err)
	}
	idempotent := a == ActionOn || a == ActionOff || a == ActionSoft
	res, err := s.exec(ctx, hostID, powerOp(a), idempotent, func(ctx context.Context, t Target) error {
		return s.backend.SetPower(ctx, t, a)
	})
	if err == nil {
		s.recordPower(ctx, res, a)
	}
	return res, err
}

// SetBootDevice sets the host's next boot device.
func (s *Service) SetBootDevice(ctx context.Context, hostID string, o BootOptions) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, fmt.Errorf("%w: %w", inventory.ErrInvalid, err)
	}
	res, err := s.exec(ctx, hostID, OpBootDevice, true, func(ctx context.Context, t Target) error {
		return s.backend.SetBootDevice(ctx, t, o)
	})
	if err == nil {
		s.record(ctx, hostID, inventory.Event{
			Type:    "bmc.bootdev",
			Message: "next boot: " + o.String(),
			Fields: mergeFields(resultFields(res), map[string]string{
				"device": string(o.Device), "persistent": strconv.FormatBool(o.Persistent), "uefi": strconv.FormatBool(o.UEFI),
			}),
		})
	}
	return res, err
}

// job is one operation handed to a worker.
type job struct {
	ctx        context.Context
	target     Target
	idempotent bool
	run        func(ctx context.Context, t Target) error
	op         Operation
	hostID     string
	done       chan struct{}
	// Set by the worker before done is closed.
	err      error
	attempts int
	elapsed  time.Duration
}

// exec runs one operation for hostID: looks up its BMC, waits for the host and a
// worker, runs it with retries inside the deadline, and records the outcome.
func (s *Service) exec(ctx context.Context, hostID string, op Operation, idempotent bool, run func(context.Context, Target) error) (Result, error) {
	res := Result{HostID: hostID, Operation: op}
	protocol := "none"
	failure := func(class, cause error, attempts int, elapsed time.Duration, secret string) *Error {
		e := &Error{HostID: hostID, Operation: op, Endpoint: res.Endpoint, Class: class, Attempts: attempts, Elapsed: elapsed, Err: scrub(cause, secret)}
		s.m.ops.WithLabelValues(protocol, string(op), Outcome(e)).Inc()
		return e
	}
	fail := func(class, cause error, attempts int, elapsed time.Duration, secret string) (Result, error) {
		return res, failure(class, cause, attempts, elapsed, secret)
	}
	select {
	case <-s.started:
	default:
		return fail(ErrStopped, newError(ErrStopped, nil, "the BMC service is not running"), 0, 0, "")
	}
	select {
	case <-s.stopped:
		return fail(ErrStopped, newError(ErrStopped, nil, "the BMC service is shutting down"), 0, 0, "")
	default:
	}

	creds, err := s.cfg.Store.BMCCredentials(ctx, hostID)
	if err != nil {
		// Unknown host (inventory.ErrNotFound) or an undecryptable password: not a
		// BMC outcome, so no metric.
		return res, err
	}
	if creds.URL == "" {
		return fail(ErrNoBMC, newError(ErrNoBMC, nil, "host %s has no BMC: set one with 'rackboot host bmc %s --bmc URL --bmc-password-file FILE'", hostID, hostID), 0, 0, "")
	}
	ep, err := ParseURL(creds.URL)
	if err != nil {
		return fail(ErrInvalidURL, fmt.Errorf("%w: set a valid one with 'rackboot host bmc %s --bmc URL'", err, hostID), 0, 0, creds.Password)
	}
	res.Endpoint = ep.String()
	protocol = string(ep.Protocol)
	t := Target{Endpoint: ep, Password: Password(creds.Password)}

	// Wait for the host, then for a worker: both bounded by QueueTimeout and ctx.
	qctx, cancel := context.WithTimeout(ctx, s.cfg.QueueTimeout)
	defer cancel()
	s.m.waiting.Inc()
	unlock, err := s.lockHost(qctx, hostID)
	if err != nil {
		s.m.waiting.Dec()
		return fail(s.queueError(ctx, err, "another BMC operation on host %s did not finish within %s", hostID, s.cfg.QueueTimeout))
	}
	defer unlock()
	j := &job{ctx: ctx, target: t, idempotent: idempotent, run: run, op: op, hostID: hostID, done: make(chan struct{})}
	select {
	case s.jobs <- j:
		s.m.waiting.Dec()
	case <-qctx.Done():
		s.m.waiting.Dec()
		return fail(s.queueError(ctx, qctx.Err(), "all %d BMC workers stayed busy for %s: too many slow or dead BMCs at once; try again, or raise bmc.workers", s.cfg.Workers, s.cfg.QueueTimeout))
	case <-s.stopped:
		s.m.waiting.Dec()
		return fail(ErrStopped, newError(ErrStopped, nil, "the BMC service is shutting down"), 0, 0, "")
	}
	// The worker always finishes within Timeout plus a little: it abandons a call that
	// overstays rather than waiting for it.
	<-j.done
	res.Attempts, res.Duration = j.attempts, j.elapsed
	s.m.duration.WithLabelValues(protocol, string(op)).Observe(j.elapsed.Seconds())
	if j.attempts > 1 {
		s.m.retries.WithLabelValues(protocol, string(op)).Add(float64(j.attempts - 1))
	}
	if j.err != nil {
		e := failure(classOf(j.err), j.err, j.attempts, j.elapsed, creds.Password)
		s.recordError(ctx, hostID, op, res, e)
		return res, e
	}
	s.m.ops.WithLabelValues(protocol, string(op), "ok").Inc()
	s.log.LogAttrs(ctx, levelFor(op), "bmc operation", slog.String("hostID", hostID), slog.String("operation", string(op)),
		slog.String("bmc", res.Endpoint), slog.String("outcome", "ok"), slog.Int("attempts", j.attempts), slog.Duration("duration", j.elapsed))
	return res, nil
}

// queueError classifies a failed wait: the caller's own cancellation or deadline, else
// ErrBusy with msg.
func (s *Service) queueError(ctx context.Context, err error, format string, args ...any) (error, error, int, time.Duration, string) {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return context.Canceled, newError(context.Canceled, err, "cancelled while waiting for a BMC worker"), 0, 0, ""
	case ctx.Err() != nil:
		return ErrTimeout, newError(ErrTimeout, err, "the request's deadline passed while it waited for a BMC worker"), 0, 0, ""
	}
	return ErrBusy, newError(ErrBusy, err, format, args...), 0, 0, ""
}

// run executes j on the calling worker: attempts with backoff until success, a
// failure not worth retrying, MaxAttempts, or the deadline.
func (s *Service) run(j *job) {
	defer close(j.done)
	start := time.Now()
	ctx, cancel := context.WithTimeout(j.ctx, s.cfg.Timeout)
	defer cancel()
	backoff := s.cfg.Backoff
	for attempt := 1; ; attempt++ {
		j.attempts = attempt
		j.err = s.attempt(ctx, j)
		if j.err == nil || attempt >= s.cfg.MaxAttempts || !retryable(j.err, j.idempotent) {
			break
		}
		wait := backoff/2 + rand.N(backoff/2+1) // jitter: BMCs restarting together are not hit in step
		if dl, _ := ctx.Deadline(); time.Until(dl) <= wait {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		if ctx.Err() != nil {
			break
		}
		backoff = min(2*backoff, maxBackoff)
	}
	j.elapsed = time.Since(start)
}

// attempt runs one call. The backend gets a deadline a little before the call's, so a
// backend that honours its context reports its own, more precise error; one that does
// not is abandoned when the call's deadline passes.
func (s *Service) attempt(ctx context.Context, j *job) error {
	dl, _ := ctx.Deadline()
	margin := min(s.cfg.Timeout/20, 250*time.Millisecond)
	bctx, cancel := context.WithDeadline(ctx, dl.Add(-margin))
	result := make(chan error, 1)
	s.m.inFlight.Inc()
	go func() {
		defer cancel()
		result <- j.run(bctx, j.target)
	}()
	select {
	case err := <-result:
		s.m.inFlight.Dec()
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-result:
		s.m.inFlight.Dec()
		return err
	default:
	}
	s.m.abandoned.Inc()
	go func() {
		<-result
		s.m.abandoned.Dec()
		s.m.inFlight.Dec()
	}()
	if errors.Is(ctx.Err(), context.Canceled) {
		return newError(context.Canceled, ctx.Err(), "cancelled before the BMC at %s answered", j.target.Endpoint.Address())
	}
	return newError(ErrTimeout, ctx.Err(), "no answer from the BMC at %s within %s", j.target.Endpoint.Address(), s.cfg.Timeout)
}

// hostLock serialises operations on one host.
type hostLock struct {
	ch   chan struct{}
	refs int
}

func (s *Service) lockHost(ctx context.Context, id string) (func(), error) {
	s.mu.Lock()
	l := s.hosts[id]
	if l == nil {
		l = &hostLock{ch: make(chan struct{}, 1)}
		s.hosts[id] = l
	}
	l.refs++
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(s.hosts, id)
		}
		s.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// Power actions and power state changes go on the timeline; status reads only when
// what they saw changed, so a controller polling every few seconds does not bury the
// host's history.
func (s *Service) recordPower(ctx context.Context, res Result, a PowerAction) {
	s.setLast(res.HostID, "") // the next status read reports what the action did
	s.record(ctx, res.HostID, inventory.Event{
		Type:    "bmc.power",
		Message: "power " + string(a) + ": done",
		Fields:  mergeFields(resultFields(res), map[string]string{"action": string(a)}),
	})
}

func (s *Service) recordStatus(ctx context.Context, res Result) {
	if !s.setLast(res.HostID, "state:"+string(res.State)) {
		return
	}
	s.record(ctx, res.HostID, inventory.Event{
		Type:    "bmc.power",
		Message: "power is " + string(res.State),
		Fields:  mergeFields(resultFields(res), map[string]string{"state": string(res.State)}),
	})
}

func (s *Service) recordError(ctx context.Context, hostID string, op Operation, res Result, e *Error) {
	outcome := Outcome(e)
	s.log.LogAttrs(ctx, slog.LevelWarn, "bmc operation failed", slog.String("hostID", hostID), slog.String("operation", string(op)),
		slog.String("bmc", res.Endpoint), slog.String("outcome", outcome), slog.Int("attempts", e.Attempts),
		slog.Duration("duration", e.Elapsed), slog.String("err", e.Error()))
	if op == OpPowerStatus && !s.setLast(hostID, "error:"+outcome) {
		return
	}
	if op != OpPowerStatus {
		s.setLast(hostID, "")
	}
	res.Attempts, res.Duration = e.Attempts, e.Elapsed
	s.record(ctx, hostID, inventory.Event{
		Type:    "bmc.error",
		Message: e.Error(),
		Fields:  mergeFields(resultFields(res), map[string]string{"outcome": outcome}),
	})
}

// setLast stores what a host's last status read saw and reports whether it changed.
func (s *Service) setLast(hostID, v string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v == "" {
		delete(s.last, hostID)
		return true
	}
	if s.last[hostID] == v {
		return false
	}
	s.last[hostID] = v
	return true
}

// record appends e even if the caller has gone: the operation happened either way.
func (s *Service) record(ctx context.Context, hostID string, e inventory.Event) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := s.cfg.Store.AppendEvent(ctx, hostID, e); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "could not record BMC event", slog.String("hostID", hostID),
			slog.String("type", e.Type), slog.Any("err", err))
	}
}

func resultFields(res Result) map[string]string {
	f := map[string]string{"operation": string(res.Operation), "bmc": res.Endpoint}
	if res.Attempts > 0 {
		f["attempts"] = strconv.Itoa(res.Attempts)
		f["durationMs"] = strconv.FormatInt(res.Duration.Milliseconds(), 10)
	}
	return f
}

func mergeFields(a, b map[string]string) map[string]string {
	for k, v := range b {
		a[k] = v
	}
	return a
}

func levelFor(op Operation) slog.Level {
	if op == OpPowerStatus {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
