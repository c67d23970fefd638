package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

// BMCProtocol says how a lab VM's BMC is reached.
type BMCProtocol string

const (
	// IPMI is Debian's ipmi_sim (IPMI 2.0 over LAN, UDP) with `rackboot-bmcsim
	// chassis-control` as its chassis_control command.
	IPMI BMCProtocol = "ipmi"
	// Redfish is `rackboot-bmcsim redfish`, internal/lab/bmcsim's emulator, over plain HTTP.
	Redfish BMCProtocol = "redfish"
)

// Lab BMC defaults.
const (
	// BMCUsername is the lab BMCs' administrator account unless BMCConfig says otherwise.
	BMCUsername = "admin"
	// RedfishSystemID is the ComputerSystem Id of a lab Redfish BMC's one system.
	RedfishSystemID = "1"
	// IPMIPort and RedfishPort are where lab BMCs listen unless BMCConfig.Addr says.
	IPMIPort    = 623
	RedfishPort = 80
	// bmcReadyTimeout bounds the wait for a new BMC to answer its protocol.
	bmcReadyTimeout = 30 * time.Second
)

// bmcNet is where a Segment's BMCs get their addresses when BMCConfig.Addr is zero:
// 10.77.250.11, .12, ... as /32s on the segment namespace's loopback, the lab's
// "management network" (see BMCConfig.Addr).
var bmcNet = [3]byte{10, 77, 250}

// BMCConfig describes a lab VM's BMC.
type BMCConfig struct {
	Protocol BMCProtocol
	// Addr is where the BMC listens. Its address is added as a /32 to the loopback of the
	// segment's namespace: reachable from everything running in that namespace (rackboot,
	// ipmitool, a Redfish client) and from nothing outside it, and not on the guests'
	// bridge, as a BMC sits on a management network of its own. Zero: the segment's next
	// address from 10.77.250.11 on. Port 0: IPMIPort or RedfishPort.
	Addr netip.AddrPort
	// Username defaults to BMCUsername; Password to a random 16 characters (IPMI 2.0
	// allows 20 bytes).
	Username, Password string
	// SystemID is the Redfish system's Id; default RedfishSystemID.
	SystemID string
}

// BMCVMConfig describes a lab VM powered through a lab BMC.
type BMCVMConfig struct {
	// VM is the guest. An empty Tap gets a new tap on the segment. SerialLog is ignored:
	// the console goes to DIR/serial.log (bmcsim.SerialLog), which QEMU truncates at
	// every power-on.
	VM VM
	// Dir is the VM directory (internal/lab/bmcsim's contract), created if missing. Its path must
	// stay under about 98 bytes, since the QMP unix socket lives in it: t.TempDir() is
	// fine, a deep RACKBOOT_LAB_LOGS directory may not be. The BMC's own files (ipmi_sim
	// configuration, password file, log) go to DIR/bmc.
	Dir string
	// BMCSim is the lab's BMC emulators' binary (ipmi_sim's chassis_control hook, the
	// Redfish service); empty means BMCSimBinary().
	BMCSim string
	BMC    BMCConfig
}

// BMCVM is a lab VM whose power and boot device belong to its BMC: its QEMU runs only
// when the BMC (or the VM directory) powers it on, with the boot order of the boot
// device stored there.
type BMCVM struct {
	// VM is the guest as configured, Tap and SerialLog filled in.
	VM  VM
	Dir *bmcsim.VMDir
	BMC *BMC
}

// SerialLog is the guest's serial console of the current (or last) power-on.
func (v *BMCVM) SerialLog() string { return v.VM.SerialLog }

// QEMULog is QEMU's own output, with one line per power-on naming its argv.
func (v *BMCVM) QEMULog() string { return filepath.Join(v.Dir.Path, bmcsim.QEMULog) }

// PID is the QEMU process while the VM is on, else 0.
func (v *BMCVM) PID() (int, error) { return v.Dir.PID() }

// SetLink plugs (up) or pulls (down) the cable of the running VM's NIC i (0 is the
// first, 1 ExtraNICs[0]): QMP set_link on its QEMU device. The guest sees the carrier
// change; frames to and from that NIC are dropped while it is down. QEMU forgets it at
// the next power-on.
func (v *BMCVM) SetLink(ctx context.Context, nic int, up bool) error {
	if nic < 0 || nic > len(v.VM.ExtraNICs) {
		return fmt.Errorf("lab VM %s has no NIC %d", v.VM.Name, nic)
	}
	_, err := v.Dir.QMP(ctx, "set_link", map[string]any{"name": NICDeviceID(nic), "up": up})
	return err
}

// PowerState reads the power state from the VM directory, as the BMC does.
func (v *BMCVM) PowerState(ctx context.Context) (bmcsim.PowerState, error) {
	return v.Dir.PowerState(ctx)
}

