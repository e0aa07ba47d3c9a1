//go:build !linux

package store

import "os"

// Without OFD locks, stream connections keep SQLite's own locking.
const streamVFS = "unix"

// lockFile opens path for reading the header and takes no lock of its
// own: SQLite's locks protect the file.
func lockFile(path string) (*os.File, error) { return os.Open(path) }
