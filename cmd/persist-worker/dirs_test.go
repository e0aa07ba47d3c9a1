package main

import (
	"os"
	"os/exec"
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

// TestProcess_ReadOnlyDirs runs the worker in its own mount namespace with
// a read-only tmpfs over one of its directories: root writes through file
// modes, not through a read-only mount.
func TestProcess_ReadOnlyDirs(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private mount namespace")
	}
	if out, err := exec.Command("unshare", "-m", "true").CombinedOutput(); err != nil {
		t.Skipf("no private mount namespace here: %v %s", err, out)
	}
	for _, flag := range []string{"--data", "--archive", "--backup"} {
		t.Run(strings.TrimPrefix(flag, "--"), func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			ro := tmp + "/ro"
			if err := os.Mkdir(ro, 0o755); err != nil {
				t.Fatal(err)
			}
			args := []string{"--data", tmp + "/data", "--listen", "127.0.0.1:0"}
			if flag == "--data" {
				args = args[2:]
			}
			args = append(args, flag, ro)
			wrap := []string{"unshare", "-m", "--propagation", "private", "sh", "-c",
				`mount -t tmpfs -o ro,size=1m tmpfs "$0" && exec "$@"`, ro}
			w := startWrapped(t, wrap, args...)
			if code := w.exit(t, startFailure); code != 1 {
				t.Fatalf("exit status = %d, want 1; log:\n%s", code, w.logs)
			}
			logs := w.logs.String()
			what := strings.TrimPrefix(flag, "--") + " directory " + ro + " is not writable"
			for _, want := range []string{what, "read-only file system"} {
				if !strings.Contains(logs, want) {
					t.Errorf("output lacks %q:\n%s", want, logs)
				}
			}
		})
	}
}
