package ipxe

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/internal/inventory"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	testMAC       = "52:54:00:12:34:56"
	testServerURL = "http://10.0.0.1:8080"
)

func testProfile() *inventory.BootProfile {
	return &inventory.BootProfile{
		Kernel:  "debian/vmlinuz",
		Initrds: []string{"debian/initrd.gz", "http://10.0.0.2/firmware/initrd.gz"},
		Cmdline: "console=ttyS0,115200n8 rackboot.host={{ .HostID }} rackboot.mac={{.MAC}} phonehome={{.ServerURL}}/boot/phonehome?mac={{.MAC}}",
	}
}

func testBootEnv() *BootEnv {
	return &BootEnv{
		Kernel:  "rackboot/vmlinuz",
		Initrds: []string{"rackboot/initramfs.cpio.gz"},
		Cmdline: "console=ttyS0 quiet rackboot.server={{.ServerURL}} rackboot.mac={{.MAC}}",
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".ipxe")
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./ipxe -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got; go test ./ipxe -update rewrites it):\n%s", p, diff)
	}
}

// TestRenderScriptGolden renders every state with no profile, with a boot profile and
// with an agent boot environment, plus the unknown-MAC cases.
func TestRenderScriptGolden(t *testing.T) {
	wantAction := map[inventory.State]Action{
		inventory.StateDiscovered: ActionAgent, inventory.StateInspecting: ActionAgent,
		inventory.StateProvisioning: ActionAgent, inventory.StateDeprovisioning: ActionAgent,
	}
	for _, st := range inventory.States {
		for _, variant := range []string{"none", "profile", "bootenv"} {
			t.Run(string(st)+"-"+variant, func(t *testing.T) {
				h := &inventory.Host{ID: "node-1", MACs: []string{testMAC}, State: st}
				in := ScriptInput{Host: h, MAC: testMAC, ServerURL: testServerURL}
				want := ActionLocal
				switch variant {
				case "profile":
					h.Boot = testProfile()
					// A profile wins over the agent: it is the operator's explicit order.
					in.BootEnv = testBootEnv()
					want = ActionProfile
				case "bootenv":
					in.BootEnv = testBootEnv()
					if a, ok := wantAction[st]; ok {
						want = a
					}
				}
				s, err := RenderScript(in)
				if err != nil {
					t.Fatal(err)
				}
				if s.Action != want {
					t.Errorf("action = %s, want %s", s.Action, want)
				}
				if !strings.HasPrefix(string(s.Body), "#!ipxe\n") {
					t.Errorf("script does not start with #!ipxe:\n%s", s.Body)
				}
				golden(t, string(st)+"-"+variant, s.Body)
			})
		}
	}

	t.Run("unknown-ignore", func(t *testing.T) {
		_, err := RenderScript(ScriptInput{MAC: testMAC, ServerURL: testServerURL, BootEnv: testBootEnv()})
		if !errors.Is(err, ErrNoScript) {
			t.Fatalf("err = %v, want ErrNoScript", err)
		}
	})
	for _, variant := range []string{"none", "bootenv"} {
		t.Run("unknown-discover-"+variant, func(t *testing.T) {
			in := ScriptInput{MAC: testMAC, Discovery: true, ServerURL: testServerURL + "/"}
			want := ActionLocal
			if variant == "bootenv" {
				in.BootEnv = testBootEnv()
				want = ActionAgent
			}
			s, err := RenderScript(in)
			if err != nil {
				t.Fatal(err)
			}
			if s.Action != want {
				t.Errorf("action = %s, want %s", s.Action, want)
			}
			golden(t, "unknown-discover-"+variant, s.Body)
		})
	}
}

