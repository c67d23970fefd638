package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
)

// Secrets at rest. DATA_DIR holds the inventory (hosts, sealed user-data, hashed
// tokens), the admin API token and the admin TLS key, so no one but rackboot's user
// may read it. What rackboot creates there it owns, and it tightens what it finds too
// open (DATA_DIR to 0700, api-token, inventory.db and admin.key to 0600) with a
// warning, rather than refusing to start: an install made by `mkdir` and an older
// rackboot gets fixed, and the log says so. A file the operator names outside
// DATA_DIR (api.tokenFile, secretKeyFile) is the operator's: rackboot refuses it when
// group or other users can read it, and says how to fix it, instead of changing it.

// secureDataDir creates dataDir (0700) or tightens the one that is there.
func secureDataDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("dataDir (--data-dir): %w: give a directory rackboot may create and write", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("dataDir (--data-dir): %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("dataDir (--data-dir): %s is not a directory", dir)
	}
	return tighten(dir, 0o700, log)
}

// tighten removes the permission bits outside want from path, if it exists, and logs
// that it did.
func tighten(path string, want fs.FileMode, log *slog.Logger) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	perm := fi.Mode().Perm()
	if perm&^want == 0 {
		return nil
	}
	if err := os.Chmod(path, perm&want); err != nil {
		return fmt.Errorf("%s has mode %04o: group or other users can reach the secrets in it, and rackboot cannot change that: %w: run 'chmod %o %s' as its owner", path, perm, err, want, path)
	}
	log.Warn("tightened permissions: group or other users could reach rackboot's secrets", "path", path,
		"was", fmt.Sprintf("%04o", perm), "now", fmt.Sprintf("%04o", perm&want))
	return nil
}

// checkPrivate refuses a secret file of the operator's that group or other users can
// read or write. setting names it in the error.
func checkPrivate(path, setting string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", setting, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: %s has mode %04o: group or other users could read the secret in it: run 'chmod 600 %s'", setting, path, perm, path)
	}
	return nil
}
