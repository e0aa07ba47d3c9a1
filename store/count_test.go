package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"

	"github.com/nats-persist/persist/subjects"
)

// TestStream_ReadPendingAcrossBlocks checks Num-Pending against a plain
// count over ranges that span several blocks of the blocks table, with
// gaps from every kind of delete and with expired messages not yet swept.
func TestStream_ReadPendingAcrossBlocks(t *testing.T) {
	ts := openTest(t, &Config{MaxMsgs: -1, MaxBytes: -1, MaxMsgSize: -1, MaxMsgsPerSecond: -1, MaxBytesPerSecond: -1,
		DiscardPolicy: subjects.DiscardOld, AllowMsgTTL: true, DuplicateWindow: 120000, Storage: subjects.StorageFile, Compression: subjects.CompressionNone})
	const total = 5000
	batch := make([]Write, 0, 1000)
	for i := 1; i <= total; i++ {
		w := Write{Data: []byte{byte(i)}}
		switch {
		case i%97 == 0:
			w.Key = fmt.Sprint("k", i%5) // replaced: older ones vanish
		case i%89 == 0:
			w.TTL = time.Second // expired below, never swept
		}
		batch = append(batch, w)
		if len(batch) == cap(batch) {
			ts.mustAppend(t, batch...)
			batch = batch[:0]
		}
	}
	ts.DeleteThrough(100)
	ts.DeleteSeqs(1024, 1025, 2047, 2048, 3000)
	for i := uint64(3100); i < 3300; i++ {
		ts.DeleteSeqs(i)
	}
	ts.clock.Add(2 * time.Second)

	live := map[uint64]bool{}
	if _, err := ts.Read(ReadQuery{}, func(m *Message) error { live[m.Seq] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	want := func(from, to uint64) (n int64) {
		for s := from; s <= to; s++ {
			if live[s] {
				n++
			}
		}
		return n
	}
	for _, q := range []ReadQuery{
		{MaxMsgs: 1},
		{StartSeq: 1000, MaxMsgs: 10},
		{StartSeq: 1020, EndSeq: 1030, MaxMsgs: 1},
		{StartSeq: 1023, EndSeq: 4097, MaxMsgs: 3},
		{StartSeq: 2000, EndSeq: 2100, MaxMsgs: 50},
		{StartSeq: 3050, MaxMsgs: 100},
		{StartSeq: 4000, EndSeq: 9000, MaxMsgs: 7},
	} {
		t.Run(fmt.Sprintf("%d-%d", q.StartSeq, q.EndSeq), func(t *testing.T) {
			res, err := ts.Read(q, func(*Message) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			end := q.EndSeq
			if end == 0 || end > total {
				end = total
			}
			if res.NextSeq == 0 {
				t.Fatalf("Read(%+v) has no next seq", q)
			}
			if got, want := res.NumPending, want(res.NextSeq, end); got != want {
				t.Fatalf("Read(%+v).NumPending = %d, want %d", q, got, want)
			}
		})
	}
	t.Run("AfterReopen", func(t *testing.T) {
		ts.reopen(t)
		res, err := ts.Read(ReadQuery{MaxMsgs: 1}, func(*Message) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if got, want := res.NumPending, want(res.NextSeq, total); got != want {
			t.Fatalf("NumPending = %d, want %d", got, want)
		}
	})
}

// TestOpen_MigratesVersion1 opens a file of schema version 1 (no blocks
// table) and checks that it is upgraded in place with its messages counted.
func TestOpen_MigratesVersion1(t *testing.T) {
	path := oldStreamFile(t, 1, `
		INSERT INTO meta VALUES (1, 3000, 0, 3000, 2999, 2999, '{}');
		WITH RECURSIVE s(n) AS (SELECT 2 UNION ALL SELECT n+1 FROM s WHERE n < 3000)
		INSERT INTO msgs (seq, time, size, flags, data) SELECT n, 0, 1, 0, x'61' FROM s;
`)

	s, err := Open(path, Options{NoSweep: true})
	if err != nil {
		t.Fatalf("Open(v1 file) = %v", err)
	}
	defer s.Close()
	res, err := s.Read(ReadQuery{MaxMsgs: 1}, func(*Message) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res, (ReadResult{LastSeq: 3000, Revision: 3000, NumPending: 2998, NextSeq: 3}); got != want {
		t.Fatalf("Read() = %+v, want %+v", got, want)
	}
	rs, err := s.Append([]Write{data("new")})
	if err != nil || rs[0].Err != nil || rs[0].Seq != 3001 {
		t.Fatalf("Append after migration = %+v, %v; want seq 3001", rs, err)
	}
	var version int
	if err := execOnce(s.conn, "PRAGMA user_version", func(st *sqlite.Stmt) error { version = st.ColumnInt(0); return nil }); err != nil {
		t.Fatal(err)
	}
	if version != len(migrations) {
		t.Fatalf("user_version = %d, want %d", version, len(migrations))
	}
}

// TestOpen_MigratesVersion2 opens a file of schema version 2, whose block
// counts were kept by triggers, and checks that the triggers are gone and
// the store keeps the counts from there on.
func TestOpen_MigratesVersion2(t *testing.T) {
	path := oldStreamFile(t, 2, `
		INSERT INTO meta VALUES (1, 3000, 0, 3000, 3000, 3000, '{}');
		WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM s WHERE n < 3000)
		INSERT INTO msgs (seq, time, size, flags, data) SELECT n, 0, 1, 0, x'61' FROM s;
`)

	s, err := Open(path, Options{NoSweep: true})
	if err != nil {
		t.Fatalf("Open(v2 file) = %v", err)
	}
	defer s.Close()
	if _, err := s.Append([]Write{data("new")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteSeqs(5, 2000); err != nil {
		t.Fatal(err)
	}
	res, err := s.Read(ReadQuery{MaxMsgs: 1}, func(*Message) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res, (ReadResult{LastSeq: 3001, Revision: 3002, NumPending: 2998, NextSeq: 2}); got != want {
		t.Fatalf("Read() = %+v, want %+v", got, want)
	}
	var triggers int
	var blocks string
	if err := execOnce(s.conn, "SELECT (SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'), (SELECT group_concat(block || ':' || n) FROM blocks WHERE block < 2)", func(st *sqlite.Stmt) error {
		triggers, blocks = st.ColumnInt(0), st.ColumnText(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The last block (2) is not kept any more (see flushBlocks).
	if triggers != 0 || blocks != "0:1022,1:1023" {
		t.Fatalf("after migration: %d triggers, blocks %s; want none and 0:1022,1:1023", triggers, blocks)
	}
}

// TestOpen_MigratedFileReopens reopens a file of an older schema that its
// first open migrated in the -wal, where its header still names the old
// version: the migration is not applied a second time.
func TestOpen_MigratedFileReopens(t *testing.T) {
	for version := 1; version < len(migrations); version++ {
		path := oldStreamFile(t, version, `INSERT INTO meta (id, last_seq, last_time, revision, count, bytes, config) VALUES (1, 0, 0, 0, 0, 0, '{}')`)
		for i := 0; i < 2; i++ {
			s, err := Open(path, Options{NoSweep: true})
			if err != nil {
				t.Fatalf("open %d of a v%d file: %v", i+1, version, err)
			}
			if _, err := s.Append([]Write{data("x")}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if v, _, err := inspectFile(path); err != nil || v != version {
			t.Fatalf("v%d file: header version %d, %v; want it not checkpointed", version, v, err)
		}
	}
}

// TestOpen_Locked opens a stream whose file another connection holds
// locked: Open fails with ErrLocked after its wait instead of hanging, and
// works once the lock is gone.
func TestOpen_Locked(t *testing.T) {
	ts := openTest(t, nil)
	ts.put(t, data("x"))
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	ts.Stream = nil
	other, err := sqlite.OpenConn(ts.path, sqlite.OpenReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	if err := execScript(other, "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(ts.path, ts.opts); !errors.Is(err, ErrLocked) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open(locked file) = %v, want ErrLocked", err)
	}
	if err := execScript(other, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	ts.reopen(t)
	if got := ts.seqs(t); len(got) != 1 {
		t.Fatalf("seqs after the lock = %v, want one message", got)
	}
}

// oldStreamFile writes a stream file of an earlier schema version: the
// first version migrations, marked as such, then fill (SQL), in WAL mode.
func oldStreamFile(tb testing.TB, version int, fill string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "old.db")
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		tb.Fatal(err)
	}
	script := strings.Join(migrations[:version], ";") + fmt.Sprintf(";\nPRAGMA application_id=%d; PRAGMA user_version=%d;\n", applicationID, version) + fill + ";\nPRAGMA journal_mode=WAL"
	if err := execScript(conn, script); err != nil {
		tb.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}
