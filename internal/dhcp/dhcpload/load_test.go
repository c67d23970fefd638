package dhcpload

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// fakeServerID is the server identifier the fake puts in its replies. It is not the
// fake's own address, so a REQUEST that named the reply's source or Config.Server
// instead of the OFFER's option 54 is caught.
var fakeServerID = net.IPv4(192, 0, 2, 54).To4()

// fakeLease is the address the fake offers a client: one per MAC, as a server with a
// lease per client would.
func fakeLease(mac net.HardwareAddr) net.IP {
	return net.IPv4(10, mac[3], mac[4], mac[5]).To4()
}

// fake is a DHCP server on 127.0.0.1 for Run to load. It answers each DISCOVER with an
// OFFER and each REQUEST with an ACK, to the packet's source address, unless its hooks
// (set before start) say otherwise; it checks every packet it gets and counts what it
// got and sent. Counters are bumped before the packet leaves, so nothing Run can have
// read is missing from them.
type fake struct {
	conn    *net.UDPConn
	started bool
	done    chan struct{}
	wg      sync.WaitGroup // delayed replies not yet sent

	// Hooks by transaction ID or by exchange number k: its DISCOVER's place in the
	// order they came, from 1.
	ignoreDiscover func(xid uint32) bool     // send no OFFER
	nak            func(xid uint32) bool     // NAK the REQUEST
	delayOffer     func(k int) time.Duration // send the OFFER this much later
	ignoreRequest  func(k int) bool          // send no ACK or NAK
	delayAck       func(k int) time.Duration // send the ACK this much later
	// strays: after every strayEvery-th reply, send it again, then it with an unknown
	// transaction ID, then garbage; and answer each ignored DISCOVER for another MAC.
	strayEvery int

	mu                               sync.Mutex
	discovers, requests              int               // received
	offers, acks, naks, delayed      int               // sent (delayed: ACKs sent later)
	ignored, unanswered, replies     int               // DISCOVERs and REQUESTs ignored; replies sent
	dups, strays, junk, misaddressed int               // sent as strays
	macs                             map[string]bool   // every chaddr seen
	discMAC                          map[uint32]string // xid → the DISCOVER's chaddr
	num                              map[uint32]int    // xid → exchange number k
	offered                          map[uint32]net.IP // xid → yiaddr offered
	problems                         []string          // what was wrong with packets received
}

func newFake(t *testing.T) *fake {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	f := &fake{conn: c, done: make(chan struct{}), macs: map[string]bool{},
		discMAC: map[uint32]string{}, num: map[uint32]int{}, offered: map[uint32]net.IP{}}
	t.Cleanup(f.stop)
	return f
}

func (f *fake) start() {
	f.started = true
	go f.serve()
}

