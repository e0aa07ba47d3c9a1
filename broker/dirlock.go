package broker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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
// missing, checks that each is writable, and locks the data directory
// unless it is shared (Options.SharedDataDir: several workers use it, each
// stream file locked by the one that has it open). It returns the lock
// file (nil when shared), held until [Broker.Shutdown], and in partitioned
// mode with an archive the data directory's id (see dataDirID).
func prepareDirs(opts Options) (lock *os.File, id string, err error) {
	if opts.SharedDataDir && (opts.Partitioning.Count == 0 || opts.Partitioning.Static != nil) {
		return nil, "", errors.New("broker: a shared data directory needs partitions claimed through leases: " +
			"workers without leases on one directory would serve the same streams")
	}
	for _, d := range []struct{ what, dir string }{
		{"data", opts.DataDir}, {"archive", opts.ArchiveDir}, {"backup", opts.BackupDir},
	} {
		if d.dir == "" {
			continue
		}
		if err := os.MkdirAll(d.dir, 0o750); err != nil {
			return nil, "", fmt.Errorf("broker: %s directory: %w", d.what, err)
		}
		if err := checkWritable(d.what, d.dir); err != nil {
			return nil, "", err
		}
	}
	if !opts.SharedDataDir {
		if lock, err = lockDataDir(opts.DataDir); err != nil {
			return nil, "", err
		}
	}
	if opts.Partitioning.Count > 0 && opts.ArchiveDir != "" {
		if id, err = dataDirID(opts.DataDir); err != nil {
			if lock != nil {
				lock.Close()
			}
			return nil, "", err
		}
	}
	return lock, id, nil
}

// idFile names the file of the data directory's id. A stream's file name
// never starts with '.', so neither list nor a stream open ever takes it
// for one.
const idFile = ".persist-id"

// maxIDLen bounds the id read from a data directory, which may be on
// storage other workers write.
const maxIDLen = 64

// dataDirID returns the id of the data directory dir, creating it on
// first use: 16 random bytes in hex, written to a temporary file and
// linked into place, so that of workers creating it at once (a shared
// directory) one wins and every one reads a complete id. It names this
// data directory in the archive's fence files (store.Fence): a stream
// last written from another directory is taken from the archive.
func dataDirID(dir string) (string, error) {
	path := filepath.Join(dir, idFile)
	if id, err := readID(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return id, err
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("broker: data directory id: %w", err)
	}
	f, err := os.CreateTemp(dir, idFile+"-*")
	if err != nil {
		return "", fmt.Errorf("broker: data directory id: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(raw[:]) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Link, unlike rename, fails when the id exists: then another
		// worker's is the one.
		if err = os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
			err = nil
		}
	}
	os.Remove(f.Name())
	if err != nil {
		return "", fmt.Errorf("broker: data directory id: %w", err)
	}
	return readID(path)
}

// readID reads and checks an id file: 1 to maxIDLen letters, digits, '-'
// or '_' and a newline.
func readID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxIDLen+2))
	if err != nil {
		return "", fmt.Errorf("broker: data directory id: %w", err)
	}
	id, ok := strings.CutSuffix(string(data), "\n")
	if !ok || id == "" || len(id) > maxIDLen || strings.ContainsFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) {
		return "", fmt.Errorf("broker: data directory id %s: not an id (remove it to make a new one)", path)
	}
	return id, nil
}

// releaseDir gives the data directory's lock back.
func (b *Broker) releaseDir() {
	if b.dirLock != nil {
		b.dirLock.Close()
	}
}
