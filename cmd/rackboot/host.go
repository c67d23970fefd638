package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/bmc"
	"github.com/rackboot/rackboot/inventory"
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

func newHostCmd(env *cliEnv) *cobra.Command {
	return newHostCmdWith(env, defaultTokenFiles())
}

func newHostCmdWith(env *cliEnv, tokenFiles []string) *cobra.Command {
	h := &hostCLI{env: env, tokenFiles: tokenFiles}
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Manage the hardware inventory through the admin API",
		Long: `host talks to the admin API of a running 'rackboot serve'.

` + connectionHelp,
	}
	h.registerConnection(cmd)
	cmd.AddCommand(h.addCmd(), h.listCmd(), h.showCmd(), h.rmCmd(), h.labelCmd(), h.bootCmd(), h.eventsCmd(), h.importCmd(), h.leasesCmd(),
		h.bmcCmd(), h.powerCmd(), h.bootdevCmd())
	cmd.AddCommand(h.provisionCmds()...) // host_provision.go
	cmd.AddCommand(h.acceptCmd())        // host_accept.go
	return cmd
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

func checkOutput(o string, allowed ...string) error {
	for _, a := range allowed {
		if o == a {
			return nil
		}
	}
	return fmt.Errorf("-o %s: unknown output format: use %s", o, strings.Join(allowed, " or "))
}

func (h *hostCLI) addCmd() *cobra.Command {
	var (
		spec            admin.HostSpec
		labels, initrds []string
		kernel, cmdline string
		bmcFlags        bmcFlags
	)
	cmd := &cobra.Command{
		Use:   "add --mac MAC [--mac MAC]... [--id ID] [--ip IP] [--hostname NAME] [--label k=v]... [--boot-kernel URL [--boot-initrd URL]... [--boot-cmdline S]] [--bmc URL --bmc-password-file FILE]",
		Short: "Enrol a host",
		Long: `add enrols one host. Its ID defaults to the short hostname, else "mac-" and the first
MAC's hex digits. --ip reserves an address inside the server's DHCP subnets.

A boot profile (--boot-kernel etc.) makes the host's iPXE script boot that kernel whatever
its state. Kernel and initrd are http(s)/tftp URLs or paths under the server's assets
directory (e.g. debian/vmlinuz).

--bmc gives the host's BMC (` + bmcURLHelp + `); its password is read from
--bmc-password-file ("-" for standard input), never from the command line, and is stored
encrypted and never shown.`,
		Args: cobra.NoArgs,
		RunE: h.run(func(ctx context.Context, c *admin.Client, _ []string) error {
			b, err := bmcFlags.spec(h.stdin, false)
			if err != nil {
				return err
			}
			spec.BMC = b
			for _, l := range labels {
				k, v, err := inventory.ParseLabel(l)
				if err != nil {
					return fmt.Errorf("--label: %w", err)
				}
				if _, dup := spec.Labels[k]; dup {
					return fmt.Errorf("--label: %s is given twice", k)
				}
				if spec.Labels == nil {
					spec.Labels = map[string]string{}
				}
				spec.Labels[k] = v
			}
			if kernel != "" || len(initrds) > 0 || cmdline != "" {
				if kernel == "" {
					return errors.New("--boot-initrd and --boot-cmdline need --boot-kernel")
				}
				spec.Boot = &inventory.BootProfile{Kernel: kernel, Initrds: initrds, Cmdline: cmdline}
			}
			// The same checks the server makes, so a typo fails before any request.
			if _, err := spec.Host(); err != nil {
				return err
			}
			host, err := c.CreateHost(ctx, spec)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(h.env.stdout, "created host %s\n", host.ID)
			return err
		}),
	}
	f := cmd.Flags()
	f.StringArrayVar(&spec.MACs, "mac", nil, "MAC address of one of the host's NICs (repeatable; the first is the PXE one)")
	f.StringVar(&spec.ID, "id", "", "host ID (default: short hostname, else mac-HEX)")
	f.StringVar(&spec.IP, "ip", "", "IPv4 address to reserve for the host")
	f.StringVar(&spec.Hostname, "hostname", "", "hostname handed out by DHCP")
	f.StringArrayVar(&labels, "label", nil, "label k=v (repeatable)")
	f.StringVar(&kernel, "boot-kernel", "", "kernel URL or assets path to boot")
	f.StringArrayVar(&initrds, "boot-initrd", nil, "initrd URL or assets path (repeatable, in order)")
	f.StringVar(&cmdline, "boot-cmdline", "", "kernel command line")
	bmcFlags.register(cmd)
	return cmd
}

