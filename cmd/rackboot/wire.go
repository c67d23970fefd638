package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/internal/adminserver"
	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/dhcp"
	"github.com/rackboot/rackboot/internal/health"
	"github.com/rackboot/rackboot/internal/httplimit"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
	"github.com/rackboot/rackboot/internal/ratelimit"
	"github.com/rackboot/rackboot/internal/tftp"
	"github.com/rackboot/rackboot/internal/trust"
)

// wiring is what serve runs: the services, the HTTP mux they share, and what /readyz
// waits for.
type wiring struct {
	services []service
	mux      *http.ServeMux
	// boot is mux behind the limits for strangers (httplimit): what the boot
	// listener serves.
	boot    http.Handler
	ready   []<-chan struct{}
	closers []func() error
	// adminAPI is the admin API's handler; serve runs it on its own listeners
	// (adminserver.Listen), never on the boot listener.
	adminAPI http.Handler
	// capiHook hands the provisioner's host transitions to the Cluster API
	// controllers, which are built after it (capi.go).
	capiHook capiHook
	// checks are /readyz's (package health); those that gate it wait for what
	// ready holds.
	checks []health.Check
}

// buildServices turns the resolved configuration into services. It returns the wiring
// even with an error, so the caller can run its closers. Every service gets its
// typed Config here; none of them reads flags or the environment.
func buildServices(r *resolved, capi capiSettings, store *inventory.BoltStore, token string, log *slog.Logger, reg prometheus.Registerer) (*wiring, error) {
	w := &wiring{mux: http.NewServeMux()}
	serverURL := r.ServerURL()
	if err := registerInventoryMetrics(reg, store); err != nil { // metrics.go
		return w, err
	}

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

	bc := r.BMC
	bc.Store, bc.Logger, bc.Registerer = store, log.With("service", "bmc"), reg
	bmcs, err := bmc.New(bc)
	if err != nil {
		return w, err
	}
	w.services = append(w.services, service{name: "bmc", start: bmcs.Start})
	w.ready = append(w.ready, bmcs.Ready())
	w.checks = append(w.checks, health.Check{Name: "bmc", Run: health.Closed(bmcs.Ready(), "the BMC workers have not started yet")})
	// One gate decides who is asking on every boot route (package trust).
	tc := r.Trust
	tc.Mode, tc.Store, tc.Logger, tc.Registerer = trust.Mode(r.DHCP.Mode), store, log.With("service", "trust"), reg
	gate, err := trust.New(tc)
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

	hc := r.IPXE
	hc.Store, hc.Binaries, hc.Assets, hc.ServerURL = store, bins, assets.FS(), serverURL
	hc.Discovery = r.DHCP.UnknownHosts == dhcp.UnknownDiscover
	hc.BootEnvs, hc.AgentTokens, hc.Gate = pv.bootEnvs.Current, pv.prov, gate
	hc.Logger, hc.Registerer = log.With("service", "http"), reg
	boot, err := ipxe.NewHandler(hc)
	if err != nil {
		return w, err
	}
	boot.Register(w.mux)

	var subnets []netip.Prefix
	if r.DHCP.Mode == dhcp.ModeServer {
		for _, s := range r.DHCPConfig.Subnets {
			subnets = append(subnets, s.Prefix)
		}
	}

	api, err := adminserver.NewHandler(adminserver.Config{
		Store:       store,
		Token:       token,
		Subnets:     subnets,
		ServerIP:    r.Addr,
		ServerMACs:  interfaceMACs(r.Interface),
		Logger:      log.With("service", "api"),
		Registerer:  reg,
		BMC:         bmcs,
		Provisioner: pv.prov,
		Images:      pv.catalog,
		Version:     currentBuild(),
	})
	if err != nil {
		return w, err
	}
	limits, err := newLimits(r, log, reg)
	if err != nil {
		return w, err
	}
	w.boot = limits.Handler(w.mux)
	w.adminAPI = limits.Handler(api)

	if !r.TFTP.Disabled {
		tc := r.TFTP.Config
		tc.FS, tc.Logger, tc.Registerer, tc.Store = bins, log.With("service", "tftp"), reg, store
		ts, err := tftp.New(tc)
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

	if r.DHCP.Mode != dhcp.ModeOff {
		dc := r.DHCPConfig
		dc.Keys, dc.Logger, dc.Registerer, dc.Store = gate, log.With("service", "dhcp"), reg, store
		ds, err := dhcp.New(dc)
		if err != nil {
			return w, err
		}
		w.services = append(w.services, service{name: "dhcp", start: ds.Start})
		w.ready = append(w.ready, ds.Ready())
		w.checks = append(w.checks, health.Check{Name: "dhcp", Run: health.Closed(ds.Ready(), "the DHCP sockets are not open yet (mode "+string(r.DHCP.Mode)+")")})
	}
	return w, nil
}

// newLimits builds the limits both listeners are served behind. The route table is
// the one place that names which routes are rate-limited per source: the iPXE script
// (a stranger can ask for any MAC's) and the per-host metadata. The admin API's JSON
// bodies get a minute; an image upload (gigabytes) is bounded by its checksum instead.
func newLimits(r *resolved, log *slog.Logger, reg prometheus.Registerer) (*httplimit.Limits, error) {
	script, err := ratelimit.New(r.HTTP.RateLimits.Script)
	if err != nil {
		return nil, fmt.Errorf("http.rateLimits.script.%w", err)
	}
	md, err := ratelimit.New(r.HTTP.RateLimits.Metadata)
	if err != nil {
		return nil, fmt.Errorf("http.rateLimits.metadata.%w", err)
	}
	return httplimit.New(httplimit.Config{
		BodyTimeout: r.HTTP.BodyTimeout,
		MaxRanges:   r.HTTP.MaxRanges,
		Routes: []httplimit.Route{
			{Name: "script", Prefix: "/ipxe/", Suffix: "boot.ipxe", Rate: script},
			{Name: "metadata", Prefix: "/metadata/", Rate: md},
			{Name: "admin_upload", Prefix: "/api/v1/images/", Suffix: "/file", BodyTimeout: -1},
			{Name: "admin", Prefix: "/api/", BodyTimeout: time.Minute},
		},
		Registerer: reg,
		Logger:     log.With("service", "http"),
	})
}

// interfaceMACs is the provisioning interface's MAC, which no host may claim; none when
// there is no interface (DHCP off) or it has none.
func interfaceMACs(name string) []string {
	if name == "" {
		return nil
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil || len(ifi.HardwareAddr) != 6 {
		return nil
	}
	return []string{ifi.HardwareAddr.String()}
}
