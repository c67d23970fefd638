package main

// `rackboot host watch` follows one host or many through an operation. One goroutine per
// host long-polls the admin API (GET /hosts/{id}/watch, then the timeline after the last
// event seen) and sends what changed to a single loop, which hands it to one of three
// outputs:
//
//	bars   (stdout is a terminal, -o text)  one live bar per host, drawn by
//	       github.com/vbauerster/mpb/v8: state, step, image %, rate, ETA; the timeline
//	       scrolls above the bars
//	lines  (not a terminal, -o text)        one line per timeline event and per change of
//	       a host's status, as a log would want them
//	json   (-o json)                        one JSON object per line (watchRecord), for CI
//
// Rate and ETA come from the agent's own reports: bytes written between two progress
// reports over the server's time between them (Operation.LastSeen), so a slow long poll
// does not make a fast disk look slow.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/provision"
)

func (h *hostCLI) watchCmd() *cobra.Command {
	var (
		timeout time.Duration
		filter  hostFilter
		output  string
	)
	cmd := &cobra.Command{
		Use:   "watch (ID... | -l SELECTOR | --state S | --owner O) [-o text|json] [--timeout DURATION]",
		Short: "Follow hosts' progress and timelines until each reaches a final state",
		Long: `watch follows hosts until none is inspecting, provisioning or deprovisioning any more.
Name them, or pick them as 'host list' does (-l, --state, --owner: the hosts that match
when watch starts).

On a terminal each host gets a live bar: state, agent step, how much of the image is
written, the rate and the time left; the timeline scrolls above. Elsewhere (a pipe, a CI
log) it prints one line per event and per change of a host's status. -o json prints
one JSON object per line instead: {"host", "time", "kind": event|status|end, "state",
"phase", "step", "disk", "bytesDone", "bytesTotal", "bytesPerSecond", "etaSeconds",
"type", "message", "ok"}; every host ends with one "end" object.

watch exits 0 when every host ended well, 1 when one failed, was removed or was still
busy at --timeout (the message names them).

  rackboot host watch node-1 node-2
  rackboot host watch -l role=worker --timeout 30m
  rackboot host watch --state provisioning -o json | jq -c 'select(.kind=="end")'`,
		Args: cobra.ArbitraryArgs,
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if output != "text" && output != "json" {
				return usageErrorf("-o %s: use text or json", output)
			}
			picked := filter.selector != "" || len(filter.states) > 0 || filter.owner != ""
			if picked && len(args) > 0 {
				return usageErrorf("give host IDs or -l/--state/--owner, not both")
			}
			if !picked && len(args) == 0 {
				return usageErrorf("name the hosts to watch, or pick them with -l SELECTOR, --state S or --owner O")
			}
			var ids []string
			for _, id := range args {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
			if picked {
				keep, err := filter.matcher()
				if err != nil {
					return err
				}
				all, err := c.ListHosts(ctx)
				if err != nil {
					return err
				}
				ids = nil
				for _, host := range all {
					if keep(host) {
						ids = append(ids, host.ID)
					}
				}
				if len(ids) == 0 {
					return fmt.Errorf("no hosts match (%d enrolled): 'rackboot host list' with the same flags shows what they pick", len(all))
				}
			}
			return h.watchHosts(ctx, c, ids, watchOptions{timeout: timeout, json: output == "json", prefix: picked || len(ids) > 1})
		}),
	}
	filter.register(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (default: no limit)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output: text (bars on a terminal, lines elsewhere) or json (one object per line)")
	_ = cmd.RegisterFlagCompletionFunc("output", flagWords(words("text", "bars on a terminal, lines elsewhere", "json", "one JSON object per line")))
	return cmd
}

// watchPoll is the long-poll the CLI asks for; the client's timeout (60s) is above it.
const watchPoll = 25 * time.Second

type watchOptions struct {
	timeout time.Duration
	json    bool
	// prefix names the host on every line: more than one host, or hosts picked by a filter.
	prefix bool
}

// hostUpdate is what one host's follower saw: the host as it is now and the events
// since the last update. final is its last update: the host reached a final state, or
// err says why it cannot be followed.
type hostUpdate struct {
	id     string
	host   admin.Host
	known  bool // host is set
	events []admin.Event
	final  bool
	err    error
}

// watchSink is one of the outputs; every call comes from the one watch loop.
type watchSink interface {
	update(u hostUpdate)
	close()
}

