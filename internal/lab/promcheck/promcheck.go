// Package promcheck evaluates the PromQL queries of rackboot's Grafana dashboard
// (docs/grafana/rackboot.json) against /metrics pages scraped from a running rackboot,
// with Prometheus' own parser and query engine over an in-memory storage. Tests use it;
// the rackboot binary does not.
//
// Prometheus' test storage (util/teststorage, a real TSDB) is not used: it pulls the
// remote-write clients of three clouds into go.mod. Scrapes are a handful of samples,
// which a slice holds as well.
package promcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// Query is one PromQL expression of a dashboard panel.
type Query struct {
	Panel string
	RefID string
	// Raw is the expression as the dashboard has it; Expr with Grafana's variables
	// replaced (Variables).
	Raw, Expr string
}

func (q Query) String() string { return fmt.Sprintf("panel %q query %s: %s", q.Panel, q.RefID, q.Raw) }

// Variables are the values given to Grafana's variables in queries: a scrape
// interval of 15 s makes $__rate_interval a minute.
var Variables = map[string]string{
	"$__rate_interval": "1m",
	"$__interval":      "15s",
	"$__range":         "1h",
	"$job":             ".*",
	"$instance":        ".*",
}

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

// DashboardQueries reads the queries of every panel (rows' nested panels included) of
// a Grafana dashboard JSON file.
func DashboardQueries(path string) ([]Query, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var qs []Query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					continue
				}
				e := t.Expr
				for k, v := range Variables {
					e = strings.ReplaceAll(e, k, v)
				}
				qs = append(qs, Query{Panel: p.Title, RefID: t.RefID, Raw: t.Expr, Expr: e})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return qs, nil
}

// Selector is one series selector of a query: a metric name and the labels the query
// uses with it (in matchers, and in the grouping of aggregations over it).
type Selector struct {
	Metric string
	Labels []string
}

// Selectors parses expr and returns its selectors.
func Selectors(expr string) ([]Selector, error) {
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []Selector
	parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		s := Selector{Metric: vs.Name}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				if s.Metric == "" && m.Type == labels.MatchEqual {
					s.Metric = m.Value
				}
				continue
			}
			s.Labels = append(s.Labels, m.Name)
		}
		// The grouping labels of the innermost aggregation around this selector:
		// further out, the labels are the aggregation's, not the metric's.
		for i := len(path) - 1; i >= 0; i-- {
			if a, ok := path[i].(*parser.AggregateExpr); ok {
				if !a.Without {
					s.Labels = append(s.Labels, a.Grouping...)
				}
				break
			}
			if _, ok := path[i].(*parser.BinaryExpr); ok {
				break
			}
		}
		slices.Sort(s.Labels)
		s.Labels = slices.Compact(s.Labels)
		out = append(out, s)
		return nil
	})
	return out, nil
}

// Scrape is one /metrics page and when it was taken.
type Scrape struct {
	At   time.Time
	Page []byte
}

// Storage holds the samples of scrapes, as Prometheus would have stored them.
type Storage struct {
	series map[string]*memSeries
	names  map[string]bool
	target []string // name, value, ...
}

type memSeries struct {
	lset    labels.Labels
	samples []chunks.Sample
}

// Load parses scrapes (in time order) into a Storage, with target's labels (job,
// instance) on every series as Prometheus adds them.
func Load(scrapes []Scrape, target map[string]string) (*Storage, error) {
	s := &Storage{series: map[string]*memSeries{}, names: map[string]bool{}}
	for _, k := range slices.Sorted(maps.Keys(target)) {
		s.target = append(s.target, k, target[k])
	}
	for i, sc := range scrapes {
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(bytes.NewReader(sc.Page))
		if err != nil {
			return nil, fmt.Errorf("scrape %d: %w", i, err)
		}
		t := sc.At.UnixMilli()
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				s.add(mf, m, t)
			}
		}
	}
	return s, nil
}

func (s *Storage) put(name string, base []*dto.LabelPair, extra []string, t int64, v float64) {
	b := labels.NewScratchBuilder(len(base) + 2)
	b.Add(labels.MetricName, name)
	for _, l := range base {
		b.Add(l.GetName(), l.GetValue())
	}
	for _, kv := range [][]string{extra, s.target} {
		for i := 0; i+1 < len(kv); i += 2 {
			b.Add(kv[i], kv[i+1])
		}
	}
	b.Sort()
	lset := b.Labels()
	key := lset.String()
	ms := s.series[key]
	if ms == nil {
		ms = &memSeries{lset: lset}
		s.series[key] = ms
	}
	ms.samples = append(ms.samples, fsample{t, v})
	s.names[name] = true
}

