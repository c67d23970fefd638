package agentapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const tok = "abcdefghijklmnopqrstuvwxyz012345"

func TestKernelArgs(t *testing.T) {
	for _, tc := range []struct {
		name, cmdline string
		want          KernelArgs
		err           string
	}{
		{"all", "BOOT_IMAGE=vmlinuz console=ttyS0 rackboot.url=http://10.0.0.1:8080/ rackboot.token=" + tok + " rackboot.mac=52:54:00:AB:CD:EF quiet",
			KernelArgs{URL: "http://10.0.0.1:8080", Token: tok, MAC: "52:54:00:ab:cd:ef"}, ""},
		{"old spelling, no MAC", "rackboot.server=http://h:80 rackboot.token=" + tok, KernelArgs{URL: "http://h:80", Token: tok}, ""},
		{"no url", "console=ttyS0 quiet", KernelArgs{}, "rackboot.url"},
		{"bad scheme", "rackboot.url=ftp://x rackboot.token=" + tok, KernelArgs{}, "rackboot.url"},
		{"short token", "rackboot.url=http://x rackboot.token=abc", KernelArgs{}, "16-128"},
		{"token with a bad character", "rackboot.url=http://x rackboot.token=" + tok + "$", KernelArgs{}, "letters"},
		{"bad MAC", "rackboot.url=http://x rackboot.token=" + tok + " rackboot.mac=zz", KernelArgs{}, "rackboot.mac"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKernelArgs(tc.cmdline)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseKernelArgs = %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			again, err := ParseKernelArgs(got.String())
			if err != nil || again != got {
				t.Errorf("round trip through %q = %+v, %v", got.String(), again, err)
			}
		})
	}
	if _, err := ParseKernelArgs("quiet"); !errors.Is(err, ErrNoAgentArgs) {
		t.Errorf("no rackboot.url: %v, want ErrNoAgentArgs", err)
	}
}

func TestNewToken(t *testing.T) {
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if a == b || len(a) != 43 || ValidateToken(a) != nil {
		t.Errorf("tokens %q %q", a, b)
	}
}

func TestRootDiskChoose(t *testing.T) {
	disks := []Disk{
		{Name: "sda", SizeBytes: 4 << 40, Serial: "HDD1", Rotational: true},
		{Name: "sdb", SizeBytes: 4 << 40, Serial: "HDD2", Rotational: true},
		{Name: "nvme0n1", SizeBytes: 480 << 30, Serial: "NVME1", WWN: "eui.0025"},
		{Name: "sdc", SizeBytes: 16 << 30, Removable: true, Serial: "USB"},
		{Name: "sdd", SizeBytes: 1 << 30, ReadOnly: true},
		{Name: "sde", SizeBytes: 0},
	}
	for _, tc := range []struct {
		hint RootDiskHint
		want string
		err  string
	}{
		{RootDiskHint{}, "nvme0n1", ""},
		{RootDiskHint{Prefer: PreferLargest}, "sda", ""}, // ties break by name
		{RootDiskHint{Name: "/dev/sdb"}, "sdb", ""},
		{RootDiskHint{Serial: "HDD2"}, "sdb", ""},
		{RootDiskHint{WWN: "EUI.0025"}, "nvme0n1", ""},
		{RootDiskHint{MinSizeBytes: 1 << 40}, "sda", ""},
		{RootDiskHint{MaxSizeBytes: 1 << 40, Prefer: PreferLargest}, "nvme0n1", ""},
		{RootDiskHint{Name: "sdc"}, "", "removable"}, // removable disks are never chosen
		{RootDiskHint{Serial: "nope"}, "", "serial HDD1"},
		{RootDiskHint{MinSizeBytes: 8 << 40}, "", "no disk matches"},
		{RootDiskHint{Prefer: "fastest"}, "", "prefer"},
		{RootDiskHint{MinSizeBytes: 2, MaxSizeBytes: 1}, "", "above max"},
	} {
		t.Run(tc.hint.String(), func(t *testing.T) {
			got, err := tc.hint.Choose(disks)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Choose = %+v, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got.Name != tc.want {
				t.Errorf("Choose = %s, %v; want %s", got.Name, err, tc.want)
			}
		})
	}
	if _, err := (RootDiskHint{}).Choose(nil); !errors.Is(err, ErrNoRootDisk) || !strings.Contains(err.Error(), "storage driver") {
		t.Errorf("no disks: %v", err)
	}
}

