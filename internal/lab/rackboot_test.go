package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackboot/rackboot/admin"
)

// binaries holds the rackboot binary, built at most once per test process and only when
// a test needs it, so unit tests of this package do not pay for a build.
var binaries struct {
	dir  string
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rackboot-lab-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binaries.dir = dir
	if os.Geteuid() == 0 {
		// Leftovers of a run killed before its cleanup could hold lab addresses.
		if err := SweepStale(); err != nil {
			fmt.Fprintln(os.Stderr, "lab: sweeping stale namespaces:", err)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// rackbootBinary builds ./cmd/rackboot once (CGO_ENABLED=0 go build -o $TMP/rackboot),
// static as `make build` builds it: the same binary is the server, the CLI and the agent
// (/init of the boot environment), so one build serves every test. The lab's BMCs are
// another binary (BMCSimBinary).
func rackbootBinary(t testing.TB) string {
	t.Helper()
	binaries.once.Do(func() {
		start := time.Now()
		binaries.path = filepath.Join(binaries.dir, "rackboot")
		cmd := exec.Command("go", "build", "-o", binaries.path, "github.com/rackboot/rackboot/cmd/rackboot")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binaries.err = fmt.Errorf("CGO_ENABLED=0 go build ./cmd/rackboot: %w\n%s", err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "lab: built rackboot in %v\n", time.Since(start).Round(time.Millisecond))
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.path
}

// serverIP is rackboot's address in most tests: .1 of the segment 10.77.0.0/24.
const serverIP = "10.77.0.1"

// rackboot is a lab Server bound to a test: every failure is a t.Fatal.
type rackboot struct {
	*Server
	t testing.TB
	// proc is the running serve process (Server.Proc).
	proc *Process
	// dataDir is DATA_DIR.
	dataDir string
}

// startRackboot runs `rackboot serve --interface br0 --address addr` in ns with the given
// mode flags added to the common ones, and waits until /readyz answers 200.
func startRackboot(t testing.TB, ns *Netns, dir, addr string, args ...string) *rackboot {
	t.Helper()
	Require(t)
	s, err := NewServer(t, ServerConfig{Bin: rackbootBinary(t), NS: ns, Dir: dir, Addr: addr, Flags: args})
	if err != nil {
		t.Fatal(err)
	}
	r := &rackboot{Server: s, t: t, dataDir: s.DataDir}
	r.start()
	return r
}

func (r *rackboot) start() {
	r.t.Helper()
	start := time.Now()
	err := r.Start(r.t.Context())
	r.proc = r.Proc
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Logf("rackboot serve ready in %v (%s)", time.Since(start).Round(time.Millisecond), r.Proc.Log)
}

func (r *rackboot) restart() {
	r.t.Helper()
	if err := r.Stop(); err != nil {
		r.t.Fatal(err)
	}
	r.start()
}

func (r *rackboot) setFlag(flag, value string) { r.SetFlag(flag, value) }

func (r *rackboot) cli(args ...string) ([]byte, error) { return r.CLI(r.t.Context(), args...) }

func (r *rackboot) mustCLI(args ...string) []byte {
	r.t.Helper()
	out, err := r.cli(args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// hostID returns the ID of the host holding mac, from `host list -o json`.
func (r *rackboot) hostID(mac string) string {
	r.t.Helper()
	var hosts []admin.Host
	if err := json.Unmarshal(r.mustCLI("host", "list", "-o", "json"), &hosts); err != nil {
		r.t.Fatalf("host list -o json: %v", err)
	}
	for _, h := range hosts {
		if slices.Contains(h.MACs, mac) {
			return h.ID
		}
	}
	r.t.Fatalf("no host with MAC %s in host list", mac)
	return ""
}

func (r *rackboot) events(id string) ([]admin.Event, error) {
	return r.Events(r.t.Context(), id)
}

// eventStep is one expected timeline entry: its type and the exact values of the fields
// it must carry (others may be present).
type eventStep struct {
	Type   string
	Fields map[string]string
}

func (s eventStep) String() string {
	if len(s.Fields) == 0 {
		return s.Type
	}
	return fmt.Sprintf("%s%v", s.Type, s.Fields)
}

func (s eventStep) matches(e admin.Event) bool {
	if e.Type != s.Type {
		return false
	}
	for k, v := range s.Fields {
		if e.Fields[k] != v {
			return false
		}
	}
	return true
}

// inOrder reports the first step that does not appear, in order, in evs.
func inOrder(evs []admin.Event, steps []eventStep) error {
	i := 0
	for _, e := range evs {
		if i < len(steps) && steps[i].matches(e) {
			i++
		}
	}
	if i < len(steps) {
		return fmt.Errorf("timeline lacks %s (after %d of %d expected steps)", steps[i], i, len(steps))
	}
	return nil
}

func formatEvents(evs []admin.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %3d %s %-16s %v %s\n", e.Seq, e.Time.Format("15:04:05.000"), e.Type, e.Fields, e.Message)
	}
	return b.String()
}

// waitTimeline waits until host id's events contain steps in order.
func (r *rackboot) waitTimeline(id string, timeout time.Duration, steps []eventStep) []admin.Event {
	r.t.Helper()
	var evs []admin.Event
	err := Poll(r.t.Context(), timeout, "host "+id+" timeline", Alive(func(context.Context) (bool, error) {
		var err error
		evs, err = r.events(id)
		if err != nil {
			return false, fmt.Errorf("%w: %v", ErrNotYet, err)
		}
		if err := inOrder(evs, steps); err != nil {
			return false, fmt.Errorf("%w: %v", ErrNotYet, err)
		}
		return true, nil
	}, r.proc))
	if err != nil {
		r.t.Fatalf("%v\nevents of %s:\n%s", err, id, formatEvents(evs))
	}
	return evs
}

// udhcpc runs busybox udhcpc on eth0 of ns until it holds a lease (or gives up after
// about 4 tries) and returns the variables its script saw on "bound". The script does not
// configure the interface: the tests only look at what the server offered.
type udhcpcLease map[string]string

var errNoLease = errors.New("udhcpc got no lease")

func runUdhcpc(t testing.TB, ns *Netns, dir, name string, extra ...string) (udhcpcLease, error) {
	t.Helper()
	out := filepath.Join(dir, name+".env")
	script := filepath.Join(dir, name+".sh")
	body := fmt.Sprintf("#!/bin/sh\ncase \"$1\" in bound|renew) env > %q.tmp && mv %q.tmp %q ;; esac\nexit 0\n", out, out, out)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(out)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	args := append([]string{"busybox", "udhcpc", "-i", "eth0", "-f", "-n", "-q", "-t", "4", "-T", "1", "-A", "1",
		"-s", script, "-O", "bootfile"}, extra...)
	stdout, err := ns.Exec(ctx, args...)
	_ = os.WriteFile(filepath.Join(dir, name+".log"), stdout, 0o644)
	b, rerr := os.ReadFile(out)
	if rerr != nil {
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errNoLease, err)
		}
		return nil, fmt.Errorf("%w: script never saw bound: %v", errNoLease, rerr)
	}
	lease := udhcpcLease{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			lease[k] = v
		}
	}
	return lease, err
}

// BootFile is the boot file the server named: the BOOTP file field (boot_file) or, when
// that is empty, option 67 (bootfile; servers put it there when the client asks for 67).
func (l udhcpcLease) BootFile() string {
	if f := l["boot_file"]; f != "" {
		return f
	}
	return l["bootfile"]
}

// pxeClientArgs are udhcpc options making it look like a PXE ROM of the given arch
// (option 93): vendor class PXEClient:Arch:NNNNN:UNDI:002001, client arch, NDI (94) and a
// machine UUID (97).
func pxeClientArgs(arch uint16) []string {
	return []string{
		// PXE ROMs send no client identifier (61), only the UUID (97): -C keeps udhcpc
		// from adding one, so the server identifies the client by its MAC as with a ROM.
		"-C",
		"-V", fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", arch),
		"-x", fmt.Sprintf("0x5d:%04x", arch),
		"-x", "0x5e:010201",
		"-x", "0x61:00" + "8f6cbd2c5fa44d6a9a7b3b2f1e0d0c0b",
	}
}
