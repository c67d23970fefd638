package lab

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/lab/promcheck"
)

// TestNetnsDashboardQueries is issue 12's "done when" 4 for the part a serve outside a
// network namespace cannot show: rackboot in the lab with DHCP in server mode answers
// busybox udhcpc posing as a PXE ROM (a known host and a discovered one), serves a
// TFTP read and an iPXE script, and powers a host whose BMC refuses. Every query
// of docs/grafana/rackboot.json evaluates, without an error or a warning, over three
// scrapes of its /metrics, and each DHCP metric a query reads is on the page.
// (cmd/rackboot's TestDashboardQueriesAgainstServe checks the rest against an
// in-process serve, with the registry.)
func TestNetnsDashboardQueries(t *testing.T) {
	Require(t, "busybox")
	t.Parallel()
	dir := logDir(t)
	seg := newSegment(t, "dash", "10.77.0.1/24")
	rb := startRackboot(t, seg.NS, dir, serverIP,
		"--dhcp-mode", "server",
		"--dhcp-range", "10.77.0.100-10.77.0.109",
		"--dhcp-router", "10.77.0.1",
		"--unknown-hosts", "discover")
	const knownMAC = "52:54:00:12:00:01"
	rb.mustCLI("host", "add", "--mac", knownMAC, "--ip", "10.77.0.10", "--hostname", "node1")
	pw := filepath.Join(dir, "bmc-password")
	if err := os.WriteFile(pw, []byte("pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	rb.mustCLI("host", "add", "--id", "nobmc", "--mac", "52:54:00:12:00:02", "--bmc", "redfish+http://admin@10.77.0.1:1", "--bmc-password-file", pw)
	known := addClient(t, seg, "dash-known", knownMAC)
	stranger := addClient(t, seg, "dash-new", "52:54:00:12:00:0a")

	activity := func(round int) {
		t.Helper()
		for _, c := range []struct {
			ns   *Netns
			name string
		}{{known, "known"}, {stranger, "stranger"}} {
			if _, err := runUdhcpc(t, c.ns, dir, "dash-"+c.name+"-"+string(rune('0'+round)), pxeClientArgs(7)...); err != nil {
				t.Fatalf("udhcpc %s: %v\nrackboot log:\n%s", c.name, err, Tail(rb.proc.Log, 30))
			}
		}
		if round == 0 {
			if err := known.IP("addr", "add", "10.77.0.10/24", "dev", "eth0"); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if out, err := known.Exec(ctx, "busybox", "tftp", "-g", "-r", "snponly.efi", "-l", "/dev/null", serverIP); err != nil {
			t.Errorf("busybox tftp: %v: %s", err, out)
		}
		resp, err := rb.NS.HTTPClient().Get(rb.URL + "/ipxe/boot.ipxe?mac=" + knownMAC)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_, _ = rb.cli("host", "power", "nobmc", "status") // unreachable: counted
	}
	scrape := func() []byte {
		t.Helper()
		page, err := rb.Metrics(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return page
	}
	var scrapes []promcheck.Scrape
	at := time.Now()
	for i := range 3 {
		activity(i)
		scrapes = append(scrapes, promcheck.Scrape{At: at.Add(time.Duration(i) * 15 * time.Second), Page: scrape()})
	}
	_ = os.WriteFile(filepath.Join(dir, "metrics.txt"), scrapes[len(scrapes)-1].Page, 0o644)
	rep, err := promcheck.CheckDashboard(t.Context(), "../../docs/grafana/rackboot.json", scrapes, map[string]string{"job": "rackboot", "instance": serverIP + ":8080"})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range rep.Errors {
		t.Error(err)
	}
	for _, m := range rep.Absent {
		if strings.HasPrefix(m, "rackboot_dhcp_") {
			t.Errorf("%s is not on the lab's /metrics (%s)", m, filepath.Join(dir, "metrics.txt"))
		}
	}
	t.Logf("%d queries evaluated; metrics no scrape had (nothing here made them): %v", rep.Queries, rep.Absent)
}
