package ipxe

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/rackboot/rackboot/internal/inventory"
)

// FuzzScriptRequest feeds arbitrary query strings and path segments to the script
// request parser: it never panics, and what it accepts is a normalised MAC and a key of
// a boot key's alphabet and size.
func FuzzScriptRequest(f *testing.F) {
	for _, s := range [][2]string{
		{"mac=52:54:00:12:34:56", ""},
		{"mac=52-54-00-12-34-56&key=AAAAAAAAAAAAAAAAAAAAAAAA", ""},
		{"", "525400123456"},
		{"mac=52:54:00:12:34:56&key=a&key=b", ""},
		{"mac=%zz", ""},
		{"key=" + strings.Repeat("A", 100) + "&mac=525400123456", ""},
		{"mac=ff:ff:ff:ff:ff:ff&key=../../etc", ""},
		{";;;&&&==", "not-a-mac"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, q, seg string) {
		mac, key, err := ParseScriptRequest(q, seg)
		if err != nil {
			return
		}
		if n, err := inventory.NormalizeMAC(mac); err != nil || n != mac {
			t.Fatalf("accepted MAC %q is not normalised", mac)
		}
		if len(key) > maxKeyLen || strings.ContainsFunc(key, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}) {
			t.Fatalf("accepted key %q", key)
		}
	})
}

// FuzzScriptHandler sends arbitrary queries for a host that needs the agent, from an
// address that holds no key: the answer is never a 500 and never carries a token.
func FuzzScriptHandler(f *testing.F) {
	f.Add("mac=" + testMAC)
	f.Add("mac=" + testMAC + "&key=AAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("mac=%00")
	f.Add("key=&mac=")
	store := newFakeStore(inventory.Host{ID: "node-1", MACs: []string{testMAC}, State: inventory.StateInspecting,
		Operation: &inventory.Operation{State: inventory.StateInspecting, Phase: inventory.PhaseBooting}})
	gate := newGate(f, store)
	gate.IssueKey(testMAC, netip.MustParseAddr("10.0.0.5"))
	h, err := NewHandler(HandlerConfig{Store: store, Binaries: Binaries(), ServerURL: testServerURL, BootEnv: agentBootEnv(),
		AgentTokens: &fakeTokens{}, Gate: gate})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := httptest.NewRequest("GET", "/ipxe/boot.ipxe", nil)
		r.URL.RawQuery = q
		r.RemoteAddr = "10.0.0.9:4000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusInternalServerError || w.Code == http.StatusOK && strings.Contains(w.Body.String(), "rackboot.token") {
			t.Fatalf("query %q: %d %q", q, w.Code, w.Body)
		}
	})
}
