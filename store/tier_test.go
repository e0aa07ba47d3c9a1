package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"
)

// tierStream creates a stream file at path holding n messages ("m1", "m2",
// ...), closes it and returns its revision.
func tierStream(tb testing.TB, path string, n int) uint64 {
	tb.Helper()
	s, err := Open(path, Options{Create: true, NoSweep: true})
	if err != nil {
		tb.Fatalf("Open(%s) = %v", path, err)
	}
	for i := 1; i <= n; i++ {
		if _, err := s.Append([]Write{{Data: fmt.Appendf(nil, "m%d", i)}}); err != nil {
			tb.Fatalf("Append() = %v", err)
		}
	}
	rev := s.Revision()
	if err := s.Close(); err != nil {
		tb.Fatalf("Close() = %v", err)
	}
	return rev
}

// tierArchive writes at path an archive copy of a stream of n messages, as
// the stream's own snapshots make them: one file, no -wal. It returns its
// revision.
func tierArchive(tb testing.TB, path string, n int) uint64 {
	tb.Helper()
	live := filepath.Join(tb.TempDir(), "live.db")
	rev := tierStream(tb, live, n)
	s, err := Open(live, Options{NoSweep: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	if err := snapshot(s.conn, path); err != nil {
		tb.Fatal(err)
	}
	return rev
}

// tierMessages reads every message of the stream file at path.
func tierMessages(tb testing.TB, path string) []*Message {
	tb.Helper()
	s, err := Open(path, Options{NoSweep: true})
	if err != nil {
		tb.Fatalf("Open(%s) = %v", path, err)
	}
	defer s.Close()
	var msgs []*Message
	if _, err := s.Read(ReadQuery{}, func(m *Message) error {
		msgs = append(msgs, m)
		return nil
	}); err != nil {
		tb.Fatalf("Read() = %v", err)
	}
	return msgs
}

func tierPayloads(msgs []*Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.Data))
	}
	return out
}

func tierRevision(tb testing.TB, path string) uint64 {
	tb.Helper()
	rev, err := fileRevision(path, true)
	if err != nil {
		tb.Fatalf("fileRevision(%s) = %v", path, err)
	}
	return rev
}