func (h *hostCLI) listCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list [-o table|json]",
		Short: "List hosts",
		Args:  cobra.NoArgs,
		RunE: h.run(func(ctx context.Context, c *admin.Client, _ []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			hosts, err := c.ListHosts(ctx)
			if err != nil {
				return err
			}
			if output == "json" {
				if hosts == nil {
					hosts = []admin.Host{}
				}
				return writeIndentedJSON(h.env.stdout, hosts)
			}
			if len(hosts) == 0 {
				fmt.Fprintln(h.env.stderr, "no hosts enrolled: add one with 'rackboot host add --mac MAC' or 'rackboot host import FILE'")
			}
			tw := tabwriter.NewWriter(h.env.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tMACS\tIP\tHOSTNAME\tLABELS")
			for _, host := range hosts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", host.ID, host.State, strings.Join(host.MACs, ","),
					dash(host.IP), dash(host.Hostname), dash(formatLabels(host.Labels)))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func (h *hostCLI) showCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show ID [-o yaml|json]",
		Short: "Show one host",
		Args:  cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			host, err := c.GetHost(ctx, args[0])
			if err != nil {
				return err
			}
			return writeDocument(h.env.stdout, output, host)
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	return cmd
}

// writeDocument prints v as indented JSON when output is "json", else as YAML.
func writeDocument(w io.Writer, output string, v any) error {
	if output == "json" {
		return writeIndentedJSON(w, v)
	}
	buf, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

func (h *hostCLI) rmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID",
		Short: "Remove a host with its events and provisioning data (its DHCP leases run out)",
		Args:  cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if err := c.DeleteHost(ctx, args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(h.env.stdout, "deleted host %s\n", args[0])
			return err
		}),
	}
}

func (h *hostCLI) labelCmd() *cobra.Command {
	var remove []string
	cmd := &cobra.Command{
		Use:   "label ID [k=v]... [--remove k]...",
		Short: "Set or remove a host's labels",
		Args:  cobra.MinimumNArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			req := admin.LabelsRequest{Remove: remove}
			for _, l := range args[1:] {
				k, v, err := inventory.ParseLabel(l)
				if err != nil {
					return err
				}
				if req.Set == nil {
					req.Set = map[string]string{}
				}
				req.Set[k] = v
			}
			if err := req.Validate(); err != nil {
				return fmt.Errorf("%w (usage: rackboot host label ID k=v... [--remove k])", err)
			}
			host, err := c.UpdateLabels(ctx, args[0], req)
			if err != nil {
				return err
			}
			if len(host.Labels) == 0 {
				_, err = fmt.Fprintf(h.env.stdout, "host %s has no labels\n", host.ID)
				return err
			}
			_, err = fmt.Fprintf(h.env.stdout, "host %s labels: %s\n", host.ID, formatLabels(host.Labels))
			return err
		}),
	}
	cmd.Flags().StringArrayVar(&remove, "remove", nil, "label key to remove (repeatable)")
	return cmd
}