// watchHosts follows every host in ids until each is in a final state, ctx ends or the
// timeout passes, and says which did not end well.
func (h *hostCLI) watchHosts(ctx context.Context, c *admin.Client, ids []string, o watchOptions) error {
	parent := ctx
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	updates := make(chan hostUpdate)
	send := func(u hostUpdate) bool {
		select {
		case updates <- u:
			return true
		case <-fctx.Done():
			return false
		}
	}
	var warnMu sync.Mutex
	warn := func(err error) {
		warnMu.Lock()
		defer warnMu.Unlock()
		fmt.Fprintf(h.env.stderr, "rackboot: %v; retrying every 2s\n", h.explain(err))
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() { followHost(fctx, c, id, send, warn) })
	}
	sink := h.newWatchSink(ids, o)
	last := map[string]hostUpdate{}
	finals := map[string]hostUpdate{}
loop:
	for len(finals) < len(ids) {
		select {
		case u := <-updates:
			if u.known {
				last[u.id] = u
			}
			sink.update(u)
			if u.final {
				finals[u.id] = u
			}
		case <-ctx.Done():
			break loop
		}
	}
	stop()
	wg.Wait()
	// Hosts still busy end too, so every output closes each host it opened.
	var busy []string
	for _, id := range ids {
		if _, ok := finals[id]; ok {
			continue
		}
		busy = append(busy, id)
		u := last[id]
		st := "busy"
		if u.known {
			st = string(u.host.State)
		}
		u.id, u.events, u.final, u.err = id, nil, true, fmt.Errorf("host %s is still %s", id, st)
		sink.update(u)
	}
	sink.close()
	return watchVerdict(ids, finals, last, busy, o.timeout, parent.Err() != nil)
}

// watchVerdict turns the hosts' ends into the command's error: nil when all ended well.
func watchVerdict(ids []string, finals, last map[string]hostUpdate, busy []string, timeout time.Duration, interrupted bool) error {
	var problems []string
	bad := len(busy)
	for _, id := range ids {
		u, ok := finals[id]
		switch {
		case !ok:
		case u.err != nil:
			problems = append(problems, u.err.Error())
			bad++
		case u.host.State == inventory.StateFailed:
			problems = append(problems, fmt.Sprintf("host %s failed: %s (rackboot host retry %s, or release it)", id, u.host.StateReason, id))
			bad++
		}
	}
	if len(busy) > 0 {
		states := make([]string, len(busy))
		for i, id := range busy {
			st := "busy"
			if u, ok := last[id]; ok && u.known {
				st = string(u.host.State)
			}
			states[i] = st
		}
		var what string
		if len(busy) == 1 {
			what = fmt.Sprintf("host %s is still %s", busy[0], states[0])
		} else {
			parts := make([]string, len(busy))
			for i := range busy {
				parts[i] = busy[i] + " (" + states[i] + ")"
			}
			what = "hosts " + strings.Join(parts, ", ") + " are still busy"
		}
		if !interrupted && timeout > 0 {
			what += " after " + timeout.String()
		}
		problems = append(problems, what+": keep watching with rackboot host watch "+strings.Join(busy, " "))
	}
	switch len(problems) {
	case 0:
		return nil
	case 1:
		for _, u := range finals {
			if u.err != nil {
				return u.err // as it came, for the CLI to explain
			}
		}
		return errors.New(problems[0])
	}
	return fmt.Errorf("%d of %d hosts did not end well:\n  %s", bad, len(ids), strings.Join(problems, "\n  "))
}

// followHost sends host id's updates until it is in a final state or ctx ends. The first
// update carries the timeline from the start of the current (or last) operation. Once
// the host is found, a server that cannot be reached (a restart) is waited out: warn
// says so once per outage.
func followHost(ctx context.Context, c *admin.Client, id string, send func(hostUpdate) bool, warn func(error)) {
	fail := func(err error, found bool) {
		if ctx.Err() != nil {
			return
		}
		var ae *admin.APIError
		if found && errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("host %s was removed", id)
		}
		send(hostUpdate{id: id, final: true, err: err})
	}
	host, err := c.GetHost(ctx, id)
	if err != nil {
		fail(err, false)
		return
	}
	evs, err := c.Events(ctx, id, 0)
	if err != nil {
		fail(err, true)
		return
	}
	var seq uint64
	if n := len(evs); n > 0 {
		seq = evs[n-1].Seq
	}
	if !send(hostUpdate{id: id, host: host, known: true, events: evs[operationStart(evs):], final: !provision.Transient(host.State)}) {
		return
	}
	outage := false
	for provision.Transient(host.State) {
		next, err := c.Watch(ctx, id, host.Revision, watchPoll)
		var evs []admin.Event
		if err == nil {
			evs, err = c.Events(ctx, id, seq)
		}
		if err != nil {
			var ae *admin.APIError
			if ctx.Err() != nil || errors.As(err, &ae) {
				fail(err, true)
				return
			}
			if !outage {
				warn(err)
				outage = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			continue
		}
		outage = false
		host = next
		if n := len(evs); n > 0 {
			seq = evs[n-1].Seq
		}
		if !send(hostUpdate{id: id, host: host, known: true, events: evs, final: !provision.Transient(host.State)}) {
			return
		}
	}
}

