package dhcp

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rackboot/rackboot/internal/inventory"
)

// outcome is what became of a packet: the "outcome" label.
type outcome string

const (
	outReplied   outcome = "replied"   // a reply was produced
	outAccepted  outcome = "accepted"  // RELEASE/DECLINE processed (they get no reply)
	outIgnored   outcome = "ignored"   // not for us, or policy says stay silent
	outDropped   outcome = "dropped"   // cannot be served: unknown relay subnet, missing fields
	outMalformed outcome = "malformed" // not a DHCP packet we can parse
	outNAK       outcome = "nak"       // answered with DHCPNAK
	outError     outcome = "error"     // our fault: store failure, pool exhausted, misconfiguration
)

type metrics struct {
	packets    *prometheus.CounterVec
	panics     prometheus.Counter
	sendErrors prometheus.Counter
	// discoveryRefused counts unknown MACs refused by the discovery rate or cap.
	discoveryRefused *prometheus.CounterVec
	// eventsSuppressed counts timeline events not written: their MAC was over budget.
	eventsSuppressed prometheus.Counter
	// shed counts packets dropped before handling: duplicate (a retransmission of a
	// packet still waiting or in hand), queue_full (the oldest waiting one, to make
	// room), stale (waited longer than a client waits).
	shed       *prometheus.CounterVec
	queueDepth prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, h *Handler) (*metrics, error) {
	m := &metrics{
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackboot_dhcp_packets_total",
			Help: "DHCP packets received, by message type and what became of them.",
		}, []string{"type", "outcome"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rackboot_dhcp_handler_panics_total",
			Help: "Packets whose handling panicked and was recovered (a bug: please report).",
		}),
		sendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rackboot_dhcp_send_errors_total",
			Help: "Replies that could not be written to the socket.",
		}),
		discoveryRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackboot_dhcp_discovery_refused_total",
			Help: "Requests from unknown MACs refused under discovery because of its rate or its cap on discovered hosts.",
		}, []string{"reason"}),
		eventsSuppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rackboot_dhcp_events_suppressed_total",
			Help: "DHCP timeline events not written because their MAC exceeded its event rate (a flood naming one host).",
		}),
	}
	m.shed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rackboot_dhcp_shed_total",
		Help: "Packets dropped unhandled under load: duplicate retransmissions, the oldest waiting packet when the queue is full, or packets that waited too long.",
	}, []string{"reason"})
	m.queueDepth = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rackboot_dhcp_queue_length",
		Help: "Packets waiting for a worker.",
	})
	// The series of every reason exist from the start, at zero: a panel of shed
	// packets shows none rather than no data.
	for _, r := range []string{"duplicate", "queue_full", "stale"} {
		m.shed.WithLabelValues(r)
	}
	for _, r := range []string{"rate", "cap"} {
		m.discoveryRefused.WithLabelValues(r)
	}
	cs := []prometheus.Collector{m.packets, m.panics, m.sendErrors, m.discoveryRefused, m.eventsSuppressed, m.shed, m.queueDepth}
	if h.cfg.Mode == ModeServer {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rackboot_dhcp_leases",
			Help: "Bound, unexpired DHCP leases (read from the inventory at scrape time).",
		}, h.countBoundLeases))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("dhcp: register metrics: %w", err)
		}
	}
	return m, nil
}

func (h *Handler) countBoundLeases() float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ls, err := h.cfg.Store.ListLeases(ctx)
	if err != nil {
		return math.NaN()
	}
	now := h.cfg.Now()
	n := 0
	for _, l := range ls {
		if l.State == inventory.LeaseBound && l.Expires.After(now) {
			n++
		}
	}
	return float64(n)
}

// typeLabel keeps the "type" label bounded whatever clients send.
func typeLabel(req *dhcpv4.DHCPv4) string {
	if req == nil {
		return "unknown"
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		return "discover"
	case dhcpv4.MessageTypeRequest:
		return "request"
	case dhcpv4.MessageTypeDecline:
		return "decline"
	case dhcpv4.MessageTypeRelease:
		return "release"
	case dhcpv4.MessageTypeInform:
		return "inform"
	case dhcpv4.MessageTypeNone:
		return "bootp"
	}
	return "other"
}
