// Package dhcpload is an open-loop DHCPv4 load generator: it starts DORA exchanges at a
// fixed rate, as a relay agent for many clients, the way ISC's perfdhcp does (-r RATE
// -R CLIENTS -l ADDRESS -g single), and counts how many end in an ACK. make
// bench-compare measures DHCP capacity with it against rackboot and Kea alike.
//
// What it does, exchange by exchange: a DISCOVER with a new transaction ID from the next
// client MAC (02:00:xx:xx:xx:xx, the clients taken in turn, so each MAC comes round every
// CLIENTS exchanges and no two of its exchanges overlap below CLIENTS/RATE seconds of
// latency), giaddr set to the relay's address so the server answers the relay's port;
// on its OFFER, a REQUEST (same ID) for the offered address naming the offering server;
// on the ACK the exchange is done and timed from its DISCOVER. An OFFER or ACK that has
// not come Drop after the packet it answers (perfdhcp's -d, 1 s) loses the exchange; one
// that comes later is counted late, not as an answer. There are no retransmissions.
// Lost = DISCOVERs sent − ACKs received, over DISCOVERs sent, as the bench computes it
// from perfdhcp's counters.
//
// Why it is written here and not perfdhcp alone: on this project's 2-CPU benchmark
// machine perfdhcp -g single used all of its CPU at 15,000 DORA/s and could not keep
// 22,500/s going (it sent 20,500 DISCOVERs/s and its socket dropped 28,000 replies in
// 4 s while rackboot's side showed every datagram answered; 2026-12-04), so it could not
// tell a server that serves 22,500/s from one that serves 17,500. No other generator
// offers relay-mode DORA at that rate on one CPU. This one runs all exchanges in one
// loop on one socket and moves packets 64 per system call (internal/udpbatch); packets
// are copies of templates built once with github.com/insomniacslk/dhcp/dhcpv4 with the
// ID, MAC and addresses patched in, and replies are read by their fixed offsets and one
// walk of their options, so a packet costs no allocation.
package dhcpload

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// Config is one run's load.
type Config struct {
	Server   netip.AddrPort // where DISCOVERs and REQUESTs go (port 67)
	Clients  int            // client MACs, taken in turn (perfdhcp -R)
	Rate     int            // DORA exchanges started per second (perfdhcp -r)
	Duration time.Duration  // how long exchanges are started (perfdhcp -p)
	// Drop is how long an OFFER or ACK may take before its exchange is lost (perfdhcp
	// -d); 0 means 1 s.
	Drop time.Duration
	// MaxExchanges bounds the exchanges started (each keeps 24 bytes of state until the
	// run ends); 0 means 10,000,000.
	MaxExchanges int
}

// Result counts one run.
type Result struct {
	Discovers, Offers, Requests, Acks, Naks int
	// Late counts OFFERs and ACKs that came after Drop (their exchange was already
	// lost) while Run still listened: none after it returned.
	Late  int
	Stray int // replies to no exchange of this run, duplicates, or malformed
	// Sending is how long DISCOVERs were sent, first to last.
	Sending time.Duration
	// Latencies are the completed exchanges' times, DISCOVER sent to ACK received,
	// sorted.
	Latencies []time.Duration
}

// Lost is the share of started exchanges that got no ACK, in percent.
func (r Result) Lost() float64 {
	if r.Discovers == 0 {
		return 0
	}
	return 100 * float64(r.Discovers-r.Acks) / float64(r.Discovers)
}

// Percentile is the p-th percentile (0-100, clamped) of the exchanges' latencies, or 0
// if none completed.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	p = min(max(p, 0), 100)
	i := int(float64(len(r.Latencies)-1) * p / 100)
	return r.Latencies[i]
}

func (c *Config) check() error {
	switch {
	case !c.Server.IsValid() || !c.Server.Addr().Is4():
		return fmt.Errorf("dhcpload: server %v: give an IPv4 address and port", c.Server)
	case c.Clients < 1 || c.Clients > 1<<24:
		return fmt.Errorf("dhcpload: clients %d: give 1 to %d", c.Clients, 1<<24)
	case c.Rate < 1:
		return fmt.Errorf("dhcpload: rate %d: give at least 1 exchange per second", c.Rate)
	case c.Duration <= 0:
		return errors.New("dhcpload: give a positive duration")
	case c.Duration > time.Duration(math.MaxInt64/int64(c.Rate)):
		return fmt.Errorf("dhcpload: rate %d for %v: too many exchanges to count", c.Rate, c.Duration)
	}
	if c.Drop <= 0 {
		c.Drop = time.Second
	}
	if c.MaxExchanges <= 0 {
		c.MaxExchanges = 10_000_000
	}
	return nil
}

func (r *Result) finish() {
	slices.Sort(r.Latencies)
}
