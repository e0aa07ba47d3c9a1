package broker

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// probePattern names the file that checkWritable creates and removes.
const probePattern = ".persist-probe-*"

// ErrDataDirLocked is returned by [New] when another broker, in this
// process or another, holds the data directory.
var ErrDataDirLocked = errors.New("data directory in use by another worker")

// lockDataDir takes an exclusive lock (flock) on the data directory
// itself, so that no file is added next to the streams. The lock lasts
// until the returned descriptor is closed ([Broker.Shutdown]) or the
// process ends, whatever the way: a crash leaves no stale lock. The error
// of a second worker names the directory and, where /proc/locks tells,
// the holder's process id.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("broker: lock data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another worker"
		if pid := lockHolder(f); pid > 0 {
			holder = "process " + strconv.Itoa(pid)
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("broker: %w: %s is locked by %s; two workers must never share a data directory",
				ErrDataDirLocked, dir, holder)
		}
		return nil, fmt.Errorf("broker: lock data directory %s: %w", dir, err)
	}
	return f, nil
}

// lockHolder returns the process id holding a flock on f's file, read from
// /proc/locks (Linux); 0 when it cannot tell. A lock held by this very
// process (another broker on the same directory) shows its own pid.
func lockHolder(f *os.File) int {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0
	}
	dev := uint64(st.Dev)
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	id := fmt.Sprintf("%02x:%02x:%d", major, minor, st.Ino)
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0
	}
	// "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"
	for line := range strings.Lines(string(locks)) {
		fields := strings.Fields(line)
		if len(fields) >= 6 && fields[1] == "FLOCK" && fields[5] == id {
			if pid, err := strconv.Atoi(fields[4]); err == nil {
				return pid
			}
		}
	}
	return 0
}

// checkWritable creates, writes, syncs and removes a probe file in dir, so
// that a directory the worker cannot write is found at start, not at the
// first write of a client.
func checkWritable(what, dir string) error {
	f, err := os.CreateTemp(dir, probePattern)
	if err != nil {
		return fmt.Errorf("broker: %s directory %s is not writable: %w", what, dir, err)
	}
	_, err = f.Write([]byte("probe\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(f.Name()); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("broker: %s directory %s is not writable: %w", what, dir, err)
	}
	return nil
}

// prepareDirs creates the data, archive and backup directories when
// missing, checks that each is writable, and locks the data directory. It
// returns the lock file, held until [Broker.Shutdown].
func prepareDirs(opts Options) (*os.File, error) {
	for _, d := range []struct{ what, dir string }{
		{"data", opts.DataDir}, {"archive", opts.ArchiveDir}, {"backup", opts.BackupDir},
	} {
		if d.dir == "" {
			continue
		}
		if err := os.MkdirAll(d.dir, 0o750); err != nil {
			return nil, fmt.Errorf("broker: %s directory: %w", d.what, err)
		}
		if err := checkWritable(d.what, d.dir); err != nil {
			return nil, err
		}
	}
	return lockDataDir(opts.DataDir)
}

// releaseDir gives the data directory's lock back.
func (b *Broker) releaseDir() {
	if b.dirLock != nil {
		b.dirLock.Close()
	}
}
