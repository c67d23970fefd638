package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/agentapi"
)

const testToken = "tok-0123456789abcdefghij"

// fakeServer is the server side of the agent API for tests: it answers hello with the
// plans in order and records everything.
type fakeServer struct {
	t        testing.TB
	mu       sync.Mutex
	plans    []agentapi.Plan
	hellos   []agentapi.Hello
	progress []agentapi.Progress
	results  []agentapi.Result
	// helloStatus, when not 0, answers hello with that status.
	helloStatus int
	// cancelOn answers 409 to the first progress of that phase and closes cancelled.
	cancelOn  agentapi.Phase
	cancelled chan struct{}
	images    map[string][]byte
	// imageGate, when set, holds image responses until it is closed.
	imageGate chan struct{}
}

func (s *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/nocloud/") {
		data, ok := s.images[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(data)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/images/") {
		if s.imageGate != nil {
			<-s.imageGate
		}
		data, ok := s.images[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Unix(0, 0), bytes.NewReader(data))
		return
	}
	if tok, ok := agentapi.BearerToken(r); !ok || tok != testToken {
		agentapi.WriteError(w, http.StatusUnauthorized, "unknown token")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.URL.Path {
	case agentapi.PathHello:
		var h agentapi.Hello
		if err := agentapi.DecodeRequest(r, &h); err != nil {
			agentapi.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.hellos = append(s.hellos, h)
		if s.helloStatus != 0 {
			agentapi.WriteError(w, s.helloStatus, "no")
			return
		}
		if len(s.plans) == 0 {
			agentapi.WriteError(w, http.StatusInternalServerError, "no plan left")
			return
		}
		p := s.plans[0]
		s.plans = s.plans[1:]
		agentapi.WriteJSON(w, http.StatusOK, p)
	case agentapi.PathProgress:
		var p agentapi.Progress
		if err := agentapi.DecodeRequest(r, &p); err != nil {
			agentapi.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.progress = append(s.progress, p)
		if s.cancelOn != "" && p.Phase == s.cancelOn {
			s.cancelOn = ""
			agentapi.WriteError(w, http.StatusConflict, "host released")
			close(s.cancelled)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case agentapi.PathResult:
		var res agentapi.Result
		if err := agentapi.DecodeRequest(r, &res); err != nil {
			agentapi.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.results = append(s.results, res)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

// testHost is a fake machine: a root with proc and sys files, one disk file (vda) and a
// fake power switch.
type testHost struct {
	root, dev, disk string
	power           []PowerAction
}

func newTestHost(t *testing.T, serverURL string, diskSize int64) *testHost {
	t.Helper()
	root := t.TempDir()
	h := &testHost{root: root, dev: filepath.Join(root, "dev")}
	files := map[string]string{
		"proc/cmdline":                     fmt.Sprintf("console=ttyS0 rackboot.url=%s rackboot.token=%s rackboot.mac=52:54:00:12:34:56\n", serverURL, testToken),
		"proc/meminfo":                     "MemTotal:  1000000 kB\nMemAvailable:  800000 kB\n",
		"proc/uptime":                      "3.50 1.00\n",
		"sys/class/dmi/id/product_uuid":    "11111111-2222-3333-4444-555555555555\n",
		"sys/block/vda/size":               strconv.FormatInt(diskSize/512, 10) + "\n",
		"sys/block/vda/removable":          "0\n",
		"sys/block/vda/ro":                 "0\n",
		"sys/class/net/eth0/type":          "1\n",
		"sys/class/net/eth0/address":       "52:54:00:12:34:56\n",
		"sys/class/net/eth0/carrier":       "1\n",
		"sys/class/net/eth0/device/vendor": "0x1af4\n",
	}
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(h.dev, 0o755); err != nil {
		t.Fatal(err)
	}
	h.disk = filepath.Join(h.dev, "vda")
	if err := os.WriteFile(h.disk, make([]byte, diskSize), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *testHost) config() Config {
	return Config{
		Log: quietLog(), Version: "test", Root: h.root, DevDir: h.dev,
		Power:   func(a PowerAction) error { h.power = append(h.power, a); return nil },
		Retry:   agentapi.Retry{Attempts: 2, Initial: time.Millisecond, Max: time.Millisecond},
		MaxWait: time.Minute,
	}
}

func startFake(t *testing.T, plans ...agentapi.Plan) (*fakeServer, *httptest.Server) {
	s := &fakeServer{t: t, plans: plans, images: map[string][]byte{}, cancelled: make(chan struct{})}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func TestRunInspect(t *testing.T) {
	s, srv := startFake(t, agentapi.Plan{Action: agentapi.ActionInspect, PowerOff: true})
	h := newTestHost(t, srv.URL, 8<<20)
	if err := Run(t.Context(), h.config()); err != nil {
		t.Fatal(err)
	}
	if len(s.hellos) != 1 {
		t.Fatalf("%d hellos", len(s.hellos))
	}
	hello := s.hellos[0]
	if hello.MAC != "52:54:00:12:34:56" || hello.AgentVersion != "test" || len(hello.BootID) != 16 || hello.UptimeSeconds != 3.5 {
		t.Errorf("hello = %+v", hello)
	}
	if hello.Facts.System.UUID != "11111111-2222-3333-4444-555555555555" || len(hello.Facts.Disks) != 1 || hello.Facts.Disks[0].SizeBytes != 8<<20 {
		t.Errorf("facts = %+v", hello.Facts)
	}
	if len(hello.Facts.NICs) != 1 || !hello.Facts.NICs[0].Boot {
		t.Errorf("NICs = %+v, want eth0 marked as the boot NIC", hello.Facts.NICs)
	}
	want := []agentapi.Result{{Action: agentapi.ActionInspect, OK: true, Phase: agentapi.PhaseDone, Next: "poweroff"}}
	if diff := cmp.Diff(want, s.results, cmpResult()); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]PowerAction{PowerOff}, h.power); diff != "" {
		t.Errorf("power (-want +got):\n%s", diff)
	}
}

// cmpResult ignores the duration.
func cmpResult() cmp.Option {
	return cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Seconds" }, cmp.Ignore())
}

func TestRunProvisionDropIn(t *testing.T) {
	img := buildTestImage(t, 12<<20, map[string]string{"etc/cloud/cloud.cfg": "x: 1\n", "etc/hostname": "debian\n"})
	served := compress(t, agentapi.FormatGzip, img.data)
	s, srv := startFake(t)
	seed := srv.URL + "/nocloud/abc/"
	s.images["/images/debian.img.gz"] = served
	// The host's network-config goes into the drop-in (cloud-init's local stage reads it).
	netcfg := []byte("version: 2\nethernets:\n  boot0:\n    match:\n      macaddress: \"52:54:00:00:00:01\"\n    set-name: boot0\n    addresses:\n      - \"10.0.0.5/24\"\n")
	s.images["/nocloud/abc/network-config"] = netcfg
	s.plans = []agentapi.Plan{{Action: agentapi.ActionProvision, Provision: &agentapi.Provision{
		ImageURL: srv.URL + "/images/debian.img.gz", SHA256: sum(served), Size: int64(len(served)),
		CloudInit: agentapi.CloudInit{Mode: agentapi.CloudInitDropIn, SeedURL: seed},
	}}}
	h := newTestHost(t, srv.URL, 16<<20)
	cfg := h.config()
	cfg.VerifyInMemoryMax = -1 // stream
	// The file disk cannot be mounted without root and a loop device: the fake mount
	// hands the agent a directory standing in for partition 1 and checks it was asked
	// for the right one. The real mount runs in TestQEMUAgent.
	fsRoot := t.TempDir()
	if err := os.MkdirAll(filepath.Join(fsRoot, "etc/cloud"), 0o755); err != nil {
		t.Fatal(err)
	}
	var mounted []string
	cfg.MountPartition = func(diskName string, p Partition, fstype, target string) (func() error, error) {
		if fstype != "ext4" {
			return nil, fmt.Errorf("mount %s", fstype)
		}
		mounted = append(mounted, fmt.Sprintf("%s/%d@%d", diskName, p.Number, p.Start))
		if err := os.Remove(target); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return nil, err
		}
		if err := os.Symlink(fsRoot, target); err != nil {
			return nil, err
		}
		return func() error { return os.Remove(target) }, nil
	}
	if err := Run(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"vda/1@1048576"}, mounted); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	if got, _ := os.ReadFile(filepath.Join(fsRoot, DropInPath)); string(got) != string(DropIn(seed, netcfg)) || !strings.Contains(string(got), "network:\n  version: 2\n  ethernets:\n    boot0:\n") {
		t.Errorf("drop-in = %q", got)
	}
	want := []agentapi.Result{{
		Action: agentapi.ActionProvision, OK: true, Phase: agentapi.PhaseDone, RootDisk: "vda", ImageSHA256: sum(served),
		ImageBytes: int64(len(served)), BytesWritten: int64(len(img.data)), RootPartition: "vda1", Next: "reboot",
	}}
	if diff := cmp.Diff(want, s.results, cmpResult()); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	disk, _ := os.ReadFile(h.disk)
	if !bytes.Equal(disk[:len(img.data)], img.data) {
		t.Error("the disk does not hold the image")
	}
	var phases []agentapi.Phase
	for _, p := range s.progress {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	}
	if diff := cmp.Diff([]agentapi.Phase{agentapi.PhaseWipe, agentapi.PhaseWrite, agentapi.PhaseVerify, agentapi.PhaseCloudInit}, phases); diff != "" {
		t.Errorf("progress phases (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]PowerAction{Reboot}, h.power); diff != "" {
		t.Errorf("power (-want +got):\n%s", diff)
	}
}

func TestRunProvisionBadChecksum(t *testing.T) {
	raw := randomImage(1 << 20)
	s, srv := startFake(t)
	s.images["/images/x.img"] = raw
	s.plans = []agentapi.Plan{{Action: agentapi.ActionProvision, Provision: &agentapi.Provision{
		ImageURL: srv.URL + "/images/x.img", SHA256: sum([]byte("other")), Size: int64(len(raw)),
	}}}
	h := newTestHost(t, srv.URL, 4<<20)
	if err := Run(t.Context(), h.config()); err == nil {
		t.Error("Run succeeded with a bad image")
	}
	if len(s.results) != 1 {
		t.Fatalf("%d results", len(s.results))
	}
	r := s.results[0]
	if r.OK || r.Phase != agentapi.PhaseVerify || !strings.Contains(r.Error, "sha256 mismatch") || !strings.Contains(r.Error, "nothing was written") || r.Next != "poweroff" {
		t.Errorf("result = %+v", r)
	}
	if disk, _ := os.ReadFile(h.disk); !allZero(disk) {
		t.Error("the disk was written")
	}
	if diff := cmp.Diff([]PowerAction{PowerOff}, h.power); diff != "" {
		t.Errorf("power (-want +got):\n%s", diff)
	}
}

func TestRunDeprovision(t *testing.T) {
	img := buildTestImage(t, 8<<20, map[string]string{"etc/cloud/": ""})
	for _, mode := range []agentapi.WipeMode{agentapi.WipeQuick, agentapi.WipeFull} {
		t.Run(string(mode), func(t *testing.T) {
			s, srv := startFake(t, agentapi.Plan{Action: agentapi.ActionDeprovision, PowerOff: true,
				Deprovision: &agentapi.Deprovision{Wipe: mode}})
			h := newTestHost(t, srv.URL, 16<<20)
			if err := os.WriteFile(h.disk, append(img.data, bytes.Repeat([]byte{0xAB}, 8<<20)...), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Run(t.Context(), h.config()); err != nil {
				t.Fatal(err)
			}
			want := []agentapi.Result{{Action: agentapi.ActionDeprovision, OK: true, Phase: agentapi.PhaseDone, Wiped: []string{"vda"}, Next: "poweroff"}}
			if diff := cmp.Diff(want, s.results, cmpResult()); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			if got := signatures(t, h.disk, img.partStart); got != "" {
				t.Errorf("signatures after the wipe: %q", got)
			}
			disk, _ := os.ReadFile(h.disk)
			if mode == agentapi.WipeFull && !allZero(disk) {
				t.Error("a full wipe left data")
			}
			if mode == agentapi.WipeQuick && allZero(disk) {
				t.Error("a quick wipe zeroed the whole disk")
			}
			if diff := cmp.Diff([]PowerAction{PowerOff}, h.power); diff != "" {
				t.Errorf("power (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunWaitThenInspect(t *testing.T) {
	s, srv := startFake(t,
		agentapi.Plan{Action: agentapi.ActionWait, WaitSeconds: 1},
		agentapi.Plan{Action: agentapi.ActionInspect, PowerOff: true})
	h := newTestHost(t, srv.URL, 1<<20)
	if err := Run(t.Context(), h.config()); err != nil {
		t.Fatal(err)
	}
	if len(s.hellos) != 2 || len(s.results) != 1 || !s.results[0].OK {
		t.Errorf("hellos %d, results %+v", len(s.hellos), s.results)
	}
	if s.hellos[0].BootID != s.hellos[1].BootID {
		t.Error("BootID changed between hellos of one boot")
	}
}

func TestRunWaitTooLong(t *testing.T) {
	_, srv := startFake(t, agentapi.Plan{Action: agentapi.ActionWait, WaitSeconds: 600})
	h := newTestHost(t, srv.URL, 1<<20)
	cfg := h.config()
	cfg.MaxWait = time.Second
	err := Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "waiting") {
		t.Errorf("Run = %v, want a gave-up-waiting error", err)
	}
	if diff := cmp.Diff([]PowerAction{PowerOff}, h.power); diff != "" {
		t.Errorf("power (-want +got):\n%s", diff)
	}
}

func TestRunUnauthorized(t *testing.T) {
	s, srv := startFake(t)
	s.helloStatus = http.StatusForbidden
	h := newTestHost(t, srv.URL, 1<<20)
	err := Run(t.Context(), h.config())
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("Run = %v, want the 403", err)
	}
	if len(s.hellos) != 1 {
		t.Errorf("a 403 was retried: %d hellos", len(s.hellos))
	}
	if len(s.results) != 0 {
		t.Errorf("results after a refused hello: %+v", s.results)
	}
	if diff := cmp.Diff([]PowerAction{PowerOff}, h.power); diff != "" {
		t.Errorf("power (-want +got):\n%s", diff)
	}
}

// TestRunCancelled: the server answers a progress with 409 (the host was released);
// the agent stops writing, reports a failed result and powers off.
func TestRunCancelled(t *testing.T) {
	raw := randomImage(2 << 20)
	s, srv := startFake(t)
	s.images["/images/x.img"] = raw
	s.cancelOn = agentapi.PhaseWipe
	// The image is held back until the 409 went out, so the cancellation is sure to
	// land while the agent is still downloading.
	s.imageGate = s.cancelled
	s.plans = []agentapi.Plan{{Action: agentapi.ActionProvision, Provision: &agentapi.Provision{
		ImageURL: srv.URL + "/images/x.img", SHA256: sum(raw),
	}}}
	h := newTestHost(t, srv.URL, 4<<20)
	if err := Run(t.Context(), h.config()); err == nil {
		t.Error("Run succeeded although the server cancelled")
	}
	if len(s.results) != 1 || s.results[0].OK || !strings.Contains(s.results[0].Error, "cancelled") {
		t.Errorf("results = %+v, want one failure saying cancelled", s.results)
	}
	if diff := cmp.Diff([]PowerAction{PowerOff}, h.power); diff != "" {
		t.Errorf("power (-want +got):\n%s", diff)
	}
}

func TestRunNoAgentArgs(t *testing.T) {
	h := newTestHost(t, "http://127.0.0.1:1", 1<<20)
	cfg := h.config()
	cfg.Cmdline = "console=ttyS0 quiet"
	if err := Run(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "rackboot.url") {
		t.Errorf("Run = %v, want an error naming rackboot.url", err)
	}
}

// The wire format is the contract with the server: keep it stable.
func TestHelloJSONShape(t *testing.T) {
	h := agentapi.Hello{MAC: "52:54:00:12:34:56", AgentVersion: "v1", BootID: "0011223344556677", IP: "10.0.0.5",
		Facts: CollectFacts("testdata/root", "52:54:00:aa:bb:cc")}
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "hello.json", append(b, '\n'))
}
