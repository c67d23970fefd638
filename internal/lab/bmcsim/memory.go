package bmcsim

import (
	"context"
	"net"
	"sync"
	"testing"
)

// MemoryMachine is a Machine without QEMU: power state and boot override in memory, with
// a "once" override consumed at power-on as a VMDir does. It lets tests run the real
// Redfish emulator (and rackboot's BMC client against it) in milliseconds.
type MemoryMachine struct {
	mu    sync.Mutex
	state PowerState
	boot  BootOverride
	ops   []PowerOp
}

var _ Machine = (*MemoryMachine)(nil)

// NewMemoryMachine returns a machine that is off with no boot override (UEFI mode).
func NewMemoryMachine() *MemoryMachine {
	return &MemoryMachine{state: PowerOff, boot: BootOverride{Target: BootNone, Persistence: BootOnce, Mode: BootUEFI}}
}

// PowerState implements Machine.
func (m *MemoryMachine) PowerState(context.Context) (PowerState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state, nil
}

// Power implements Machine and records op.
func (m *MemoryMachine) Power(_ context.Context, op PowerOp) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ops = append(m.ops, op)
	switch op {
	case OpOff, OpSoft:
		m.state = PowerOff
	default:
		m.state = PowerOn
		if m.boot.Persistence == BootOnce {
			m.boot.Target = BootNone
		}
	}
	return nil
}

// BootOverride implements Machine.
func (m *MemoryMachine) BootOverride(context.Context) (BootOverride, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.boot, nil
}

// SetBootOverride implements Machine.
func (m *MemoryMachine) SetBootOverride(_ context.Context, o BootOverride) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.boot = o
	return nil
}

// Snapshot returns the state, the boot override and every power operation so far.
func (m *MemoryMachine) Snapshot() (PowerState, BootOverride, []PowerOp) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state, m.boot, append([]PowerOp(nil), m.ops...)
}

// ServeRedfishTB runs a Redfish emulator with one system "1" on ln until tb's cleanup,
// which stops it and reports a serve error. Tests of rackboot's BMC client, admin API
// and CLI share it.
func ServeRedfishTB(tb testing.TB, ln net.Listener, username, password string, m Machine) {
	tb.Helper()
	srv, err := NewRedfishServer(RedfishConfig{Systems: map[string]Machine{"1": m}, Username: username, Password: password})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("redfish emulator: %v", err)
		}
	})
}
