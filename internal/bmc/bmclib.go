package bmc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/providers/ipmitool"
	"github.com/bmc-toolbox/bmclib/v2/providers/redfish"
	"github.com/go-logr/logr"
	"github.com/stmcginnis/gofish/common"
)

// Backend performs operations on BMCs. The Service calls it from its workers with a
// context that carries the call's deadline; a Backend should return soon after that
// deadline, but the Service does not rely on it (a call that overstays is abandoned).
// The real one is bmclib's; tests use fakes.
type Backend interface {
	PowerState(ctx context.Context, t Target) (PowerState, error)
	SetPower(ctx context.Context, t Target, a PowerAction) error
	SetBootDevice(ctx context.Context, t Target, b BootOptions) error
}

// LibConfig configures the bmclib backend.
type LibConfig struct {
	// IPMITool is the ipmitool binary; empty means "ipmitool" from PATH.
	IPMITool string `yaml:"ipmitool" doc:"the ipmitool binary bmclib runs (empty: ipmitool from PATH)"`
	// RedfishCAFile is a PEM bundle of the CAs that sign Redfish BMCs' HTTPS
	// certificates; used when RedfishRootCAs is nil. Empty means the system's CAs.
	RedfishCAFile string `yaml:"redfishCAFile" doc:"PEM CA bundle for Redfish HTTPS (empty: the system's CAs)"`
	// RedfishRootCAs verify Redfish BMCs' HTTPS certificates; nil means RedfishCAFile,
	// else the system's.
	RedfishRootCAs *x509.CertPool
	// Dial opens TCP connections to Redfish BMCs and the UDP socket of the RMCP ping;
	// nil means net.Dialer. The lab dials from inside its network namespace.
	Dial DialFunc
	// PingWait bounds the RMCP presence ping sent before each IPMI call (default 1s).
	PingWait time.Duration `yaml:"pingWait" doc:"wait for the RMCP presence ping sent before each IPMI call (an absent BMC fails fast)"`
}

