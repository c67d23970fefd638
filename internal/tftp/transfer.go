package tftp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The sending side of one read transfer: OACK, then DATA in windows of one or more
// blocks (RFC 7440; a window of one is RFC 1350's lock-step), each window sent again
// when its ACK does not come within the timeout.

// Errors of a transfer, which say its outcome.
var (
	// errTimeout: the client went silent; the last window was sent Retries times.
	errTimeout = errors.New("timed out waiting for the client's ACK")
)

// clientError is an ERROR packet from the client.
type clientError struct {
	code uint16
	msg  string
}

func (e *clientError) Error() string {
	return fmt.Sprintf("client sent error %d: %q", e.code, e.msg)
}

// readError is a failure to read the file being sent.
type readError struct{ err error }

func (e *readError) Error() string { return "read: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// blockSource gives block seq (1, 2, ...) of the file: it fills dst (blksize bytes) and
// returns how many bytes the block holds; fewer than len(dst) means it is the last.
// Blocks are asked for in order, but a window rolled back asks again for up to
// window-1 blocks before the highest asked.
type blockSource interface {
	block(seq int64, dst []byte) (int, error)
}

// readerAtSource reads blocks where they are: the embedded binaries and os.File both
// implement io.ReaderAt, so a window costs no memory of its own.
type readerAtSource struct{ r io.ReaderAt }

func (s readerAtSource) block(seq int64, dst []byte) (int, error) {
	n, err := s.r.ReadAt(dst, (seq-1)*int64(len(dst)))
	if err == io.EOF || (err == nil && n < len(dst)) {
		return n, nil
	}
	return n, err
}

// ringSource reads a plain io.Reader (netascii's conversion, a file without ReadAt)
// once, in order, and keeps the blocks of one window to send them again.
type ringSource struct {
	r       io.Reader
	window  int
	blksize int
	ring    []byte // window blocks of blksize
	lens    []int  // bytes in each ring slot
	read    int64  // highest block read
	last    int64  // the short block, once read (0: not yet)
	err     error  // the read error, once seen
}

func (s *ringSource) block(seq int64, dst []byte) (int, error) {
	if s.ring == nil {
		s.ring = make([]byte, s.window*s.blksize)
		s.lens = make([]int, s.window)
	}
	for s.read < seq {
		if s.err != nil {
			return 0, s.err
		}
		if s.last != 0 {
			return 0, fmt.Errorf("block %d is past the end (%d)", seq, s.last)
		}
		s.read++
		i := int((s.read - 1) % int64(s.window))
		slot := s.ring[i*s.blksize : (i+1)*s.blksize]
		n, err := io.ReadFull(s.r, slot)
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			s.last = s.read
		case err != nil:
			s.err = err
			return 0, err
		}
		s.lens[i] = n
	}
	if seq <= s.read-int64(s.window) {
		return 0, fmt.Errorf("block %d is no longer held (window %d, read %d)", seq, s.window, s.read)
	}
	i := int((seq - 1) % int64(s.window))
	return copy(dst, s.ring[i*s.blksize:i*s.blksize+s.lens[i]]), nil
}

// xfer is the sending side of one transfer as a state machine, without a socket or a
// clock of its own: whoever drives it (engine.go) hands it the client's packets and the
// time, and it writes its packets to the writer it is given. So one event loop can run
// every transfer (engine_linux.go), and a goroutine per transfer elsewhere.
//
// Its zero values of retries and timeout are not usable; Server.open fills every field.
type xfer struct {
	src     blockSource
	blksize int
	window  int
	timeout time.Duration
	retries int    // sends of one window (or the OACK) before the transfer fails
	oack    []byte // the OACK packet, nil when no option was acknowledged

	pkt      []byte    // one DATA packet: 4 + blksize
	base     int64     // the last block acknowledged; the window starts after it
	last     int64     // the last block of the file, once read (0: not yet)
	sizes    []int     // bytes of each block of the window sent: sizes[i] is block base+1+i's
	tries    int       // sends of the current window (or the OACK)
	inOACK   bool      // the OACK is waiting for its ACK 0
	deadline time.Time // when the window (or OACK) is sent again if no ACK came

	// What happened, for the log, metrics and the timeline.
	acked       int64 // file bytes the client acknowledged
	retransmits int   // windows (or OACKs) sent again after a timeout
}