// BMC is a running lab BMC.
type BMC struct {
	Protocol BMCProtocol
	Addr     netip.AddrPort
	Username string
	Password string
	// PasswordFile holds Password (mode 0600): for `rackboot host add
	// --bmc-password-file`, ipmitool -f and the Redfish emulator.
	PasswordFile string
	// SystemID is the Redfish system's Id.
	SystemID string
	// Proc is ipmi_sim or `rackboot-bmcsim redfish`, running in the segment's namespace.
	Proc *Process
}

// URL is the BMC as rackboot's --bmc names it: ipmi://USER@ADDR:PORT or
// redfish+http://USER@ADDR:PORT, no password.
func (b *BMC) URL() string {
	if b.Protocol == IPMI {
		return "ipmi://" + b.Username + "@" + b.Addr.String()
	}
	return "redfish+http://" + b.Username + "@" + b.Addr.String()
}

// Endpoint is the Redfish service's base URL, http://ADDR:PORT (for Redfish clients).
func (b *BMC) Endpoint() string { return "http://" + b.Addr.String() }

// IPMIToolArgs is the ipmitool command line reaching this BMC (lanplus, cipher suite 3,
// password from PasswordFile, not the command line); run it inside the namespace.
func (b *BMC) IPMIToolArgs(args ...string) []string {
	return append([]string{"ipmitool", "-I", "lanplus", "-C", "3",
		"-H", b.Addr.Addr().String(), "-p", strconv.Itoa(int(b.Addr.Port())),
		"-U", b.Username, "-f", b.PasswordFile}, args...)
}

// StartBMCVM creates a BMC-managed VM on the segment: the VM directory (bmcsim.Spec
// from vm.QEMUArgs, boot order by bootindex from its stored boot device), then its BMC
// inside the segment's namespace, returning once the BMC answers its protocol. The VM
// is off: power it on through the BMC.
//
// Teardown (registered with c): the BMC process stops first, then the VM is forced off
// (bmcsim.ForceOff: QEMU runs in a process group of its own and outlives the BMC that
// started it; stopping the BMC first means nothing can power it on again). Should the
// test binary be killed before that, SweepStale finds the VM through the lab's record.
func (s *Segment) StartBMCVM(ctx context.Context, c Cleaner, cfg BMCVMConfig) (*BMCVM, error) {
	if cfg.BMCSim == "" {
		var err error
		if cfg.BMCSim, err = BMCSimBinary(); err != nil {
			return nil, fmt.Errorf("lab BMC VM %s: %w", cfg.VM.Name, err)
		}
	}
	bcfg, err := s.bmcDefaults(cfg.BMC)
	if err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("lab BMC VM %s: Dir is required", cfg.VM.Name)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	vm := cfg.VM
	vm.SerialLog = filepath.Join(dir, bmcsim.SerialLog)
	if vm.Tap == "" {
		if vm.Tap, err = s.AddTap(); err != nil {
			return nil, err
		}
	}
	vm.ExtraNICs = slices.Clone(vm.ExtraNICs) // the taps filled in are the returned VM's
	for i := range vm.ExtraNICs {
		if vm.ExtraNICs[i].Tap == "" {
			if vm.ExtraNICs[i].Tap, err = s.AddTap(); err != nil {
				return nil, err
			}
		}
	}
	if err := vm.validate(); err != nil {
		return nil, err
	}
	if vm.Kernel != "" {
		return nil, fmt.Errorf("lab BMC VM %s: direct kernel boot (Kernel) bypasses the boot device its BMC sets: leave it empty", vm.Name)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bmc"), 0o755); err != nil {
		return nil, fmt.Errorf("lab BMC VM %s: %w", vm.Name, err)
	}
	var vars string
	if vm.UEFI() {
		// OVMF reorders BootOrder from QEMU's bootorder at every boot, so one copy serves
		// every power-on whatever the boot device.
		vars = filepath.Join(dir, "OVMF_VARS.fd")
		if err := copyFile(OVMFVars, vars); err != nil {
			return nil, fmt.Errorf("lab VM %s: copy OVMF vars (apt-get install ovmf): %w", vm.Name, err)
		}
	}
	argv, err := vm.QEMUArgs(vars)
	if err != nil {
		return nil, err
	}
	d, err := bmcsim.CreateVMDir(dir, bmcsim.Spec{Name: vm.Name, Argv: argv, Boot: vm.bootOrder(), Firmware: vm.firmwareMode()})
	if err != nil {
		return nil, fmt.Errorf("lab VM %s: %w", vm.Name, err)
	}
	// Registered before the BMC starts, so it runs after the BMC has stopped.
	forget, err := recordVMDir(d.Path, vm.Name)
	if err != nil {
		return nil, err
	}
	c.Cleanup(func() {
		if err := bmcsim.ForceOff(d.Path); err != nil {
			if r, ok := c.(failureReporter); ok {
				r.Logf("lab: force off VM %s: %v", vm.Name, err)
			}
			return // keep the record: SweepStale will try again
		}
		forget()
		if r, ok := c.(failureReporter); ok && r.Failed() {
			r.Logf("lab: VM %s, last power-on's serial console (%s):\n%s\nQEMU log:\n%s",
				vm.Name, vm.SerialLog, Tail(vm.SerialLog, 40), Tail(filepath.Join(d.Path, bmcsim.QEMULog), 15))
		}
	})
	b, err := s.startBMC(ctx, c, bcfg, d, cfg.BMCSim)
	if err != nil {
		return nil, fmt.Errorf("lab VM %s: %w", vm.Name, err)
	}
	return &BMCVM{VM: vm, Dir: d, BMC: b}, nil
}

