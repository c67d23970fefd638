package bmc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBmclibLogsAtDebug: bmclib's own log (here the ipmitool options of each run)
// reaches rackboot's slog logger as structured records at debug level, marked
// logger=bmclib, without the password; at info level it is not shown.
func TestBmclibLogsAtDebug(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "ipmitool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\necho 'Chassis Power is on'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A BMC that does not answer the presence ping, so the call goes on to ipmitool.
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	ep, err := ParseURL(fmt.Sprintf("ipmi://admin@%s", silent.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	tg := Target{Endpoint: ep, Password: Password("pw-secret-9")}

	run := func(level slog.Level) []map[string]any {
		t.Helper()
		var buf bytes.Buffer
		log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
		b := newLibBackend(LibConfig{IPMITool: tool, PingWait: 20 * time.Millisecond}, log)
		s, err := b.PowerState(callCtx(t, 10*time.Second), tg)
		if err != nil || s != PowerOn {
			t.Fatalf("PowerState = %s, %v", s, err)
		}
		if strings.Contains(buf.String(), "pw-secret-9") {
			t.Fatalf("bmclib's log carries the password:\n%s", buf.String())
		}
		var recs []map[string]any
		sc := bufio.NewScanner(&buf)
		for sc.Scan() {
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("a log line is not a JSON record: %q: %v", sc.Text(), err)
			}
			recs = append(recs, rec)
		}
		return recs
	}

	recs := run(slog.LevelDebug)
	found := false
	for _, r := range recs {
		if r["logger"] != "bmclib" {
			t.Errorf("record without logger=bmclib: %v", r)
		}
		if r["level"] != "DEBUG" {
			t.Errorf("bmclib record at %v, want DEBUG: %v", r["level"], r)
		}
		if r["msg"] == "ipmitool options" {
			found = true
			if !strings.Contains(fmt.Sprint(r["opts"]), "lanplus") {
				t.Errorf("ipmitool options record without its options: %v", r)
			}
		}
	}
	if !found {
		t.Errorf("no \"ipmitool options\" record from bmclib at debug level; got %v", recs)
	}
	if recs := run(slog.LevelInfo); len(recs) != 0 {
		t.Errorf("bmclib records at info level: %v", recs)
	}
}
