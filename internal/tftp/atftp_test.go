package tftp

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestATFTPClient fetches each binary with atftp, Debian's stock client that negotiates
// windowsize (RFC 7440), with windowsize 16 and blksize 1468, and with no options at
// all (RFC 1350 lock-step, 512-byte blocks), and compares sha256 with the embedded
// file: a client that windows and PXE firmware that does not (OVMF asks blksize 1468
// and tsize only) get the same bytes. make deps installs atftp.
func TestATFTPClient(t *testing.T) {
	atftp, err := exec.LookPath("atftp")
	if err != nil {
		t.Skip("atftp not installed (apt-get install atftp); make test installs it")
	}
	ts := startServer(t, nil)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		opts []string
		oack []string // what atftp's trace must show in the OACK; none: no OACK
	}{
		{name: "windowsize 16, blksize 1468", opts: []string{"windowsize 16", "blksize 1468"}, oack: []string{"windowsize: 16", "blksize: 1468"}},
		{name: "windowsize 4", opts: []string{"windowsize 4"}, oack: []string{"windowsize: 4"}},
		{name: "blksize 1468, tsize", opts: []string{"blksize 1468", "tsize enable"}, oack: []string{"blksize: 1468", "tsize: "}},
		// atftp asks for no option unless told to: RFC 1350, 512-byte blocks.
		{name: "no options"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, file := range binaries {
				want := sha256.Sum256(embedded(t, file))
				out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+"-"+file)
				args := []string{"--trace", "--get", "-r", file, "-l", out}
				for _, o := range tc.opts {
					args = append(args, "--option", o)
				}
				args = append(args, "127.0.0.1", ts.port())
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				b, err := exec.CommandContext(ctx, atftp, args...).CombinedOutput()
				cancel()
				if err != nil {
					t.Fatalf("atftp %s: %v\n%s", strings.Join(args, " "), err, tail(b))
				}
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if sha256.Sum256(got) != want {
					t.Errorf("%s: %d bytes with sha256 %x, want the embedded %x", file, len(got), sha256.Sum256(got), want)
				}
				// The trace says "received OACK <windowsize: 16, blksize: 1468, >".
				var oack string
				for _, l := range strings.Split(string(b), "\n") {
					if strings.HasPrefix(l, "received OACK") {
						oack = l
					}
				}
				if len(tc.oack) == 0 && oack != "" {
					t.Errorf("%s: %q for a request without options", file, oack)
				}
				for _, o := range tc.oack {
					if !strings.Contains(oack, o) {
						t.Errorf("%s: OACK %q lacks %q", file, oack, o)
					}
				}
			}
		})
	}
}

// tail is the end of a tool's output, for a failure message.
func tail(b []byte) string {
	const n = 3000
	if len(b) > n {
		return fmt.Sprintf("...%s", b[len(b)-n:])
	}
	return string(b)
}
