package integration

import (
	"encoding/json"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fault, soak and exhaustion tests run a short version by default (the
// one CI runs) and a long one with PERSIST_LONG=1. With PERSIST_REPORT set
// to a file path, every report line is also appended there as JSON, so
// that a long run leaves its figures in one file.
var longMode = os.Getenv("PERSIST_LONG") == "1"

// pick returns short normally and long with PERSIST_LONG=1.
func pick[T any](short, long T) T {
	if longMode {
		return long
	}
	return short
}

var reportMu sync.Mutex

// report logs the figures of a test as one line, "REPORT name k=v …",
// and appends them to $PERSIST_REPORT when it is set.
func report(tb testing.TB, name string, figures map[string]any) {
	tb.Helper()
	keys := make([]string, 0, len(figures))
	for k := range figures {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var line strings.Builder
	line.WriteString("REPORT " + name)
	for _, k := range keys {
		b, err := json.Marshal(figures[k])
		if err != nil {
			tb.Fatalf("report %s: %v", name, err)
		}
		line.WriteString(" " + k + "=" + string(b))
	}
	tb.Log(line.String())
	path := os.Getenv("PERSIST_REPORT")
	if path == "" {
		return
	}
	rec, err := json.Marshal(map[string]any{"test": tb.Name(), "report": name, "long": longMode,
		"time": time.Now().UTC().Format(time.RFC3339), "figures": figures})
	if err != nil {
		tb.Fatalf("report %s: %v", name, err)
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		tb.Fatalf("report %s: %v", name, err)
	}
	defer f.Close()
	if _, err := f.Write(append(rec, '\n')); err != nil {
		tb.Fatalf("report %s: %v", name, err)
	}
}
