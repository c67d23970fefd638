package adminserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/rackboot/rackboot/admin"
	"golang.org/x/sync/errgroup"
)

// ServerConfig configures the admin API's listeners.
type ServerConfig struct {
	// Handler is the admin API (NewHandler). Required.
	Handler http.Handler
	// Listen are the addresses to serve on; at least one.
	Listen []admin.ListenAddr
	// TLS serves every TCP listener. Required when any listener is TCP: the bearer
	// token never crosses a network in clear.
	TLS *tls.Config
	// Logger; nil discards.
	Logger *slog.Logger
}

// Validate checks the configuration without opening anything.
func (c ServerConfig) Validate() error {
	if c.Handler == nil {
		return errors.New("admin server: no handler")
	}
	if len(c.Listen) == 0 {
		return errors.New("admin server: no listen address: give at least one (the default is 127.0.0.1:8443 and unix:DATA_DIR/admin.sock)")
	}
	for _, a := range c.Listen {
		if a.Network == "tcp" && c.TLS == nil {
			return fmt.Errorf("admin server: %s is a TCP address but no TLS certificate is configured", a)
		}
	}
	return nil
}

// Server is the admin API's listeners. Listen opens them, so the caller learns of a
// busy port before anything starts; Start serves until its context ends.
type Server struct {
	lns []net.Listener
	srv *http.Server
	log *slog.Logger
}

// Listen opens every listener. A stale socket file left by a killed rackboot is
// replaced; anything else at a socket path is an error.
func Listen(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log: log,
		// No WriteTimeout: image uploads and watch long polls run for long. Headers
		// must come quickly: a stranger cannot hold connections open by trickling them.
		srv: &http.Server{Handler: cfg.Handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)},
	}
	for _, a := range cfg.Listen {
		ln, err := listenOne(a)
		if err != nil {
			s.Close()
			return nil, err
		}
		if a.Network == "tcp" {
			ln = tls.NewListener(ln, cfg.TLS)
		}
		s.lns = append(s.lns, ln)
	}
	return s, nil
}

func listenOne(a admin.ListenAddr) (net.Listener, error) {
	if a.Network != "unix" {
		ln, err := net.Listen("tcp", a.Addr)
		if err != nil {
			return nil, fmt.Errorf("admin API: %w: is another rackboot running, or the port taken?", err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(a.Addr); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("admin API: %s exists and is not a socket: remove it or choose another path", a.Addr)
		}
		// A socket nobody answers on was left by a rackboot that did not stop cleanly.
		if c, err := net.DialTimeout("unix", a.Addr, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin API: %s: another rackboot is serving on this socket", a.Addr)
		}
		if err := os.Remove(a.Addr); err != nil {
			return nil, fmt.Errorf("admin API: removing stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", a.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	// Only the owner may connect (the token is still required).
	if err := os.Chmod(a.Addr, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin API: %w", err)
	}
	return ln, nil
}

// Addrs are the listeners' addresses, in the configured order (a port 0 resolved).
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.lns))
	for i, ln := range s.lns {
		out[i] = ln.Addr()
	}
	return out
}

// Close closes the listeners of a Server that was never started.
func (s *Server) Close() error {
	var errs []error
	for _, ln := range s.lns {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Start serves until ctx ends, then shuts down within 10 s.
func (s *Server) Start(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, ln := range s.lns {
		s.log.Info("admin API listening", "addr", ln.Addr().Network()+":"+ln.Addr().String())
		g.Go(func() error {
			if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		// A fresh context: the cancelled one would abort the shutdown at once.
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return s.srv.Shutdown(sctx)
	})
	return g.Wait()
}
