package bmc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// ipmitool reports a wrong password, a wrong user and a BMC that never answered with
// the same line ("Unable to establish IPMI v2 / RMCP+ session"). An RMCP/ASF presence
// ping (IPMI v2 §13.2.3, mandatory for LAN-attached BMCs) tells them apart in one
// round trip: a pong means the BMC is there, so the session was refused for its
// credentials; "connection refused" means nothing listens on the port at all.

const (
	asfIANA         = 4542 // 0x000011BE, the ASF enterprise number
	asfPresencePing = 0x80
	asfPresencePong = 0x40
	rmcpClassASF    = 0x06
)

// encodePresencePing builds the 12-byte RMCP/ASF presence ping carrying tag.
func encodePresencePing(tag byte) []byte {
	b := make([]byte, 12)
	b[0] = 0x06 // RMCP version 1.0
	b[1] = 0x00
	b[2] = 0xff // sequence: no RMCP ACK wanted
	b[3] = rmcpClassASF
	binary.BigEndian.PutUint32(b[4:8], asfIANA)
	b[8] = asfPresencePing
	b[9] = tag
	b[10] = 0x00
	b[11] = 0x00 // data length
	return b
}

// pong is what a presence pong says.
type pong struct {
	tag  byte
	ipmi bool // the entity supports IPMI (supported-entities bit 7)
}

// decodePresencePong parses a reply; anything else is an error.
func decodePresencePong(b []byte) (pong, error) {
	if len(b) < 12 || b[0] != 0x06 || b[3]&0x0f != rmcpClassASF {
		return pong{}, errors.New("not an RMCP/ASF message")
	}
	if binary.BigEndian.Uint32(b[4:8]) != asfIANA || b[8] != asfPresencePong {
		return pong{}, errors.New("not an ASF presence pong")
	}
	p := pong{tag: b[9]}
	if n := int(b[11]); n >= 9 && len(b) >= 12+9 {
		p.ipmi = b[12+8]&0x80 != 0
	}
	return p, nil
}

// pingResult is what a presence ping found out.
type pingResult int

const (
	pingAnswered pingResult = iota
	pingRefused             // ICMP port/host unreachable: nothing listens there
	pingSilent              // no answer before the deadline
)

// presencePing sends one presence ping to addr over dial and waits until ctx's
// deadline (or wait, whichever is sooner) for the matching pong.
func presencePing(ctx context.Context, dial DialFunc, addr string, wait time.Duration) (pingResult, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	conn, err := dial(ctx, "udp", addr)
	if err != nil {
		if isRefused(err) {
			return pingRefused, err
		}
		return pingSilent, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	const tag = 0x5a
	if _, err := conn.Write(encodePresencePing(tag)); err != nil {
		if isRefused(err) {
			return pingRefused, err
		}
		return pingSilent, err
	}
	buf := make([]byte, 512)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if isRefused(err) {
				return pingRefused, err
			}
			return pingSilent, err
		}
		if p, err := decodePresencePong(buf[:n]); err == nil && p.tag == tag {
			return pingAnswered, nil
		}
		// Something else on the port (a stray IPMI reply): keep waiting for the pong.
	}
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// DialFunc opens a connection; net.Dialer.DialContext is one. The lab and tests give
// one that dials from inside a network namespace.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func defaultDial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (r pingResult) String() string {
	switch r {
	case pingAnswered:
		return "answered"
	case pingRefused:
		return "refused"
	}
	return "silent"
}

var _ fmt.Stringer = pingResult(0)