func (s *Storage) add(mf *dto.MetricFamily, m *dto.Metric, t int64) {
	name, ls := mf.GetName(), m.GetLabel()
	switch mf.GetType() {
	case dto.MetricType_COUNTER:
		s.put(name, ls, nil, t, m.GetCounter().GetValue())
	case dto.MetricType_GAUGE:
		s.put(name, ls, nil, t, m.GetGauge().GetValue())
	case dto.MetricType_UNTYPED:
		s.put(name, ls, nil, t, m.GetUntyped().GetValue())
	case dto.MetricType_SUMMARY:
		sm := m.GetSummary()
		for _, q := range sm.GetQuantile() {
			s.put(name, ls, []string{"quantile", formatFloat(q.GetQuantile())}, t, q.GetValue())
		}
		s.put(name+"_sum", ls, nil, t, sm.GetSampleSum())
		s.put(name+"_count", ls, nil, t, float64(sm.GetSampleCount()))
	case dto.MetricType_HISTOGRAM:
		h := m.GetHistogram()
		for _, b := range h.GetBucket() {
			s.put(name+"_bucket", ls, []string{"le", formatFloat(b.GetUpperBound())}, t, float64(b.GetCumulativeCount()))
		}
		s.put(name+"_bucket", ls, []string{"le", "+Inf"}, t, float64(h.GetSampleCount()))
		s.put(name+"_sum", ls, nil, t, h.GetSampleSum())
		s.put(name+"_count", ls, nil, t, float64(h.GetSampleCount()))
	}
}

func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// Has reports whether a series of that name was scraped.
func (s *Storage) Has(name string) bool { return s.names[name] }

// Querier implements storage.Queryable.
func (s *Storage) Querier(mint, maxt int64) (storage.Querier, error) {
	return &storage.MockQuerier{SelectMockFunction: func(sortSeries bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
		var out []storage.Series
		for _, se := range s.series {
			ok := true
			for _, m := range ms {
				if !m.Matches(se.lset.Get(m.Name)) {
					ok = false
					break
				}
			}
			if ok {
				out = append(out, storage.NewListSeries(se.lset, se.samples))
			}
		}
		sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels(), out[j].Labels()) < 0 })
		return &seriesSet{series: out, i: -1}
	}}, nil
}

var _ storage.Queryable = (*Storage)(nil)

type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

type fsample struct {
	t int64
	f float64
}

func (s fsample) T() int64                      { return s.t }
func (s fsample) F() float64                    { return s.f }
func (s fsample) H() *histogram.Histogram       { return nil }
func (s fsample) FH() *histogram.FloatHistogram { return nil }
func (s fsample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fsample) Copy() chunks.Sample           { return s }

// Eval evaluates expr at ts. It returns the result, and an error for a failed
// evaluation or for one Prometheus annotates with a warning or an info (a rate of a
// metric that is not a counter, a quantile of something that is not a histogram...).
func Eval(ctx context.Context, s *Storage, expr string, ts time.Time) (parser.Value, error) {
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1_000_000, Timeout: 30 * time.Second, LookbackDelta: 5 * time.Minute})
	q, err := eng.NewInstantQuery(ctx, s, nil, expr, ts)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	// Infos count too ("metric might not be a counter" is one), except the one about
	// the data rather than the query: rates of a few scrapes' buckets, each
	// extrapolated on its own, need not be monotonic.
	warns, infos := res.Warnings.AsStrings(expr, 0, 0)
	for _, i := range infos {
		if !strings.Contains(i, "fixed for monotonicity") {
			warns = append(warns, i)
		}
	}
	if len(warns) > 0 {
		return res.Value, fmt.Errorf("prometheus warns: %s", strings.Join(warns, "; "))
	}
	return res.Value, nil
}

// Report is what CheckDashboard found.
type Report struct {
	// Queries is how many queries the dashboard has.
	Queries int
	// Errors are the queries that did not parse or did not evaluate.
	Errors []error
	// Absent are the metrics some query reads that no scrape had, sorted.
	Absent []string
}

// CheckDashboard is Check of every query of the dashboard at path.
func CheckDashboard(ctx context.Context, path string, scrapes []Scrape, target map[string]string) (Report, error) {
	qs, err := DashboardQueries(path)
	if err != nil {
		return Report{}, err
	}
	return Check(ctx, qs, scrapes, target)
}

// Check evaluates the queries qs over scrapes (labelled with target, as Prometheus
// labels a scrape target's series), at the time of the last scrape. An error is about
// the scrapes themselves.
func Check(ctx context.Context, qs []Query, scrapes []Scrape, target map[string]string) (Report, error) {
	if len(scrapes) == 0 {
		return Report{}, fmt.Errorf("no scrapes")
	}
	st, err := Load(scrapes, target)
	if err != nil {
		return Report{}, err
	}
	r := Report{Queries: len(qs)}
	seen := map[string]bool{}
	for _, q := range qs {
		sels, err := Selectors(q.Expr)
		if err != nil {
			r.Errors = append(r.Errors, fmt.Errorf("%s: %w", q, err))
			continue
		}
		for _, s := range sels {
			if !seen[s.Metric] {
				seen[s.Metric] = true
				if !st.Has(s.Metric) {
					r.Absent = append(r.Absent, s.Metric)
				}
			}
		}
		if _, err := Eval(ctx, st, q.Expr, scrapes[len(scrapes)-1].At); err != nil {
			r.Errors = append(r.Errors, fmt.Errorf("%s: %w", q, err))
		}
	}
	sort.Strings(r.Absent)
	return r, nil
}