func TestRenderScriptProfileDetails(t *testing.T) {
	tests := []struct {
		name    string
		profile inventory.BootProfile
		want    []string // lines the script must contain
	}{
		{
			name:    "leading slash is still under assets, segments escaped",
			profile: inventory.BootProfile{Kernel: "/os/deb 12/vmlinuz"},
			want:    []string{"kernel ${base}/assets/os/deb%2012/vmlinuz || goto failed"},
		},
		{
			name:    "absolute URLs kept",
			profile: inventory.BootProfile{Kernel: "https://boot.example.com/k", Initrds: []string{"tftp://10.0.0.1/i.img"}},
			want: []string{
				"kernel https://boot.example.com/k initrd=i.img || goto failed",
				"initrd --name i.img tftp://10.0.0.1/i.img || goto failed",
			},
		},
		{
			name:    "duplicate and odd initrd names get numbered names",
			profile: inventory.BootProfile{Kernel: "k", Initrds: []string{"a/initrd", "b/initrd", "c/we%20ird"}},
			want: []string{
				"kernel ${base}/assets/k initrd=initrd initrd=initrd1 initrd=initrd2 || goto failed",
				"initrd --name initrd1 ${base}/assets/b/initrd || goto failed",
				"initrd --name initrd2 ${base}/assets/c/we%2520ird || goto failed",
			},
		},
		{
			name:    "whitespace collapsed, iPXE settings left alone",
			profile: inventory.BootProfile{Kernel: "k", Cmdline: "  a=1 \t b=${net0/mac}  "},
			want:    []string{"kernel ${base}/assets/k a=1 b=${net0/mac} || goto failed"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.profile
			s, err := RenderScript(ScriptInput{
				Host: &inventory.Host{ID: "n", State: inventory.StateAvailable, Boot: &p}, MAC: testMAC, ServerURL: testServerURL,
			})
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(s.Body), "\n")
			for _, w := range tc.want {
				if !contains(lines, w) {
					t.Errorf("script lacks line %q:\n%s", w, s.Body)
				}
			}
		})
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

func TestRenderScriptRefusesUnsafeInput(t *testing.T) {
	tests := []struct {
		name    string
		profile inventory.BootProfile
		server  string
		mac     string
		wantErr string
	}{
		{name: "unknown placeholder", profile: inventory.BootProfile{Kernel: "k", Cmdline: "x={{.Secret}}"}, wantErr: "unknown placeholder"},
		{name: "template code", profile: inventory.BootProfile{Kernel: "k", Cmdline: `{{printf "%s" .MAC}}`}, wantErr: "unknown placeholder"},
		{name: "unclosed placeholder", profile: inventory.BootProfile{Kernel: "k", Cmdline: "x={{.MAC"}, wantErr: "without closing"},
		{name: "newline injects a command", profile: inventory.BootProfile{Kernel: "k", Cmdline: "quiet\nshell"}, wantErr: "control character"},
		{name: "or operator", profile: inventory.BootProfile{Kernel: "k", Cmdline: "quiet || shell"}, wantErr: "operator"},
		{name: "semicolon operator", profile: inventory.BootProfile{Kernel: "k", Cmdline: "quiet ; shell"}, wantErr: "operator"},
		{name: "comment cuts line", profile: inventory.BootProfile{Kernel: "k", Cmdline: "quiet #x"}, wantErr: "comment"},
		{name: "too long", profile: inventory.BootProfile{Kernel: "k", Cmdline: strings.Repeat("a", MaxCmdline+1)}, wantErr: "at most"},
		{name: "kernel with space", profile: inventory.BootProfile{Kernel: "http://x/k shell"}, wantErr: "space"},
		{name: "kernel traversal", profile: inventory.BootProfile{Kernel: "../../etc/passwd"}, wantErr: "clean path"},
		{name: "kernel bad scheme", profile: inventory.BootProfile{Kernel: "file:///etc/passwd"}, wantErr: "only http"},
		{name: "empty initrd", profile: inventory.BootProfile{Kernel: "k", Initrds: []string{""}}, wantErr: "initrd 1: empty"},
		{name: "server URL with iPXE syntax", profile: inventory.BootProfile{Kernel: "k"}, server: "http://a${x}", wantErr: "server URL"},
		{name: "server URL not http", profile: inventory.BootProfile{Kernel: "k"}, server: "ftp://a", wantErr: "server URL"},
		{name: "bad MAC", profile: inventory.BootProfile{Kernel: "k"}, mac: "zz", wantErr: "not a MAC"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.profile
			in := ScriptInput{Host: &inventory.Host{ID: "n", State: inventory.StateProvisioned, Boot: &p}, MAC: testMAC, ServerURL: testServerURL}
			if tc.server != "" {
				in.ServerURL = tc.server
			}
			if tc.mac != "" {
				in.MAC = tc.mac
			}
			_, err := RenderScript(in)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateCmdline(t *testing.T) {
	for _, ok := range []string{"", "console=ttyS0", "a={{.MAC}} b={{ .HostID }} c={{.ServerURL}}/x", "ip=${ip}"} {
		if err := ValidateCmdline(ok); err != nil {
			t.Errorf("ValidateCmdline(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"{{.Nope}}", "a && b", "a\rb", "{{", "#c"} {
		if err := ValidateCmdline(bad); err == nil {
			t.Errorf("ValidateCmdline(%q) = nil, want an error", bad)
		}
	}
}
