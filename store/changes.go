package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"zombiezen.com/go/sqlite"

	"github.com/nats-persist/persist/subjects"
)

// What changed after a revision ([Stream.Changes]) is answered from the
// messages themselves and from a table of the other changes.
//
// A set's change is its message: the messages still in the stream whose
// set came after the revision. No column says at which revision a message
// was set, because none is needed: every event that is not a set is a
// delete or a config change, which has a row of its own in the changes
// table with the stream's last seq when it was made, and every set adds
// one to both the revision and the last seq. So between two rows (r1, s1)
// and (r2, s2) of the table, the sets have the seqs s1+1 … s2 and the
// revisions r1+1 … r2-1, in order, and a message's revision follows from
// its seq and the last row before it. A write costs nothing more than
// before; a delete or config change costs one row.
//
// The table keeps at least the last Options.ChangesWindow rows: when it
// holds a sixteenth more, the oldest are dropped down to the window, and
// the meta row remembers the revision and last seq of the newest one
// dropped (gone_rev, gone_seq). The changes after a revision below
// gone_rev are no longer all known ([ErrRevisionGone]); from gone_rev on,
// the row (gone_rev, gone_seq) stands for the dropped ones. A stream that
// jumps past a fence (see fence.go) drops every row the same way, with
// the revision and last seq it jumped to.

// ChangesQuery selects a page of changes for [Stream.Changes].
type ChangesQuery struct {
	AfterRevision uint64 // the revision a mirror is exact at
	MaxMsgs       int    // bound on changes in this page; 0 means no bound
	MaxBytes      int64  // bound on the page's size (see Stream.Changes); 0 means no bound
}

// ChangesResult describes a page of changes, as of its read.
type ChangesResult struct {
	Revision   uint64 // the stream's revision
	NumPending int64  // changes after this page
}

// changeLog is what the stream knows of its changes table.
type changeLog struct {
	// loaded tells that first and last are read from the table (see
	// loadChangeLog); the table is read only by the first change made
	// after an open.
	loaded      bool
	first, last int64 // n of the oldest and newest row; last < first: none
	// goneRev and goneSeq are the meta row's gone_rev and gone_seq.
	goneRev, goneSeq uint64
}

// changeRec is a delete or config change of a transaction, written to
// the changes table before it commits.
type changeRec struct {
	ev      Event
	lastSeq uint64
	keys    []string // subjects.OpDelete: the keys of the keyed messages removed
}

// window is the least number of rows the changes table keeps.
func (s *Stream) window() int64 {
	if s.opts.ChangesWindow > 0 {
		return int64(s.opts.ChangesWindow)
	}
	return subjects.DefaultChangesWindow
}

// loadChangeLog reads the numbers of the oldest and newest rows of the
// changes table.
func (tx *txn) loadChangeLog() error {
	if tx.chg.loaded {
		return nil
	}
	tx.chg.first, tx.chg.last = 1, 0
	err := execOnce(tx.conn, "SELECT (SELECT n FROM changes ORDER BY rev LIMIT 1), (SELECT n FROM changes ORDER BY rev DESC LIMIT 1)", func(st *sqlite.Stmt) error {
		if !st.ColumnIsNull(0) && !st.ColumnIsNull(1) {
			tx.chg.first, tx.chg.last = st.ColumnInt64(0), st.ColumnInt64(1)
		}
		return nil
	})
	if err != nil {
		return err
	}
	tx.chg.loaded = true
	return nil
}

