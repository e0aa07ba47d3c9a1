package store

import (
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// Stream connections use SQLite's "unix-none" file layer, which takes no
// locks: SQLite's default one keeps a process-wide list of open files that
// it walks on every open, so that opening a stream got slower the more
// streams were open. The stream takes its own lock instead, on a
// descriptor of its own, before SQLite opens the file.
//
// The lock is an open-file-description (OFD) write lock on the bytes SQLite
// itself locks (512 bytes from its PENDING_BYTE, 0x40000000). Any other
// SQLite program holds a lock on part of that range while it has the file
// open for reading or writing, and OFD locks conflict with the classic
// POSIX locks SQLite takes, so another worker or a sqlite3 shell holding
// the file makes Open fail with ErrLocked, as before. Unlike POSIX locks,
// an OFD lock belongs to its descriptor, not to the process: closing some
// other descriptor of the file does not drop it, and a second Open of the
// same file in this process conflicts with the first.
const streamVFS = "unix-none"

const (
	sqlitePendingByte = 0x40000000
	sqliteLockBytes   = 512
	fOFDSetLK         = 37 // F_OFD_SETLK, the same on every Linux architecture
)

// lockFile opens path and takes the stream's lock on it, waiting up to
// lockTimeout for another program to let go of the file. A missing file is
// an error wrapping fs.ErrNotExist.
//
// The descriptor is opened with open(2) and wrapped by os.NewFile rather
// than opened by os.OpenFile, which would try to add it to the runtime's
// poller (a failing epoll_ctl for a regular file) and make it non-blocking,
// and f.Fd below would make it blocking again: four system calls of the
// dozen an open of a stream makes itself.
func lockFile(path string) (*os.File, error) {
	fd, err := openRW(path)
	if err != nil {
		return nil, openErr(err)
	}
	f := os.NewFile(uintptr(fd), path)
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: sqlitePendingByte, Len: sqliteLockBytes}
	deadline := time.Now().Add(lockTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		_, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), fOFDSetLK, uintptr(unsafe.Pointer(&lk)))
		switch {
		case errno == 0:
			return f, nil
		case errno == syscall.EINTR:
			continue
		case errno != syscall.EAGAIN && errno != syscall.EACCES:
			f.Close()
			return nil, fmt.Errorf("store: lock %s: %w", path, errno)
		case time.Now().After(deadline):
			f.Close()
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		time.Sleep(wait)
	}
}

// openRW opens path read-write with close-on-exec, as os.OpenFile would.
func openRW(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}
