package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/rackboot/rackboot/agentapi"
	"github.com/rackboot/rackboot/internal/inventory"
)

// Addresses of the trust tests' segment.
const (
	trustVictimMAC   = "52:54:00:1a:00:01"
	trustAttackerMAC = "52:54:00:1a:00:66"
	trustAttackerIP  = "10.77.0.66"
)

// TestNetnsTrustAttacker is issue 10 "done when" 1, for each DHCP mode: a victim host
// (its own namespace and MAC) is inspected and then provisioned with user-data and an
// image, through its own DHCP exchange and script fetch; an attacker at another address
// on the same switched segment (a Linux bridge), knowing the victim's MAC — and, to make
// it harder, even the victim's leaked boot key, agent token and metadata URL — asks every
// boot route for the victim's secrets. It gets no key (DHCP replies carrying one go to
// the victim's MAC only: a raw capture on the attacker's port sees none), no token, plan,
// user-data or image; it cannot cancel the victim's agent or change its state; and each
// attempt leaves a rejected event on the victim's timeline and a count in /metrics. The
// victim's own flow works throughout.
func TestNetnsTrustAttacker(t *testing.T) {
	Require(t, "busybox", "dnsmasq")
	t.Parallel()
	for _, mode := range []string{"server", "proxy", "off"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			trustAttack(t, mode)
		})
	}
}

// trustLab is one mode's segment: rackboot, the victim and the attacker.
type trustLab struct {
	t        *testing.T
	mode     string
	dir      string
	seg      *Segment
	rb       *rackboot
	server   string // rackboot's address
	victimIP string
	victim   *Netns
	attacker *Netns
	capture  *Capture
}

