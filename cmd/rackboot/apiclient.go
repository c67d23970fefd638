package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
)

// defaultServer is the admin API's own loopback listener (serve's api.listen default).
const defaultServer = "https://127.0.0.1:8443"

// defaultTokenFiles are tried, in order, when no token is given: serve's default data
// directory, then the current directory. The admin API's certificate (admin.crt) is
// looked for beside each of them when no fingerprint or CA file is given.
func defaultTokenFiles() []string {
	return []string{"/var/lib/rackboot/api-token", "api-token"}
}

// hostCLI holds what every `rackboot host` subcommand shares.
type hostCLI struct {
	env        *cliEnv
	server     string
	tokenFile  string
	tokenFiles []string // defaults, replaceable in tests
	// Trust in the server: a pinned fingerprint or a CA file; insecure allows plain
	// HTTP to a host that is not loopback.
	fingerprint, caFile string
	insecure            bool
	// tokenSource says where the token came from, for the hint on a 401.
	tokenSource string
	// trustSource says how the server's certificate is checked, for TLS errors.
	trustSource string
	baseURL     string
	stdin       io.Reader
}

// connectionHelp is the part of the host and image commands' help that says how they
// find the server.
const connectionHelp = `The server is --server URL, else $RACKBOOT_SERVER, else ` + defaultServer + `:
https://HOST:PORT (the admin API's TLS listener) or unix:/PATH (DATA_DIR/admin.sock).
Plain http:// is refused to a host that is not loopback unless --insecure.

The server's certificate is trusted by, in order:
  --fingerprint SHA256 or $RACKBOOT_FINGERPRINT (pin it; 'rackboot serve' logs it at start)
  --ca-file FILE or $RACKBOOT_CA_FILE (e.g. a copy of the server's DATA_DIR/admin.crt)
  admin.crt beside the token file given, /var/lib/rackboot/admin.crt, then ./admin.crt
  the system's CAs (a certificate the operator gave serve)

The API token is read from, in order:
  --token-file FILE
  $RACKBOOT_TOKEN (the token itself)
  $RACKBOOT_TOKEN_FILE (a file holding it)
  /var/lib/rackboot/api-token, then ./api-token
'rackboot serve' creates DATA_DIR/api-token (mode 0600) on first start.`

// registerConnection adds the flags that say how to reach the admin API.
func (h *hostCLI) registerConnection(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&h.server, "server", "", "admin API URL, https://HOST:PORT or unix:/PATH (env RACKBOOT_SERVER; default "+defaultServer+")")
	pf.StringVar(&h.tokenFile, "token-file", "", "file holding the API token (env RACKBOOT_TOKEN holds the token itself, RACKBOOT_TOKEN_FILE a file)")
	pf.StringVar(&h.fingerprint, "fingerprint", "", "SHA-256 fingerprint of the server's certificate to pin (env RACKBOOT_FINGERPRINT)")
	pf.StringVar(&h.caFile, "ca-file", "", "PEM certificate(s) to trust for the server, e.g. its admin.crt (env RACKBOOT_CA_FILE)")
	pf.BoolVar(&h.insecure, "insecure", false, "allow plain http:// to a host that is not loopback: the token crosses the network in clear")
}

// client resolves the server, the trust in its certificate and the token, and returns
// an API client.
func (h *hostCLI) client() (*admin.Client, error) {
	server := h.server
	if server == "" {
		server = h.env.getenv("RACKBOOT_SERVER")
	}
	if server == "" {
		server = defaultServer
	}
	h.baseURL = strings.TrimRight(server, "/")
	opts := admin.ClientOptions{Server: server, Insecure: h.insecure, Timeout: 60 * time.Second}
	token, source, err := resolveToken(h.env.getenv, h.tokenFile, h.tokenFiles)
	if err != nil {
		return nil, err
	}
	h.tokenSource = source
	opts.Token = token
	if strings.HasPrefix(server, "https:") {
		if err := h.resolveTrust(&opts); err != nil {
			return nil, err
		}
	}
	c, err := admin.NewClient(opts)
	if err != nil {
		return nil, fmt.Errorf("%w (--server or RACKBOOT_SERVER)", err)
	}
	return c, nil
}

