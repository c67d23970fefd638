package bmcsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// chassisControlTimeout bounds one chassis_control call. ipmi_sim blocks on it (popen)
// and ipmitool retries a request that takes more than about a second, so a call that
// hangs is worse than one that fails.
const chassisControlTimeout = 8 * time.Second

// ipmiBootNames maps ipmi_sim's boot values (lanserv/bmc_chassis.c boot_map: the boot
// device selector of Set System Boot Options parameter 5) to boot targets. "default" is
// "force boot from default hard-drive". cdrom and bios have no lab equivalent.
var ipmiBootNames = map[string]BootTarget{
	"none":    BootNone,
	"pxe":     BootPXE,
	"default": BootDisk,
}

func ipmiBootName(t BootTarget) string {
	if t == BootDisk {
		return "default"
	}
	return string(t)
}

// ChassisControl implements ipmi_sim's chassis_control protocol (openipmi 2.0.33,
// lanserv/bmc_chassis.c and extcmd.c) for the VM in dir. ipmi_sim runs the configured
// command through sh with these appended:
//
//	get power|boot ...        → prints "power:1" or "power:0", "boot:pxe|default|none",
//	                            one per line, for each parameter asked
//	set power 0|1             → hard off / on
//	set reset 1               → hard reset (Chassis Control 3)
//	set shutdown 1            → ACPI power button (Chassis Control 5, "power soft")
//	set boot none|pxe|default → next boot device (Set System Boot Options parameter 5)
//	set identify "SECS FORCE" → chassis identify; accepted, the lab has no LED
//
// ipmitool's "power cycle" arrives as set power 0, then get power each second until 0,
// then set power 1. ipmi_sim passes only the device selector of a boot override, not its
// persistent or EFI bits, so an IPMI override is always once (the IPMI default) and
// keeps the stored mode. Errors go to stdout, which ipmi_sim logs, and fail the call.
func ChassisControl(ctx context.Context, dir string, args []string, stdout io.Writer) (err error) {
	defer func() {
		if err != nil {
			fmt.Fprintln(stdout, err)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, chassisControlTimeout)
	defer cancel()
	if len(args) == 0 {
		return errors.New("chassis control: no operation (get, set or check)")
	}
	d, err := OpenVMDir(dir)
	if err != nil {
		return err
	}
	switch op, params := args[0], args[1:]; op {
	case "get":
		var out bytes.Buffer
		for _, p := range params {
			switch p {
			case "power":
				st, err := d.PowerState(ctx)
				if err != nil {
					return err
				}
				v := 0
				if st == PowerOn {
					v = 1
				}
				fmt.Fprintf(&out, "power:%d\n", v)
			case "boot":
				o, err := d.BootOverride(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(&out, "boot:%s\n", ipmiBootName(o.Target))
			default:
				return fmt.Errorf("chassis control: cannot get %q (power or boot)", p)
			}
		}
		_, err := stdout.Write(out.Bytes())
		return err
	case "set":
		if len(params)%2 != 0 {
			return fmt.Errorf("chassis control: set needs parameter/value pairs, got %q", params)
		}
		for i := 0; i < len(params); i += 2 {
			if err := chassisSet(ctx, d, params[i], params[i+1]); err != nil {
				return err
			}
		}
		return nil
	case "check":
		// ipmi_sim's example script does not support check for chassis control either.
		return errors.New("chassis control: check is not supported")
	default:
		return fmt.Errorf("chassis control: unknown operation %q (get, set or check)", op)
	}
}

func chassisSet(ctx context.Context, d *VMDir, param, value string) error {
	switch param {
	case "power":
		switch value {
		case "1":
			return d.Power(ctx, OpOn)
		case "0":
			return d.Power(ctx, OpOff)
		}
	case "reset":
		switch value {
		case "1":
			return d.Power(ctx, OpReset)
		case "0":
			return nil
		}
	case "shutdown":
		switch value {
		case "1":
			return d.Power(ctx, OpSoft)
		case "0":
			return nil
		}
	case "boot":
		t, ok := ipmiBootNames[value]
		if !ok {
			return fmt.Errorf("chassis control: boot device %q is not available in the lab (none, pxe or default)", value)
		}
		o, err := d.BootOverride(ctx)
		if err != nil {
			return err
		}
		return d.SetBootOverride(ctx, BootOverride{Target: t, Persistence: BootOnce, Mode: o.Mode})
	case "identify":
		return nil
	default:
		return fmt.Errorf("chassis control: cannot set %q (power, reset, shutdown, boot or identify)", param)
	}
	return fmt.Errorf("chassis control: %s %q: bad value", param, value)
}

// IPMIConfig describes one ipmi_sim BMC.
type IPMIConfig struct {
	// Dir receives lan.conf, bmc.emu and ipmi_sim's state directory.
	Dir string
	// Name names the BMC (lan.conf "name"); also seeds its GUID.
	Name string
	// Addr is the LAN channel's UDP address, a lab address inside the namespace the
	// BMC runs in (port 623 is IPMI's).
	Addr netip.AddrPort
	// Username (at most 16 bytes) and Password (at most 20, IPMI 2.0's limit) of the one
	// administrator user.
	Username, Password string
	// ChassisControl is the command ipmi_sim runs for power and boot device, e.g.
	// {"/usr/lib/rackboot/rackboot-bmcsim", "chassis-control", "--dir", VMDIR}; it must end up
	// calling ChassisControl with the arguments ipmi_sim appends.
	ChassisControl []string
}

// Files written by WriteIPMI.
const (
	IPMILanConf  = "lan.conf"
	IPMIEmuFile  = "bmc.emu"
	IPMIStateDir = "ipmi-state"
)

func (c IPMIConfig) validate() error {
	switch {
	case c.Dir == "" || c.Name == "" || len(c.ChassisControl) == 0:
		return errors.New("ipmi_sim config: Dir, Name and ChassisControl are required")
	case !c.Addr.IsValid():
		return errors.New("ipmi_sim config: Addr is required (a lab address and UDP port)")
	case c.Username == "" || len(c.Username) > 16:
		return fmt.Errorf("ipmi_sim config: username %q: 1 to 16 bytes", c.Username)
	case c.Password == "" || len(c.Password) > 20:
		return errors.New("ipmi_sim config: password must be 1 to 20 bytes (IPMI 2.0 limit)")
	}
	// lan.conf strings are double-quoted with no escapes.
	for _, s := range append([]string{c.Name, c.Username, c.Password}, c.ChassisControl...) {
		if strings.ContainsAny(s, "\"\\\n\r") {
			return fmt.Errorf("ipmi_sim config: %q: double quotes, backslashes and newlines cannot be written to lan.conf", s)
		}
	}
	return nil
}

// lanConf renders lan.conf. One LAN channel (1) with RMCP+ (ipmi_sim always offers
// cipher suites 0-14, so ipmitool -C 3 works); IPMI 1.5 logins only with MD5; no
// anonymous user (user 1 is not defined); user 2 is the administrator.
func (c IPMIConfig) lanConf() string {
	sum := sha256.Sum256([]byte("rackboot-lab-bmc:" + c.Name))
	var b strings.Builder
	fmt.Fprintf(&b, "# ipmi_sim LAN configuration for lab BMC %s, written by rackboot (internal/lab/bmcsim).\n", c.Name)
	fmt.Fprintf(&b, "name \"%s\"\n\n", c.Name)
	b.WriteString("set_working_mc 0x20\n\n")
	b.WriteString("  startlan 1\n")
	fmt.Fprintf(&b, "    addr %s %d\n", c.Addr.Addr().Unmap(), c.Addr.Port())
	b.WriteString("    priv_limit admin\n")
	b.WriteString("    allowed_auths_callback md5\n")
	b.WriteString("    allowed_auths_user md5\n")
	b.WriteString("    allowed_auths_operator md5\n")
	b.WriteString("    allowed_auths_admin md5\n")
	fmt.Fprintf(&b, "    guid %s\n", hex.EncodeToString(sum[:16]))
	b.WriteString("  endlan\n\n")
	quoted := make([]string, len(c.ChassisControl))
	for i, a := range c.ChassisControl {
		quoted[i] = shellQuote(a)
	}
	// ipmi_sim appends " get power" etc. and runs the line with sh (popen).
	fmt.Fprintf(&b, "  chassis_control \"%s\"\n\n", strings.Join(quoted, " "))
	b.WriteString("  #    num enabled name password privilege max-sessions auths(ignored)\n")
	fmt.Fprintf(&b, "  user 2   true    \"%s\" \"%s\" admin 10 md5\n", c.Username, c.Password)
	return b.String()
}

// emu is the command file: one BMC management controller at 0x20 with a SEL, enabled.
// Without an MC ipmi_sim answers nothing. The values are those of openipmi's
// ipmisim1.emu (device id 0, IPMI 2.0, manufacturer 0x1291 = OpenIPMI).
const emu = `# ipmi_sim commands for a rackboot lab BMC, written by rackboot (internal/lab/bmcsim).
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`

// WriteIPMI writes the BMC's configuration into cfg.Dir, with a fresh state directory
// (ipmi_sim prefers users saved there over lan.conf's, so old state would keep an old
// password), and returns the ipmi_sim command line to run inside the lab namespace that
// holds cfg.Addr. The config file holds the password: it is written 0600.
func WriteIPMI(cfg IPMIConfig) ([]string, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	state := filepath.Join(dir, IPMIStateDir)
	if err := os.RemoveAll(state); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("ipmi_sim state directory: %w", err)
	}
	lan := filepath.Join(dir, IPMILanConf)
	if err := os.WriteFile(lan, []byte(cfg.lanConf()), 0o600); err != nil {
		return nil, err
	}
	if err := os.Chmod(lan, 0o600); err != nil {
		return nil, err
	}
	emuPath := filepath.Join(dir, IPMIEmuFile)
	if err := os.WriteFile(emuPath, []byte(emu), 0o644); err != nil {
		return nil, err
	}
	// -n: no console on stdin/stdout, so it runs detached; -s: state here, not in
	// /var/ipmi_sim.
	return []string{"ipmi_sim", "-n", "-c", lan, "-f", emuPath, "-s", state}, nil
}

// shellQuote quotes s for sh unless it is plainly safe.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ipmiPort is IPMI-over-LAN's UDP port.
const ipmiPort = 623

// DefaultIPMIAddr is addr on IPMI's standard port 623.
func DefaultIPMIAddr(addr netip.Addr) netip.AddrPort { return netip.AddrPortFrom(addr, ipmiPort) }
