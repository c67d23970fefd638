package bmc

import (
	"fmt"
	"strings"
)

// PowerState is a host's chassis power as its BMC reports it.
type PowerState string

const (
	PowerOn      PowerState = "on"
	PowerOff     PowerState = "off"
	PowerUnknown PowerState = "unknown"
)

// parsePowerState maps what bmclib's providers return (ipmitool's "Chassis Power is on",
// Redfish PowerState "On", "Off", "PoweringOn", "PoweringOff") to a PowerState.
func parsePowerState(s string) PowerState {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "on" || s == "poweringoff" || strings.Contains(s, "power is on"):
		// PoweringOff: still drawing power until it finishes.
		return PowerOn
	case s == "off" || s == "poweringon" || strings.Contains(s, "power is off"):
		return PowerOff
	}
	return PowerUnknown
}

// PowerAction is a power operation.
type PowerAction string

const (
	// ActionOn powers the host on; it is a no-op when it is on already.
	ActionOn PowerAction = "on"
	// ActionOff cuts power at once (Redfish ForceOff, IPMI chassis power off).
	ActionOff PowerAction = "off"
	// ActionSoft asks the OS to shut down (ACPI; Redfish GracefulShutdown). It returns
	// when the BMC accepted the request, not when the host is off.
	ActionSoft PowerAction = "soft"
	// ActionCycle is off then on (Redfish ForceRestart, IPMI chassis power cycle). A host
	// that is off is powered on instead, since "cycle" is how operators say "boot it now"
	// and Redfish refuses ForceRestart on a system that is off.
	ActionCycle PowerAction = "cycle"
	// ActionReset is a warm reset (Redfish PowerCycle, IPMI chassis power reset).
	ActionReset PowerAction = "reset"
)

// PowerActions lists every action, in the order the CLI documents them.
var PowerActions = []PowerAction{ActionOn, ActionOff, ActionSoft, ActionCycle, ActionReset}

// ParsePowerAction validates an action name.
func ParsePowerAction(s string) (PowerAction, error) {
	for _, a := range PowerActions {
		if s == string(a) {
			return a, nil
		}
	}
	return "", fmt.Errorf("power action %q is unknown: use on, off (hard), soft (ACPI shutdown), cycle or reset", s)
}

// BootDevice is the device a host boots from next.
type BootDevice string

const (
	BootPXE  BootDevice = "pxe"
	BootDisk BootDevice = "disk"
)

// ParseBootDevice validates a boot device name.
func ParseBootDevice(s string) (BootDevice, error) {
	switch BootDevice(s) {
	case BootPXE, BootDisk:
		return BootDevice(s), nil
	}
	return "", fmt.Errorf("boot device %q is unknown: use pxe (network boot from rackboot) or disk", s)
}

// BootOptions is a next-boot override.
type BootOptions struct {
	Device BootDevice `json:"device"`
	// Persistent keeps the override for every boot (Redfish Continuous, IPMI
	// options=persistent); otherwise it applies to the next boot only.
	Persistent bool `json:"persistent"`
	// UEFI boots the device in UEFI mode; otherwise legacy BIOS mode.
	UEFI bool `json:"uefi"`
}

// Validate checks the device.
func (b BootOptions) Validate() error {
	_, err := ParseBootDevice(string(b.Device))
	return err
}

// String describes the override for messages and events: "pxe once uefi".
func (b BootOptions) String() string {
	when, mode := "once", "legacy"
	if b.Persistent {
		when = "persistent"
	}
	if b.UEFI {
		mode = "uefi"
	}
	return string(b.Device) + " " + when + " " + mode
}

// Operation names a BMC operation in metrics and events.
type Operation string

const (
	OpPowerStatus Operation = "power_status"
	OpBootDevice  Operation = "bootdev"
)

// powerOp is the Operation of a power action: power_on, power_off, ...
func powerOp(a PowerAction) Operation { return Operation("power_" + string(a)) }
