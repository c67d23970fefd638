package bootenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

var dependsRe = regexp.MustCompile(`Depends:\s*(linux-image-\d[^\s]*)`)

// DebianKernelPackage resolves a metapackage such as linux-image-amd64 to the versioned
// kernel package it depends on (linux-image-6.1.0-56-amd64) with apt-cache. A versioned
// name is returned as is.
func DebianKernelPackage(ctx context.Context, pkg string) (string, error) {
	if pkg == "" {
		pkg = "linux-image-amd64"
	}
	if v, ok := strings.CutPrefix(pkg, "linux-image-"); ok && v != "" && v[0] >= '0' && v[0] <= '9' {
		return pkg, nil
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w (run apt-get update, or name the versioned package)", pkg, err)
	}
	m := dependsRe.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("apt-cache depends %s names no linux-image-* package", pkg)
	}
	return string(m[1]), nil
}

// DownloadDebianKernel fetches the .deb of a Debian kernel package into dir with
// `apt-get download` (from the host's configured mirror or proxy) unless it is already
// there, and returns its path.
func DownloadDebianKernel(ctx context.Context, dir, pkg string) (string, error) {
	pkg, err := DebianKernelPackage(ctx, pkg)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	glob := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
		return m
	}
	if m := glob(); len(m) == 1 {
		return m[0], nil
	}
	cmd := exec.CommandContext(ctx, "apt-get", "download", pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %w: %s", pkg, err, strings.TrimSpace(string(out)))
	}
	m := glob()
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d matching .deb files in %s, want 1", pkg, len(m), dir)
	}
	return m[0], nil
}
