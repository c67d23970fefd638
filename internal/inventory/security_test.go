package inventory

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestSecurityRecordOutlivesTheTimeline: refusals are kept apart from the capped
// timeline, in order with it; ordinary traffic cannot push them out, a flood from one
// source is one entry with a count, and past its own cap the record keeps its start.
func TestSecurityRecordOutlivesTheTimeline(t *testing.T) {
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	s, err := Open(filepath.Join(t.TempDir(), "inventory.db"), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.CreateHosts(ctx, Host{ID: "victim", MACs: []string{"52:54:00:00:00:01"}}); err != nil {
		t.Fatal(err)
	}
	add := func(typ, ip, reason string) {
		t.Helper()
		if _, err := s.AppendEvent(ctx, "victim", Event{Type: typ, Message: "m", Fields: map[string]string{"ip": ip, "route": "script", "reason": reason}}); err != nil {
			t.Fatal(err)
		}
	}
	add("dhcp.ack", "10.0.0.5", "")
	add("http.script.rejected", "10.0.0.66", "no-key")
	for range 50 { // the same refusal again and again: one entry
		add("http.script.rejected", "10.0.0.66", "no-key")
	}
	for range MaxEventsPerHost + 500 {
		add("dhcp.discover", "10.0.0.5", "")
	}
	evs, err := s.Events(ctx, "victim", 0)
	if err != nil {
		t.Fatal(err)
	}
	var rejected []Event
	for i, e := range evs {
		if i > 0 && e.Seq <= evs[i-1].Seq {
			t.Fatalf("events out of order at %d: %d after %d", i, e.Seq, evs[i-1].Seq)
		}
		if IsSecurityEvent(e.Type) {
			rejected = append(rejected, e)
		}
	}
	if len(rejected) != 1 || rejected[0].Fields["repeated"] != "51" {
		t.Fatalf("security record %+v, want one refusal repeated 51 times", rejected)
	}
	if evs[0].Type != "http.script.rejected" {
		t.Errorf("first event %s: the refusal should have outlived the trimmed timeline", evs[0].Type)
	}

	// Past its cap, the record drops its middle, never its start.
	for i := range MaxSecurityEventsPerHost + 50 {
		now = now.Add(time.Second)
		add("agent.rejected", fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), "wrong-address")
	}
	evs, _ = s.Events(ctx, "victim", 0)
	rejected = rejected[:0]
	for _, e := range evs {
		if IsSecurityEvent(e.Type) {
			rejected = append(rejected, e)
		}
	}
	if len(rejected) != MaxSecurityEventsPerHost {
		t.Errorf("%d refusals kept, want %d", len(rejected), MaxSecurityEventsPerHost)
	}
	if rejected[0].Type != "http.script.rejected" || rejected[1].Fields["ip"] != "10.0.0.1" {
		t.Errorf("the start of the record was dropped: %+v %+v", rejected[0], rejected[1])
	}
	if last := rejected[len(rejected)-1]; last.Fields["ip"] != fmt.Sprintf("10.0.%d.%d", (MaxSecurityEventsPerHost+49)/250, (MaxSecurityEventsPerHost+49)%250+1) {
		t.Errorf("last refusal %+v, want the newest", last)
	}
	if err := s.DeleteHost(ctx, "victim"); err != nil {
		t.Fatal(err)
	}
}
