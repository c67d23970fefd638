package bootenv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

// Published files of a build, in DataDir/bootenv and in its cache entry.
const (
	KernelFile    = "vmlinuz"
	InitramfsFile = "initramfs.gz"
	ManifestFile  = "manifest.json"
)

// keyRe is the form of a build key: hex, as Build makes it (20 digits), with room for
// a longer one if the key derivation changes.
var keyRe = regexp.MustCompile(`^[0-9a-f]{8,64}$`)

// ValidKey reports whether s has the form of a build key, so that a key taken from a
// URL can name a cache directory.
func ValidKey(s string) bool { return keyRe.MatchString(s) }

// KeyDir is where the build with key is kept under dir (DataDir/bootenv): dir/cache/KEY,
// holding vmlinuz, initramfs.gz and manifest.json. It outlives the publication of the
// next build (see Build), so a host that started booting it can finish.
func KeyDir(dir, key string) string { return filepath.Join(dir, "cache", key) }

// Published returns the environment last published in dir (DataDir/bootenv) by Build,
// as read from its manifest.json, which Build publishes after the kernel and the
// initramfs. The error wraps fs.ErrNotExist when nothing is published.
func Published(dir string) (Env, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return Env{}, fmt.Errorf("bootenv: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Env{}, fmt.Errorf("bootenv: %s is damaged (%w): run rackboot bootenv import again", filepath.Join(dir, ManifestFile), err)
	}
	if !ValidKey(m.Key) {
		return Env{}, fmt.Errorf("bootenv: %s has no valid build key (%q): run rackboot bootenv import again", filepath.Join(dir, ManifestFile), m.Key)
	}
	e := Env{
		Dir: dir, Kernel: filepath.Join(dir, KernelFile), Initramfs: filepath.Join(dir, InitramfsFile),
		KernelVersion: m.KernelVersion, Key: m.Key, Modules: len(m.Modules),
	}
	if _, err := os.Stat(e.Kernel); err != nil {
		return Env{}, fmt.Errorf("bootenv: the published kernel: %w", err)
	}
	st, err := os.Stat(e.Initramfs)
	if err != nil {
		return Env{}, fmt.Errorf("bootenv: the published initramfs: %w", err)
	}
	e.InitramfsSize = st.Size()
	return e, nil
}

// publishedKey is the key of the build published in dir, or "" when there is none.
func publishedKey(dir string) string {
	e, err := Published(dir)
	if err != nil {
		return ""
	}
	return e.Key
}