// begin sends the OACK, or the first window when no option was acknowledged.
func (x *xfer) begin(w io.Writer, now time.Time) error {
	x.pkt = make([]byte, 4+x.blksize)
	x.sizes = make([]int, 0, x.window)
	if x.oack != nil {
		x.inOACK = true
		return x.sendOACK(w, now)
	}
	return x.sendWindow(w, now)
}

// expire is called once now is past the deadline: the OACK or the window is sent again,
// or, after Retries sends, the transfer fails with errTimeout.
func (x *xfer) expire(w io.Writer, now time.Time) error {
	if x.inOACK {
		return x.sendOACK(w, now)
	}
	return x.sendWindow(w, now)
}

// packet handles one packet from the client. It returns done once the client
// acknowledged the last block, and an error when the client sent one or the next
// window could not be sent. Packets that are neither an ACK of a block sent nor an
// ERROR are ignored and do not move the deadline.
func (x *xfer) packet(w io.Writer, p []byte, now time.Time) (done bool, err error) {
	r := parseReply(p)
	switch r.op {
	case opERROR:
		return false, &clientError{code: r.code, msg: r.msg}
	case opACK:
	default:
		return false, nil
	}
	if x.inOACK {
		if r.block != 0 {
			return false, nil
		}
		x.inOACK, x.tries = false, 0
		return false, x.sendWindow(w, now)
	}
	// An ACK of a block sent moves the window to after that block. The client ACKs the
	// window's last block, or, when it saw a gap, the last block it holds in order:
	// then the next window starts right after it ("rolled back"). ACKs of older blocks
	// (duplicates, late ones) are ignored, which keeps one lost packet from doubling
	// every packet after it (the Sorcerer's Apprentice of RFC 1350).
	d := int(r.block - uint16(x.base)) // block numbers wrap; d counts from base
	if d < 1 || d > len(x.sizes) {
		return false, nil
	}
	for _, n := range x.sizes[:d] {
		x.acked += int64(n)
	}
	x.base += int64(d)
	if x.last != 0 && x.base == x.last {
		return true, nil
	}
	x.tries = 0
	return false, x.sendWindow(w, now)
}

// try counts one more sending of what is outstanding (a retransmission after the
// first), or says errTimeout once Retries sendings have gone unanswered.
func (x *xfer) try() error {
	if x.tries >= x.retries {
		return errTimeout
	}
	if x.tries > 0 {
		x.retransmits++
	}
	x.tries++
	return nil
}

// sendOACK sends the OACK (again).
func (x *xfer) sendOACK(w io.Writer, now time.Time) error {
	if err := x.try(); err != nil {
		return err
	}
	if _, err := w.Write(x.oack); err != nil {
		return err
	}
	x.deadline = now.Add(x.timeout)
	return nil
}

// sendWindow sends blocks base+1 ... base+window, or up to the last.
func (x *xfer) sendWindow(w io.Writer, now time.Time) error {
	if err := x.try(); err != nil {
		return err
	}
	x.sizes = x.sizes[:0]
	for seq := x.base + 1; seq <= x.base+int64(x.window); seq++ {
		n, err := x.src.block(seq, x.pkt[4:])
		if err != nil {
			return &readError{err}
		}
		putDataHeader(x.pkt, uint16(seq)) // block numbers roll over to 0 after 65535
		if _, err := w.Write(x.pkt[:4+n]); err != nil {
			return err
		}
		x.sizes = append(x.sizes, n)
		if n < x.blksize {
			x.last = seq
			break
		}
	}
	x.deadline = now.Add(x.timeout)
	return nil
}

// transferConn is a transfer's own socket, connected to the client, as the goroutine
// engine drives it: *net.UDPConn is one.
type transferConn interface {
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	SetReadDeadline(t time.Time) error
}

// drive runs x over conn to its end in the calling goroutine, x.begin already done:
// nil once the client acknowledged the last block.
func (x *xfer) drive(conn transferConn) error {
	buf := make([]byte, 4+defaultBlksize)
	for {
		if err := conn.SetReadDeadline(x.deadline); err != nil {
			return err
		}
		n, err := conn.Read(buf)
		now := time.Now()
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return err
			}
			if err := x.expire(conn, now); err != nil {
				return err
			}
			continue
		}
		done, err := x.packet(conn, buf[:n], now)
		if done || err != nil {
			return err
		}
	}
}
