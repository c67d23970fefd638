package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// Where the package puts things (Debian 12 layout).
const (
	debBinary = "/usr/bin/rackboot"
	debConfig = "/etc/rackboot/config.yaml"
	debUnit   = "/lib/systemd/system/rackboot.service"
)

// Maintainer scripts: systemd learns about the unit (and forgets it) without being
// asked; the service is neither enabled nor started, since config.yaml has to name the
// provisioning interface first. Both are no-ops outside a booted systemd (a chroot,
// dpkg --root, a container build).
const (
	postinst = `#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
`
	prerm = `#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop rackboot.service || true
fi
`
	postrm = `#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
`
)

// debFileName is the package's name as Debian writes it: name_version_arch.deb.
func debFileName(version, arch string) string {
	return fmt.Sprintf("rackboot_%s_%s.deb", strings.TrimPrefix(version, "v"), arch)
}

func writeDebs(r release) error {
	scripts := filepath.Join(r.out, ".scripts")
	if err := os.MkdirAll(scripts, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(scripts)
	for name, body := range map[string]string{"postinst": postinst, "prerm": prerm, "postrm": postrm} {
		if err := os.WriteFile(filepath.Join(scripts, name), []byte(body), 0o755); err != nil {
			return err
		}
	}
	for _, arch := range r.arches {
		if err := writeDeb(r, arch, scripts); err != nil {
			return fmt.Errorf("%s: %w", arch, err)
		}
	}
	return nil
}

func writeDeb(r release, arch, scripts string) error {
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode, MTime: r.mtime}}
	}
	contents := files.Contents{
		file(r.binary(arch), debBinary, 0o755),
		file(filepath.Join(r.root, "packaging", "rackboot.service"), debUnit, 0o644),
		file(filepath.Join(r.root, "README.md"), "/usr/share/doc/rackboot/README.md", 0o644),
	}
	conf := file(filepath.Join(r.root, "packaging", "config.yaml"), debConfig, 0o644)
	conf.Type = files.TypeConfigNoReplace // a conffile: dpkg keeps the operator's edits
	contents = append(contents, conf)
	for _, c := range completionFiles {
		contents = append(contents, file(filepath.Join(r.out, "completions", c.file), c.installPath, 0o644))
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:        "rackboot",
		Arch:        arch,
		Platform:    "linux",
		Version:     r.version,
		Section:     "net",
		Priority:    "optional",
		Maintainer:  "rackboot developers <rackboot@users.noreply.github.com>",
		Vendor:      "rackboot",
		Homepage:    "https://github.com/rackboot/rackboot",
		Description: "bare-metal provisioner: DHCP, TFTP, iPXE/HTTP boot, BMCs, inventory\n rackboot takes servers from \"cabled, BMC reachable\" to \"running an OS and joined\n to a Kubernetes cluster\" in one static binary: PXE/HTTP boot, power through IPMI\n and Redfish, a hardware inventory, OS images and per-host cloud-init. It is also\n a Cluster API infrastructure provider.",
		MTime:       r.mtime,
		Overridables: nfpm.Overridables{
			// ipmitool: the IPMI BMC driver runs it; Redfish BMCs need nothing.
			Recommends: []string{"ipmitool"},
			Contents:   contents,
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(scripts, "postinst"),
				PreRemove:   filepath.Join(scripts, "prerm"),
				PostRemove:  filepath.Join(scripts, "postrm"),
			},
		},
	})
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(r.out, debFileName(r.version, arch)))
	if err != nil {
		return err
	}
	if err := deb.Default.Package(info, out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
