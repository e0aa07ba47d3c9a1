package store

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"zombiezen.com/go/sqlite"
)

// dirState is every entry of a directory with its contents ("<dir>" for
// a directory), to check that a failed open left everything as it was.
func dirState(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	st := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			st[e.Name()] = "<dir>"
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		st[e.Name()] = string(b)
	}
	return st
}

// closedStream is a closed stream file with messages, its -wal beside it.
func closedStream(tb testing.TB) string {
	tb.Helper()
	ts := openTest(tb, nil)
	for i := 0; i < 20; i++ {
		ts.put(tb, Write{Data: bytes.Repeat([]byte{byte(i)}, 300)})
	}
	if err := ts.Close(); err != nil {
		tb.Fatal(err)
	}
	ts.Stream = nil
	return ts.path
}

// foreignWAL is the -wal of a SQLite database that is not a stream file
// (4 KiB pages, unlike a stream's 1 KiB), as a crash left it.
func foreignWAL(tb testing.TB) []byte {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "other.db")
	conn, err := sqlite.OpenConn(p)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	if err := execScript(conn, "PRAGMA journal_mode=WAL; CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('x')"); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(p + "-wal")
	if err != nil || len(b) == 0 {
		tb.Fatalf("no -wal: %v", err)
	}
	return b
}

// TestOpen_Damaged adds the damage found beside the file, or in place of
// it, to TestOpen_Corrupt's: each opens as ErrCorrupt naming the path,
// with or without Create, and leaves the directory exactly as it was.
func TestOpen_Damaged(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T) string
	}{
		{"DirectoryInPlace", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "s.db")
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"WALIsDirectory", func(t *testing.T) string {
			p := closedStream(t)
			if err := os.Remove(p + "-wal"); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(p+"-wal", 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"ForeignWAL", func(t *testing.T) string {
			p := closedStream(t)
			if err := os.WriteFile(p+"-wal", foreignWAL(t), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.make(t)
			before := dirState(t, filepath.Dir(p))
			for _, create := range []bool{false, true} {
				s, err := Open(p, Options{Create: create, NoSweep: true})
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) {
					if s != nil {
						s.Close()
					}
					t.Fatalf("Open(create=%v) = %v, want ErrCorrupt naming the path", create, err)
				}
				if after := dirState(t, filepath.Dir(p)); !mapsEqual(before, after) {
					t.Fatalf("Open(create=%v) changed the directory: %d entries before, %d after", create, len(before), len(after))
				}
			}
		})
	}
}

// TestStream_SchemaMismatch checks a file whose schema differs from what
// its header claims in a way the open does not see (found by FuzzOpen: a
// column name damaged in sqlite_schema): the statements that fail to
// prepare report ErrCorrupt, not an internal error.
func TestStream_SchemaMismatch(t *testing.T) {
	p := closedStream(t)
	conn, err := sqlite.OpenConn(p, sqlite.OpenReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	if err := execScript(conn, "ALTER TABLE msgs RENAME COLUMN time TO tyme"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(p, Options{NoSweep: true})
	if err == nil {
		defer s.Close()
		_, err = s.Get(1)
	}
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) {
		t.Fatalf("Get(1) on a file without msgs.time = %v, want ErrCorrupt naming the path", err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestOpenErr checks the errors of opening a file that is there but
// cannot be opened, which a test running as root cannot make with file
// modes: they are damage (unreadable), distinct from a missing file, from
// running out of descriptors and from a file another program holds.
func TestOpenErr(t *testing.T) {
	for _, tt := range []struct {
		errno syscall.Errno
		want  error
	}{
		{syscall.EACCES, ErrCorrupt},
		{syscall.EPERM, ErrCorrupt},
		{syscall.EISDIR, ErrCorrupt},
		{syscall.EMFILE, ErrTooManyOpen},
		{syscall.ENFILE, ErrTooManyOpen},
		{syscall.ENOENT, fs.ErrNotExist},
	} {
		err := openErr(&os.PathError{Op: "open", Path: "/d/s.db", Err: tt.errno})
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), "/d/s.db") {
			t.Errorf("openErr(%v) = %v, want %v naming the path", tt.errno, err, tt.want)
		}
	}
	if err := openErr(&os.PathError{Op: "open", Path: "/d/s.db", Err: syscall.EIO}); errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTooManyOpen) {
		t.Errorf("openErr(EIO) = %v, want neither damage nor out of files", err)
	}
}
