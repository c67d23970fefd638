package ipxe

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/internal/hotfile"
	"github.com/rackboot/rackboot/internal/inventory"
)

// BenchmarkBinaryOverTCP is a boot storm in miniature: 64 clients with keep-alive
// connections on loopback fetching snponly.efi from a handler over the real inventory
// and trust gate, as serve builds them (a stranger's address: no timeline event). Run
// with -cpuprofile/-memprofile to see where a request's time goes.
//
// The sub-benchmarks send the body with sendfile(2) from a memfd (what serve does on
// Linux) and with writes from the process's memory; cpu-us/op is the whole process's
// CPU time (server and clients) per request.
func BenchmarkBinaryOverTCP(b *testing.B) {
	for _, noSendfile := range []bool{false, true} {
		name := "sendfile"
		if noSendfile {
			name = "write"
		}
		b.Run(name, func(b *testing.B) { benchBinaryOverTCP(b, noSendfile) })
	}
}

func benchBinaryOverTCP(b *testing.B, noSendfile bool) {
	dir := b.TempDir()
	store, err := inventory.Open(filepath.Join(dir, "inventory.db"), inventory.Options{SecretKeyFile: filepath.Join(dir, "secret.key")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	bins, err := OpenBinaries(filepath.Join(dir, "ipxe"))
	if err != nil {
		b.Fatal(err)
	}
	h, err := NewHandler(HandlerConfig{Store: store, Binaries: bins, Gate: newGate(b, store), Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	if h.binCache, err = hotfile.New(hotfile.Config{FS: bins, Immutable: true, NoSendfile: noSendfile}); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	url := srv.URL + "/ipxe/bin/" + SNPOnlyEFI
	b.SetParallelism(32) // 64 clients on 2 CPUs
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 64<<10)
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.CopyBuffer(io.Discard, resp.Body, buf)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || n == 0 {
				b.Errorf("status %d, %d bytes", resp.StatusCode, n)
				return
			}
		}
	})
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var _ Store = (*inventory.BoltStore)(nil)
