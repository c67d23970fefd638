package ipxe

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/rackboot/rackboot/internal/inventory"
)

// ErrNoScript means the MAC gets no script at all: it is unknown and discovery is off.
// HTTP answers 404, so the firmware moves on to its next boot device.
var ErrNoScript = errors.New("no iPXE script for this MAC: it is not in the inventory and unknown hosts are ignored")

// MaxCmdline bounds a kernel command line after placeholders are substituted: x86 Linux
// accepts 2048 bytes, and a longer one would be silently cut by the kernel.
const MaxCmdline = 2048

// BootEnv is a kernel to boot: the rackboot agent's boot environment (kernel, the
// initramfs rackboot builds, command line). It has the same shape and rules as
// inventory.BootProfile.
type BootEnv struct {
	Kernel  string
	Initrds []string
	Cmdline string
}

// ScriptInput is everything a host's script depends on.
type ScriptInput struct {
	// Host is the inventory host that owns MAC, or nil when the MAC is unknown.
	Host *inventory.Host
	// MAC is the normalised MAC the firmware asked with (inventory.NormalizeMAC).
	MAC string
	// Discovery is the unknown-hosts policy: true for "discover", false for "ignore".
	Discovery bool
	// ServerURL is rackboot's HTTP base URL as the host reaches it, e.g.
	// "http://10.0.0.1:8080" (a trailing slash is dropped).
	ServerURL string
	// BootEnv is the agent's boot environment. It is nil until provisioning provides
	// one; the agent states then fall back to local boot.
	BootEnv *BootEnv
	// AgentArgs is appended to BootEnv's command line when the script boots the agent:
	// the per-boot token the provisioner issued (rackboot.token=...). The handler asks
	// for it only once it knows the script boots the agent.
	AgentArgs string
}

// Action says what a script makes the host do; it is logged and put on the timeline.
type Action string

const (
	ActionProfile Action = "profile" // boot the host's boot profile
	ActionAgent   Action = "agent"   // boot the agent's BootEnv
	ActionLocal   Action = "local"   // exit to the firmware's next boot device
)

// Script is a rendered iPXE script.
type Script struct {
	Body   []byte
	Action Action
	// Reason is a short human explanation, the same one the script echoes.
	Reason string
}

// bootsOwnDisk: a provisioning host whose image is written boots its new system.
func bootsOwnDisk(h *inventory.Host) bool {
	return h.State == inventory.StateProvisioning && h.Operation != nil && h.Operation.Phase == inventory.PhaseDiskBoot
}

// RenderScript decides what the host in `in` boots and renders the iPXE script for it.
// It returns ErrNoScript for an unknown MAC when discovery is off, and an error naming
// the field when the input cannot make a safe script (a bad URL or command line).
func RenderScript(in ScriptInput) (Script, error) {
	mac, err := inventory.NormalizeMAC(in.MAC)
	if err != nil {
		return Script{}, err
	}
	base, err := checkServerURL(in.ServerURL)
	if err != nil {
		return Script{}, err
	}
	vars := placeholders{MAC: mac, ServerURL: base}
	var w scriptWriter
	w.line("#!ipxe")

	h := in.Host
	if h == nil {
		if !in.Discovery {
			return Script{}, ErrNoScript
		}
		w.line("# rackboot: unknown host %s, discovery on", mac)
		if in.BootEnv != nil {
			reason := fmt.Sprintf("%s is not in the inventory: booting the rackboot agent to discover it", mac)
			return w.boot(ActionAgent, reason, base, bootSpec(*in.BootEnv), vars)
		}
		reason := fmt.Sprintf("%s is not in the inventory and discovery is on, but this rackboot has no agent boot environment yet: booting from local disk", mac)
		return w.local(reason), nil
	}

	vars.HostID = h.ID
	w.line("# rackboot: host %s (%s), state %s", h.ID, mac, h.State)
	switch {
	case h.Boot != nil:
		reason := fmt.Sprintf("%s is %s: booting its boot profile", h.ID, h.State)
		return w.boot(ActionProfile, reason, base, bootSpec(*h.Boot), vars)
	case bootsOwnDisk(h):
		reason := fmt.Sprintf("%s is provisioning and its image is written: booting from local disk", h.ID)
		return w.local(reason), nil
	case h.RunsAgent() && in.BootEnv != nil:
		reason := fmt.Sprintf("%s is %s: booting the rackboot agent", h.ID, h.State)
		spec := bootSpec(*in.BootEnv)
		if in.AgentArgs != "" {
			spec.Cmdline = strings.TrimSpace(spec.Cmdline + " " + in.AgentArgs)
		}
		return w.boot(ActionAgent, reason, base, spec, vars)
	case h.RunsAgent():
		reason := fmt.Sprintf("%s is %s and needs the rackboot agent, which this rackboot cannot boot yet: booting from local disk", h.ID, h.State)
		return w.local(reason), nil
	case h.State == inventory.StateFailed:
		reason := fmt.Sprintf("%s is failed (see rackboot host show %s): booting from local disk", h.ID, h.ID)
		return w.local(reason), nil
	default:
		// enrolled and available wait for an operator or a claim; provisioned runs its
		// installed OS.
		reason := fmt.Sprintf("%s is %s: booting from local disk", h.ID, h.State)
		return w.local(reason), nil
	}
}