func tierCopy(tb testing.TB, src, dst string) {
	tb.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	// A closed stream keeps its -wal; a copy of the stream has it too.
	if b, err := os.ReadFile(src + "-wal"); err == nil {
		if err := os.WriteFile(dst+"-wal", b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

func TestRestoreIfNewer(t *testing.T) {
	t.Run("LocalMissing", func(t *testing.T) {
		dir := t.TempDir()
		archive := filepath.Join(dir, "archive", "s.db")
		rev := tierArchive(t, archive, 3)
		local := filepath.Join(dir, "data", "acme", "s.db")
		if err := restoreIfNewer(local, archive); err != nil {
			t.Fatalf("restoreIfNewer() = %v", err)
		}
		if got, want := tierRevision(t, local), rev; got != want {
			t.Fatalf("restored revision = %d, want %d", got, want)
		}
		if got, want := tierPayloads(tierMessages(t, local)), []string{"m1", "m2", "m3"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("restored messages = %q, want %q", got, want)
		}
		tierNoTemps(t, filepath.Dir(local))
	})
	t.Run("ArchiveNewer", func(t *testing.T) {
		dir := t.TempDir()
		local, archive := filepath.Join(dir, "local.db"), filepath.Join(dir, "archive.db")
		tierStream(t, local, 1)
		tierArchive(t, archive, 4)
		if err := restoreIfNewer(local, archive); err != nil {
			t.Fatalf("restoreIfNewer() = %v", err)
		}
		if got, want := len(tierMessages(t, local)), 4; got != want {
			t.Fatalf("messages after restore = %d, want %d", got, want)
		}
	})
	t.Run("LocalNewer", func(t *testing.T) {
		dir := t.TempDir()
		local, archive := filepath.Join(dir, "local.db"), filepath.Join(dir, "archive.db")
		tierStream(t, local, 5)
		tierArchive(t, archive, 2)
		if err := restoreIfNewer(local, archive); err != nil {
			t.Fatalf("restoreIfNewer() = %v", err)
		}
		if got, want := len(tierMessages(t, local)), 5; got != want {
			t.Fatalf("messages = %d, want the local %d", got, want)
		}
	})
	t.Run("SameRevision", func(t *testing.T) {
		dir := t.TempDir()
		local, archive := filepath.Join(dir, "local.db"), filepath.Join(dir, "archive.db")
		tierStream(t, local, 2)
		tierCopy(t, local, archive)
		before, err := os.Stat(local)
		if err != nil {
			t.Fatal(err)
		}
		if err := restoreIfNewer(local, archive); err != nil {
			t.Fatalf("restoreIfNewer() = %v", err)
		}
		after, err := os.Stat(local)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(before, after) {
			t.Fatal("local file was replaced by an archive copy of the same revision")
		}
	})
	t.Run("ArchiveMissing", func(t *testing.T) {
		dir := t.TempDir()
		local := filepath.Join(dir, "local.db")
		if err := restoreIfNewer(local, filepath.Join(dir, "none.db")); err != nil {
			t.Fatalf("restoreIfNewer() = %v", err)
		}
		if _, err := os.Stat(local); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("local file exists after restoring from nothing: %v", err)
		}
	})
	t.Run("ArchiveDamaged", func(t *testing.T) {
		for name, damage := range tierDamages {
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				local, archive := filepath.Join(dir, "local.db"), filepath.Join(dir, "archive.db")
				tierStream(t, local, 1)
				tierArchive(t, archive, 50)
				damage(t, archive)
				if err := restoreIfNewer(local, archive); err != nil {
					t.Fatalf("restoreIfNewer() with a local file = %v", err)
				}
				if got, want := len(tierMessages(t, local)), 1; got != want {
					t.Fatalf("messages = %d, want the local %d", got, want)
				}
				missing := filepath.Join(dir, "missing.db")
				if err := restoreIfNewer(missing, archive); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("restoreIfNewer() without a local file = %v, want ErrCorrupt", err)
				}
				if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("damaged archive was installed: %v", err)
				}
				tierNoTemps(t, dir)
			})
		}
	})
	t.Run("LocalDamaged", func(t *testing.T) {
		dir := t.TempDir()
		local, archive := filepath.Join(dir, "local.db"), filepath.Join(dir, "archive.db")
		if err := os.WriteFile(local, []byte("not a stream file"), 0o644); err != nil {
			t.Fatal(err)
		}
		tierArchive(t, archive, 2)
		if err := restoreIfNewer(local, archive); err != nil {
			t.Fatalf("restoreIfNewer() = %v", err)
		}
		if b, _ := os.ReadFile(local); string(b) != "not a stream file" {
			t.Fatalf("damaged local file was changed to %q", b)
		}
	})
	t.Run("CrashedLocal", func(t *testing.T) {
		// A local file left by a crash keeps its newest commits in the -wal;
		// they count when judging which copy is newer.
		dir := t.TempDir()
		local, archive := filepath.Join(dir, "local.db"), filepath.Join(dir, "archive.db")
		tierArchive(t, archive, 2)
		rev := tierCrashImage(t, local, 3)
		if _, err := os.Stat(local + "-wal"); err != nil {
			t.Fatalf("crash image has no -wal: %v", err)
		}
		if err := restoreIfNewer(local, archive); err != nil {
			t.Fatalf("restoreIfNewer() = %v", err)
		}
		if got := tierRevision(t, local); got != rev {
			t.Fatalf("local revision = %d, want %d (the crashed file's)", got, rev)
		}
		if got, want := len(tierMessages(t, local)), 3; got != want {
			t.Fatalf("messages = %d, want %d", got, want)
		}
	})
	t.Run("ClosedWithWAL", func(t *testing.T) {
		// A closed stream leaves its last commits in its -wal: they count
		// for the local revision, and an archive that is a plain copy of
		// such a stream (database and -wal) is restored as one whole file.
		dir := t.TempDir()
		local, archive := filepath.Join(dir, "local.db"), filepath.Join(dir, "archive.db")
		tierStream(t, local, 2)
		if st, err := os.Stat(local + "-wal"); err != nil || st.Size() == 0 {
			t.Fatalf("closed stream's -wal = %v, %v; want one with commits", st, err)
		}
		older := filepath.Join(dir, "older.db")
		tierArchive(t, older, 1)
		if err := restoreIfNewer(local, older); err != nil {
			t.Fatalf("restoreIfNewer(older) = %v", err)
		}
		if _, err := os.Stat(local + "-shm"); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("reading the local revision left a -shm: %v", err)
		}
		if got, want := len(tierMessages(t, local)), 2; got != want {
			t.Fatalf("messages = %d, want the local %d", got, want)
		}
		tierStream(t, archive, 5)
		if err := restoreIfNewer(local, archive); err != nil {
			t.Fatalf("restoreIfNewer(newer) = %v", err)
		}
		if got, want := tierPayloads(tierMessages(t, local)), []string{"m1", "m2", "m3", "m4", "m5"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("messages = %q, want %q", got, want)
		}
		tierIntegrity(t, local)
	})
	t.Run("StaleWAL", func(t *testing.T) {
		// An older crashed local file is replaced; its -wal must go too, or
		// SQLite would replay it onto the restored file.
		dir := t.TempDir()
		local, archive := filepath.Join(dir, "local.db"), filepath.Join(dir, "archive.db")
		tierCrashImage(t, local, 1)
		tierArchive(t, archive, 6)
		if err := restoreIfNewer(local, archive); err != nil {
			t.Fatalf("restoreIfNewer() = %v", err)
		}
		if got, want := tierPayloads(tierMessages(t, local)), []string{"m1", "m2", "m3", "m4", "m5", "m6"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("messages = %q, want %q", got, want)
		}
		tierIntegrity(t, local)
	})
}