func TestParseRootDiskHint(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want RootDiskHint
		err  bool
	}{
		{"", RootDiskHint{}, false},
		{"/dev/sda", RootDiskHint{Name: "/dev/sda"}, false},
		{"name=nvme0n1", RootDiskHint{Name: "nvme0n1"}, false},
		{"serial=S64H,wwn=naa.5000", RootDiskHint{Serial: "S64H", WWN: "naa.5000"}, false},
		{"min=100G, max=2TiB, largest", RootDiskHint{MinSizeBytes: 100 << 30, MaxSizeBytes: 2 << 40, Prefer: PreferLargest}, false},
		{"min=1.5T", RootDiskHint{MinSizeBytes: 3 << 39}, false},
		{"prefer=smallest", RootDiskHint{Prefer: PreferSmallest}, false},
		{"fast", RootDiskHint{}, true},
		{"size=1G", RootDiskHint{}, true},
		{"min=lots", RootDiskHint{}, true},
		{"name=../etc", RootDiskHint{}, true},
	} {
		got, err := ParseRootDiskHint(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseRootDiskHint(%q) error = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseRootDiskHint(%q) (-want +got):\n%s", tc.in, diff)
		}
		if !tc.err {
			again, err := ParseRootDiskHint(got.String())
			if err != nil || (again != got && !(got == RootDiskHint{} && again.Prefer == PreferSmallest)) {
				t.Errorf("round trip of %q through %q = %+v, %v", tc.in, got.String(), again, err)
			}
		}
	}
}

func TestPlanValidate(t *testing.T) {
	good := Provision{ImageURL: "http://10.0.0.1:8080/images/debian/disk.raw", SHA256: strings.Repeat("ab", 32),
		CloudInit: CloudInit{Mode: CloudInitDropIn, SeedURL: "http://10.0.0.1:8080/nocloud/tok/"}}
	with := func(f func(p *Provision)) *Provision { p := good; f(&p); return &p }
	for _, tc := range []struct {
		name string
		plan Plan
		err  string
	}{
		{"inspect", Plan{Action: ActionInspect, PowerOff: true}, ""},
		{"wait", Plan{Action: ActionWait, WaitSeconds: 30}, ""},
		{"wait too long", Plan{Action: ActionWait, WaitSeconds: 3600}, "waitSeconds"},
		{"provision", Plan{Action: ActionProvision, Provision: &good}, ""},
		{"provision without body", Plan{Action: ActionProvision}, "without provision"},
		{"bad URL", Plan{Action: ActionProvision, Provision: with(func(p *Provision) { p.ImageURL = "file:///etc/passwd" })}, "imageURL"},
		{"bad sha", Plan{Action: ActionProvision, Provision: with(func(p *Provision) { p.SHA256 = "abc" })}, "sha256"},
		{"bad format", Plan{Action: ActionProvision, Provision: with(func(p *Provision) { p.Format = "qcow2" })}, "format"},
		{"seed without slash", Plan{Action: ActionProvision, Provision: with(func(p *Provision) { p.CloudInit.SeedURL = "http://x/nocloud" })}, "ending in /"},
		{"seed breaking YAML", Plan{Action: ActionProvision, Provision: with(func(p *Provision) { p.CloudInit.SeedURL = "http://x/a b/" })}, "YAML"},
		{"no cloud-init", Plan{Action: ActionProvision, Provision: with(func(p *Provision) { p.CloudInit = CloudInit{} })}, ""},
		{"bad mode", Plan{Action: ActionProvision, Provision: with(func(p *Provision) { p.CloudInit.Mode = "ignite" })}, "cloudInit.mode"},
		{"ignition", Plan{Action: ActionProvision, Provision: with(func(p *Provision) {
			p.CloudInit = CloudInit{Mode: CloudInitIgnition}
			p.Ignition = &Ignition{Config: []byte(`{"ignition":{"version":"3.4.0"}}`)}
		})}, ""},
		{"ignition without a config", Plan{Action: ActionProvision, Provision: with(func(p *Provision) {
			p.CloudInit = CloudInit{Mode: CloudInitIgnition}
		})}, "without an ignition config"},
		{"ignition config not JSON", Plan{Action: ActionProvision, Provision: with(func(p *Provision) {
			p.CloudInit = CloudInit{Mode: CloudInitIgnition}
			p.Ignition = &Ignition{Config: []byte(`{"ignition":{"version":"3.4.0"}`)}
		})}, "not a JSON object"},
		{"ignition config a JSON array", Plan{Action: ActionProvision, Provision: with(func(p *Provision) {
			p.CloudInit = CloudInit{Mode: CloudInitIgnition}
			p.Ignition = &Ignition{Config: []byte(`[1]`)}
		})}, "not a JSON object"},
		{"ignition config without version", Plan{Action: ActionProvision, Provision: with(func(p *Provision) {
			p.CloudInit = CloudInit{Mode: CloudInitIgnition}
			p.Ignition = &Ignition{Config: []byte(`{"passwd":{}}`)}
		})}, "ignition.version"},
		{"ignition config too large", Plan{Action: ActionProvision, Provision: with(func(p *Provision) {
			p.CloudInit = CloudInit{Mode: CloudInitIgnition}
			p.Ignition = &Ignition{Config: []byte(`{"ignition":{"version":"3.4.0"},"x":"` + strings.Repeat("a", MaxIgnitionBytes) + `"}`)}
		})}, "bytes"},
		{"ignition config in another mode", Plan{Action: ActionProvision, Provision: with(func(p *Provision) {
			p.Ignition = &Ignition{Config: []byte(`{"ignition":{"version":"3.4.0"}}`)}
		})}, "only in mode ignition"},
		{"deprovision", Plan{Action: ActionDeprovision, Deprovision: &Deprovision{Wipe: WipeFull, Disks: []string{"sda", "/dev/nvme0n1"}}}, ""},
		{"bad wipe", Plan{Action: ActionDeprovision, Deprovision: &Deprovision{Wipe: "shred"}}, "wipe"},
		{"bad disk", Plan{Action: ActionDeprovision, Deprovision: &Deprovision{Wipe: WipeQuick, Disks: []string{"../sda"}}}, "disk"},
		{"unknown", Plan{Action: "dance"}, "unknown action"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.plan.Validate()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Validate = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]uint64{"512": 512, "1K": 1024, "1KiB": 1024, "2M": 2 << 20, "100G": 100 << 30, "1.5T": 3 << 39, "3TB": 3 << 40} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "1X", "99999999999P"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", in)
		}
	}
	if got := FormatBytes(1 << 30); got != "1.0 GiB" {
		t.Errorf("FormatBytes(1GiB) = %q", got)
	}
}

