package lab

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

// TestNetnsDHCPCrashKeepsAckedLeases is issue 11 "done when" 2: rackboot serves a
// steady DORA load (a Go relay client speaking for thousands of MACs), is SIGKILLed in
// the middle of it, and restarted on the same data directory. Every address that was
// ACKed must still be leased to the MAC it was ACKed to (read from the inventory file
// while rackboot is dead, then from the restarted server, which must ACK it again), and
// no address may be leased to two MACs. An ACK sent before its lease's commit fails it:
// at the kill, the exchanges whose ACK left but whose commit had not run lose their
// lease.
func TestNetnsDHCPCrashKeepsAckedLeases(t *testing.T) {
	Require(t)
	dir := logDir(t)
	seg := newSegment(t, "dhcpcrash", "10.77.0.1/16")
	cfg := filepath.Join(dir, "rackboot.yaml")
	// Unknown MACs get pool addresses under discover; the load needs a rate far above a
	// rack's few per second.
	if err := os.WriteFile(cfg, []byte("dhcp:\n  discovery:\n    rate: 100000\n    burst: 100000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(t, ServerConfig{Bin: rackbootBinary(t), NS: seg.NS, Dir: dir, Addr: serverIP, Flags: []string{
		"--config", cfg,
		"--dhcp-mode", "server",
		"--dhcp-range", "10.77.1.0-10.77.63.255",
		"--unknown-hosts", "discover",
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Per-packet DEBUG lines would make the log the bottleneck.
	s.SetFlag("--log-level", "info")
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}

	conn := listenAt(t, seg, "relay", "52:54:00:77:00:02", "10.77.0.2/16", 67)
	load := NewRelayLoad(conn, netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr(serverIP))
	t.Cleanup(func() { load.Close() })

	// The load: 32 clients in a closed loop, each DORA with a new MAC. Kill rackboot
	// once enough ACKs are in, keep the load on a little longer (it gets nothing), stop.
	var (
		mu     sync.Mutex
		acked  = map[string]netip.Addr{} // MAC → ACKed address
		byAddr = map[netip.Addr]string{}
		twice  []string
		next   atomic.Uint32
		nacks  atomic.Int64
		killed atomic.Bool
	)
	ctx, stop := context.WithTimeout(t.Context(), 60*time.Second)
	defer stop()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for ctx.Err() == nil {
				mac := LoadMAC(next.Add(1))
				ip, err := load.DORA(ctx, mac, 500*time.Millisecond)
				if err != nil {
					if !killed.Load() && !errors.Is(err, ErrNoReply) && ctx.Err() == nil {
						t.Logf("DORA of %s: %v", mac, err)
					}
					continue
				}
				nacks.Add(1)
				mu.Lock()
				if other, ok := byAddr[ip]; ok && other != mac.String() {
					twice = append(twice, ip.String()+" to "+other+" and "+mac.String())
				}
				acked[mac.String()], byAddr[ip] = ip, mac.String()
				mu.Unlock()
			}
		})
	}
	// Kill in the middle of a steady load: after 1,500 ACKs, or 20 s.
	loadStart := time.Now()
	deadline := time.Now().Add(20 * time.Second)
	for nacks.Load() < 1500 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	before := nacks.Load()
	t.Logf("load: %d ACKs in %v", before, time.Since(loadStart).Round(time.Millisecond))
	if err := s.Proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed.Store(true)
	<-s.Proc.Done()
	time.Sleep(700 * time.Millisecond) // replies in flight arrive; nothing new can
	stop()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d ACKs before SIGKILL, %d counted in all (%d distinct MACs)", before, nacks.Load(), len(acked))
	if len(acked) < 200 {
		t.Fatalf("only %d DORAs completed before the kill: the load never got going\n%s", len(acked), Tail(s.Proc.Log, 30))
	}
	if len(twice) > 0 {
		t.Errorf("addresses ACKed to two MACs: %v", twice)
	}

	// The durable copy, read while rackboot is dead.
	st, err := inventory.Open(filepath.Join(s.DataDir, "inventory.db"), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	leases, err := st.ListLeases(t.Context())
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkLeases(t, "inventory file after SIGKILL", acked, leases)

	// The restarted server keeps them: its lease list, and an INIT-REBOOT REQUEST of
	// each ACKed address from its MAC is ACKed again.
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	out, err := s.CLI(t.Context(), "host", "leases", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var listed []admin.Lease
	if err := json.Unmarshal(out, &listed); err != nil {
		t.Fatalf("host leases -o json: %v", err)
	}
	after := make([]inventory.Lease, 0, len(listed))
	for _, l := range listed {
		after = append(after, inventory.Lease{MAC: l.MAC, IP: l.IP, State: inventory.LeaseState(l.State), Expires: l.Expires})
	}
	checkLeases(t, "restarted server's lease list", acked, after)
	n := 0
	for mac, ip := range acked {
		if n++; n > 50 {
			break
		}
		hw := mustMAC(t, mac)
		got, err := load.Request(t.Context(), hw, ip, time.Second)
		if err != nil || got != ip {
			t.Errorf("after restart, INIT-REBOOT of %s for %s = %v, %v; want an ACK", ip, mac, got, err)
		}
	}
	// A newcomer gets an address nobody was ACKed.
	ip, err := load.DORA(t.Context(), LoadMAC(1<<30), 2*time.Second)
	if err != nil {
		t.Fatalf("newcomer after restart: %v", err)
	}
	if other, ok := byAddr[ip]; ok {
		t.Errorf("newcomer after restart got %s, ACKed before the crash to %s", ip, other)
	}
}

// checkLeases fails t unless every ACKed MAC holds its address bound and unexpired, and
// no address is held by two MACs.
func checkLeases(t *testing.T, where string, acked map[string]netip.Addr, leases []inventory.Lease) {
	t.Helper()
	now := time.Now()
	byMAC := map[string]inventory.Lease{}
	holder := map[string]string{}
	for _, l := range leases {
		byMAC[l.MAC] = l
		if !l.Expires.After(now) {
			continue
		}
		if other, ok := holder[l.IP]; ok {
			t.Errorf("%s: %s is leased to both %s and %s", where, l.IP, other, l.MAC)
		}
		holder[l.IP] = l.MAC
	}
	lost := 0
	for mac, ip := range acked {
		l, ok := byMAC[mac]
		if !ok || l.IP != ip.String() || l.State != inventory.LeaseBound || !l.Expires.After(now) {
			if lost++; lost <= 10 {
				t.Errorf("%s: %s was ACKed %s, lease now %+v (found %v)", where, mac, ip, l, ok)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%s: %d of %d ACKed leases lost", where, lost, len(acked))
	} else {
		t.Logf("%s: all %d ACKed leases kept, %d leases in all", where, len(acked), len(leases))
	}
}