// bootSpec is a kernel, its initrds and a command line, from a profile or a BootEnv.
type bootSpec struct {
	Kernel  string
	Initrds []string
	Cmdline string
}

type scriptWriter struct{ b bytes.Buffer }

func (w *scriptWriter) line(format string, args ...any) {
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

func (w *scriptWriter) local(reason string) Script {
	w.line("echo rackboot: %s", reason)
	w.line("exit")
	return Script{Body: w.b.Bytes(), Action: ActionLocal, Reason: reason}
}

func (w *scriptWriter) boot(action Action, reason, base string, spec bootSpec, vars placeholders) (Script, error) {
	what := "boot profile"
	if action == ActionAgent {
		what = "agent boot environment"
	}
	kernel, err := resolveURL(spec.Kernel)
	if err != nil {
		return Script{}, fmt.Errorf("%s kernel: %w", what, err)
	}
	cmdline, err := expandCmdline(spec.Cmdline, vars)
	if err != nil {
		return Script{}, fmt.Errorf("%s: %w", what, err)
	}
	type initrd struct{ name, url string }
	initrds := make([]initrd, 0, len(spec.Initrds))
	used := map[string]bool{}
	for i, s := range spec.Initrds {
		u, err := resolveURL(s)
		if err != nil {
			return Script{}, fmt.Errorf("%s initrd %d: %w", what, i+1, err)
		}
		name := initrdName(s, i, used)
		used[name] = true
		initrds = append(initrds, initrd{name: name, url: u})
	}

	w.line("set base %s", base)
	w.line("echo rackboot: %s", reason)
	var k strings.Builder
	k.WriteString("kernel ")
	k.WriteString(kernel)
	for _, i := range initrds {
		k.WriteString(" initrd=")
		k.WriteString(i.name)
	}
	if cmdline != "" {
		k.WriteString(" ")
		k.WriteString(cmdline)
	}
	w.line("%s || goto failed", k.String())
	for _, i := range initrds {
		w.line("initrd --name %s %s || goto failed", i.name, i.url)
	}
	w.line("boot || goto failed")
	w.line(":failed")
	// Pause so the error iPXE printed stays on the console long enough to read, then let
	// the firmware try its next boot device rather than loop here.
	w.line("echo rackboot: booting the %s failed (see the error above): trying the next boot device in 10 seconds", what)
	w.line("sleep 10")
	w.line("exit 1")
	return Script{Body: w.b.Bytes(), Action: action, Reason: reason}, nil
}

// checkServerURL makes sure the base URL is an http(s) URL made only of characters
// that mean nothing to iPXE's line parser, since it may come from a Host header.
func checkServerURL(s string) (string, error) {
	s = strings.TrimSuffix(s, "/")
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("server URL %q is invalid: give the http://ADDRESS:PORT hosts reach rackboot at", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_:/[]%~", r)) {
			return "", fmt.Errorf("server URL %q contains %q: use a plain http://ADDRESS:PORT", s, r)
		}
	}
	return s, nil
}

