package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

// Set at build time: go build -ldflags "-X main.version=v1.2.3 -X main.commit=SHA
// -X main.buildDate=2026-12-03T05:00:00Z" (make build does, with the commit's date so a
// rebuild of one commit is the same binary). Where they are not set, the commit and date
// come from the VCS stamp Go writes into a binary built from a checkout without
// -buildvcs=false (runtime/debug.ReadBuildInfo).
var (
	version   = "dev"
	commit    = ""
	buildDate = ""
)

// currentBuild describes this binary.
func currentBuild() admin.VersionInfo {
	v := admin.VersionInfo{Version: version, Commit: commit, BuildDate: buildDate, GoVersion: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.GoVersion = bi.GoVersion
	if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version // go install module@version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if v.Commit == "" {
				v.Commit = s.Value
			}
		case "vcs.time":
			if v.BuildDate == "" {
				v.BuildDate = s.Value // the commit's time: the closest a plain go build knows
			}
		case "vcs.modified":
			v.Modified = v.Modified || s.Value == "true"
		}
	}
	return v
}

// versionReport is what `rackboot version -o json|yaml` prints.
type versionReport struct {
	Client admin.VersionInfo  `json:"client"`
	Server *admin.VersionInfo `json:"server,omitempty"`
	// ServerError says why the server's version is missing.
	ServerError string `json:"serverError,omitempty"`
}

func describeBuild(v admin.VersionInfo) string {
	var parts []string
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if v.Modified {
			c += "-dirty"
		}
		parts = append(parts, "commit "+c)
	} else {
		parts = append(parts, "commit unknown")
	}
	if v.BuildDate != "" {
		parts = append(parts, "built "+v.BuildDate)
	}
	if v.GoVersion != "" {
		parts = append(parts, v.GoVersion)
	}
	return fmt.Sprintf("rackboot %s (%s)", v.Version, strings.Join(parts, ", "))
}

func newVersionCmd(env *cliEnv) *cobra.Command {
	h := &hostCLI{env: env, tokenFiles: defaultTokenFiles()}
	var (
		p          printFlags
		clientOnly bool
	)
	cmd := &cobra.Command{
		Use:   "version [--client] [-o text|json|yaml]",
		Short: "Print the version, commit and build date of this binary and of the server",
		Long: `version prints this binary's version, commit and build date, then those of the
rackboot server the host commands talk to, when it answers (within 5 seconds). An
unreachable server is noted on standard error and is not a failure. --client skips it.

` + connectionHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, _, err := p.format(); err != nil {
				return err
			}
			rep := versionReport{Client: currentBuild()}
			var server string
			if !clientOnly {
				sv, err := h.serverVersion(cmd.Context())
				if err != nil {
					rep.ServerError = err.Error()
					fmt.Fprintf(env.stderr, "rackboot: server version unknown: %v\n", err)
				} else {
					rep.Server = &sv
					server = h.baseURL
				}
			}
			return printOne(env.stdout, &p, resource[versionReport]{}, rep, func() string {
				s := "Client: " + describeBuild(rep.Client) + "\n"
				if rep.Server != nil {
					s += "Server: " + describeBuild(*rep.Server) + " at " + server + "\n"
				}
				return s
			})
		},
	}
	h.registerConnection(cmd)
	p.register(cmd, "text", []string{"text", "json", "yaml", "jsonpath="})
	cmd.Flags().BoolVar(&clientOnly, "client", false, "print only this binary's version; do not ask the server")
	return cmd
}

// serverVersion asks the admin API for its build, briefly: version must not hang on a
// server that is down.
func (h *hostCLI) serverVersion(ctx context.Context) (admin.VersionInfo, error) {
	c, err := h.client()
	if err != nil {
		return admin.VersionInfo{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := c.WithTimeout(5 * time.Second).Version(ctx)
	if errors.Is(err, inventory.ErrNotFound) {
		return admin.VersionInfo{}, fmt.Errorf("the server at %s does not report its version: it is older than this CLI (GET /api/v1/version is new)", h.baseURL)
	}
	if err != nil {
		return admin.VersionInfo{}, h.explain(err)
	}
	return v, nil
}
