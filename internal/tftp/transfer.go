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

// transferConn is the transfer's own socket, connected to the client: it reads only
// that client's packets. *net.UDPConn is one; tests use others.
type transferConn interface {
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	SetReadDeadline(t time.Time) error
}

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

// sender runs one transfer over conn. Its zero values of retries and timeout are not
// usable; serveRead fills every field.
type sender struct {
	conn    transferConn
	src     blockSource
	blksize int
	window  int
	timeout time.Duration
	retries int    // sends of one window (or the OACK) before the transfer fails
	oack    []byte // the OACK packet, nil when no option was acknowledged

	pkt  []byte // one DATA packet: 4 + blksize
	rbuf []byte // the client's packets

	// What happened, for the log, metrics and the timeline.
	acked       int64 // file bytes the client acknowledged
	retransmits int   // windows (or OACKs) sent again after a timeout
}

// run sends the file and returns nil once the client acknowledged the last block.
func (s *sender) run() error {
	s.pkt = make([]byte, 4+s.blksize)
	s.rbuf = make([]byte, 4+defaultBlksize)
	if s.oack != nil {
		if err := s.sendOACK(); err != nil {
			return err
		}
	}
	var (
		base  int64                      // the last block acknowledged; the window starts after it
		last  int64                      // the last block of the file, once read (0: not yet)
		sizes = make([]int, 0, s.window) // bytes of each block sent: sizes[i] is block base+1+i's
		tries int                        // sends of the current window
	)
	for {
		if tries >= s.retries {
			return errTimeout
		}
		if tries > 0 {
			s.retransmits++
		}
		tries++
		// Send blocks base+1 ... base+window, or up to the last.
		sizes = sizes[:0]
		for seq := base + 1; seq <= base+int64(s.window); seq++ {
			n, err := s.src.block(seq, s.pkt[4:])
			if err != nil {
				return &readError{err}
			}
			putDataHeader(s.pkt, uint16(seq)) // block numbers roll over to 0 after 65535
			if _, err := s.conn.Write(s.pkt[:4+n]); err != nil {
				return err
			}
			sizes = append(sizes, n)
			if n < s.blksize {
				last = seq
				break
			}
		}
		// Wait for an ACK of a block sent: it moves the window to after that block.
		// The client ACKs the window's last block, or, when it saw a gap, the last block
		// it holds in order: then the next window starts right after it ("rolled
		// back"). ACKs of older blocks (duplicates, late ones) are ignored, which keeps
		// one lost packet from doubling every packet after it (the Sorcerer's Apprentice
		// of RFC 1350).
		acked, err := s.awaitACK(func(block uint16) bool {
			d := int(block - uint16(base)) // block numbers wrap; d counts from base
			return d >= 1 && d <= len(sizes)
		})
		if err == errWaitTimeout {
			continue
		}
		if err != nil {
			return err
		}
		d := int(acked - uint16(base))
		for _, n := range sizes[:d] {
			s.acked += int64(n)
		}
		base += int64(d)
		if last != 0 && base == last {
			return nil
		}
		tries = 0
	}
}

// sendOACK sends the OACK until the client acknowledges it with ACK 0.
func (s *sender) sendOACK() error {
	for tries := 0; ; tries++ {
		if tries >= s.retries {
			return errTimeout
		}
		if tries > 0 {
			s.retransmits++
		}
		if _, err := s.conn.Write(s.oack); err != nil {
			return err
		}
		_, err := s.awaitACK(func(block uint16) bool { return block == 0 })
		if err == errWaitTimeout {
			continue
		}
		return err
	}
}

// errWaitTimeout: no ACK that counts came within the timeout; the caller sends again.
var errWaitTimeout = errors.New("no ACK within the timeout")

// awaitACK reads the client's packets until an ACK that want accepts (it returns its
// block), an ERROR, or the timeout from now; other packets are ignored and do not
// extend the wait.
func (s *sender) awaitACK(want func(block uint16) bool) (uint16, error) {
	if err := s.conn.SetReadDeadline(time.Now().Add(s.timeout)); err != nil {
		return 0, err
	}
	for {
		n, err := s.conn.Read(s.rbuf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, errWaitTimeout
			}
			return 0, err
		}
		r := parseReply(s.rbuf[:n])
		switch r.op {
		case opACK:
			if want(r.block) {
				return r.block, nil
			}
		case opERROR:
			return 0, &clientError{code: r.code, msg: r.msg}
		}
	}
}
