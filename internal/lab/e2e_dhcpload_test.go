package lab

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/dhcp/dhcpload"
	"github.com/rackboot/rackboot/internal/inventory"
)

// TestNetnsDHCPLoadAgainstRackboot runs make bench-compare's DHCP load generator
// (internal/dhcp/dhcpload) against the real rackboot DHCP server as the bench does, as a
// relay for many clients, at a rate any machine sustains: the generator's exchanges must
// be ones rackboot completes (every DISCOVER ACKed, no NAK, no reply it cannot match),
// and afterwards rackboot must hold one bound lease per client MAC, no address twice.
// The bench's figures are worth only as much as this agreement.
func TestNetnsDHCPLoadAgainstRackboot(t *testing.T) {
	Require(t)
	t.Parallel()
	dir := logDir(t)
	seg := newSegment(t, "dhcpload", "10.77.0.1/16")
	cfg := filepath.Join(dir, "rackboot.yaml")
	if err := os.WriteFile(cfg, []byte("dhcp:\n  discovery:\n    rate: 100000\n    burst: 100000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rb := startRackboot(t, seg.NS, dir, serverIP,
		"--config", cfg,
		"--dhcp-mode", "server",
		"--dhcp-range", "10.77.1.0-10.77.3.255",
		"--unknown-hosts", "discover",
		"--log-level", "info")

	relay := listenAt(t, seg, "relay", "52:54:00:77:00:02", "10.77.0.2/16", 67)
	const clients = 200
	res, err := dhcpload.Run(t.Context(), relay, dhcpload.Config{
		Server:   netip.MustParseAddrPort(serverIP + ":67"),
		Clients:  clients,
		Rate:     1000,
		Duration: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dhcpload: %+v, p50 %v, p99 %v", struct{ Discovers, Offers, Requests, Acks, Naks, Late, Stray int }{
		res.Discovers, res.Offers, res.Requests, res.Acks, res.Naks, res.Late, res.Stray},
		res.Percentile(50), res.Percentile(99))
	if res.Discovers < 1500 {
		t.Errorf("sent %d DISCOVERs in 2 s at 1,000/s, want about 2,000", res.Discovers)
	}
	if res.Naks != 0 || res.Stray != 0 {
		t.Errorf("%d NAKs and %d replies matching no exchange: the generator and rackboot disagree", res.Naks, res.Stray)
	}
	// A loaded CI machine may make the odd answer later than the generator's second;
	// more than 1 % lost at a twentieth of rackboot's capacity is a failure.
	if res.Lost() > 1 {
		t.Errorf("%.2f %% of exchanges lost (%d DISCOVERs, %d OFFERs, %d ACKs, %d late)\n%s",
			res.Lost(), res.Discovers, res.Offers, res.Acks, res.Late, Tail(rb.proc.Log, 20))
	}

	var leases []admin.Lease
	if err := json.Unmarshal(rb.mustCLI("host", "leases", "-o", "json"), &leases); err != nil {
		t.Fatalf("host leases -o json: %v", err)
	}
	byMAC := map[string]admin.Lease{}
	holder := map[string]string{}
	for _, l := range leases {
		byMAC[l.MAC] = l
		if other, ok := holder[l.IP]; ok {
			t.Errorf("%s is leased to both %s and %s", l.IP, other, l.MAC)
		}
		holder[l.IP] = l.MAC
	}
	missing := 0
	for i := range clients {
		mac := dhcpload.ClientMAC(uint32(i)).String()
		if l, ok := byMAC[mac]; !ok || l.State != inventory.LeaseBound {
			if missing++; missing <= 5 {
				t.Errorf("client %s: lease %+v (found %v), want a bound lease", mac, l, ok)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d clients hold no bound lease", missing, clients)
	}
}
