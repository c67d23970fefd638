package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// LogsEnv keeps the lab's process logs and serial consoles in a directory that outlives
// the test (one subdirectory per test), for debugging a boot by hand.
const LogsEnv = "RACKBOOT_LAB_LOGS"

// logDir is where a test's process logs go.
func logDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv(LogsEnv)
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	// Start empty: a wait must never see the serial log of a previous run.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// newSegment makes a lab segment with the server at .1 of 10.77.<n>.0/24.
func newSegment(t testing.TB, role, addr string) *Segment {
	t.Helper()
	s, err := NewSegment(t, role, netip.MustParsePrefix(addr))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startDnsmasq runs dnsmasq-base in the foreground in ns with no config file and no DNS,
// serving DHCP on iface only; extra holds the test's options (range, boot settings).
func startDnsmasq(t testing.TB, ns *Netns, dir, iface string, extra ...string) *Process {
	t.Helper()
	args := append([]string{
		"dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=" + iface, "--bind-interfaces", "--except-interface=lo",
		"--log-dhcp", "--log-facility=-", "--user=root", "--group=root",
		"--pid-file=", "--dhcp-leasefile=" + filepath.Join(dir, "dnsmasq.leases"),
	}, extra...)
	p, err := ns.Start(t, filepath.Join(dir, "dnsmasq.log"), args...)
	if err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "dnsmasq to start", Alive(FileContains(p.Log, "DHCP, IP range"), p))
	return p
}

// phoneHomeRecorder stands in for rackboot's /healthz, which the fixture GETs: it records
// who called.
type phoneHomeRecorder struct {
	mu    sync.Mutex
	calls []phoneHomeCall
}

type phoneHomeCall struct {
	MAC    string
	Source string
}

func (r *phoneHomeRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	host, _, _ := net.SplitHostPort(req.RemoteAddr)
	r.mu.Lock()
	r.calls = append(r.calls, phoneHomeCall{MAC: req.URL.Query().Get("mac"), Source: host})
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *phoneHomeRecorder) Calls() []phoneHomeCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]phoneHomeCall(nil), r.calls...)
}

// serveInNetns serves h on addr inside ns until the test ends.
func serveInNetns(t testing.TB, ns *Netns, addr string, h http.Handler) {
	t.Helper()
	l, err := ns.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
}

// bootFixtures returns the kernel and phone-home initramfs, fetching and building them
// into the cache on first use.
func bootFixtures(t testing.TB) (*Kernel, string) {
	t.Helper()
	Require(t, "apt-get", "dpkg-deb")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	k, err := FetchKernel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := PhoneHomeInitramfs(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot fixtures ready in %v: kernel %s, initramfs %s", time.Since(start).Round(time.Millisecond), k.Vmlinuz, initrd)
	return k, initrd
}

var phoneHomeOKRe = regexp.MustCompile(MarkerPhoneHomeOK + ` mac=(\S+) ip=(\S+) url=(\S+)`)

// waitPhoneHome waits for the phone-home marker in a VM's serial log, failing early if the
// guest reports failure or QEMU exits first, and returns the guest's reported IP.
func waitPhoneHome(t testing.TB, vm VM, qemu *Process, timeout time.Duration) string {
	t.Helper()
	var m []string
	err := Poll(t.Context(), timeout, "VM "+vm.Name+" ("+string(vm.Firmware)+") to phone home",
		func(ctx context.Context) (bool, error) {
			if ok, _ := FileMatches(vm.SerialLog, phoneHomeOKRe, &m)(ctx); ok {
				return true, nil
			}
			if line := grepLine(vm.SerialLog, MarkerPhoneHomeFail); line != "" {
				return false, fmt.Errorf("guest reported: %s", line)
			}
			if exited, err := qemu.Exited(); exited {
				return false, fmt.Errorf("QEMU exited (%v) before the guest phoned home", err)
			}
			return false, nil
		})
	if err != nil {
		t.Fatalf("%v\nserial console (%s):\n%s\nqemu log:\n%s", err, vm.SerialLog, Tail(vm.SerialLog, 40), Tail(qemu.Log, 20))
	}
	return m[2]
}

func grepLine(path, substr string) string {
	b, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, substr) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
