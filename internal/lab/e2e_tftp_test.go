package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ipxeDir is where Debian's ipxe package puts the binaries rackboot embeds.
const ipxeDir = "/usr/lib/ipxe"

// TestNetnsRackbootTFTP is issue 2 "done when" 5: stock TFTP clients in a client
// namespace fetch each iPXE binary from rackboot and get exactly Debian's bytes — curl
// with blksize 1468 (the capture shows 1468-byte DATA blocks really went over the wire)
// and tftp-hpa with the default 512 — and paths climbing out with ../ are refused.
func TestNetnsRackbootTFTP(t *testing.T) {
	Require(t, "curl", "tftp")
	t.Parallel()
	dir := logDir(t)
	seg := newSegment(t, "tftp", "10.77.0.1/24")
	rb := startRackboot(t, seg.NS, dir, serverIP, "--dhcp-mode", "off")
	client := addClient(t, seg, "tftp-c", "52:54:00:13:00:01")
	if err := client.IP("addr", "add", "10.77.0.20/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	capture, err := client.CaptureUDP(t, "eth0", 0)
	if err != nil {
		t.Fatal(err)
	}
	exec := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		return client.Exec(ctx, args...)
	}

	for _, name := range []string{"undionly.kpxe", "snponly.efi", "ipxe.efi"} {
		want, err := os.ReadFile(filepath.Join(ipxeDir, name))
		if err != nil {
			t.Fatalf("%v (apt-get install ipxe)", err)
		}
		t.Run(name+"/curl blksize 1468", func(t *testing.T) {
			out := filepath.Join(dir, "curl-"+name)
			start := time.Now()
			if _, err := exec("curl", "--silent", "--show-error", "--tftp-blksize", "1468", "--max-time", "50",
				"-o", out, "tftp://"+serverIP+"/"+name); err != nil {
				t.Fatalf("%v\nrackboot:\n%s", err, Tail(rb.proc.Log, 20))
			}
			elapsed := time.Since(start)
			got := mustRead(t, out)
			if !bytes.Equal(got, want) {
				t.Fatalf("curl got %d bytes of %s, differing from %s/%s (%d bytes)", len(got), name, ipxeDir, name, len(want))
			}
			t.Logf("%s: %d bytes in %v", name, len(got), elapsed.Round(time.Millisecond))
		})
		t.Run(name+"/tftp-hpa", func(t *testing.T) {
			out := filepath.Join(dir, "tftp-hpa-"+name)
			stdout, err := exec("tftp", "-m", "binary", serverIP, "-c", "get", name, out)
			if err != nil {
				t.Fatalf("%v: %s", err, stdout)
			}
			if got := mustRead(t, out); !bytes.Equal(got, want) {
				t.Fatalf("tftp-hpa got %d bytes of %s, differing from %s/%s (%d bytes): %s", len(got), name, ipxeDir, name, len(want), stdout)
			}
		})
	}

	// DATA blocks (opcode 3) from the server: curl asked for 1468-byte blocks, so the
	// largest must be exactly 4+1468 bytes of UDP payload; tftp-hpa's are 4+512.
	sizes := map[int]int{}
	for _, p := range capture.Packets() {
		if p.Src.Addr().String() == serverIP && len(p.Payload) >= 4 && binary.BigEndian.Uint16(p.Payload) == 3 {
			sizes[len(p.Payload)-4]++
		}
	}
	if sizes[1468] == 0 || sizes[512] == 0 {
		t.Errorf("DATA block sizes seen (size: count) = %v, want full blocks of 1468 (curl, blksize) and 512 (tftp-hpa, default)", sizes)
	}
	for size := range sizes {
		if size > 1468 {
			t.Errorf("saw a %d-byte DATA block, larger than any negotiated blksize", size)
		}
	}

	t.Run("traversal refused", func(t *testing.T) {
		for _, path := range []string{"../../../../etc/passwd", "../etc/passwd", "/etc/passwd", "bin/../../etc/passwd"} {
			out := filepath.Join(dir, "traversal.out")
			_ = os.Remove(out)
			_, curlErr := exec("curl", "--silent", "--path-as-is", "--max-time", "10", "-o", out, "tftp://"+serverIP+"/"+path)
			if curlErr == nil {
				t.Errorf("curl fetched %q: the server should refuse it", path)
			}
			if b, _ := os.ReadFile(out); len(b) > 0 {
				t.Errorf("curl wrote %d bytes for %q", len(b), path)
			}
			_ = os.Remove(out)
			stdout, err := exec("tftp", "-m", "binary", serverIP, "-c", "get", path, out)
			if err != nil {
				stdout = append(stdout, err.Error()...) // tftp-hpa reports on stderr
			}
			if b, _ := os.ReadFile(out); len(b) > 0 {
				t.Errorf("tftp-hpa got %d bytes for %q (%s)", len(b), path, stdout)
			}
			if !bytes.Contains(stdout, []byte("Error code")) {
				t.Errorf("tftp-hpa get %q: output %q, want a TFTP error packet", path, stdout)
			}
		}
	})
	if exited, err := rb.proc.Exited(); exited {
		t.Errorf("rackboot exited during the TFTP test: %v", err)
	}
}