// tierCrashImage writes at path the files a process killed right after n
// commits would leave: the database and its -wal, copied while the stream
// is open. It returns the revision of those commits.
func tierCrashImage(tb testing.TB, path string, n int) uint64 {
	tb.Helper()
	live := filepath.Join(tb.TempDir(), "live.db")
	s, err := Open(live, Options{Create: true, NoSweep: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	for i := 1; i <= n; i++ {
		if _, err := s.Append([]Write{{Data: fmt.Appendf(nil, "crash%d", i)}}); err != nil {
			tb.Fatal(err)
		}
	}
	tierCopy(tb, live, path)
	tierCopy(tb, live+"-wal", path+"-wal")
	return s.Revision()
}

// tierDamages spoil a stream file in ways a restore must notice.
var tierDamages = map[string]func(tb testing.TB, path string){
	"Garbage": func(tb testing.TB, path string) {
		if err := os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 1024), 0o644); err != nil {
			tb.Fatal(err)
		}
	},
	"Truncated": func(tb testing.TB, path string) {
		st, err := os.Stat(path)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.Truncate(path, st.Size()/2); err != nil {
			tb.Fatal(err)
		}
	},
	"ScribbledPages": func(tb testing.TB, path string) {
		// Header intact, later pages overwritten: only a check of the whole
		// file sees it.
		b, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		for i := 4096; i < len(b); i++ {
			b[i] = byte(i * 7)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			tb.Fatal(err)
		}
	},
	"ScribbledMessages": func(tb testing.TB, path string) {
		// Only the messages table's root page is spoilt: the revision still
		// reads, so only a check of the whole file sees it.
		conn, err := sqlite.OpenConn(path, sqlite.OpenReadOnly)
		if err != nil {
			tb.Fatal(err)
		}
		var root, pageSize int64
		err = execOnce(conn, "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_schema WHERE name = 'msgs'", func(st *sqlite.Stmt) error {
			root, pageSize = st.ColumnInt64(0), st.ColumnInt64(1)
			return nil
		})
		conn.Close()
		if err != nil || root < 2 {
			tb.Fatalf("msgs root page = %d, %v", root, err)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			tb.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(bytes.Repeat([]byte{0x5a}, int(pageSize)), (root-1)*pageSize); err != nil {
			tb.Fatal(err)
		}
	},
	"NotAStream": func(tb testing.TB, path string) {
		os.Remove(path)
		conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenCreate)
		if err != nil {
			tb.Fatal(err)
		}
		defer conn.Close()
		if err := execScript(conn, "CREATE TABLE meta (id, revision); INSERT INTO meta VALUES (1, 99)"); err != nil {
			tb.Fatal(err)
		}
	},
}

// tierNoTemps fails if a temporary file of a restore or snapshot is left in
// dir.
func tierNoTemps(tb testing.TB, dir string) {
	tb.Helper()
	for _, pat := range []string{"*.restore-*", "*.snap-*"} {
		if m, _ := filepath.Glob(filepath.Join(dir, pat)); len(m) > 0 {
			tb.Fatalf("temporary files left behind: %v", m)
		}
	}
}

