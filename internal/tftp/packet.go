package tftp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The TFTP wire format (RFC 1350, options RFC 2347) and option negotiation (RFC 2348
// blksize, RFC 2349 timeout and tsize, RFC 7440 windowsize): pure functions, no sockets.

// Opcodes.
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// Error codes of RFC 1350 and RFC 2347.
const (
	errUndefined    = 0
	errNotFound     = 1
	errAccess       = 2
	errIllegalOp    = 4
	errOptionRefuse = 8 // a client refusing the OACK; UEFI's "I only wanted tsize"
)

const (
	// defaultBlksize is RFC 1350's block size, used when no blksize is negotiated.
	defaultBlksize = 512
	// minBlksize and maxBlksize bound the blksize option (RFC 2348).
	minBlksize = 8
	maxBlksize = 65464
	// MaxWindowSize caps the windowsize option (RFC 7440): a client asking more gets
	// this. RFC 7440's measurements level off near 64 blocks, tftp-hpa's client refuses
	// windows above 64, and it bounds what one transfer holds in memory (64 blocks).
	MaxWindowSize = 64
	// maxErrorMessage bounds an error packet's text: the packet fits in 512 bytes.
	maxErrorMessage = 512 - 5
)

// request is a parsed read or write request.
type request struct {
	op   uint16
	file string
	mode string   // lower case: "octet", "netascii", ...
	opts []option // in the client's order; names lower case, each name once
}

// option is one option name and value, as asked or as acknowledged.
type option struct{ name, value string }

var errMalformed = errors.New("malformed request")

// parseRequest parses a packet sent to the server port. Anything but a read or write
// request with a NUL-terminated file name and mode is an error: such packets are dropped.
// Options are read leniently, as RFC 2347 asks of a server: a name without a value at
// the end is ignored, and so is a name given twice (the first counts).
func parseRequest(p []byte) (request, error) {
	if len(p) < 2 {
		return request{}, fmt.Errorf("%w: %d bytes", errMalformed, len(p))
	}
	r := request{op: binary.BigEndian.Uint16(p)}
	if r.op != opRRQ && r.op != opWRQ {
		return request{}, fmt.Errorf("%w: opcode %d on the server port", errMalformed, r.op)
	}
	fields := strings.Split(string(p[2:]), "\x00")
	// A well-formed request ends with a NUL, so the last field is empty.
	if len(fields) < 3 || fields[len(fields)-1] != "" {
		return request{}, fmt.Errorf("%w: no NUL-terminated file name and mode", errMalformed)
	}
	fields = fields[:len(fields)-1]
	r.file, r.mode = fields[0], strings.ToLower(fields[1])
	for i := 2; i+1 < len(fields); i += 2 {
		name := strings.ToLower(fields[i])
		if name == "" || hasOption(r.opts, name) {
			continue
		}
		r.opts = append(r.opts, option{name, fields[i+1]})
	}
	return r, nil
}

func hasOption(opts []option, name string) bool {
	for _, o := range opts {
		if o.name == name {
			return true
		}
	}
	return false
}

// limits is what the server allows a transfer, whatever the client asks.
type limits struct {
	maxBlksize int           // from the interface MTU: a block never fragments
	maxTimeout time.Duration // the server's own timeout: a client may only shorten it
}

// params is what negotiation settled for one transfer.
type params struct {
	blksize int
	window  int
	timeout time.Duration // 0: the server's
	oack    []option      // what to acknowledge; empty: send no OACK, start with DATA
}

// negotiate settles the options of a read request of a file of size bytes (-1:
// unknown, so no tsize). Options the server does not know, or whose values it will not
// take, are left out of the OACK, which RFC 2347 allows: the client then falls back to
// the default. A client that asks for no option gets RFC 1350 exactly: 512-byte blocks
// in lock-step, no OACK.
func negotiate(opts []option, size int64, lim limits) params {
	p := params{blksize: defaultBlksize, window: 1}
	for _, o := range opts {
		v, err := strconv.Atoi(o.value)
		if err != nil && o.name != "tsize" {
			continue
		}
		switch o.name {
		case "blksize":
			if v < minBlksize || v > maxBlksize {
				continue
			}
			p.blksize = max(min(v, lim.maxBlksize), minBlksize)
			p.oack = append(p.oack, option{o.name, strconv.Itoa(p.blksize)})
		case "tsize":
			// A read request asks with 0 (RFC 2349); atftp sends "enable". Whatever
			// the value, the client wants the size.
			if size < 0 {
				continue
			}
			p.oack = append(p.oack, option{o.name, strconv.FormatInt(size, 10)})
		case "timeout":
			// RFC 2349: the server acknowledges the value asked or ignores the option.
			// A longer timeout than the server's would let a client hold a transfer
			// slot longer, so only shorter ones are taken.
			t := time.Duration(v) * time.Second
			if v < 1 || v > 255 || t > lim.maxTimeout {
				continue
			}
			p.timeout = t
			p.oack = append(p.oack, option{o.name, o.value})
		case "windowsize":
			if v < 1 || v > 65535 {
				continue
			}
			p.window = min(v, MaxWindowSize)
			p.oack = append(p.oack, option{o.name, strconv.Itoa(p.window)})
		}
	}
	return p
}

// appendOACK appends an OACK packet to b.
func appendOACK(b []byte, opts []option) []byte {
	b = binary.BigEndian.AppendUint16(b, opOACK)
	for _, o := range opts {
		b = append(append(b, o.name...), 0)
		b = append(append(b, o.value...), 0)
	}
	return b
}

// appendError appends an ERROR packet to b; msg is cut to fit in limit bytes in all
// (at least 5: the packet without text), and to 512.
func appendError(b []byte, code uint16, msg string, limit int) []byte {
	n := min(len(msg), maxErrorMessage, max(limit-5, 0))
	msg = strings.ToValidUTF8(msg[:n], "")
	b = binary.BigEndian.AppendUint16(b, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	return append(append(b, msg...), 0)
}

// putDataHeader writes a DATA header for block into the first 4 bytes of b.
func putDataHeader(b []byte, block uint16) {
	binary.BigEndian.PutUint16(b, opDATA)
	binary.BigEndian.PutUint16(b[2:], block)
}

// A reply is a packet from the client during a transfer, as the sender needs it.
type reply struct {
	op    uint16 // opACK or opERROR; 0 for anything else, which the sender ignores
	block uint16 // of an ACK
	code  uint16 // of an ERROR
	msg   string // of an ERROR
}

// parseReply reads a client's packet during a transfer.
func parseReply(p []byte) reply {
	if len(p) < 4 {
		return reply{}
	}
	switch op := binary.BigEndian.Uint16(p); op {
	case opACK:
		return reply{op: op, block: binary.BigEndian.Uint16(p[2:])}
	case opERROR:
		msg, _, _ := strings.Cut(string(p[4:]), "\x00")
		if len(msg) > maxErrorMessage {
			msg = msg[:maxErrorMessage]
		}
		return reply{op: op, code: binary.BigEndian.Uint16(p[2:]), msg: strings.ToValidUTF8(msg, "?")}
	}
	return reply{}
}
