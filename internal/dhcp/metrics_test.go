package dhcp

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestMetricsOnTheGivenRegistry(t *testing.T) {
	e := newEnv(t, storeKinds()[0].open, discoverOn)
	e.dora(macUnknown)
	e.dora(macOther)
	e.send(msg(dhcpv4.MessageTypeDiscover, "52:54:00:99:99:97")) // offered, not bound
	e.send(msg(dhcpv4.MessageTypeRelease, macOther, ciaddr("10.0.0.101"), sid("10.0.0.1")))

	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"rackboot_dhcp_packets_total,outcome=replied,type=discover": 3,
		"rackboot_dhcp_packets_total,outcome=replied,type=request":  2,
		"rackboot_dhcp_packets_total,outcome=accepted,type=release": 1,
		"rackboot_dhcp_leases":                  1,
		"rackboot_dhcp_handler_panics_total":    0,
		"rackboot_dhcp_send_errors_total":       0,
		"rackboot_dhcp_events_suppressed_total": 0,
		"rackboot_dhcp_queue_length":            0,
		// Every reason at zero from the start.
		"rackboot_dhcp_shed_total,reason=duplicate":         0,
		"rackboot_dhcp_shed_total,reason=queue_full":        0,
		"rackboot_dhcp_shed_total,reason=stale":             0,
		"rackboot_dhcp_discovery_refused_total,reason=rate": 0,
		"rackboot_dhcp_discovery_refused_total,reason=cap":  0,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	e.clock.Advance(2 * time.Hour)
	if n := e.h.countBoundLeases(); n != 0 {
		t.Errorf("expired leases counted: %v", n)
	}
}

func TestNoLeaseGaugeInProxyMode(t *testing.T) {
	e := newEnv(t, storeKinds()[0].open, proxyMode)
	mfs, _ := e.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "rackboot_dhcp_leases" {
			t.Error("proxy mode exports a lease gauge")
		}
	}
}
