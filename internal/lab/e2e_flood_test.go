package lab

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/rackboot/rackboot/internal/inventory"
)

// TestNetnsDiscoveryFlood is issue 10 "done when" 3 (flood): with --unknown-hosts
// discover, 10,000 PXE DISCOVERs from random MACs in 10 s (from a lab namespace to
// rackboot's address, nowhere else) leave the discovered hosts at the cap, and a host
// with a reservation gets its lease while the flood goes on.
func TestNetnsDiscoveryFlood(t *testing.T) {
	Require(t, "busybox")
	t.Parallel()
	const (
		total    = 10000
		duration = 10 * time.Second
		maxHosts = 25
	)
	dir := logDir(t)
	seg := newSegment(t, "flood", "10.77.0.1/24")
	conf := filepath.Join(dir, "rackboot.yaml")
	if err := os.WriteFile(conf, []byte("dhcp:\n  discovery: {maxHosts: 25, rate: 100, burst: 50}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rb := startRackboot(t, seg.NS, dir, serverIP, "--config", conf,
		"--dhcp-mode", "server", "--dhcp-range", "10.77.0.100-10.77.0.199", "--unknown-hosts", "discover")
	const reservedMAC = "52:54:00:1b:00:01"
	rb.mustCLI("host", "add", "--mac", reservedMAC, "--ip", "10.77.0.10", "--hostname", "steady")
	steady := addClient(t, seg, "steady", reservedMAC)
	conn := listenAt(t, seg, "flooder", "52:54:00:1b:00:66", "10.77.0.66/24", 0)

	var sent atomic.Int64
	done := make(chan struct{})
	ctx, cancel := context.WithTimeout(t.Context(), duration+5*time.Second)
	defer cancel()
	go func() {
		defer close(done)
		dst := &net.UDPAddr{IP: net.ParseIP(serverIP), Port: 67}
		start := time.Now()
		for i := range total {
			// Pace to total/duration: 1,000 packets a second.
			if d := time.Until(start.Add(time.Duration(i) * duration / total)); d > 0 {
				time.Sleep(d)
			}
			if ctx.Err() != nil {
				return
			}
			mac := make(net.HardwareAddr, 6)
			_, _ = rand.Read(mac)
			mac[0] = mac[0]&0xfe | 0x02 // unicast, locally administered
			m, err := dhcpv4.NewDiscovery(mac, pxeModifiers(0)...)
			if err != nil {
				continue
			}
			if _, err := conn.WriteTo(m.ToBytes(), dst); err == nil {
				sent.Add(1)
			}
		}
	}()

	// The reserved host asks in the middle of the flood.
	time.Sleep(3 * time.Second)
	start := time.Now()
	lease, err := runUdhcpc(t, steady, dir, "steady", pxeClientArgs(0)...)
	took := time.Since(start)
	<-done
	flood := time.Since(start.Add(-3 * time.Second))
	if err != nil || lease["ip"] != "10.77.0.10" {
		t.Errorf("reserved host during the flood: lease %v, err %v; want 10.77.0.10\nrackboot:\n%s", lease, err, Tail(rb.proc.Log, 20))
	}
	var hosts []inventory.Host
	if err := json.Unmarshal(rb.mustCLI("host", "list", "-o", "json"), &hosts); err != nil {
		t.Fatal(err)
	}
	discovered := 0
	for _, h := range hosts {
		if h.State == inventory.StateDiscovered {
			discovered++
		}
	}
	if discovered > maxHosts {
		t.Errorf("%d discovered hosts after the flood, over the cap of %d", discovered, maxHosts)
	}
	if sent.Load() < total*9/10 {
		t.Errorf("only %d of %d DISCOVERs sent", sent.Load(), total)
	}
	body, _ := (&trustLab{t: t}).get(seg.NS, "http://"+serverIP+":8080/metrics")
	refused := regexp.MustCompile(`(?m)^rackboot_dhcp_discovery_refused_total\{reason="(\w+)"\} (\S+)$`).FindAllStringSubmatch(string(body), -1)
	t.Logf("sent %d DISCOVERs in %v; reserved host leased %s in %v; %d hosts discovered (cap %d); refused %v",
		sent.Load(), flood.Round(time.Millisecond), lease["ip"], took.Round(time.Millisecond), discovered, maxHosts, refused)
	if len(refused) == 0 {
		t.Error("no rackboot_dhcp_discovery_refused_total in /metrics")
	}
}
