package bmc_test

import (
	"github.com/rackboot/rackboot/internal/lab/bmcsim"

	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/bmc"
)

// BenchmarkPowerStatusPool measures power-status reads per second through the pool
// (8 workers) against N lab BMCs, over the real protocols: the lab's Redfish emulator on
// loopback (no root needed) and, with the lab available, ipmi_sim in a namespace. Each
// read is a full call as rackboot makes it: credentials from the bbolt inventory
// (decrypting the password), then a fresh bmclib client: Redfish login, service root,
// systems, system, logout; IPMI an RMCP ping plus one ipmitool run.
func BenchmarkPowerStatusPool(b *testing.B) {
	for _, n := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("redfish/bmcs=%d", n), func(b *testing.B) {
			store := openStore(b)
			for i := 0; i < n; i++ {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				bmcsim.ServeRedfishTB(b, ln, "root", "bench-pw", bmcsim.NewMemoryMachine())
				addHost(b, store, i, fmt.Sprintf("h%d", i), "redfish+http://root@"+ln.Addr().String(), "bench-pw")
			}
			benchStatus(b, store, n, bmc.LibConfig{})
		})
	}
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("ipmi/bmcs=%d", n), func(b *testing.B) {
			requireLab(b, "ipmi_sim", "ipmitool")
			l := newLabBMCs(b)
			store := openStore(b)
			for i := 0; i < n; i++ {
				sim := l.addIPMI(b, "admin", "bench-pw")
				addHost(b, store, i, fmt.Sprintf("h%d", i), sim.URL("admin"), "bench-pw")
			}
			benchStatus(b, store, n, l.libConfig())
		})
	}
}

func benchStatus(b *testing.B, store bmc.Store, n int, lib bmc.LibConfig) {
	svc := startService(b, bmc.Config{Store: store, Lib: lib, Workers: 8, Timeout: 30 * time.Second})
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("h%d", i)
		// Warm up: the first status of each host goes on its timeline.
		if _, err := svc.PowerStatus(context.Background(), ids[i]); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(8) // enough callers to keep all 8 workers busy on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids[next.Add(1)%uint64(n)]
			if _, err := svc.PowerStatus(context.Background(), id); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