// operationStart is where the current operation's timeline starts in evs: at the state
// change out of the last resting state.
func operationStart(evs []admin.Event) int {
	start := len(evs)
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == provision.EventState {
			start = i
			if !provision.Transient(inventory.State(evs[i].Fields["from"])) {
				break
			}
		}
	}
	return start
}

// rateMeter smooths the agent's write rate over its progress reports.
type rateMeter struct {
	key  string // the step and disk the samples are of
	done int64
	at   time.Time
	rate float64 // bytes per second
}

// sample adds a report of done bytes at the server's time at and returns the rate.
func (m *rateMeter) sample(key string, done int64, at time.Time) float64 {
	if key != m.key || done < m.done || m.at.IsZero() || at.IsZero() {
		*m = rateMeter{key: key, done: done, at: at}
		return 0
	}
	dt := at.Sub(m.at).Seconds()
	if dt <= 0 {
		return m.rate
	}
	r := float64(done-m.done) / dt
	if m.rate == 0 {
		m.rate = r
	} else {
		m.rate = 0.3*r + 0.7*m.rate
	}
	m.done, m.at = done, at
	return m.rate
}

// hostStatus is where a watched host is, as every output shows it.
type hostStatus struct {
	host       admin.Host
	progress   *agentapi.Progress // the agent's report, during the agent phase
	rate       float64            // bytes per second, 0 when unknown
	eta        time.Duration
	percentage int64 // -1 without a byte count
}

// statusTracker keeps each host's rate meter.
type statusTracker map[string]*rateMeter

func (t statusTracker) status(h admin.Host) hostStatus {
	s := hostStatus{host: h, percentage: -1}
	op := h.Operation
	if op == nil || !provision.Transient(h.State) || op.Phase != inventory.PhaseAgent || op.Progress == nil {
		delete(t, h.ID)
		return s
	}
	pr := op.Progress
	s.progress = pr
	if pr.BytesTotal <= 0 {
		return s
	}
	s.percentage = min(pr.BytesDone*100/pr.BytesTotal, 100)
	m := t[h.ID]
	if m == nil {
		m = &rateMeter{}
		t[h.ID] = m
	}
	s.rate = m.sample(string(pr.Phase)+" "+pr.Disk, pr.BytesDone, op.LastSeen)
	if s.rate > 0 && pr.BytesDone < pr.BytesTotal {
		s.eta = time.Duration(float64(pr.BytesTotal-pr.BytesDone) / s.rate * float64(time.Second)).Round(time.Second)
	}
	return s
}

// step says what the host is doing: the operation's phase, the agent's step and disk.
func (s hostStatus) step() string {
	op := s.host.Operation
	if op == nil || !provision.Transient(s.host.State) {
		return ""
	}
	out := string(op.Phase)
	if pr := s.progress; pr != nil {
		out += " " + string(pr.Phase)
		if pr.Disk != "" {
			out += " " + pr.Disk
		}
	}
	return out
}

// bytes is "42% (1.2 GiB of 3.0 GiB)", with the rate and time left when known.
func (s hostStatus) bytes() string {
	if s.percentage < 0 {
		return ""
	}
	pr := s.progress
	out := fmt.Sprintf("%d%% (%s of %s)", s.percentage, agentapi.FormatBytes(uint64(pr.BytesDone)), agentapi.FormatBytes(uint64(pr.BytesTotal)))
	if s.rate > 0 {
		out += ", " + agentapi.FormatBytes(uint64(s.rate)) + "/s"
	}
	if s.eta > 0 {
		out += ", " + s.eta.String() + " left"
	}
	return out
}

// transfer is "430.1 MiB/1.0 GiB  51.2 MiB/s  12s left", for a bar.
func (s hostStatus) transfer() string {
	if s.percentage < 0 {
		return ""
	}
	pr := s.progress
	out := agentapi.FormatBytes(uint64(pr.BytesDone)) + "/" + agentapi.FormatBytes(uint64(pr.BytesTotal))
	if s.rate > 0 {
		out += "  " + agentapi.FormatBytes(uint64(s.rate)) + "/s"
	}
	if s.eta > 0 {
		out += "  " + s.eta.String() + " left"
	}
	return out
}

