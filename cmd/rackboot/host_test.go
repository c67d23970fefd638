package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/adminserver"
	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
)

const cliToken = "cli-test-token-0123456789"

// cliHarness is an admin API over a real BoltStore on loopback, and the CLI pointed at it
// through the environment.
type cliHarness struct {
	t        *testing.T
	store    *inventory.BoltStore
	srv      *httptest.Server
	env      map[string]string
	requests atomic.Int64 // requests that reached the server
	stdin    string
	ifAddrs  interfaceAddrs // serve's view of the interfaces (nil: the system's)
	// terminal makes the CLI take its standard output and error for terminals (bars).
	terminal bool
	// tap, when set, also gets what the command writes to standard output, as it writes.
	tap io.Writer
}

func newCLIHarness(t *testing.T) *cliHarness {
	t.Helper()
	return newCLIHarnessWith(t, nil)
}

// newCLIHarnessWith serves the BMC routes through a bmc.Service over backend (nil:
// bmclib's, the real one).
func newCLIHarnessWith(t *testing.T, backend bmc.Backend) *cliHarness {
	t.Helper()
	dir := t.TempDir()
	store, err := inventory.Open(filepath.Join(dir, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(dir, "secret.key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	svc, err := bmc.New(bmc.Config{Store: store, Backend: backend, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-svc.Ready()
	api, err := adminserver.NewHandler(adminserver.Config{Store: store, Token: cliToken, Subnets: []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")}, BMC: svc})
	if err != nil {
		t.Fatal(err)
	}
	h := &cliHarness{t: t, store: store}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		api.ServeHTTP(w, r)
	}))
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	h.env = map[string]string{"RACKBOOT_SERVER": h.srv.URL, "RACKBOOT_TOKEN": cliToken}
	return h
}

// run executes `rackboot ARGS...` in-process.
func (h *cliHarness) run(args ...string) (stdout, stderr string, err error) {
	return h.runCtx(context.Background(), nil, args...)
}

// runCtx runs with ctx and, if tokenFiles is not nil, those default token files instead
// of the real ones.
func (h *cliHarness) runCtx(ctx context.Context, tokenFiles []string, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	var stdout io.Writer = &out
	if h.tap != nil {
		stdout = io.MultiWriter(&out, h.tap)
	}
	terminal := h.terminal
	env := &cliEnv{stdout: stdout, stderr: &errb, getenv: func(k string) string { return h.env[k] }, ifAddrs: h.ifAddrs,
		isTerminal: func(io.Writer) bool { return terminal },
		environ: func() []string {
			var kv []string
			for k, v := range h.env {
				kv = append(kv, k+"="+v)
			}
			slices.Sort(kv)
			return kv
		}}
	var root *cobra.Command
	if tokenFiles == nil {
		root = newRootCmd(env)
	} else {
		root = &cobra.Command{Use: "rackboot", SilenceUsage: true, SilenceErrors: true}
		root.AddCommand(newHostCmdWith(env, tokenFiles))
	}
	root.SetIn(strings.NewReader(h.stdin))
	root.SetOut(stdout)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

func (h *cliHarness) mustRun(args ...string) string {
	h.t.Helper()
	out, stderr, err := h.run(args...)
	if err != nil {
		h.t.Fatalf("rackboot %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func (h *cliHarness) hostIDs() []string {
	h.t.Helper()
	hosts, err := h.store.ListHosts(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	ids := []string{}
	for _, host := range hosts {
		ids = append(ids, host.ID)
	}
	return ids
}

func TestHostAddListShowRm(t *testing.T) {
	h := newCLIHarness(t)
	if out := h.mustRun("host", "add", "--mac", "52-54-00-00-00-01", "--mac", "525400000003", "--hostname", "web1.rack1",
		"--ip", "192.168.50.11", "--label", "role=web", "--label", "rack=r1"); out != "created host web1\n" {
		t.Fatalf("add output %q", out)
	}
	if out := h.mustRun("host", "add", "--mac", "52:54:00:00:00:02", "--id", "db1",
		"--boot-kernel", "debian/vmlinuz", "--boot-initrd", "debian/initrd.img", "--boot-cmdline", "console=ttyS0"); out != "created host db1\n" {
		t.Fatalf("add output %q", out)
	}

	want := `ID    STATE     OWNER  MACS                                 IP             HOSTNAME    LABELS
db1   enrolled  -      52:54:00:00:00:02                    -              -           -
web1  enrolled  -      52:54:00:00:00:01,52:54:00:00:00:03  192.168.50.11  web1.rack1  rack=r1,role=web
`
	if d := cmp.Diff(want, h.mustRun("host", "list")); d != "" {
		t.Fatalf("list table (-want +got):\n%s", d)
	}
	var hosts []inventory.Host
	if err := json.Unmarshal([]byte(h.mustRun("host", "list", "-o", "json")), &hosts); err != nil || len(hosts) != 2 {
		t.Fatalf("list -o json: %d hosts, %v", len(hosts), err)
	}
	if hosts[0].Boot == nil || hosts[0].Boot.Kernel != "debian/vmlinuz" || hosts[0].Boot.Initrds[0] != "debian/initrd.img" {
		t.Fatalf("db1 boot = %+v", hosts[0].Boot)
	}

	show := h.mustRun("host", "show", "web1")
	for _, s := range []string{"id: web1\n", "ip: 192.168.50.11\n", "- \"52:54:00:00:00:01\"\n", "  role: web\n", "state: enrolled\n"} {
		if !strings.Contains(show, s) {
			t.Errorf("show (yaml) lacks %q:\n%s", s, show)
		}
	}
	var one inventory.Host
	if err := json.Unmarshal([]byte(h.mustRun("host", "show", "web1", "-o", "json")), &one); err != nil || one.ID != "web1" {
		t.Fatalf("show -o json: %+v, %v", one, err)
	}

	if out := h.mustRun("host", "rm", "web1"); out != "deleted host web1\n" {
		t.Fatalf("rm output %q", out)
	}
	_, _, err := h.run("host", "show", "web1")
	if err == nil || err.Error() != `no host with ID "web1": list the hosts with GET /api/v1/hosts (rackboot host list)` {
		t.Fatalf("show after rm: %v", err)
	}
	if _, _, err := h.run("host", "rm", "web1"); err == nil || !strings.Contains(err.Error(), `no host with ID "web1"`) {
		t.Fatalf("rm twice: %v", err)
	}
}

func TestHostListEmpty(t *testing.T) {
	h := newCLIHarness(t)
	out, stderr, err := h.run("host", "list")
	if err != nil || out != "ID  STATE  OWNER  MACS  IP  HOSTNAME  LABELS\n" || !strings.Contains(stderr, "no hosts enrolled") {
		t.Fatalf("out %q stderr %q err %v", out, stderr, err)
	}
	if out := h.mustRun("host", "list", "-o", "json"); out != "[]\n" {
		t.Fatalf("json %q", out)
	}
}

func TestHostAddErrors(t *testing.T) {
	h := newCLIHarness(t)
	h.mustRun("host", "add", "--mac", "52:54:00:00:00:01", "--id", "web1", "--ip", "192.168.50.11")
	cases := []struct {
		name       string
		args       []string
		want       string
		clientSide bool // rejected before any request
	}{
		{"invalid MAC", []string{"--mac", "52:54:00:00:00:zz"}, `"52:54:00:00:00:zz" is not a MAC address: write six hex bytes, e.g. 52:54:00:12:34:56`, true},
		{"no MAC", []string{"--id", "x"}, "no MAC address", true},
		{"bad label", []string{"--mac", "52:54:00:00:00:02", "--label", "role"}, `--label: label "role": write it as key=value`, true},
		{"bad label value", []string{"--mac", "52:54:00:00:00:02", "--label", "role=a b"}, `value "a b" is invalid`, true},
		{"label twice", []string{"--mac", "52:54:00:00:00:02", "--label", "a=1", "--label", "a=2"}, "--label: a is given twice", true},
		{"IPv6", []string{"--mac", "52:54:00:00:00:02", "--ip", "fd00::1"}, `IP "fd00::1" is not an IPv4 address`, true},
		{"initrd without kernel", []string{"--mac", "52:54:00:00:00:02", "--boot-initrd", "x"}, "--boot-initrd and --boot-cmdline need --boot-kernel", true},
		{"bad kernel path", []string{"--mac", "52:54:00:00:00:02", "--boot-kernel", "../vmlinuz"}, "neither a URL nor a clean path", true},
		{"IP outside subnet", []string{"--mac", "52:54:00:00:00:02", "--ip", "10.1.2.3"}, "IP 10.1.2.3 is outside the DHCP subnets (192.168.50.0/24): pick an address inside one of them", false},
		{"duplicate MAC", []string{"--mac", "52:54:00:00:00:01", "--id", "web2"}, "MAC 52:54:00:00:00:01 already belongs to host web1", false},
		{"duplicate IP", []string{"--mac", "52:54:00:00:00:02", "--ip", "192.168.50.11"}, "IP 192.168.50.11 is already reserved for host web1", false},
		{"duplicate ID", []string{"--mac", "52:54:00:00:00:02", "--id", "web1"}, "host web1 already exists", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := h.requests.Load()
			_, _, err := h.run(append([]string{"host", "add"}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, c.want)
			}
			if sent := h.requests.Load() - before; c.clientSide && sent != 0 {
				t.Errorf("%d requests sent for an input the CLI can reject itself", sent)
			}
			if d := cmp.Diff([]string{"web1"}, h.hostIDs()); d != "" {
				t.Fatalf("hosts changed (-want +got):\n%s", d)
			}
		})
	}
}

func TestHostLabel(t *testing.T) {
	h := newCLIHarness(t)
	h.mustRun("host", "add", "--mac", "52:54:00:00:00:01", "--id", "web1", "--label", "old=1")
	if out := h.mustRun("host", "label", "web1", "role=web", "rack=r1", "--remove", "old"); out != "host web1 labels: rack=r1,role=web\n" {
		t.Fatalf("label output %q", out)
	}
	if out := h.mustRun("host", "label", "web1", "--remove", "rack", "--remove", "role"); out != "host web1 has no labels\n" {
		t.Fatalf("remove-all output %q", out)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"web1"}, "nothing to change: give labels to set and/or keys to remove (usage: rackboot host label ID k=v... [--remove k])"},
		{[]string{"web1", "role"}, `label "role": write it as key=value`},
		{[]string{"web1", "a=1", "--remove", "a"}, "label a is both set and removed"},
		{[]string{"nope", "a=1"}, `no host with ID "nope"`},
	}
	for _, c := range cases {
		_, _, err := h.run(append([]string{"host", "label"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("label %v: err = %v, want %q", c.args, err, c.want)
		}
	}
	ev, _ := h.store.Events(context.Background(), "web1", 0)
	if len(ev) != 3 || ev[1].Type != "admin.labels" || ev[1].Fields["removed"] != "old" {
		t.Fatalf("events = %+v", ev)
	}
}

func TestHostBoot(t *testing.T) {
	h := newCLIHarness(t)
	ctx := context.Background()
	h.mustRun("host", "add", "--mac", "52:54:00:00:00:01", "--id", "web1")
	out := h.mustRun("host", "boot", "web1", "--kernel", "http://10.0.0.1/vmlinuz", "--initrd", "a.img", "--initrd", "b.img", "--cmdline", "console=ttyS0 quiet")
	if out != "host web1 boots http://10.0.0.1/vmlinuz\n" {
		t.Fatalf("boot output %q", out)
	}
	host, _ := h.store.GetHost(ctx, "web1")
	want := &inventory.BootProfile{Kernel: "http://10.0.0.1/vmlinuz", Initrds: []string{"a.img", "b.img"}, Cmdline: "console=ttyS0 quiet"}
	if d := cmp.Diff(want, host.Boot); d != "" {
		t.Fatalf("stored boot (-want +got):\n%s", d)
	}
	if out := h.mustRun("host", "boot", "web1", "--clear"); out != "host web1: boot profile cleared\n" {
		t.Fatalf("clear output %q", out)
	}
	if host, _ := h.store.GetHost(ctx, "web1"); host.Boot != nil {
		t.Fatalf("boot after clear = %+v", host.Boot)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"web1"}, "give --kernel URL (with --initrd and --cmdline as needed), or --clear"},
		{[]string{"web1", "--clear", "--kernel", "x"}, "--clear removes the boot profile: give it alone"},
		{[]string{"web1", "--kernel", "smb://h/vmlinuz"}, `scheme "smb" is not one iPXE fetches`},
		{[]string{"web1", "--kernel", "vmlinuz", "--cmdline", "a\nb"}, "control character"},
		{[]string{"nope", "--kernel", "vmlinuz"}, `no host with ID "nope"`},
	}
	for _, c := range cases {
		_, _, err := h.run(append([]string{"host", "boot"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("boot %q: err = %v, want %q", c.args, err, c.want)
		}
	}
}

func TestHostEvents(t *testing.T) {
	h := newCLIHarness(t)
	ctx := context.Background()
	h.mustRun("host", "add", "--mac", "52:54:00:00:00:01", "--id", "web1", "--ip", "192.168.50.11")
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	if _, err := h.store.AppendEvent(ctx, "web1", inventory.Event{Time: at, Type: "dhcp.offer", Message: "offered 192.168.50.11",
		Fields: map[string]string{"ip": "192.168.50.11", "file": "undionly.kpxe"}}); err != nil {
		t.Fatal(err)
	}
	out := h.mustRun("host", "events", "web1")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("events table:\n%s", out)
	}
	if lines[0] != "SEQ    TIME                 TYPE             MESSAGE" {
		t.Errorf("header %q", lines[0])
	}
	if !strings.HasPrefix(lines[1], "1      ") || !strings.Contains(lines[1], " admin.created    enrolled through the admin API  ip=192.168.50.11 macs=52:54:00:00:00:01") {
		t.Errorf("line 1 %q", lines[1])
	}
	if lines[2] != "2      2026-11-24T10:00:00Z dhcp.offer       offered 192.168.50.11  file=undionly.kpxe ip=192.168.50.11" {
		t.Errorf("line 2 %q", lines[2])
	}
	var evs []inventory.Event
	if err := json.Unmarshal([]byte(h.mustRun("host", "events", "web1", "-o", "json")), &evs); err != nil || len(evs) != 2 || evs[1].Type != "dhcp.offer" {
		t.Fatalf("events -o json: %+v, %v", evs, err)
	}
	if _, _, err := h.run("host", "events", "nope"); err == nil || !strings.Contains(err.Error(), `no host with ID "nope"`) {
		t.Fatalf("unknown host: %v", err)
	}
	if _, _, err := h.run("host", "events", "web1", "-o", "xml"); err == nil || err.Error() != "-o xml: unknown output format: use one of table, wide, json, yaml, name, jsonpath=TEMPLATE" || exitCode(err) != exitUsage {
		t.Fatalf("bad -o: %v", err)
	}
}

// notifyBuffer is a goroutine-safe writer that signals every write, so a test can wait
// for output instead of sleeping.
type notifyBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func newNotifyBuffer() *notifyBuffer { return &notifyBuffer{wrote: make(chan struct{}, 1)} }

func (n *notifyBuffer) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	defer func() {
		select {
		case n.wrote <- struct{}{}:
		default:
		}
	}()
	return n.buf.Write(p)
}

func (n *notifyBuffer) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.buf.String()
}

func (n *notifyBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(n.String(), s) {
		select {
		case <-n.wrote:
		case <-deadline:
			t.Fatalf("timed out waiting for %q in:\n%s", s, n.String())
		}
	}
}

func TestHostEventsFollow(t *testing.T) {
	h := newCLIHarness(t)
	bg := context.Background()
	h.mustRun("host", "add", "--mac", "52:54:00:00:00:01", "--id", "web1")

	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			out, errb := newNotifyBuffer(), newNotifyBuffer()
			env := &cliEnv{stdout: out, stderr: errb, getenv: func(k string) string { return h.env[k] }}
			root := newRootCmd(env)
			root.SetArgs([]string{"host", "events", "web1", "--follow", "--interval", "5ms", "-o", format})
			done := make(chan error, 1)
			go func() { done <- root.ExecuteContext(ctx) }()

			out.waitFor(t, "admin.created")
			e, err := h.store.AppendEvent(bg, "web1", inventory.Event{Type: "boot.phonehome", Message: "phoned home " + format})
			if err != nil {
				t.Fatal(err)
			}
			out.waitFor(t, "phoned home "+format)
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("follow ended with %v", err)
			}
			got := out.String()
			if strings.Count(got, "phoned home "+format) != 1 || strings.Count(got, "admin.created") != 1 {
				t.Fatalf("events printed more than once:\n%s", got)
			}
			if format == "json" {
				// One JSON object per line.
				var last inventory.Event
				for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
					if err := json.Unmarshal([]byte(line), &last); err != nil {
						t.Fatalf("line %q: %v", line, err)
					}
				}
				if last.Seq != e.Seq {
					t.Fatalf("last seq %d, want %d", last.Seq, e.Seq)
				}
			}
		})
	}

	t.Run("server goes away", func(t *testing.T) {
		ctx, cancel := context.WithCancel(bg)
		defer cancel()
		// A second server over the same store, so closing it leaves the harness intact.
		api, err := adminserver.NewHandler(adminserver.Config{Store: h.store, Token: cliToken})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(api)
		out, errb := newNotifyBuffer(), newNotifyBuffer()
		env := &cliEnv{stdout: out, stderr: errb, getenv: func(k string) string {
			if k == "RACKBOOT_SERVER" {
				return srv.URL
			}
			return h.env[k]
		}}
		root := newRootCmd(env)
		root.SetArgs([]string{"host", "events", "web1", "--follow", "--interval", "5ms"})
		done := make(chan error, 1)
		go func() { done <- root.ExecuteContext(ctx) }()
		out.waitFor(t, "admin.created")
		srv.CloseClientConnections()
		srv.Close()
		errb.waitFor(t, "retrying every 5ms")
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("follow ended with %v", err)
		}
		if !strings.Contains(errb.String(), "cannot reach the rackboot admin API") || strings.Count(errb.String(), "retrying") != 1 {
			t.Fatalf("stderr:\n%s", errb.String())
		}
	})

	t.Run("host removed", func(t *testing.T) {
		h.mustRun("host", "add", "--mac", "52:54:00:00:00:09", "--id", "gone")
		out, errb := newNotifyBuffer(), newNotifyBuffer()
		env := &cliEnv{stdout: out, stderr: errb, getenv: func(k string) string { return h.env[k] }}
		root := newRootCmd(env)
		root.SetArgs([]string{"host", "events", "gone", "--follow", "--interval", "5ms"})
		done := make(chan error, 1)
		go func() { done <- root.ExecuteContext(bg) }()
		out.waitFor(t, "admin.created")
		if err := h.store.DeleteHost(bg, "gone"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), `no host with ID "gone"`) {
				t.Fatalf("follow ended with %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("follow did not end when the host was removed")
		}
	})
}

