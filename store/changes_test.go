package store

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"

	"github.com/nats-persist/persist/subjects"
)

// changes reads every page of the changes after revision after, pages of
// at most pageMsgs changes, and returns them with the last page's result.
func (ts *testStream) changes(tb testing.TB, after uint64, pageMsgs int) ([]Event, ChangesResult) {
	tb.Helper()
	var all []Event
	for {
		var page []Event
		res, err := ts.Changes(ChangesQuery{AfterRevision: after, MaxMsgs: pageMsgs}, func(ev *Event) error {
			page = append(page, *ev)
			return nil
		})
		if err != nil {
			tb.Fatalf("Changes(after %d) = %v", after, err)
		}
		all = append(all, page...)
		if res.NumPending == 0 {
			return all, res
		}
		if len(page) == 0 {
			tb.Fatalf("Changes(after %d) gave no change with %d pending", after, res.NumPending)
		}
		after = page[len(page)-1].Revision
	}
}

// changeSummary is "rev op …" per change: a set's seq and key, a delete's
// reason, ranges and keys.
func changeSummary(evs []Event) []string {
	var out []string
	for _, ev := range evs {
		s := fmt.Sprintf("%d %s", ev.Revision, ev.Op)
		switch ev.Op {
		case subjects.OpSet:
			s += fmt.Sprintf(" %d", ev.Msg.Seq)
			if ev.Msg.Key != "" {
				s += " " + ev.Msg.Key
			}
			if ev.MsgID != "" {
				s += " id=" + ev.MsgID
			}
		case subjects.OpDelete:
			s += fmt.Sprintf(" %s %v", ev.Reason, ev.Ranges)
			if len(ev.Keys) > 0 {
				s += fmt.Sprintf(" %q", ev.Keys)
			}
		}
		out = append(out, s)
	}
	return out
}

func wantChangeList(tb testing.TB, what string, got []Event, want ...string) {
	tb.Helper()
	if s := changeSummary(got); !slices.Equal(s, want) {
		tb.Fatalf("%s = %q, want %q", what, s, want)
	}
}

// apply applies changes to a copy of a stream's messages by the rules of
// PROTOCOL.md section 5 and returns the seqs it then holds.
func applyAll(tb testing.TB, held map[uint64]*Message, evs []Event) []uint64 {
	tb.Helper()
	held = maps.Clone(held)
	for i := range evs {
		applyChange(tb, held, &evs[i])
	}
	return slices.Sorted(maps.Keys(held))
}