// resolveTrust picks how the server's certificate is checked: --fingerprint,
// RACKBOOT_FINGERPRINT, --ca-file, RACKBOOT_CA_FILE, admin.crt beside the default token
// files, else the system's CAs.
func (h *hostCLI) resolveTrust(o *admin.ClientOptions) error {
	fp, fpSource := h.fingerprint, "--fingerprint"
	if fp == "" {
		fp, fpSource = strings.TrimSpace(h.env.getenv("RACKBOOT_FINGERPRINT")), "RACKBOOT_FINGERPRINT"
	}
	if fp != "" {
		if _, err := admin.ParseFingerprint(fp); err != nil {
			return fmt.Errorf("%s: %w", fpSource, err)
		}
		o.Fingerprint, h.trustSource = fp, "the fingerprint pinned by "+fpSource
		return nil
	}
	ca, caSource := h.caFile, "--ca-file"
	if ca == "" {
		ca, caSource = h.env.getenv("RACKBOOT_CA_FILE"), "RACKBOOT_CA_FILE"
	}
	if ca == "" {
		// Beside the token file given (a serve's DATA_DIR), then beside the defaults.
		given := h.tokenFile
		if given == "" {
			given = h.env.getenv("RACKBOOT_TOKEN_FILE")
		}
		candidates := h.tokenFiles
		if given != "" {
			candidates = append([]string{given}, candidates...)
		}
		for _, f := range candidates {
			c := filepath.Join(filepath.Dir(f), "admin.crt")
			if _, err := os.Stat(c); err == nil {
				ca, caSource = c, "the server's certificate file"
				break
			}
		}
	}
	if ca != "" {
		o.CAFile, h.trustSource = ca, caSource+" "+ca
		return nil
	}
	h.trustSource = "the system's CAs (no --fingerprint or --ca-file given)"
	return nil
}

// resolveToken finds the API token: --token-file, RACKBOOT_TOKEN, RACKBOOT_TOKEN_FILE,
// then the default files. It returns where it found it.
func resolveToken(getenv func(string) string, flagFile string, defaults []string) (token, source string, err error) {
	if flagFile != "" {
		tok, err := admin.ReadTokenFile(flagFile)
		if err != nil {
			return "", "", fmt.Errorf("--token-file: %w", err)
		}
		return tok, "--token-file " + flagFile, nil
	}
	if tok := strings.TrimSpace(getenv("RACKBOOT_TOKEN")); tok != "" {
		return tok, "RACKBOOT_TOKEN", nil
	}
	if f := getenv("RACKBOOT_TOKEN_FILE"); f != "" {
		tok, err := admin.ReadTokenFile(f)
		if err != nil {
			return "", "", fmt.Errorf("RACKBOOT_TOKEN_FILE: %w", err)
		}
		return tok, "RACKBOOT_TOKEN_FILE " + f, nil
	}
	var problems []string
	for _, f := range defaults {
		tok, err := admin.ReadTokenFile(f)
		if err == nil {
			return tok, f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			// Most often permission denied: say so rather than "not found".
			problems = append(problems, err.Error())
		}
	}
	msg := fmt.Sprintf("no API token: give --token-file FILE or set RACKBOOT_TOKEN (looked for %s)", strings.Join(defaults, " and "))
	if len(problems) > 0 {
		msg += "; " + strings.Join(problems, "; ")
	}
	return "", "", errors.New(msg)
}

// explain adds what to do to errors that are not the server's own words.
func (h *hostCLI) explain(err error) error {
	if err == nil {
		return nil
	}
	var ae *admin.APIError
	if errors.As(err, &ae) {
		if ae.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("%s (token from %s): give the token 'rackboot serve' uses (DATA_DIR/api-token) with --token-file or RACKBOOT_TOKEN", ae.Message, h.tokenSource)
		}
		return err // the server's message, verbatim
	}
	var ce *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	if errors.As(err, &ce) || errors.As(err, &ua) || errors.As(err, &he) || errors.Is(err, admin.ErrFingerprint) {
		return fmt.Errorf("the admin API at %s is not the server you trust (checked against %s): %w: pin its certificate with --fingerprint (or RACKBOOT_FINGERPRINT) from the 'admin API' line 'rackboot serve' logs at start, or give its admin.crt with --ca-file", h.baseURL, h.trustSource, err)
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ue) && !errors.Is(err, context.Canceled) && (errors.As(err, &ne) || errors.Is(err, io.EOF)) {
		return fmt.Errorf("cannot reach the rackboot admin API at %s: %v: is 'rackboot serve' running there? Point at it with --server or RACKBOOT_SERVER", h.baseURL, ue.Err)
	}
	return err
}

// run wraps a subcommand body with the client and error explanations.
func (h *hostCLI) run(fn func(ctx context.Context, c *admin.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		h.stdin = cmd.InOrStdin()
		c, err := h.client()
		if err != nil {
			return err
		}
		return h.explain(fn(cmd.Context(), c, args))
	}
}
