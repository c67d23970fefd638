package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// writePassword writes a password file the way an operator would (echo pw > file).
func writePassword(t *testing.T, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bmc-password")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// noPassword fails t if any output carries pw.
func noPassword(t *testing.T, pw string, outs ...string) {
	t.Helper()
	for _, o := range outs {
		if strings.Contains(o, pw) {
			t.Fatalf("output carries the BMC password:\n%s", o)
		}
	}
}

func TestHostAddWithBMC(t *testing.T) {
	const pw = "pw with spaces-Cli-4d"
	h := newCLIHarness(t)
	pwFile := writePassword(t, pw)
	if out := h.mustRun("host", "add", "--mac", "52:54:00:00:00:01", "--id", "n1", "--bmc", "ipmi://admin@10.0.0.5:623", "--bmc-password-file", pwFile); out != "created host n1\n" {
		t.Fatalf("add: %q", out)
	}
	creds, err := h.store.BMCCredentials(context.Background(), "n1")
	if err != nil || creds.Password != pw || creds.URL != "ipmi://admin@10.0.0.5:623" {
		t.Fatalf("stored %+v, %v", creds, err)
	}
	// From standard input.
	h.stdin = "pw-from-stdin\n"
	h.mustRun("host", "add", "--mac", "52:54:00:00:00:02", "--id", "n2", "--bmc", "redfish://root@10.0.0.6", "--bmc-password-file", "-")
	if creds, _ := h.store.BMCCredentials(context.Background(), "n2"); creds.Password != "pw-from-stdin" {
		t.Fatalf("stdin password: %+v", creds)
	}
	show := h.mustRun("host", "show", "n1")
	showJSON := h.mustRun("host", "show", "n1", "-o", "json")
	list := h.mustRun("host", "list", "-o", "json")
	noPassword(t, pw, show, showJSON, list)
	if !strings.Contains(show, "passwordSet: true") || !strings.Contains(show, "url: ipmi://admin@10.0.0.5:623") {
		t.Fatalf("show does not say a password is set:\n%s", show)
	}

	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	twoLines := filepath.Join(t.TempDir(), "two")
	os.WriteFile(twoLines, []byte("a\nb\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bmc", "ipmi://admin@10.0.0.7", "--bmc-password", "hunter2"}, "shows in ps and shell history"},
		{[]string{"--bmc-password-file", pwFile}, "--bmc-password-file needs --bmc URL"},
		{[]string{"--bmc", "ipmi://admin:hunter2@10.0.0.7"}, "carries a password"},
		{[]string{"--bmc", "http://admin@10.0.0.7"}, `unknown BMC protocol "http"`},
		{[]string{"--bmc", "ipmi://admin@10.0.0.7", "--bmc-password-file", empty}, "is empty: put the BMC password in it"},
		{[]string{"--bmc", "ipmi://admin@10.0.0.7", "--bmc-password-file", twoLines}, "more than one line"},
		{[]string{"--bmc", "ipmi://admin@10.0.0.7", "--bmc-password-file", filepath.Join(t.TempDir(), "missing")}, "no such file"},
	} {
		before := h.requests.Load()
		_, _, err := h.run(append([]string{"host", "add", "--mac", "52:54:00:00:00:09"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("add %v: err = %v, want %q", c.args, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("add %v: the error repeats the password: %v", c.args, err)
		}
		if h.requests.Load() != before {
			t.Errorf("add %v: sent a request for an input the CLI can reject itself", c.args)
		}
	}
}

// TestHostPowerAndBootdevOverTheWire runs the BMC subcommands through the admin API,
// the BMC service and bmclib's Redfish provider against the lab's Redfish emulator on
// loopback.
func TestHostPowerAndBootdevOverTheWire(t *testing.T) {
	const pw = "pw-Cli-Redfish-a9"
	m := bmcsim.NewMemoryMachine()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bmcsim.ServeRedfishTB(t, ln, "root", pw, m)
	ctx := context.Background()

	h := newCLIHarness(t)
	url := "redfish+http://root@" + ln.Addr().String()
	var outs []string
	run := func(want string, args ...string) {
		t.Helper()
		out := h.mustRun(args...)
		outs = append(outs, out)
		if want != "" && out != want && !(strings.HasSuffix(want, " done") && strings.HasPrefix(out, want+" (")) {
			t.Fatalf("rackboot %s: %q, want %q", strings.Join(args, " "), out, want)
		}
	}
	h.mustRun("host", "add", "--mac", "52:54:00:00:00:01", "--id", "n1")
	wrong := writePassword(t, "not-the-password")
	run("host n1: BMC "+url+" (password set)\n", "host", "bmc", "n1", "--bmc", url, "--bmc-password-file", wrong)
	_, _, err = h.run("host", "power", "n1", "status")
	if !errors.Is(err, bmc.ErrAuth) || !strings.Contains(err.Error(), `refused user "root" (HTTP 401): wrong user or password`) {
		t.Fatalf("wrong password: %v", err)
	}
	run("host n1: BMC "+url+" (password set)\n", "host", "bmc", "n1", "--bmc", url, "--bmc-password-file", writePassword(t, pw))
	run("host n1: power is off\n", "host", "power", "n1", "status")
	run("host n1: boots from pxe, UEFI, next boot only\n", "host", "bootdev", "n1", "pxe")
	if got, _ := m.BootOverride(ctx); got != (bmcsim.BootOverride{Target: bmcsim.BootPXE, Persistence: bmcsim.BootOnce, Mode: bmcsim.BootUEFI}) {
		t.Fatalf("emulator boot override %+v", got)
	}
	run("", "host", "power", "n1", "cycle")
	run("host n1: power is on\n", "host", "power", "n1", "status")
	run("host n1: boots from disk, legacy BIOS, every boot\n", "host", "bootdev", "n1", "disk", "--persistent", "--legacy")
	if got, _ := m.BootOverride(ctx); got != (bmcsim.BootOverride{Target: bmcsim.BootDisk, Persistence: bmcsim.BootPersistent, Mode: bmcsim.BootLegacy}) {
		t.Fatalf("emulator boot override %+v", got)
	}
	run("", "host", "power", "n1", "off")
	if st, _ := m.PowerState(ctx); st != bmcsim.PowerOff {
		t.Fatalf("emulator machine %s after off", st)
	}
	out := h.mustRun("host", "power", "n1", "status", "-o", "json")
	var res admin.BMCResponse
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.State != bmc.PowerOff || res.BMC != url {
		t.Fatalf("status -o json: %s (%v)", out, err)
	}
	run("host n1: BMC "+url+"?auth=basic (password kept)\n", "host", "bmc", "n1", "--bmc", url+"?auth=basic")
	run("host n1: power on done", "host", "power", "n1", "on")

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"power", "n1", "explode"}, "use on, off (hard), soft (ACPI shutdown), cycle or reset, or status"},
		{[]string{"power", "n1"}, "accepts 2 arg(s)"},
		{[]string{"bootdev", "n1", "cdrom"}, "use pxe (network boot from rackboot) or disk"},
		{[]string{"bootdev", "n1", "pxe", "--legacy", "--uefi"}, "contradict"},
		{[]string{"bmc", "n1"}, "give --bmc URL"},
		{[]string{"bmc", "n1", "--clear", "--bmc", url}, "give it alone"},
		{[]string{"power", "ghost", "on"}, `no host with ID "ghost"`},
	} {
		if _, _, err := h.run(append([]string{"host"}, c.args...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("host %v: err = %v, want %q", c.args, err, c.want)
		}
	}

	run("host n1: BMC removed\n", "host", "bmc", "n1", "--clear")
	if _, _, err := h.run("host", "power", "n1", "on"); !errors.Is(err, bmc.ErrNoBMC) || !strings.Contains(err.Error(), "rackboot host bmc n1 --bmc URL --bmc-password-file FILE") {
		t.Fatalf("power without BMC: %v", err)
	}
	outs = append(outs, h.mustRun("host", "events", "n1"), h.mustRun("host", "show", "n1", "-o", "json"))
	noPassword(t, pw, outs...)
	if !strings.Contains(outs[len(outs)-2], "bmc.power") || !strings.Contains(outs[len(outs)-2], "admin.bmc") {
		t.Fatalf("events lack the BMC actions:\n%s", outs[len(outs)-2])
	}
}
