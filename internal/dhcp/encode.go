package dhcp

import (
	"encoding/binary"
	"net"
	"slices"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Serialising a reply is on the hot path of every packet the server answers.
// dhcpv4.DHCPv4.ToBytes allocates a fresh buffer (and grows it past its initial
// 236 bytes), plus a slice of option codes that it sorts. appendMsg writes the
// same bytes into a caller-owned buffer instead, so a reused buffer with enough
// capacity makes serialisation allocation-free.

const (
	optPad       = 0
	optAgentInfo = 82 // RFC 3046 §2.1: relay agent information goes last
	optEnd       = 255

	bootpHeaderLen = 236 // fixed BOOTP header, up to the magic cookie
	bootpMinLen    = 300 // RFC 951 message size; some relays drop shorter ones
)

var magicCookie = [4]byte{99, 130, 83, 99}

// appendMsg appends the wire form of d to dst and returns the extended slice.
//
// The bytes are exactly those of d.ToBytes() for the insomniacslk/dhcp version
// in go.mod: options sorted by code with option 82 last, Pad and End entries in
// the map skipped, options over 255 bytes split (RFC 3396), zero-length options
// written as code and length 0, then End and zero padding to 300 bytes. Where
// ToBytes would panic on a header IP that is neither nil nor IPv4, appendMsg
// writes zeros.
func appendMsg(dst []byte, d *dhcpv4.DHCPv4) []byte {
	// Collect the option codes and values on the stack (a map has at most 256
	// uint8 keys) in one pass over the map: looking each code up again cost
	// about half the time. values makes the frame about 6.5 KB, a one-off
	// stack growth for the long-lived workers.
	var codes [256]uint8
	var values [256][]byte // indexed by code
	n := 0
	agentInfo := false
	size := bootpHeaderLen + len(magicCookie) + 1 // header, cookie, End
	for code, data := range d.Options {
		switch code {
		case optPad, optEnd:
			continue
		case optAgentInfo:
			agentInfo = true
		default:
			codes[n] = code
			n++
		}
		values[code] = data
		size += optionWireLen(len(data))
	}
	sortCodes(codes[:n])
	if agentInfo {
		codes[n] = optAgentInfo
		n++
	}
	dst = slices.Grow(dst, max(size, bootpMinLen))
	start := len(dst)

	dst = append(dst, uint8(d.OpCode), uint8(d.HWType), uint8(len(d.ClientHWAddr)), d.HopCount)
	dst = append(dst, d.TransactionID[:]...)
	dst = binary.BigEndian.AppendUint16(dst, d.NumSeconds)
	dst = binary.BigEndian.AppendUint16(dst, d.Flags)
	dst = appendIP4(dst, d.ClientIPAddr)
	dst = appendIP4(dst, d.YourIPAddr)
	dst = appendIP4(dst, d.ServerIPAddr)
	dst = appendIP4(dst, d.GatewayIPAddr)
	dst = appendField(dst, d.ClientHWAddr, 16, 16)
	dst = appendField(dst, d.ServerHostName, 63, 64)
	dst = appendField(dst, d.BootFileName, 127, 128)
	dst = append(dst, magicCookie[:]...)

	for _, code := range codes[:n] {
		data := values[code]
		if len(data) == 0 {
			dst = append(dst, code, 0)
			continue
		}
		for len(data) > 0 {
			chunk := data[:min(len(data), 255)]
			dst = append(dst, code, uint8(len(chunk)))
			dst = append(dst, chunk...)
			data = data[len(chunk):]
		}
	}
	dst = append(dst, optEnd)

	if l := len(dst) - start; l < bootpMinLen {
		dst = append(dst, make([]byte, bootpMinLen-l)...) // Pad is 0; this make does not allocate
	}
	return dst
}

// optionWireLen is the encoded size of an option with n bytes of data.
func optionWireLen(n int) int {
	if n == 0 {
		return 2
	}
	return n + 2*((n+254)/255)
}

// sortCodes sorts a handful of option codes in place. Insertion sort: replies
// carry about ten options, and sort.Slice or slices.Sort buy nothing here.
func sortCodes(c []uint8) {
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j] < c[j-1]; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
}

// appendIP4 appends ip as 4 bytes, or 4 zeros when it is nil or not IPv4.
func appendIP4(dst []byte, ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return append(dst, v4...)
	}
	return append(dst, 0, 0, 0, 0)
}

// appendField appends a fixed-size field of size bytes holding at most limit
// bytes of s, zero-filled.
func appendField[S ~string | ~[]byte](dst []byte, s S, limit, size int) []byte {
	s = s[:min(len(s), limit)]
	dst = append(dst, s...)
	return append(dst, make([]byte, size-len(s))...)
}
