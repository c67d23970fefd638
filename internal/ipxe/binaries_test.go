package ipxe

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var sumLine = regexp.MustCompile(`^([0-9a-f]{64})  (\S+)$`)

// provenanceSums parses the sha256sum-format lines of PROVENANCE.
func provenanceSums(t *testing.T) (map[string]string, map[string]string) {
	t.Helper()
	b, err := fs.ReadFile(Notices(), "PROVENANCE")
	if err != nil {
		t.Fatal(err)
	}
	sums, meta := map[string]string{}, map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if m := sumLine.FindStringSubmatch(line); m != nil {
			if _, dup := sums[m[2]]; dup {
				t.Errorf("PROVENANCE lists %s twice", m[2])
			}
			sums[m[2]] = m[1]
			continue
		}
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, "#") {
			meta[k] = v
		}
	}
	return sums, meta
}

// TestProvenance checks that every embedded binary is the one PROVENANCE describes,
// and that PROVENANCE describes nothing that is not embedded.
func TestProvenance(t *testing.T) {
	sums, meta := provenanceSums(t)
	if diff := cmp.Diff(map[string]string{
		"source-package": "ipxe",
		"version":        "1.0.0+git-20190125.36a4c85-5.1",
	}, map[string]string{"source-package": meta["source-package"], "version": meta["version"]}); diff != "" {
		t.Errorf("PROVENANCE header (-want +got):\n%s", diff)
	}

	entries, err := fs.ReadDir(Binaries(), ".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	listed := make([]string, 0, len(sums))
	for n := range sums {
		listed = append(listed, n)
	}
	sort.Strings(listed)
	if diff := cmp.Diff(listed, names); diff != "" {
		t.Errorf("embedded binaries differ from those PROVENANCE lists (-listed +embedded):\n%s", diff)
	}
	if diff := cmp.Diff([]string{IPXEEFI, SNPOnlyEFI, UndionlyKPXE}, names); diff != "" {
		t.Errorf("embedded binaries (-want +got):\n%s", diff)
	}
	for _, n := range names {
		b, err := fs.ReadFile(Binaries(), n)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != sums[n] {
			t.Errorf("%s: sha256 %s, PROVENANCE says %s", n, got, sums[n])
		}
	}
}

func TestNoticesCarryLicence(t *testing.T) {
	for name, want := range map[string]string{
		"COPYRIGHT": "License: GPL-2+",
		"GPL-2":     "GNU GENERAL PUBLIC LICENSE",
	} {
		b, err := fs.ReadFile(Notices(), name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", name, want)
		}
	}
	if _, err := fs.Stat(Binaries(), "PROVENANCE"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Binaries serves PROVENANCE (err %v): it must serve only the binaries", err)
	}
}

func TestOpenBinariesOverlay(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	must(t, os.WriteFile(outside, []byte("secret"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, SNPOnlyEFI), []byte("newer snponly"), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "arm64-efi"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, ARM64SNPOnlyEFI), []byte("arm64"), 0o644))
	must(t, os.Symlink(outside, filepath.Join(dir, "escape.efi")))
	must(t, os.Symlink("../../../../../../../../"+outside, filepath.Join(dir, "escape2.efi")))

	b, err := OpenBinaries(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if !b.Overlay() {
		t.Error("Overlay() = false with an existing directory")
	}
	embedded, err := fs.ReadFile(Binaries(), UndionlyKPXE)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		SNPOnlyEFI:      "newer snponly", // the operator's file wins
		ARM64SNPOnlyEFI: "arm64",         // only the operator has one
		UndionlyKPXE:    string(embedded),
	} {
		got, err := fs.ReadFile(b, name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if string(got) != want {
			t.Errorf("%s: got %d bytes, not the expected content", name, len(got))
		}
	}
	for _, name := range []string{"escape.efi", "escape2.efi", "../secret", "/etc/passwd", "arm64-efi/../../x"} {
		if got, err := fs.ReadFile(b, name); err == nil {
			t.Errorf("%s: read %q, want an error", name, got)
		}
	}
	if _, err := fs.ReadFile(b, "missing.efi"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing.efi: err = %v, want ErrNotExist", err)
	}
}

func TestOpenBinariesWithoutOverlay(t *testing.T) {
	for _, dir := range []string{"", filepath.Join(t.TempDir(), "absent")} {
		b, err := OpenBinaries(dir)
		if err != nil {
			t.Fatalf("OpenBinaries(%q): %v", dir, err)
		}
		if b.Overlay() {
			t.Errorf("OpenBinaries(%q).Overlay() = true", dir)
		}
		if _, err := fs.Stat(b, SNPOnlyEFI); err != nil {
			t.Errorf("OpenBinaries(%q): %v", dir, err)
		}
		if _, err := fs.Stat(b, ARM64SNPOnlyEFI); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("arm64 binary present without an overlay: %v", err)
		}
		must(t, b.Close())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
