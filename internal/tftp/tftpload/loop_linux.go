//go:build linux

package tftpload

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// haveLoop: Run can use runLoop.
const haveLoop = true

// runLoop is Run as one event loop over every client's socket (epoll, raw non-blocking
// system calls): a load generator that costs less per packet than the servers it
// measures. Lock-step and windowsize alike; no AckDelay.
func runLoop(ctx context.Context, cfg Config, server netip.AddrPort, req []byte) (Result, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return Result{}, err
	}
	defer unix.Close(epfd)
	res := Result{Errors: map[string]int{}}
	start := time.Now()
	end := start.Add(cfg.Duration)
	started := 0
	take := func(now time.Time) bool {
		if ctx.Err() != nil || now.After(end) || (cfg.MaxTransfers > 0 && started >= cfg.MaxTransfers) {
			return false
		}
		started++
		return true
	}
	srvSA := rawSA(server)
	buf := make([]byte, max(cfg.Blksize, 512)+4+64)
	cs := make([]*lclient, cfg.Clients)
	byFD := map[int32]*lclient{}
	running := 0
	begin := func(c *lclient, now time.Time) {
		for take(now) {
			if err := c.open(epfd, req, &srvSA, now, cfg.Timeout); err != nil {
				res.Failures++
				res.Errors[err.Error()]++
				continue
			}
			byFD[int32(c.fd)] = c
			running++
			return
		}
	}
	finish := func(c *lclient, err error, now time.Time) {
		delete(byFD, int32(c.fd))
		unix.Close(c.fd)
		running--
		if err == nil && cfg.Size > 0 && c.n != cfg.Size {
			err = fmt.Errorf("received %d bytes, want %d", c.n, cfg.Size)
		}
		if err != nil {
			res.Failures++
			res.Errors[err.Error()]++
		} else {
			res.Transfers++
			res.Bytes += c.n
			res.Latencies = append(res.Latencies, now.Sub(c.t0))
		}
		begin(c, now)
	}
	now := time.Now()
	for i := range cs {
		cs[i] = &lclient{server: server}
		if len(cfg.Sources) > 0 {
			cs[i].src = cfg.Sources[i%len(cfg.Sources)]
		}
		begin(cs[i], now)
	}
	events := make([]unix.EpollEvent, 256)
	nextSweep := now.Add(10 * time.Millisecond)
	for running > 0 {
		n, err := unix.EpollWait(epfd, events, 10)
		if err != nil && err != unix.EINTR {
			return res, os.NewSyscallError("epoll_wait", err)
		}
		now = time.Now()
		for _, ev := range events[:max(n, 0)] {
			c := byFD[ev.Fd]
			if c == nil {
				continue
			}
			for c.fd == int(ev.Fd) {
				k, from, ok := c.recv(buf)
				if !ok {
					break
				}
				done, err := c.packet(buf[:k], from, now, cfg.Timeout)
				if done || err != nil {
					finish(c, err, now)
					break
				}
			}
		}
		if now.Before(nextSweep) {
			continue
		}
		nextSweep = now.Add(10 * time.Millisecond)
		for _, c := range cs {
			if byFD[int32(c.fd)] != c || now.Before(c.deadline) {
				continue
			}
			if c.timeouts++; c.timeouts > cfg.Retries {
				finish(c, fmt.Errorf("timeout at block %d", c.next), now)
				continue
			}
			if c.lastIsReq {
				c.sendTo(req, &srvSA)
			} else {
				c.inWindow = 0
				c.sendAck(c.next - 1)
			}
			c.deadline = now.Add(cfg.Timeout)
		}
	}
	res.Elapsed = time.Since(start)
	slices.Sort(res.Latencies)
	return res, ctx.Err()
}

// lclient is one client of the loop: the transfer its socket runs.
type lclient struct {
	server    netip.AddrPort
	src       netip.Addr
	fd        int
	peer      netip.AddrPort
	peerSA    unix.RawSockaddrInet4
	blksize   int
	window    int
	next      uint16
	inWindow  int
	n         int64
	timeouts  int
	lastIsReq bool
	deadline  time.Time
	t0        time.Time
	ack       [4]byte
}

func rawSA(a netip.AddrPort) unix.RawSockaddrInet4 {
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Addr().Unmap().As4()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(a.Port()>>8), byte(a.Port())
	return sa
}

// open starts a transfer from a fresh socket: the request sent.
func (c *lclient) open(epfd int, req []byte, srv *unix.RawSockaddrInet4, now time.Time, timeout time.Duration) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	sa := &unix.SockaddrInet4{}
	if c.src.IsValid() {
		sa.Addr = c.src.As4()
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		return err
	}
	*c = lclient{server: c.server, src: c.src, fd: fd, blksize: 512, window: 1, next: 1, lastIsReq: true, t0: now, deadline: now.Add(timeout)}
	c.ack[1] = opACK
	c.sendTo(req, srv)
	return nil
}

func (c *lclient) sendTo(p []byte, sa *unix.RawSockaddrInet4) {
	_, _, _ = syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(c.fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, uintptr(unsafe.Pointer(sa)), unsafe.Sizeof(*sa))
}

func (c *lclient) sendAck(block uint16) {
	binary.BigEndian.PutUint16(c.ack[2:], block)
	c.lastIsReq = false
	c.sendTo(c.ack[:], &c.peerSA)
}

// recv reads one datagram, if one waits.
func (c *lclient) recv(buf []byte) (int, netip.AddrPort, bool) {
	var sa unix.RawSockaddrInet4
	l := uint32(unsafe.Sizeof(sa))
	r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(c.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return 0, netip.AddrPort{}, false
	}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	return int(r), netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1])), true
}

// packet handles one datagram: done once the last block is acknowledged.
func (c *lclient) packet(p []byte, from netip.AddrPort, now time.Time, timeout time.Duration) (bool, error) {
	if len(p) < 4 || (c.peer.IsValid() && from != c.peer) || from.Addr() != c.server.Addr().Unmap() {
		return false, nil
	}
	if !c.peer.IsValid() {
		c.peer, c.peerSA = from, rawSA(from)
	}
	c.timeouts = 0
	c.deadline = now.Add(timeout)
	switch binary.BigEndian.Uint16(p) {
	case opERROR:
		return false, fmt.Errorf("error %d: %s", binary.BigEndian.Uint16(p[2:]), strings.TrimRight(string(p[4:]), "\x00"))
	case opOACK:
		if c.next != 1 || c.inWindow != 0 || c.n != 0 {
			return false, nil
		}
		if err := parseOACK(p, &c.blksize, &c.window); err != nil {
			return false, err
		}
		c.sendAck(0)
	case opDATA:
		block := binary.BigEndian.Uint16(p[2:])
		if block != c.next {
			if int16(block-c.next) > 0 {
				c.inWindow = 0
				c.sendAck(c.next - 1)
			} else if c.window == 1 {
				c.sendAck(c.next - 1)
			}
			return false, nil
		}
		data := len(p) - 4
		c.n += int64(data)
		c.inWindow++
		if data < c.blksize {
			c.sendAck(block)
			return true, nil
		}
		if c.inWindow >= c.window {
			c.inWindow = 0
			c.sendAck(block)
		}
		c.next++
	}
	return false, nil
}
