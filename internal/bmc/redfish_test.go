package bmc

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// These tests drive bmclib's Redfish provider over real HTTP against redfishStub on
// loopback: the same code path as a rack, minus the BMC.

func stubTarget(t *testing.T, scheme, addr, user, pw, query string) Target {
	t.Helper()
	u := fmt.Sprintf("%s://%s@%s", scheme, user, addr)
	if query != "" {
		u += "?" + query
	}
	ep, err := ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Endpoint: ep, Password: Password(pw)}
}

func callCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestRedfishBackendPowerAndBoot(t *testing.T) {
	for _, auth := range []string{AuthSession, AuthBasic} {
		t.Run(auth, func(t *testing.T) {
			stub := newRedfishStub("admin", "pw-redfish")
			srv := httptest.NewServer(stub)
			t.Cleanup(srv.Close)
			b := NewLibBackend(LibConfig{})
			tg := stubTarget(t, "redfish+http", srv.Listener.Addr().String(), "admin", "pw-redfish", "auth="+auth)
			ctx := callCtx(t, 20*time.Second)

			state := func() PowerState {
				t.Helper()
				s, err := b.PowerState(ctx, tg)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			if s := state(); s != PowerOff {
				t.Fatalf("initial state %s", s)
			}
			steps := []struct {
				action    PowerAction
				want      PowerState
				resetType string
			}{
				{ActionOn, PowerOn, "On"},
				{ActionSoft, PowerOff, "GracefulShutdown"},
				// cycle of a host that is off powers it on (not ForceRestart, which Redfish refuses)
				{ActionCycle, PowerOn, "On"},
				{ActionCycle, PowerOn, "ForceRestart"},
				{ActionReset, PowerOn, "PowerCycle"},
				{ActionOff, PowerOff, "ForceOff"},
			}
			for _, st := range steps {
				before := stub.resetCount(st.resetType)
				if err := b.SetPower(ctx, tg, st.action); err != nil {
					t.Fatalf("%s: %v", st.action, err)
				}
				if got := stub.resetCount(st.resetType); got != before+1 {
					t.Fatalf("%s: %s resets %d -> %d, want one more", st.action, st.resetType, before, got)
				}
				if s := state(); s != st.want {
					t.Fatalf("after %s: %s, want %s", st.action, s, st.want)
				}
			}
			for _, c := range []struct {
				o    BootOptions
				want map[string]string
			}{
				{BootOptions{Device: BootPXE, UEFI: true}, map[string]string{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI"}},
				{BootOptions{Device: BootDisk, Persistent: true}, map[string]string{"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideMode": "Legacy"}},
			} {
				if err := b.SetBootDevice(ctx, tg, c.o); err != nil {
					t.Fatalf("bootdev %s: %v", c.o, err)
				}
				if d := cmp.Diff(c.want, stub.system("1").Boot); d != "" {
					t.Fatalf("boot after %s (-want +got):\n%s", c.o, d)
				}
			}
			if auth == AuthSession {
				stub.mu.Lock()
				n := len(stub.tokens)
				stub.mu.Unlock()
				if n != 0 {
					t.Fatalf("%d sessions left open: every call must log out", n)
				}
			}
		})
	}
}

func TestRedfishBackendSystemByName(t *testing.T) {
	stub := newRedfishStub("admin", "pw", "1", "2")
	srv := httptest.NewServer(stub)
	t.Cleanup(srv.Close)
	b := NewLibBackend(LibConfig{})
	ctx := callCtx(t, 20*time.Second)
	addr := srv.Listener.Addr().String()

	err := b.SetPower(ctx, stubTarget(t, "redfish+http", addr, "admin", "pw", ""), ActionOn)
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "?system=NAME") {
		t.Fatalf("two systems, none named: %v", err)
	}
	if err := b.SetPower(ctx, stubTarget(t, "redfish+http", addr, "admin", "pw", "system="+url.QueryEscape("System 2")), ActionOn); err != nil {
		t.Fatal(err)
	}
	if stub.system("2").PowerState != "On" || stub.system("1").PowerState != "Off" {
		t.Fatalf("system 1 %s, system 2 %s: the wrong system was powered", stub.system("1").PowerState, stub.system("2").PowerState)
	}
	err = b.SetPower(ctx, stubTarget(t, "redfish+http", addr, "admin", "pw", "system=nope"), ActionOn)
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), `no system named "nope"`) {
		t.Fatalf("unknown system: %v", err)
	}
}