// flushChanges writes the transaction's delete and config changes to the
// changes table, drops the oldest rows when the table holds a sixteenth
// more than the window, and records what was dropped in the meta row.
func (tx *txn) flushChanges() error {
	if len(tx.recs) == 0 {
		return nil
	}
	if err := tx.loadChangeLog(); err != nil {
		return err
	}
	st, err := tx.s.prep("INSERT INTO changes (rev, n, last_seq, op, reason, body) VALUES (?, ?, ?, ?, ?, ?)")
	if err != nil {
		return err
	}
	for _, rc := range tx.recs {
		var body []byte
		var reason string
		switch rc.ev.Op {
		case subjects.OpDelete:
			body, reason = encodeDeleteChange(rc.ev.Ranges, rc.keys), rc.ev.Reason
		case subjects.OpConfig:
			if body, err = encodeStoredConfig(*rc.ev.Config, tx.s.cfgExtra); err != nil {
				return err
			}
		default:
			return fmt.Errorf("store: no change record for %s events", rc.ev.Op)
		}
		tx.chg.last++
		st.BindInt64(1, int64(rc.ev.Revision))
		st.BindInt64(2, tx.chg.last)
		st.BindInt64(3, int64(rc.lastSeq))
		st.BindText(4, rc.ev.Op)
		if reason != "" {
			st.BindText(5, reason)
		} else {
			st.BindNull(5)
		}
		st.BindBytes(6, body)
		if err := step(st, nil); err != nil {
			return err
		}
	}
	tx.recs = tx.recs[:0]
	window := tx.s.window()
	if kept := tx.chg.last - tx.chg.first + 1; kept <= window+window/16 {
		return nil
	}
	// The rows are numbered in the order of their revisions, so the ones
	// to drop are the first (kept - window) by revision.
	drop := tx.chg.last - tx.chg.first + 1 - window
	var found bool
	err = tx.s.exec("SELECT rev, last_seq FROM changes ORDER BY rev LIMIT 1 OFFSET ?", func(st *sqlite.Stmt) error {
		tx.chg.goneRev, tx.chg.goneSeq, found = uint64(st.ColumnInt64(0)), uint64(st.ColumnInt64(1)), true
		return nil
	}, drop-1)
	if err != nil {
		return err
	}
	if !found {
		return errors.New("store: changes table has fewer rows than counted")
	}
	if err := tx.s.exec("DELETE FROM changes WHERE rev <= ?", nil, tx.chg.goneRev); err != nil {
		return err
	}
	tx.chg.first += drop
	return tx.s.exec("UPDATE meta SET gone_rev = ?, gone_seq = ? WHERE id = 1", nil, tx.chg.goneRev, tx.chg.goneSeq)
}

// deleteChangeVersion is the first byte of a delete change's body in the
// changes table.
const deleteChangeVersion = 1

// encodeDeleteChange is the stored body of a delete change: a version
// byte, a uvarint count of ranges and per range its first seq and its
// length less one, then a uvarint count of keys and each key as a uvarint
// length and its bytes. Keys are sorted and given once.
func encodeDeleteChange(ranges [][2]uint64, keys []string) []byte {
	keys = sortedKeys(keys)
	b := make([]byte, 0, 4+len(ranges)*6+len(keys)*8)
	b = append(b, deleteChangeVersion)
	b = binary.AppendUvarint(b, uint64(len(ranges)))
	for _, r := range ranges {
		b = binary.AppendUvarint(b, r[0])
		b = binary.AppendUvarint(b, r[1]-r[0])
	}
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
	}
	return b
}