// Validate checks the files the settings name, so a typo is found before the first
// BMC call. Messages start with the setting's name (ipmitool, redfishCAFile).
func (c LibConfig) Validate() error {
	var errs []error
	if c.IPMITool != "" {
		if fi, err := os.Stat(c.IPMITool); err != nil || fi.IsDir() {
			errs = append(errs, fmt.Errorf("ipmitool: %s is not a file: give the path of the ipmitool binary (apt-get install ipmitool), or leave it out to use the one on PATH", c.IPMITool))
		}
	}
	if c.RedfishCAFile != "" && c.RedfishRootCAs == nil {
		if _, err := c.redfishCAs(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// redfishCAs is RedfishRootCAs, else the pool read from RedfishCAFile (nil: system).
func (c LibConfig) redfishCAs() (*x509.CertPool, error) {
	if c.RedfishRootCAs != nil || c.RedfishCAFile == "" {
		return c.RedfishRootCAs, nil
	}
	pem, err := os.ReadFile(c.RedfishCAFile)
	if err != nil {
		return nil, fmt.Errorf("redfishCAFile: %w: give a readable PEM file, or leave it out for the system's CAs", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("redfishCAFile: %s holds no PEM certificate: give the CA that signed the BMCs' HTTPS certificates", c.RedfishCAFile)
	}
	return pool, nil
}

// NewLibBackend returns the Backend that speaks IPMI (through bmclib's ipmitool
// provider) and Redfish (through bmclib's gofish provider). Each call builds a bmclib
// client restricted to the one provider its URL names, so nothing probes the others.
// bmclib's own log is discarded; the Service's backend logs it (newLibBackend).
func NewLibBackend(cfg LibConfig) Backend { return newLibBackend(cfg, nil) }

// newLibBackend is NewLibBackend with bmclib's log (the ipmitool options of each run,
// providers that did not register or were not compatible) sent to log at debug level;
// nil discards it.
func newLibBackend(cfg LibConfig, log *slog.Logger) Backend {
	if cfg.RedfishRootCAs == nil {
		// New validated the file; a backend built without New falls back to the
		// system's CAs, which still verify certificates.
		cfg.RedfishRootCAs, _ = cfg.redfishCAs()
	}
	if cfg.Dial == nil {
		cfg.Dial = defaultDial
	}
	if cfg.PingWait <= 0 {
		cfg.PingWait = time.Second
	}
	b := &libBackend{cfg: cfg, log: logr.Discard()}
	if log != nil {
		b.log = logr.FromSlogHandler(debugHandler{log.With("logger", "bmclib").Handler()})
	}
	return b
}

type libBackend struct {
	cfg LibConfig
	log logr.Logger
}

// debugHandler hands every record to h at debug level. bmclib logs at Info (and
// above) what is detail for someone debugging a BMC, such as "ipmitool provider not
// available" on each Redfish call when ipmitool is not installed; the Service
// logs each operation's outcome itself.
type debugHandler struct{ h slog.Handler }

func (d debugHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.h.Enabled(ctx, slog.LevelDebug)
}

func (d debugHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return d.h.Handle(ctx, r)
}

func (d debugHandler) WithAttrs(as []slog.Attr) slog.Handler { return debugHandler{d.h.WithAttrs(as)} }
func (d debugHandler) WithGroup(name string) slog.Handler    { return debugHandler{d.h.WithGroup(name)} }

var _ Backend = (*libBackend)(nil)

// PowerState implements Backend.
func (b *libBackend) PowerState(ctx context.Context, t Target) (PowerState, error) {
	var state PowerState
	err := b.with(ctx, t, func(c *bmclib.Client) error {
		s, err := c.GetPowerState(ctx)
		if err != nil {
			return err
		}
		state = parsePowerState(s)
		if state == PowerUnknown {
			return newError(ErrBMCFailure, nil, "the BMC at %s reported an unknown power state %q", t.Endpoint.Address(), oneLine(s, 80))
		}
		return nil
	})
	return state, err
}

// SetPower implements Backend.
func (b *libBackend) SetPower(ctx context.Context, t Target, a PowerAction) error {
	return b.with(ctx, t, func(c *bmclib.Client) error {
		verb := string(a)
		if a == ActionCycle {
			// Redfish refuses ForceRestart on a system that is off, and ipmi_sim and
			// some real BMCs leave an off chassis off on "cycle": either way the
			// operator meant "boot it", so an off host is powered on instead.
			s, err := c.GetPowerState(ctx)
			if err != nil {
				return err
			}
			if parsePowerState(s) == PowerOff {
				verb = string(ActionOn)
			}
		}
		ok, err := c.SetPowerState(ctx, verb)
		if err != nil && a == ActionSoft && t.Endpoint.Protocol == ProtocolRedfish && softAccepted(c) {
			// bmclib's Redfish soft-off returns ok=false after a GracefulShutdown the
			// BMC accepted; with no provider error recorded the request went through.
			return nil
		}
		if err == nil && !ok {
			return newError(ErrRejected, nil, "the BMC at %s did not confirm power %s", t.Endpoint.Address(), a)
		}
		return err
	})
}

// softAccepted reports whether bmclib's last call failed only for want of an ok.
func softAccepted(c *bmclib.Client) bool {
	md := c.GetMetadata()
	return md.FailedProviderDetail[redfish.ProviderName] == "" && len(md.ProvidersAttempted) == 1
}

// SetBootDevice implements Backend.
func (b *libBackend) SetBootDevice(ctx context.Context, t Target, o BootOptions) error {
	return b.with(ctx, t, func(c *bmclib.Client) error {
		ok, err := c.SetBootDevice(ctx, string(o.Device), o.Persistent, o.UEFI)
		if err == nil && !ok {
			return newError(ErrRejected, nil, "the BMC at %s did not confirm boot device %s", t.Endpoint.Address(), o)
		}
		return err
	})
}

// with builds a one-provider client for t, runs fn and classifies what went wrong.
func (b *libBackend) with(ctx context.Context, t Target, fn func(*bmclib.Client) error) error {
	switch t.Endpoint.Protocol {
	case ProtocolIPMI:
		return b.withIPMI(ctx, t, fn)
	case ProtocolRedfish:
		return b.withRedfish(ctx, t, fn)
	}
	return newError(ErrInvalidURL, nil, "unknown BMC protocol %q", t.Endpoint.Protocol)
}

func (b *libBackend) withIPMI(ctx context.Context, t Target, fn func(*bmclib.Client) error) error {
	ep := t.Endpoint
	// The ping first: a closed port answers "refused" in one round trip, where
	// ipmitool would spend its retries (about 20 s) before giving up.
	wait := b.cfg.PingWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)/3)
	}
	ping, pingErr := presencePing(ctx, b.cfg.Dial, ep.Address(), wait)
	if ping == pingRefused {
		return newError(ErrUnreachable, pingErr, "nothing answers on UDP %s (%v): check the BMC's address and port, and that IPMI over LAN is enabled on it", ep.Address(), shortNetErr(pingErr))
	}

	opts := []bmclib.Option{
		bmclib.WithLogger(b.log),
		bmclib.WithIpmitoolPort(strconv.Itoa(ep.Port)),
		bmclib.WithIpmitoolCipherSuite(strconv.Itoa(ep.CipherSuite)),
	}
	tool := b.cfg.IPMITool
	if tool != "" {
		opts = append(opts, bmclib.WithIpmitoolPath(tool))
	} else {
		tool = "ipmitool"
	}
	c := bmclib.NewClient(hostLiteral(ep.Host), ep.User, t.Password.Reveal(), opts...)
	c.Registry.Drivers = c.Registry.For(ipmitool.ProviderName)
	if len(c.Registry.Drivers) == 0 {
		return newError(ErrSetup, nil, "ipmitool is not available (looked for %s): install it (apt-get install ipmitool) or set bmc.ipmitool in the serve configuration", tool)
	}
	// No c.Open: for ipmitool it only runs "chassis power status", which every
	// operation below does anyway; each ipmitool run is its own RMCP+ session.
	if err := fn(c); err != nil {
		return classifyIPMI(ctx, err, ping, t)
	}
	return nil
}

func classifyIPMI(ctx context.Context, err error, ping pingResult, t Target) error {
	var c *classified
	if errors.As(err, &c) {
		return err
	}
	addr := t.Endpoint.Address()
	msg := oneLine(err.Error(), 400)
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return newError(context.Canceled, err, "cancelled before the BMC at %s answered", addr)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		if ping == pingAnswered {
			return newError(ErrTimeout, err, "the BMC at %s answers pings but did not finish the IPMI command within the call's timeout", addr)
		}
		return newError(ErrTimeout, err, "no answer from the BMC at %s within the call's timeout, not even to an RMCP ping: check that it is powered, on the network and at that address", addr)
	case errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.EACCES):
		return newError(ErrSetup, err, "cannot run ipmitool: %s: install it (apt-get install ipmitool)", msg)
	case strings.Contains(msg, "Unable to establish IPMI v2 / RMCP+ session"):
		if ping == pingAnswered {
			return newError(ErrAuth, err, "the BMC at %s refused an IPMI session for user %q: wrong user or password, or cipher suite %d not enabled: set the password again with 'rackboot host bmc ID --bmc URL --bmc-password-file FILE'", addr, t.Endpoint.User, t.Endpoint.CipherSuite)
		}
		return newError(ErrUnreachable, err, "no IPMI session with %s: the BMC does not answer (not even to an RMCP ping): check its address and that IPMI over LAN is enabled", addr)
	case strings.Contains(strings.ToLower(msg), "insufficient privilege"):
		return newError(ErrAuth, err, "the BMC at %s: user %q lacks the privilege for this command: give it the operator or administrator role", addr, t.Endpoint.User)
	case strings.Contains(msg, "failed") || strings.Contains(msg, "Error") || strings.Contains(msg, "Invalid"):
		return newError(ErrRejected, err, "the BMC at %s refused the command: %s", addr, ipmiReason(msg))
	}
	return newError(ErrBMCFailure, err, "the BMC at %s gave an unexpected reply: %s", addr, ipmiReason(msg))
}

