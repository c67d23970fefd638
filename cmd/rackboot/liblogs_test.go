package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// jsonRecords parses a JSON log: every line must be one slog record.
func jsonRecords(t *testing.T, log string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Errorf("not a JSON record (klog's own format?): %q", sc.Text())
			continue
		}
		recs = append(recs, r)
	}
	return recs
}

func findRecord(recs []map[string]any, msg string) map[string]any {
	for _, r := range recs {
		if r["msg"] == msg {
			return r
		}
	}
	return nil
}

// TestLibraryLogsAreStructured: what client-go (klog) and controller-runtime log
// arrives in serve's slog logger as structured records, and follows the latest serve.
func TestLibraryLogsAreStructured(t *testing.T) {
	for round := range 2 { // the second serve of a process gets the logs too
		var buf bytes.Buffer
		routeLibraryLogs(newLogger(&buf, "debug", "json"))
		klog.Info("klog plain line")
		klog.InfoS("klog structured line", "node", "n1")
		klog.ErrorS(errors.New("boom"), "klog error line", "lease", "rackboot-r1")
		ctrllog.Log.WithName("leader").Info("controller-runtime line", "rack", "r1")
		klog.Flush()

		recs := jsonRecords(t, buf.String())
		for _, c := range []struct {
			msg   string
			level string
			attrs map[string]any
		}{
			{"klog plain line", "INFO", map[string]any{"logger": "klog"}},
			{"klog structured line", "INFO", map[string]any{"logger": "klog", "node": "n1"}},
			{"klog error line", "ERROR", map[string]any{"logger": "klog", "lease": "rackboot-r1", "err": "boom"}},
			{"controller-runtime line", "INFO", map[string]any{"logger": "leader", "rack": "r1"}},
		} {
			r := findRecord(recs, c.msg)
			if r == nil {
				t.Errorf("round %d: no record %q in:\n%s", round, c.msg, buf.String())
				continue
			}
			if r["level"] != c.level {
				t.Errorf("round %d: %q at %v, want %s", round, c.msg, r["level"], c.level)
			}
			for k, v := range c.attrs {
				if r[k] != v {
					t.Errorf("round %d: %q: %s = %v, want %v (record %v)", round, c.msg, k, r[k], v, r)
				}
			}
		}
	}
}
