package agentapi

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Kernel command-line parameter names.
const (
	ParamURL   = "rackboot.url"
	ParamToken = "rackboot.token"
	ParamMAC   = "rackboot.mac"
	// paramServer is an older spelling of ParamURL, still accepted.
	paramServer = "rackboot.server"
)

// KernelArgs are the agent's parameters on the kernel command line.
type KernelArgs struct {
	// URL is the server's base URL, e.g. http://10.0.0.1:8080.
	URL string
	// Token is the per-boot bearer token.
	Token string
	// MAC is the booting NIC; empty lets the agent take the first NIC with a link.
	MAC string
}

// String renders the parameters for a kernel command line (no console= options).
func (k KernelArgs) String() string {
	s := ParamURL + "=" + strings.TrimSuffix(k.URL, "/") + " " + ParamToken + "=" + k.Token
	if k.MAC != "" {
		s += " " + ParamMAC + "=" + k.MAC
	}
	return s
}

// Validate checks the parameters are usable and safe on a kernel (and iPXE) line.
func (k KernelArgs) Validate() error {
	u, err := url.Parse(k.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(k.URL, " \t\n\"") {
		return fmt.Errorf("%s=%q: want the server's http://ADDRESS:PORT", ParamURL, k.URL)
	}
	if err := ValidateToken(k.Token); err != nil {
		return err
	}
	if k.MAC != "" {
		if _, err := net.ParseMAC(k.MAC); err != nil {
			return fmt.Errorf("%s=%q: %w", ParamMAC, k.MAC, err)
		}
	}
	return nil
}

// ErrNoAgentArgs means the command line has no rackboot.url: this kernel was not booted
// by rackboot to run the agent.
var ErrNoAgentArgs = errors.New("the kernel command line has no " + ParamURL + "=: this boot was not started by rackboot's agent script")

// ParseKernelArgs reads the agent's parameters from a kernel command line
// (/proc/cmdline). Quoted values ("a b") are not used by rackboot and are taken as is.
func ParseKernelArgs(cmdline string) (KernelArgs, error) {
	var k KernelArgs
	for _, f := range strings.Fields(cmdline) {
		key, val, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		switch key {
		case ParamURL, paramServer:
			k.URL = strings.TrimSuffix(val, "/")
		case ParamToken:
			k.Token = val
		case ParamMAC:
			k.MAC = val
		}
	}
	if k.URL == "" {
		return k, ErrNoAgentArgs
	}
	if k.MAC != "" {
		if hw, err := net.ParseMAC(k.MAC); err == nil {
			k.MAC = hw.String()
		}
	}
	return k, k.Validate()
}

// NewToken returns a fresh per-boot token: 32 random bytes, base64url without padding
// (43 characters), safe on a kernel command line, in an iPXE script and in a URL.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("agent token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ValidateToken accepts 16 to 128 characters of [A-Za-z0-9_-].
func ValidateToken(t string) error {
	if len(t) < 16 || len(t) > 128 {
		return fmt.Errorf("%s: want 16-128 characters, got %d", ParamToken, len(t))
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("%s: only letters, digits, - and _ are allowed", ParamToken)
		}
	}
	return nil
}
