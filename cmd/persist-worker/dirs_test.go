package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// startFailure bounds how long a worker that must refuse to start may take.
const startFailure = 20 * time.Second

func TestProcess_SameDataDir(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	first := startChild(t, "--data", data, "--listen", "127.0.0.1:0")
	first.logs.wait(t, "persist worker started")

	second := startChild(t, "--data", data, "--listen", "127.0.0.1:0")
	if code := second.exit(t, startFailure); code != 1 {
		t.Fatalf("second worker exit status = %d, want 1; log:\n%s", code, second.logs)
	}
	logs := second.logs.String()
	for _, want := range []string{"data directory in use by another worker", data, "process " + strconv.Itoa(first.cmd.Process.Pid)} {
		if !strings.Contains(logs, want) {
			t.Errorf("second worker's output lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "persist worker started") {
		t.Errorf("second worker started:\n%s", logs)
	}

	// The first one is unaffected, and its exit frees the directory.
	if code := first.terminate(t, startFailure); code != 0 {
		t.Fatalf("first worker exit status = %d, want 0; log:\n%s", code, first.logs)
	}
	third := startChild(t, "--data", data, "--listen", "127.0.0.1:0")
	third.logs.wait(t, "persist worker started")
	if code := third.terminate(t, startFailure); code != 0 {
		t.Fatalf("third worker exit status = %d, want 0; log:\n%s", code, third.logs)
	}
}
