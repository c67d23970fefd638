package provision

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
	"github.com/rackboot/rackboot/internal/ipxe"
	"github.com/rackboot/rackboot/internal/metadata"
)

// TestAgentClientOverHTTP runs the agent side of the protocol with agentapi's own
// client against the provisioner and the ipxe handler on a loopback server: the token
// comes from the iPXE script, the plan from hello, and a release stops the agent with
// ErrCancelled.
func TestAgentClientOverHTTP(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const loopback = "127.0.0.1"
	if _, err := e.store.UpdateHost(ctx, hostID, func(h *inventory.Host) error { h.IP = loopback; h.State = inventory.StateAvailable; return nil }); err != nil {
		t.Fatal(err)
	}
	// The plan's URLs follow the request's Host here.
	e.cfg.ServerURL = ""
	p, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	p.Register(mux)
	boot, err := ipxe.NewHandler(ipxe.HandlerConfig{Store: e.store, Binaries: ipxe.Binaries(), AgentTokens: p, Gate: p.Gate(),
		BootEnv: &ipxe.BootEnv{Kernel: "http://x/bootenv/vmlinuz", Initrds: []string{"http://x/bootenv/initramfs.gz"},
			Cmdline: "rackboot.url={{.ServerURL}} rackboot.mac={{.MAC}}"}})
	if err != nil {
		t.Fatal(err)
	}
	boot.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	if _, err := p.Provision(ctx, hostID, Request{Image: imageName}); err != nil {
		t.Fatal(err)
	}
	if err := p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	// The key DHCP's ACK would carry to the host's address.
	key := p.Gate().IssueKey(hostMAC, netip.MustParseAddr("127.0.0.1"))
	resp, err := http.Get(srv.URL + "/ipxe/boot.ipxe?mac=" + hostMAC + "&key=" + key)
	if err != nil {
		t.Fatal(err)
	}
	script, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`rackboot\.url=(\S+) rackboot\.mac=(\S+) rackboot\.token=(\S+) `).FindSubmatch(script)
	if m == nil {
		t.Fatalf("no agent arguments in the script:\n%s", script)
	}
	args, err := agentapi.ParseKernelArgs(string(m[0]))
	if err != nil {
		t.Fatal(err)
	}
	c := &agentapi.Client{BaseURL: args.URL, Token: args.Token, Retry: agentapi.Retry{Attempts: 1}}
	plan, err := c.Hello(ctx, agentapi.Hello{MAC: args.MAC, AgentVersion: "test", BootID: "b", Facts: testFacts()})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Action != agentapi.ActionProvision || plan.Provision.ImageURL != srv.URL+"/images/"+imageName {
		t.Fatalf("plan = %+v", plan.Provision)
	}
	if err := c.Progress(ctx, agentapi.Progress{Phase: agentapi.PhaseWrite, Disk: "vda", BytesDone: 1, BytesTotal: 4}); err != nil {
		t.Fatalf("progress: %v", err)
	}
	if _, err := p.Release(ctx, hostID, ReleaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Progress(ctx, agentapi.Progress{Phase: agentapi.PhaseWrite, Disk: "vda", BytesDone: 2, BytesTotal: 4}); !errors.Is(err, agentapi.ErrCancelled) {
		t.Fatalf("progress after release = %v, want ErrCancelled", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var se *agentapi.StatusError
	if err := c.Result(rctx, agentapi.Result{Action: agentapi.ActionProvision, OK: false, Error: "cancelled"}); !errors.As(err, &se) || se.Code != http.StatusConflict {
		t.Fatalf("result after release = %v, want a 409", err)
	}
}

// TestMetadataOverRealStore serves a provisioned host's NoCloud documents from the real
// inventory: the user-data only to the host's address (403 and an event otherwise, 404
// for a wrong token), and the phone-home makes the host provisioned.
func TestMetadataOverRealStore(t *testing.T) {
	e := newEnv(t)
	ud := "#cloud-config\nwrite_files: [{path: /root/marker, content: hello}]\n"
	agentTok, plan := provisionToDisk(t, e, Request{UserData: []byte(ud)})
	md, err := metadata.NewHandler(metadata.Config{Store: e.store, Gate: e.p.Gate(), PhoneHome: e.p, ServerURL: serverURL})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	md.Register(mux)
	seed := strings.TrimPrefix(plan.Provision.CloudInit.SeedURL, serverURL)
	get := func(method, path, src string) (int, string) {
		req := httptest.NewRequest(method, path, nil)
		req.RemoteAddr = src + ":3000"
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := get("GET", seed+"user-data", hostIP); code != 200 || body != ud {
		t.Errorf("user-data from the host: %d %q", code, body)
	}
	if code, body := get("GET", seed+"meta-data", hostIP); code != 200 || !strings.Contains(body, "instance-id: "+hostID+"-"+e.host().Provision.ID) {
		t.Errorf("meta-data: %d %q", code, body)
	}
	if code, body := get("GET", seed+"user-data", otherIP); code != 403 || strings.Contains(body, "marker") {
		t.Errorf("user-data from another address: %d %q", code, body)
	}
	if !hasEvent(e.events(), metadata.EventRejected, otherIP) {
		t.Errorf("no metadata.rejected event:\n%s", dumpEvents(e.events()))
	}
	if code, _ := get("GET", "/metadata/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/user-data", hostIP); code != 404 {
		t.Errorf("wrong token: %d", code)
	}
	// The agent's token is no key to the host's metadata.
	if code, _ := get("GET", "/metadata/"+agentTok+"/user-data", hostIP); code != 404 {
		t.Errorf("user-data with the agent's token: %d, want 404", code)
	}
	// Nor is the metadata token a key to the agent API.
	metaTok := strings.TrimSuffix(strings.TrimPrefix(seed, metadata.PathPrefix), "/")
	if code := e.call(agentapi.PathProgress, metaTok, hostIP, agentapi.Progress{Phase: agentapi.PhaseWrite}).Code; code != http.StatusUnauthorized {
		t.Errorf("agent API with the metadata token: %d, want 401", code)
	}
	if code, _ := get("POST", seed+"phonehome", hostIP); code != 200 {
		t.Fatalf("phone-home: %d", code)
	}
	e.wantState(inventory.StateProvisioned, "")
}