func TestHostImport(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("YAML", func(t *testing.T) {
		h := newCLIHarness(t)
		f := write("rack1.yaml", "hosts:\n  - id: n1\n    macs: ['52:54:00:00:01:01']\n    ip: 192.168.50.21\n  - macs: ['52:54:00:00:01:02']\n    hostname: n2.rack1\n    labels: {role: worker}\n")
		if out := h.mustRun("host", "import", f); out != "imported 2 hosts: n1, n2\n" {
			t.Fatalf("output %q", out)
		}
		if d := cmp.Diff([]string{"n1", "n2"}, h.hostIDs()); d != "" {
			t.Fatal(d)
		}
	})
	t.Run("CSV", func(t *testing.T) {
		h := newCLIHarness(t)
		f := write("rack1.csv", "mac,ip,hostname,labels\n52:54:00:00:01:01,192.168.50.21,n1,role=worker;rack=r1\n52:54:00:00:01:02,,n2,\n")
		if out := h.mustRun("host", "import", f); out != "imported 2 hosts: n1, n2\n" {
			t.Fatalf("output %q", out)
		}
		host, _ := h.store.GetHost(context.Background(), "n1")
		if d := cmp.Diff(map[string]string{"role": "worker", "rack": "r1"}, host.Labels); d != "" {
			t.Fatal(d)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		h := newCLIHarness(t)
		h.stdin = "mac,id\n52:54:00:00:01:01,s1\n"
		if out := h.mustRun("host", "import", "-"); out != "imported 1 hosts: s1\n" {
			t.Fatalf("output %q", out)
		}
	})
	cases := []struct {
		name, file, content, want string
		clientSide                bool
	}{
		{"bad MAC names the line", "bad.yaml", "- macs: ['52:54:00:00:01:01']\n- macs: ['52:54:00:00:01:0x']\n", `bad.yaml: line 2: "52:54:00:00:01:0x" is not a MAC address`, true},
		{"CSV bad row", "bad.csv", "mac,labels\n52:54:00:00:01:01,a=1\n52:54:00:00:01:02,a\n", `bad.csv: line 3: label "a": write it as key=value`, true},
		{"unknown YAML field", "typo.yaml", "- macs: ['52:54:00:00:01:01']\n  hostnmae: x\n", `typo.yaml: line 2: unknown field "hostnmae"`, true},
		{"conflict with inventory", "dup.yaml", "- macs: ['52:54:00:00:01:01']\n- macs: ['52:54:00:00:00:01']\n", "dup.yaml: MAC 52:54:00:00:00:01 already belongs to host web1: nothing was imported", false},
		{"IP outside subnet", "ip.csv", "mac,ip\n52:54:00:00:01:01,192.168.50.30\n52:54:00:00:01:02,10.0.0.9\n", "ip.csv: hosts[1]: host mac-525400000102: IP 10.0.0.9 is outside the DHCP subnets (192.168.50.0/24): pick an address inside one of them: nothing was imported (hosts[1] is line 3)", false},
		{"missing file", "missing.yaml", "", "no such file or directory", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newCLIHarness(t)
			h.mustRun("host", "add", "--mac", "52:54:00:00:00:01", "--id", "web1")
			path := filepath.Join(dir, c.file)
			if c.content != "" {
				path = write(c.file, c.content)
			}
			before := h.requests.Load()
			_, _, err := h.run("host", "import", path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, c.want)
			}
			if sent := h.requests.Load() - before; c.clientSide && sent != 0 {
				t.Errorf("%d requests sent for a file the CLI can reject itself", sent)
			}
			if d := cmp.Diff([]string{"web1"}, h.hostIDs()); d != "" {
				t.Fatalf("hosts changed (-want +got):\n%s", d)
			}
		})
	}
}

