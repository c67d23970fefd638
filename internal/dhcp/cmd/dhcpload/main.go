// Command dhcpload is an open-loop DHCPv4 load generator: as a relay agent for CLIENTS
// client MACs it starts RATE DORA exchanges per second for PERIOD and prints one line of
// key=value results. hack/bench-compare.sh runs it against rackboot and Kea alike
// (internal/dhcp/dhcpload says what it does and why perfdhcp is not enough).
//
//	dhcpload -server 10.99.0.1:67 -relay 10.99.0.2:67 -clients 10000 -rate 20000 -period 4s
//
// It prints discovers, offers, requests, acks, naks, late and stray (counts), lost_pct
// (DISCOVERs without an ACK), offered_per_s (DISCOVERs sent per second of sending),
// acks_per_s (ACKs per second of PERIOD) and p50_ms and p99_ms (DISCOVER to ACK).
//
// It lives under internal/dhcp so that it is built, vetted and tested with the package
// whose load it makes, and is no public API.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"time"

	"github.com/rackboot/rackboot/internal/dhcp/dhcpload"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dhcpload:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg           dhcpload.Config
		server, relay string
	)
	flag.StringVar(&server, "server", "", "the server's IPv4 ADDRESS:PORT (required; port 67 for a real server)")
	flag.StringVar(&relay, "relay", "", "the relay's IPv4 ADDRESS:PORT to send from and put in giaddr (required; port 67 for a real server)")
	flag.IntVar(&cfg.Clients, "clients", 10000, "client MACs, taken in turn")
	flag.IntVar(&cfg.Rate, "rate", 1000, "DORA exchanges started per second")
	flag.DurationVar(&cfg.Duration, "period", 4*time.Second, "how long exchanges are started")
	flag.DurationVar(&cfg.Drop, "drop", time.Second, "how long an OFFER or ACK may take before its exchange is lost")
	flag.IntVar(&cfg.MaxExchanges, "max", 10_000_000, "bound on exchanges started")
	flag.Parse()
	if server == "" || relay == "" {
		flag.Usage()
		return fmt.Errorf("-server and -relay are required")
	}
	var err error
	if cfg.Server, err = netip.ParseAddrPort(server); err != nil {
		return fmt.Errorf("-server: %w", err)
	}
	ra, err := netip.ParseAddrPort(relay)
	if err != nil {
		return fmt.Errorf("-relay: %w", err)
	}
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ra))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := dhcpload.Run(ctx, conn, cfg)
	if err != nil {
		return err
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
	offered := 0.0
	if res.Sending > 0 {
		offered = float64(res.Discovers-1) / res.Sending.Seconds()
	}
	fmt.Printf("discovers=%d offers=%d requests=%d acks=%d naks=%d late=%d stray=%d lost_pct=%.2f offered_per_s=%.0f acks_per_s=%.0f p50_ms=%s p99_ms=%s\n",
		res.Discovers, res.Offers, res.Requests, res.Acks, res.Naks, res.Late, res.Stray, res.Lost(),
		offered, float64(res.Acks)/cfg.Duration.Seconds(), ms(res.Percentile(50)), ms(res.Percentile(99)))
	return nil
}
