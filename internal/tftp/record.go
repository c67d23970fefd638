package tftp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"

	"github.com/rackboot/rackboot/internal/inventory"
)

// The end of a transfer on the host's timeline and in the log.
//
// The event is queued at once for the inventory's group commit (Store.RecordEvents),
// which writes what is queued within its idle flush (50 ms) or a waiter's linger in one
// transaction and one fsync, and in the order queued: the tftp.read of a boot stays
// between the DHCP offer before it and the iPXE script fetch after it. Writing each
// event in its own transaction and fsync (AppendEvent), as the service once did,
// capped a boot storm of known hosts at the disk's fsync rate, and since the transfer
// held its slot meanwhile, turned the rest into "server busy". Gathering events in the
// service for a further 50 ms was tried and measured no cheaper (the committer batches
// already), and it could give a later event of another service, such as iPXE's script
// fetch, a lower sequence number than the read.

// record writes t's timeline event, when its client is a known host and it was a
// read, and its log line.
func (s *Server) record(ctx context.Context, t *transfer) {
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
	// The store may be slow or shutting down; the transfer is over either way.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eventTimeout)
	defer cancel()
	var hostID string
	if s.cfg.Store != nil && ip.IsValid() {
		host, err := s.cfg.Store.HostByIP(ctx, ip.String())
		switch {
		case err == nil:
			hostID = host.ID
		case !errors.Is(err, inventory.ErrNotFound):
			s.log.Warn("TFTP: inventory lookup by IP failed", "ip", ip.String(), "err", err)
		}
		if hostID != "" && t.outcome != OutcomeWriteRefused {
			ev := inventory.HostEvent{HostID: hostID, Event: t.event(ip)}
			if err := s.cfg.Store.RecordEvents(ctx, ev); err != nil {
				s.log.Warn("TFTP: cannot record event", "hostID", hostID, "err", err)
			}
		}
	}
	s.logTransfer(ctx, t, ip, hostID)
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
