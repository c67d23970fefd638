package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	tftplib "github.com/pin/tftp/v3"

	"github.com/rackboot/rackboot/internal/lab/promcheck"
)

const dashboardFile = "../../docs/grafana/rackboot.json"

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"instance", "job"}

// familyOf maps a series name a query selects to the metric registered for it: a
// histogram's _bucket, _sum and _count series are the histogram's.
func familyOf(name string, reg map[string]metricInfo) (string, metricInfo, bool) {
	if m, ok := reg[name]; ok {
		return name, m, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if m, ok := reg[base]; ok && (m.Type == "histogram" || (m.Type == "summary" && suffix != "_bucket")) {
			return base, m, true
		}
	}
	return "", metricInfo{}, false
}

// TestDashboardQueriesAgainstServe checks every query of docs/grafana/rackboot.json:
// Prometheus' parser reads it; each metric it selects is one serve registers (and
// docs/metrics.md lists), with the labels the query uses; and Prometheus' engine
// evaluates it, without an error or a warning, over three scrapes of the /metrics of a
// running serve that booted, inspected and uploaded something. Each metric a query
// reads is on that /metrics page, except DHCP's, as DHCP runs only inside a network
// namespace (lab's TestNetnsDashboardQueries scrapes a rackboot in the lab for them),
// and the Cluster API controllers' (TestCAPIMetrics evaluates their panels).
func TestDashboardQueriesAgainstServe(t *testing.T) {
	qs, err := promcheck.DashboardQueries(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) < 20 {
		t.Fatalf("%d queries in %s: the dashboard lost its panels?", len(qs), dashboardFile)
	}
	reg := registeredMetrics(t) // metrics_doc_test.go
	docs := documentedMetrics(t)
	selected := map[string]bool{} // series names the queries read
	for _, q := range qs {
		sels, err := promcheck.Selectors(q.Expr)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		for _, s := range sels {
			fam, m, ok := familyOf(s.Metric, reg)
			if !ok && isControllerFamily(s.Metric) {
				// controller-runtime's, registered when the controllers run: checked
				// against docs/metrics.md here, evaluated in TestCAPIMetrics.
				fam, m, ok = familyOf(s.Metric, docs)
			}
			if !ok {
				t.Errorf("%s: %s is not a metric serve registers", q, s.Metric)
				continue
			}
			if _, ok := docs[fam]; !ok {
				t.Errorf("%s: %s is not in docs/metrics.md", q, fam)
			}
			selected[s.Metric] = true
			allowed := append(slices.Clone(m.Labels), targetLabels...)
			if strings.HasSuffix(s.Metric, "_bucket") {
				allowed = append(allowed, "le")
			}
			for _, l := range s.Labels {
				if !slices.Contains(allowed, l) {
					t.Errorf("%s: %s has no label %q (it has %v)", q, fam, l, m.Labels)
				}
			}
		}
	}

	s := startServeYAML(t, t.TempDir(), func(data, adminSock string) string {
		return fmt.Sprintf(`dataDir: %s
address: 127.0.0.1
http: {listen: "127.0.0.1:0"}
api: {listen: ["127.0.0.1:0", "unix:%s"]}
tftp: {port: 0}
dhcp: {mode: "off"}
bmc: {timeout: 2s, maxAttempts: 2}
`, data, adminSock)
	})
	generateActivity(t, s)
	var scrapes []promcheck.Scrape
	at := time.Now()
	for i := range 3 {
		if i > 0 {
			generateActivity(t, s)
		}
		scrapes = append(scrapes, promcheck.Scrape{At: at.Add(time.Duration(i) * 15 * time.Second), Page: []byte(getMetrics(t, s.bootURL+"/metrics"))})
	}
	st, err := promcheck.Load(scrapes, map[string]string{"job": "rackboot", "instance": strings.TrimPrefix(s.bootURL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	for name := range selected {
		if !st.Has(name) && !strings.HasPrefix(name, "rackboot_dhcp_") && !isControllerFamily(name) {
			t.Errorf("%s is not on the /metrics of a serve that did some work: a query reads nothing", name)
		}
	}
	ctx := context.Background()
	empty := 0
	for _, q := range qs {
		v, err := promcheck.Eval(ctx, st, q.Expr, scrapes[len(scrapes)-1].At)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		if v.String() == "" {
			empty++
		}
	}
	t.Logf("%d queries evaluated, %d with an empty result (DHCP's, and rates of what did not happen)", len(qs), empty)
}

// controllerQueries are the dashboard's queries of the Cluster API controllers' metrics.
func controllerQueries(t *testing.T) []promcheck.Query {
	t.Helper()
	qs, err := promcheck.DashboardQueries(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var out []promcheck.Query
	for _, q := range qs {
		sels, err := promcheck.Selectors(q.Expr)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if len(sels) > 0 && isControllerFamily(sels[0].Metric) {
			out = append(out, q)
		}
	}
	if len(out) == 0 {
		t.Fatal("the dashboard has no Cluster API panels")
	}
	return out
}

var tftpListenRe = regexp.MustCompile(`msg="tftp: listening" addr=(\S+)`)

// generateActivity makes serve do a little of everything /metrics counts: admin API
// calls, a host with an unreachable BMC (operations, retries), an inspection (state
// changes), an image upload, iPXE scripts for a stranger and for the host from the
// wrong address (trust rejections), a Range request over the limit, and a TFTP read.
func generateActivity(t *testing.T, s *servedRackboot) {
	t.Helper()
	env := map[string]string{"RACKBOOT_TOKEN_FILE": s.tokenFile, "RACKBOOT_SERVER": s.adminURL}
	pw := filepath.Join(s.dir, "bmc-password")
	if _, err := os.Stat(pw); err != nil {
		// Once: the host, the boot environment and an image.
		if err := os.WriteFile(pw, []byte("pw"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := s.cli(env, "host", "add", "--id", "n1", "--mac", "52:54:00:ac:00:01", "--ip", "10.9.0.10",
			"--bmc", "redfish+http://admin@127.0.0.1:1", "--bmc-password-file", pw); err != nil {
			t.Fatalf("host add: %q, %v", out, err)
		}
		publishTestBuild(t, s.data, strings.Repeat("d", 20), "kernel") // bootenv_test.go
		img := filepath.Join(s.dir, "tiny.raw")
		if err := os.WriteFile(img, []byte(strings.Repeat("rackboot", 512)), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := s.cli(env, "image", "add", "tiny", "--file", img, "--sha256", strings.Repeat("0", 64)); err == nil {
			t.Fatalf("image add with a wrong checksum worked: %q", out)
		}
		if _, err := s.cli(env, "host", "inspect", "n1"); err != nil {
			t.Fatalf("host inspect: %v", err)
		}
	}
	// The BMC at 127.0.0.1:1 refuses: an unreachable outcome, after a retry.
	if _, err := s.cli(env, "host", "power", "n1", "status"); err == nil {
		t.Fatal("power status of a BMC that is not there worked")
	}
	if _, err := s.cli(env, "host", "list"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path  string
		rng   string
		codes []int
	}{
		{"/ipxe/boot.ipxe?mac=52:54:00:ac:00:99", "", nil}, // a stranger
		{"/ipxe/boot.ipxe?mac=52:54:00:ac:00:01", "", nil}, // n1, not from its address
		{"/ipxe/bin/undionly.kpxe", "", nil},
		{"/images/tiny", "bytes=0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1", nil},
	} {
		req, _ := http.NewRequest("GET", s.bootURL+c.path, nil)
		if c.rng != "" {
			req.Header.Set("Range", c.rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	m := tftpListenRe.FindStringSubmatch(s.logs.String())
	if m == nil {
		t.Fatalf("serve did not log its TFTP address:\n%s", s.logs)
	}
	c, err := tftplib.NewClient(m[1])
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(1)
	if wt, err := c.Receive("undionly.kpxe", "octet"); err == nil {
		wt.WriteTo(io.Discard)
	}
}
