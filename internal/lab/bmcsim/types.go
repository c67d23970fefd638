package bmcsim

import (
	"context"
	"fmt"
)

// PowerState is a machine's power as a BMC reports it.
type PowerState string

// Power states.
const (
	PowerOn  PowerState = "on"
	PowerOff PowerState = "off"
)

// PowerOp is a power action a BMC can take.
type PowerOp string

// Power actions. Every one is idempotent: On when on, Off/Soft when off do nothing.
const (
	// OpOn starts the machine with the boot device stored for it.
	OpOn PowerOp = "on"
	// OpOff removes power at once (QMP quit, else SIGKILL).
	OpOff PowerOp = "off"
	// OpSoft presses the power button (ACPI); the guest may ignore it.
	OpSoft PowerOp = "soft"
	// OpReset is a hard reset; a machine that is off is powered on.
	OpReset PowerOp = "reset"
	// OpCycle is off then on; a machine that is off is powered on.
	OpCycle PowerOp = "cycle"
)

// ParsePowerOp parses on, off, soft, reset or cycle.
func ParsePowerOp(s string) (PowerOp, error) {
	switch op := PowerOp(s); op {
	case OpOn, OpOff, OpSoft, OpReset, OpCycle:
		return op, nil
	}
	return "", fmt.Errorf("power operation %q: use on, off, soft, reset or cycle", s)
}

// BootTarget is the device a boot override selects.
type BootTarget string

// Boot targets.
const (
	// BootNone: no override, the machine's default boot order.
	BootNone BootTarget = "none"
	BootPXE  BootTarget = "pxe"
	BootDisk BootTarget = "disk"
)

// ParseBootTarget parses none, pxe or disk.
func ParseBootTarget(s string) (BootTarget, error) {
	switch t := BootTarget(s); t {
	case BootNone, BootPXE, BootDisk:
		return t, nil
	}
	return "", fmt.Errorf("boot device %q: use none, pxe or disk", s)
}

// BootPersistence says how long an override lasts.
type BootPersistence string

// Boot override lifetimes.
const (
	// BootOnce is consumed by the next power-on (or reset that restarts the machine).
	BootOnce BootPersistence = "once"
	// BootPersistent applies to every boot until changed.
	BootPersistent BootPersistence = "persistent"
)

// BootMode is the firmware interface a boot override asks for.
type BootMode string

// Boot modes.
const (
	BootUEFI   BootMode = "uefi"
	BootLegacy BootMode = "legacy"
)

// BootOverride is a machine's stored next-boot device.
type BootOverride struct {
	Target      BootTarget      `json:"target"`
	Persistence BootPersistence `json:"persistence"`
	// Mode is recorded and reported; the lab VM's firmware (vm.json "firmware") is what
	// actually boots, as on a board whose BMC accepts a mode its firmware ignores.
	Mode BootMode `json:"mode"`
}

// Validate checks every field has a known value.
func (o BootOverride) Validate() error {
	if _, err := ParseBootTarget(string(o.Target)); err != nil {
		return err
	}
	switch o.Persistence {
	case BootOnce, BootPersistent:
	default:
		return fmt.Errorf("boot persistence %q: use once or persistent", o.Persistence)
	}
	switch o.Mode {
	case BootUEFI, BootLegacy:
	default:
		return fmt.Errorf("boot mode %q: use uefi or legacy", o.Mode)
	}
	return nil
}

// Machine is what a lab BMC controls. *VMDir is the real one; tests use fakes.
type Machine interface {
	PowerState(ctx context.Context) (PowerState, error)
	Power(ctx context.Context, op PowerOp) error
	BootOverride(ctx context.Context) (BootOverride, error)
	SetBootOverride(ctx context.Context, o BootOverride) error
}

var _ Machine = (*VMDir)(nil)
