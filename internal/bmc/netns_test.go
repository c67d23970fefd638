package bmc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// TestNetnsIPMIPowerAndBoot drives a real ipmi_sim, over IPMI v2 lanplus in a network
// namespace, through rackboot's bmc service and bmclib's ipmitool provider: boot
// device, every power action, status; the chassis_control script records what the BMC
// was told to do.
func TestNetnsIPMIPowerAndBoot(t *testing.T) {
	requireLab(t, "ipmi_sim", "ipmitool")
	l := newLabBMCs(t)
	sim := l.addIPMI(t, "admin", "pw-Ipmi-77c1")
	store := openStore(t)
	addHost(t, store, 1, "node1", sim.URL("admin"), "pw-Ipmi-77c1")
	svc := startService(t, bmc.Config{Store: store, Lib: l.libConfig(), Timeout: 20 * time.Second})
	ctx := context.Background()

	status := func() bmc.PowerState {
		t.Helper()
		res, err := svc.PowerStatus(ctx, "node1")
		if err != nil {
			t.Fatal(err)
		}
		return res.State
	}
	power := func(a bmc.PowerAction) {
		t.Helper()
		if _, err := svc.Power(ctx, "node1", a); err != nil {
			t.Fatalf("power %s: %v", a, err)
		}
	}
	if s := status(); s != bmc.PowerOff {
		t.Fatalf("initial power %s", s)
	}
	if _, err := svc.SetBootDevice(ctx, "node1", bmc.BootOptions{Device: bmc.BootPXE, UEFI: true}); err != nil {
		t.Fatal(err)
	}
	if b := sim.file("boot"); b != "pxe" {
		t.Fatalf("chassis boot device %q, want pxe", b)
	}
	power(bmc.ActionCycle) // off: cycle powers it on
	if s := status(); s != bmc.PowerOn || sim.file("power") != "1" {
		t.Fatalf("after cycle from off: %s (chassis power %q)", s, sim.file("power"))
	}
	power(bmc.ActionReset)
	if sim.file("resets") != "reset" {
		t.Fatalf("reset not passed to chassis control: resets=%q", sim.file("resets"))
	}
	power(bmc.ActionSoft)
	if s := status(); s != bmc.PowerOff {
		t.Fatalf("after soft: %s", s)
	}
	power(bmc.ActionOn)
	power(bmc.ActionOn) // already on: no second "set power 1"
	power(bmc.ActionOff)
	if s := status(); s != bmc.PowerOff {
		t.Fatalf("after off: %s", s)
	}
	if _, err := svc.SetBootDevice(ctx, "node1", bmc.BootOptions{Device: bmc.BootDisk, Persistent: true}); err != nil {
		t.Fatal(err)
	}
	if b := sim.file("boot"); b != "default" {
		t.Fatalf("chassis boot device %q, want default (disk)", b)
	}
	// What ipmi_sim asked its chassis control to do, in order (gets filtered out).
	var sets []string
	for _, line := range strings.Split(sim.file("log"), "\n") {
		if strings.HasPrefix(line, "set ") {
			sets = append(sets, line)
		}
	}
	want := []string{"set boot pxe", "set power 1", "set reset 1", "set shutdown 1", "set power 1", "set power 0", "set boot default"}
	if d := cmp.Diff(want, sets); d != "" {
		t.Fatalf("chassis control calls (-want +got):\n%s", d)
	}

	evs, err := store.Events(ctx, "node1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Type+": "+e.Message)
	}
	wantEv := []string{
		"bmc.power: power is off",
		"bmc.bootdev: next boot: pxe once uefi",
		"bmc.power: power cycle: done",
		"bmc.power: power is on",
		"bmc.power: power reset: done",
		"bmc.power: power soft: done",
		"bmc.power: power is off",
		"bmc.power: power on: done",
		"bmc.power: power on: done",
		"bmc.power: power off: done",
		"bmc.power: power is off",
		"bmc.bootdev: next boot: disk persistent legacy",
	}
	if d := cmp.Diff(wantEv, got); d != "" {
		t.Fatalf("timeline (-want +got):\n%s", d)
	}
}

