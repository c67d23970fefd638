package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rackboot/rackboot/internal/inventory"
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

// registerInventoryMetrics registers the inventory's group commit counters: how many
// bbolt transactions carried the leases and timeline events, and how many changes they
// carried (their ratio is the batching an fsync buys).
func registerInventoryMetrics(reg prometheus.Registerer, store *inventory.BoltStore) error {
	stat := func(f func(inventory.CommitStats) uint64) func() float64 {
		return func() float64 { return float64(f(store.CommitStats())) }
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "rackboot_inventory_commits_total",
			Help: "Group commits of leases and timeline events: bbolt transactions, one fsync each.",
		}, stat(func(s inventory.CommitStats) uint64 { return s.Commits })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "rackboot_inventory_commit_changes_total",
			Help: "Changes (lease writes, event batches) the group commits carried.",
		}, stat(func(s inventory.CommitStats) uint64 { return s.Ops })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "rackboot_inventory_commit_failures_total",
			Help: "Group commits that failed; their lease writes are retried with the next one, and the replies that waited for them were not sent.",
		}, stat(func(s inventory.CommitStats) uint64 { return s.Failures })),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
