package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// BMCSimPackage is the lab's BMC emulators' command: ipmi_sim's chassis_control hook,
// the Redfish service and direct VM power (internal/lab/bmcsim). It is not part of rackboot.
const BMCSimPackage = "github.com/rackboot/rackboot/internal/lab/cmd/rackboot-bmcsim"

var bmcsimBin struct {
	once sync.Once
	path string
	err  error
}

// BMCSimBinary builds BMCSimPackage once per process (static, from the repository the
// working directory is in) and returns its path: CacheDir()/bin/rackboot-bmcsim-SHA,
// named by its content, so checkouts sharing the cache never replace each other's and a
// running BMC keeps its file. Builds of other content older than a day are removed.
func BMCSimBinary() (string, error) {
	bmcsimBin.once.Do(func() { bmcsimBin.path, bmcsimBin.err = buildBMCSim() })
	return bmcsimBin.path, bmcsimBin.err
}

func buildBMCSim() (string, error) {
	mod, err := findRepoFile("go.mod")
	if err != nil {
		return "", err
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".rackboot-bmcsim-*")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command("go", "build", "-o", tmp.Name(), BMCSimPackage)
	cmd.Dir = filepath.Dir(mod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("CGO_ENABLED=0 go build %s: %w\n%s", BMCSimPackage, err, out)
	}
	sum, err := fileSHA256(tmp.Name())
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "rackboot-bmcsim-"+sum[:16])
	if now := time.Now(); os.Chtimes(path, now, now) != nil {
		if err := os.Chmod(tmp.Name(), 0o755); err != nil {
			return "", err
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return "", err
		}
	}
	old, _ := filepath.Glob(filepath.Join(dir, "rackboot-bmcsim-*"))
	for _, o := range old {
		if fi, err := os.Stat(o); err == nil && o != path && time.Since(fi.ModTime()) > 24*time.Hour &&
			!strings.HasPrefix(filepath.Base(o), ".") {
			os.Remove(o)
		}
	}
	return path, nil
}
