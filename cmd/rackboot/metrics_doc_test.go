package main

import (
	"bufio"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rackboot/rackboot/internal/inventory"
)

// metricInfo is what docs/metrics.md says of one metric, or what the registry holds.
type metricInfo struct {
	Type   string   // counter, gauge, histogram, summary; "" when the registry cannot tell
	Labels []string // sorted; constant labels included
	Help   string
}

// recordingRegisterer registers into a real registry and keeps what each collector
// describes and, where it can tell, its type: a vector with no series yet is not on
// /metrics, but it is registered and documented.
type recordingRegisterer struct {
	reg     *prometheus.Registry
	metrics map[string]metricInfo
}

var (
	descNameRe   = regexp.MustCompile(`fqName: "([^"]+)", help: "((?:[^"\\]|\\.)*)"`)
	descLabelsRe = regexp.MustCompile(`constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)
)

func collectorType(c prometheus.Collector) string {
	switch c := c.(type) {
	case *prometheus.CounterVec:
		return "counter"
	case *prometheus.GaugeVec:
		return "gauge"
	case *prometheus.HistogramVec:
		return "histogram"
	case *prometheus.SummaryVec:
		return "summary"
	case prometheus.Metric:
		var m dto.Metric
		if c.Write(&m) != nil {
			return ""
		}
		switch {
		case m.Counter != nil:
			return "counter"
		case m.Gauge != nil:
			return "gauge"
		case m.Histogram != nil:
			return "histogram"
		case m.Summary != nil:
			return "summary"
		}
	}
	return ""
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	typ := collectorType(c)
	for d := range ch {
		s := d.String()
		m := descNameRe.FindStringSubmatch(s)
		l := descLabelsRe.FindStringSubmatch(s)
		if m == nil || l == nil {
			panic("cannot read descriptor " + s)
		}
		var labels []string
		for _, kv := range strings.Split(l[1], ",") {
			if k, _, ok := strings.Cut(kv, "="); ok {
				labels = append(labels, k)
			}
		}
		for _, v := range strings.Split(l[2], ",") {
			if v != "" {
				labels = append(labels, strings.TrimSuffix(strings.TrimPrefix(v, "c("), ")"))
			}
		}
		slices.Sort(labels)
		r.metrics[m[1]] = metricInfo{Type: typ, Labels: labels, Help: m[2]}
	}
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recordingRegisterer) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

// registeredMetrics builds serve's registry as serve does (registerProcessMetrics and
// buildServices) for the configurations that between them register every metric:
// DHCP server mode (TFTP off: its socket would be on the DHCP address), and TFTP on
// loopback with DHCP off. The Cluster API controllers' families come from
// controller-runtime's registry and are checked in TestCAPIMetrics.
func registeredMetrics(t *testing.T) map[string]metricInfo {
	t.Helper()
	all := map[string]metricInfo{}
	for _, args := range [][]string{
		{"--dhcp-mode", "server", "--interface", "br0", "--dhcp-range", "10.77.0.100-10.77.0.150", "--tftp-port", "69"},
		{"--dhcp-mode", "off", "--address", "127.0.0.1", "--tftp-port", "0"},
	} {
		data := t.TempDir()
		cfg, err := loadArgs(t, append(args, "--data-dir", data)...) // config_test.go
		if err != nil {
			t.Fatal(err)
		}
		cfg.TFTP.Disabled = args[1] == "server"
		r, err := cfg.resolve(fakeIfaces)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(data, "assets"), 0o755); err != nil {
			t.Fatal(err)
		}
		store, err := inventory.Open(filepath.Join(data, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(data, "secret.key")})
		if err != nil {
			t.Fatal(err)
		}
		rec := &recordingRegisterer{reg: prometheus.NewRegistry(), metrics: map[string]metricInfo{}}
		if err := registerProcessMetrics(rec); err != nil {
			t.Fatal(err)
		}
		w, err := buildServices(r, capiSettings{}, store, "0123456789abcdef0123456789abcdef", slog.New(slog.DiscardHandler), rec)
		for _, c := range w.closers {
			c()
		}
		store.Close()
		if err != nil {
			t.Fatal(err)
		}
		// Types the collectors do not tell (the Go and process collectors) from what
		// they gather.
		mfs, err := rec.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if m, ok := rec.metrics[mf.GetName()]; ok && m.Type == "" {
				m.Type = strings.ToLower(mf.GetType().String())
				rec.metrics[mf.GetName()] = m
			}
		}
		for name, m := range rec.metrics {
			all[name] = m
		}
	}
	return all
}

// docRowRe is a row of docs/metrics.md's tables: | `name` | type | `label`, ... | meaning |
var docRowRe = regexp.MustCompile("^\\| `([a-z_:][a-z0-9_:]*)` \\| ([a-z]+) \\| ([^|]*) \\| (.+) \\|$")

// documentedMetrics reads docs/metrics.md.
func documentedMetrics(t *testing.T) map[string]metricInfo {
	t.Helper()
	f, err := os.Open("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	docs := map[string]metricInfo{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		m := docRowRe.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("docs/metrics.md:%d: not a metric row (| `name` | type | `label`, ... | meaning |): %s", n, line)
			continue
		}
		if _, dup := docs[m[1]]; dup {
			t.Errorf("docs/metrics.md:%d: %s is listed twice", n, m[1])
		}
		var labels []string
		if l := strings.TrimSpace(m[3]); l != "" && l != "—" {
			for _, s := range strings.Split(l, ",") {
				labels = append(labels, strings.Trim(strings.TrimSpace(s), "`"))
			}
		}
		slices.Sort(labels)
		docs[m[1]] = metricInfo{Type: m[2], Labels: labels}
	}
	return docs
}

// TestMetricsDocumented: docs/metrics.md lists every metric serve registers, with its
// type and labels, and no metric that does not exist. RACKBOOT_PRINT_METRICS=1 logs a
// row for each registered metric, its help as the meaning, to start a new one from.
func TestMetricsDocumented(t *testing.T) {
	reg := registeredMetrics(t)
	docs := documentedMetrics(t)
	if os.Getenv("RACKBOOT_PRINT_METRICS") != "" {
		names := slices.Sorted(func(yield func(string) bool) {
			for n := range reg {
				if !yield(n) {
					return
				}
			}
		})
		for _, n := range names {
			m := reg[n]
			ls := "—"
			if len(m.Labels) > 0 {
				ls = "`" + strings.Join(m.Labels, "`, `") + "`"
			}
			t.Logf("| `%s` | %s | %s | %s |", n, m.Type, ls, m.Help)
		}
	}
	for name, m := range reg {
		d, ok := docs[name]
		if !ok {
			t.Errorf("%s (%s) is registered but not in docs/metrics.md", name, m.Type)
			continue
		}
		if m.Type != "" && d.Type != m.Type {
			t.Errorf("docs/metrics.md: %s is a %s, not a %s", name, m.Type, d.Type)
		}
		if diff := cmp.Diff(m.Labels, d.Labels); diff != "" {
			t.Errorf("docs/metrics.md: labels of %s (-registered +documented):\n%s", name, diff)
		}
	}
	for name := range docs {
		if _, ok := reg[name]; !ok && !isControllerFamily(name) {
			t.Errorf("docs/metrics.md lists %s, which serve does not register", name)
		}
	}
}