// line summarises where a host is: state, phase, attempt, agent progress.
func (s hostStatus) line() string {
	h := s.host
	out := "== " + string(h.State)
	if op := h.Operation; op != nil && provision.Transient(h.State) {
		out += fmt.Sprintf(" (%s, attempt %d", op.Phase, op.Attempt)
		if pr := s.progress; pr != nil {
			out += ", agent " + string(pr.Phase)
			if pr.Disk != "" {
				out += " " + pr.Disk
			}
			if b := s.bytes(); b != "" {
				out += " " + b
			}
		}
		out += ")"
	}
	if h.StateReason != "" {
		out += ": " + h.StateReason
	}
	return out
}

// newWatchSink picks the output: json, bars on a terminal, lines elsewhere.
func (h *hostCLI) newWatchSink(ids []string, o watchOptions) watchSink {
	width := 0
	for _, id := range ids {
		width = max(width, len(id))
	}
	switch {
	case o.json:
		return &jsonSink{enc: json.NewEncoder(h.env.stdout), now: time.Now, tracker: statusTracker{}, last: map[string]string{}}
	case h.env.terminal(h.env.stdout):
		return newBarSink(h.env.stdout, ids, width, 0)
	}
	return &lineSink{w: h.env.stdout, prefix: o.prefix, width: width, now: time.Now, tracker: statusTracker{}, last: map[string]string{}}
}

// lineSink prints a line per timeline event and per change of a host's status line.
type lineSink struct {
	w       io.Writer
	prefix  bool
	width   int
	now     func() time.Time
	tracker statusTracker
	last    map[string]string
}

func (s *lineSink) update(u hostUpdate) {
	p := ""
	if s.prefix {
		p = fmt.Sprintf("%-*s  ", s.width, u.id)
	}
	writeWatchEvents(s.w, p, u.events)
	if !u.known || u.err != nil {
		return
	}
	if line := s.tracker.status(u.host).line(); line != s.last[u.id] {
		s.last[u.id] = line
		fmt.Fprintf(s.w, "%s  %s%s\n", s.now().Format("15:04:05"), p, line)
	}
}

func (s *lineSink) close() {}

func writeWatchEvents(w io.Writer, prefix string, evs []admin.Event) {
	for _, e := range evs {
		fmt.Fprintf(w, "%s  %s%-18s %s\n", e.Time.Local().Format("15:04:05"), prefix, e.Type, e.Message)
	}
}

// watchRecord is one line of `host watch -o json`. kind is "event" (a timeline event:
// type, message, fields), "status" (the host's state or the agent's progress changed)
// or "end" (the host's last record: ok, and in message why not).
type watchRecord struct {
	Host           string            `json:"host"`
	Time           time.Time         `json:"time"`
	Kind           string            `json:"kind"`
	State          inventory.State   `json:"state,omitempty"`
	Phase          inventory.OpPhase `json:"phase,omitempty"`
	Attempt        int               `json:"attempt,omitempty"`
	Step           agentapi.Phase    `json:"step,omitempty"`
	Disk           string            `json:"disk,omitempty"`
	BytesDone      int64             `json:"bytesDone,omitempty"`
	BytesTotal     int64             `json:"bytesTotal,omitempty"`
	BytesPerSecond int64             `json:"bytesPerSecond,omitempty"`
	ETASeconds     int64             `json:"etaSeconds,omitempty"`
	Type           string            `json:"type,omitempty"`
	Message        string            `json:"message,omitempty"`
	Fields         map[string]string `json:"fields,omitempty"`
	OK             *bool             `json:"ok,omitempty"`
}

// jsonSink prints watchRecords, one per line.
type jsonSink struct {
	enc     *json.Encoder
	now     func() time.Time
	tracker statusTracker
	last    map[string]string
}

func (s *jsonSink) update(u hostUpdate) {
	for _, e := range u.events {
		_ = s.enc.Encode(watchRecord{Host: u.id, Time: e.Time.UTC(), Kind: "event", Type: e.Type, Message: e.Message, Fields: e.Fields})
	}
	rec := watchRecord{Host: u.id, Time: s.now().UTC(), Kind: "status"}
	if u.known {
		st := s.tracker.status(u.host)
		rec.State, rec.Message = u.host.State, u.host.StateReason
		if op := u.host.Operation; op != nil && provision.Transient(u.host.State) {
			rec.Phase, rec.Attempt = op.Phase, op.Attempt
		}
		if pr := st.progress; pr != nil {
			rec.Step, rec.Disk, rec.BytesDone, rec.BytesTotal = pr.Phase, pr.Disk, pr.BytesDone, pr.BytesTotal
			rec.BytesPerSecond, rec.ETASeconds = int64(st.rate), int64(st.eta/time.Second)
		}
		if line := st.line(); line != s.last[u.id] && u.err == nil {
			s.last[u.id] = line
			_ = s.enc.Encode(rec)
		}
	}
	if !u.final {
		return
	}
	ok := u.err == nil && u.host.State != inventory.StateFailed
	end := watchRecord{Host: u.id, Time: s.now().UTC(), Kind: "end", State: rec.State, OK: &ok}
	switch {
	case u.err != nil:
		end.Message = u.err.Error()
	case !ok:
		end.Message = u.host.StateReason
	}
	_ = s.enc.Encode(end)
}