func (h *hostCLI) bootCmd() *cobra.Command {
	var (
		p     inventory.BootProfile
		clear bool
	)
	cmd := &cobra.Command{
		Use:   "boot ID --kernel URL [--initrd URL]... [--cmdline S] | --clear",
		Short: "Set or clear the kernel a host boots",
		Long: `boot gives a host an explicit boot profile, which its iPXE script boots whatever
the host's state, or removes it with --clear. Kernel and initrds are http(s)/tftp URLs or
paths under the server's assets directory (e.g. debian/vmlinuz).`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			id := args[0]
			if clear {
				if p.Kernel != "" || len(p.Initrds) > 0 || p.Cmdline != "" {
					return errors.New("--clear removes the boot profile: give it alone, without --kernel, --initrd or --cmdline")
				}
				if _, err := c.ClearBoot(ctx, id); err != nil {
					return err
				}
				_, err := fmt.Fprintf(h.env.stdout, "host %s: boot profile cleared\n", id)
				return err
			}
			if p.Kernel == "" {
				return errors.New("give --kernel URL (with --initrd and --cmdline as needed), or --clear")
			}
			if err := admin.ValidateBoot(&p); err != nil {
				return err
			}
			host, err := c.SetBoot(ctx, id, p)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(h.env.stdout, "host %s boots %s\n", host.ID, host.Boot.Kernel)
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&p.Kernel, "kernel", "", "kernel URL or assets path")
	f.StringArrayVar(&p.Initrds, "initrd", nil, "initrd URL or assets path (repeatable, in order)")
	f.StringVar(&p.Cmdline, "cmdline", "", "kernel command line")
	f.BoolVar(&clear, "clear", false, "remove the boot profile")
	return cmd
}

func (h *hostCLI) eventsCmd() *cobra.Command {
	var (
		output   string
		follow   bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "events ID [-o table|json] [--follow]",
		Short: "Show a host's event timeline",
		Long: `events prints the host's timeline, oldest first. --follow keeps polling for new
events until interrupted; with -o json it then prints one JSON object per line.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			if interval <= 0 {
				return fmt.Errorf("--interval %s: give a positive duration, e.g. 1s", interval)
			}
			evs, err := c.Events(ctx, args[0], 0)
			if err != nil {
				return err
			}
			if !follow {
				if output == "json" {
					if evs == nil {
						evs = []admin.Event{}
					}
					return writeIndentedJSON(h.env.stdout, evs)
				}
				return writeEvents(h.env.stdout, evs, true)
			}
			return h.follow(ctx, c, args[0], evs, output, interval)
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	f.DurationVar(&interval, "interval", time.Second, "how often --follow polls")
	return cmd
}

// follow prints evs, then polls for newer events until ctx ends. The server going away
// for a while (a restart) is reported once and waited out; a host that disappears ends it.
func (h *hostCLI) follow(ctx context.Context, c *admin.Client, id string, evs []admin.Event, output string, interval time.Duration) error {
	var last uint64
	header := true
	emit := func(evs []admin.Event) error {
		if len(evs) == 0 {
			return nil
		}
		last = evs[len(evs)-1].Seq
		if output == "json" {
			enc := json.NewEncoder(h.env.stdout)
			for _, e := range evs {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		}
		err := writeEvents(h.env.stdout, evs, header)
		header = false
		return err
	}
	if output == "table" {
		// The header goes out even before the first event, so a quiet host shows it is followed.
		if err := writeEvents(h.env.stdout, nil, true); err != nil {
			return err
		}
		header = false
	}
	if err := emit(evs); err != nil {
		return err
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		evs, err := c.Events(ctx, id, last)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ae *admin.APIError
			if errors.As(err, &ae) {
				return err
			}
			if !warned {
				fmt.Fprintf(h.env.stderr, "rackboot: %v; retrying every %s\n", h.explain(err), interval)
				warned = true
			}
			continue
		}
		if warned {
			fmt.Fprintln(h.env.stderr, "rackboot: reconnected")
			warned = false
		}
		if err := emit(evs); err != nil {
			return err
		}
	}
}

// writeEvents prints events in fixed-width columns, so batches printed by --follow line up.
func writeEvents(w io.Writer, evs []admin.Event, header bool) error {
	var b strings.Builder
	if header {
		fmt.Fprintf(&b, "%-6s %-20s %-16s %s\n", "SEQ", "TIME", "TYPE", "MESSAGE")
	}
	for _, e := range evs {
		line := fmt.Sprintf("%-6d %-20s %-16s %s", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Type, e.Message)
		if f := formatFields(e.Fields); f != "" {
			line += "  " + f
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (h *hostCLI) importCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Enrol every host in a YAML or CSV file, or none of them",
		Long: `import enrols all hosts in FILE in one all-or-nothing request: if any host is invalid
or collides with the inventory (ID, MAC, reserved IP), nothing is written. FILE "-" is
standard input. The format follows the extension (.csv; .yaml, .yml, .json), else the content.

YAML: a list of hosts, or {hosts: [...]}, each with the fields of 'host show -o yaml'
that an operator sets: id, macs, hostname, ip, labels, arch, firmware, bmc {url,
password}, boot {kernel, initrds, cmdline}. Quote bare-hex MACs.

  hosts:
    - id: web1
      macs: ["52:54:00:00:00:01"]
      ip: 192.168.50.11
      labels: {role: web}

CSV: a header row, then one host per row. Columns (any order; mac required): mac (several
separated by ';'), id, ip, hostname, labels ("k=v;k=v"), arch, firmware, bmc_url,
bmc_password, boot_kernel, boot_initrds (';'-separated), boot_cmdline. '#' starts a comment.

  mac,ip,hostname,labels
  52:54:00:00:00:01,192.168.50.11,web1,role=web;rack=r1

Errors name the file's line.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			name := args[0]
			var (
				data []byte
				err  error
			)
			if name == "-" {
				data, err = io.ReadAll(io.LimitReader(h.stdin, admin.MaxHostFileBytes+1))
				name = "stdin"
			} else {
				data, err = os.ReadFile(name)
			}
			if err != nil {
				return err
			}
			specs, lines, err := admin.ParseHostFile(name, data)
			if err != nil {
				return err
			}
			hosts, err := c.ImportHosts(ctx, specs)
			if err != nil {
				return fmt.Errorf("%s: %w%s", name, err, entryLines(err, lines))
			}
			ids := make([]string, len(hosts))
			for i, host := range hosts {
				ids[i] = host.ID
			}
			_, err = fmt.Fprintf(h.env.stdout, "imported %d hosts: %s\n", len(hosts), strings.Join(ids, ", "))
			return err
		}),
	}
}

