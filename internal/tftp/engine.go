package tftp

import (
	"errors"
	"io/fs"
	"net"
	"slices"
	"sync"
	"time"
)

// What runs transfers once the request reader has started them: an engine owns their
// sockets from the first packet sent to the end. On Linux one event loop runs them all
// (engine_linux.go; doc.go says why); elsewhere, and in tests of both, a goroutine per
// transfer (goroutineEngine). Either drives the same state machine (xfer) and ends a
// transfer through Server.complete.

// engine runs transfers to their end.
type engine interface {
	// dial opens the socket of one answer, the server's TID: to arr.remote, from
	// arr.local when it is known. Only the request reader calls it.
	dial(arr arrival) (answerConn, error)
	// run takes over a, whose first packet is sent, and ends it with Server.complete.
	run(a *active)
	// close is called once no more run calls come; it returns when every transfer
	// has ended.
	close()
}

// answerConn is the socket of one answer (a transfer, or an error packet).
type answerConn interface {
	Write(p []byte) (int, error)
	Close() error
}

// active is a transfer in flight.
type active struct {
	t       transfer
	x       xfer
	conn    answerConn
	file    fs.File // nil until opened
	release func()  // gives its slot back (limit.go)
}

// goroutineEngine runs each transfer in a goroutine of its own, on a socket of Go's
// net package: portable, and a goroutine wake-up and a timer per packet dearer than
// the event loop.
type goroutineEngine struct {
	s       *Server
	network string
	wg      sync.WaitGroup
}

func newGoroutineEngine(s *Server, network string) *goroutineEngine {
	return &goroutineEngine{s: s, network: network}
}

type udpAnswer struct{ *net.UDPConn }

func (u udpAnswer) port() uint16 { return uint16(u.LocalAddr().(*net.UDPAddr).Port) }

// dial opens a new port for each answer, connected to the client.
//
// RFC 1350 asks that the same TID not come twice in immediate succession: a client
// that sent several requests from one port (a flood does; so may UEFI, probing tsize
// and then fetching) would take the second answer from a port for a repeat of the
// first. The kernel's random ephemeral ports do repeat (a closed answer's port may
// come straight back), so a port among the last len(recentTIDs) answers' is given back
// and another taken. (The event loop answers every client from one port, and tells a
// client's transfers apart by its own port: engine_linux.go.)
func (g *goroutineEngine) dial(arr arrival) (answerConn, error) {
	s := g.s
	for range 4 {
		c, err := net.DialUDP(g.network, &net.UDPAddr{IP: arr.local}, arr.remote)
		if err != nil {
			return nil, err
		}
		port := udpAnswer{c}.port()
		if !slices.Contains(s.recentTIDs[:], port) {
			s.recentTIDs[s.nextTID%len(s.recentTIDs)] = port
			s.nextTID++
			return udpAnswer{c}, nil
		}
		_ = c.Close()
	}
	return nil, errors.New("no fresh port for the answer")
}

func (g *goroutineEngine) run(a *active) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := a.x.drive(a.conn.(udpAnswer).UDPConn)
		g.s.complete(a, err, time.Now())
	}()
}

func (g *goroutineEngine) close() { g.wg.Wait() }
