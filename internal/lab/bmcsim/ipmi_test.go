package bmcsim_test

import (
	"bytes"
	"context"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rackboot/rackboot/internal/lab"
	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// TestChassisControlProtocol feeds ChassisControl the argument lists ipmi_sim builds
// (lanserv/bmc_chassis.c) in the order ipmitool's commands produce them.
func TestChassisControlProtocol(t *testing.T) {
	d := fakeVM(t)
	steps := []struct {
		args    []string
		out     string
		wantErr bool
		check   func(t *testing.T)
	}{
		{args: []string{"get", "power"}, out: "power:0\n"},
		{args: []string{"get", "boot"}, out: "boot:none\n"},
		// ipmitool chassis bootdev pxe: Set System Boot Options parameter 5.
		{args: []string{"set", "boot", "pxe"}},
		{args: []string{"get", "power", "boot"}, out: "power:0\nboot:pxe\n"},
		{args: []string{"set", "boot", "default"}, check: func(t *testing.T) {
			if got := boot(t, d); got.Target != bmcsim.BootDisk || got.Persistence != bmcsim.BootOnce {
				t.Errorf("after set boot default: %+v, want disk once", got)
			}
		}},
		{args: []string{"set", "boot", "cdrom"}, out: "chassis control: boot device \"cdrom\" is not available in the lab (none, pxe or default)\n", wantErr: true},
		{args: []string{"set", "boot", "pxe"}},
		// ipmitool power on.
		{args: []string{"set", "power", "1"}, check: func(t *testing.T) {
			wantState(t, d, bmcsim.PowerOn)
			if line := serialLine(t, d); !strings.Contains(line, pxeFirst) {
				t.Errorf("powered on with %q, want pxe first", line)
			}
		}},
		{args: []string{"get", "power", "boot"}, out: "power:1\nboot:none\n"},
		// ipmitool power reset and chassis identify.
		{args: []string{"set", "reset", "1"}, check: func(t *testing.T) { wantState(t, d, bmcsim.PowerOn) }},
		{args: []string{"set", "identify", "15 0"}},
		// ipmitool power soft: the stand-in guest obeys ACPI and QEMU exits.
		{args: []string{"set", "shutdown", "1"}, check: func(t *testing.T) {
			lab.WaitFor(t, 5*time.Second, "the guest to obey ACPI shutdown", func(ctx context.Context) (bool, error) {
				st, err := d.PowerState(ctx)
				return st == bmcsim.PowerOff, err
			})
		}},
		{args: []string{"set", "power", "1"}},
		// ipmitool power off, twice.
		{args: []string{"set", "power", "0"}, check: func(t *testing.T) { wantState(t, d, bmcsim.PowerOff) }},
		{args: []string{"set", "power", "0"}},
		{args: []string{"get", "power"}, out: "power:0\n"},
		{args: []string{"set", "power", "2"}, out: "chassis control: power \"2\": bad value\n", wantErr: true},
		{args: []string{"set", "power"}, out: "chassis control: set needs parameter/value pairs, got [\"power\"]\n", wantErr: true},
		{args: []string{"get", "reset"}, out: "chassis control: cannot get \"reset\" (power or boot)\n", wantErr: true},
		{args: []string{"check"}, out: "chassis control: check is not supported\n", wantErr: true},
		{args: nil, out: "chassis control: no operation (get, set or check)\n", wantErr: true},
	}
	for _, s := range steps {
		var out bytes.Buffer
		err := bmcsim.ChassisControl(t.Context(), d.Path, s.args, &out)
		if (err != nil) != s.wantErr {
			t.Fatalf("%q: err = %v, want error %v", s.args, err, s.wantErr)
		}
		if diff := cmp.Diff(s.out, out.String()); diff != "" {
			t.Errorf("%q output (-want +got):\n%s", s.args, diff)
		}
		if s.check != nil {
			s.check(t)
		}
	}
}

func TestWriteIPMI(t *testing.T) {
	dir := t.TempDir()
	cfg := bmcsim.IPMIConfig{
		Dir:            dir,
		Name:           "vm1",
		Addr:           netip.MustParseAddrPort("10.77.0.1:623"),
		Username:       "admin",
		Password:       "s3cret pass",
		ChassisControl: []string{"/usr/lib/rackboot/rackboot-bmcsim", "chassis-control", "--dir", "/var/lib/lab/vm 1"},
	}
	// Old state must not survive: ipmi_sim would prefer its saved users over lan.conf's.
	stale := filepath.Join(dir, bmcsim.IPMIStateDir, "users.mc20")
	if err := os.MkdirAll(filepath.Dir(stale), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	argv, err := bmcsim.WriteIPMI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantArgv := []string{"ipmi_sim", "-n", "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "bmc.emu"), "-s", filepath.Join(dir, "ipmi-state")}
	if diff := cmp.Diff(wantArgv, argv); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale ipmi_sim state survived WriteIPMI: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "lan.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("lan.conf mode %v, want 0600: it holds the password", fi.Mode().Perm())
	}
	for _, name := range []string{"lan.conf", "bmc.emu"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		golden(t, filepath.Join("testdata", name), got)
	}
}

func TestWriteIPMIValidates(t *testing.T) {
	ok := bmcsim.IPMIConfig{
		Dir: t.TempDir(), Name: "vm1", Addr: netip.MustParseAddrPort("10.77.0.1:623"),
		Username: "admin", Password: "pw", ChassisControl: []string{"rackboot-bmcsim"},
	}
	for name, mod := range map[string]func(*bmcsim.IPMIConfig){
		"no addr":        func(c *bmcsim.IPMIConfig) { c.Addr = netip.AddrPort{} },
		"long password":  func(c *bmcsim.IPMIConfig) { c.Password = strings.Repeat("p", 21) },
		"long user":      func(c *bmcsim.IPMIConfig) { c.Username = strings.Repeat("u", 17) },
		"quote":          func(c *bmcsim.IPMIConfig) { c.Password = `p"w` },
		"no chassis cmd": func(c *bmcsim.IPMIConfig) { c.ChassisControl = nil },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := ok
			mod(&cfg)
			if _, err := bmcsim.WriteIPMI(cfg); err == nil {
				t.Error("WriteIPMI accepted an invalid config")
			}
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got; -update rewrites):\n%s", path, diff)
	}
}