// ipmiReason strips bmclib's wrapping ("<nil>: ", "provider: ipmitool: ") from
// ipmitool's own words.
func ipmiReason(msg string) string {
	for _, p := range []string{"1 error occurred: * ", "provider: ipmitool: ", "provider: ipmitool, ", "<nil>: ", "exit status 1: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return strings.TrimSpace(msg)
}

func (b *libBackend) withRedfish(ctx context.Context, t Target, fn func(*bmclib.Client) error) error {
	ep := t.Endpoint
	deadline, hasDeadline := ctx.Deadline()
	dial := b.cfg.Dial
	tr := &http.Transport{
		// gofish issues its requests with a background context, so the call's deadline
		// is enforced on the connections themselves.
		DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if hasDeadline {
				_ = conn.SetDeadline(deadline)
			}
			return conn, nil
		},
		TLSClientConfig: &tls.Config{
			RootCAs: b.cfg.RedfishRootCAs,
			// Only when the operator asked for it in the host's BMC URL (?insecure=1).
			InsecureSkipVerify: ep.Insecure, //nolint:gosec
		},
		TLSHandshakeTimeout:    10 * time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		// bmclib clones the transport for every client it builds; kept-alive
		// connections of a clone would outlive the call, so there are none.
		DisableKeepAlives: true,
	}
	hc := &http.Client{Transport: tr}
	c := bmclib.NewClient(ep.Scheme+"://"+hostLiteral(ep.Host), ep.User, t.Password.Reveal(),
		bmclib.WithLogger(b.log),
		bmclib.WithHTTPClient(hc),
		bmclib.WithRedfishPort(strconv.Itoa(ep.Port)),
		bmclib.WithRedfishUseBasicAuth(ep.Auth == AuthBasic),
		bmclib.WithRedfishSystemName(ep.System),
	)
	c.Registry.Drivers = c.Registry.For(redfish.ProviderName)
	if len(c.Registry.Drivers) == 0 {
		return newError(ErrSetup, nil, "bmclib's Redfish provider did not register")
	}
	if err := c.Open(ctx); err != nil {
		return classifyRedfish(ctx, err, t)
	}
	defer func() {
		// Log the session out; bounded by the connection deadline like everything else.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = c.Close(cctx)
	}()
	if err := fn(c); err != nil {
		return classifyRedfish(ctx, err, t)
	}
	return nil
}