func (s *jsonSink) close() {}

// barSink draws a bar per host with mpb and prints the timeline above the bars.
type barSink struct {
	p       *mpb.Progress
	bars    map[string]*hostBar
	prefix  string
	width   int
	tracker statusTracker
}

// hostBar is one host's bar and the text its decorators show; mpb reads the text from
// its own goroutine.
type hostBar struct {
	bar                  *mpb.Bar
	mu                   sync.Mutex
	state, step, percent string
	right                string
}

func (b *hostBar) text(f func(*hostBar) string, wc decor.WC) decor.Decorator {
	return decor.Any(func(decor.Statistics) string {
		b.mu.Lock()
		defer b.mu.Unlock()
		return f(b)
	}, wc)
}

// newBarSink starts the bars, in the order of ids, on out: a row per host
//
//	node-1  provisioning  agent write vda  42% [=====>------]  430.1 MiB/1.0 GiB  51.2 MiB/s  12s left
//
// width is the rows' width (0: the terminal's).
func newBarSink(out io.Writer, ids []string, idWidth, width int) *barSink {
	s := &barSink{
		// Redraw on a timer whatever out is: the caller decided it is a terminal.
		p:       mpb.New(mpb.WithOutput(out), mpb.WithAutoRefresh(), mpb.WithRefreshRate(200*time.Millisecond), mpb.WithWidth(width)),
		bars:    map[string]*hostBar{},
		width:   idWidth,
		tracker: statusTracker{},
	}
	for _, id := range ids {
		hb := &hostBar{state: "…"}
		hb.bar = s.p.AddBar(0,
			mpb.PrependDecorators(
				decor.Name(id, decor.WCSyncSpaceR),
				hb.text(func(b *hostBar) string { return b.state }, decor.WCSyncSpaceR),
				hb.text(func(b *hostBar) string { return b.step }, decor.WCSyncSpaceR),
				hb.text(func(b *hostBar) string { return b.percent }, decor.WCSyncSpace),
			),
			mpb.AppendDecorators(hb.text(func(b *hostBar) string { return b.right }, decor.WC{})),
			mpb.BarFillerClearOnComplete(),
			mpb.BarFillerClearOnAbort(),
		)
		s.bars[id] = hb
	}
	return s
}

func (s *barSink) update(u hostUpdate) {
	hb := s.bars[u.id]
	if hb == nil {
		return
	}
	if len(u.events) > 0 {
		var buf strings.Builder
		writeWatchEvents(&buf, fmt.Sprintf("%-*s  ", s.width, u.id), u.events)
		_, _ = io.WriteString(s.p, buf.String())
	}
	if u.known {
		st := s.tracker.status(u.host)
		hb.mu.Lock()
		hb.state, hb.step, hb.percent, hb.right = string(u.host.State), st.step(), "", u.host.StateReason
		if st.percentage >= 0 {
			hb.percent, hb.right = fmt.Sprintf("%d%%", st.percentage), st.transfer()
		}
		hb.mu.Unlock()
		if st.percentage >= 0 {
			hb.bar.SetTotal(st.progress.BytesTotal, false)
			hb.bar.SetCurrent(st.progress.BytesDone)
		} else {
			hb.bar.SetTotal(0, false)
			hb.bar.SetCurrent(0)
		}
	}
	if !u.final {
		return
	}
	switch {
	case u.err != nil:
		hb.mu.Lock()
		hb.right = u.err.Error()
		hb.mu.Unlock()
		hb.bar.Abort(false)
	case u.host.State == inventory.StateFailed:
		hb.bar.Abort(false)
	default:
		hb.mu.Lock()
		hb.step, hb.percent, hb.right = "", "", "done"
		hb.mu.Unlock()
		hb.bar.SetTotal(-1, true)
	}
}

func (s *barSink) close() {
	for _, hb := range s.bars {
		if !hb.bar.Completed() && !hb.bar.Aborted() {
			hb.bar.Abort(false)
		}
	}
	s.p.Wait()
}
