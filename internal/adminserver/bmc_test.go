package adminserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/admin"
	"github.com/rackboot/rackboot/internal/bmc"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/lab/bmcsim"
)

func startBMCService(t *testing.T, cfg bmc.Config) *bmc.Service {
	t.Helper()
	svc, err := bmc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-svc.Ready()
	return svc
}

// TestBMCRoutesOverTheWire: the admin API, the BMC service and bmclib's Redfish
// provider against the lab's Redfish emulator on loopback, end to end.
func TestBMCRoutesOverTheWire(t *testing.T) {
	const password = "pw-Api-Redfish-5e"
	m := bmcsim.NewMemoryMachine()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bmcsim.ServeRedfishTB(t, ln, "root", password, m)
	ctx := context.Background()

	var e *apiEnv
	svc := startBMCService(t, bmc.Config{Store: lazyStore{&e}, Timeout: 10 * time.Second})
	e = newAPIWith(t, svc)
	url := "redfish+http://root@" + ln.Addr().String()

	// Enrolled without a password, then given one with PUT .../bmc.
	if _, err := e.client.CreateHost(ctx, admin.HostSpec{ID: "n1", MACs: []string{"52:54:00:00:00:01"}, BMC: &inventory.BMC{URL: url}}); err != nil {
		t.Fatal(err)
	}
	_, err = e.client.PowerStatus(ctx, "n1")
	if !errors.Is(err, bmc.ErrAuth) {
		t.Fatalf("status without a password: %v", err)
	}
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadGateway || ae.Code != "bmc_auth" || !strings.Contains(ae.Message, `refused user "root"`) {
		t.Fatalf("API error %+v", ae)
	}
	h, err := e.client.SetBMC(ctx, "n1", admin.BMCRequest{URL: url, Password: password})
	if err != nil || h.BMC.URL != url || !h.BMC.PasswordSet {
		t.Fatalf("SetBMC = %+v, %v", h.BMC, err)
	}

	st, err := e.client.PowerStatus(ctx, "n1")
	if err != nil || st.State != bmc.PowerOff || st.BMC != url || st.Operation != "power_status" {
		t.Fatalf("status = %+v, %v", st, err)
	}
	res, err := e.client.SetBootDevice(ctx, "n1", admin.BootDeviceRequest{Device: bmc.BootPXE})
	if err != nil || res.Boot == nil || *res.Boot != (bmc.BootOptions{Device: bmc.BootPXE, UEFI: true}) {
		t.Fatalf("bootdev = %+v, %v", res, err)
	}
	if got, _ := m.BootOverride(ctx); got != (bmcsim.BootOverride{Target: bmcsim.BootPXE, Persistence: bmcsim.BootOnce, Mode: bmcsim.BootUEFI}) {
		t.Fatalf("emulator boot override %+v, want pxe once uefi", got)
	}
	if _, err := e.client.Power(ctx, "n1", bmc.ActionCycle); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.client.PowerStatus(ctx, "n1"); st.State != bmc.PowerOn {
		t.Fatalf("after cycle: %+v", st)
	}
	// The machine consumed the one-time override when it powered on.
	if got, _ := m.BootOverride(ctx); got.Target != bmcsim.BootNone {
		t.Fatalf("after power-on the once override is still %+v", got)
	}
	// A URL change alone keeps the password.
	if _, err := e.client.SetBMC(ctx, "n1", admin.BMCRequest{URL: url + "?auth=basic"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Power(ctx, "n1", bmc.ActionOff); err != nil {
		t.Fatalf("off after URL change: %v", err)
	}
	if st, _ := m.PowerState(ctx); st != bmcsim.PowerOff {
		t.Fatal("the emulator's machine is still on")
	}

	// The timeline has the admin change and the BMC's actions; nothing anywhere has the password.
	evs, err := e.client.Events(ctx, "n1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	want := []string{"admin.created", "bmc.error", "admin.bmc", "bmc.power", "bmc.bootdev", "bmc.power", "bmc.power", "admin.bmc", "bmc.power"}
	if d := cmp.Diff(want, types); d != "" {
		t.Fatalf("timeline (-want +got):\n%s", d)
	}
	for _, r := range []response{e.raw("GET", "/api/v1/hosts/n1", ""), e.raw("GET", "/api/v1/hosts/n1/events", ""), e.raw("GET", "/api/v1/hosts", "")} {
		if strings.Contains(r.body, password) {
			t.Fatalf("response carries the password: %s", r.body)
		}
	}
	if strings.Contains(e.logs.String(), password) {
		t.Fatalf("logs carry the password:\n%s", e.logs.String())
	}

	if h, err := e.client.ClearBMC(ctx, "n1"); err != nil || h.BMC != nil {
		t.Fatalf("ClearBMC = %+v, %v", h.BMC, err)
	}
	if _, err := e.client.PowerStatus(ctx, "n1"); !errors.Is(err, bmc.ErrNoBMC) || !strings.Contains(err.Error(), "rackboot host bmc n1") {
		t.Fatalf("status without BMC: %v", err)
	}
	if creds, _ := e.store.BMCCredentials(ctx, "n1"); creds != (inventory.BMC{}) {
		t.Fatalf("password left after DELETE: %+v", creds)
	}
}

// lazyStore lets the BMC service be built before the API env that owns the store.
type lazyStore struct{ e **apiEnv }

func (l lazyStore) BMCCredentials(ctx context.Context, id string) (inventory.BMC, error) {
	return (*l.e).store.BMCCredentials(ctx, id)
}

func (l lazyStore) AppendEvent(ctx context.Context, id string, ev inventory.Event) (inventory.Event, error) {
	return (*l.e).store.AppendEvent(ctx, id, ev)
}

// failingBackend fails every call with err; it records the boot options it was given.
type failingBackend struct {
	mu   sync.Mutex
	err  error
	boot []bmc.BootOptions
}

func (f *failingBackend) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *failingBackend) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *failingBackend) PowerState(context.Context, bmc.Target) (bmc.PowerState, error) {
	return bmc.PowerOn, f.fail()
}
func (f *failingBackend) SetPower(context.Context, bmc.Target, bmc.PowerAction) error {
	return f.fail()
}
func (f *failingBackend) SetBootDevice(_ context.Context, _ bmc.Target, o bmc.BootOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.boot = append(f.boot, o)
	return f.err
}

func TestBMCErrorStatuses(t *testing.T) {
	fb := &failingBackend{}
	var e *apiEnv
	svc := startBMCService(t, bmc.Config{Store: lazyStore{&e}, Backend: fb, Timeout: 5 * time.Second, MaxAttempts: 1})
	e = newAPIWith(t, svc)
	ctx := context.Background()
	if _, err := e.client.ImportHosts(ctx, []admin.HostSpec{
		{ID: "n1", MACs: []string{"52:54:00:00:00:01"}, BMC: &inventory.BMC{URL: "ipmi://admin@10.0.0.5", Password: "pw"}},
		{ID: "bios", MACs: []string{"52:54:00:00:00:02"}, Firmware: inventory.FirmwareBIOS, BMC: &inventory.BMC{URL: "ipmi://admin@10.0.0.6", Password: "pw"}},
		{ID: "nobmc", MACs: []string{"52:54:00:00:00:03"}},
	}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{bmc.ErrAuth, 502, "bmc_auth"},
		{bmc.ErrUnreachable, 502, "bmc_unreachable"},
		{bmc.ErrTLS, 502, "bmc_tls"},
		{bmc.ErrRejected, 502, "bmc_rejected"},
		{bmc.ErrBMCFailure, 502, "bmc_bmc_error"},
		{bmc.ErrTimeout, 504, "bmc_timeout"},
		{bmc.ErrSetup, 500, "bmc_setup"},
	}
	for _, c := range cases {
		t.Run(c.code, func(t *testing.T) {
			fb.set(c.err)
			r := e.raw("POST", "/api/v1/hosts/n1/power", `{"action":"cycle"}`)
			if r.status != c.status || !strings.Contains(r.body, `"code":"`+c.code+`"`) || !strings.Contains(r.body, "host n1: power cycle via ipmi://admin@10.0.0.5:623") {
				t.Fatalf("%d %s", r.status, r.body)
			}
			// The typed client matches the class across the wire.
			if _, err := e.client.Power(ctx, "n1", bmc.ActionOn); !errors.Is(err, c.err) {
				t.Fatalf("client error %v is not %v", err, c.err)
			}
		})
	}
	fb.set(nil)
	for _, c := range []struct {
		method, path, body string
		status             int
		mentions           string
	}{
		{"POST", "/api/v1/hosts/nobmc/power", `{"action":"on"}`, 409, "has no BMC"},
		{"POST", "/api/v1/hosts/ghost/power", `{"action":"on"}`, 404, "no host with ID"},
		{"GET", "/api/v1/hosts/ghost/power", "", 404, "no host with ID"},
		{"POST", "/api/v1/hosts/n1/power", `{"action":"status"}`, 400, "use on, off (hard), soft"},
		{"POST", "/api/v1/hosts/n1/power", `{"action":"on","force":true}`, 400, "unknown field"},
		{"POST", "/api/v1/hosts/n1/bootdev", `{"device":"usb"}`, 400, "use pxe"},
		{"PUT", "/api/v1/hosts/n1/bmc", `{"url":"http://admin@10.0.0.5"}`, 400, "unknown BMC protocol"},
		{"PUT", "/api/v1/hosts/n1/bmc", `{"url":"ipmi://admin:pw@10.0.0.5"}`, 400, "carries a password"},
		{"PUT", "/api/v1/hosts/ghost/bmc", `{"url":"ipmi://admin@10.0.0.5"}`, 404, "no host"},
		{"GET", "/api/v1/hosts/n1/bmc", "", 405, "use PUT, DELETE"},
	} {
		r := e.raw(c.method, c.path, c.body)
		if r.status != c.status || !strings.Contains(r.body, c.mentions) {
			t.Errorf("%s %s %s: %d %s, want %d mentioning %q", c.method, c.path, c.body, r.status, r.body, c.status, c.mentions)
		}
	}

	// UEFI follows the host's firmware unless the request says.
	for _, c := range []struct {
		host string
		body string
		want bmc.BootOptions
	}{
		{"n1", `{"device":"pxe"}`, bmc.BootOptions{Device: bmc.BootPXE, UEFI: true}},
		{"bios", `{"device":"pxe"}`, bmc.BootOptions{Device: bmc.BootPXE}},
		{"bios", `{"device":"disk","persistent":true,"uefi":true}`, bmc.BootOptions{Device: bmc.BootDisk, Persistent: true, UEFI: true}},
		{"n1", `{"device":"disk","uefi":false}`, bmc.BootOptions{Device: bmc.BootDisk}},
	} {
		if r := e.raw("POST", "/api/v1/hosts/"+c.host+"/bootdev", c.body); r.status != 200 {
			t.Fatalf("%s %s: %d %s", c.host, c.body, r.status, r.body)
		}
		fb.mu.Lock()
		got := fb.boot[len(fb.boot)-1]
		fb.mu.Unlock()
		if got != c.want {
			t.Errorf("%s %s: backend got %+v, want %+v", c.host, c.body, got, c.want)
		}
	}
}

func TestBMCRoutesDisabled(t *testing.T) {
	e := newAPI(t)
	if _, err := e.client.CreateHost(context.Background(), admin.HostSpec{ID: "n1", MACs: []string{"52:54:00:00:00:01"}, BMC: &inventory.BMC{URL: "ipmi://a@h"}}); err != nil {
		t.Fatal(err)
	}
	r := e.raw("POST", "/api/v1/hosts/n1/power", `{"action":"on"}`)
	if r.status != 503 || !strings.Contains(r.body, "BMC control is not enabled") {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// Setting the BMC needs only the store.
	if r := e.raw("PUT", "/api/v1/hosts/n1/bmc", `{"url":"ipmi://admin@10.0.0.5","password":"x"}`); r.status != 200 || strings.Contains(r.body, `"password"`) {
		t.Fatalf("PUT bmc: %d %s", r.status, r.body)
	}
}
