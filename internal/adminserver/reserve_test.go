package adminserver

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// TestHostsCannotTakeServerOrGroupAddresses: multicast, broadcast and all-zero MACs,
// the server's own address and its own interface's MAC are refused as a host's, in
// one host and in an import, with nothing written.
func TestHostsCannotTakeServerOrGroupAddresses(t *testing.T) {
	store := openTestStore(t)
	h, err := NewHandler(Config{Store: store, Token: testToken, Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
		ServerIP: netip.MustParseAddr("10.0.0.1"), ServerMACs: []string{"52:54:00:00:00:AA"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	post := func(path, body string) (int, string) { return authed(t, srv.URL, "POST", path, body) }
	for _, tc := range []struct{ body, want string }{
		{`{"macs": ["01:00:5e:00:00:01"]}`, "multicast"},
		{`{"macs": ["33:33:00:00:00:01"]}`, "multicast"},
		{`{"macs": ["ff:ff:ff:ff:ff:ff"]}`, "broadcast"},
		{`{"macs": ["00:00:00:00:00:00"]}`, "all zeros"},
		{`{"macs": ["52:54:00:aa:00:01", "01:80:c2:00:00:0e"]}`, "multicast"},
		{`{"macs": ["52:54:00:aa:00:01"], "ip": "10.0.0.1"}`, "this rackboot server's own address"},
		{`{"macs": ["52:54:00:00:00:aa"]}`, "this rackboot server's own interface"},
	} {
		code, body := post("/api/v1/hosts", tc.body)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want 400 naming %q", tc.body, code, body, tc.want)
		}
	}
	code, body := post("/api/v1/hosts/import", `{"hosts": [{"macs": ["52:54:00:aa:00:02"]}, {"macs": ["ff:ff:ff:ff:ff:ff"]}]}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "hosts[1]") || !strings.Contains(body, "nothing was imported") {
		t.Errorf("import: %d %s", code, body)
	}
	if hosts, _ := store.ListHosts(t.Context()); len(hosts) != 0 {
		t.Errorf("%d hosts written", len(hosts))
	}
	// A locally administered unicast MAC (02:...) is a NIC's own: accepted.
	if code, body := post("/api/v1/hosts", `{"macs": ["02:00:00:00:00:01"], "ip": "10.0.0.2"}`); code != http.StatusCreated {
		t.Errorf("unicast MAC: %d %s", code, body)
	}
}