// TestClient drives the client against a server that fails, then answers: retries on
// 5xx, none on 4xx, 409 on progress is ErrCancelled, and the bearer token is sent.
func TestClient(t *testing.T) {
	var calls atomic.Int32
	var authOK atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if tk, ok := BearerToken(r); ok && tk == tok && r.Header.Get("User-Agent") == "rackboot-agent/t" {
			authOK.Store(true)
		}
		switch r.URL.Path {
		case PathHello:
			var h Hello
			if err := DecodeRequest(r, &h); err != nil || h.Validate() != nil {
				WriteError(w, http.StatusBadRequest, "bad hello")
				return
			}
			if n < 3 {
				WriteError(w, http.StatusServiceUnavailable, "starting")
				return
			}
			WriteJSON(w, http.StatusOK, Plan{Action: ActionInspect, PowerOff: true})
		case PathProgress:
			WriteError(w, http.StatusConflict, "released")
		case PathResult:
			WriteError(w, http.StatusUnauthorized, "token expired")
		}
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, Token: tok, UserAgent: "rackboot-agent/t", Retry: Retry{Attempts: 5, Initial: time.Millisecond, Max: time.Millisecond}}
	plan, err := c.Hello(t.Context(), Hello{MAC: "52:54:00:00:00:01"})
	if err != nil || plan.Action != ActionInspect || !plan.PowerOff {
		t.Fatalf("Hello = %+v, %v", plan, err)
	}
	if calls.Load() != 3 || !authOK.Load() {
		t.Errorf("%d calls (want 3: two 503s, then the plan); token and user agent sent: %v", calls.Load(), authOK.Load())
	}
	if err := c.Progress(t.Context(), Progress{Phase: PhaseWrite}); !errors.Is(err, ErrCancelled) {
		t.Errorf("Progress on 409 = %v, want ErrCancelled", err)
	}
	calls.Store(0)
	err = c.Result(t.Context(), Result{Action: ActionInspect, OK: true})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnauthorized || !strings.Contains(err.Error(), "token expired") {
		t.Errorf("Result on 401 = %v", err)
	}
	if calls.Load() != 1 {
		t.Errorf("a 401 was retried: %d calls", calls.Load())
	}
	// An invalid plan from the server is an error (ErrInvalidPlan), with the plan as
	// decoded so the agent can report its refusal against the plan's action.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, Plan{Action: ActionProvision})
	}))
	defer bad.Close()
	c.BaseURL = bad.URL
	p, err := c.Hello(t.Context(), Hello{MAC: "52:54:00:00:00:01"})
	if !errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), "without provision") || p.Action != ActionProvision {
		t.Errorf("Hello with an invalid plan = %+v, %v; want the plan and ErrInvalidPlan", p, err)
	}
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]string{"Bearer " + tok: tok, "bearer " + tok: tok, "Basic " + tok: "", "Bearer short": "", "": ""} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("Authorization", h)
		if got, _ := BearerToken(r); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", h, got, want)
		}
	}
}

