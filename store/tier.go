package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"zombiezen.com/go/sqlite"
)

// Tiered storage (PROTOCOL.md section 7). The archive holds a consistent
// snapshot of each stream file at the same relative path. Which copy is
// newer is judged by the revision stored in each file, never by file times:
// clocks and copy tools do not preserve the order of changes, revisions do.

// restoreIfNewer copies archive over local when local is missing or the
// archive's revision is higher. A missing archive is not an error. A damaged
// archive never replaces a local file; it is an error (wrapping ErrCorrupt)
// only when there is no local file to fall back to. A damaged local file is
// left as it is, so that opening it reports the damage to an operator rather
// than silently rolling the stream back.
func restoreIfNewer(local, archive string) error {
	_, err := restore(local, archive, false)
	return err
}

// restored is what restore found and did.
type restored struct {
	archRev  uint64 // the archive's revision, when haveArch
	haveArch bool   // a sound archive copy was found
	kept     bool   // a local file was there and is kept as it was
}

// restore is restoreIfNewer, or with foreign (the stream's fence names
// another owner: the archive is the truth) it replaces a local file whose
// revision is not the archive's, higher or lower, and a damaged one, and
// removes the local file when there is no archive copy: its history was
// superseded. A damaged archive is then an error even with a local file.
func restore(local, archive string, foreign bool) (restored, error) {
	var res restored
	if _, err := os.Stat(archive); errors.Is(err, fs.ErrNotExist) {
		if foreign {
			if err := Remove(local); err != nil {
				return res, fmt.Errorf("store: restore %s: remove superseded copy: %w", local, err)
			}
			return res, nil
		}
		_, err := os.Lstat(local)
		res.kept = err == nil
		return res, nil
	} else if err != nil {
		return res, fmt.Errorf("store: restore %s: %w", local, err)
	}
	localRev, err := fileRevision(local, false)
	haveLocal := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, ErrCorrupt):
		if !foreign {
			res.kept = true
			return res, nil // a damaged local file is the operator's to repair
		}
	case err != nil:
		return res, fmt.Errorf("store: restore %s: %w", local, err)
	}
	archRev, err := fileRevision(archive, false)
	if err != nil {
		if haveLocal && !foreign {
			res.kept = true
			return res, nil
		}
		return res, fmt.Errorf("store: restore %s from archive: %w", local, err)
	}
	res.archRev, res.haveArch = archRev, true
	if haveLocal && (archRev == localRev || archRev < localRev && !foreign) {
		res.kept = true
		return res, nil
	}
	err = installCopy(archive, local, archRev)
	if haveLocal && !foreign && errors.Is(err, ErrCorrupt) {
		res.kept, res.haveArch = true, false
		return res, nil // damage found only by the full check of the copy
	}
	return res, err
}

// fileRevision reads the revision stored in the stream file at path through
// a read-only connection. With check it also runs SQLite's quick_check over
// the whole file. A missing file is an error wrapping fs.ErrNotExist; a file
// that is not a sound stream file, one wrapping ErrCorrupt.
func fileRevision(path string, check bool) (uint64, error) {
	if err := checkFile(path); err != nil {
		return 0, err
	}
	// A closed stream keeps its -wal (see the package doc), and reading it
	// in normal locking mode makes SQLite create a -shm, which it leaves
	// behind; stream connections never use one (exclusive locking), so a
	// -shm this look created is removed again.
	_, serr := os.Stat(path + "-shm")
	newShm := errors.Is(serr, fs.ErrNotExist)
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadOnly)
	if err != nil {
		return 0, dbErr(err)
	}
	defer func() {
		conn.Close()
		if newShm {
			os.Remove(path + "-shm")
		}
	}()
	// A file held by an open stream stays locked; waiting for it forever
	// (the driver's default) would hang Open instead of failing it.
	conn.SetBusyTimeout(time.Second)
	// A stream file left behind by a crash is in WAL mode with a -wal file
	// and no -shm (the stream uses exclusive locking). A read-only connection
	// in normal locking mode creates the -shm and reads the -wal without
	// changing the database; in exclusive mode it could not.
	rev, err := readRevision(conn)
	if err != nil || !check {
		return rev, err
	}
	result := ""
	err = execOnce(conn, "PRAGMA quick_check(1)", func(st *sqlite.Stmt) error {
		result = st.ColumnText(0)
		return nil
	})
	if err != nil {
		return 0, dbErr(err)
	}
	if result != "ok" {
		return 0, fmt.Errorf("%w: %s: %s", ErrCorrupt, path, result)
	}
	return rev, nil
}

