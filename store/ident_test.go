package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// namedStream creates the stream name in a directory of its own, writes
// msgs to it and closes it, leaving its commits in its -wal (fewer than
// close checkpoints); it returns the file's path.
func namedStream(tb testing.TB, name string, msgs ...string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "s.db")
	s, err := Open(path, Options{Create: true, NoSweep: true, Name: name})
	if err != nil {
		tb.Fatal(err)
	}
	for _, m := range msgs {
		if _, err := s.Append([]Write{data(m)}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	if st, err := os.Stat(path + "-wal"); err != nil || st.Size() == 0 {
		tb.Fatalf("no uncheckpointed -wal: %v", err)
	}
	return path
}

// copyWAL puts the -wal of the stream file src beside the stream file dst,
// in place of dst's own.
func copyWAL(tb testing.TB, src, dst string) {
	tb.Helper()
	b, err := os.ReadFile(src + "-wal")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(dst+"-wal", b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// payloads is every message payload of the stream at path, opened with
// opts, in seq order.
func payloads(tb testing.TB, path string, opts Options) []string {
	tb.Helper()
	s, err := Open(path, opts)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	var got []string
	if _, err := s.Read(ReadQuery{}, func(m *Message) error {
		got = append(got, string(m.Data))
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return got
}

// wantForeign opens the stream file at path as the stream name and
// checks that it is refused as damage naming the path (and, with named,
// both names), and that the directory is left exactly as it was.
func wantForeign(tb testing.TB, path, name, other string, named bool) {
	tb.Helper()
	before := dirState(tb, filepath.Dir(path))
	for _, create := range []bool{false, true} {
		s, err := Open(path, Options{Create: create, NoSweep: true, Name: name})
		if s != nil {
			s.Close()
		}
		if !errors.Is(err, ErrCorrupt) {
			tb.Fatalf("Open(%s with a -wal of %s, Create %v) = %v, want ErrCorrupt", name, other, create, err)
		}
		want := []string{path}
		if named {
			want = append(want, `"`+name+`"`, `belongs to stream "`+other+`"`)
		}
		for _, want := range want {
			if !strings.Contains(err.Error(), want) {
				tb.Fatalf("Open error %q does not name %s", err, want)
			}
		}
	}
	after := dirState(tb, filepath.Dir(path))
	if len(after) != len(before) {
		tb.Fatalf("files after the open: %d, want %d", len(after), len(before))
	}
	for f, b := range before {
		if after[f] != b {
			tb.Fatalf("%s was changed by the open", f)
		}
	}
}

// TestOpen_WALOfAnotherStream puts the -wal of stream B beside the file of
// stream A: SQLite would replay it as A's own, so that A served B's
// messages; the open refuses it as damage and leaves both files as they
// were. Without a name the file is not checked.
func TestOpen_WALOfAnotherStream(t *testing.T) {
	a := namedStream(t, "acme.a", "a1", "a2")
	b := namedStream(t, "acme.b", "b1", "b2", "b3")
	copyWAL(t, b, a)
	wantForeign(t, a, "acme.a", "acme.b", true)
	// What the check prevents: with no name, B's messages read as A's.
	if got := payloads(t, a, Options{NoSweep: true}); strings.Join(got, ",") != "b1,b2,b3" {
		t.Fatalf("unchecked open reads %v, want B's messages", got)
	}
}

// TestOpen_NamedReopen reopens a named stream, with its commits in the -wal
// and after a checkpoint, and refuses it under another name.
func TestOpen_NamedReopen(t *testing.T) {
	path := namedStream(t, "acme.docs", "m1")
	if got := payloads(t, path, Options{NoSweep: true, Name: "acme.docs"}); len(got) != 1 {
		t.Fatalf("reopen reads %v, want one message", got)
	}
	s, err := Open(path, Options{NoSweep: true, Name: "acme.docs"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < closeCheckpointFrames; i++ {
		if _, err := s.Append([]Write{data("m")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path + "-wal"); err == nil && st.Size() > 0 {
		t.Fatalf("-wal of %d bytes after close, want it checkpointed", st.Size())
	}
	if got := payloads(t, path, Options{NoSweep: true, Name: "acme.docs"}); len(got) != 1+closeCheckpointFrames {
		t.Fatalf("reopen after checkpoint reads %d messages, want %d", len(got), 1+closeCheckpointFrames)
	}
	s, err = Open(path, Options{NoSweep: true, Name: "acme.other"})
	if s != nil {
		s.Close()
	}
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `belongs to stream "acme.docs"`) {
		t.Fatalf("Open under another name = %v, want ErrCorrupt naming acme.docs", err)
	}
}

// TestOpen_NamesVersion3File opens a file of schema version 3, which has
// no name: it opens under any name until its first write records the
// stream's, after which it is checked, and a -wal of another stream
// beside it is found, before and after a checkpoint brought the file's
// header to the current version. (Before, SQLite sees the old schema of
// the file's first page on the other stream's pages: damage too, though
// not always found as the other stream's name.)
func TestOpen_NamesVersion3File(t *testing.T) {
	path := oldStreamFile(t, 3, `
		INSERT INTO meta VALUES (1, 2, 0, 2, 2, 2, '{}');
		INSERT INTO msgs (seq, time, size, flags, data) VALUES (1, 0, 2, 0, 'o1'), (2, 0, 2, 0, 'o2');
`)
	for _, name := range []string{"acme.other", "acme.old"} {
		if got := payloads(t, path, Options{NoSweep: true, Name: name}); strings.Join(got, ",") != "o1,o2" {
			t.Fatalf("unnamed file opened as %s reads %v, want o1,o2", name, got)
		}
	}
	s, err := Open(path, Options{NoSweep: true, Name: "acme.old"})
	if err != nil {
		t.Fatal(err)
	}
	if s.name != "" {
		t.Fatalf("name before the first write = %q, want none", s.name)
	}
	if _, err := s.Append([]Write{data("o3")}); err != nil {
		t.Fatal(err)
	}
	if s.name != "acme.old" {
		t.Fatalf("name after the first write = %q, want acme.old", s.name)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := payloads(t, path, Options{NoSweep: true, Name: "acme.old"}); strings.Join(got, ",") != "o1,o2,o3" {
		t.Fatalf("reopen reads %v, want o1,o2,o3", got)
	}
	if s, err := Open(path, Options{NoSweep: true, Name: "acme.other"}); !errors.Is(err, ErrCorrupt) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open under another name after the first write = %v, want ErrCorrupt", err)
	}
	own, err := os.ReadFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	b := namedStream(t, "acme.b", "b1")
	copyWAL(t, b, path)
	wantForeign(t, path, "acme.old", "acme.b", false)

	if err := os.WriteFile(path+"-wal", own, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{NoSweep: true, Name: "acme.old"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < closeCheckpointFrames; i++ {
		if _, err := s.Append([]Write{data("o")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v, _, err := inspectFile(path); err != nil || v != len(migrations) {
		t.Fatalf("header version after checkpoint = %d, %v; want %d", v, err, len(migrations))
	}
	copyWAL(t, b, path)
	wantForeign(t, path, "acme.old", "acme.b", true)
}

// TestOpen_NamedMemory checks that a memory stream, which has no file,
// takes a name and works.
func TestOpen_NamedMemory(t *testing.T) {
	s, err := Open("acme.mem", Options{Memory: true, Create: true, NoSweep: true, Name: "acme.mem"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rs, err := s.Append([]Write{data("x")}); err != nil || rs[0].Seq != 1 {
		t.Fatalf("Append = %+v, %v", rs, err)
	}
}

// TestOpen_NamedArchiveRestore restores a named stream from its archive
// copy, after losing the local file and with the local file behind: the
// copy keeps the stream's name and opens under it.
func TestOpen_NamedArchiveRestore(t *testing.T) {
	dir := t.TempDir()
	path, arch := filepath.Join(dir, "data", "s.db"), filepath.Join(dir, "archive", "s.db")
	opts := Options{Create: true, NoSweep: true, Name: "acme.docs", ArchivePath: arch}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append([]Write{data("m1")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// An older local file: the archive, one write ahead, replaces it.
	old := dirState(t, filepath.Dir(path))
	s, err = Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append([]Write{data("m2")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	for f, b := range old {
		if err := os.WriteFile(filepath.Join(filepath.Dir(path), f), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := payloads(t, path, opts); strings.Join(got, ",") != "m1,m2" {
		t.Fatalf("restored over an older file reads %v, want m1,m2", got)
	}
	// No local file: the archive copy is restored.
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	opts.Create = false
	if got := payloads(t, path, opts); strings.Join(got, ",") != "m1,m2" {
		t.Fatalf("restored stream reads %v, want m1,m2", got)
	}
}
