package main

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackboot/rackboot/bmc"
	"github.com/rackboot/rackboot/inventory"
)

// bmcConfig is the serve configuration's "bmc" section: how rackboot talks to BMCs.
//
//	bmc:
//	  workers: 8               # BMC operations at once (default 8)
//	  timeout: 30s             # one operation, retries included (default 30s)
//	  queueTimeout: 30s        # wait for a free worker (default: timeout)
//	  maxAttempts: 3           # per operation; only transient failures are retried
//	  redfishCAFile: /etc/rackboot/bmc-ca.pem   # CAs for Redfish HTTPS (default: system)
//	  ipmitool: /usr/bin/ipmitool               # default: ipmitool from PATH
type bmcConfig struct {
	Workers       int      `json:"workers"`
	Timeout       duration `json:"timeout"`
	QueueTimeout  duration `json:"queueTimeout"`
	MaxAttempts   int      `json:"maxAttempts"`
	RedfishCAFile string   `json:"redfishCAFile"`
	IPMITool      string   `json:"ipmitool"`
}

// newBMCService validates the bmc section and builds the service serve runs.
func newBMCService(c bmcConfig, store inventory.Store, log *slog.Logger, reg prometheus.Registerer) (*bmc.Service, error) {
	if c.Workers < 0 || c.Workers > 1024 {
		return nil, bad("bmc.workers", "", "%d: give 1-1024 (0 for the default, 8)", c.Workers)
	}
	if c.Timeout < 0 || (c.Timeout > 0 && time.Duration(c.Timeout) < time.Second) {
		return nil, bad("bmc.timeout", "", "%s: give at least 1s (ipmitool alone needs a few hundred ms per call)", time.Duration(c.Timeout))
	}
	if c.QueueTimeout < 0 {
		return nil, bad("bmc.queueTimeout", "", "cannot be negative")
	}
	if c.MaxAttempts < 0 || c.MaxAttempts > 10 {
		return nil, bad("bmc.maxAttempts", "", "%d: give 1-10 (0 for the default, 3)", c.MaxAttempts)
	}
	lib := bmc.LibConfig{IPMITool: c.IPMITool}
	if c.IPMITool != "" {
		if fi, err := os.Stat(c.IPMITool); err != nil || fi.IsDir() {
			return nil, bad("bmc.ipmitool", "", "%s is not a file: give the path of the ipmitool binary (apt-get install ipmitool)", c.IPMITool)
		}
	}
	if c.RedfishCAFile != "" {
		pem, err := os.ReadFile(c.RedfishCAFile)
		if err != nil {
			return nil, bad("bmc.redfishCAFile", "", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, bad("bmc.redfishCAFile", "", "%s holds no PEM certificate: give the CA that signed the BMCs' HTTPS certificates", c.RedfishCAFile)
		}
		lib.RedfishRootCAs = pool
	}
	svc, err := bmc.New(bmc.Config{
		Store:        store,
		Lib:          lib,
		Workers:      c.Workers,
		Timeout:      time.Duration(c.Timeout),
		QueueTimeout: time.Duration(c.QueueTimeout),
		MaxAttempts:  c.MaxAttempts,
		Logger:       log,
		Registerer:   reg,
	})
	if err != nil {
		return nil, fmt.Errorf("bmc: %w", err)
	}
	return svc, nil
}
