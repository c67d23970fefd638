package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/provision"
)

// waitFor waits until the buffer holds n occurrences of s.
func (b *lockedBuffer) waitFor(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(b.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20s for %d× %q; output so far:\n%s", n, s, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testClock is the provisioner's clock: the agent's reports carry its times.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// bootAgent plays the start of one agent boot of the host with mac: the script's
// token, then hello. The test goes on with the returned client.
func bootAgent(t *testing.T, h *cliHarness, prov *provision.Provisioner, mac string) (*agentapi.Client, agentapi.Plan) {
	t.Helper()
	key := prov.Gate().IssueKey(mac, netip.MustParseAddr("127.0.0.1"))
	resp, err := http.Get(h.srv.URL + "/ipxe/boot.ipxe?mac=" + mac + "&key=" + key)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	script := buf.String()
	i := strings.Index(script, "rackboot.url=")
	if i < 0 {
		t.Fatalf("no agent in the script:\n%s", script)
	}
	line := script[i:]
	line = line[:strings.Index(line, " ||")]
	args, err := agentapi.ParseKernelArgs(line)
	if err != nil {
		t.Fatalf("%v in %q", err, script)
	}
	c := &agentapi.Client{BaseURL: args.URL, Token: args.Token, Retry: agentapi.Retry{Attempts: 1}}
	plan, err := c.Hello(context.Background(), agentapi.Hello{MAC: mac, BootID: "b", Facts: agentapi.Facts{Disks: []agentapi.Disk{{Name: "vda", SizeBytes: 10 << 30}}}})
	if err != nil {
		t.Fatal(err)
	}
	return c, plan
}

// inspectHost takes an enrolled host to available through the CLI and the agent.
func inspectHost(t *testing.T, h *cliHarness, prov *provision.Provisioner, id, mac string) {
	t.Helper()
	h.mustRun("host", "inspect", id)
	c, _ := bootAgent(t, h, prov, mac)
	if err := c.Result(context.Background(), agentapi.Result{Action: agentapi.ActionInspect, OK: true}); err != nil {
		t.Fatal(err)
	}
}

// watchRun is a `rackboot` command running in the background.
type watchRun struct {
	args []string
	done chan struct{}
	out  string
	errs string
	err  error
}

func startRun(h *cliHarness, args ...string) *watchRun {
	r := &watchRun{args: args, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.out, r.errs, r.err = h.run(args...)
	}()
	return r
}

func (r *watchRun) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("rackboot %s did not end", strings.Join(r.args, " "))
	}
}

// clockRe is the local time that starts each line of host watch.
var clockRe = regexp.MustCompile(`(?m)^\d{2}:\d{2}:\d{2}  `)

func (r *watchRun) transcript() string {
	return clockRe.ReplaceAllString(formatTranscript(r.args, r.out, r.errs, r.err), "hh:mm:ss  ")
}