// bmcDefaults fills in a BMCConfig's defaults, allocating an address if none is given.
func (s *Segment) bmcDefaults(c BMCConfig) (BMCConfig, error) {
	switch c.Protocol {
	case IPMI, Redfish:
	default:
		return c, fmt.Errorf("lab BMC protocol %q: use ipmi or redfish", c.Protocol)
	}
	if c.Username == "" {
		c.Username = BMCUsername
	}
	if c.Password == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return c, err
		}
		c.Password = hex.EncodeToString(b[:])
	}
	if c.SystemID == "" {
		c.SystemID = RedfishSystemID
	}
	if !c.Addr.IsValid() {
		s.mu.Lock()
		s.bmcs++
		n := s.bmcs
		s.mu.Unlock()
		if n > 200 {
			return c, errors.New("lab: more than 200 BMCs on one segment: give BMCConfig.Addr")
		}
		c.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{bmcNet[0], bmcNet[1], bmcNet[2], byte(10 + n)}), 0)
	}
	if c.Addr.Port() == 0 {
		port := uint16(IPMIPort)
		if c.Protocol == Redfish {
			port = RedfishPort
		}
		c.Addr = netip.AddrPortFrom(c.Addr.Addr(), port)
	}
	if !c.Addr.Addr().Is4() {
		return c, fmt.Errorf("lab BMC address %s: give an IPv4 lab address", c.Addr)
	}
	return c, nil
}

// startBMC runs the BMC for d in the segment's namespace and waits until it answers.
func (s *Segment) startBMC(ctx context.Context, c Cleaner, cfg BMCConfig, d *bmcsim.VMDir, bmcsimBin string) (*BMC, error) {
	bmcDir := filepath.Join(d.Path, "bmc")
	b := &BMC{Protocol: cfg.Protocol, Addr: cfg.Addr, Username: cfg.Username, Password: cfg.Password,
		PasswordFile: filepath.Join(bmcDir, "password"), SystemID: cfg.SystemID}
	if err := os.WriteFile(b.PasswordFile, []byte(cfg.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := s.addBMCAddr(cfg.Addr.Addr()); err != nil {
		return nil, err
	}
	sim, err := filepath.Abs(bmcsimBin)
	if err != nil {
		return nil, err
	}
	var ready Cond
	switch cfg.Protocol {
	case IPMI:
		argv, err := bmcsim.WriteIPMI(bmcsim.IPMIConfig{
			Dir: bmcDir, Name: d.Spec.Name, Addr: cfg.Addr, Username: cfg.Username, Password: cfg.Password,
			ChassisControl: []string{sim, "chassis-control", "--dir", d.Path},
		})
		if err != nil {
			return nil, err
		}
		if b.Proc, err = s.NS.Start(c, filepath.Join(bmcDir, "ipmi_sim.log"), argv...); err != nil {
			return nil, err
		}
		// A stock client's answer, not a bound port, is what "ready" means: it also
		// proves the chassis_control hook runs.
		ready = func(ctx context.Context) (bool, error) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			out, err := s.NS.Exec(ctx, b.IPMIToolArgs("-N", "1", "-R", "1", "power", "status")...)
			if err != nil {
				return false, fmt.Errorf("%w: %v", ErrNotYet, err)
			}
			return strings.Contains(string(out), "Chassis Power is"), nil
		}
	case Redfish:
		if b.Proc, err = s.NS.Start(c, filepath.Join(bmcDir, "redfish.log"), sim, "redfish",
			"--listen", cfg.Addr.String(), "--username", cfg.Username, "--password-file", b.PasswordFile,
			"--system", cfg.SystemID+"="+d.Path); err != nil {
			return nil, err
		}
		ready = HTTPStatus(s.NS.HTTPClient(), b.Endpoint()+"/redfish/v1/", 200)
	}
	what := fmt.Sprintf("%s BMC of %s on %s", cfg.Protocol, d.Spec.Name, cfg.Addr)
	if err := Poll(ctx, bmcReadyTimeout, what, Alive(ready, b.Proc)); err != nil {
		return nil, err
	}
	return b, nil
}

// addBMCAddr puts a /32 on the namespace's loopback unless it is there already (several
// BMCs may share an address on different ports).
func (s *Segment) addBMCAddr(a netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bmcAddrs == nil {
		s.bmcAddrs = map[netip.Addr]bool{}
	}
	if s.bmcAddrs[a] || a == s.Addr.Addr() {
		return nil
	}
	if err := s.NS.IP("addr", "add", a.String()+"/32", "dev", "lo"); err != nil {
		return fmt.Errorf("lab BMC address: %w", err)
	}
	s.bmcAddrs[a] = true
	return nil
}