func (f *fake) addr() netip.AddrPort { return f.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// stop waits for the delayed replies, closes the socket and waits for the server to end.
// It may be called more than once.
func (f *fake) stop() {
	f.wg.Wait()
	f.conn.Close()
	if f.started {
		<-f.done
	}
}

func (f *fake) serve() {
	defer close(f.done)
	buf := make([]byte, 1500)
	for {
		n, src, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		f.handle(buf[:n], src)
	}
}

func (f *fake) problem(format string, args ...any) {
	if len(f.problems) < 10 {
		f.problems = append(f.problems, fmt.Sprintf(format, args...))
	}
}

func (f *fake) handle(b []byte, src netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		f.problem("unparsable packet from %v: %v", src, err)
		return
	}
	xid := binary.BigEndian.Uint32(req.TransactionID[:])
	mac := req.ClientHWAddr
	typ := req.MessageType()
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		f.problem("%v %#x: op %v", typ, xid, req.OpCode)
	}
	if !req.GatewayIPAddr.Equal(net.IPv4(127, 0, 0, 1)) {
		f.problem("%v %#x: giaddr %v, want 127.0.0.1", typ, xid, req.GatewayIPAddr)
	}
	if cid, want := req.Options.Get(dhcpv4.OptionClientIdentifier), append([]byte{1}, mac...); !bytes.Equal(cid, want) {
		f.problem("%v %#x: client identifier %x, want %x", typ, xid, cid, want)
	}
	f.macs[mac.String()] = true
	switch typ {
	case dhcpv4.MessageTypeDiscover:
		f.discovers++
		if _, dup := f.discMAC[xid]; dup {
			f.problem("DISCOVER %#x: transaction ID used before", xid)
		}
		f.discMAC[xid] = mac.String()
		f.num[xid] = f.discovers
		if f.ignoreDiscover != nil && f.ignoreDiscover(xid) {
			f.ignored++
			if f.strayEvery > 0 {
				// The exchange's ID, another client's MAC (still 02:00:…).
				other := bytes.Clone(mac)
				other[5] ^= 0x80
				if b := f.build(req, dhcpv4.MessageTypeOffer, fakeLease(mac), dhcpv4.WithHwAddr(other)); b != nil {
					f.misaddressed++
					f.send(b, src)
				}
			}
			return
		}
		yi := fakeLease(mac)
		f.offered[xid] = yi
		f.offers++
		var delay time.Duration
		if f.delayOffer != nil {
			delay = f.delayOffer(f.num[xid])
		}
		f.reply(req, src, dhcpv4.MessageTypeOffer, yi, delay)
	case dhcpv4.MessageTypeRequest:
		f.requests++
		yi, ok := f.offered[xid]
		switch {
		case !ok:
			f.problem("REQUEST %#x: no OFFER was sent for it", xid)
		case f.discMAC[xid] != mac.String():
			f.problem("REQUEST %#x: chaddr %v, its DISCOVER's was %v", xid, mac, f.discMAC[xid])
		}
		if got := req.RequestedIPAddress(); !ok || !got.Equal(yi) || !got.Equal(fakeLease(mac)) {
			f.problem("REQUEST %#x from %v: requested address %v, offered %v", xid, mac, got, yi)
		}
		if got := req.ServerIdentifier(); !got.Equal(fakeServerID) {
			f.problem("REQUEST %#x: server identifier %v, want %v", xid, got, fakeServerID)
		}
		k := f.num[xid]
		var delay time.Duration
		if f.delayAck != nil {
			delay = f.delayAck(k)
		}
		switch {
		case f.ignoreRequest != nil && f.ignoreRequest(k):
			f.unanswered++
		case f.nak != nil && f.nak(xid):
			f.naks++
			f.reply(req, src, dhcpv4.MessageTypeNak, nil, 0)
		case delay > 0:
			f.delayed++
			f.reply(req, src, dhcpv4.MessageTypeAck, yi, delay)
		default:
			f.acks++
			f.reply(req, src, dhcpv4.MessageTypeAck, yi, 0)
		}
	default:
		f.problem("%#x: unexpected message type %v", xid, typ)
	}
}

// strayShift moves a transaction ID out of any run's range (the runs here start fewer
// than a million exchanges) to one the generator would expect the same client MAC for
// (it is a multiple of the runs' 50 clients), so only the ID can give the reply away.
const strayShift = 50 << 20

// build returns req's reply of type typ offering yi (if not nil), changed by more.
func (f *fake) build(req *dhcpv4.DHCPv4, typ dhcpv4.MessageType, yi net.IP, more ...dhcpv4.Modifier) []byte {
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(typ), dhcpv4.WithServerIP(fakeServerID),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(fakeServerID))}
	if yi != nil {
		mods = append(mods, dhcpv4.WithYourIP(yi))
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, append(mods, more...)...)
	if err != nil {
		f.problem("building %v: %v", typ, err)
		return nil
	}
	return resp.ToBytes()
}

// reply sends req's reply of type typ to to, after delay if it is positive, and then,
// every strayEvery replies, the reply again, the reply with a transaction ID no
// exchange uses, and a datagram that is no DHCP packet.
func (f *fake) reply(req *dhcpv4.DHCPv4, to netip.AddrPort, typ dhcpv4.MessageType, yi net.IP, delay time.Duration) {
	b := f.build(req, typ, yi)
	if b == nil {
		return
	}
	if delay > 0 {
		f.wg.Add(1)
		time.AfterFunc(delay, func() {
			defer f.wg.Done()
			_, _ = f.conn.WriteToUDPAddrPort(b, to)
		})
		return
	}
	f.send(b, to)
	f.replies++
	if f.strayEvery > 0 && f.replies%f.strayEvery == 0 {
		f.dups++
		f.send(b, to)
		stray := bytes.Clone(b)
		binary.BigEndian.PutUint32(stray[4:], binary.BigEndian.Uint32(stray[4:])+strayShift)
		f.strays++
		f.send(stray, to)
		junk := make([]byte, 100)
		for i := range junk {
			junk[i] = byte(i * 37)
		}
		f.junk++
		f.send(junk, to)
	}
}

