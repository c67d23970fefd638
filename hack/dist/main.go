// Command dist lays out a rackboot release in one directory (make dist):
//
//	rackboot-linux-ARCH                    static binaries (built by the Makefile)
//	rackboot_VERSION_ARCH.deb              Debian packages (nfpm)
//	rackboot-image-linux-ARCH.tar          the OCI image per architecture, `docker load` layout
//	oci/                                   the OCI image as a multi-architecture OCI layout
//	completions/                           bash, zsh and fish completions
//	infrastructure-rackboot/VERSION/       clusterctl provider repository
//	clusterctl.yaml                        the clusterctl configuration pointing at it
//	SHA256SUMS                             of every file above at the top level
//
// Everything is built offline from the binaries, packaging/ and config/: no daemon, no
// registry, no network. It is a module of its own so nfpm's dependencies stay out of the
// rackboot binary's go.mod.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
}

// release is what every artifact is built from.
type release struct {
	root    string // the repository
	out     string // the dist directory; holds rackboot-linux-ARCH already
	version string // vX.Y.Z
	commit  string
	image   string // the OCI image's repository, tagged with version
	mtime   time.Time
	arches  []string
}

// versionRe is what clusterctl and dpkg both accept: a semantic version with a v.
var versionRe = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?$`)

func run(args []string) error {
	fs := flag.NewFlagSet("dist", flag.ContinueOnError)
	var r release
	var arches, mtime string
	fs.StringVar(&r.root, "root", "../..", "the rackboot repository")
	fs.StringVar(&r.out, "out", "../../dist", "the dist directory, holding rackboot-linux-ARCH")
	fs.StringVar(&r.version, "version", "v0.1.0", "release version, vX.Y.Z (clusterctl and dpkg need a semantic version)")
	fs.StringVar(&r.commit, "commit", "", "the commit built, for the image's labels")
	fs.StringVar(&r.image, "image", "ghcr.io/rackboot/rackboot", "the OCI image's repository")
	fs.StringVar(&arches, "arch", "amd64,arm64", "architectures, comma-separated")
	fs.StringVar(&mtime, "mtime", "", "time stamped on every packaged file, RFC 3339 (default: the Unix epoch), so a rebuild of one commit gives the same bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !versionRe.MatchString(r.version) {
		return fmt.Errorf("--version %q: want a semantic version such as v0.1.0", r.version)
	}
	r.mtime = time.Unix(0, 0).UTC()
	if mtime != "" {
		t, err := time.Parse(time.RFC3339, mtime)
		if err != nil {
			return fmt.Errorf("--mtime: %w", err)
		}
		r.mtime = t.UTC()
	}
	r.arches = strings.Split(arches, ",")
	var err error
	if r.out, err = filepath.Abs(r.out); err != nil {
		return err
	}
	for _, a := range r.arches {
		if _, err := os.Stat(r.binary(a)); err != nil {
			return fmt.Errorf("binary for %s: %w (make dist builds it)", a, err)
		}
	}
	steps := []struct {
		name string
		do   func(release) error
	}{
		{"completions", writeCompletions},
		{"debian packages", writeDebs},
		{"OCI image", writeImages},
		{"clusterctl provider repository", writeProviderRepository},
		{"SHA256SUMS", writeChecksums},
	}
	for _, s := range steps {
		if err := s.do(r); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

func (r release) binary(arch string) string {
	return filepath.Join(r.out, "rackboot-linux-"+arch)
}

// hostBinary is the binary this machine runs, to ask it for its completions.
func (r release) hostBinary() (string, error) {
	for _, a := range r.arches {
		if a == runtime.GOARCH {
			return r.binary(a), nil
		}
	}
	return "", fmt.Errorf("no binary for this machine's architecture %s among %v", runtime.GOARCH, r.arches)
}
