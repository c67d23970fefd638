package provision

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rackboot/rackboot/agentapi"
)

// Settings is what an operator sets of the provisioner: the "provision" section of
// rackboot's configuration file. Timeouts are grouped there as an operator reads them
// (phase timeouts, then retries); Config takes them flat. There is no power timeout of
// its own: one BMC call is bounded by bmc.timeout, and the power phase by
// retries.powerAttempts and retries.powerBackoff.
type Settings struct {
	Timeouts PhaseTimeouts `yaml:"timeouts" doc:"how long each phase may take"`
	Retries  Retries       `yaml:"retries" doc:"how often a failing step is tried again"`
	// AcceptSerials is Config.AcceptSerials.
	AcceptSerials []string `yaml:"acceptSerials" doc:"SMBIOS system serials (the machines bought for this rack) whose discovered hosts become available once inspected; the others wait for 'rackboot host accept' (a serial is the host's own word: keep the list private)"`
	// CloudInit is Config.CloudInit.
	CloudInit agentapi.CloudInitMode `yaml:"cloudInit" doc:"how the agent points an installed system at its cloud-init: dropin (a cloud.cfg.d file; stock cloud images), cidata (a config drive) or none; Butane/Ignition hosts take ignition"`
	// Interval is Config.Interval.
	Interval time.Duration `yaml:"interval" doc:"time between reconcile passes (a change triggers one at once)"`
}

// PhaseTimeouts bound each phase of an operation (internal/provision/doc.go draws them).
type PhaseTimeouts struct {
	Boot        time.Duration `yaml:"boot" doc:"power-on to the agent's hello, per boot attempt (firmware, PXE, kernel, drivers)"`
	Stall       time.Duration `yaml:"stall" doc:"longest silence from a working agent (progress resets it)"`
	DiskBoot    time.Duration `yaml:"diskBoot" doc:"image written to cloud-init's phone-home from the installed system"`
	RebootGrace time.Duration `yaml:"rebootGrace" doc:"a host found off after its image is written is powered on after this"`
}

// Retries say how often a failing step is tried again.
type Retries struct {
	BootAttempts  int           `yaml:"bootAttempts" doc:"agent boots per operation before the host fails (1: no retry)"`
	PowerAttempts int           `yaml:"powerAttempts" doc:"failing BMC sequences per boot before the host fails"`
	PowerBackoff  time.Duration `yaml:"powerBackoff" doc:"wait before the next BMC try"`
}

// DefaultSettings has every default written out.
func DefaultSettings() Settings {
	return Settings{
		Timeouts:  PhaseTimeouts{Boot: DefaultBootTimeout, Stall: DefaultStallTimeout, DiskBoot: DefaultDiskBootTimeout, RebootGrace: DefaultRebootGrace},
		Retries:   Retries{BootAttempts: DefaultBootAttempts, PowerAttempts: DefaultPowerAttempts, PowerBackoff: DefaultPowerBackoff},
		CloudInit: agentapi.CloudInitDropIn,
		Interval:  DefaultInterval,
	}
}

// Bounds of the settings. A timeout below minPhaseTimeout would expire before any
// machine can POST and reach the agent (the lab's TCG VMs take 18-35 s); pauses below
// a second are typos ("30ms" for "30s").
const (
	minPhaseTimeout = 30 * time.Second
	minPause        = time.Second
	maxAttempts     = 100
)

// Validate checks every setting as written: DefaultSettings fills the defaults before
// the operator's file is read, so a zero here is the operator's and is refused. Each
// error starts with the setting's path inside the section (timeouts.boot, ...).
func (s Settings) Validate() error {
	var errs []error
	dur := func(field string, v, min time.Duration, example string) {
		switch {
		case v <= 0:
			errs = append(errs, fmt.Errorf("%s: %s: give a positive duration such as %s (leave it out for the default)", field, v, example))
		case v < min:
			errs = append(errs, fmt.Errorf("%s: %s is too short: give at least %s", field, v, min))
		}
	}
	dur("timeouts.boot", s.Timeouts.Boot, minPhaseTimeout, "15m")
	dur("timeouts.stall", s.Timeouts.Stall, minPhaseTimeout, "15m")
	dur("timeouts.diskBoot", s.Timeouts.DiskBoot, minPhaseTimeout, "30m")
	dur("timeouts.rebootGrace", s.Timeouts.RebootGrace, minPause, "30s")
	dur("retries.powerBackoff", s.Retries.PowerBackoff, minPause, "30s")
	dur("interval", s.Interval, minPause, "5s")
	for _, a := range []struct {
		field string
		n     int
	}{{"retries.bootAttempts", s.Retries.BootAttempts}, {"retries.powerAttempts", s.Retries.PowerAttempts}} {
		if a.n < 1 || a.n > maxAttempts {
			errs = append(errs, fmt.Errorf("%s: %d: give 1-%d (1 means no retry; leave it out for the default, 3)", a.field, a.n, maxAttempts))
		}
	}
	switch s.CloudInit {
	case agentapi.CloudInitDropIn, agentapi.CloudInitCIData, agentapi.CloudInitNone:
	default:
		errs = append(errs, fmt.Errorf("cloudInit: %q is not a mode: use dropin, cidata or none", s.CloudInit))
	}
	for i, serial := range s.AcceptSerials {
		if strings.TrimSpace(serial) == "" || len(serial) > 128 {
			errs = append(errs, fmt.Errorf("acceptSerials[%d]: %q is not a serial number: give the SMBIOS system serial as `rackboot host show` reports it", i, serial))
		}
	}
	return errors.Join(errs...)
}

// Config is the provisioner's Config for these settings; the caller adds the wiring
// (Store, BMC, Images, ...).
func (s Settings) Config() Config {
	return Config{
		Timeouts: Timeouts{
			Boot: s.Timeouts.Boot, Stall: s.Timeouts.Stall, DiskBoot: s.Timeouts.DiskBoot, RebootGrace: s.Timeouts.RebootGrace,
			BootAttempts: s.Retries.BootAttempts, PowerAttempts: s.Retries.PowerAttempts, PowerBackoff: s.Retries.PowerBackoff,
		},
		AcceptSerials: s.AcceptSerials,
		CloudInit:     s.CloudInit,
		Interval:      s.Interval,
	}
}