// resolveURL turns a profile's kernel or initrd into the URL iPXE fetches: absolute
// http, https and tftp URLs as given; a path (with or without a leading "/") under
// DATA_DIR/assets as ${base}/assets/PATH, each segment escaped.
func resolveURL(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty: give a URL or a path under the assets directory")
	}
	if strings.Contains(s, "://") {
		// Written into the script as is, so it must be a single harmless token.
		if err := checkToken(s); err != nil {
			return "", err
		}
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("%q is not a valid URL: %w", s, err)
		}
		switch u.Scheme {
		case "http", "https", "tftp":
		default:
			return "", fmt.Errorf("%q: iPXE here fetches only http, https and tftp URLs", s)
		}
		if u.Host == "" {
			return "", fmt.Errorf("%q has no host", s)
		}
		return s, nil
	}
	// A path is escaped segment by segment below, so only what no file name should
	// hold is refused here.
	p := strings.TrimLeft(s, "/")
	if !fs.ValidPath(p) || strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\\' }) {
		return "", fmt.Errorf("%q is not a clean path under the assets directory: no \"..\", \".\", empty segments, backslashes or control characters", s)
	}
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	return "${base}/assets/" + strings.Join(segs, "/"), nil
}

// initrdName picks the name an initrd gets in iPXE and on the kernel line: its file
// name when that is plain and not yet used, else initrdN.
func initrdName(s string, i int, used map[string]bool) string {
	p := s
	if u, err := url.Parse(s); err == nil && strings.Contains(s, "://") {
		p = u.Path
	}
	name := path.Base(p)
	plain := name != "" && name != "." && name != "/" && len(name) <= 64
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			plain = false
			break
		}
	}
	if plain && !used[name] {
		return name
	}
	for n := i; ; n++ {
		alt := fmt.Sprintf("initrd%d", n)
		if !used[alt] {
			return alt
		}
	}
}

// checkToken refuses what would change the meaning of an iPXE script line when s is
// written as one token: whitespace, control characters, or invalid UTF-8.
func checkToken(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%q is not valid UTF-8", s)
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%q contains a space or control character: percent-encode it", s)
		}
	}
	if s[0] == '#' || s == "||" || s == "&&" || s == ";" {
		return fmt.Errorf("%q would be read by iPXE as a comment or operator", s)
	}
	return nil
}

// placeholders are the values a command line may refer to.
type placeholders struct {
	MAC       string
	HostID    string
	ServerURL string
}

// ValidateCmdline checks a boot profile's command line as RenderScript will: only the
// known placeholders, no iPXE operators or comments, no control characters, not too long.
// The admin API calls it so a bad profile is refused when written, not at boot.
func ValidateCmdline(cmdline string) error {
	_, err := expandCmdline(cmdline, placeholders{
		MAC: "00:00:00:00:00:00", HostID: strings.Repeat("x", 63), ServerURL: "http://0.0.0.0:65535",
	})
	return err
}

// expandCmdline substitutes {{.MAC}}, {{.HostID}} and {{.ServerURL}} (spaces inside the
// braces allowed) and checks the result is safe on an iPXE kernel line. Runs of
// whitespace collapse to one space, as iPXE would do anyway.
func expandCmdline(cmdline string, v placeholders) (string, error) {
	var out strings.Builder
	rest := cmdline
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			out.WriteString(rest)
			break
		}
		out.WriteString(rest[:i])
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return "", fmt.Errorf("cmdline: %q opens {{ without closing it: write {{.MAC}}, {{.HostID}} or {{.ServerURL}}", rest[i:])
		}
		key := strings.TrimSpace(rest[i+2 : i+j])
		switch key {
		case ".MAC":
			out.WriteString(v.MAC)
		case ".HostID":
			out.WriteString(v.HostID)
		case ".ServerURL":
			out.WriteString(v.ServerURL)
		default:
			return "", fmt.Errorf("cmdline: unknown placeholder %q: only {{.MAC}}, {{.HostID}} and {{.ServerURL}} exist", rest[i:i+j+2])
		}
		rest = rest[i+j+2:]
	}
	s := out.String()
	if !utf8.ValidString(s) {
		return "", errors.New("cmdline is not valid UTF-8")
	}
	for _, r := range s {
		if (r < ' ' && r != '\t') || r == 0x7f {
			return "", fmt.Errorf("cmdline contains control character %q: a kernel command line is one line", r)
		}
	}
	fields := strings.Fields(s)
	for _, f := range fields {
		if f == "||" || f == "&&" || f == ";" || strings.HasPrefix(f, "#") {
			return "", fmt.Errorf("cmdline: %q would be read by iPXE as an operator or a comment, which cuts the kernel line short: remove it", f)
		}
	}
	s = strings.Join(fields, " ")
	if len(s) > MaxCmdline {
		return "", fmt.Errorf("cmdline is %d bytes after substitution; Linux accepts at most %d", len(s), MaxCmdline)
	}
	return s, nil
}
