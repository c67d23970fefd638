package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// registerProcessMetrics registers what describes the process rather than a service:
// the Go runtime, the process, and rackboot_build_info. serve calls it on the registry
// that /metrics serves; docs/metrics.md lists the result (metrics_doc_test.go).
func registerProcessMetrics(reg prometheus.Registerer) error {
	b := currentBuild() // version.go
	commit := b.Commit
	if commit == "" {
		commit = "unknown"
	} else if b.Modified {
		commit += "-dirty"
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rackboot_build_info",
		Help: "Always 1; its labels say which build of rackboot is running (version, commit, go_version), for joins such as `* on (instance) group_left(version) rackboot_build_info`.",
		ConstLabels: prometheus.Labels{
			"version":    b.Version,
			"commit":     commit,
			"go_version": b.GoVersion,
		},
	})
	info.Set(1)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		info,
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