// releaseWatched releases node-1 (provisioned) with a full wipe while args watch it:
// the agent wipes 1 GiB in 20 s of the server's clock, reporting as it goes, and the
// host ends available. The watch starts once the provisioner has settled (the host
// waits for its agent), and each step waits for the watcher to show it (mark(step) in
// its output), so the output does not depend on how the long polls fall.
func releaseWatched(t *testing.T, args []string, mark func(step string) string) *watchRun {
	t.Helper()
	clock := &testClock{t: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
	h, prov := newProvisionHarnessAt(t, clock.Now)
	const mac = "52:54:00:12:34:56"
	ctx := context.Background()
	if _, err := h.store.CreateHosts(ctx, inventory.Host{ID: "node-1", MACs: []string{mac}, IP: "127.0.0.1",
		Labels: map[string]string{"role": "worker"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.UpdateHost(ctx, "node-1", func(host *inventory.Host) error {
		host.State = inventory.StateProvisioned
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.mustRun("host", "release", "node-1", "--wipe", "full")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		host, err := h.store.GetHost(ctx, "node-1")
		if err != nil {
			t.Fatal(err)
		}
		if host.Operation != nil && host.Operation.Phase == inventory.PhaseBooting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-1 never waited for its agent: %+v", host.Operation)
		}
	}
	tap := &lockedBuffer{}
	h.tap = tap
	run := startRun(h, args...)
	tap.waitFor(t, mark("start"), 1)
	c, _ := bootAgent(t, h, prov, mac)
	tap.waitFor(t, mark("hello"), 1)
	const total = 1 << 30
	for i, done := range []int64{0, total / 2, total} {
		if i > 0 {
			clock.Advance(10 * time.Second)
		}
		if err := c.Progress(ctx, agentapi.Progress{Phase: agentapi.PhaseWipe, Disk: "vda", BytesDone: done, BytesTotal: total}); err != nil {
			t.Fatal(err)
		}
		tap.waitFor(t, mark("progress"), i+1)
	}
	if err := c.Result(ctx, agentapi.Result{Action: agentapi.ActionDeprovision, OK: true, Wiped: []string{"vda"}, Seconds: 20}); err != nil {
		t.Fatal(err)
	}
	run.wait(t)
	return run
}

// TestCLIWatchGolden pins host watch's plain lines (one host; hosts picked by a
// selector, named on each line) and its -o json stream through a whole release with
// the agent's wipe progress, rate and time left.
func TestCLIWatchGolden(t *testing.T) {
	lines := func(step string) string {
		return map[string]string{"start": "(booting, attempt 1)", "hello": "(agent, attempt 1)", "progress": "agent wipe vda"}[step]
	}
	t.Run("watch-lines", func(t *testing.T) {
		checkGolden(t, "watch-lines", releaseWatched(t, []string{"host", "watch", "node-1"}, lines).transcript())
	})
	t.Run("watch-selector-lines", func(t *testing.T) {
		checkGolden(t, "watch-selector-lines", releaseWatched(t, []string{"host", "watch", "-l", "role=worker"}, lines).transcript())
	})
	t.Run("watch-json", func(t *testing.T) {
		run := releaseWatched(t, []string{"host", "watch", "node-1", "-o", "json"}, func(step string) string {
			return map[string]string{"start": `"kind":"status"`, "hello": `"phase":"agent"`, "progress": `"step":"wipe"`}[step]
		})
		sc := bufio.NewScanner(strings.NewReader(run.out))
		for sc.Scan() {
			var rec watchRecord
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Host != "node-1" || rec.Kind == "" {
				t.Errorf("line %q: %+v, %v", sc.Text(), rec, err)
			}
		}
		checkGolden(t, "watch-json", run.transcript())
	})
}

// TestCLIWatchManyHosts watches the hosts a selector picks until both finish, and
// leaves out the one it does not pick.
func TestCLIWatchManyHosts(t *testing.T) {
	h, prov := newProvisionHarness(t)
	ctx := context.Background()
	macs := map[string]string{"node-1": "52:54:00:00:01:01", "node-2": "52:54:00:00:01:02", "db-1": "52:54:00:00:01:03"}
	if _, err := h.store.CreateHosts(ctx,
		inventory.Host{ID: "node-1", MACs: []string{macs["node-1"]}, Labels: map[string]string{"role": "worker"}},
		inventory.Host{ID: "node-2", MACs: []string{macs["node-2"]}, Labels: map[string]string{"role": "worker"}},
		inventory.Host{ID: "db-1", MACs: []string{macs["db-1"]}, Labels: map[string]string{"role": "db"}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"node-1", "node-2", "db-1"} {
		h.mustRun("host", "inspect", id)
	}
	tap := &lockedBuffer{}
	h.tap = tap
	run := startRun(h, "host", "watch", "-l", "role=worker", "-o", "json", "--timeout", "30s")
	tap.waitFor(t, `"kind":"status"`, 2)
	for _, id := range []string{"node-2", "node-1", "db-1"} {
		c, _ := bootAgent(t, h, prov, macs[id])
		if err := c.Result(ctx, agentapi.Result{Action: agentapi.ActionInspect, OK: true}); err != nil {
			t.Fatal(err)
		}
	}
	run.wait(t)
	if run.err != nil {
		t.Fatalf("watch: %v\n%s", run.err, run.errs)
	}
	ends := map[string]watchRecord{}
	sc := bufio.NewScanner(strings.NewReader(run.out))
	for sc.Scan() {
		var rec watchRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if rec.Host == "db-1" {
			t.Errorf("db-1 is not a worker: %s", sc.Text())
		}
		if rec.Kind == "end" {
			ends[rec.Host] = rec
		}
	}
	for _, id := range []string{"node-1", "node-2"} {
		if e, ok := ends[id]; !ok || e.OK == nil || !*e.OK || e.State != inventory.StateAvailable {
			t.Errorf("%s's end: %+v (ok %v)\n%s", id, e, e.OK, run.out)
		}
	}
	// Named hosts, plain lines: each line names its host.
	out := h.mustRun("host", "watch", "node-1", "node-2")
	for _, want := range []string{"node-1  == available", "node-2  == available"} {
		if !strings.Contains(out, want) {
			t.Errorf("watch node-1 node-2 lacks %q:\n%s", want, out)
		}
	}
}

// TestCLIWatchFailure: a host that fails and one still busy at --timeout make watch
// fail (exit 1) and name both; -o json ends each with ok false.
func TestCLIWatchFailure(t *testing.T) {
	h, prov := newProvisionHarness(t)
	ctx := context.Background()
	if _, err := h.store.CreateHosts(ctx,
		inventory.Host{ID: "node-1", MACs: []string{"52:54:00:00:02:01"}},
		inventory.Host{ID: "node-2", MACs: []string{"52:54:00:00:02:02"}}); err != nil {
		t.Fatal(err)
	}
	h.mustRun("host", "inspect", "node-1")
	h.mustRun("host", "inspect", "node-2")
	c, _ := bootAgent(t, h, prov, "52:54:00:00:02:01")
	if err := c.Result(ctx, agentapi.Result{Action: agentapi.ActionInspect, Phase: agentapi.PhaseInspect, Error: "no disks found"}); err != nil {
		t.Fatal(err)
	}
	_, _, err := h.run("host", "watch", "node-1")
	if err == nil || exitCode(err) != exitFailure || !strings.Contains(err.Error(), "host node-1 failed: ") ||
		!strings.Contains(err.Error(), "no disks found") || !strings.Contains(err.Error(), "rackboot host retry node-1") {
		t.Errorf("watch of a failed host: %v", err)
	}
	out, _, err := h.run("host", "watch", "node-1", "node-2", "--timeout", "1s", "-o", "json")
	if err == nil || exitCode(err) != exitFailure {
		t.Fatalf("watch of a failed and a busy host: %v", err)
	}
	for _, want := range []string{"2 of 2 hosts did not end well", "host node-1 failed: ", "host node-2 is still inspecting after 1s: keep watching with rackboot host watch node-2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	for _, want := range []string{`{"host":"node-1","time":`, `"kind":"end","state":"failed","message":"the agent failed`, `"host":"node-2"`, `"kind":"end","state":"inspecting","message":"host node-2 is still inspecting","ok":false}`} {
		if !strings.Contains(out, want) {
			t.Errorf("json lacks %q:\n%s", want, out)
		}
	}
	// The host goes away while watched.
	run := startRun(h, "host", "watch", "node-2", "--timeout", "20s")
	time.Sleep(200 * time.Millisecond)
	h.mustRun("host", "rm", "node-2")
	run.wait(t)
	if run.err == nil || !strings.Contains(run.err.Error(), "host node-2 was removed") {
		t.Errorf("watch of a removed host: %v", run.err)
	}
}

// TestCLIWatchUsageGolden pins how watch refuses what it cannot do, and a watch of a
// host at rest (it ends at once).
func TestCLIWatchUsageGolden(t *testing.T) {
	h := newGoldenHarness(t)
	for _, c := range []goldenCase{
		{"watch-nothing", []string{"host", "watch"}},
		{"watch-ids-and-selector", []string{"host", "watch", "web1", "-l", "role=web"}},
		{"watch-bad-output", []string{"host", "watch", "web1", "-o", "yaml"}},
		{"watch-no-match", []string{"host", "watch", "-l", "role=gpu"}},
		{"watch-bad-selector", []string{"host", "watch", "-l", "role in (web"}},
		{"watch-unknown", []string{"host", "watch", "nope"}},
		{"watch-resting", []string{"host", "watch", "-l", "role=db"}},
		{"watch-resting-json", []string{"host", "watch", "web1", "-o", "json"}},
		{"complete-host-watch-second", []string{"__complete", "host", "watch", "web1", ""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkGolden(t, c.name, clockRe.ReplaceAllString(h.transcript(c.args...), "hh:mm:ss  "))
		})
	}
}

// TestWatchBars draws the bars into a buffer as mpb would on a terminal: a row per host
// with its ID, step, percentage, rate and time left; a finished host shows done.
func TestWatchBars(t *testing.T) {
	var buf lockedBuffer
	s := newBarSink(&buf, []string{"node-1", "node-2"}, len("node-1"), 160)
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	host := func(id string, done int64, at time.Time) admin.Host {
		return admin.Host{ID: id, State: inventory.StateProvisioning, Operation: &admin.Operation{State: inventory.StateProvisioning,
			Phase: inventory.PhaseAgent, Attempt: 1, LastSeen: at,
			Progress: &agentapi.Progress{Phase: agentapi.PhaseWrite, Disk: "vda", BytesDone: done, BytesTotal: 1 << 30}}}
	}
	s.update(hostUpdate{id: "node-1", host: host("node-1", 0, at), known: true,
		events: []admin.Event{{Time: at, Type: "agent.hello", Message: "agent says hello"}}})
	s.update(hostUpdate{id: "node-1", host: host("node-1", 1<<29, at.Add(10*time.Second)), known: true})
	s.update(hostUpdate{id: "node-2", host: admin.Host{ID: "node-2", State: inventory.StateAvailable}, known: true, final: true})
	buf.waitFor(t, "512.0 MiB/1.0 GiB  51.2 MiB/s  10s left", 1)
	s.close()
	out := buf.String()
	for _, want := range []string{"node-1", "provisioning", "agent write vda", " 50% [", "agent.hello", "agent says hello", "node-2", "available", "done"} {
		if !strings.Contains(out, want) {
			t.Errorf("bars lack %q:\n%s", want, out)
		}
	}
}

// TestByteBar draws image add's bar into a buffer.
func TestByteBar(t *testing.T) {
	var buf lockedBuffer
	b := newByteBarOn(&buf, "uploading debian-12", 1<<20)
	b.set(1<<19, 1<<20)
	buf.waitFor(t, "50 %", 1)
	b.set(1<<20, 1<<20)
	b.finish(true)
	for _, want := range []string{"uploading debian-12", "100 %", "1.0 MiB / 1.0 MiB", "done"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("bar lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestImageAddComputesSHA256: without --sha256, image add hashes the file itself and
// sends that sum; on a terminal it shows the hashing and the upload.
func TestImageAddComputesSHA256(t *testing.T) {
	h, _ := newProvisionHarness(t)
	data := strings.Repeat("image bytes ", 50000)
	s := sha256.Sum256([]byte(data))
	want := hex.EncodeToString(s[:])
	file := writeTemp(t, "disk.img", data)
	out, stderr, err := h.run("image", "add", "debian-12", "--file", file, "-o", "jsonpath={.sha256} {.status}")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if out != want+" ready" {
		t.Errorf("image add printed %q, want %q", out, want+" ready")
	}
	if !strings.Contains(stderr, "sha256 of "+file+": "+want) || !strings.Contains(stderr, "uploading "+file) {
		t.Errorf("stderr: %q", stderr)
	}
	im, err := h.store.GetImage(context.Background(), "debian-12")
	if err != nil || im.SHA256 != want || im.Status != inventory.ImageReady {
		t.Errorf("stored image %+v, %v; want sha256 %s, ready", im, err, want)
	}

	h.terminal = true
	_, stderr, err = h.run("image", "add", "debian-13", "--file", file)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, w := range []string{"sha256 " + file, "uploading debian-13", "100 %", "sha256 of " + file + ": " + want} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr on a terminal lacks %q:\n%s", w, stderr)
		}
	}
	// A URL is checked against a sum someone published: --sha256 stays required.
	_, _, err = h.run("image", "add", "x", "--url", "http://127.0.0.1:1/x.img")
	if err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), "--sha256 or --sha256-url is required with --url") {
		t.Errorf("image add --url without --sha256: %v", err)
	}
}
