package tftp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"strconv"
	"testing"
	"testing/fstest"
	"time"
)

// These tests speak RFC 7440 by hand: a client that loses, reorders and repeats packets
// inside a window, and checks what the server sends back, packet by packet.

// windowFile is 20.5 blocks of 512 bytes, each byte telling its offset apart.
var windowFile = func() []byte {
	b := make([]byte, 20*512+256)
	for i := range b {
		b[i] = byte(i*7 + i/512)
	}
	return b
}()

// readerOnlyFS hides io.ReaderAt (and io.Seeker) of its files, as a converting or
// streaming file would, so that the server keeps the window in memory instead.
type readerOnlyFS struct{ fs.FS }

type readerOnlyFile struct{ f fs.File }

func (f readerOnlyFile) Read(b []byte) (int, error) { return f.f.Read(b) }
func (f readerOnlyFile) Stat() (fs.FileInfo, error) { return f.f.Stat() }
func (f readerOnlyFile) Close() error               { return f.f.Close() }

func (r readerOnlyFS) Open(name string) (fs.File, error) {
	f, err := r.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return readerOnlyFile{f}, nil
}

// windowServers runs fn against a server whose files can be read at any offset and
// against one whose files can only be read in order (and are not kept in memory, which
// would make them readable at any offset), each with the platform's engine (the event
// loop on Linux) and with a goroutine per transfer.
func windowServers(t *testing.T, timeout time.Duration, fn func(t *testing.T, ts *testServer)) {
	files := fstest.MapFS{"w.bin": {Data: windowFile}}
	for name, fsys := range map[string]fs.FS{"ReaderAt": files, "Reader": readerOnlyFS{files}} {
		for _, goroutines := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/goroutines=%v", name, goroutines), func(t *testing.T) {
				ts := startServerConfig(t, func(c *Config) {
					c.FS = fsys
					c.Timeout, c.Retries = timeout, 3
				}, func(s *Server) {
					s.goroutines = goroutines
					if _, ok := fsys.(readerOnlyFS); ok {
						s.files = nil
					}
				})
				fn(t, ts)
			})
		}
	}
}

// start sends a read request for w.bin with blksize 512 and windowsize 8, checks the
// OACK and acknowledges it.
func (r *rawConn) start(t *testing.T, addr string) {
	t.Helper()
	r.send(t, addr, rrq("w.bin", "octet", "blksize", "512", "windowsize", "8"))
	op, p := r.recv(t)
	if op != opOACK {
		t.Fatalf("opcode %d (%q), want OACK", op, p)
	}
	if got := parseOpts(p); got["windowsize"] != "8" || got["blksize"] != "512" {
		t.Fatalf("OACK %v", got)
	}
	r.ack(t, 0)
}

// data receives one packet, which must be DATA, and returns its block number and
// checks its bytes against windowFile.
func (r *rawConn) data(t *testing.T) uint16 {
	t.Helper()
	op, p := r.recv(t)
	if op != opDATA {
		t.Fatalf("opcode %d (%q), want DATA", op, p)
	}
	block := binary.BigEndian.Uint16(p)
	off := (int(block) - 1) * 512
	want := windowFile[off:min(off+512, len(windowFile))]
	if !bytes.Equal(p[2:], want) {
		t.Fatalf("block %d: %d bytes that are not the file's %d at offset %d", block, len(p)-2, len(want), off)
	}
	return block
}

// expect receives len(blocks) DATA packets and checks their numbers, in order.
func (r *rawConn) expect(t *testing.T, blocks ...uint16) {
	t.Helper()
	for _, want := range blocks {
		if got := r.data(t); got != want {
			t.Fatalf("block %d, want %d (sequence %v)", got, want, blocks)
		}
	}
}

func seq(from, to uint16) []uint16 {
	var s []uint16
	for b := from; b <= to; b++ {
		s = append(s, b)
	}
	return s
}

func TestWindowLossRollsBack(t *testing.T) {
	windowServers(t, 5*time.Second, func(t *testing.T, ts *testServer) {
		rc := dialRaw(t)
		rc.start(t, ts.addr)
		// The first window is sent whole before any ACK can come back.
		rc.expect(t, seq(1, 8)...)
		// Block 3 was "lost": the client holds 1 and 2 in order and says so. The
		// server starts the next window right after block 2.
		rc.ack(t, 2)
		rc.expect(t, seq(3, 10)...)
		// Reordered: 12 came before 11, so the client took 11 as lost and ACKed 10,
		// then the rest of the window came: the ACK of 10 still rolls the server
		// back to 11, and the later, older ACK of 9 changes nothing.
		rc.ack(t, 10)
		rc.ack(t, 9)
		rc.expect(t, seq(11, 18)...)
		rc.ack(t, 18)
		// Blocks 19, 20 and the short 21 end the file: a window of three.
		rc.expect(t, 19, 20, 21)
		rc.ack(t, 21)
		if err := ts.stop(); err != nil {
			t.Fatal(err)
		}
		if got := ts.value(t, "rackboot_tftp_transfers_total", map[string]string{"file": "w.bin", "outcome": OutcomeOK}); got != 1 {
			t.Errorf("transfers{w.bin,ok} = %v, want 1", got)
		}
		if got := ts.value(t, "rackboot_tftp_bytes_total", nil); got != float64(len(windowFile)) {
			t.Errorf("bytes_total = %v, want %d", got, len(windowFile))
		}
	})
}