func (f *fake) send(b []byte, to netip.AddrPort) {
	if _, err := f.conn.WriteToUDPAddrPort(b, to); err != nil {
		f.problem("send to %v: %v", to, err)
	}
}

// check fails t with what was wrong with the packets the fake got.
func (f *fake) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.problems {
		t.Error("the fake server got a bad packet: " + p)
	}
}

func needLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("Run needs Linux")
	}
}

// relayConn is the generator's socket: 127.0.0.1, a port the kernel chooses.
func relayConn(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run starts f and runs cfg's load against it, failing t if Run errs or has not
// returned after limit (a hang guard only). It stops f before returning, so f's
// counters are final.
func run(t *testing.T, f *fake, cfg Config, limit time.Duration) (Result, time.Duration) {
	t.Helper()
	f.start()
	cfg.Server = f.addr()
	conn := relayConn(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type out struct {
		res Result
		err error
	}
	done := make(chan out, 1)
	start := time.Now()
	go func() {
		res, err := Run(ctx, conn, cfg)
		done <- out{res, err}
	}()
	select {
	case o := <-done:
		took := time.Since(start)
		f.stop()
		f.check(t)
		if o.err != nil {
			t.Fatalf("Run: %v", o.err)
		}
		r := o.res
		t.Logf("%v: discovers %d offers %d requests %d acks %d naks %d late %d stray %d lost %.2f%% sending %v p50 %v p99 %v",
			took.Round(time.Millisecond), r.Discovers, r.Offers, r.Requests, r.Acks, r.Naks, r.Late, r.Stray,
			r.Lost(), r.Sending.Round(time.Millisecond), r.Percentile(50), r.Percentile(99))
		return r, took
	case <-time.After(limit):
		cancel()
		t.Fatalf("Run has not returned after %v", limit)
	}
	return Result{}, 0
}

// TestRunEveryExchangeAnswered proves that against a server that answers everything
// the generator sends the rate it is asked for, completes every exchange (DISCOVER,
// OFFER, REQUEST, ACK) and counts each step once, times every exchange, and sends
// packets a server accepts: relayed from giaddr, the REQUEST asking for the offered
// address from the offering server, the client identifier matching chaddr, the clients
// taken in turn from ClientMAC(0) to ClientMAC(Clients-1).
func TestRunEveryExchangeAnswered(t *testing.T) {
	needLinux(t)
	const clients = 50
	f := newFake(t)
	cfg := Config{Rate: 2000, Duration: 300 * time.Millisecond, Clients: clients}
	r, _ := run(t, f, cfg, 10*time.Second)

	if want := 600; r.Discovers < want*9/10 || r.Discovers > want*11/10 {
		t.Errorf("%d DISCOVERs in 300 ms at 2,000/s, want %d ± 10 %%", r.Discovers, want)
	}
	if r.Offers != r.Discovers || r.Requests != r.Discovers || r.Acks != r.Discovers {
		t.Errorf("%d DISCOVERs, %d OFFERs, %d REQUESTs, %d ACKs: want all equal", r.Discovers, r.Offers, r.Requests, r.Acks)
	}
	if r.Naks != 0 || r.Late != 0 || r.Stray != 0 {
		t.Errorf("%d NAKs, %d late, %d stray: want none", r.Naks, r.Late, r.Stray)
	}
	if r.Lost() != 0 {
		t.Errorf("Lost() = %v, want 0", r.Lost())
	}
	if len(r.Latencies) != r.Acks || !slices.IsSorted(r.Latencies) {
		t.Errorf("%d latencies (sorted: %v) for %d ACKs", len(r.Latencies), slices.IsSorted(r.Latencies), r.Acks)
	}
	if r.Percentile(99) <= 0 {
		t.Errorf("Percentile(99) = %v, want > 0", r.Percentile(99))
	}
	if r.Sending <= 0 || r.Sending > cfg.Duration {
		t.Errorf("Sending = %v, want in (0, %v]", r.Sending, cfg.Duration)
	}
	if f.discovers != r.Discovers || f.requests != r.Requests {
		t.Errorf("the server got %d DISCOVERs and %d REQUESTs, Run counted %d and %d", f.discovers, f.requests, r.Discovers, r.Requests)
	}
	if f.offers != r.Offers || f.acks != r.Acks {
		t.Errorf("the server sent %d OFFERs and %d ACKs, Run counted %d and %d", f.offers, f.acks, r.Offers, r.Acks)
	}
	want := map[string]bool{}
	for i := range uint32(clients) {
		want[ClientMAC(i).String()] = true
	}
	if len(f.macs) != len(want) {
		t.Errorf("the server saw %d distinct chaddrs, want %d", len(f.macs), len(want))
	}
	for m := range f.macs {
		if !want[m] {
			t.Errorf("the server saw chaddr %s, not ClientMAC(0..%d)", m, clients-1)
		}
	}
}

// TestRunCountsLossesNaksAndStrays proves that what a server leaves unanswered, NAKs or
// sends unasked is counted as such, exactly: ACKs and NAKs are the server's, every
// stray reply (a duplicate, an unknown transaction ID, an OFFER for another client, no
// DHCP packet at all) is Stray and changes nothing else, and Lost() is the share of
// DISCOVERs without an ACK, unanswered and NAKed alike.
func TestRunCountsLossesNaksAndStrays(t *testing.T) {
	needLinux(t)
	f := newFake(t)
	f.ignoreDiscover = func(xid uint32) bool { return xid%5 == 0 }
	f.nak = func(xid uint32) bool { return xid%7 == 0 }
	// Every 5th, not 10th: an exchange's OFFER and ACK follow each other, so every 10th
	// reply would always be an ACK or a NAK.
	f.strayEvery = 5
	cfg := Config{Rate: 1000, Duration: 300 * time.Millisecond, Clients: 50, Drop: 100 * time.Millisecond}
	// The run lasts Drop after the last unanswered DISCOVER (one of the last five), so
	// the strays that follow the last replies arrive while it runs.
	r, _ := run(t, f, cfg, 10*time.Second)

	if f.ignored == 0 || f.naks == 0 || f.strays == 0 || f.misaddressed == 0 {
		t.Fatalf("the server ignored %d DISCOVERs, sent %d NAKs and %d strays: the test needs some of each", f.ignored, f.naks, f.strays)
	}
	if r.Discovers != f.discovers || r.Offers != f.offers || r.Requests != f.requests {
		t.Errorf("Run counted %d DISCOVERs, %d OFFERs, %d REQUESTs; the server got %d, sent %d, got %d",
			r.Discovers, r.Offers, r.Requests, f.discovers, f.offers, f.requests)
	}
	if r.Acks != f.acks || r.Naks != f.naks {
		t.Errorf("Run counted %d ACKs and %d NAKs, the server sent %d and %d", r.Acks, r.Naks, f.acks, f.naks)
	}
	if r.Stray != f.dups+f.strays+f.junk+f.misaddressed {
		t.Errorf("Run counted %d stray, the server sent %d duplicate replies, %d replies to no exchange, %d non-DHCP datagrams and %d OFFERs for another MAC",
			r.Stray, f.dups, f.strays, f.junk, f.misaddressed)
	}
	if r.Late != 0 {
		t.Errorf("Run counted %d late, want 0", r.Late)
	}
	if r.Discovers-r.Acks != f.ignored+f.naks {
		t.Errorf("%d DISCOVERs − %d ACKs = %d, want %d ignored + %d NAKed", r.Discovers, r.Acks, r.Discovers-r.Acks, f.ignored, f.naks)
	}
	if want := 100 * float64(f.ignored+f.naks) / float64(f.discovers); math.Abs(r.Lost()-want) > 1e-9 {
		t.Errorf("Lost() = %v %%, want %v %%", r.Lost(), want)
	}
	if len(r.Latencies) != r.Acks {
		t.Errorf("%d latencies for %d ACKs", len(r.Latencies), r.Acks)
	}
}

// TestRunCountsLateReplies proves that an ACK that comes after Drop is counted late and
// not as an answer (its exchange is lost and timed nowhere), that the others still
// count, and that Run returns once the late exchanges have timed out rather than
// waiting for their replies. Only every 4th exchange of the run's first 200 ms has its
// ACK delayed, so that every late ACK arrives while Run still runs: one that comes
// after Run returned cannot be counted.
func TestRunCountsLateReplies(t *testing.T) {
	needLinux(t)
	const delay = 150 * time.Millisecond
	f := newFake(t)
	f.delayAck = func(k int) time.Duration {
		if k%4 == 0 && k <= 40 { // 40 exchanges at 200/s: the first 200 ms
			return delay
		}
		return 0
	}
	cfg := Config{Rate: 200, Duration: 500 * time.Millisecond, Clients: 20, Drop: 50 * time.Millisecond}
	r, took := run(t, f, cfg, 10*time.Second)

	if f.delayed != 10 {
		t.Fatalf("the server delayed %d ACKs, want 10", f.delayed)
	}
	if r.Late != f.delayed {
		t.Errorf("Run counted %d late, the server delayed %d ACKs past Drop", r.Late, f.delayed)
	}
	if r.Acks != f.acks || r.Acks != r.Requests-f.delayed {
		t.Errorf("Run counted %d ACKs, the server sent %d in time (of %d REQUESTs)", r.Acks, f.acks, r.Requests)
	}
	if r.Offers != r.Discovers || r.Requests != r.Discovers || r.Naks != 0 || r.Stray != 0 {
		t.Errorf("%d DISCOVERs, %d OFFERs, %d REQUESTs, %d NAKs, %d stray", r.Discovers, r.Offers, r.Requests, r.Naks, r.Stray)
	}
	if len(r.Latencies) != r.Acks {
		t.Errorf("%d latencies for %d ACKs", len(r.Latencies), r.Acks)
	}
	if n := len(r.Latencies); n > 0 && r.Latencies[n-1] >= delay {
		t.Errorf("longest latency %v: a late ACK was timed as an answer", r.Latencies[n-1])
	}
	if limit := cfg.Duration + 2*cfg.Drop + time.Second; took > limit {
		t.Errorf("Run took %v, want it done soon after the last exchange's Drop (< %v)", took, limit)
	}
}

// TestRunLateWhileAnOlderExchangeWaits proves that an OFFER or ACK that comes after
// Drop is late, and no answer, even while an older exchange still waits within its Drop
// (so not all exchanges before it have ended): exchange 1's OFFER comes 70 ms late and
// its REQUEST is never answered, so it waits until about 170 ms; exchange 2 (sent at
// 10 ms) gets its ACK 125 ms after its REQUEST, and exchange 3 (sent at 20 ms) its OFFER
// 125 ms after its DISCOVER, each about 25 ms past its Drop.
func TestRunLateWhileAnOlderExchangeWaits(t *testing.T) {
	needLinux(t)
	f := newFake(t)
	f.delayOffer = func(k int) time.Duration {
		switch k {
		case 1:
			return 70 * time.Millisecond
		case 3:
			return 125 * time.Millisecond
		}
		return 0
	}
	f.ignoreRequest = func(k int) bool { return k == 1 }
	f.delayAck = func(k int) time.Duration {
		if k == 2 {
			return 125 * time.Millisecond
		}
		return 0
	}
	cfg := Config{Rate: 100, Duration: 100 * time.Millisecond, Clients: 10, Drop: 100 * time.Millisecond}
	r, _ := run(t, f, cfg, 10*time.Second)

	if f.delayed != 1 || f.unanswered != 1 {
		t.Fatalf("the server delayed %d ACKs and left %d REQUESTs unanswered, want 1 and 1", f.delayed, f.unanswered)
	}
	if r.Offers != r.Discovers-1 || r.Requests != r.Offers || r.Requests != f.requests {
		t.Errorf("%d DISCOVERs, %d OFFERs, %d REQUESTs (the server got %d): want one OFFER late and no REQUEST for it",
			r.Discovers, r.Offers, r.Requests, f.requests)
	}
	if r.Late != 2 || r.Acks != r.Discovers-3 || r.Acks != f.acks {
		t.Errorf("%d late and %d ACKs of %d exchanges (the server sent %d in time), want 2 late and all but 3 ACKed",
			r.Late, r.Acks, r.Discovers, f.acks)
	}
	if n := len(r.Latencies); n != r.Acks || n > 0 && r.Latencies[n-1] >= cfg.Drop {
		t.Errorf("%d latencies for %d ACKs, longest %v: a late reply was timed as an answer", n, r.Acks, r.Percentile(100))
	}
}

// TestRunConfigErrors proves that Run refuses a load it cannot run, before sending
// anything, with an error that names what is wrong.
func TestRunConfigErrors(t *testing.T) {
	sink := relayConn(t) // a server that never answers, if a bad config were run
	good := func() Config {
		return Config{Server: sink.LocalAddr().(*net.UDPAddr).AddrPort(), Clients: 10, Rate: 100, Duration: 50 * time.Millisecond}
	}
	for _, tc := range []struct {
		name     string
		change   func(*Config)
		wildcard bool // the relay's socket is bound to 0.0.0.0
		want     string
	}{
		{name: "rate 0", change: func(c *Config) { c.Rate = 0 }, want: "rate"},
		{name: "clients 0", change: func(c *Config) { c.Clients = 0 }, want: "clients"},
		{name: "duration 0", change: func(c *Config) { c.Duration = 0 }, want: "duration"},
		{name: "IPv6 server", change: func(c *Config) { c.Server = netip.MustParseAddrPort("[::1]:67") }, want: "IPv4"},
		{name: "relay on 0.0.0.0", change: func(*Config) {}, wildcard: true, want: "giaddr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conn *net.UDPConn
			if tc.wildcard {
				needLinux(t)
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conn = c
			} else {
				conn = relayConn(t)
			}
			cfg := good()
			tc.change(&cfg)
			r, err := Run(t.Context(), conn, cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run: %v, want an error about %q", err, tc.want)
			}
			if r.Discovers != 0 {
				t.Errorf("sent %d DISCOVERs for a config it refused", r.Discovers)
			}
		})
	}
}

// TestRunStopsWhenCancelled proves that cancelling ctx ends a long run promptly, with
// no error and what was counted so far (the command prints it on Ctrl-C).
func TestRunStopsWhenCancelled(t *testing.T) {
	needLinux(t)
	f := newFake(t)
	f.start()
	conn := relayConn(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	time.AfterFunc(100*time.Millisecond, cancel)
	done := make(chan struct{})
	var r Result
	var err error
	start := time.Now()
	go func() {
		defer close(done)
		r, err = Run(ctx, conn, Config{Server: f.addr(), Clients: 10, Rate: 1000, Duration: 10 * time.Second})
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Run has not returned 2.9 s after ctx was cancelled")
	}
	t.Logf("returned after %v with %d DISCOVERs, %d ACKs", time.Since(start).Round(time.Millisecond), r.Discovers, r.Acks)
	if err != nil {
		t.Errorf("Run: %v, want no error when ctx is cancelled", err)
	}
	if r.Discovers == 0 {
		t.Error("no DISCOVERs counted in the 100 ms before ctx was cancelled")
	}
}

// TestResultLostAndPercentile proves what the command prints from a Result: Lost() is
// the percentage of DISCOVERs without an ACK (0, not NaN, with none sent), Percentile
// runs from the shortest latency at 0 to the longest at 100, and is 0 with none.
func TestResultLostAndPercentile(t *testing.T) {
	if l := (Result{}).Lost(); l != 0 {
		t.Errorf("Lost() with no DISCOVERs = %v, want 0", l)
	}
	if l := (Result{Discovers: 200, Acks: 150}).Lost(); l != 25 {
		t.Errorf("Lost() with 200 DISCOVERs and 150 ACKs = %v, want 25", l)
	}
	if p := (Result{}).Percentile(99); p != 0 {
		t.Errorf("Percentile(99) with no latencies = %v, want 0", p)
	}
	var r Result
	for i := range 100 {
		r.Latencies = append(r.Latencies, time.Duration(i+1)*time.Millisecond) // 1..100 ms
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0, 1 * time.Millisecond}, {50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}} {
		if got := r.Percentile(tc.p); got != tc.want {
			t.Errorf("Percentile(%v) of 1..100 ms = %v, want %v", tc.p, got, tc.want)
		}
	}
}

// offerBytes is an OFFER as a server sends it, for the parser tests.
func offerBytes(t testing.TB) []byte {
	req, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(ClientMAC(7)),
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{0xde, 0xad, 0xbe, 0xef}))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
		dhcpv4.WithYourIP(net.IPv4(10, 1, 2, 3)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(fakeServerID)))
	if err != nil {
		t.Fatal(err)
	}
	return resp.ToBytes()
}