// entryLines says where the entries the server names ("hosts[3]") are in the file.
func entryLines(err error, lines []int) string {
	var notes []string
	seen := map[string]bool{}
	for _, m := range entryRe().FindAllStringSubmatch(err.Error(), -1) {
		i, convErr := strconv.Atoi(m[1])
		if convErr != nil || i >= len(lines) || seen[m[0]] {
			continue
		}
		seen[m[0]] = true
		notes = append(notes, fmt.Sprintf("%s is line %d", m[0], lines[i]))
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, ", ") + ")"
}

func entryRe() *regexp.Regexp { return regexp.MustCompile(`hosts\[(\d+)\]`) }

func (h *hostCLI) leasesCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "leases [-o table|json]",
		Short: "List DHCP leases",
		Args:  cobra.NoArgs,
		RunE: h.run(func(ctx context.Context, c *admin.Client, _ []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			leases, err := c.Leases(ctx)
			if err != nil {
				return err
			}
			if output == "json" {
				if leases == nil {
					leases = []admin.Lease{}
				}
				return writeIndentedJSON(h.env.stdout, leases)
			}
			tw := tabwriter.NewWriter(h.env.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "MAC\tIP\tSTATE\tEXPIRES\tHOSTNAME")
			for _, l := range leases {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.MAC, l.IP, l.State, l.Expires.UTC().Format(time.RFC3339), dash(l.Hostname))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func writeIndentedJSON(w io.Writer, v any) error {
	buf, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(buf, '\n'))
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatLabels(m map[string]string) string {
	return joinSorted(m, ",")
}

func formatFields(m map[string]string) string {
	return joinSorted(m, " ")
}

func joinSorted(m map[string]string, sep string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, sep)
}

const bmcURLHelp = "ipmi://USER@HOST[:PORT][?cipher=N], redfish://USER@HOST[:PORT][?insecure=1&auth=basic&system=NAME] or redfish+http://USER@HOST:PORT"

// maxPasswordFile bounds --bmc-password-file: BMC passwords are at most a few dozen bytes.
const maxPasswordFile = 4096

// bmcFlags are the BMC options shared by `host add` and `host bmc`.
type bmcFlags struct {
	url, passwordFile, password string
}

func (b *bmcFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&b.url, "bmc", "", "BMC URL: "+bmcURLHelp)
	f.StringVar(&b.passwordFile, "bmc-password-file", "", `file holding the BMC password ("-": standard input)`)
	// Only to say why it does not exist: a password on the command line is visible in
	// ps and kept in shell history.
	f.StringVar(&b.password, "bmc-password", "", "")
	_ = f.MarkHidden("bmc-password")
}

