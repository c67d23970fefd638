package admin

import (
	"errors"
	"strings"
	"testing"
)

func TestParseListenAddr(t *testing.T) {
	cases := []struct {
		in, want, err string
		loopback      bool
	}{
		{in: "127.0.0.1:8443", want: "127.0.0.1:8443", loopback: true},
		{in: "[::1]:8443", want: "[::1]:8443", loopback: true},
		{in: "localhost:8443", want: "localhost:8443", loopback: true},
		{in: "10.0.0.1:8443", want: "10.0.0.1:8443"},
		{in: "0.0.0.0:8443", want: "0.0.0.0:8443"},
		{in: "unix:/var/lib/rackboot/admin.sock", want: "unix:/var/lib/rackboot/admin.sock", loopback: true},
		{in: "unix:///run/rb.sock", want: "unix:/run/rb.sock", loopback: true},
		{in: ":8443", err: "listens on every address"},
		{in: "unix:admin.sock", err: "ABSOLUTE"},
		{in: "unix:/" + strings.Repeat("x", 120), err: "107 bytes"},
		{in: "127.0.0.1", err: "not HOST:PORT"},
	}
	for _, tc := range cases {
		a, err := ParseListenAddr(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || a.String() != tc.want || a.Loopback() != tc.loopback {
			t.Errorf("%q = %v (loopback %v), %v; want %s (loopback %v)", tc.in, a, a.Loopback(), err, tc.want, tc.loopback)
		}
	}
}

func TestParseFingerprint(t *testing.T) {
	hex := strings.Repeat("0a", 32)
	colons := strings.ToUpper(strings.Join(strings.SplitAfterN(strings.Repeat("0a:", 32), ":", 32), ""))
	colons = strings.TrimSuffix(colons, ":")
	for _, in := range []string{hex, strings.ToUpper(hex), colons, "sha256:" + hex, "SHA256 Fingerprint=" + colons, " " + hex + "\n"} {
		got, err := ParseFingerprint(in)
		if err != nil || got != hex {
			t.Errorf("%q = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "abc", hex[:62], hex + "00", "zz" + hex[2:]} {
		if _, err := ParseFingerprint(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// TestNewClientRefusesPlainHTTPToOtherMachines: the token never leaves the machine in
// clear unless the operator says --insecure.
func TestNewClientRefusesPlainHTTPToOtherMachines(t *testing.T) {
	for _, s := range []string{"http://10.0.0.1:8443", "http://rackboot.example.net", "http://[2001:db8::1]:8443"} {
		if _, err := NewClient(ClientOptions{Server: s, Token: "t"}); !errors.Is(err, ErrPlainHTTP) {
			t.Errorf("%s: err = %v, want ErrPlainHTTP", s, err)
		}
		if _, err := NewClient(ClientOptions{Server: s, Token: "t", Insecure: true}); err != nil {
			t.Errorf("%s with Insecure: %v", s, err)
		}
	}
	for _, s := range []string{"http://127.0.0.1:8443", "http://localhost:8443", "http://[::1]:8443", "https://10.0.0.1:8443", "unix:/run/rb.sock"} {
		if _, err := NewClient(ClientOptions{Server: s, Token: "t"}); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"10.0.0.1:8443", "ftp://x", "https://10.0.0.1:8443/api", "unix:rel.sock"} {
		if _, err := NewClient(ClientOptions{Server: s, Token: "t"}); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
}