// tierIntegrity runs SQLite's integrity_check on a closed stream file.
func tierIntegrity(tb testing.TB, path string) {
	tb.Helper()
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	var got []string
	if err := execOnce(conn, "PRAGMA integrity_check", func(st *sqlite.Stmt) error {
		got = append(got, st.ColumnText(0))
		return nil
	}); err != nil {
		tb.Fatalf("integrity_check: %v", err)
	}
	if !reflect.DeepEqual(got, []string{"ok"}) {
		tb.Fatalf("integrity_check = %q, want ok", got)
	}
}

func TestSnapshot(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "live.db"), Options{Create: true, NoSweep: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	big := bytes.Repeat([]byte("compressible "), 500)
	for i := range 200 {
		w := Write{Data: fmt.Appendf(nil, "m%d", i), Header: map[string][]string{"H": {"v"}}}
		if i%10 == 0 {
			w = Write{Key: fmt.Sprintf("k%d", i%30), Data: big}
		}
		if _, err := s.Append([]Write{w}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteSeqs(5, 6, 7); err != nil {
		t.Fatal(err)
	}
	var want []*Message
	if _, err := s.Read(ReadQuery{}, func(m *Message) error {
		want = append(want, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The snapshot is taken from the open stream's own connection, which
	// holds its file in exclusive locking mode; the stream stays usable.
	dst := filepath.Join(dir, "archive", "nested", "copy.db")
	s.mu.Lock()
	err = snapshot(s.conn, dst)
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("snapshot() = %v", err)
	}
	if _, err := s.Append([]Write{{Data: []byte("after")}}); err != nil {
		t.Fatalf("Append() after snapshot = %v", err)
	}

	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Stat(dst + suffix); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("snapshot left %s beside the copy: %v", suffix, err)
		}
	}
	tierNoTemps(t, filepath.Dir(dst))
	head := make([]byte, 20)
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Read(head)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Bytes 18 and 19 are the read and write format versions: 1 is a
	// rollback journal, 2 would be WAL and need a -wal file to be read alone.
	if head[18] != 1 || head[19] != 1 {
		t.Fatalf("copy format versions = %d, %d, want 1, 1 (rollback journal)", head[18], head[19])
	}
	if got, want := tierRevision(t, dst), s.Revision()-1; got != want {
		t.Fatalf("copy revision = %d, want %d", got, want)
	}
	got := tierMessages(t, dst)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("copy holds %d messages, want the %d of the stream at the snapshot", len(got), len(want))
	}
	tierIntegrity(t, dst)

	t.Run("Replace", func(t *testing.T) {
		s.mu.Lock()
		err := snapshot(s.conn, dst)
		s.mu.Unlock()
		if err != nil {
			t.Fatalf("second snapshot() = %v", err)
		}
		if got, want := tierRevision(t, dst), s.Revision(); got != want {
			t.Fatalf("copy revision = %d, want %d", got, want)
		}
	})
}

func TestStream_TieredStorage(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "data", "acme", "docs.db")
	opts := Options{
		Create:          true,
		NoSweep:         true,
		ArchivePath:     filepath.Join(dir, "archive", "acme", "docs.db"),
		BackupPath:      filepath.Join(dir, "backup", "acme", "docs.db"),
		ArchiveInterval: time.Hour, // only Close snapshots in this test
	}
	var revs []uint64
	opts.Notify = func(evs []Event) {
		for _, ev := range evs {
			revs = append(revs, ev.Revision)
		}
	}
	open := func(tb testing.TB) *Stream {
		tb.Helper()
		s, err := Open(local, opts)
		if err != nil {
			tb.Fatalf("Open() = %v", err)
		}
		return s
	}
	appendN := func(tb testing.TB, s *Stream, from, to int) {
		tb.Helper()
		for i := from; i <= to; i++ {
			if _, err := s.Append([]Write{{Key: fmt.Sprintf("k%d", i%3), Data: fmt.Appendf(nil, "m%d", i)}}); err != nil {
				tb.Fatal(err)
			}
		}
	}

	s := open(t)
	appendN(t, s, 1, 5)
	if _, err := os.Stat(opts.ArchivePath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("archive written before the interval or close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	wantRev := tierRevision(t, local)
	for _, p := range []string{opts.ArchivePath, opts.BackupPath} {
		if got := tierRevision(t, p); got != wantRev {
			t.Fatalf("revision of %s after close = %d, want %d", p, got, wantRev)
		}
	}

	t.Run("LocalLost", func(t *testing.T) {
		if err := Remove(local); err != nil {
			t.Fatal(err)
		}
		s := open(t)
		defer s.Close()
		if got := s.Revision(); got != wantRev {
			t.Fatalf("Revision() after restore = %d, want %d", got, wantRev)
		}
		var got []string
		if _, err := s.Read(ReadQuery{}, func(m *Message) error {
			got = append(got, fmt.Sprintf("%d:%s=%s", m.Seq, m.Key, m.Data))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if want := []string{"3:k0=m3", "4:k1=m4", "5:k2=m5"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("messages after restore = %q, want %q", got, want)
		}
		// Revisions continue where the archive left off, and so do seqs.
		revs = nil
		appendN(t, s, 6, 6)
		if want := []uint64{wantRev + 1}; !reflect.DeepEqual(revs, want) {
			t.Fatalf("event revisions after restore = %v, want %v", revs, want)
		}
		if got, want := s.LastSeq(), uint64(6); got != want {
			t.Fatalf("LastSeq() = %d, want %d", got, want)
		}
	})

	t.Run("LastIntervalLost", func(t *testing.T) {
		// The archive holds the state of the last snapshot; changes after it
		// are what losing the data directory costs.
		snap := filepath.Join(dir, "snap.db")
		tierCopy(t, opts.ArchivePath, snap)
		snapRev := tierRevision(t, snap)
		s := open(t)
		appendN(t, s, 7, 9)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		tierCopy(t, snap, opts.ArchivePath)
		if err := Remove(local); err != nil {
			t.Fatal(err)
		}
		s = open(t)
		defer s.Close()
		if got := s.Revision(); got != snapRev {
			t.Fatalf("Revision() = %d, want the snapshot's %d", got, snapRev)
		}
		if got, want := s.LastSeq(), uint64(6); got != want {
			t.Fatalf("LastSeq() = %d, want %d", got, want)
		}
	})

	t.Run("BackupNotRead", func(t *testing.T) {
		if err := Remove(local); err != nil {
			t.Fatal(err)
		}
		if err := Remove(opts.ArchivePath); err != nil {
			t.Fatal(err)
		}
		s := open(t)
		defer s.Close()
		if got := s.LastSeq(); got != 0 {
			t.Fatalf("LastSeq() = %d, want 0: a backup is never restored", got)
		}
	})

	t.Run("Interval", func(t *testing.T) {
		opts := opts
		opts.ArchivePath = filepath.Join(dir, "archive2", "acme", "docs.db")
		opts.ArchiveInterval = time.Millisecond
		s, err := Open(filepath.Join(dir, "data2", "s.db"), opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		appendN(t, s, 1, 3)
		// The background snapshot happens on a timer; wait for its result
		// rather than for a fixed time.
		deadline := time.Now().Add(10 * time.Second)
		for {
			rev, err := fileRevision(opts.ArchivePath, false)
			if err == nil && rev == s.Revision() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("archive revision = %d, %v; want %d within 10s", rev, err, s.Revision())
			}
			time.Sleep(2 * time.Millisecond)
		}
		tierIntegrity(t, opts.ArchivePath)
	})
}

// TestStream_ArchiveBehind checks that a stream whose archive copy is
// behind its file (its last writes were not archived before a crash) gets
// a snapshot at Close even when nothing changed since the open.
func TestStream_ArchiveBehind(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Create: true, NoSweep: true, ArchivePath: filepath.Join(dir, "archive", "s.db"), ArchiveInterval: time.Hour}
	path := filepath.Join(dir, "data", "s.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	fenceWriteN(t, s, "m", 1, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	fenceWriteN(t, s, "m", 4, 5)
	rev := s.Revision()
	if err := s.Abandon(); err != nil { // as a crash: no snapshot
		t.Fatal(err)
	}
	if got := tierRevision(t, opts.ArchivePath); got >= rev {
		t.Fatalf("archive revision = %d after Abandon, want below %d", got, rev)
	}
	s, err = Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tierRevision(t, opts.ArchivePath); got != rev {
		t.Fatalf("archive revision = %d after an open and Close, want %d", got, rev)
	}
}
