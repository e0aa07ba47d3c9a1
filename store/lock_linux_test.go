package store

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

// TestOpen_LockedByPOSIXLock opens a stream whose file another program
// holds the way SQLite does, with a classic POSIX read lock on SQLite's
// shared bytes: Open fails with ErrLocked, and works once it is released.
func TestOpen_LockedByPOSIXLock(t *testing.T) {
	ts := openTest(t, nil)
	ts.put(t, data("x"))
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	ts.Stream = nil
	f, err := os.OpenFile(ts.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_RDLCK, Start: sqlitePendingByte + 2, Len: sqliteLockBytes - 2}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(ts.path, ts.opts); !errors.Is(err, ErrLocked) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open(file with a POSIX lock) = %v, want ErrLocked", err)
	}
	lk.Type = syscall.F_UNLCK
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	ts.reopen(t)
	if got := ts.seqs(t); len(got) != 1 {
		t.Fatalf("seqs after the lock = %v, want one message", got)
	}
	// While the stream is open, the file is held against such a program.
	lk.Type = syscall.F_RDLCK
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err == nil {
		t.Fatal("a POSIX lock was granted on an open stream's file")
	}
}