// TestParseReply proves that parseReply reads a well-formed reply's fields and refuses,
// without panicking, what is short, a request, malformed in its options or without a
// message type; and that option never points past the packet.
func TestParseReply(t *testing.T) {
	good := offerBytes(t)
	r, ok := parseReply(good)
	if !ok {
		t.Fatal("parseReply refused a well-formed OFFER")
	}
	if want := (reply{xid: 0xdeadbeef, typ: dhcpv4.MessageTypeOffer, mac: [6]byte(ClientMAC(7)),
		yi: [4]byte{10, 1, 2, 3}, srvID: [4]byte(fakeServerID)}); r != want {
		t.Errorf("parseReply = %+v, want %+v", r, want)
	}

	head := good[:offOptions] // header and magic cookie, no options
	with := func(opts ...byte) []byte { return append(bytes.Clone(head), opts...) }
	withOp := func(op byte) []byte { b := bytes.Clone(good); b[offOp] = op; return b }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"one byte", []byte{2}},
		{"header without cookie", good[:236]},
		{"one byte short of the options", good[:offOptions-1]},
		{"op 1 (a request)", withOp(1)},
		{"op 0", withOp(0)},
		{"no options", with()},
		{"only end", with(255)},
		{"only pads", with(0, 0, 0)},
		{"message type length past the end", with(53, 10, 2)},
		{"message type without its length", with(53)},
		{"message type without its value", with(53, 1)},
		{"an earlier option's length past the end", with(1, 200, 255, 255, 255, 0, 53, 1, 2)},
		{"message type of length 2", with(53, 2, 2, 2, 255)},
		{"message type after end", with(255, 53, 1, 2)},
		{"no message type", with(54, 4, 1, 2, 3, 4, 255)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r, ok := parseReply(tc.b); ok {
				t.Errorf("parseReply(%x) = %+v, true; want false", tc.b, r)
			}
		})
	}

	// A message type after pads is found; a server identifier of the wrong length is
	// left zero and the reply still read.
	r, ok = parseReply(with(0, 0, 54, 3, 1, 2, 3, 53, 1, byte(dhcpv4.MessageTypeAck), 255))
	if !ok || r.typ != dhcpv4.MessageTypeAck || r.srvID != ([4]byte{}) {
		t.Errorf("parseReply = %+v, %v; want an ACK with no server identifier", r, ok)
	}
	if o, n := option(with(0, 61, 3, 9, 8, 7, 255), 61); o != offOptions+3 || n != 3 {
		t.Errorf("option(client identifier) = %d, %d; want %d, 3", o, n, offOptions+3)
	}
	if o, n := option(with(61, 3, 9, 8), 61); o != -1 || n != 0 {
		t.Errorf("option(truncated) = %d, %d; want -1, 0", o, n)
	}
}

// FuzzParseReply feeds parseReply and option arbitrary bytes: they must not panic,
// option must point inside the packet, and a reply parseReply accepts must be a
// BOOTREPLY of at least the fixed header's length.
func FuzzParseReply(f *testing.F) {
	good := offerBytes(f)
	f.Add(good)
	f.Add(good[:offOptions])
	f.Add(good[:len(good)/2])
	f.Add(append(bytes.Clone(good[:offOptions]), 53, 200, 2))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{2}, 300))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, ok := parseReply(b); ok && (len(b) < minReply || b[offOp] != 2) {
			t.Errorf("parseReply accepted %d bytes with op %d: %+v", len(b), b[offOp], r)
		}
		for _, code := range []byte{53, 54} {
			if o, n := option(b, code); o >= 0 && (o < offOptions || o+n > len(b)) || o < 0 && (o != -1 || n != 0) {
				t.Errorf("option(%d) = %d, %d in %d bytes", code, o, n, len(b))
			}
		}
	})
}