func trustAttack(t *testing.T, mode string) {
	l := &trustLab{t: t, mode: mode, dir: logDir(t), server: serverIP, victimIP: "10.77.0.10"}
	l.seg = newSegment(t, "trust"+mode, "10.77.0.1/24")
	// The gate, not the per-source rate limit, must refuse each of the attacker's script
	// fetches: a 429 leaves no rejected event and would hide what this test is about. So
	// the limit is written out (the default, 2/s with bursts of 20): the attacker fetches
	// the script 4 times and the victim twice, each from its own address, and the end of
	// the test checks that none was limited. TestServeLimitsWired shows the limit itself.
	conf := filepath.Join(l.dir, "rackboot.yaml")
	if err := os.WriteFile(conf, []byte("http:\n  rateLimits:\n    script: {perSecond: 2, burst: 20}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", conf, "--dhcp-mode", mode, "--unknown-hosts", "ignore"}
	switch mode {
	case "server":
		args = append(args, "--dhcp-range", "10.77.0.100-10.77.0.149", "--dhcp-router", "10.77.0.1")
	case "proxy":
		// dnsmasq is the site DHCP on .1, holding the victim's address; rackboot on .2.
		l.server, l.victimIP = "10.77.0.2", "10.77.0.60"
		if err := l.seg.NS.IP("addr", "add", l.server+"/24", "dev", l.seg.Bridge); err != nil {
			t.Fatal(err)
		}
		startDnsmasq(t, l.seg.NS, l.dir, l.seg.Bridge, "--no-ping",
			"--dhcp-range=10.77.0.50,10.77.0.59,255.255.255.0,1h", "--dhcp-host="+trustVictimMAC+","+l.victimIP)
	}
	l.rb = startRackboot(t, l.seg.NS, l.dir, l.server, args...)
	writeStubBootEnv(t, l.rb.dataDir)
	// The victim's reservation matches what its DHCP server gives it, as an operator
	// sets it up (in off mode it is what makes a token possible at all).
	l.rb.mustCLI("host", "add", "--mac", trustVictimMAC, "--ip", l.victimIP, "--hostname", "victim")
	l.victim = addClient(t, l.seg, "victim", trustVictimMAC)
	l.attacker = addClient(t, l.seg, "attacker", trustAttackerMAC)
	if err := l.attacker.IP("addr", "add", trustAttackerIP+"/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	capture, err := l.attacker.CaptureUDP(t, "eth0", 0)
	if err != nil {
		t.Fatal(err)
	}
	l.capture = capture

	// ---- Inspection: the victim boots the agent. ----
	l.rb.mustCLI("host", "inspect", "victim")
	key := l.victimDHCP()
	script, code := l.get(l.victim, l.scriptURL(key))
	if code != http.StatusOK {
		t.Fatalf("victim's script fetch: %d %s\nrackboot:\n%s", code, script, Tail(l.rb.proc.Log, 30))
	}
	token := scriptToken(t, script)

	// The attacker, by DHCP: it asks for the victim's MAC from its own port and sees no
	// key (server mode: the OFFER and ACK go to the victim's MAC; proxy mode: the PXE
	// port answers the victim's MAC).
	l.attackerDHCP()
	// The script without a key, with a made-up key and with the victim's own key.
	for _, k := range []string{"", "AAAAAAAAAAAAAAAAAAAAAAAA", key} {
		body, code := l.get(l.attacker, l.scriptURL(k))
		if code != http.StatusForbidden || bytes.Contains(body, []byte(agentapi.ParamToken)) {
			t.Errorf("attacker's script fetch (key %q): %d, token %v, want 403 without one", k, code, bytes.Contains(body, []byte(agentapi.ParamToken)))
		}
	}
	// The agent API with a made-up token and with the victim's token.
	if _, err := l.agent(l.attacker, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").Hello(t.Context(), l.hello()); err == nil {
		t.Error("attacker's hello with a made-up token got a plan")
	}
	if plan, err := l.agent(l.attacker, token).Hello(t.Context(), l.hello()); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("attacker's hello with the victim's token: plan %+v, err %v; want 403", plan, err)
	}
	if h := l.host(); h.State != inventory.StateInspecting || h.Operation == nil || h.Operation.AgentIP != l.victimIP {
		t.Fatalf("after the attack the victim is %s with %+v, want inspecting, bound to %s", h.State, h.Operation, l.victimIP)
	}
	// The victim's agent is still the one: hello, report, done.
	va := l.agent(l.victim, token)
	if plan, err := va.Hello(t.Context(), l.hello()); err != nil || plan.Action != agentapi.ActionInspect {
		t.Fatalf("victim's hello: %+v, %v", plan, err)
	}
	if err := va.Result(t.Context(), agentapi.Result{Action: agentapi.ActionInspect, OK: true}); err != nil {
		t.Fatalf("victim's result: %v", err)
	}
	if h := l.host(); h.State != inventory.StateAvailable {
		t.Fatalf("victim is %s after inspection, want available", h.State)
	}

	// ---- Provisioning: user-data and an image the attacker wants. ----
	image := filepath.Join(l.dir, "tiny.raw")
	buf := make([]byte, 1<<20)
	_, _ = rand.Read(buf)
	if err := os.WriteFile(image, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf)
	l.rb.mustCLI("image", "add", "tiny", "--file", image, "--sha256", hex.EncodeToString(sum[:]), "--format", "raw")
	ud := filepath.Join(l.dir, "user-data")
	if err := os.WriteFile(ud, []byte("#cloud-config\nruncmd: [echo kubeadm-join-secret]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l.rb.mustCLI("host", "provision", "victim", "--image", "tiny", "--user-data", ud)
	key = l.victimDHCP()
	script, code = l.get(l.victim, l.scriptURL(key))
	if code != http.StatusOK {
		t.Fatalf("victim's second script fetch: %d %s", code, script)
	}
	token = scriptToken(t, script)
	va = l.agent(l.victim, token)
	var plan agentapi.Plan
	WaitFor(t, 30*time.Second, "a provisioning plan for the victim", func(ctx context.Context) (bool, error) {
		var err error
		plan, err = va.Hello(ctx, l.hello())
		if err == nil && plan.Action == agentapi.ActionProvision {
			return true, nil
		}
		return false, fmt.Errorf("%w: plan %s, %v", ErrNotYet, plan.Action, err)
	})
	seed, imageURL := plan.Provision.CloudInit.SeedURL, plan.Provision.ImageURL
	// The attacker with the leaked seed URL and image URL.
	for _, u := range []string{seed + "user-data", seed + "meta-data", imageURL} {
		body, code := l.get(l.attacker, u)
		if code != http.StatusForbidden || bytes.Contains(body, []byte("kubeadm-join-secret")) {
			t.Errorf("attacker GET %s: %d, want 403", u, code)
		}
	}
	if err := l.agent(l.attacker, token).Result(t.Context(), agentapi.Result{Action: agentapi.ActionProvision, OK: true}); err == nil {
		t.Error("attacker's forged result was accepted")
	}
	// A fresh script fetch by the attacker changed nothing: the victim's agent goes on.
	l.get(l.attacker, l.scriptURL(key))
	if err := va.Progress(t.Context(), agentapi.Progress{Phase: agentapi.PhaseWrite, BytesDone: 1, BytesTotal: 2}); err != nil {
		t.Errorf("victim's agent after the attack: %v", err)
	}
	if body, code := l.get(l.victim, seed+"user-data"); code != http.StatusOK || !bytes.Contains(body, []byte("kubeadm-join-secret")) {
		t.Errorf("victim's user-data: %d %q", code, body)
	}
	if body, code := l.get(l.victim, imageURL); code != http.StatusOK || !bytes.Equal(body, buf) {
		t.Errorf("victim's image: %d, %d bytes", code, len(body))
	}
	if h := l.host(); h.State != inventory.StateProvisioning || h.Operation == nil || h.Operation.Phase != inventory.PhaseAgent {
		t.Errorf("victim after the attacks: %s %+v, want provisioning, its agent running", h.State, h.Operation)
	}

	// ---- Evidence. ----
	evs, err := l.rb.events("victim")
	if err != nil {
		t.Fatal(err)
	}
	// Each attempt is on the record: an entry, or a repeat counted on the entry before
	// (the same source, route and reason).
	rejected := map[string]int{}
	for _, e := range evs {
		if strings.HasSuffix(e.Type, ".rejected") && e.Fields["ip"] == trustAttackerIP {
			n, err := strconv.Atoi(e.Fields["repeated"])
			if err != nil {
				n = 1
			}
			rejected[e.Type] += n
		}
	}
	for typ, attempts := range map[string]int{"http.script.rejected": 4, "agent.rejected": 2, "metadata.rejected": 2, "image.rejected": 1} {
		if rejected[typ] < attempts {
			t.Errorf("%d %s attempts from %s on the victim's record, want %d (got %v)", rejected[typ], typ, trustAttackerIP, attempts, rejected)
		}
	}
	metrics := l.metrics()
	for route, min := range map[string]float64{"script": 4, "agent": 2, "metadata": 2, "image": 1} {
		if got := metrics[route]; got < min {
			t.Errorf("rackboot_trust_rejected_total{route=%q} = %v, want at least %v", route, got, min)
		}
	}
	t.Logf("rejected events %v; counters %v", rejected, metrics)
	if n := scriptsRateLimited(t, l.seg.NS, l.server); n != 0 {
		t.Errorf("%v script fetches were rate-limited (429) before the gate could refuse them: keep the test's fetches within http.rateLimits.script", n)
	}
	for _, p := range l.capture.Packets() {
		if bytes.Contains(p.Payload, []byte("key=")) {
			t.Errorf("the attacker's port saw a boot key: %s -> %s", p.Src, p.Dst)
		}
	}
	if err := l.capture.Err(); err != nil {
		t.Errorf("capture: %v", err)
	}
	if bytes.Contains(mustRead(t, l.rb.proc.Log), []byte("panic")) {
		t.Errorf("rackboot log mentions a panic:\n%s", Tail(l.rb.proc.Log, 40))
	}
}

// victimDHCP runs the victim's DHCP as its iPXE would and returns the boot key its reply
// carried ("" in off mode, where the site DHCP hands out the plain script URL). The
// victim's address is configured on its eth0 once.
func (l *trustLab) victimDHCP() string {
	t := l.t
	t.Helper()
	ipxeArgs := append(pxeClientArgs(0), "-x", "0x4d:69505845")
	var file string
	switch l.mode {
	case "server":
		lease, err := runUdhcpc(t, l.victim, l.dir, "victim-ipxe", ipxeArgs...)
		if err != nil {
			t.Fatalf("victim DHCP: %v\nrackboot:\n%s", err, Tail(l.rb.proc.Log, 30))
		}
		if lease["ip"] != l.victimIP {
			t.Fatalf("victim got %s, want its reservation %s", lease["ip"], l.victimIP)
		}
		file = lease.BootFile()
	case "proxy":
		// The address from the site DHCP, then iPXE's request to the PXE port.
		if lease, err := runUdhcpc(t, l.victim, l.dir, "victim-site", "-C"); err != nil || lease["ip"] != l.victimIP {
			t.Fatalf("victim DHCP from dnsmasq: %v %v", lease, err)
		}
		l.victimAddr()
		reply, err := pxeRequest(l.victim, l.server, trustVictimMAC, l.victimIP, 5*time.Second)
		if err != nil {
			t.Fatalf("victim's request to the PXE port: %v\nrackboot:\n%s", err, Tail(l.rb.proc.Log, 30))
		}
		file = bootFileOf(reply)
	case "off":
		l.victimAddr()
		return ""
	}
	l.victimAddr()
	m := regexp.MustCompile(`^http://` + regexp.QuoteMeta(l.server) + `:8080/ipxe/boot\.ipxe\?mac=` + trustVictimMAC + `&key=([A-Za-z0-9_-]{16,})$`).FindStringSubmatch(file)
	if m == nil {
		t.Fatalf("victim's boot file %q carries no boot key", file)
	}
	return m[1]
}

func (l *trustLab) victimAddr() {
	_ = l.victim.IP("addr", "replace", l.victimIP+"/24", "dev", "eth0")
}

// attackerDHCP asks for the victim's MAC from the attacker's address (its own Ethernet
// address on the wire) and checks nothing comes back to it.
func (l *trustLab) attackerDHCP() {
	t := l.t
	t.Helper()
	switch l.mode {
	case "server":
		conn, err := l.attacker.ListenPacket("udp4", trustAttackerIP+":68")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		mods := append(pxeModifiers(0), dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
		d, err := dhcpv4.NewDiscovery(mustMAC(t, trustVictimMAC), mods...)
		if err != nil {
			t.Fatal(err)
		}
		r, err := dhcpv4.New(append(mods, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(mustMAC(t, trustVictimMAC)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(l.server))), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(l.victimIP))))...)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []*dhcpv4.DHCPv4{d, r} {
			if _, err := conn.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.ParseIP(l.server), Port: 67}); err != nil {
				t.Fatal(err)
			}
		}
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if n, _, err := conn.ReadFrom(make([]byte, 1500)); err == nil {
			t.Errorf("the attacker got a %d-byte DHCP reply for the victim's MAC", n)
		}
	case "proxy":
		if reply, err := pxeRequest(l.attacker, l.server, trustVictimMAC, trustAttackerIP, 3*time.Second); err == nil {
			t.Errorf("the attacker got the PXE port's answer for the victim's MAC: boot file %q", bootFileOf(reply))
		}
	}
	time.Sleep(time.Second) // let the capture see anything late
}

