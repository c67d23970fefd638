// Command tftpload is a TFTP load generator: CLIENTS clients fetch one file again and
// again for PERIOD, each transfer timed from its request to its last ACK, and it prints
// one line of key=value results. hack/bench-compare.sh runs it against rackboot and
// dnsmasq alike (internal/tftp/tftpload says what it does and does not do).
//
//	tftpload -server 10.99.0.1:69 -file undionly.kpxe -clients 64 -blksize 1468 \
//	    -period 4s -src 10.99.2.1 -srcs 64 [-windowsize 16] [-size N]
//
// It lives under internal/tftp so that it is built, vetted and tested with the package
// whose load it makes, shares its client with the package's storm benchmark, and is no
// public API.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/rackboot/rackboot/internal/tftp/tftpload"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tftpload:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg  tftpload.Config
		src  string
		srcs int
	)
	flag.StringVar(&cfg.Server, "server", "", "server HOST:PORT (required)")
	flag.StringVar(&cfg.File, "file", "", "file to fetch (required)")
	flag.IntVar(&cfg.Blksize, "blksize", 1468, "blksize option to ask (0: none)")
	flag.IntVar(&cfg.Windowsize, "windowsize", 0, "windowsize option to ask (0: none, lock-step)")
	flag.BoolVar(&cfg.TSize, "tsize", true, "ask for tsize, as PXE firmware does")
	flag.IntVar(&cfg.Clients, "clients", 64, "clients fetching at once")
	flag.DurationVar(&cfg.Duration, "period", 4*time.Second, "how long clients start transfers")
	flag.IntVar(&cfg.MaxTransfers, "max", 1_000_000, "bound on transfers started")
	flag.DurationVar(&cfg.Timeout, "timeout", time.Second, "client retransmission timeout")
	flag.Int64Var(&cfg.Size, "size", 0, "the file's size: other lengths count as failures (0: unchecked)")
	flag.BoolVar(&cfg.Goroutines, "goroutines", false, "a goroutine per client instead of the event loop (to compare the two)")
	flag.DurationVar(&cfg.AckDelay, "ack-delay", 0, "hold each ACK back this long (a round trip where netem is missing)")
	flag.StringVar(&src, "src", "", "first source address (empty: the kernel's choice)")
	flag.IntVar(&srcs, "srcs", 1, "consecutive source addresses from -src")
	flag.Parse()
	if cfg.Server == "" || cfg.File == "" {
		flag.Usage()
		return fmt.Errorf("-server and -file are required")
	}
	if src != "" {
		a, err := netip.ParseAddr(src)
		if err != nil {
			return fmt.Errorf("-src: %w", err)
		}
		for range max(srcs, 1) {
			cfg.Sources = append(cfg.Sources, a)
			a = a.Next()
		}
	}
	// Bounded whatever the flags say: the period plus time for the last transfers.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+30*time.Second)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	res, err := tftpload.Run(ctx, cfg)
	if err != nil {
		return err
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
	fmt.Printf("transfers=%d failures=%d per_s=%.1f p50_ms=%s p99_ms=%s max_ms=%s MBps=%.1f\n",
		res.Transfers, res.Failures, res.Rate(), ms(res.Percentile(50)), ms(res.Percentile(99)),
		ms(res.Percentile(100)), float64(res.Bytes)/res.Elapsed.Seconds()/1e6)
	if len(res.Errors) > 0 {
		msgs := make([]string, 0, len(res.Errors))
		for m, n := range res.Errors {
			msgs = append(msgs, fmt.Sprintf("%dx %s", n, m))
		}
		sort.Strings(msgs)
		fmt.Fprintln(os.Stderr, "tftpload: failures:", strings.Join(msgs, "; "))
	}
	return nil
}
