// Package tftpload is a TFTP read client made for load: many clients fetching one file
// over and over, each transfer timed from its request to its last ACK. It drives
// hack/bench-compare.sh (through cmd/tftpload) and the tftp package's storm benchmark,
// against rackboot and against other servers alike, so it speaks only the wire protocol
// (RFC 1350 with blksize, tsize and windowsize) and imports nothing of the server.
//
// It is not a general client: it keeps no data (it counts bytes), writes nothing, and
// ends every transfer with one final ACK, without dallying.
//
// A load generator must cost less per packet than the server it measures, or it
// measures itself. On Linux every client runs in one event loop (loop_linux.go: epoll
// over the clients' non-blocking sockets, raw system calls, no goroutine or timer per
// packet). The goroutine per client it had before used all of its CPU in a storm (3.8 s
// of CPU in a 4 s run, December 2026) while rackboot's server sat at 92-95 % of its own
// waiting for it; with the loop, dnsmasq's rate stayed the same (1,891 vs 1,894
// transfers/s: it is bound by its own CPU) and rackboot's rose by a tenth. AckDelay and
// other systems use the goroutines (Config.Goroutines asks for them).
package tftpload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config says what to fetch, how, by how many clients and for how long.
type Config struct {
	// Server is the server's HOST:PORT.
	Server string
	// File is the name to request.
	File string
	// Blksize is the blksize option to ask for; 0 asks none (512-byte blocks).
	Blksize int
	// Windowsize is the windowsize option to ask for; 0 asks none (lock-step).
	Windowsize int
	// TSize asks for the tsize option, as PXE firmware does.
	TSize bool
	// Clients is how many fetch at once; 0 means 1.
	Clients int
	// Sources are the local addresses clients send from, client i from
	// Sources[i%len(Sources)]; empty lets the kernel choose. A storm of PXE hosts comes
	// from many addresses, and servers limit transfers per address.
	Sources []netip.Addr
	// Duration bounds the run: no transfer starts after it. Required.
	Duration time.Duration
	// MaxTransfers bounds the transfers started, in all; 0 means no bound but Duration.
	MaxTransfers int
	// Timeout is how long a client waits for a packet before it resends its last one;
	// 0 means one second.
	Timeout time.Duration
	// Retries is how many timeouts in a row fail a transfer; 0 means 5.
	Retries int
	// Size, when positive, is the file's size: a transfer of any other length fails.
	Size int64
	// Goroutines runs a goroutine per client on Go's net sockets instead of the event
	// loop (loop_linux.go), as tftpload did until December 2026: to compare the two.
	Goroutines bool
	// AckDelay holds every ACK back this long before it is sent: a round-trip time for
	// a server, where the kernel cannot add one (no netem qdisc). To a server, an ACK
	// that leaves late and one that a link delays look the same.
	AckDelay time.Duration
}

// Result is what a run did.
type Result struct {
	Transfers int             // completed, with the expected length when Size was given
	Failures  int             // started but not completed
	Bytes     int64           // file bytes received by completed transfers
	Elapsed   time.Duration   // from the first request to the last transfer's end
	Latencies []time.Duration // of completed transfers, sorted
	// Errors counts the failures by their message, so one bad run explains itself.
	Errors map[string]int
}

// Percentile returns the p-th percentile (0 < p <= 100) of the latencies, or 0.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies))*p/100+0.5) - 1
	return r.Latencies[max(0, min(i, len(r.Latencies)-1))]
}

// Rate returns completed transfers per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Transfers) / r.Elapsed.Seconds()
}