// pxeRequest sends iPXE's ProxyDHCP REQUEST for mac from ip:68 in ns to server:4011 and
// waits for the answer.
func pxeRequest(ns *Netns, server, mac, ip string, wait time.Duration) (*dhcpv4.DHCPv4, error) {
	conn, err := ns.ListenPacket("udp4", ip+":68")
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, err
	}
	req, err := dhcpv4.New(append(pxeModifiers(0), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(hw),
		dhcpv4.WithClientIP(net.ParseIP(ip)), dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))...)
	if err != nil {
		return nil, err
	}
	if _, err := conn.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.ParseIP(server), Port: 4011}); err != nil {
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return nil, err
		}
		if m, err := dhcpv4.FromBytes(buf[:n]); err == nil && m.TransactionID == req.TransactionID {
			return m, nil
		}
	}
}

func (l *trustLab) scriptURL(key string) string {
	u := "http://" + l.server + ":8080/ipxe/boot.ipxe?mac=" + trustVictimMAC
	if key != "" {
		u += "&key=" + key
	}
	return u
}

// get fetches u from ns and returns the body and status (0 when the request failed).
func (l *trustLab) get(ns *Netns, u string) ([]byte, int) {
	ctx, cancel := context.WithTimeout(l.t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		l.t.Fatal(err)
	}
	resp, err := ns.HTTPClient().Do(req)
	if err != nil {
		l.t.Errorf("GET %s: %v", u, err)
		return nil, 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return b, resp.StatusCode
}

func (l *trustLab) agent(ns *Netns, token string) *agentapi.Client {
	return &agentapi.Client{BaseURL: "http://" + l.server + ":8080", Token: token, HTTP: ns.HTTPClient(), Retry: agentapi.Retry{Attempts: 1}}
}

func (l *trustLab) hello() agentapi.Hello {
	return agentapi.Hello{MAC: trustVictimMAC, AgentVersion: "lab", BootID: "trust-" + l.mode, Facts: agentapi.Facts{
		Disks: []agentapi.Disk{{Name: "sda", SizeBytes: 40 << 30}},
		NICs:  []agentapi.NIC{{Name: "eth0", MAC: trustVictimMAC, Carrier: true, Boot: true}},
	}}
}

func (l *trustLab) host() inventory.Host {
	l.t.Helper()
	var h inventory.Host
	if err := json.Unmarshal(l.rb.mustCLI("host", "show", "victim", "-o", "json"), &h); err != nil {
		l.t.Fatal(err)
	}
	return h
}

// metrics reads rackboot_trust_rejected_total from /metrics, summed by route.
func (l *trustLab) metrics() map[string]float64 {
	out := map[string]float64{}
	for _, m := range scrapeMetrics(l.t, l.seg.NS, l.server) {
		if m.Name == "rackboot_trust_rejected_total" {
			out[m.Labels["route"]] += m.Value
		}
	}
	return out
}

// metricSample is one line of a Prometheus text exposition.
type metricSample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

var (
	metricLineRe  = regexp.MustCompile(`(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$`)
	metricLabelRe = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"`)
)

// scrapeMetrics reads rackboot's /metrics at server:8080 from inside ns.
func scrapeMetrics(t *testing.T, ns *Netns, server string) []metricSample {
	t.Helper()
	body, code := (&trustLab{t: t}).get(ns, "http://"+server+":8080/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	var out []metricSample
	for _, m := range metricLineRe.FindAllSubmatch(body, -1) {
		v, err := strconv.ParseFloat(string(m[3]), 64)
		if err != nil {
			continue
		}
		s := metricSample{Name: string(m[1]), Labels: map[string]string{}, Value: v}
		for _, l := range metricLabelRe.FindAllSubmatch(m[2], -1) {
			s.Labels[string(l[1])] = string(l[2])
		}
		out = append(out, s)
	}
	return out
}

// scriptsRateLimited is how many iPXE script requests rackboot refused with 429.
func scriptsRateLimited(t *testing.T, ns *Netns, server string) float64 {
	t.Helper()
	var n float64
	for _, m := range scrapeMetrics(t, ns, server) {
		if m.Name == "rackboot_http_limited_total" && m.Labels["route"] == "script" && m.Labels["limit"] == "rate" {
			n += m.Value
		}
	}
	return n
}

var tokenRe = regexp.MustCompile(agentapi.ParamToken + `=([A-Za-z0-9_-]+)`)

func scriptToken(t testing.TB, script []byte) string {
	t.Helper()
	m := tokenRe.FindSubmatch(script)
	if m == nil {
		t.Fatalf("no agent token in the script:\n%s", script)
	}
	return string(m[1])
}

// writeStubBootEnv publishes a boot environment that is never booted (the tests play
// the agent themselves), so that agent states get scripts that boot the agent.
func writeStubBootEnv(t testing.TB, dataDir string) {
	t.Helper()
	dir := filepath.Join(dataDir, "bootenv")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	must(os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("stub kernel"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "initramfs.gz"), []byte("stub initramfs"), 0o644))
	m, _ := json.Marshal(map[string]any{"format": "1", "key": "0123456789abcdef", "kernelVersion": "stub", "modules": []string{}})
	must(os.WriteFile(filepath.Join(dir, "manifest.json"), m, 0o644))
}