// spec validates the flags and returns the BMC to send; nil when none was given (and
// none is required).
func (b *bmcFlags) spec(stdin io.Reader, required bool) (*inventory.BMC, error) {
	if b.password != "" {
		return nil, errors.New("--bmc-password: a password on the command line shows in ps and shell history: put it in a file (mode 0600) and give --bmc-password-file FILE, or --bmc-password-file - to read standard input")
	}
	if b.url == "" {
		if b.passwordFile != "" {
			return nil, errors.New("--bmc-password-file needs --bmc URL")
		}
		if required {
			return nil, errors.New("give --bmc URL (" + bmcURLHelp + ")")
		}
		return nil, nil
	}
	if _, err := bmc.ParseURL(b.url); err != nil {
		return nil, fmt.Errorf("--bmc: %w", err)
	}
	out := &inventory.BMC{URL: b.url}
	if b.passwordFile != "" {
		pw, err := readPasswordFile(b.passwordFile, stdin)
		if err != nil {
			return nil, err
		}
		out.Password = pw
	}
	return out, nil
}

// readPasswordFile reads a password: the whole file, less one trailing newline, so
// `echo pw > file` works and a password may still contain spaces.
func readPasswordFile(name string, stdin io.Reader) (string, error) {
	var (
		data []byte
		err  error
	)
	if name == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, maxPasswordFile+1))
	} else {
		var f *os.File
		if f, err = os.Open(name); err == nil {
			data, err = io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
			f.Close()
		}
	}
	if err != nil {
		return "", fmt.Errorf("--bmc-password-file: %w", err)
	}
	if len(data) > maxPasswordFile {
		return "", fmt.Errorf("--bmc-password-file %s: more than %d bytes: give a file holding only the password", name, maxPasswordFile)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if pw == "" {
		return "", fmt.Errorf("--bmc-password-file %s is empty: put the BMC password in it", name)
	}
	if strings.ContainsAny(pw, "\n\r\x00") {
		return "", fmt.Errorf("--bmc-password-file %s holds more than one line: give a file holding only the password", name)
	}
	return pw, nil
}

// bmcClient is the API client with room for a BMC operation: the server bounds each
// one by its BMC timeout (30 s by default) plus the wait for a free worker.
func bmcClient(c *admin.Client) *admin.Client { return c.WithTimeout(3 * time.Minute) }

func (h *hostCLI) bmcCmd() *cobra.Command {
	var (
		flags bmcFlags
		clear bool
	)
	cmd := &cobra.Command{
		Use:   "bmc ID --bmc URL [--bmc-password-file FILE] | --clear",
		Short: "Set, change or remove a host's BMC",
		Long: `bmc sets the host's BMC URL (` + bmcURLHelp + `)
and, with --bmc-password-file ("-": standard input), its password. Without a password file
the stored password is kept, so a URL can be corrected alone. --clear removes the BMC and
its password. The password is stored encrypted and never shown.`,
		Args: cobra.ExactArgs(1),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			id := args[0]
			if clear {
				if flags.url != "" || flags.passwordFile != "" {
					return errors.New("--clear removes the BMC: give it alone, without --bmc or --bmc-password-file")
				}
				if _, err := c.ClearBMC(ctx, id); err != nil {
					return err
				}
				_, err := fmt.Fprintf(h.env.stdout, "host %s: BMC removed\n", id)
				return err
			}
			b, err := flags.spec(h.stdin, true)
			if err != nil {
				return err
			}
			host, err := c.SetBMC(ctx, id, admin.BMCRequest{URL: b.URL, Password: b.Password})
			if err != nil {
				return err
			}
			note := "no password stored"
			switch {
			case b.Password != "":
				note = "password set"
			case host.BMC != nil && host.BMC.PasswordSet:
				note = "password kept"
			}
			_, err = fmt.Fprintf(h.env.stdout, "host %s: BMC %s (%s)\n", host.ID, b.URL, note)
			return err
		}),
	}
	flags.register(cmd)
	cmd.Flags().BoolVar(&clear, "clear", false, "remove the BMC and its password")
	return cmd
}

