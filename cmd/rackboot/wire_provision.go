package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/dhcp"
	"github.com/rackboot/rackboot/internal/health"
	"github.com/rackboot/rackboot/internal/images"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
	"github.com/rackboot/rackboot/internal/metadata"
	"github.com/rackboot/rackboot/internal/provision"
	"github.com/rackboot/rackboot/internal/trust"
)

// provisioning is the part of serve that takes hosts through their life: the image
// catalog, the state machine with the agent API, the per-host metadata, and the agent's
// boot environment.
type provisioning struct {
	catalog *images.Catalog
	prov    *provision.Provisioner
	// bootEnvs follows DATA_DIR/bootenv: a build that `rackboot bootenv import`
	// publishes while serve runs is used at the next boot of the agent.
	bootEnvs *provision.BootEnvs
}

// buildProvisioning wires images, provision and metadata onto w's mux and services.
// gate decides who is asking on their routes, in every DHCP mode.
func buildProvisioning(r *resolved, store *inventory.BoltStore, bmcs *bmc.Service, serverURL string, gate *trust.Gate, w *wiring, log *slog.Logger, reg prometheus.Registerer) (*provisioning, error) {
	httpm, err := ipxe.NewHTTPMetrics(reg)
	if err != nil {
		return nil, err
	}
	pv := &provisioning{}
	var authorize images.Authorizer // set below, once the provisioner exists
	ic := r.Images
	ic.Dir, ic.Store = filepath.Join(r.DataDir, "images"), store
	ic.Authorize = func(req *http.Request, name string) (string, error) { return authorize(req, name) }
	ic.Logger, ic.Registerer, ic.Metrics = log.With("service", "images"), reg, httpm
	pv.catalog, err = images.New(ic)
	if err != nil {
		return nil, err
	}
	w.closers = append(w.closers, pv.catalog.Close)
	// Created now, so the boot environment routes serve a build imported later.
	bootDir := filepath.Join(r.DataDir, "bootenv")
	if err := os.MkdirAll(bootDir, 0o755); err != nil {
		return nil, fmt.Errorf("dataDir (--data-dir): %w", err)
	}
	pv.bootEnvs = provision.NewBootEnvs(bootDir, serverURL, log.With("service", "bootenv"))
	// Asked at each request, so `rackboot bootenv import` needs no restart.
	noAgent := "this rackboot has no agent boot environment, so it cannot inspect, provision or wipe hosts: build one with 'rackboot bootenv import --deb linux-image-VERSION.deb --data-dir " + r.DataDir + "'"
	if !pv.bootEnvs.Ready() {
		log.Warn(noAgent)
	}
	pc := r.Provision.Config()
	pc.NoAgent, pc.AgentReady = noAgent, pv.bootEnvs.Ready
	pc.Store, pc.BMC, pc.Images, pc.ServerURL, pc.Gate = store, bmcs, pv.catalog, serverURL, gate
	pc.Logger, pc.Registerer, pc.Metrics = log.With("service", "provision"), reg, httpm
	pc.OnTransition = w.capiHook.hostChanged
	pc.SubnetOf = subnetOf(r)
	pv.prov, err = provision.New(pc)
	if err != nil {
		return nil, err
	}
	authorize = pv.prov.AuthorizeImage
	mc := r.Metadata
	mc.Store, mc.PhoneHome, mc.ServerURL, mc.Gate = store, pv.prov, serverURL, gate
	mc.Logger, mc.Metrics = log.With("service", "metadata"), httpm
	md, err := metadata.NewHandler(mc)
	if err != nil {
		return nil, err
	}
	if err := pv.prov.RegisterBootEnv(w.mux, bootDir); err != nil {
		return nil, err
	}
	pv.catalog.Register(w.mux)
	pv.prov.Register(w.mux)
	md.Register(w.mux)
	// Informational: a rackboot without them still serves boot traffic (health).
	w.checks = append(w.checks,
		health.Check{Name: "bootenv", Informational: true, Run: func(context.Context) error {
			if pv.bootEnvs.Ready() {
				return nil
			}
			return errors.New(noAgent)
		}},
		health.Check{Name: "images", Informational: true, Run: pv.catalog.Check})
	w.services = append(w.services,
		service{name: "images", start: pv.catalog.Start},
		service{name: "provision", start: pv.prov.Start})
	return pv, nil
}

// subnetOf tells the provisioner which of the subnets rackboot's DHCP serves holds a
// reserved address, so a host without a network spec installs that address statically.
// nil outside server mode: rackboot then knows no subnet, and such hosts keep DHCP.
func subnetOf(r *resolved) func(netip.Addr) (provision.Subnet, bool) {
	if r.DHCP.Mode != dhcp.ModeServer {
		return nil
	}
	subnets := slices.Clone(r.DHCPConfig.Subnets)
	return func(a netip.Addr) (provision.Subnet, bool) {
		for _, s := range subnets {
			if s.Prefix.Contains(a) {
				return provision.Subnet{Prefix: s.Prefix, Router: s.Router, DNS: slices.Clone(s.DNS), Domain: s.Domain}, true
			}
		}
		return provision.Subnet{}, false
	}
}
