package ipxe

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackboot/rackboot/internal/inventory"
)

// agentBootEnv has the shape bootenv.Env.BootEnv produces: the token is not in it, it
// comes per boot through AgentArgs.
func agentBootEnv() *BootEnv {
	return &BootEnv{
		Kernel:  "http://10.0.0.1:8080/bootenv/vmlinuz",
		Initrds: []string{"http://10.0.0.1:8080/bootenv/initramfs.gz"},
		Cmdline: "console=tty0 console=ttyS0,115200n8 rackboot.url={{.ServerURL}} rackboot.mac={{.MAC}}",
	}
}

const testAgentArgs = "rackboot.token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// TestRenderScriptAgentGolden covers the scripts of the provisioning states: the agent
// with its per-boot token in the three agent states, and local boot once a
// provisioning host's image is written.
func TestRenderScriptAgentGolden(t *testing.T) {
	tests := []struct {
		name  string
		state inventory.State
		phase inventory.OpPhase
		want  Action
	}{
		{"agent-inspecting-token", inventory.StateInspecting, inventory.PhaseBooting, ActionAgent},
		{"agent-provisioning-token", inventory.StateProvisioning, inventory.PhaseBooting, ActionAgent},
		{"agent-provisioning-agent-phase-token", inventory.StateProvisioning, inventory.PhaseAgent, ActionAgent},
		{"agent-deprovisioning-token", inventory.StateDeprovisioning, inventory.PhasePower, ActionAgent},
		{"provisioning-diskboot", inventory.StateProvisioning, inventory.PhaseDiskBoot, ActionLocal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &inventory.Host{ID: "node-1", MACs: []string{testMAC}, State: tc.state,
				Operation: &inventory.Operation{State: tc.state, Phase: tc.phase, Attempt: 1}}
			s, err := RenderScript(ScriptInput{Host: h, MAC: testMAC, ServerURL: testServerURL, BootEnv: agentBootEnv(), AgentArgs: testAgentArgs})
			if err != nil {
				t.Fatal(err)
			}
			if s.Action != tc.want {
				t.Errorf("action = %s, want %s", s.Action, tc.want)
			}
			hasToken := strings.Contains(string(s.Body), testAgentArgs)
			if hasToken != (tc.want == ActionAgent) {
				t.Errorf("token on the kernel line = %v, want %v:\n%s", hasToken, tc.want == ActionAgent, s.Body)
			}
			golden(t, tc.name, s.Body)
		})
	}
}

// fakeTokens records AgentArgs calls.
type fakeTokens struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (f *fakeTokens) AgentArgs(_ context.Context, host inventory.Host, mac string, addr netip.Addr) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, host.ID+" "+mac+" "+addr.String())
	if f.err != nil {
		return "", f.err
	}
	return testAgentArgs, nil
}

// TestHandlerAgentTokens checks that only scripts booting the agent cost a token, that
// the token lands on the kernel line, that only a fetch with the boot key DHCP gave,
// from the address it was given to, gets one (anything else is a 403 and a rejected
// event, and costs no token), and that a failure to issue one is a 500 with an event,
// not a script without a token.
func TestHandlerAgentTokens(t *testing.T) {
	const src = "10.0.0.5"
	tests := []struct {
		name      string
		state     inventory.State
		phase     inventory.OpPhase
		tokErr    error
		noKey     bool   // fetch without the key
		from      string // fetch from this address instead of src
		wantCalls int
		wantCode  int
		wantToken bool
	}{
		{name: "no key: no token", state: inventory.StateInspecting, phase: inventory.PhaseBooting, noKey: true, wantCode: 403},
		{name: "key from another address: no token", state: inventory.StateInspecting, phase: inventory.PhaseBooting, from: "10.0.0.66", wantCode: 403},
		{name: "inspecting boots the agent with a token", state: inventory.StateInspecting, phase: inventory.PhaseBooting, wantCalls: 1, wantCode: 200, wantToken: true},
		{name: "available boots local, no token", state: inventory.StateAvailable, wantCalls: 0, wantCode: 200},
		{name: "disk-boot boots local, no token", state: inventory.StateProvisioning, phase: inventory.PhaseDiskBoot, wantCalls: 0, wantCode: 200},
		{name: "token failure is a 500", state: inventory.StateDeprovisioning, phase: inventory.PhasePower, tokErr: errors.New("boom"), wantCalls: 1, wantCode: 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := inventory.Host{ID: "node-1", MACs: []string{testMAC}, State: tc.state}
			if tc.phase != "" {
				h.Operation = &inventory.Operation{State: tc.state, Phase: tc.phase}
			}
			store := newFakeStore(h)
			tok := &fakeTokens{err: tc.tokErr}
			gate := newGate(t, store)
			hd, err := NewHandler(HandlerConfig{Store: store, Binaries: Binaries(), ServerURL: testServerURL, BootEnv: agentBootEnv(), AgentTokens: tok, Gate: gate})
			if err != nil {
				t.Fatal(err)
			}
			target := "/ipxe/boot.ipxe?mac=" + testMAC
			if !tc.noKey {
				target += "&key=" + gate.IssueKey(testMAC, netip.MustParseAddr(src))
			}
			from := src
			if tc.from != "" {
				from = tc.from
			}
			req := httptest.NewRequest("GET", target, nil)
			req.RemoteAddr = from + ":1234"
			rec := httptest.NewRecorder()
			hd.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.wantCode {
				t.Fatalf("code = %d, want %d: %s", rec.Code, tc.wantCode, body)
			}
			tok.mu.Lock()
			calls := len(tok.calls)
			tok.mu.Unlock()
			if calls != tc.wantCalls {
				t.Errorf("AgentArgs calls = %d, want %d", calls, tc.wantCalls)
			}
			if got := strings.Contains(string(body), testAgentArgs); got != tc.wantToken {
				t.Errorf("token in script = %v, want %v:\n%s", got, tc.wantToken, body)
			}
			if tc.wantCode == 403 {
				evs := store.eventsOf("node-1")
				if len(evs) != 1 || evs[0].Type != EventScriptRejected || evs[0].Fields["ip"] != from {
					t.Errorf("events = %+v, want one %s from %s", evs, EventScriptRejected, from)
				}
				if got := gate.RejectedCount(RouteScript); got != 1 {
					t.Errorf("rejected counter = %v, want 1", got)
				}
			}
			if tc.wantCalls == 1 && tc.tokErr == nil && tok.calls[0] != "node-1 "+testMAC+" "+src {
				t.Errorf("token issued for %q, want bound to %s", tok.calls[0], src)
			}
			if tc.wantCode == 500 {
				evs := store.eventsOf("node-1")
				if len(evs) == 0 || !strings.Contains(evs[len(evs)-1].Message, "agent's token") {
					t.Errorf("events = %s", cmp.Diff(nil, evs))
				}
			}
		})
	}
}