// installCopy copies src to a temporary file beside dst, checks that the
// copy holds revision want, makes it durable and renames it over dst. The
// old dst's -wal and -shm are removed first: replayed onto the restored
// file they would corrupt it.
func installCopy(src, dst string, want uint64) (err error) {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("store: restore %s: %w", dst, err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(dst)+".restore-*")
	if err != nil {
		return fmt.Errorf("store: restore %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			Remove(tmp.Name()) // a temporary file: errors do not matter
		}
	}()
	in, err := os.Open(src)
	if err != nil {
		tmp.Close()
		return fmt.Errorf("store: restore %s: %w", dst, err)
	}
	_, err = io.Copy(tmp, in)
	in.Close()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	// A stream file keeps its -wal when it closes; a copy of one (the
	// archive is normally a snapshot, which has none) needs its -wal too.
	var walCopied bool
	if err == nil {
		walCopied, err = copyIfPresent(src+"-wal", tmp.Name()+"-wal")
	}
	if err != nil {
		return fmt.Errorf("store: restore %s: %w", dst, err)
	}
	// The archive may have been replaced between reading its revision and
	// copying it, and a damaged page may lie beyond what the revision read
	// touched; judge all the bytes that are about to be installed.
	got, err := fileRevision(tmp.Name(), true)
	if err == nil && walCopied {
		// The copy is installed as one file: its WAL goes into it.
		err = foldWAL(tmp.Name())
	}
	// Reading a copy of a WAL-mode file creates an empty -wal and -shm
	// beside it; they belong to the temporary name.
	removeSidecars(tmp.Name())
	if err != nil {
		return fmt.Errorf("store: restore %s from archive: %w", dst, err)
	}
	if got < want {
		return fmt.Errorf("store: restore %s: archive changed while copying", dst)
	}
	if err := removeSidecars(dst); err != nil {
		return fmt.Errorf("store: restore %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("store: restore %s: %w", dst, err)
	}
	return syncDir(dir)
}

// copyIfPresent copies the file src to dst and reports whether there was
// one: a missing or empty src copies nothing. The copy is not synced: it
// is a -wal for foldWAL, whose checkpoint syncs it before it writes into
// the database, and it is gone before anything is installed.
func copyIfPresent(src, dst string) (bool, error) {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil || st.Size() == 0 {
		return false, err
	}
	out, err := os.Create(dst)
	if err != nil {
		return false, err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err == nil, err
}

// foldWAL checkpoints the -wal beside the (checked) stream file at path into
// it and turns it into a rollback-journal file that needs no -wal, as
// snapshots are; the next Open switches it back to WAL.
func foldWAL(path string) (err error) {
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite)
	if err != nil {
		return dbErr(err)
	}
	defer func() {
		if cerr := conn.Close(); err == nil {
			err = cerr
		}
	}()
	// synchronous=FULL (the default) syncs the checkpointed file.
	return dbErr(execScript(conn, "PRAGMA journal_mode=DELETE"))
}

// snapshot writes a consistent copy of conn's main database to dst with
// SQLite's online backup, into a temporary file beside dst that is made
// durable and then renamed, so dst is always either the old or the new
// complete copy. The copy is a standalone rollback-journal file: it needs
// no -wal to be read, so it can be copied and restored as one file.
func snapshot(conn *sqlite.Conn, dst string) (err error) {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("store: snapshot %s: %w", dst, err)
	}
	f, err := os.CreateTemp(dir, filepath.Base(dst)+".snap-*")
	if err != nil {
		return fmt.Errorf("store: snapshot %s: %w", dst, err)
	}
	tmp := f.Name()
	f.Close()
	defer func() {
		if err != nil {
			Remove(tmp) // a temporary file: errors do not matter
		}
	}()
	if err := backupTo(conn, tmp); err != nil {
		return fmt.Errorf("store: snapshot %s: %w", dst, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("store: snapshot %s: %w", dst, err)
	}
	return syncDir(dir)
}

// backupTo copies conn's main database into the (empty) file at path and
// makes the copy durable.
func backupTo(conn *sqlite.Conn, path string) (err error) {
	dst, err := sqlite.OpenConn(path, sqlite.OpenReadWrite)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
	}()
	b, err := sqlite.NewBackup(dst, "main", conn, "main")
	if err != nil {
		return err
	}
	_, err = b.Step(-1)
	b.Close()
	if err != nil {
		return err
	}
	// The source is in WAL mode and the backup copies that mark in the file
	// header; switching the copy to a rollback journal rewrites it, so the
	// archive is one self-contained file.
	if err := execScript(dst, "PRAGMA journal_mode=DELETE"); err != nil {
		return err
	}
	return syncPath(path)
}

// syncPath makes the contents of the file at path durable.
func syncPath(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
