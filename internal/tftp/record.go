package tftp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/rackboot/rackboot/internal/inventory"
)

// The end of a transfer on the host's timeline and in the log, in batches.
//
// A boot storm ends hundreds of transfers a second. Each one's event was once its own
// bbolt transaction and fsync; queued one by one for the inventory's group commit
// (Store.RecordEvents), they still made a commit, an fsync and a wake-up of the Go
// runtime's monitor thread (a blocked syscall) every few transfers. The recorder
// gathers what ends within batchWindow and hands it over in one call, and looks up the
// host of an address once per batch: UEFI's tsize probe and the fetch that follows
// come from the same address milliseconds apart.

const (
	// batchWindow is how long the recorder gathers transfers after the first of a
	// batch: what an event or log line may lag behind its transfer.
	batchWindow = 50 * time.Millisecond
	// batchMax ends a batch early.
	batchMax = 512
	// recordQueue bounds the transfers ended but not yet recorded; a transfer that
	// finds it full waits (holding its slot), so a stalled store slows the service
	// down instead of growing memory.
	recordQueue = 1024
)

// recorder writes the log line and the timeline event of each request, in batches, in
// its own goroutine.
type recorder struct {
	s    *Server
	in   chan transfer
	done chan struct{}
}

func newRecorder(s *Server) *recorder {
	return &recorder{s: s, in: make(chan transfer, recordQueue), done: make(chan struct{})}
}

// add queues t; it blocks only while recordQueue transfers are waiting.
func (r *recorder) add(t transfer) { r.in <- t }

// run records batches until close, then records what is left and returns.
func (r *recorder) run(ctx context.Context) {
	defer close(r.done)
	batch := make([]transfer, 0, batchMax)
	for {
		t, ok := <-r.in
		if !ok {
			return
		}
		batch = append(batch[:0], t)
		timer := time.NewTimer(batchWindow)
	gather:
		for len(batch) < batchMax {
			select {
			case t, ok := <-r.in:
				if !ok {
					break gather
				}
				batch = append(batch, t)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		r.record(ctx, batch)
	}
}

// close records what is queued and returns once it is on the timeline (queued for
// the inventory's commit). No add may come after it.
func (r *recorder) close() {
	close(r.in)
	<-r.done
}

// record looks up the host of each transfer's address, queues one tftp.read event per
// read of a known host, and writes each transfer's log line.
func (r *recorder) record(ctx context.Context, batch []transfer) {
	s := r.s
	// The store may be slow or shutting down; the transfers are over either way.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eventTimeout)
	defer cancel()
	hosts := map[netip.Addr]string{} // this batch's lookups; "" is no host
	var events []inventory.HostEvent
	for i := range batch {
		t := &batch[i]
		// The requested name is the client's: bound it before it reaches logs and the
		// timeline (CleanPath already refused anything this long).
		if len(t.file) > MaxPathLen {
			t.file = strings.ToValidUTF8(t.file[:MaxPathLen], "") + "..."
		}
		var ip netip.Addr
		if t.remote != nil {
			ip, _ = netip.AddrFromSlice(t.remote.IP)
			ip = ip.Unmap()
		}
		hostID, seen := hosts[ip]
		if !seen && s.cfg.Store != nil && ip.IsValid() {
			host, err := s.cfg.Store.HostByIP(ctx, ip.String())
			switch {
			case err == nil:
				hostID = host.ID
			case !errors.Is(err, inventory.ErrNotFound):
				s.log.Warn("TFTP: inventory lookup by IP failed", "ip", ip.String(), "err", err)
			}
			hosts[ip] = hostID
		}
		if hostID != "" && t.outcome != OutcomeWriteRefused {
			events = append(events, inventory.HostEvent{HostID: hostID, Event: t.event(ip)})
		}
		s.logTransfer(ctx, t, ip, hostID)
	}
	if len(events) > 0 {
		if err := s.cfg.Store.RecordEvents(ctx, events...); err != nil {
			s.log.Warn("TFTP: cannot record events", "events", len(events), "err", err)
		}
	}
}

// event is the timeline event of read t from ip.
func (t *transfer) event(ip netip.Addr) inventory.Event {
	fields := map[string]string{
		"file": t.file, "ip": ip.String(), "outcome": t.outcome, "bytes": strconv.FormatInt(t.bytes, 10),
	}
	if t.size >= 0 {
		fields["size"] = strconv.FormatInt(t.size, 10)
	}
	if t.err != nil {
		fields["error"] = t.err.Error()
	}
	// Time is left to the store: it stamps the event when queued, within batchWindow of
	// the transfer's end.
	return inventory.Event{Type: EventRead, Message: fmt.Sprintf("TFTP read of %s: %s", t.file, t.outcome), Fields: fields}
}

// logTransfer writes t's log line: info for a completed read, error when the server
// failed, debug for UEFI's tsize probe, warn for the rest.
func (s *Server) logTransfer(ctx context.Context, t *transfer, ip netip.Addr, hostID string) {
	level := slog.LevelWarn
	switch t.outcome {
	case OutcomeOK:
		level = slog.LevelInfo
	case OutcomeError:
		level = slog.LevelError
	case OutcomeAborted:
		level = slog.LevelDebug
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	ipText, port := "", 0
	if ip.IsValid() {
		ipText, port = ip.String(), t.remote.Port
	}
	attrs := []any{"file", t.file, "ip", ipText, "port", port, "outcome", t.outcome, "bytes", t.bytes, "duration", t.duration}
	if t.window > 1 {
		attrs = append(attrs, "windowsize", t.window)
	}
	if t.retransmits > 0 {
		attrs = append(attrs, "retransmits", t.retransmits)
	}
	if t.err != nil {
		attrs = append(attrs, "err", t.err.Error())
	}
	if hostID != "" {
		attrs = append(attrs, "hostID", hostID)
	}
	s.log.Log(ctx, level, "TFTP transfer", attrs...)
}
