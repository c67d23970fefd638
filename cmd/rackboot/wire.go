package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/dhcp"
	"github.com/rackboot/rackboot/inventory"
	"github.com/rackboot/rackboot/ipxe"
	"github.com/rackboot/rackboot/tftp"
	"github.com/rackboot/rackboot/trust"
)

// wiring is what serve runs: the services, the HTTP mux they share, and what /readyz
// waits for.
type wiring struct {
	services []service
	mux      *http.ServeMux
	ready    []<-chan struct{}
	closers  []func() error
	// capiHook hands the provisioner's host transitions to the Cluster API
	// controllers, which are built after it (capi.go).
	capiHook capiHook
}

// buildServices turns the resolved configuration into services. It returns the wiring
// even with an error, so the caller can run its closers. Every service gets its
// typed Config here; none of them reads flags or the environment.
func buildServices(r *resolved, capi capiSettings, store *inventory.BoltStore, token string, log *slog.Logger, reg prometheus.Registerer) (*wiring, error) {
	w := &wiring{mux: http.NewServeMux()}
	serverURL := "http://" + hostPort(r.Addr.String(), r.HTTP.Port)

	bins, err := ipxe.OpenBinaries(filepath.Join(r.DataDir, "ipxe"))
	if err != nil {
		return w, err
	}
	w.closers = append(w.closers, bins.Close)
	assets, err := os.OpenRoot(filepath.Join(r.DataDir, "assets"))
	if err != nil {
		return w, fmt.Errorf("dataDir (--data-dir): assets: %w", err)
	}
	w.closers = append(w.closers, assets.Close)

	bmcs, err := newBMCService(r.BMC, store, log.With("service", "bmc"), reg)
	if err != nil {
		return w, err
	}
	w.services = append(w.services, service{name: "bmc", start: bmcs.Start})
	w.ready = append(w.ready, bmcs.Ready())
	// One gate decides who is asking on every boot route (package trust).
	gate, err := trust.New(trust.Config{Mode: trust.Mode(r.DHCP.Mode), Store: store, Logger: log.With("service", "trust"), Registerer: reg})
	if err != nil {
		return w, err
	}
	pv, err := buildProvisioning(r, store, bmcs, serverURL, gate, w, log, reg)
	if err != nil {
		return w, err
	}
	if err := addCAPI(capi, store, pv.prov, w, log); err != nil { // capi.go
		return w, err
	}

	boot, err := ipxe.NewHandler(ipxe.HandlerConfig{
		Store:       store,
		Binaries:    bins,
		Assets:      assets.FS(),
		ServerURL:   serverURL,
		Discovery:   r.DHCP.UnknownHosts == "discover",
		BootEnvs:    pv.bootEnvs.Current,
		AgentTokens: pv.prov,
		Gate:        gate,
		Logger:      log.With("service", "http"),
		Registerer:  reg,
	})
	if err != nil {
		return w, err
	}
	boot.Register(w.mux)

	var subnets []netip.Prefix
	if r.DHCP.Mode == "server" {
		for _, s := range r.Subnets {
			subnets = append(subnets, s.Prefix)
		}
	}

	api, err := admin.NewHandler(admin.Config{
		Store:       store,
		Token:       token,
		Subnets:     subnets,
		Logger:      log.With("service", "api"),
		Registerer:  reg,
		BMC:         bmcs,
		Provisioner: pv.prov,
		Images:      pv.catalog,
	})
	if err != nil {
		return w, err
	}
	w.mux.Handle("/api/v1/", api)

	if !r.TFTP.Disabled {
		ts, err := tftp.New(tftp.Config{
			FS:         bins,
			Logger:     log.With("service", "tftp"),
			Registerer: reg,
			Store:      store,
		})
		if err != nil {
			return w, err
		}
		// The socket is opened here, before serve reports ready, and bound to the
		// server address so TFTP is not offered on other networks.
		addr := hostPort(r.Addr.String(), r.TFTP.Port)
		conn, err := tftp.Listen("udp4", addr)
		if err != nil {
			return w, err
		}
		w.closers = append(w.closers, conn.Close)
		w.services = append(w.services, service{name: "tftp", start: func(ctx context.Context) error {
			log.Info("tftp: listening", "addr", conn.LocalAddr().String())
			return ts.Serve(ctx, conn)
		}})
	}

	if r.DHCP.Mode != "off" {
		ds, err := dhcp.New(dhcp.Config{
			Mode:         dhcp.Mode(r.DHCP.Mode),
			Interface:    r.Interface,
			ServerIP:     r.Addr,
			Port:         r.DHCP.Port,
			ProxyPort:    r.DHCP.ProxyPort,
			Subnets:      r.Subnets,
			UnknownHosts: dhcp.UnknownHostPolicy(r.DHCP.UnknownHosts),
			Keys:         gate,
			Discovery: dhcp.Discovery{
				MaxHosts: r.DHCP.Discovery.MaxHosts,
				Rate:     r.DHCP.Discovery.Rate,
				Burst:    r.DHCP.Discovery.Burst,
			},
			Boot: dhcp.Boot{
				HTTPBaseURL:  serverURL,
				UEFIFile:     r.Boot.UEFIBinary,
				HTTPBootFile: r.Boot.HTTPBootBinary,
			},
			Logger:     log.With("service", "dhcp"),
			Registerer: reg,
			Store:      store,
		})
		if err != nil {
			return w, err
		}
		w.services = append(w.services, service{name: "dhcp", start: ds.Start})
		w.ready = append(w.ready, ds.Ready())
	}
	return w, nil
}