// TestNetnsBMCFaultsDoNotBlockOthers: wrong password, closed port and a BMC that never
// answers, for IPMI and Redfish, each give a clear error of their class within the
// timeout, while ten healthy hosts' power cycles, started at the same moment, complete.
func TestNetnsBMCFaultsDoNotBlockOthers(t *testing.T) {
	requireLab(t, "ipmi_sim", "ipmitool")
	l := newLabBMCs(t)
	store := openStore(t)
	const pw = "pw-Fault-31d0"
	var good []string
	machines := map[string]*bmcsim.MemoryMachine{}
	var ipmiGood []ipmiBMC
	for i := 0; i < 6; i++ {
		sim := l.addIPMI(t, "admin", pw)
		id := fmt.Sprintf("ipmi-good-%d", i)
		addHost(t, store, len(good), id, sim.URL("admin"), pw)
		good = append(good, id)
		ipmiGood = append(ipmiGood, sim)
	}
	for i := 0; i < 4; i++ {
		m := bmcsim.NewMemoryMachine()
		id := fmt.Sprintf("redfish-good-%d", i)
		addHost(t, store, len(good), id, l.addRedfish(t, "root", pw, m), pw)
		good = append(good, id)
		machines[id] = m
	}

	// The faulty ones.
	closedUDP := l.addr(t)                    // nothing listens: ICMP port unreachable
	silentUDP := l.addr(t).String() + ":623"  // a socket that reads nothing and answers nothing
	silentTCP := l.addr(t).String() + ":8000" // accepts, never replies
	closedTCP := l.addr(t).String() + ":8000" // nothing listens: RST
	udp, err := l.ns.ListenPacket("udp", silentUDP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	tcp, err := l.ns.Listen("tcp", silentTCP)
	if err != nil {
		t.Fatal(err)
	}
	var held []interface{ Close() error }
	var heldMu sync.Mutex
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		tcp.Close()
		heldMu.Lock()
		defer heldMu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	rfWrong := bmcsim.NewMemoryMachine()
	bad := []struct {
		id, url  string
		class    error
		mentions string
	}{
		{"ipmi-wrong-password", ipmiGood[0].URL("admin"), bmc.ErrAuth, `refused an IPMI session for user "admin": wrong user or password`},
		{"ipmi-closed-port", fmt.Sprintf("ipmi://admin@%s:623", closedUDP), bmc.ErrUnreachable, "nothing answers on UDP " + closedUDP.String() + ":623 (connection refused)"},
		{"ipmi-silent", "ipmi://admin@" + silentUDP, bmc.ErrTimeout, "not even to an RMCP ping"},
		{"redfish-wrong-password", l.addRedfish(t, "root", pw, rfWrong), bmc.ErrAuth, `refused user "root" (HTTP 401)`},
		{"redfish-closed-port", "redfish+http://root@" + closedTCP, bmc.ErrUnreachable, "connection refused"},
		{"redfish-silent", "redfish+http://root@" + silentTCP, bmc.ErrTimeout, "did not answer within"},
	}
	for i, b := range bad {
		addHost(t, store, 100+i, b.id, b.url, "not-"+pw)
	}

	const timeout = 6 * time.Second
	svc := startService(t, bmc.Config{Store: store, Lib: l.libConfig(), Workers: 8, Timeout: timeout, Backoff: 100 * time.Millisecond})
	ctx := context.Background()

	var goodDone atomic.Int32
	var wg sync.WaitGroup
	goodErrs := make([]error, len(good))
	type badResult struct {
		err        error
		goodBefore int32
		took       time.Duration
	}
	badRes := make([]badResult, len(bad))
	start := make(chan struct{})
	for i, b := range bad {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			_, err := svc.Power(ctx, b.id, bmc.ActionCycle)
			badRes[i] = badResult{err: err, goodBefore: goodDone.Load(), took: time.Since(t0)}
		}()
	}
	for i, id := range good {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, goodErrs[i] = svc.Power(ctx, id, bmc.ActionCycle)
			goodDone.Add(1)
		}()
	}
	close(start)
	wg.Wait()

	for i, err := range goodErrs {
		if err != nil {
			t.Errorf("healthy host %s: %v", good[i], err)
		}
	}
	for i, b := range bad {
		r := badRes[i]
		var e *bmc.Error
		if !errors.As(r.err, &e) || !errors.Is(r.err, b.class) {
			t.Errorf("%s: err = %v, want class %v", b.id, r.err, b.class)
			continue
		}
		if !strings.Contains(r.err.Error(), b.mentions) {
			t.Errorf("%s: error %q does not say %q", b.id, r.err, b.mentions)
		}
		if strings.Contains(r.err.Error(), pw) {
			t.Errorf("%s: error carries a password: %v", b.id, r.err)
		}
		// Bounded by the call's own timeout (with room for scheduling on a loaded
		// machine), not by ipmitool's ~20 s of retries or a TCP timeout.
		if r.took > timeout+2*time.Second {
			t.Errorf("%s: took %v with a %v timeout", b.id, r.took, timeout)
		}
		if errors.Is(r.err, bmc.ErrTimeout) && r.goodBefore != int32(len(good)) {
			t.Errorf("%s timed out when only %d of %d healthy hosts had finished: a dead BMC held others up", b.id, r.goodBefore, len(good))
		}
		if errors.Is(r.err, bmc.ErrAuth) && e.Attempts != 1 {
			t.Errorf("%s: %d attempts: wrong credentials must not be retried", b.id, e.Attempts)
		}
		t.Logf("%s after %v (%d attempts): %v", b.id, r.took.Round(time.Millisecond), e.Attempts, r.err)
	}
	for id, m := range machines {
		if st, _, ops := m.Snapshot(); st != bmcsim.PowerOn || len(ops) != 1 || ops[0] != bmcsim.OpOn {
			t.Errorf("%s: state %s after ops %v, want one power-on (cycle of an off host)", id, st, ops)
		}
	}
	if _, _, ops := rfWrong.Snapshot(); len(ops) != 0 {
		t.Errorf("the wrongly-credentialed Redfish machine was acted on: %v", ops)
	}
	for i, sim := range ipmiGood {
		if sim.file("power") != "1" {
			t.Errorf("ipmi-good-%d: chassis power %q after cycle", i, sim.file("power"))
		}
	}
	// Each failure is on its host's timeline.
	for _, b := range bad {
		evs, err := store.Events(ctx, b.id, 0)
		if err != nil || len(evs) != 1 || evs[0].Type != "bmc.error" {
			t.Errorf("%s timeline: %+v %v", b.id, evs, err)
		}
	}
}

