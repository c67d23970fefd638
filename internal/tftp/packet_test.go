package tftp

import (
	"encoding/binary"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		p       []byte
		want    request
		wantErr bool
	}{
		{name: "plain", p: rrq("undionly.kpxe", "octet"), want: request{op: opRRQ, file: "undionly.kpxe", mode: "octet"}},
		{name: "options lower-cased, first of a name counts", p: rrq("f", "OCTET", "BlkSize", "1468", "blksize", "512", "windowsize", "16"),
			want: request{op: opRRQ, file: "f", mode: "octet", opts: []option{{"blksize", "1468"}, {"windowsize", "16"}}}},
		{name: "a name without value is ignored", p: rrq("f", "octet", "tsize", "0", "blksize"),
			want: request{op: opRRQ, file: "f", mode: "octet", opts: []option{{"tsize", "0"}}}},
		{name: "write", p: append([]byte{0, opWRQ}, "f\x00octet\x00"...), want: request{op: opWRQ, file: "f", mode: "octet"}},
		{name: "empty name still parses (CleanPath refuses it)", p: rrq("", "octet"), want: request{op: opRRQ, mode: "octet"}},
		{name: "too short", p: []byte{0}, wantErr: true},
		{name: "ACK to the server port", p: []byte{0, opACK, 0, 1}, wantErr: true},
		{name: "unknown opcode", p: []byte{0, 9, 'x', 0}, wantErr: true},
		{name: "no mode", p: []byte{0, opRRQ, 'a'}, wantErr: true},
		{name: "mode not terminated", p: []byte{0, opRRQ, 'a', 0, 'o'}, wantErr: true},
		{name: "name only", p: []byte{0, opRRQ, 'a', 0}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequest(tc.p)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(request{}, option{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestNegotiate(t *testing.T) {
	lim := limits{maxBlksize: 1468, maxTimeout: 5 * time.Second}
	tests := []struct {
		name string
		opts []option
		size int64
		want params
	}{
		{name: "no options: RFC 1350", size: 100, want: params{blksize: 512, window: 1}},
		{name: "PXE: blksize and tsize", opts: []option{{"blksize", "1468"}, {"tsize", "0"}}, size: 74213,
			want: params{blksize: 1468, window: 1, oack: []option{{"blksize", "1468"}, {"tsize", "74213"}}}},
		{name: "blksize clamped to the MTU", opts: []option{{"blksize", "9000"}}, want: params{blksize: 1468, window: 1, oack: []option{{"blksize", "1468"}}}},
		{name: "blksize out of range ignored", opts: []option{{"blksize", "7"}, {"windowsize", "0"}}, want: params{blksize: 512, window: 1}},
		{name: "blksize 8", opts: []option{{"blksize", "8"}}, want: params{blksize: 8, window: 1, oack: []option{{"blksize", "8"}}}},
		{name: "windowsize echoed", opts: []option{{"windowsize", "16"}}, want: params{blksize: 512, window: 16, oack: []option{{"windowsize", "16"}}}},
		{name: "windowsize capped", opts: []option{{"windowsize", "65535"}}, want: params{blksize: 512, window: MaxWindowSize, oack: []option{{"windowsize", "64"}}}},
		{name: "windowsize above the RFC's range ignored", opts: []option{{"windowsize", "65536"}}, want: params{blksize: 512, window: 1}},
		{name: "timeout shorter than the server's taken", opts: []option{{"timeout", "2"}}, want: params{blksize: 512, window: 1, timeout: 2 * time.Second, oack: []option{{"timeout", "2"}}}},
		{name: "timeout longer than the server's ignored", opts: []option{{"timeout", "60"}}, want: params{blksize: 512, window: 1}},
		{name: "tsize of a length not known ahead (netascii)", opts: []option{{"tsize", "0"}}, size: -1, want: params{blksize: 512, window: 1}},
		{name: "tsize whatever the value (atftp says enable)", opts: []option{{"tsize", "enable"}}, size: 7, want: params{blksize: 512, window: 1, oack: []option{{"tsize", "7"}}}},
		{name: "unknown and junk ignored", opts: []option{{"multicast", ""}, {"blksize", "x"}, {"windowsize", "-1"}}, want: params{blksize: 512, window: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := negotiate(tc.opts, tc.size, lim)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(params{}, option{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendError(t *testing.T) {
	// A busy answer is no bigger than the request it answers.
	req := rrq("x", "octet")
	p := appendError(nil, errUndefined, "server busy: try again later", len(req))
	if len(p) > len(req) || string(p[:4]) != "\x00\x05\x00\x00" || p[len(p)-1] != 0 {
		t.Errorf("%q for a %d-byte request", p, len(req))
	}
	// Never more than 512 bytes, and valid UTF-8 when cut.
	p = appendError(nil, errAccess, strings.Repeat("é", 600), 10000)
	if len(p) > 512 || !strings.HasSuffix(string(p), "é\x00") {
		t.Errorf("%d bytes ending %q", len(p), p[len(p)-4:])
	}
}

// TestModes: netascii is converted (LF to CR LF, CR to CR NUL) and gets no tsize, since
// the converted length is not known before the end; other modes are refused.
func TestModes(t *testing.T) {
	ts := startServerConfig(t, func(c *Config) { c.FS = fstest.MapFS{"t.txt": {Data: []byte("a\nb\rc")}} }, nil)
	rc := dialRaw(t)
	rc.send(t, ts.addr, rrq("t.txt", "NetASCII", "tsize", "0"))
	if got := rc.receiveAll(t, 512, nil); string(got) != "a\r\nb\r\x00c" {
		t.Errorf("netascii: %q", got)
	}
	rc = dialRaw(t)
	rc.send(t, ts.addr, rrq("t.txt", "mail"))
	if op, p := rc.recv(t); op != opERROR || binary.BigEndian.Uint16(p) != errIllegalOp {
		t.Errorf("mail: opcode %d %q, want error %d", op, p, errIllegalOp)
	}
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	if got := ts.value(t, "rackboot_tftp_transfers_total", map[string]string{"file": unknownFile, "outcome": OutcomeRefused}); got != 1 {
		t.Errorf("transfers{unknown,refused} = %v, want 1", got)
	}
}