func TestHostLeases(t *testing.T) {
	h := newCLIHarness(t)
	exp := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for _, l := range []inventory.Lease{
		{MAC: "52:54:00:00:00:0b", IP: "192.168.50.101", State: inventory.LeaseOffered, Expires: exp},
		{MAC: "52:54:00:00:00:0a", IP: "192.168.50.100", Hostname: "pxe1", State: inventory.LeaseBound, Expires: exp},
	} {
		if err := h.store.PutLease(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	want := `MAC                IP              STATE    EXPIRES               HOSTNAME
52:54:00:00:00:0a  192.168.50.100  bound    2026-11-24T12:00:00Z  pxe1
52:54:00:00:00:0b  192.168.50.101  offered  2026-11-24T12:00:00Z  -
`
	if d := cmp.Diff(want, h.mustRun("host", "leases")); d != "" {
		t.Fatalf("leases (-want +got):\n%s", d)
	}
	var leases []inventory.Lease
	if err := json.Unmarshal([]byte(h.mustRun("host", "leases", "-o", "json")), &leases); err != nil || len(leases) != 2 {
		t.Fatalf("leases -o json: %v, %v", leases, err)
	}
}

func TestHostServerAndToken(t *testing.T) {
	h := newCLIHarness(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte(cliToken+"\n"), 0o600)
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("not-the-token\n"), 0o600)
	missing := filepath.Join(dir, "missing")

	t.Run("wrong token says what to do", func(t *testing.T) {
		h.env["RACKBOOT_TOKEN"] = "nope"
		defer func() { h.env["RACKBOOT_TOKEN"] = cliToken }()
		_, _, err := h.run("host", "list")
		want := "wrong API token: use the token in the server's API token file (token from RACKBOOT_TOKEN): give the token 'rackboot serve' uses (DATA_DIR/api-token) with --token-file or RACKBOOT_TOKEN"
		if err == nil || err.Error() != want {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("--token-file beats RACKBOOT_TOKEN", func(t *testing.T) {
		h.env["RACKBOOT_TOKEN"] = "nope"
		defer func() { h.env["RACKBOOT_TOKEN"] = cliToken }()
		h.mustRun("host", "list", "--token-file", good)
		_, _, err := h.run("host", "list", "--token-file", bad)
		if err == nil || !strings.Contains(err.Error(), "token from --token-file "+bad) {
			t.Fatalf("err = %v", err)
		}
		_, _, err = h.run("host", "list", "--token-file", missing)
		if err == nil || !strings.Contains(err.Error(), "--token-file: reading API token file: open "+missing) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("RACKBOOT_TOKEN_FILE", func(t *testing.T) {
		delete(h.env, "RACKBOOT_TOKEN")
		defer func() { h.env["RACKBOOT_TOKEN"] = cliToken; delete(h.env, "RACKBOOT_TOKEN_FILE") }()
		h.env["RACKBOOT_TOKEN_FILE"] = good
		h.mustRun("host", "list")
	})
	t.Run("default files in order", func(t *testing.T) {
		delete(h.env, "RACKBOOT_TOKEN")
		defer func() { h.env["RACKBOOT_TOKEN"] = cliToken }()
		if _, _, err := h.runCtx(context.Background(), []string{missing, good}, "host", "list"); err != nil {
			t.Fatalf("second default: %v", err)
		}
		if _, _, err := h.runCtx(context.Background(), []string{bad, good}, "host", "list"); err == nil || !strings.Contains(err.Error(), "token from "+bad) {
			t.Fatalf("first default must win: %v", err)
		}
		_, _, err := h.runCtx(context.Background(), []string{missing, dir}, "host", "list")
		want := "no API token: give --token-file FILE or set RACKBOOT_TOKEN (looked for " + missing + " and " + dir + "); reading API token file: read " + dir + ": is a directory"
		if err == nil || err.Error() != want {
			t.Fatalf("err = %v\nwant  %s", err, want)
		}
	})
	t.Run("bad server URL", func(t *testing.T) {
		_, _, err := h.run("host", "list", "--server", "127.0.0.1:8080")
		if err == nil || err.Error() != `server "127.0.0.1:8080" is invalid: write it as https://HOST:PORT or unix:/PATH/admin.sock (--server or RACKBOOT_SERVER)` {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("plain HTTP to another machine is refused before any request", func(t *testing.T) {
		before := h.requests.Load()
		for _, server := range []string{"http://192.0.2.10:8443", "http://rackboot.example.net:8443"} {
			_, _, err := h.run("host", "list", "--server", server)
			if !errors.Is(err, admin.ErrPlainHTTP) || !strings.Contains(err.Error(), "--insecure") {
				t.Fatalf("%s: err = %v, want a refusal naming --insecure", server, err)
			}
		}
		if n := h.requests.Load(); n != before {
			t.Fatalf("%d requests reached a server", n-before)
		}
	})
	t.Run("server not running", func(t *testing.T) {
		closed := httptest.NewServer(http.NotFoundHandler())
		closed.Close()
		_, _, err := h.run("host", "list", "--server", closed.URL)
		if err == nil || !strings.HasPrefix(err.Error(), "cannot reach the rackboot admin API at "+closed.URL+": ") ||
			!strings.Contains(err.Error(), "connection refused: is 'rackboot serve' running there?") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("--server beats RACKBOOT_SERVER", func(t *testing.T) {
		h.env["RACKBOOT_SERVER"] = "http://127.0.0.1:1"
		defer func() { h.env["RACKBOOT_SERVER"] = h.srv.URL }()
		h.mustRun("host", "list", "--server", h.srv.URL+"/")
	})
}

// TestHostShowCarriesNoTokenMaterial: `host show` and `host list` print the API's view
// of a host that is being provisioned: no agent or metadata token hash, no boot ID.
func TestHostShowCarriesNoTokenMaterial(t *testing.T) {
	h := newCLIHarness(t)
	h.mustRun("host", "add", "--mac", "52:54:00:aa:00:07", "--id", "n7")
	const tokenHash, mdHash, bootID = "aaaa1111bbbb2222cccc3333dddd4444eeee5555ffff6666aaaa7777bbbb8888", "1234123412341234123412341234123412341234123412341234123412341234", "boot-4711"
	if _, _, err := h.store.TransitionHost(t.Context(), "n7", func(host *inventory.Host, _ *inventory.HostChange) error {
		host.State = inventory.StateProvisioning
		host.Provision = &inventory.Provision{ID: "p1", Image: "img", MetadataTokenHash: mdHash}
		host.Operation = &inventory.Operation{State: inventory.StateProvisioning, Phase: inventory.PhaseAgent, Attempt: 1, TokenHash: tokenHash, BootID: bootID}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"host", "show", "n7", "-o", "json"}, {"host", "show", "n7"}, {"host", "list", "-o", "json"}} {
		out := h.mustRun(args...)
		if !strings.Contains(out, "provisioning") {
			t.Fatalf("%v: %s", args, out)
		}
		for _, secret := range []string{tokenHash, mdHash, bootID, "tokenHash", "metadataTokenHash", "bootID"} {
			if strings.Contains(out, secret) {
				t.Errorf("%v shows %q:\n%s", args, secret, out)
			}
		}
	}
}
