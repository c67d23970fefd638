package main

import (
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/inventory"
)

// TestImageStateConverted: a ready converted image says what was verified (the qcow2's
// sum) and what hosts get; a pending one names its phase.
func TestImageStateConverted(t *testing.T) {
	sum, served := strings.Repeat("a", 64), strings.Repeat("b", 64)
	ready := admin.Image{Name: "x", Status: inventory.ImageReady, SHA256: sum, ServedSHA256: served, SourceFormat: inventory.FormatQcow2,
		Format: "zstd", Size: 200 << 20, DiskSize: 1 << 30}
	got := imageState(ready)
	for _, w := range []string{"qcow2 image, sha256 " + sum + " verified", "zstd-compressed raw disk of 1.0 GiB", "200.0 MiB", "sha256 " + served} {
		if !strings.Contains(got, w) {
			t.Errorf("imageState = %q, lacks %q", got, w)
		}
	}
	pending := admin.Image{Name: "x", Status: inventory.ImagePending, Phase: inventory.ImageConvert, BytesDone: 1 << 29, BytesTotal: 1 << 30, Size: 200 << 20}
	if got := imageState(pending); got != "pending (converting 512.0 MiB of 1.0 GiB)" {
		t.Errorf("imageState(pending) = %q", got)
	}
	if col := imageResource.columns[3].value(ready); col != "qcow2>zstd" {
		t.Errorf("FORMAT column = %q", col)
	}
}

func TestETAClock(t *testing.T) {
	var e etaClock
	t0 := time.Unix(1000, 0)
	if s := e.left(t0, 0, 100); s != "" {
		t.Errorf("first sample: %q", s)
	}
	if s := e.left(t0.Add(10*time.Second), 25, 100); s != ", about 30s left" {
		t.Errorf("after 25 of 100 in 10s: %q", s)
	}
	if s := e.left(t0.Add(20*time.Second), 100, 100); s != "" {
		t.Errorf("done: %q", s)
	}
}
