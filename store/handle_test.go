package store

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"
)

// TestRawConn checks that rawConn finds the connection's own handles in the
// driver's Conn: SQLite names the file the connection opened and sees the
// transaction the driver began.
func TestRawConn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raw.db")
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tls, db := rawConn(conn)
	if tls == nil || db == 0 {
		t.Fatalf("rawConn() = %p, %#x", tls, db)
	}
	main, err := libc.CString("main")
	if err != nil {
		t.Fatal(err)
	}
	defer libc.Xfree(tls, main)
	if got := libc.GoString(lib.Xsqlite3_db_filename(tls, db, main)); got != path {
		t.Fatalf("sqlite3_db_filename() = %q, want %q", got, path)
	}
	if err := execScript(conn, "BEGIN; CREATE TABLE t (x)"); err != nil {
		t.Fatal(err)
	}
	if got := lib.Xsqlite3_get_autocommit(tls, db); got != 0 || conn.AutocommitEnabled() {
		t.Fatalf("sqlite3_get_autocommit() in a transaction = %d, want 0", got)
	}
	if err := execScript(conn, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if got := lib.Xsqlite3_get_autocommit(tls, db); got == 0 || !conn.AutocommitEnabled() {
		t.Fatalf("sqlite3_get_autocommit() after commit = %d, want 1", got)
	}
}

// TestStream_WALPolicy checks when the WAL is checkpointed: a close after a
// few commits leaves them in the -wal and the next open reads them back; a
// close after many truncates the -wal; enough commits while open ask the
// timer for a checkpoint, which empties the WAL.
func TestStream_WALPolicy(t *testing.T) {
	ts := openTest(t, nil)
	walSize := func() int64 {
		st, err := os.Stat(ts.path + "-wal")
		if err != nil {
			t.Fatalf("-wal: %v", err)
		}
		return st.Size()
	}
	ts.put(t, data("a"))
	ts.put(t, data("b"))
	ts.reopen(t)
	if walSize() == 0 {
		t.Fatal("closing after two commits checkpointed the WAL")
	}
	if got := ts.seqs(t); len(got) != 2 {
		t.Fatalf("seqs after reopen = %v, want 2", got)
	}
	// The timer may checkpoint at any time once it is asked to: read the
	// counters under the stream's lock.
	wal := func() (frames int32, due bool) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return ts.walFrames, ts.ckptDue
	}
	for i := 0; ; i++ {
		if f, _ := wal(); f >= closeCheckpointFrames {
			break
		}
		ts.put(t, data("m"+strconv.Itoa(i)))
	}
	ts.reopen(t)
	if got := walSize(); got != 0 {
		t.Fatalf("-wal after closing a large WAL = %d bytes, want 0", got)
	}
	// Until a commit leaves checkpointFrames, nothing asks for a
	// checkpoint; then either the timer has run it (the WAL is empty) or
	// it is still due, and running it as the timer would empties the WAL.
	for done := false; !done; {
		ts.put(t, data("more"))
		ts.mu.Lock()
		switch f := ts.walFrames; {
		case ts.ckptDue:
			err := ts.checkpoint(false)
			if err != nil || ts.walFrames != 0 || f < checkpointFrames {
				t.Errorf("checkpoint due at %d frames: checkpoint() = %v, %d frames after", f, err, ts.walFrames)
			}
			done = true
		case f == 0: // the timer checkpointed
			done = true
		case f >= checkpointFrames:
			t.Errorf("no checkpoint asked for at %d frames", f)
			done = true
		}
		ts.mu.Unlock()
	}
	n := len(ts.seqs(t))
	ts.reopen(t)
	if got := len(ts.seqs(t)); got != n {
		t.Fatalf("messages after checkpoint and reopen = %d, want %d", got, n)
	}
}

// TestStream_WALLimit checks that a WAL grown past the limit of
// walLimitPragma by one large commit is cut back to it by the first commit
// after the timer's checkpoint (which sets the limit on the connection).
func TestStream_WALLimit(t *testing.T) {
	ts := openTest(t, nil)
	r := rand.New(rand.NewPCG(7, 8))
	ws := make([]Write, 3000)
	for i := range ws {
		b := make([]byte, 1000) // random: not compressed
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		ws[i] = Write{Data: b}
	}
	if _, err := ts.Append(ws); err != nil {
		t.Fatal(err)
	}
	walSize := func() int64 {
		st, err := os.Stat(ts.path + "-wal")
		if err != nil {
			t.Fatalf("-wal: %v", err)
		}
		return st.Size()
	}
	const limit = 2097152
	if got := walSize(); got <= limit {
		t.Fatalf("-wal after a 3 MB commit = %d bytes, want more than %d", got, limit)
	}
	ts.mu.Lock()
	err := ts.checkpoint(false)
	ts.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	ts.put(t, data("after"))
	if got := walSize(); got > limit {
		t.Fatalf("-wal after a checkpoint and a commit = %d bytes, want at most %d", got, limit)
	}
}