// sortedKeys sorts keys in place and drops repeats: one delete can remove
// two messages of one key (a batch that wrote the key again after
// max_msgs removed its message).
func sortedKeys(keys []string) []string {
	if len(keys) < 2 {
		return keys
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// decodeDeleteChange reverses [encodeDeleteChange]. It never panics and
// never allocates more than the body can describe: a damaged body is an
// error wrapping ErrCorrupt.
func decodeDeleteChange(b []byte) (ranges [][2]uint64, keys []string, err error) {
	if len(b) == 0 || b[0] != deleteChangeVersion {
		return nil, nil, fmt.Errorf("%w: delete change: unknown format", ErrCorrupt)
	}
	d := decoder{b: b[1:], what: "delete change"}
	ranges = make([][2]uint64, d.count())
	var prev uint64
	for i := range ranges {
		first, n := d.uvarint(), d.uvarint()
		last := first + n
		if d.err == nil && (first == 0 || last < first || i > 0 && first <= prev) {
			d.fail("ranges not ascending")
		}
		ranges[i], prev = [2]uint64{first, last}, last
	}
	if len(ranges) > 0 {
		keys = make([]string, d.count())
		for i := range keys {
			keys[i] = d.string()
		}
	} else if d.err == nil {
		d.fail("no ranges")
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, nil, d.err
	}
	if len(keys) == 0 {
		keys = nil
	}
	return ranges, keys, nil
}

// changeBodySize is the length of the body of a change that is not a
// set (a [subjects.DeleteEvent] or the config), as encoding/json writes it
// without HTML escaping: what a page of changes counts for it.
func changeBodySize(ev *Event) int64 {
	var w countWriter
	enc := json.NewEncoder(&w)
	enc.SetEscapeHTML(false)
	var err error
	switch ev.Op {
	case subjects.OpDelete:
		err = enc.Encode(subjects.DeleteEvent{Ranges: ev.Ranges, Keys: ev.Keys})
	case subjects.OpConfig:
		err = enc.Encode(ev.Config)
	}
	if err != nil || w == 0 {
		return 0
	}
	return int64(w) - 1 // the encoder's newline
}

type countWriter int

func (w *countWriter) Write(p []byte) (int, error) {
	*w += countWriter(len(p))
	return len(p), nil
}

// Changes calls fn for one page of what changed after q.AfterRevision,
// in revision order, within one read transaction: applied in order to a
// copy of the stream that was exact at that revision, by the rules of
// PROTOCOL.md section 5, the changes make it exact at the revision of
// the result. They are a set event for every message still in the stream
// (and not expired) whose set came after the revision, and every delete
// and config event after it; a delete also names the keys of the keyed
// messages it removed (a copy may hold an older message of such a key,
// replaced by a set that is itself gone). A set's message has no MsgID.
//
// The page ends at q.MaxMsgs changes or before the change that would take
// it over q.MaxBytes, counting a set's message size and the body length
// of any other change (see changeBodySize); it holds at least one change
// when any is pending. Whatever has expired is removed first, as by
// [Stream.Inventory]. ErrRevisionGone: a change after q.AfterRevision is
// no longer kept, or the revision is above the stream's. fn runs with the
// stream's lock held, so it must not call the stream; an error from it
// ends the read and is returned.
func (s *Stream) Changes(q ChangesQuery, fn func(*Event) error) (res ChangesResult, err error) {
	if err := s.lock(); err != nil {
		return ChangesResult{}, err
	}
	defer s.mu.Unlock()
	// On a full disk the sweep cannot commit; expired messages are still
	// left out of the answer, and their deletes come later.
	if err := s.sweepIfDue(); err != nil && !errors.Is(err, ErrStorageFull) {
		return ChangesResult{}, err
	}
	res.Revision = s.m.revision
	after := q.AfterRevision
	if after > s.m.revision || after < s.chg.goneRev {
		return res, ErrRevisionGone
	}
	if after == s.m.revision {
		return res, nil
	}
	if err := s.exec("BEGIN", nil); err != nil {
		return res, s.dbErr(err)
	}
	defer func() {
		if cerr := s.exec("COMMIT", nil); err == nil && cerr != nil {
			err = s.dbErr(cerr)
		}
	}()
	r := changeReader{s: s, after: after, now: s.nowMs()}
	defer r.close()
	var fnErr error
	err = r.read(q, func(ev *Event) error {
		if err := fn(ev); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	if fnErr != nil {
		return res, fnErr
	}
	if err != nil {
		return res, s.dbErr(err)
	}
	res.NumPending = r.pending
	return res, nil
}

// changeReader merges the messages set after a revision (in seq order)
// with the rows of the changes table after it (in revision order).
type changeReader struct {
	s     *Stream
	after uint64
	now   int64
	// base is the revision and last seq of the last delete or config
	// change before the next message: that message's revision is
	// base.rev + (seq - base.seq).
	baseRev, baseSeq uint64
	msgs, recs       *sqlite.Stmt // open cursors, reset by close
	msg              *Message     // the next message (nil: none)
	msgSize          int64
	rec              *changeRow // the next row (nil: none)
	pending          int64
}

// changeRow is a row of the changes table.
type changeRow struct {
	rev, lastSeq uint64
	ev           Event
}

func (r *changeReader) close() {
	for _, st := range []*sqlite.Stmt{r.msgs, r.recs} {
		if st != nil {
			st.Reset()
		}
	}
}

// read calls fn for each change of the page (see Stream.Changes) and
// counts the ones after it in r.pending.
func (r *changeReader) read(q ChangesQuery, fn func(*Event) error) error {
	s := r.s
	// The last delete or config change at or before the revision tells
	// the seq of the first set after it; when none is kept, the newest
	// one dropped stands for it (it is at or before the revision, or the
	// answer was ErrRevisionGone).
	r.baseRev, r.baseSeq = s.chg.goneRev, s.chg.goneSeq
	err := s.exec("SELECT rev, last_seq FROM changes WHERE rev <= ? ORDER BY rev DESC LIMIT 1", func(st *sqlite.Stmt) error {
		r.baseRev, r.baseSeq = uint64(st.ColumnInt64(0)), uint64(st.ColumnInt64(1))
		return nil
	}, r.after)
	if err != nil {
		return err
	}
	firstSeq := r.baseSeq + (r.after - r.baseRev) + 1
	if r.msgs, err = s.prep("SELECT " + msgColumns + ", size FROM msgs WHERE seq >= ? AND time >= ? AND " + notExpired + " ORDER BY seq"); err != nil {
		return err
	}
	bind(r.msgs, []any{firstSeq, s.ageCutoff(r.now), r.now})
	if r.recs, err = s.prep("SELECT rev, last_seq, op, reason, body FROM changes WHERE rev > ? ORDER BY rev"); err != nil {
		return err
	}
	bind(r.recs, []any{r.after})
	if err := r.nextMsg(); err != nil {
		return err
	}
	if err := r.nextRec(); err != nil {
		return err
	}
	var sent int
	var bytes int64
	var ev Event
	for r.msg != nil || r.rec != nil {
		var size int64
		if r.msg != nil && (r.rec == nil || r.msg.Seq <= r.rec.lastSeq) {
			rev := r.baseRev + (r.msg.Seq - r.baseSeq)
			if rev <= r.after || r.rec != nil && rev >= r.rec.rev || rev > s.m.revision {
				return fmt.Errorf("store: changes: seq %d maps to revision %d outside (%d, %d]", r.msg.Seq, rev, r.after, s.m.revision)
			}
			ev, size = Event{Op: subjects.OpSet, Revision: rev, Msg: r.msg}, r.msgSize
		} else {
			ev = r.rec.ev
			size = changeBodySize(&ev)
		}
		if sent > 0 && (q.MaxMsgs > 0 && sent >= q.MaxMsgs || q.MaxBytes > 0 && bytes+size > q.MaxBytes) {
			return r.countPending(ev.Revision)
		}
		if err := fn(&ev); err != nil {
			return err
		}
		sent++
		bytes += size
		if ev.Op == subjects.OpSet {
			err = r.nextMsg()
		} else {
			r.baseRev, r.baseSeq = r.rec.rev, r.rec.lastSeq
			err = r.nextRec()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// countPending counts the changes from revision rev on, the next message
// and the next row among them.
func (r *changeReader) countPending(rev uint64) error {
	s := r.s
	if r.msg != nil {
		// Times never go backwards, so every message after the next one
		// is young enough for max_age too.
		n, err := s.countRange(int64(r.msg.Seq), int64(s.m.lastSeq), r.now)
		if err != nil {
			return err
		}
		r.pending += n
	}
	return s.exec("SELECT count(*) FROM changes WHERE rev >= ?", func(st *sqlite.Stmt) error {
		r.pending += st.ColumnInt64(0)
		return nil
	}, rev)
}

func (r *changeReader) nextMsg() error {
	r.msg = nil
	row, err := r.msgs.Step()
	if err != nil || !row {
		return err
	}
	m, err := scanMsg(r.msgs)
	if err != nil {
		return err
	}
	r.msg, r.msgSize = m, r.msgs.ColumnInt64(7)
	return nil
}

func (r *changeReader) nextRec() error {
	r.rec = nil
	st := r.recs
	row, err := st.Step()
	if err != nil || !row {
		return err
	}
	c := &changeRow{rev: uint64(st.ColumnInt64(0)), lastSeq: uint64(st.ColumnInt64(1))}
	c.ev = Event{Op: st.ColumnText(2), Revision: c.rev}
	body := columnBytes(st, 4)
	switch c.ev.Op {
	case subjects.OpDelete:
		c.ev.Reason = st.ColumnText(3)
		if c.ev.Ranges, c.ev.Keys, err = decodeDeleteChange(body); err != nil {
			return err
		}
	case subjects.OpConfig:
		sc, err := parseStoredConfig(string(body))
		if err != nil {
			return fmt.Errorf("%w: config change %d: %v", ErrCorrupt, c.rev, err)
		}
		c.ev.Config = &sc.cfg
	default:
		return fmt.Errorf("%w: change %d has op %q", ErrCorrupt, c.rev, c.ev.Op)
	}
	r.rec = c
	return nil
}
