package tftp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
	"github.com/rackboot/rackboot/internal/tftp/tftpload"
)

// stormHosts enrols n hosts with reserved addresses from 127.0.1.1 up in a real
// inventory, so every transfer of the storm is a known host's and writes its event.
func stormHosts(tb testing.TB, n int) (*inventory.BoltStore, []netip.Addr) {
	tb.Helper()
	store, err := inventory.Open(filepath.Join(tb.TempDir(), "inventory.db"), inventory.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	var (
		hosts []inventory.Host
		addrs []netip.Addr
	)
	a := netip.MustParseAddr("127.0.1.1")
	for i := range n {
		hosts = append(hosts, inventory.Host{ID: fmt.Sprintf("storm-%d", i), MACs: []string{fmt.Sprintf("52:54:00:00:01:%02x", i)}, IP: a.String()})
		addrs = append(addrs, a)
		a = a.Next()
	}
	if _, err := store.CreateHosts(context.Background(), hosts...); err != nil {
		tb.Fatal(err)
	}
	// Sources other than 127.0.0.1 exist on Linux loopback without configuration.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: addrs[0].AsSlice()})
	if err != nil {
		tb.Skipf("no loopback address %s: %v", addrs[0], err)
	}
	_ = c.Close()
	return store, addrs
}

// BenchmarkStorm is a boot storm on loopback: 64 known hosts fetching undionly.kpxe
// with blksize 1468 (and tsize) at once, each again as soon as it is done; one
// operation is one whole transfer, so ns/op is the inverse of the storm's rate. The
// client runs in this process too: profile with -cpuprofile and look at the server's
// part (hack/bench-compare.sh measures the server alone, on its own CPU).
func BenchmarkStorm(b *testing.B) {
	for _, tc := range []struct {
		window int
		known  bool
	}{{0, true}, {0, false}, {16, true}} {
		b.Run(fmt.Sprintf("windowsize=%d/known=%v", tc.window, tc.known), func(b *testing.B) {
			store, addrs := stormHosts(b, 64)
			ts := startServerConfig(b, func(c *Config) {
				c.Store = store
				if !tc.known {
					c.Store = nil
				}
			}, nil)
			size := int64(len(embedded(b, ipxe.UndionlyKPXE)))
			b.ReportAllocs()
			b.ResetTimer()
			res, err := tftpload.Run(context.Background(), tftpload.Config{
				Server: ts.addr, File: ipxe.UndionlyKPXE, Blksize: 1468, Windowsize: tc.window, TSize: true,
				Clients: 64, Sources: addrs, Duration: time.Minute, MaxTransfers: b.N, Size: size,
			})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if res.Failures > 0 {
				b.Fatalf("%d of %d transfers failed: %v", res.Failures, res.Failures+res.Transfers, res.Errors)
			}
			b.ReportMetric(res.Rate(), "transfers/s")
			b.ReportMetric(float64(res.Percentile(99).Microseconds())/1000, "p99-ms")
			b.SetBytes(size)
		})
	}
}

// TestLoadGenerators runs tftpload's two clients, the event loop and a goroutine per
// client, against the server, lock-step and with windowsize 16, from several source
// addresses: each completes every transfer whole and counts it, and each reports a
// file of the wrong length as a failure, not a transfer.
func TestLoadGenerators(t *testing.T) {
	_, addrs := stormHosts(t, 4)
	// Limits raised: a transfer's slot comes back once it is recorded, a moment after
	// the client is done, and each client starts its next at once.
	ts := startServerConfig(t, func(c *Config) { c.Store, c.MaxTransfersPerSource = nil, 64 }, nil)
	size := int64(len(embedded(t, ipxe.UndionlyKPXE)))
	for _, goroutines := range []bool{false, true} {
		for _, window := range []int{0, 16} {
			t.Run(fmt.Sprintf("goroutines=%v/windowsize=%d", goroutines, window), func(t *testing.T) {
				cfg := tftpload.Config{
					Server: ts.addr, File: ipxe.UndionlyKPXE, Blksize: 1468, Windowsize: window, TSize: true,
					Clients: 8, Sources: addrs, Duration: time.Minute, MaxTransfers: 40, Size: size, Goroutines: goroutines,
				}
				res, err := tftpload.Run(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				if res.Transfers != 40 || res.Failures != 0 || res.Bytes != 40*size || len(res.Latencies) != 40 {
					t.Fatalf("%d transfers (%d bytes, %d latencies), %d failures %v; want 40 of %d bytes each, none failed",
						res.Transfers, res.Bytes, len(res.Latencies), res.Failures, res.Errors, size)
				}
				cfg.Size, cfg.MaxTransfers = size+1, 8
				res, err = tftpload.Run(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("received %d bytes, want %d", size, size+1)
				if res.Transfers != 0 || res.Failures != 8 || res.Errors[want] != 8 {
					t.Fatalf("wrong size expected: %d transfers, %d failures %v; want 8 failures %q", res.Transfers, res.Failures, res.Errors, want)
				}
			})
		}
	}
}