// TestWindowDuplicateACKs: an ACK that repeats one already taken is ignored, in a
// window and in lock-step alike; acting on it would send every later block twice.
func TestWindowDuplicateACKs(t *testing.T) {
	windowServers(t, 5*time.Second, func(t *testing.T, ts *testServer) {
		t.Run("window", func(t *testing.T) {
			rc := dialRaw(t)
			rc.start(t, ts.addr)
			rc.expect(t, seq(1, 8)...)
			rc.ack(t, 8)
			rc.ack(t, 8)
			rc.ack(t, 0)
			rc.expect(t, seq(9, 16)...)
			rc.ack(t, 16)
			// Had the repeated ACKs counted, 9-16 would come again before 17.
			rc.expect(t, 17, 18, 19, 20, 21)
			rc.ack(t, 21)
		})
		t.Run("lock-step", func(t *testing.T) {
			rc := dialRaw(t)
			rc.send(t, ts.addr, rrq("w.bin", "octet"))
			rc.expect(t, 1)
			rc.ack(t, 1)
			rc.ack(t, 1)
			rc.expect(t, 2)
			rc.ack(t, 2)
			rc.expect(t, 3)
			for b := uint16(3); b <= 21; b++ {
				rc.ack(t, b)
				if b < 21 {
					rc.expect(t, b+1)
				}
			}
		})
	})
}

// TestWindowTimeout: no ACK for a window sends it again, whole, after the timeout; no
// ACK at all ends the transfer after Retries sends, with an error packet.
func TestWindowTimeout(t *testing.T) {
	windowServers(t, 200*time.Millisecond, func(t *testing.T, ts *testServer) {
		rc := dialRaw(t)
		rc.start(t, ts.addr)
		rc.expect(t, seq(1, 8)...)
		rc.ack(t, 4) // "lost" 5: the window restarts at 5
		rc.expect(t, seq(5, 12)...)
		// Silence: after 200 ms the same window comes again, and again (Retries 3).
		rc.expect(t, seq(5, 12)...)
		rc.expect(t, seq(5, 12)...)
		op, p := rc.recv(t)
		if op != opERROR {
			t.Fatalf("opcode %d, want the error that ends the transfer", op)
		}
		t.Logf("error after three sends: %q", p[2:])
		if err := ts.stop(); err != nil {
			t.Fatal(err)
		}
		if got := ts.value(t, "rackboot_tftp_transfers_total", map[string]string{"file": "w.bin", "outcome": OutcomeFailed}); got != 1 {
			t.Errorf("transfers{w.bin,failed} = %v, want 1", got)
		}
		if got := ts.value(t, "rackboot_tftp_bytes_total", nil); got != 4*512 {
			t.Errorf("bytes_total = %v, want the 4 blocks acknowledged (2048)", got)
		}
	})
}

// TestWindowClientError: an error packet from the client ends the transfer at once.
func TestWindowClientError(t *testing.T) {
	windowServers(t, 5*time.Second, func(t *testing.T, ts *testServer) {
		rc := dialRaw(t)
		rc.start(t, ts.addr)
		rc.expect(t, seq(1, 8)...)
		if _, err := rc.c.WriteTo(append([]byte{0, opERROR, 0, 0}, "disk full\x00"...), rc.peer); err != nil {
			t.Fatal(err)
		}
		if err := ts.stop(); err != nil { // returns once the transfer ended
			t.Fatal(err)
		}
		if got := ts.value(t, "rackboot_tftp_transfers_total", map[string]string{"file": "w.bin", "outcome": OutcomeFailed}); got != 1 {
			t.Errorf("transfers{w.bin,failed} = %v, want 1", got)
		}
		evs := ts.store.all()
		if len(evs) != 1 || evs[0].Fields["error"] != `client sent error 0: "disk full"` {
			t.Errorf("events %+v", evs)
		}
	})
}

// bigFile has more than 65535 blocks of 8 bytes: block numbers roll over to 0.
var bigFile = func() []byte {
	b := make([]byte, 70000*8+3)
	for i := range b {
		b[i] = byte(i / 8)
	}
	return b
}()

// TestWindowBlockRollover fetches 70,001 blocks with a window of 64 and ACKs only each
// window's last block: numbers after 65535 continue from 0, as tftp-hpa, atftp and
// dnsmasq count them. (The block number is the sender's only arithmetic that wraps; a
// file read in order keeps its window by a 64-bit count.)
func TestWindowBlockRollover(t *testing.T) {
	if testing.Short() {
		t.Skip("70,001 packets")
	}
	ts := startServerConfig(t, func(c *Config) { c.FS = fstest.MapFS{"big.bin": {Data: bigFile}} }, nil)
	{
		rc := dialRaw(t)
		rc.send(t, ts.addr, rrq("big.bin", "octet", "blksize", "8", "windowsize", "64", "tsize", "0"))
		op, p := rc.recv(t)
		if op != opOACK || parseOpts(p)["tsize"] != strconv.Itoa(len(bigFile)) {
			t.Fatalf("opcode %d %q, want OACK with tsize", op, p)
		}
		rc.ack(t, 0)
		var got bytes.Buffer
		want := uint16(1)
		buf := make([]byte, 64)
		for n := 1; ; n++ {
			_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds a failure only
			k, _, err := rc.c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("packet %d: %v", n, err)
			}
			p := buf[2:k]
			if op := binary.BigEndian.Uint16(buf); op != opDATA || binary.BigEndian.Uint16(p) != want {
				t.Fatalf("packet %d: opcode %d block %d, want DATA %d", n, op, binary.BigEndian.Uint16(p), want)
			}
			got.Write(p[2:])
			if len(p)-2 < 8 || n%64 == 0 {
				rc.ack(t, want)
			}
			if len(p)-2 < 8 {
				break
			}
			want++
		}
		if !bytes.Equal(got.Bytes(), bigFile) {
			t.Fatalf("%d bytes that differ from the %d of the file", got.Len(), len(bigFile))
		}
		if want != uint16(70001%65536) {
			t.Errorf("last block %d, want %d", want, 70001%65536)
		}
	}
}
