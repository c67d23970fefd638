package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/adminserver"
	"github.com/rackboot/rackboot/internal/health"
	"github.com/rackboot/rackboot/internal/inventory"
)

func newServeCmd(env *cliEnv) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run DHCP, TFTP, the iPXE/HTTP boot server, the inventory and the admin API",
		Long: `serve runs every rackboot service in one process until SIGINT or SIGTERM.

Settings come in layers, each overriding the one before: the defaults
('rackboot config defaults' prints them), the YAML file (--config, else
` + defaultConfigFile + ` when it exists), RACKBOOT_* environment variables
(RACKBOOT_ and the setting's path in upper snake case: dhcp.range is
RACKBOOT_DHCP_RANGE, lists comma-separated), then flags. docs/config.md lists every
setting. --check-config checks them all and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, capi, err := loadServeConfig(cmd.Flags(), &f, env)
			if f.checkConfig {
				if err != nil {
					return err
				}
				src := "no configuration file"
				if f.configFile != "" {
					src = f.configFile
				}
				fmt.Fprintf(env.stdout, "configuration OK (%s, environment and flags)\n", src)
				return nil
			}
			if err != nil {
				return err
			}
			return serve(cmd.Context(), r, capi, env.stderr, env.getenv("NOTIFY_SOCKET"))
		},
	}
	f.register(cmd.Flags())
	return cmd
}

// loadServeConfig layers and validates serve's configuration; its error lists every
// problem found, reading and validating alike.
func loadServeConfig(fs *pflag.FlagSet, f *serveFlags, env *cliEnv) (*resolved, capiSettings, error) {
	cfg, err := f.load(fs, env)
	var problems []string
	var ce *configError
	switch {
	case errors.As(err, &ce) && cfg.layers.unreadable:
		return nil, capiSettings{}, err
	case errors.As(err, &ce):
		problems = append(problems, ce.problems...)
	case err != nil:
		return nil, capiSettings{}, err
	}
	ifAddrs := env.ifAddrs
	if ifAddrs == nil {
		ifAddrs = systemInterfaceAddrs
	}
	r, err := cfg.resolve(ifAddrs)
	if errors.As(err, &ce) {
		problems = append(problems, ce.problems...)
	}
	getenv := env.getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	capi, err := cfg.CAPI.resolve(getenv)
	if err != nil {
		problems = append(problems, cfg.layers.problems(err)...)
	}
	if len(problems) > 0 {
		sortProblems(f.configFile, problems)
		return nil, capi, &configError{problems: problems}
	}
	return r, capi, nil
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // validated by resolve
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// service is one long-running part of serve.
type service struct {
	name  string
	start func(ctx context.Context) error
}

// serve runs every service until ctx ends. notifySocket is systemd's $NOTIFY_SOCKET
// (Type=notify): READY=1 goes there once the listeners are up and every service
// reports ready; empty when not started by systemd.
func serve(ctx context.Context, r *resolved, capi capiSettings, logw io.Writer, notifySocket string) error {
	log := newLogger(logw, r.LogLevel, r.LogFormat)
	// klog and controller-runtime's root logger write into log (liblogs.go).
	routeLibraryLogs(log)
	if err := secureDataDir(r.DataDir, log); err != nil { // datadir.go
		return err
	}
	if err := os.MkdirAll(filepath.Join(r.DataDir, "assets"), 0o755); err != nil {
		return fmt.Errorf("dataDir (--data-dir): %w", err)
	}
	token, err := loadOrCreateToken(r.API.TokenFile, filepath.Join(r.DataDir, "api-token"), log)
	if err != nil {
		return err
	}
	dbPath := filepath.Join(r.DataDir, "inventory.db")
	for _, f := range []string{dbPath, filepath.Join(r.DataDir, "admin.key")} {
		if err := tighten(f, 0o600, log); err != nil {
			return err
		}
	}
	// The secret key seals BMC passwords and user-data; Open creates it (0600) on first
	// start and refuses one others can read. Kept apart from DATA_DIR (secretKeyFile),
	// a backup of DATA_DIR does not carry the key to what it protects.
	inv := r.Inventory
	inv.SecretKeyFile, inv.Logger = r.secretKeyFile(), log
	store, err := inventory.Open(dbPath, inv)
	if err != nil {
		return err
	}
	defer store.Close()

	reg := prometheus.NewRegistry()
	if err := registerProcessMetrics(reg); err != nil { // metrics.go
		return err
	}

	w, err := buildServices(r, capi, store, token, log, reg)
	defer func() {
		for _, c := range w.closers {
			c()
		}
	}()
	if err != nil {
		return err
	}
	services, mux := w.services, w.mux
	mux.Handle("GET /metrics", promhttp.HandlerFor(metricsGatherer(reg), promhttp.HandlerOpts{Registry: reg})) // capi.go
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("GET /readyz", &health.Handler{Name: "readyz", Checks: w.checks}) // ?verbose lists every check

	adminSrv, err := listenAdmin(r, w.adminAPI, log)
	if err != nil {
		return err
	}
	defer adminSrv.Close() // if serve fails before the admin server starts
	services = append(services, service{name: "admin", start: adminSrv.Start})

	listen := r.HTTP.Listen
	if listen == "" {
		listen = hostPort("", r.HTTP.Port)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("http.listen (--http-port): %w: is another server using the port?", err)
	}
	// No blanket WriteTimeout: OS images and kernels stream for minutes.
	// Request bodies get per-route deadlines instead (httplimit, wire.go). Boot clients
	// (firmware, iPXE, the agent, cloud-init) send a few hundred bytes of headers.
	srv := &http.Server{Handler: w.boot, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	services = append(services, service{name: "http", start: func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		// A fresh context: the cancelled one would abort the shutdown at once.
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}})

	g, gctx := errgroup.WithContext(ctx)
	for _, s := range services {
		g.Go(func() error {
			err := s.start(gctx)
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			return nil
		})
	}
	go func() {
		for _, c := range w.ready {
			select {
			case <-c:
			case <-gctx.Done():
				return
			}
		}
		if err := sdNotify(notifySocket, "READY=1\nSTATUS=serving"); err != nil {
			log.Warn("cannot tell systemd rackboot is ready", "err", err)
		}
	}()
	log.Info("rackboot serving", "address", r.Addr, "http", ln.Addr().String(), "dhcpMode", r.DHCP.Mode, "dataDir", r.DataDir)
	err = g.Wait()
	_ = sdNotify(notifySocket, "STOPPING=1") // best effort: systemd sees the exit anyway
	log.Info("rackboot stopped", "err", err)
	return err
}

// listenAdmin opens the admin API's own listeners with its TLS certificate (the
// operator's, or DATA_DIR/admin.crt, created on first start) and logs the
// certificate's fingerprint, which CLIs pin.
func listenAdmin(r *resolved, h http.Handler, log *slog.Logger) (*adminserver.Server, error) {
	certFile, keyFile, generated := r.adminTLSFiles()
	var hosts []string
	for _, a := range r.AdminListen {
		if a.Network == "tcp" {
			host, _, _ := net.SplitHostPort(a.Addr)
			hosts = append(hosts, host)
		}
	}
	if r.Addr.IsValid() {
		hosts = append(hosts, r.Addr.String())
	}
	hosts = adminserver.CertificateHosts(hosts...)
	var cert tls.Certificate
	if generated {
		c, created, missing, err := adminserver.LoadOrCreateCertificate(certFile, keyFile, hosts, time.Now())
		if err != nil {
			return nil, err
		}
		if created {
			log.Info("created the admin API's TLS certificate", "file", certFile, "hosts", strings.Join(hosts, ","))
		}
		if len(missing) > 0 {
			log.Warn("the admin API's certificate does not name every listen address: CLIs that pin its fingerprint still connect; remove "+certFile+" and its key to have a new one made (CLIs must then pin the new fingerprint)", "missing", strings.Join(missing, ","))
		}
		cert = c
	} else {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("api.tlsCertFile (--admin-tls-cert): %w", err)
		}
		cert = c
	}
	srv, err := adminserver.Listen(adminserver.ServerConfig{
		Handler: h,
		Listen:  r.AdminListen,
		TLS:     &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Logger:  log.With("service", "admin"),
	})
	if err != nil {
		return nil, fmt.Errorf("api.listen (--admin-listen): %w", err)
	}
	addrs := make([]string, len(r.AdminListen))
	for i, a := range r.AdminListen {
		addrs[i] = a.String()
	}
	log.Info("admin API", "listen", strings.Join(addrs, ","), "certificate", certFile,
		"fingerprint", admin.Fingerprint(cert.Leaf.Raw))
	return srv, nil
}

// loadOrCreateToken reads the admin API token from path, or if path is empty from def,
// creating def with a random token on first start. The token itself is never logged.
func loadOrCreateToken(path, def string, log *slog.Logger) (string, error) {
	if path != "" {
		if err := checkPrivate(path, "api.tokenFile (--api-token-file)"); err != nil {
			return "", err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("api.tokenFile (--api-token-file): %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if len(tok) < 16 {
			return "", fmt.Errorf("api.tokenFile (--api-token-file): %s holds %d characters: put a token of at least 16 characters in it (e.g. `openssl rand -hex 32`)", path, len(tok))
		}
		return tok, nil
	}
	if err := tighten(def, 0o600, log); err != nil {
		return "", err
	}
	b, err := os.ReadFile(def)
	if err == nil {
		if tok := strings.TrimSpace(string(b)); tok != "" {
			return tok, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading API token %s: %w", def, err)
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(buf)
	if err := os.WriteFile(def, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing API token %s: %w", def, err)
	}
	log.Info("created admin API token", "file", def)
	return tok, nil
}