func (h *hostCLI) powerCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "power ID on|off|soft|cycle|reset|status [-o text|json]",
		Short: "Power a host on, off or through a cycle, or show its power state, through its BMC",
		Long: `power acts through the host's BMC:

  on      power on (nothing happens if it is on)
  off     cut power at once
  soft    ask the OS to shut down (ACPI); returns once the BMC accepted it
  cycle   off, then on; a host that is off is powered on
  reset   hard reset
  status  show the power state

Unreachable BMCs, wrong credentials and BMCs that do not answer fail with the reason
within the server's BMC timeout.`,
		Args: cobra.ExactArgs(2),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			id, verb := args[0], args[1]
			var (
				res admin.BMCResponse
				err error
			)
			if verb == "status" {
				res, err = bmcClient(c).PowerStatus(ctx, id)
			} else {
				a, perr := bmc.ParsePowerAction(verb)
				if perr != nil {
					return fmt.Errorf("%w, or status", perr)
				}
				res, err = bmcClient(c).Power(ctx, id, a)
			}
			if err != nil {
				return err
			}
			if output == "json" {
				return writeIndentedJSON(h.env.stdout, res)
			}
			if verb == "status" {
				_, err = fmt.Fprintf(h.env.stdout, "host %s: power is %s\n", id, res.State)
			} else {
				_, err = fmt.Fprintf(h.env.stdout, "host %s: power %s done (%s)\n", id, verb, res.Duration())
			}
			return err
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (h *hostCLI) bootdevCmd() *cobra.Command {
	var (
		output             string
		persistent, legacy bool
		uefi               bool
	)
	cmd := &cobra.Command{
		Use:   "bootdev ID pxe|disk [--persistent] [--legacy|--uefi] [-o text|json]",
		Short: "Set the device a host boots from next, through its BMC",
		Long: `bootdev sets the host's next boot device: pxe (network boot from rackboot) or disk.
It applies to the next boot only unless --persistent. The boot mode is UEFI, or legacy
BIOS for hosts whose firmware is known to be BIOS; --legacy or --uefi choose it.`,
		Args: cobra.ExactArgs(2),
		RunE: h.run(func(ctx context.Context, c *admin.Client, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			dev, err := bmc.ParseBootDevice(args[1])
			if err != nil {
				return err
			}
			if legacy && uefi {
				return errors.New("--legacy and --uefi contradict each other: give one")
			}
			req := admin.BootDeviceRequest{Device: dev, Persistent: persistent}
			if legacy || uefi {
				req.UEFI = &uefi
			}
			res, err := bmcClient(c).SetBootDevice(ctx, args[0], req)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeIndentedJSON(h.env.stdout, res)
			}
			when, mode := "next boot only", "legacy BIOS"
			if res.Boot != nil && res.Boot.Persistent {
				when = "every boot"
			}
			if res.Boot != nil && res.Boot.UEFI {
				mode = "UEFI"
			}
			_, err = fmt.Fprintf(h.env.stdout, "host %s: boots from %s, %s, %s\n", args[0], dev, mode, when)
			return err
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&persistent, "persistent", false, "keep the boot device for every boot, not only the next")
	f.BoolVar(&legacy, "legacy", false, "boot in legacy BIOS mode")
	f.BoolVar(&uefi, "uefi", false, "boot in UEFI mode")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