// Run starts Clients clients, each fetching File again and again until Duration has
// passed (a transfer in flight then finishes), MaxTransfers have started, or ctx ends.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Duration <= 0 {
		return Result{}, errors.New("tftpload: Duration is required")
	}
	server, err := netip.ParseAddrPort(cfg.Server)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp4", cfg.Server)
		if rerr != nil {
			return Result{}, fmt.Errorf("tftpload: server %q: %w", cfg.Server, rerr)
		}
		server = ua.AddrPort()
	}
	cfg.Clients = max(cfg.Clients, 1)
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 5
	}
	req := Request(cfg.File, cfg.Blksize, cfg.Windowsize, cfg.TSize)
	if haveLoop && !cfg.Goroutines && cfg.AckDelay == 0 {
		return runLoop(ctx, cfg, server, req)
	}

	var (
		mu      sync.Mutex
		res     = Result{Errors: map[string]int{}}
		started int
		wg      sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(cfg.Duration)
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil || time.Now().After(end) || (cfg.MaxTransfers > 0 && started >= cfg.MaxTransfers) {
			return false
		}
		started++
		return true
	}
	for i := range cfg.Clients {
		var src netip.Addr
		if len(cfg.Sources) > 0 {
			src = cfg.Sources[i%len(cfg.Sources)]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client{server: server, src: src, timeout: cfg.Timeout, retries: cfg.Retries, req: req, ackDelay: cfg.AckDelay,
				buf: make([]byte, max(cfg.Blksize, 512)+4+64)}
			var lat []time.Duration
			var bytes int64
			var fails []string
			for take() {
				t0 := time.Now()
				n, err := c.get(ctx)
				if err == nil && cfg.Size > 0 && n != cfg.Size {
					err = fmt.Errorf("received %d bytes, want %d", n, cfg.Size)
				}
				if err != nil {
					fails = append(fails, err.Error())
					continue
				}
				lat = append(lat, time.Since(t0))
				bytes += n
			}
			mu.Lock()
			defer mu.Unlock()
			res.Transfers += len(lat)
			res.Latencies = append(res.Latencies, lat...)
			res.Bytes += bytes
			res.Failures += len(fails)
			for _, f := range fails {
				res.Errors[f]++
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	slices.Sort(res.Latencies)
	return res, ctx.Err()
}

// Request builds a read request for name in octet mode with the options asked.
func Request(name string, blksize, windowsize int, tsize bool) []byte {
	p := []byte{0, opRRQ}
	add := func(s string) { p = append(append(p, s...), 0) }
	add(name)
	add("octet")
	if blksize > 0 {
		add("blksize")
		add(strconv.Itoa(blksize))
	}
	if tsize {
		add("tsize")
		add("0")
	}
	if windowsize > 0 {
		add("windowsize")
		add(strconv.Itoa(windowsize))
	}
	return p
}

const (
	opRRQ   = 1
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

type client struct {
	server   netip.AddrPort
	src      netip.Addr
	timeout  time.Duration
	retries  int
	req      []byte
	buf      []byte
	ackDelay time.Duration
}

// get runs one transfer from a fresh socket (a fresh TID, as a PXE ROM's next attempt
// has) and returns the bytes received.
func (c *client) get(ctx context.Context) (int64, error) {
	laddr := &net.UDPAddr{}
	if c.src.IsValid() {
		laddr.IP = c.src.AsSlice()
	}
	conn, err := net.ListenUDP("udp4", laddr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if _, err := conn.WriteToUDPAddrPort(c.req, c.server); err != nil {
		return 0, err
	}
	var (
		peer      netip.AddrPort // the server's TID, once it answered
		blksize   = 512
		window    = 1
		next      = uint16(1) // the block expected
		inWindow  int         // blocks received since the last ACK
		n         int64
		ack       = []byte{0, opACK, 0, 0}
		timeouts  int
		lastIsReq = true // what a timeout resends: the request, or ack
	)
	sendAck := func(block uint16) error {
		binary.BigEndian.PutUint16(ack[2:], block)
		lastIsReq = false
		if c.ackDelay > 0 {
			time.Sleep(c.ackDelay)
		}
		_, err := conn.WriteToUDPAddrPort(ack, peer)
		return err
	}
	for {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		_ = conn.SetReadDeadline(time.Now().Add(c.timeout))
		k, from, err := conn.ReadFromUDPAddrPort(c.buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return n, err
			}
			if timeouts++; timeouts > c.retries {
				return n, fmt.Errorf("timeout at block %d", next)
			}
			if lastIsReq {
				_, err = conn.WriteToUDPAddrPort(c.req, c.server)
			} else {
				inWindow = 0
				err = sendAck(next - 1)
			}
			if err != nil {
				return n, err
			}
			continue
		}
		if k < 4 || (peer.IsValid() && from != peer) || from.Addr().Unmap() != c.server.Addr().Unmap() {
			continue // not this transfer's
		}
		p := c.buf[:k]
		op := binary.BigEndian.Uint16(p)
		if !peer.IsValid() {
			peer = from
		}
		timeouts = 0
		switch op {
		case opERROR:
			msg := strings.TrimRight(string(p[4:]), "\x00")
			return n, fmt.Errorf("error %d: %s", binary.BigEndian.Uint16(p[2:]), msg)
		case opOACK:
			if next != 1 || inWindow != 0 || n != 0 {
				continue // a repeated OACK after data began
			}
			if err := parseOACK(p, &blksize, &window); err != nil {
				return n, err
			}
			if blksize+4 > len(c.buf) {
				return n, fmt.Errorf("OACK blksize %d is more than asked", blksize)
			}
			if err := sendAck(0); err != nil {
				return n, err
			}
		case opDATA:
			block := binary.BigEndian.Uint16(p[2:])
			if block != next {
				if int16(block-next) > 0 {
					// A gap: ask for the window again from the last block in order.
					inWindow = 0
					if err := sendAck(next - 1); err != nil {
						return n, err
					}
				} else if window == 1 {
					// Lock-step: the server did not get our ACK; say it again.
					if err := sendAck(next - 1); err != nil {
						return n, err
					}
				}
				continue
			}
			data := k - 4
			n += int64(data)
			inWindow++
			if data < blksize {
				return n, sendAck(block)
			}
			if inWindow >= window {
				inWindow = 0
				if err := sendAck(block); err != nil {
					return n, err
				}
			}
			next++
		}
	}
}

// parseOACK reads the blksize and windowsize an OACK p (opcode included) acknowledged
// into blksize and window; the options it does not name leave them as they were.
func parseOACK(p []byte, blksize, window *int) error {
	opts := strings.Split(strings.TrimRight(string(p[2:]), "\x00"), "\x00")
	for i := 0; i+1 < len(opts); i += 2 {
		v, err := strconv.Atoi(opts[i+1])
		if err != nil {
			return fmt.Errorf("OACK %s=%q", opts[i], opts[i+1])
		}
		switch strings.ToLower(opts[i]) {
		case "blksize":
			*blksize = v
		case "windowsize":
			*window = v
		}
	}
	return nil
}