// TestWireFormat pins the JSON of each message: field names are the contract between
// agents and servers of different versions.
func TestWireFormat(t *testing.T) {
	msgs := map[string]any{
		"plan-provision.json": Plan{Action: ActionProvision, Provision: &Provision{
			ImageURL: "http://10.0.0.1:8080/images/debian-12/disk.raw.zst", SHA256: strings.Repeat("0f", 32), Format: FormatZstd,
			Size: 536870912, RootDisk: RootDiskHint{MinSizeBytes: 10 << 30, Prefer: PreferSmallest},
			CloudInit: CloudInit{Mode: CloudInitDropIn, SeedURL: "http://10.0.0.1:8080/nocloud/Zm9v/"},
		}},
		"plan-provision-ignition.json": Plan{Action: ActionProvision, Provision: &Provision{
			ImageURL: "http://10.0.0.1:8080/images/flatcar/disk.raw.gz", SHA256: strings.Repeat("0f", 32), Format: FormatGzip,
			CloudInit: CloudInit{Mode: CloudInitIgnition},
			Ignition:  &Ignition{Config: []byte(`{"ignition":{"version":"3.4.0"}}` + "\n")},
		}},
		"plan-deprovision.json": Plan{Action: ActionDeprovision, PowerOff: true, Deprovision: &Deprovision{Wipe: WipeQuick}},
		"plan-wait.json":        Plan{Action: ActionWait, WaitSeconds: 30, Message: "image debian-12 is still downloading"},
		"progress.json":         Progress{Phase: PhaseWrite, Disk: "nvme0n1", BytesDone: 1 << 30, BytesTotal: 2 << 30},
		"result-ok.json": Result{Action: ActionProvision, OK: true, Phase: PhaseDone, RootDisk: "nvme0n1", ImageSHA256: strings.Repeat("0f", 32),
			ImageBytes: 536870912, BytesWritten: 2147483648, RootPartition: "nvme0n1p1", Seconds: 42.5, Next: "reboot"},
		"result-failed.json": Result{Action: ActionProvision, Phase: PhaseVerify, RootDisk: "sda", Error: "image sha256 mismatch: ...", Next: "poweroff"},
	}
	for name, m := range msgs {
		t.Run(name, func(t *testing.T) {
			b, err := json.MarshalIndent(m, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, '\n')
			p := filepath.Join("testdata", name)
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("%v (go test -update creates it)", err)
			}
			if diff := cmp.Diff(string(want), string(b)); diff != "" {
				t.Errorf("%s changed (-golden +now):\n%s", name, diff)
			}
		})
	}
}

// TestIgnitionConfigBytesSurvive: the config goes through JSON as base64, so the agent
// writes exactly the bytes the server rendered (indentation, key order, a final
// newline, non-ASCII), and the largest config still fits in a plan under MaxBodyBytes.
func TestIgnitionConfigBytesSurvive(t *testing.T) {
	cfg := []byte("{\n  \"ignition\": {\"version\": \"3.4.0\"},\n  \"z\": \"é<&>\",\n  \"a\": 1\n}\n")
	big := append([]byte(`{"ignition":{"version":"3.4.0"},"x":"`), []byte(strings.Repeat("a", MaxIgnitionBytes-40))...)
	big = append(big, `"}`...)
	for name, c := range map[string][]byte{"small": cfg, "largest": big} {
		t.Run(name, func(t *testing.T) {
			in := Plan{Action: ActionProvision, Provision: &Provision{
				ImageURL: "http://10.0.0.1:8080/images/f.raw", SHA256: strings.Repeat("ab", 32),
				CloudInit: CloudInit{Mode: CloudInitIgnition}, Ignition: &Ignition{Config: c},
			}}
			if err := in.Validate(); err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > MaxBodyBytes {
				t.Fatalf("plan of %d bytes is over MaxBodyBytes", len(b))
			}
			var out Plan
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Provision.Ignition.Config, c) {
				t.Errorf("config changed on the wire:\n%q\nwant\n%q", out.Provision.Ignition.Config, c)
			}
		})
	}
}
