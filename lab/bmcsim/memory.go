package bmcsim

import (
	"context"
	"sync"
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
