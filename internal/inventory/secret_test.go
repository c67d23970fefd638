package inventory

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestSealerRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Seal([]byte("hunter2"), "host-a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Seal([]byte("hunter2"), "host-a")
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same value are identical: the nonce is not random")
	}
	if bytes.Contains(a, []byte("hunter2")) {
		t.Fatal("sealed value contains the plaintext")
	}
	pt, err := s.Open(a, "host-a")
	if err != nil || string(pt) != "hunter2" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	other, _ := NewSealer(bytes.Repeat([]byte{8}, KeySize))
	tampered := append([]byte(nil), a...)
	tampered[len(tampered)-1] ^= 1
	for name, try := range map[string]func() ([]byte, error){
		"other label":     func() ([]byte, error) { return s.Open(a, "host-b") },
		"other key":       func() ([]byte, error) { return other.Open(a, "host-a") },
		"tampered":        func() ([]byte, error) { return s.Open(tampered, "host-a") },
		"truncated":       func() ([]byte, error) { return s.Open(a[:10], "host-a") },
		"unknown version": func() ([]byte, error) { return s.Open(append([]byte{9}, a[1:]...), "host-a") },
	} {
		if _, err := try(); !errors.Is(err, ErrUnseal) {
			t.Errorf("%s: err = %v, want ErrUnseal", name, err)
		}
	}
	if _, err := NewSealer(key[:16]); err == nil {
		t.Fatal("a 16-byte key was accepted")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret.key")
	key, created, err := LoadOrCreateKey(path)
	if err != nil || !created || len(key) != KeySize {
		t.Fatalf("first call: %d bytes, created=%v, %v", len(key), created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != KeySize {
		t.Fatalf("key file mode %v size %d, want 0600 and %d", fi.Mode().Perm(), fi.Size(), KeySize)
	}
	again, created, err := LoadOrCreateKey(path)
	if err != nil || created || !bytes.Equal(again, key) {
		t.Fatalf("second call: created=%v equal=%v %v", created, bytes.Equal(again, key), err)
	}

	cases := []struct {
		name  string
		setup func(p string)
		want  []string
	}{
		{"world-readable", func(p string) { os.WriteFile(p, key, 0o600); os.Chmod(p, 0o644) }, []string{"mode 0644", "chmod 600 " + filepath.Join(dir, "world-readable")}},
		{"group-readable", func(p string) { os.WriteFile(p, key, 0o600); os.Chmod(p, 0o640) }, []string{"mode 0640", "chmod 600"}},
		{"short", func(p string) { os.WriteFile(p, key[:16], 0o600) }, []string{"holds 16 bytes, want 32", "restore it from a backup"}},
		{"hex text", func(p string) { os.WriteFile(p, []byte(hex.EncodeToString(key)), 0o600) }, []string{"holds 64 bytes"}},
		{"directory", func(p string) { os.Mkdir(p, 0o700) }, []string{"not a regular file"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			c.setup(p)
			_, _, err := LoadOrCreateKey(p)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// Open refuses to start with it too.
			if _, err := Open(filepath.Join(t.TempDir(), "inventory.db"), Options{SecretKeyFile: p}); err == nil {
				t.Fatal("Open accepted the bad key")
			}
		})
	}
	if _, _, err := LoadOrCreateKey(filepath.Join(dir, "missing", "secret.key")); err == nil || !strings.Contains(err.Error(), "data directory") {
		t.Fatalf("uncreatable key: %v", err)
	}
}

// TestPasswordNeverInBoltFile writes passwords through every path that stores one and
// then searches the raw bytes of the bbolt file for them.
func TestPasswordNeverInBoltFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, keyFile := filepath.Join(dir, "inventory.db"), filepath.Join(dir, "secret.key")
	s, err := Open(db, Options{SecretKeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	passwords := []string{"Pw-created-9c1e7d", "Pw-batch-22aa31", "Pw-updated-5f5f0b"}
	if _, err := s.CreateHosts(ctx, Host{ID: "a", MACs: []string{"52:54:00:00:00:0a"}, BMC: &BMC{URL: "ipmi://admin@10.0.0.2", Password: passwords[0]}}); err != nil {
		t.Fatal(err)
	}
	var batch []Host
	for i := 0; i < 50; i++ {
		batch = append(batch, Host{MACs: []string{"52:54:00:00:01:" + hex.EncodeToString([]byte{byte(i)})}, BMC: &BMC{URL: "redfish://root@bmc", Password: passwords[1]}})
	}
	if _, err := s.CreateHosts(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateHost(ctx, "a", func(h *Host) error { h.BMC.Password = passwords[2]; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range passwords {
		for _, form := range []string{pw, base64.StdEncoding.EncodeToString([]byte(pw)), hex.EncodeToString([]byte(pw))} {
			if bytes.Contains(raw, []byte(form)) {
				t.Errorf("the bbolt file contains %q", form)
			}
		}
	}
	if !bytes.Contains(raw, []byte("ipmi://admin@10.0.0.2")) {
		t.Fatal("the BMC URL is not in the file: the search looks in the wrong place")
	}
	// The passwords are there, sealed: the same key opens them after a restart.
	s, err = Open(db, Options{SecretKeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if creds, err := s.BMCCredentials(ctx, "a"); err != nil || creds.Password != passwords[2] {
		t.Fatalf("after reopen: %+v, %v", creds, err)
	}
}

func TestWrongKeySaysWhatToDo(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "inventory.db")
	s, err := Open(db, Options{SecretKeyFile: filepath.Join(dir, "a.key")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateHosts(ctx, Host{ID: "a", MACs: []string{"52:54:00:00:00:0a"}, BMC: &BMC{URL: "ipmi://admin@h", Password: "pw"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(db, Options{SecretKeyFile: filepath.Join(dir, "b.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.BMCCredentials(ctx, "a")
	if err == nil || !strings.Contains(err.Error(), "restore that key file") || !strings.Contains(err.Error(), "rackboot host bmc a") {
		t.Fatalf("wrong key: %v", err)
	}
	// Everything else still reads.
	if h, err := s.GetHost(ctx, "a"); err != nil || !h.BMC.PasswordSet {
		t.Fatalf("GetHost with the wrong key: %+v, %v", h.BMC, err)
	}
}

func TestNoKeyRefusesPasswords(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "inventory.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.CreateHosts(ctx, Host{ID: "a", MACs: []string{"52:54:00:00:00:0a"}, BMC: &BMC{URL: "ipmi://admin@h", Password: "pw"}})
	if err == nil || !strings.Contains(err.Error(), "without a secret key") {
		t.Fatalf("create with a password and no key: %v", err)
	}
	if hs, _ := s.ListHosts(ctx); len(hs) != 0 {
		t.Fatal("the host was written")
	}
	// A BMC without a password needs no key.
	if _, err := s.CreateHosts(ctx, Host{ID: "a", MACs: []string{"52:54:00:00:00:0a"}, BMC: &BMC{URL: "ipmi://admin@h"}}); err != nil {
		t.Fatal(err)
	}
}

// TestSealsClearPasswordsOfOlderBuilds: a file written before passwords were sealed is
// fixed the first time a store with a key opens it.
func TestSealsClearPasswordsOfOlderBuilds(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "inventory.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateHosts(ctx, Host{ID: "old", MACs: []string{"52:54:00:00:00:0a"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// What the previous build wrote: the password inside the host record.
	raw, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	hostValue := func() []byte {
		var v []byte
		raw.View(func(tx *bolt.Tx) error {
			v = append([]byte(nil), tx.Bucket(bucketHosts).Get([]byte("old"))...)
			return nil
		})
		return v
	}
	var h Host
	json.Unmarshal(hostValue(), &h)
	h.BMC = &BMC{URL: "ipmi://admin@h", Password: "legacy-pw"}
	if err := raw.Update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketHosts), []byte("old"), &h) }); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	// Without a key the password stays put but no read returns it.
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetHost(ctx, "old"); got.BMC.Password != "" || !got.BMC.PasswordSet {
		t.Fatalf("GetHost of a legacy record: %+v", got.BMC)
	}
	s.Close()

	s, err = Open(path, Options{SecretKeyFile: filepath.Join(dir, "secret.key")})
	if err != nil {
		t.Fatal(err)
	}
	if creds, err := s.BMCCredentials(ctx, "old"); err != nil || creds.Password != "legacy-pw" {
		t.Fatalf("after sealing: %+v, %v", creds, err)
	}
	s.Close()
	raw, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if v := hostValue(); bytes.Contains(v, []byte("legacy-pw")) || !bytes.Contains(v, []byte(`"passwordSet":true`)) {
		t.Fatalf("host record after sealing: %s", v)
	}
}
