package bmc

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Protocol is how rackboot talks to a BMC. It is also the "protocol" metric label.
type Protocol string

const (
	ProtocolIPMI    Protocol = "ipmi"
	ProtocolRedfish Protocol = "redfish"
)

// Redfish authentication modes.
const (
	AuthSession = "session" // POST SessionService/Sessions, then X-Auth-Token (the default)
	AuthBasic   = "basic"   // HTTP basic auth on every request
)

// Defaults applied by ParseURL.
const (
	DefaultIPMIPort    = 623
	DefaultCipherSuite = 3 // ipmitool without -C probes suites and takes ~10 s per call
	MaxCipherSuite     = 17
)

// ErrInvalidURL: a BMC URL does not parse or names an unknown protocol. The wrapped
// message names the problem and the accepted forms.
var ErrInvalidURL = errors.New("invalid BMC URL")

// Endpoint is a parsed BMC URL: where a host's BMC is and how to talk to it. It never
// holds a password; that travels separately (see Target).
type Endpoint struct {
	Protocol Protocol
	// Scheme is "https" or "http" for Redfish, empty for IPMI.
	Scheme string
	// Host is an IP address or DNS name, without brackets.
	Host string
	Port int
	User string

	// IPMI: the RMCP+ cipher suite (ipmitool -C).
	CipherSuite int

	// Redfish: Insecure skips TLS certificate verification (?insecure=1); Auth is
	// AuthSession or AuthBasic; System picks, by its Name, one ComputerSystem when the
	// BMC has several.
	Insecure bool
	Auth     string
	System   string
}

const urlForms = "ipmi://USER@HOST[:PORT][?cipher=N], redfish://USER@HOST[:PORT][?insecure=1&auth=session|basic&system=NAME] or redfish+http://USER@HOST[:PORT]"

var systemNameRe = regexp.MustCompile(`^[^\x00-\x1f\x7f]{1,128}$`)

// ParseURL parses a host's BMC URL:
//
//	ipmi://USER@HOST[:PORT][?cipher=N]          IPMI v2 lanplus via ipmitool; port 623, suite 3
//	redfish://USER@HOST[:PORT][?OPTIONS]        Redfish over HTTPS (port 443), certificate verified
//	redfish+https://...                         the same
//	redfish+http://USER@HOST[:PORT][?OPTIONS]   Redfish over plain HTTP (port 80), for labs
//
// Redfish OPTIONS: insecure=1 (https only: skip certificate verification), auth=session
// (default) or basic, system=NAME (needed when the BMC manages several systems; bmclib
// picks the ComputerSystem whose Name property equals NAME).
// Passwords never go in the URL: the URL is shown by the API and written to logs.
func ParseURL(s string) (Endpoint, error) {
	fail := func(format string, args ...any) (Endpoint, error) {
		return Endpoint{}, fmt.Errorf("%w %q: %s", ErrInvalidURL, redactURL(s), fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(s) == "" {
		return fail("it is empty: write it as %s", urlForms)
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return fail("it contains whitespace or a control character: write it as %s", urlForms)
		}
	}
	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		return fail("no protocol: write it as %s", urlForms)
	}
	var e Endpoint
	defPort := 0
	switch strings.ToLower(scheme) {
	case "ipmi":
		e.Protocol, defPort, e.CipherSuite = ProtocolIPMI, DefaultIPMIPort, DefaultCipherSuite
	case "redfish", "redfish+https":
		e.Protocol, e.Scheme, defPort, e.Auth = ProtocolRedfish, "https", 443, AuthSession
	case "redfish+http":
		e.Protocol, e.Scheme, defPort, e.Auth = ProtocolRedfish, "http", 80, AuthSession
	default:
		return fail("unknown BMC protocol %q: use ipmi://, redfish:// (HTTPS) or redfish+http://", scheme)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fail("%v: write it as %s", err, urlForms)
	}
	if u.Opaque != "" || u.Fragment != "" || u.RawFragment != "" || (u.Path != "" && u.Path != "/") {
		return fail("unexpected path or fragment: a BMC URL is only USER@HOST[:PORT] and options, e.g. %s://admin@10.0.0.5", scheme)
	}
	if u.User == nil || u.User.Username() == "" {
		return fail("no user: put the BMC user before '@', e.g. %s://admin@%s", scheme, u.Host)
	}
	if _, set := u.User.Password(); set {
		return fail("the URL carries a password: remove it and give the password separately (put it in bmc.password in the API and host files, --bmc-password-file on the command line), which is stored encrypted and never shown")
	}
	e.User = u.User.Username()
	for _, r := range e.User {
		if r < ' ' || r == 0x7f {
			return fail("the user contains a control character")
		}
	}
	host := u.Hostname()
	if host == "" {
		return fail("no host: write it as %s", urlForms)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return fail("IPv6 zones are not supported: use a global or unique-local address")
		}
		host = a.String()
	} else if !validDNSName(host) {
		return fail("host %q is neither an IP address nor a DNS name", host)
	}
	e.Host = host
	e.Port = defPort
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fail("port %q is not 1-65535", p)
		}
		e.Port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return fail("empty port after ':'")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return fail("options: %v", err)
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vs := q[k]
		if len(vs) != 1 {
			return fail("option %s is given %d times: give it once", k, len(vs))
		}
		v := vs[0]
		switch {
		case e.Protocol == ProtocolIPMI && k == "cipher":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > MaxCipherSuite {
				return fail("cipher=%s: give an RMCP+ cipher suite 0-%d (3 is the usual one, 17 for SHA-256 BMCs)", v, MaxCipherSuite)
			}
			e.CipherSuite = n
		case e.Protocol == ProtocolRedfish && k == "insecure":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fail("insecure=%s: use insecure=1 or insecure=0", v)
			}
			if b && e.Scheme != "https" {
				return fail("insecure=1 skips TLS certificate checks, but %s:// uses no TLS: drop it", scheme)
			}
			e.Insecure = b
		case e.Protocol == ProtocolRedfish && k == "auth":
			switch v {
			case AuthSession, AuthBasic:
				e.Auth = v
			default:
				return fail("auth=%s: use auth=session (Redfish sessions, the default) or auth=basic", v)
			}
		case e.Protocol == ProtocolRedfish && k == "system":
			if !systemNameRe.MatchString(v) {
				return fail("system=%q is not a Redfish system name: give the Name of one ComputerSystem, 1-128 printable characters, URL-encoded", v)
			}
			e.System = v
		default:
			if e.Protocol == ProtocolIPMI {
				return fail("unknown option %q: ipmi:// accepts cipher=N", k)
			}
			return fail("unknown option %q: redfish URLs accept insecure=1, auth=session|basic and system=NAME", k)
		}
	}
	return e, nil
}