// snapshot is the messages of the stream, by seq.
func (ts *testStream) snapshot(tb testing.TB) map[uint64]*Message {
	tb.Helper()
	m := map[uint64]*Message{}
	if _, err := ts.Read(ReadQuery{}, func(msg *Message) error {
		m[msg.Seq] = msg
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestStream_Changes(t *testing.T) {
	ts := openTest(t, nil)
	ts.put(t, keyed("a", "a1"))                                   // 1: seq 1
	ts.put(t, keyed("b", "b1"))                                   // 2: seq 2
	ts.put(t, data("x"))                                          // 3: seq 3
	past := ts.snapshot(t)                                        // exact at revision 3
	ts.put(t, keyed("a", "a2"))                                   // 4: seq 4 replaces seq 1
	ts.put(t, Write{Key: "c", Data: []byte("c1"), MsgID: "id-c"}) // 5: seq 5
	if _, err := ts.DeleteSeqs(4, 3); err != nil {                // 6: seq 4 (key a) and 3
		t.Fatal(err)
	}
	cfg := subjects.DefaultConfig()
	cfg.MaxMsgs = 2
	if _, err := ts.SetConfig(cfg); err != nil { // 7: config; 8: max_msgs removes nothing (2 left)
		t.Fatal(err)
	}
	ts.put(t, data("y")) // 8: seq 6; 9: max_msgs removes seq 2 (key b)

	got, res := ts.changes(t, 3, 0)
	wantChangeList(t, "Changes(after 3)", got,
		`5 set 5 c`,
		`6 delete request [[3 4]] ["a"]`,
		`7 config`,
		`8 set 6`,
		`9 delete max_msgs [[2 2]] ["b"]`)
	if res != (ChangesResult{Revision: 9}) {
		t.Fatalf("Changes() result = %+v, want revision 9, nothing pending", res)
	}
	if got[2].Config == nil || got[2].Config.MaxMsgs != 2 {
		t.Fatalf("config change = %+v, want the config it set", got[2].Config)
	}
	// Seq 1 (key a) is held by the copy, was replaced by seq 4, which is
	// gone: only the delete's key tells the copy to drop it.
	if seqs := applyAll(t, past, got); !slices.Equal(seqs, ts.seqs(t)) {
		t.Fatalf("copy at revision 3 after the changes holds %v, want %v", seqs, ts.seqs(t))
	}

	t.Run("Pages", func(t *testing.T) {
		for after := uint64(0); after <= 9; after++ {
			all, _ := ts.changes(t, after, 0)
			paged, res := ts.changes(t, after, 1)
			if !slices.Equal(changeSummary(paged), changeSummary(all)) || res.Revision != 9 {
				t.Fatalf("after %d: pages of one give %q (%+v), want %q", after, changeSummary(paged), res, changeSummary(all))
			}
		}
		var page []Event
		res, err := ts.Changes(ChangesQuery{AfterRevision: 3, MaxMsgs: 2}, func(ev *Event) error {
			page = append(page, *ev)
			return nil
		})
		if err != nil || len(page) != 2 || res != (ChangesResult{Revision: 9, NumPending: 3}) {
			t.Fatalf("Changes(after 3, 2 a page) = %q, %+v, %v; want 2 changes, 3 pending", changeSummary(page), res, err)
		}
		// However small max_bytes, one change is sent.
		page = nil
		res, err = ts.Changes(ChangesQuery{AfterRevision: 5, MaxBytes: 1}, func(ev *Event) error {
			page = append(page, *ev)
			return nil
		})
		if err != nil || len(page) != 1 || res.NumPending != 3 {
			t.Fatalf("Changes(after 5, 1 byte) = %q, %+v, %v; want one change, 3 pending", changeSummary(page), res, err)
		}
		if got, want := changeBodySize(&page[0]), int64(len(`{"ranges":[[3,4]],"keys":["a"]}`)); got != want {
			t.Fatalf("size of the delete change = %d, want %d", got, want)
		}
	})
	t.Run("NothingAfter", func(t *testing.T) {
		got, res := ts.changes(t, 9, 0)
		if len(got) != 0 || res != (ChangesResult{Revision: 9}) {
			t.Fatalf("Changes(after the current revision) = %q, %+v; want none", changeSummary(got), res)
		}
	})
	t.Run("Ahead", func(t *testing.T) {
		if _, err := ts.Changes(ChangesQuery{AfterRevision: 10}, func(*Event) error { return nil }); !errors.Is(err, ErrRevisionGone) {
			t.Fatalf("Changes(after 10, at 9) = %v, want ErrRevisionGone", err)
		}
	})
	t.Run("Error", func(t *testing.T) {
		stop := errors.New("stop")
		if _, err := ts.Changes(ChangesQuery{}, func(*Event) error { return stop }); err != stop {
			t.Fatalf("Changes() with a failing fn = %v, want its error", err)
		}
		if got, _ := ts.changes(t, 0, 0); len(got) == 0 {
			t.Fatal("Changes() after a failed one gave nothing")
		}
	})
	t.Run("AfterReopen", func(t *testing.T) {
		ts.reopen(t)
		again, _ := ts.changes(t, 3, 0)
		if !slices.Equal(changeSummary(again), changeSummary(got)) {
			t.Fatalf("Changes(after 3) after a reopen = %q, want %q", changeSummary(again), changeSummary(got))
		}
	})
}

// TestStream_SetEventMsgID checks that a set event carries the write's
// message id and a change of the same set does not.
func TestStream_SetEventMsgID(t *testing.T) {
	ts := openTest(t, nil)
	ts.mustAppend(t, Write{Data: []byte("a"), MsgID: "w-1"}, Write{Data: []byte("b")}, Write{Data: []byte("c"), MsgID: "w-1"})
	wantChangeList(t, "events", ts.rec.take(), "1 set 1 id=w-1", "2 set 2")
	cfg := subjects.DefaultConfig()
	cfg.DuplicateWindow = 0
	if _, err := ts.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	ts.rec.take()
	// Without a duplicate window the id is not remembered, but the event
	// still says which write it was.
	ts.put(t, Write{Data: []byte("d"), MsgID: "w-2"})
	wantChangeList(t, "events without a duplicate window", ts.rec.take(), "4 set 3 id=w-2")
	got, _ := ts.changes(t, 0, 0)
	wantChangeList(t, "Changes()", got, "1 set 1", "2 set 2", "3 config", "4 set 3")
}

// TestStream_ChangesExpiry checks that what expires is a delete change:
// Changes sweeps first, and leaves out a set whose message is gone.
func TestStream_ChangesExpiry(t *testing.T) {
	cfg := subjects.DefaultConfig()
	cfg.AllowMsgTTL = true
	ts := openTest(t, &cfg)                                         // 1: config
	ts.put(t, Write{Key: "k", Data: []byte("v"), TTL: time.Second}) // 2: seq 1
	ts.put(t, data("x"))                                            // 3: seq 2
	ts.clock.Add(2 * time.Second)
	got, res := ts.changes(t, 1, 0)
	wantChangeList(t, "Changes(after 1) past the TTL", got, `3 set 2`, `4 delete ttl [[1 1]] ["k"]`)
	if res.Revision != 4 {
		t.Fatalf("revision = %d, want 4 (the sweep's delete)", res.Revision)
	}
	wantChangeList(t, "events", ts.rec.take()[3:], `4 delete ttl [[1 1]]`)

	cfg.MaxAge = 60_000
	if _, err := ts.SetConfig(cfg); err != nil { // 5: config
		t.Fatal(err)
	}
	ts.clock.Add(2 * time.Minute)
	got, _ = ts.changes(t, 4, 0)
	wantChangeList(t, "Changes(after 4) past max_age", got, `5 config`, `6 delete max_age [[2 2]]`)
}

// TestStream_ChangesBatchKeys checks the delete of a batch that removed a
// key's message and wrote the key again: the delete, which comes after
// the batch's sets, does not name the key, or it would drop the new
// message from a copy.
func TestStream_ChangesBatchKeys(t *testing.T) {
	cfg := subjects.DefaultConfig()
	cfg.MaxMsgs = 2
	ts := openTest(t, &cfg)                            // 1: config
	ts.mustAppend(t, keyed("a", "1"), keyed("b", "1")) // 2, 3: seqs 1, 2
	past := ts.snapshot(t)
	// Seq 3 removes seq 1 (key a), then seq 4 writes a again (removing
	// seq 2, key b), seq 5 removes seq 3 (key c).
	ts.mustAppend(t, keyed("c", "2"), keyed("a", "2"), data("3"))
	got, _ := ts.changes(t, 3, 0)
	wantChangeList(t, "Changes(after 3)", got, `5 set 4 a`, `6 set 5`, `7 delete max_msgs [[1 3]] ["b" "c"]`)
	if seqs, want := applyAll(t, past, got), ts.seqs(t); !slices.Equal(seqs, want) {
		t.Fatalf("copy after the changes holds %v, want %v", seqs, want)
	}
}

// TestStream_ChangesWindow checks that the changes table keeps the window
// (a sixteenth more at most), that Changes after a dropped change is
// ErrRevisionGone, and that both hold across a reopen and a smaller
// window.
func TestStream_ChangesWindow(t *testing.T) {
	ts := openTest(t, nil)
	ts.opts.ChangesWindow = 32
	ts.reopen(t)
	ts.put(t, data("first")) // revision 1, seq 1: stays
	for i := range 40 {      // revisions 2 … 81: a set and its delete
		ts.put(t, data("x"))
		if n, err := ts.DeleteSeqs(uint64(i + 2)); err != nil || n != 1 {
			t.Fatalf("DeleteSeqs() = %d, %v", n, err)
		}
	}
	rows := func() (n int64, first, last uint64) {
		t.Helper()
		ts.mu.Lock()
		defer ts.mu.Unlock()
		if err := execOnce(ts.conn, "SELECT count(*), min(rev), max(rev) FROM changes", func(st *sqlite.Stmt) error {
			n, first, last = st.ColumnInt64(0), uint64(st.ColumnInt64(1)), uint64(st.ColumnInt64(2))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n, first, last
	}
	// 40 deletes: over 32 + 2 the oldest go, down to 32; 34 is kept.
	n, first, last := rows()
	if n < 32 || n > 34 || last != 81 {
		t.Fatalf("changes table holds %d rows, %d … %d; want 32 to 34 ending at 81", n, first, last)
	}
	gone := first - 2 // the newest dropped delete, one set before the oldest kept
	check := func(what string) {
		t.Helper()
		for _, after := range []uint64{0, 1, gone - 1} {
			if _, err := ts.Changes(ChangesQuery{AfterRevision: after}, func(*Event) error { return nil }); !errors.Is(err, ErrRevisionGone) {
				t.Fatalf("%s: Changes(after %d, dropped up to %d) = %v, want ErrRevisionGone", what, after, gone, err)
			}
		}
		// Every set after it is gone: the deletes kept are the changes.
		got, res := ts.changes(t, gone, 0)
		if len(got) != int(n) || got[0].Revision != first || res.Revision != 81 {
			t.Fatalf("%s: Changes(after %d) = %d changes from %d, %+v; want the %d deletes from %d", what, gone, len(got), got[0].Revision, res, n, first)
		}
	}
	check("open")
	ts.reopen(t)
	check("reopened")

	// A smaller window applies from the next change.
	ts.opts.ChangesWindow = 4
	ts.reopen(t)
	check("smaller window, no change yet")
	if _, err := ts.DeleteSeqs(1); err != nil { // 82
		t.Fatal(err)
	}
	if n, first, _ := rows(); n != 4 || first != 77 {
		t.Fatalf("after a change with a window of 4: %d rows from %d, want 4 from 77", n, first)
	}
	if _, err := ts.Changes(ChangesQuery{AfterRevision: 74}, func(*Event) error { return nil }); !errors.Is(err, ErrRevisionGone) {
		t.Fatalf("Changes(after 74, dropped up to 75) = %v, want ErrRevisionGone", err)
	}
	got, _ := ts.changes(t, 75, 0)
	wantChangeList(t, "Changes(after 75)", got, `77 delete request [[39 39]]`, `79 delete request [[40 40]]`, `81 delete request [[41 41]]`, `82 delete request [[1 1]]`)
}

// TestOpen_MigratesVersion4 opens a file of schema version 4, which kept
// no changes: its changes up to its revision are gone, the ones after are
// answered.
func TestOpen_MigratesVersion4(t *testing.T) {
	path := oldStreamFile(t, 4, `
		INSERT INTO meta (id, last_seq, last_time, revision, count, bytes, config, name) VALUES (1, 20, 5, 25, 2, 2, '{}', 'acme.s');
		INSERT INTO msgs (seq, time, key, size, flags, data) VALUES (3, 5, 'k', 2, 0, x'61'), (20, 5, NULL, 1, 0, x'62');
`)
	s, err := Open(path, Options{NoSweep: true, Name: "acme.s"})
	if err != nil {
		t.Fatalf("Open(v4 file) = %v", err)
	}
	ts := &testStream{Stream: s, path: path}
	defer s.Close()
	var version int
	if err := execOnce(s.conn, "PRAGMA user_version", func(st *sqlite.Stmt) error { version = st.ColumnInt(0); return nil }); err != nil {
		t.Fatal(err)
	}
	if version != len(migrations) || version != 5 {
		t.Fatalf("user_version = %d, want 5", version)
	}
	for _, after := range []uint64{0, 24} {
		if _, err := s.Changes(ChangesQuery{AfterRevision: after}, func(*Event) error { return nil }); !errors.Is(err, ErrRevisionGone) {
			t.Fatalf("Changes(after %d) of a migrated file at 25 = %v, want ErrRevisionGone", after, err)
		}
	}
	if got, res := ts.changes(t, 25, 0); len(got) != 0 || res.Revision != 25 {
		t.Fatalf("Changes(after 25) = %q, %+v; want none", changeSummary(got), res)
	}
	ts.put(t, keyed("k", "new"))                // 26: seq 21 replaces seq 3
	if _, err := s.DeleteSeqs(21); err != nil { // 27
		t.Fatal(err)
	}
	ts.put(t, data("c")) // 28: seq 22
	got, _ := ts.changes(t, 25, 0)
	wantChangeList(t, "Changes(after 25)", got, `27 delete request [[21 21]] ["k"]`, `28 set 22`)
	if seqs := applyAll(t, map[uint64]*Message{3: {Seq: 3, Key: "k"}, 20: {Seq: 20}}, got); !slices.Equal(seqs, []uint64{20, 22}) {
		t.Fatalf("copy at 25 after the changes holds %v, want [20 22]", seqs)
	}
	got, _ = ts.changes(t, 26, 0)
	wantChangeList(t, "Changes(after 26)", got, `27 delete request [[21 21]] ["k"]`, `28 set 22`)
}

// TestStream_ChangesMemory checks a memory stream: its creation with a
// config is change 1.
func TestStream_ChangesMemory(t *testing.T) {
	cfg := subjects.DefaultConfig()
	cfg.Storage = subjects.StorageMemory
	s, err := Open("mem", Options{Create: true, Config: &cfg, NoSweep: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := &testStream{Stream: s}
	ts.put(t, keyed("a", "1"))
	if _, err := s.DeleteKey("a"); err != nil {
		t.Fatal(err)
	}
	got, _ := ts.changes(t, 0, 0)
	wantChangeList(t, "Changes()", got, `1 config`, `3 delete request [[1 1]] ["a"]`)
	if got[0].Config.Storage != subjects.StorageMemory {
		t.Fatalf("config change = %+v, want storage memory", got[0].Config)
	}
}

// TestStream_ChangesDamaged checks that a damaged row of the changes
// table is reported as ErrCorrupt, not answered.
func TestStream_ChangesDamaged(t *testing.T) {
	ts := openTest(t, nil)
	ts.put(t, data("a"))
	if _, err := ts.DeleteSeqs(1); err != nil {
		t.Fatal(err)
	}
	ts.mu.Lock()
	err := execOnce(ts.conn, "UPDATE changes SET body = x'01ff'", nil)
	ts.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.Changes(ChangesQuery{}, func(*Event) error { return nil })
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), ts.path) {
		t.Fatalf("Changes() of a damaged row = %v, want ErrCorrupt naming the file", err)
	}
}

func TestDeleteChange_RoundTrip(t *testing.T) {
	for _, c := range []struct {
		ranges [][2]uint64
		keys   []string
	}{
		{[][2]uint64{{1, 1}}, nil},
		{[][2]uint64{{1, 5}, {7, 7}, {1 << 62, 1<<63 - 1}}, []string{"b", "a", "b", "é x"}},
	} {
		got, keys, err := decodeDeleteChange(encodeDeleteChange(c.ranges, slices.Clone(c.keys)))
		want := sortedKeys(slices.Clone(c.keys))
		if err != nil || !slices.Equal(got, c.ranges) || !slices.Equal(keys, want) {
			t.Fatalf("round trip of %v %q = %v %q, %v", c.ranges, c.keys, got, keys, err)
		}
	}
}

// FuzzDecodeDeleteChange checks the reader of stored delete changes: it
// never panics, refuses with ErrCorrupt, and what it accepts encodes to
// a body that reads back the same.
func FuzzDecodeDeleteChange(f *testing.F) {
	f.Add(encodeDeleteChange([][2]uint64{{1, 3}, {9, 9}}, []string{"a", "b"}))
	f.Add(encodeDeleteChange([][2]uint64{{5, 5}}, nil))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		ranges, keys, err := decodeDeleteChange(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeDeleteChange() = %v, want ErrCorrupt", err)
			}
			return
		}
		again, againKeys, err := decodeDeleteChange(encodeDeleteChange(ranges, slices.Clone(keys)))
		if err != nil || !slices.Equal(again, ranges) || !slices.Equal(againKeys, sortedKeys(keys)) {
			t.Fatalf("decoded %v %q reads back as %v %q, %v", ranges, keys, again, againKeys, err)
		}
	})
}