// TestNetnsRedfishEmulatorPowerAndBoot drives the lab's Redfish emulator (internal/lab/bmcsim)
// through the service with session and basic auth, in a namespace.
func TestNetnsRedfishEmulatorPowerAndBoot(t *testing.T) {
	requireLab(t)
	l := newLabBMCs(t)
	store := openStore(t)
	m := bmcsim.NewMemoryMachine()
	url := l.addRedfish(t, "root", "pw-Rf-0a1b", m)
	addHost(t, store, 1, "rf-session", url, "pw-Rf-0a1b")
	addHost(t, store, 2, "rf-basic", url+"?auth=basic", "pw-Rf-0a1b")
	svc := startService(t, bmc.Config{Store: store, Lib: l.libConfig(), Timeout: 10 * time.Second})
	ctx := context.Background()
	for _, id := range []string{"rf-session", "rf-basic"} {
		t.Run(id, func(t *testing.T) {
			if _, err := svc.SetBootDevice(ctx, id, bmc.BootOptions{Device: bmc.BootPXE, UEFI: true}); err != nil {
				t.Fatal(err)
			}
			if _, boot, _ := m.Snapshot(); boot != (bmcsim.BootOverride{Target: bmcsim.BootPXE, Persistence: bmcsim.BootOnce, Mode: bmcsim.BootUEFI}) {
				t.Fatalf("boot override %+v", boot)
			}
			for _, a := range []bmc.PowerAction{bmc.ActionOn, bmc.ActionCycle, bmc.ActionReset, bmc.ActionSoft, bmc.ActionOff} {
				if _, err := svc.Power(ctx, id, a); err != nil {
					t.Fatalf("%s: %v", a, err)
				}
			}
			res, err := svc.PowerStatus(ctx, id)
			if err != nil || res.State != bmc.PowerOff {
				t.Fatalf("status: %+v %v", res, err)
			}
			if _, err := svc.SetBootDevice(ctx, id, bmc.BootOptions{Device: bmc.BootDisk, Persistent: true}); err != nil {
				t.Fatal(err)
			}
			if _, boot, _ := m.Snapshot(); boot != (bmcsim.BootOverride{Target: bmcsim.BootDisk, Persistence: bmcsim.BootPersistent, Mode: bmcsim.BootLegacy}) {
				t.Fatalf("boot override %+v", boot)
			}
		})
	}
	_, _, ops := m.Snapshot()
	// Per host: on, cycle (ForceRestart: emulator's reset), reset (PowerCycle: its
	// cycle), soft, off — the first host starts from off, so "on" acts; the second
	// finds the machine off again.
	want := []bmcsim.PowerOp{
		bmcsim.OpOn, bmcsim.OpReset, bmcsim.OpCycle, bmcsim.OpSoft, // off: ForceOff skipped by bmclib
		bmcsim.OpOn, bmcsim.OpReset, bmcsim.OpCycle, bmcsim.OpSoft,
	}
	if d := cmp.Diff(want, ops); d != "" {
		t.Fatalf("machine operations (-want +got):\n%s", d)
	}
}
