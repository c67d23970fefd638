package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"sigs.k8s.io/yaml"
)

// The clusterctl provider repository: clusterctl reads
// {repository}/infrastructure-rackboot/{version}/infrastructure-components.yaml with
// metadata.yaml and cluster-template*.yaml beside it (a local repository's layout).
// The components are config/infrastructure-components.yaml as make generate writes it:
// CRDs, RBAC and the ServiceAccount each rack's rackboot serve uses. No Deployment: the
// controllers run inside every rack's rackboot serve, next to its inventory
// (config/README.md).
const providerDir = "infrastructure-rackboot"

// clusterctlConfigName is the clusterctl.yaml snippet pointing at the repository.
const clusterctlConfigName = "clusterctl.yaml"

func writeProviderRepository(r release) error {
	dir := filepath.Join(r.out, providerDir, r.version)
	if err := os.RemoveAll(filepath.Join(r.out, providerDir)); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := checkMetadata(filepath.Join(r.root, "config", "metadata.yaml"), r.version); err != nil {
		return err
	}
	copies := map[string]string{
		filepath.Join(r.root, "config", "infrastructure-components.yaml"): "infrastructure-components.yaml",
		filepath.Join(r.root, "config", "metadata.yaml"):                  "metadata.yaml",
	}
	templates, err := filepath.Glob(filepath.Join(r.root, "config", "templates", "cluster-template*.yaml"))
	if err != nil {
		return err
	}
	if len(templates) == 0 {
		return fmt.Errorf("no config/templates/cluster-template*.yaml")
	}
	for _, t := range templates {
		copies[t] = filepath.Base(t)
	}
	for src, dst := range copies {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			return err
		}
	}
	snippet := fmt.Sprintf(`# clusterctl configuration for the rackboot infrastructure provider of this release.
# Merge into ~/.config/cluster-api/clusterctl.yaml (or pass --config FILE), then:
#   clusterctl init --infrastructure rackboot
#   clusterctl generate cluster NAME --infrastructure rackboot ... | kubectl apply -f -
# The url is where make dist wrote the repository; point it at wherever you copy
# infrastructure-rackboot/ (a file:// path or an https:// release URL).
providers:
- name: rackboot
  type: InfrastructureProvider
  url: file://%s
`, filepath.Join(dir, "infrastructure-components.yaml"))
	return os.WriteFile(filepath.Join(r.out, clusterctlConfigName), []byte(snippet), 0o644)
}

// checkMetadata fails when metadata.yaml has no release series for version: clusterctl
// would refuse the release ("invalid provider metadata").
func checkMetadata(path, version string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var md struct {
		ReleaseSeries []struct {
			Major, Minor int
			Contract     string
		} `json:"releaseSeries"`
	}
	if err := yaml.Unmarshal(b, &md); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	m := versionRe.FindStringSubmatch(version)
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	for _, s := range md.ReleaseSeries {
		if s.Major == major && s.Minor == minor {
			return nil
		}
	}
	return fmt.Errorf("%s has no releaseSeries for %d.%d: add {major: %d, minor: %d, contract: v1beta2} before releasing %s", path, major, minor, major, minor, version)
}
