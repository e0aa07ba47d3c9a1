package main

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestRun_LogLines: JSON lines show durations as text, and the summary
// line comes at info once requests arrived.
func TestRun_LogLines(t *testing.T) {
	w := startWorker(t, "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--summary-interval", "50ms", "--max-open", "1")
	rec := w.logs.wait(t, "persist worker started")
	nc, err := nats.Connect(rec["nats_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	setMsg(t, nc, "persist.api.set.acme.one", "x")
	setMsg(t, nc, "persist.api.set.acme.two", "x") // the one slot: one is evicted
	if _, err := nc.Request("persist.api.get.acme.one", []byte(`{"seq":9}`), 5e9); err != nil {
		t.Fatal(err)
	}

	// wait consumes the records in the order they came.
	opened := w.logs.wait(t, "stream opened")
	if opened["stream"] != "acme.one" {
		t.Errorf("first stream opened line = %v, want acme.one", opened)
	}
	failed := w.logs.wait(t, "request failed")
	if failed["op"] != "get" || failed["stream"] != "acme.one" || failed["code"] != float64(404) || failed["reason"] != "not_found" {
		t.Errorf("request failed line = %v", failed)
	}

	// A summary may come between the requests above and their errors,
	// and wait skips the records before the failed line: one more
	// request is counted by a summary after this point.
	setMsg(t, nc, "persist.api.set.acme.two", "y")
	var sum map[string]any
	for range 100 {
		if sum = w.logs.wait(t, "summary"); sum["requests"] != nil && sum["requests"].(float64) >= 1 {
			break
		}
	}
	if n, _ := sum["requests"].(float64); n < 1 || sum["level"] != "INFO" {
		t.Errorf("summary = %v, want the requests at info", sum)
	}
	if d, ok := sum["interval"].(string); !ok || !strings.HasSuffix(d, "s") {
		t.Errorf("summary interval = %#v, want a duration like \"50ms\"", sum["interval"])
	}
	if err := w.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := w.logs.wait(t, "shutting down")["timeout"]; got != "10s" {
		t.Errorf("shutting down timeout = %#v, want \"10s\"", got)
	}
}
