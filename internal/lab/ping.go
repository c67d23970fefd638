package lab

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// PingResult is what Netns.Ping saw.
type PingResult struct {
	Sent, Received int
	// Answered holds the sequence numbers (1..Sent) that got a reply, in the order the
	// replies came.
	Answered []int
}

// Lost reports whether no request was answered.
func (r PingResult) Lost() bool { return r.Received == 0 }

func (r PingResult) String() string {
	return fmt.Sprintf("%d sent, %d answered %v", r.Sent, r.Received, r.Answered)
}

// Ping sends count ICMP echo requests to dst from inside the namespace, one every
// interval, and waits for the replies until a second after the last request (or ctx
// ends). The machine may have no ping(8) (iputils): this is a raw ICMP socket, which
// needs root like everything in the lab. The error is only about the socket; unanswered
// requests are in the result.
func (n *Netns) Ping(ctx context.Context, dst netip.Addr, count int, interval time.Duration) (PingResult, error) {
	var res PingResult
	if count < 1 || interval <= 0 {
		return res, fmt.Errorf("ping %s: count %d and interval %v must be positive", dst, count, interval)
	}
	if !dst.Is4() {
		return res, fmt.Errorf("ping %s: IPv4 only", dst)
	}
	var conn *icmp.PacketConn
	if err := n.Do(func() error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return res, fmt.Errorf("ping from %s: %w", n.Name, err)
	}
	defer conn.Close()
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	id := int(binary.BigEndian.Uint16(idb[:]))

	replies := make(chan int, count)
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			m, peer, err := conn.ReadFrom(buf)
			if err != nil {
				readErr <- err
				return
			}
			msg, err := icmp.ParseMessage(1, buf[:m])
			if err != nil || msg.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			echo, ok := msg.Body.(*icmp.Echo)
			if !ok || echo.ID != id || peer.(*net.IPAddr).IP.String() != dst.String() {
				continue
			}
			select {
			case replies <- echo.Seq:
			default:
			}
		}
	}()

	seen := map[int]bool{}
	collect := func(seq int) {
		if !seen[seq] && seq >= 1 && seq <= res.Sent {
			seen[seq] = true
			res.Received++
			res.Answered = append(res.Answered, seq)
		}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	send := func() error {
		res.Sent++
		b, err := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: res.Sent, Data: []byte("rackboot-lab")}}).Marshal(nil)
		if err != nil {
			return err
		}
		_, err = conn.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()})
		return err
	}
	if err := send(); err != nil {
		return res, fmt.Errorf("ping %s from %s: %w", dst, n.Name, err)
	}
	var last <-chan time.Time
	if res.Sent == count {
		last = time.After(time.Second)
	}
	for {
		select {
		case <-ctx.Done():
			return res, nil
		case seq := <-replies:
			collect(seq)
			if res.Sent == count && res.Received == count {
				return res, nil
			}
		case err := <-readErr:
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				return res, nil
			}
			return res, fmt.Errorf("ping %s from %s: %w", dst, n.Name, err)
		case <-tick.C:
			if res.Sent < count {
				// A send error (no route yet, ARP table full) is a lost request.
				_ = send()
				if res.Sent == count {
					last = time.After(time.Second)
				}
			}
		case <-last:
			return res, nil
		}
	}
}