func classifyRedfish(ctx context.Context, err error, t Target) error {
	var c *classified
	if errors.As(err, &c) {
		return err
	}
	addr := t.Endpoint.Address()
	msg := oneLine(err.Error(), 400)
	var (
		ce      *common.Error
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		hostErr x509.HostnameError
		verify  *tls.CertificateVerificationError
		rec     tls.RecordHeaderError
		netErr  net.Error
	)
	status := 0
	if errors.As(err, &ce) {
		status = ce.HTTPReturnedStatusCode
	}
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return newError(context.Canceled, err, "cancelled before the BMC at %s answered", addr)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(ctx.Err(), context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return newError(ErrTimeout, err, "the BMC at %s did not answer within the call's timeout", addr)
	case status == http.StatusUnauthorized || status == http.StatusForbidden ||
		(status == 0 && (strings.Contains(msg, "401") || strings.Contains(msg, "not authenticated"))):
		return newError(ErrAuth, err, "the BMC at %s refused user %q (%s): wrong user or password: set the password again with 'rackboot host bmc ID --bmc URL --bmc-password-file FILE'", addr, t.Endpoint.User, httpStatus(status, 401))
	case errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &hostErr) || errors.As(err, &verify):
		return newError(ErrTLS, err, "the BMC at %s presented a certificate this server does not trust (%s): give its CA with bmc.redfishCAFile in the serve configuration, or add ?insecure=1 to the BMC URL to skip verification", addr, tlsReason(msg))
	case errors.As(err, &rec) || strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return newError(ErrTLS, err, "the BMC at %s does not speak HTTPS: if it serves plain HTTP use redfish+http://", addr)
	case isRefused(err):
		return newError(ErrUnreachable, err, "nothing accepts connections at %s (%s): check the BMC's address and port", addr, shortNetErr(err))
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return newError(ErrUnreachable, err, "the BMC at %s closed the connection without an answer", addr)
	case status >= 500:
		return newError(ErrBMCFailure, err, "the BMC at %s failed (HTTP %d): %s", addr, status, redfishReason(ce))
	case status == http.StatusNotFound:
		return newError(ErrRejected, err, "the BMC at %s has no such resource (HTTP 404: %s): is it a Redfish service, and the system name right?", addr, redfishReason(ce))
	case status >= 400:
		return newError(ErrRejected, err, "the BMC at %s refused the request (HTTP %d): %s", addr, status, redfishReason(ce))
	case strings.Contains(msg, "is not supported by this service"):
		return newError(ErrRejected, err, "the BMC at %s: %s", addr, msg)
	case strings.Contains(msg, "no matching redfish system"):
		return newError(ErrRejected, err, "the BMC at %s has no system named %q: set ?system=NAME in the BMC URL to the Name of one of its systems", addr, t.Endpoint.System)
	case strings.Contains(msg, "system") && t.Endpoint.System == "":
		return newError(ErrRejected, err, "the BMC at %s: %s: if it manages several systems, set ?system=NAME in the BMC URL", addr, msg)
	}
	return newError(ErrBMCFailure, err, "the BMC at %s: %s", addr, msg)
}

func httpStatus(code, def int) string {
	if code == 0 {
		code = def
	}
	return fmt.Sprintf("HTTP %d", code)
}

// redfishReason is the Redfish error's own message, else its raw body, bounded.
func redfishReason(ce *common.Error) string {
	if ce == nil {
		return "no details"
	}
	if len(ce.ExtendedInfos) > 0 && ce.ExtendedInfos[0].Message != "" {
		return oneLine(ce.ExtendedInfos[0].Message, 200)
	}
	if ce.Message != "" {
		return oneLine(ce.Message, 200)
	}
	return oneLine(ce.Error(), 200)
}

func tlsReason(msg string) string {
	if i := strings.Index(msg, "tls: "); i >= 0 {
		return oneLine(msg[i:], 160)
	}
	if i := strings.Index(msg, "x509: "); i >= 0 {
		return oneLine(msg[i:], 160)
	}
	return oneLine(msg, 160)
}

// shortNetErr is the syscall's words ("connection refused") without the address
// dump of net.OpError.
func shortNetErr(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if err == nil {
		return "no reply"
	}
	return oneLine(err.Error(), 120)
}

// hostLiteral brackets IPv6 addresses, as URLs and bmclib's host:port joining expect.
func hostLiteral(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}