func TestRedfishBackendTLS(t *testing.T) {
	stub := newRedfishStub("admin", "pw")
	srv := httptest.NewUnstartedServer(stub)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	ctx := callCtx(t, 20*time.Second)

	// Verified by default: the test server's certificate is self-signed.
	_, err := NewLibBackend(LibConfig{}).PowerState(ctx, stubTarget(t, "redfish", addr, "admin", "pw", ""))
	if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "bmc.redfishCAFile") || !strings.Contains(err.Error(), "?insecure=1") {
		t.Fatalf("self-signed certificate: %v", err)
	}
	// Skipping verification is the URL's explicit choice.
	if _, err := NewLibBackend(LibConfig{}).PowerState(ctx, stubTarget(t, "redfish", addr, "admin", "pw", "insecure=1")); err != nil {
		t.Fatalf("insecure=1: %v", err)
	}
	// Or the CA is given.
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	if _, err := NewLibBackend(LibConfig{RedfishRootCAs: pool}).PowerState(ctx, stubTarget(t, "redfish", addr, "admin", "pw", "")); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	// HTTPS to a plain-HTTP BMC says which scheme to use.
	plain := httptest.NewServer(stub)
	t.Cleanup(plain.Close)
	_, err = NewLibBackend(LibConfig{}).PowerState(ctx, stubTarget(t, "redfish", plain.Listener.Addr().String(), "admin", "pw", ""))
	if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "redfish+http://") {
		t.Fatalf("https to an http BMC: %v", err)
	}
}

func TestRedfishBackendErrors(t *testing.T) {
	stub := newRedfishStub("admin", "right-pw")
	srv := httptest.NewServer(stub)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	b := NewLibBackend(LibConfig{})

	t.Run("wrong password", func(t *testing.T) {
		for _, auth := range []string{AuthSession, AuthBasic} {
			_, err := b.PowerState(callCtx(t, 10*time.Second), stubTarget(t, "redfish+http", addr, "admin", "wrong-pw", "auth="+auth))
			if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), `refused user "admin"`) || !strings.Contains(err.Error(), "rackboot host bmc") {
				t.Fatalf("%s: %v", auth, err)
			}
			if strings.Contains(err.Error(), "wrong-pw") {
				t.Fatalf("the error carries the password: %v", err)
			}
		}
	})
	t.Run("closed port", func(t *testing.T) {
		closed := refusingAddr(t)
		_, err := b.PowerState(callCtx(t, 10*time.Second), stubTarget(t, "redfish+http", closed, "admin", "pw", ""))
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("closed port: %v", err)
		}
	})
	t.Run("never answers", func(t *testing.T) {
		ln := silentTCP(t)
		ctx := callCtx(t, 300*time.Millisecond)
		_, err := b.PowerState(ctx, stubTarget(t, "redfish+http", ln, "admin", "pw", ""))
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "did not answer") {
			t.Fatalf("silent BMC: %v", err)
		}
	})
	t.Run("server error", func(t *testing.T) {
		stub.failNext.Store(1)
		_, err := b.PowerState(callCtx(t, 10*time.Second), stubTarget(t, "redfish+http", addr, "admin", "right-pw", ""))
		if !errors.Is(err, ErrBMCFailure) || !strings.Contains(err.Error(), "HTTP 503") {
			t.Fatalf("503: %v", err)
		}
	})
}

// silentTCP accepts connections and never answers, like a wedged BMC web server.
func silentTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
			close(done)
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// refusingAddr is a loopback address where connections are refused for the whole test:
// a TCP socket bound to port 0 that never listens holds the port, so nothing else on
// the machine (another test package's server) can take it — as it could a port that was
// listened on and closed again.
func refusingAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}