// MustParseURL is ParseURL for constants in tests and examples; it panics on error.
func MustParseURL(s string) Endpoint {
	e, err := ParseURL(s)
	if err != nil {
		panic(err)
	}
	return e
}

// Address is HOST:PORT, with IPv6 hosts in brackets.
func (e Endpoint) Address() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// String is the canonical URL: defaults spelled out for the port, non-default options
// in a fixed order. It carries no secret, so it is safe to log and return.
func (e Endpoint) String() string {
	var b strings.Builder
	switch {
	case e.Protocol == ProtocolIPMI:
		b.WriteString("ipmi://")
	case e.Scheme == "http":
		b.WriteString("redfish+http://")
	default:
		b.WriteString("redfish://")
	}
	b.WriteString((&url.URL{User: url.User(e.User)}).User.String())
	b.WriteByte('@')
	b.WriteString(e.Address())
	var opts []string
	switch e.Protocol {
	case ProtocolIPMI:
		if e.CipherSuite != DefaultCipherSuite {
			opts = append(opts, "cipher="+strconv.Itoa(e.CipherSuite))
		}
	case ProtocolRedfish:
		if e.Auth == AuthBasic {
			opts = append(opts, "auth=basic")
		}
		if e.Insecure {
			opts = append(opts, "insecure=1")
		}
		if e.System != "" {
			opts = append(opts, "system="+url.QueryEscape(e.System))
		}
	}
	if len(opts) > 0 {
		b.WriteByte('?')
		b.WriteString(strings.Join(opts, "&"))
	}
	return b.String()
}

// LogValue logs the canonical URL.
func (e Endpoint) LogValue() slog.Value { return slog.StringValue(e.String()) }

// redactURL keeps a malformed URL's shape for an error message but drops anything
// between "//" and the last "@", where a password could hide.
func redactURL(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			user := s[j+3 : i]
			if k := strings.IndexByte(user, ':'); k >= 0 {
				return s[:j+3] + user[:k] + ":REDACTED" + s[i:]
			}
		}
	}
	return s
}

var dnsLabel = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$`)

func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !dnsLabel.MatchString(l) {
			return false
		}
	}
	return true
}

// Password is a BMC password. Its String, GoString, JSON and slog forms are
// "REDACTED", so printing a Target or logging it by mistake leaks nothing.
type Password string

func (Password) String() string               { return "REDACTED" }
func (Password) GoString() string             { return `"REDACTED"` }
func (Password) LogValue() slog.Value         { return slog.StringValue("REDACTED") }
func (Password) MarshalJSON() ([]byte, error) { return []byte(`"REDACTED"`), nil }
func (Password) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }

// Reveal returns the password itself, for the one place that sends it to the BMC.
func (p Password) Reveal() string { return string(p) }

// Target is one BMC to act on: where it is and the password for its user.
type Target struct {
	Endpoint Endpoint
	Password Password
}

func (t Target) String() string       { return t.Endpoint.String() }
func (t Target) GoString() string     { return "bmc.Target{" + t.Endpoint.String() + "}" }
func (t Target) LogValue() slog.Value { return slog.StringValue(t.Endpoint.String()) }
