package store

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// asUser runs fn with file access checked as an unprivileged user: a
// test running as root, whom file modes do not stop, changes the file
// system uid of one OS thread (which drops root's file capabilities on
// that thread only) and lets that thread end with the goroutine.
func asUser(tb testing.TB, fn func() error) error {
	tb.Helper()
	if os.Geteuid() != 0 {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes away with this goroutine
		if err := syscall.Setfsuid(65534); err != nil {
			done <- err
			return
		}
		done <- fn()
	}()
	return <-done
}

// TestOpen_Unreadable checks a stream file with mode 000: damage (503
// damaged), named by path, the file and its -wal left as they were.
func TestOpen_Unreadable(t *testing.T) {
	p := closedStream(t)
	// The unprivileged user must reach the file: only the file itself is
	// closed to it.
	for d := filepath.Dir(p); strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(p, 0o644) })
	before := dirState(t, filepath.Dir(p))
	err := asUser(t, func() error {
		s, err := Open(p, Options{Create: true, NoSweep: true})
		if s != nil {
			s.Close()
		}
		return err
	})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) || !errors.Is(err, syscall.EACCES) {
		t.Fatalf("Open(mode 000) = %v, want ErrCorrupt for EACCES naming the path", err)
	}
	if after := dirState(t, filepath.Dir(p)); !mapsEqual(before, after) {
		t.Fatal("Open(mode 000) changed the directory")
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0 {
		t.Fatalf("mode after Open = %v, %v; want 000", st.Mode(), err)
	}
}
