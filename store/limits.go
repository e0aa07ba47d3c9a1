package store

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"zombiezen.com/go/sqlite"

	"github.com/nats-persist/persist/subjects"
)

// txn is one write transaction: the counters as they will be after commit
// and the events it produces, assigned revisions in order.
type txn struct {
	s        *Stream
	conn     *sqlite.Conn
	now      int64
	m        meta
	cfg      Config
	cfgDirty bool
	rate     rateWindow
	events   []Event
	deadline int64        // earliest new expiry this transaction created (0: none)
	swept    bool         // the deadline must be recomputed from the data
	blocks   []blockDelta // changes to the blocks table, applied before commit
	chg      changeLog    // the changes table as it will be after commit
	recs     []changeRec  // delete and config changes, written before commit

	// Removals made to keep limits while appending, published after the
	// set events as one delete event per reason.
	byMaxMsgs, byMaxBytes rangeSet
	// The removals of the item being written (see appendOne), kept here
	// so that they need no allocation of their own.
	itemMsgs, itemBytes rangeSet
}

// txns recycles the transactions of every stream: a txn is some 600
// bytes, allocated by every write otherwise.
var txns = sync.Pool{New: func() any { return new(txn) }}

// update runs fn in one write transaction and, once it committed, takes its
// counters, publishes its events and re-arms the timer. If anything fails
// nothing of it remains, not even quota reservations.
func (s *Stream) update(fn func(tx *txn) error) (err error) {
	tx := txns.Get().(*txn)
	*tx = txn{s: s, conn: s.conn, now: s.nowMs(), m: s.m, cfg: s.cfg, rate: s.rate, blocks: s.blockBuf[:0], chg: s.chg}
	defer func() {
		s.blockBuf = tx.blocks[:0] // reused by the next transaction
		*tx = txn{}                // what it refers to belongs to the caller now
		txns.Put(tx)
	}()
	if err := s.exec("BEGIN IMMEDIATE", nil); err != nil {
		return s.dbErr(err)
	}
	err = fn(tx)
	if err == nil {
		err = tx.flushBlocks()
	}
	if err == nil {
		err = tx.flushChanges()
	}
	if err == nil && tx.m != s.m {
		err = tx.writeMeta()
	}
	// A file without its stream's name (created from the template, or
	// older than the name) gets it with its first write.
	nameDue := s.name == "" && s.opts.Name != "" && !s.memory && (tx.m != s.m || tx.cfgDirty)
	if err == nil && nameDue {
		err = execOnce(s.conn, "UPDATE meta SET name = ? WHERE id = 1", nil, s.opts.Name)
	}
	if err == nil && tx.cfgDirty {
		var b []byte
		if b, err = encodeStoredConfig(tx.cfg, s.cfgExtra); err == nil {
			err = execOnce(s.conn, "UPDATE meta SET config = ? WHERE id = 1", nil, string(b))
		}
	}
	// Nothing is acknowledged beyond what the fence reserves (see
	// Fence): past it, the next reservation is written first.
	if err == nil && tx.m.revision > s.fenceRev {
		err = s.reserve(tx.m)
	}
	if err == nil {
		err = s.exec("COMMIT", nil)
	}
	if err != nil {
		// Before the rollback, which may change what the connection
		// reports.
		err = s.dbErr(err)
		if !s.conn.AutocommitEnabled() {
			if rerr := s.exec("ROLLBACK", nil); rerr != nil {
				s.opts.Logger.Error("store: rollback failed", "stream", s.path, "err", rerr)
			}
		}
		s.settleQuota(s.m.bytes)
		return err
	}
	changed := tx.m != s.m || tx.cfgDirty
	if nameDue {
		s.name = s.opts.Name
	}
	s.m, s.cfg, s.rate, s.chg = tx.m, tx.cfg, tx.rate, tx.chg
	s.settleQuota(s.m.bytes)
	if changed {
		s.archive.dirty = true
	}
	if len(tx.events) > 0 && s.opts.Notify != nil {
		s.opts.Notify(tx.events)
	}
	if tx.swept || tx.cfgDirty {
		if err := s.recomputeDeadline(); err != nil {
			s.opts.Logger.Error("store: expiry deadline", "stream", s.path, "err", err)
			s.deadline = s.nowMs() // try again soon
		}
	} else {
		s.lowerDeadline(tx.deadline)
	}
	if s.walFrames >= checkpointFrames {
		s.ckptDue = true
	}
	s.arm()
	return nil
}

// writeMeta stores the transaction's counters in the meta row.
func (tx *txn) writeMeta() error {
	st, err := tx.s.prep("UPDATE meta SET last_seq = ?, last_time = ?, revision = ?, count = ?, bytes = ? WHERE id = 1")
	if err != nil {
		return err
	}
	st.BindInt64(1, int64(tx.m.lastSeq))
	st.BindInt64(2, tx.m.lastTime)
	st.BindInt64(3, int64(tx.m.revision))
	st.BindInt64(4, tx.m.count)
	st.BindInt64(5, tx.m.bytes)
	return step(st, nil)
}

// blockDelta is the change of one block's count in a transaction.
type blockDelta struct{ block, n int64 }

// countBlock records that a row with seq was inserted (d = 1) or deleted
// (d = -1). Rows come mostly in seq order, so the last block touched is
// looked at first; rows of the last block, the one flushBlocks does not
// keep, are not recorded.
func (tx *txn) countBlock(seq uint64, d int64) {
	b := int64(seq >> tx.s.blockShift)
	if b >= int64(tx.s.m.lastSeq>>tx.s.blockShift) {
		return
	}
	for i := len(tx.blocks) - 1; i >= 0; i-- {
		if tx.blocks[i].block == b {
			tx.blocks[i].n += d
			return
		}
	}
	tx.blocks = append(tx.blocks, blockDelta{b, d})
}

// flushBlocks brings the blocks table up to date before the commit. Only
// the blocks before the one of the last seq are ever read (countRange
// counts that one, a partial block, row by row), so only they are kept:
// appending to the last block writes nothing to the table, one WAL page
// less per commit. A block this transaction moved past is counted afresh
// from its rows (at most 1024, once per block); the older blocks it
// touched get its changes with one upsert each.
func (tx *txn) flushBlocks() error {
	shift := tx.s.blockShift
	was, now := int64(tx.s.m.lastSeq>>shift), int64(tx.m.lastSeq>>shift)
	if was < now {
		// A block without rows has no row, which counts as 0: a stream
		// that jumped past a fence moved past blocks it never wrote.
		if err := tx.s.exec("DELETE FROM blocks WHERE block >= ? AND block < ?", nil, was, now); err != nil {
			return err
		}
		if err := tx.s.exec("INSERT INTO blocks (block, n) SELECT seq >> ?, count(*) FROM msgs WHERE seq >= ? AND seq < ? GROUP BY seq >> ?", nil, int64(shift), was<<shift, now<<shift, int64(shift)); err != nil {
			return err
		}
	}
	for _, bd := range tx.blocks {
		if bd.block >= was || bd.n == 0 {
			continue
		}
		if err := tx.s.exec("INSERT INTO blocks (block, n) VALUES (?, ?) ON CONFLICT (block) DO UPDATE SET n = n + excluded.n", nil, bd.block, bd.n); err != nil {
			return err
		}
	}
	tx.blocks = tx.blocks[:0]
	return nil
}

// settleQuota gives back what a memory stream holds beyond its bytes.
func (s *Stream) settleQuota(bytes int64) {
	if s.held > bytes {
		s.opts.Quota.Release(s.held - bytes)
		s.held = bytes
	}
}

// emit publishes ev with the next revision; a change that is not a set
// is also kept in the changes table (see changes.go).
func (tx *txn) emit(ev Event) {
	tx.m.revision++
	ev.Revision = tx.m.revision
	tx.events = append(tx.events, ev)
	if ev.Op != subjects.OpSet {
		tx.recs = append(tx.recs, changeRec{ev: ev, lastSeq: tx.m.lastSeq})
	}
}

// emitDelete publishes the removals in rs, if any.
func (tx *txn) emitDelete(reason string, rs *rangeSet) {
	if rs.n > 0 {
		tx.emit(Event{Op: subjects.OpDelete, Reason: reason, Ranges: rs.ranges})
		tx.recs[len(tx.recs)-1].keys = rs.keys
	}
}

func (tx *txn) lowerDeadline(ms int64) {
	if ms > 0 && (tx.deadline == 0 || ms < tx.deadline) {
		tx.deadline = ms
	}
}

// rangeSet collects removed seqs, added in ascending order, as inclusive
// ranges of consecutive seqs, and the keys of the keyed ones.
type rangeSet struct {
	ranges [][2]uint64
	n      int64
	keys   []string
}

// addRow adds the seq of a removed message and its key ("": none).
func (rs *rangeSet) addRow(seq uint64, key string) {
	rs.add(seq)
	if key != "" {
		rs.keys = append(rs.keys, key)
	}
}

func (rs *rangeSet) add(seq uint64) {
	rs.n++
	if k := len(rs.ranges); k > 0 && rs.ranges[k-1][1]+1 == seq {
		rs.ranges[k-1][1] = seq
		return
	}
	rs.ranges = append(rs.ranges, [2]uint64{seq, seq})
}

func (rs *rangeSet) merge(o *rangeSet) {
	for _, r := range o.ranges {
		for seq := r[0]; seq <= r[1]; seq++ {
			rs.add(seq)
		}
	}
	rs.keys = append(rs.keys, o.keys...)
}

// rowInfo is what removal decisions look at.
type rowInfo struct {
	seq  uint64
	size int64
	time int64
}

// columnKey is the key in column i of the row ("": none).
func columnKey(st *sqlite.Stmt, i int) string {
	if st.ColumnIsNull(i) {
		return ""
	}
	return st.ColumnText(i)
}

// removeFront removes messages from the oldest on, as long as pick returns
// the set to record the removal in; the first nil ends it. Messages are
// removed as a prefix with one statement, since every limit that removes
// messages (count, bytes, age, delete-through) removes the oldest first.
func (tx *txn) removeFront(pick func(rowInfo) *rangeSet) error {
	var last uint64
	var removed bool
	err := tx.s.exec("SELECT seq, size, time, key FROM msgs ORDER BY seq", func(st *sqlite.Stmt) error {
		r := rowInfo{uint64(st.ColumnInt64(0)), st.ColumnInt64(1), st.ColumnInt64(2)}
		rs := pick(r)
		if rs == nil {
			return errStop
		}
		rs.addRow(r.seq, columnKey(st, 3))
		tx.countBlock(r.seq, -1)
		tx.m.count--
		tx.m.bytes -= r.size
		last, removed = r.seq, true
		return nil
	})
	if err != nil && err != errStop {
		return err
	}
	if !removed {
		return nil
	}
	return tx.s.exec("DELETE FROM msgs WHERE seq <= ?", nil, last)
}

// errStop ends a row loop early; it never leaves the package.
var errStop = errors.New("stop")

func (tx *txn) deleteSeqs(seqs []uint64, rs *rangeSet) error {
	seqs = slices.Clone(seqs)
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	for _, seq := range seqs {
		if seq == 0 || seq > math.MaxInt64 {
			continue
		}
		err := tx.s.exec("DELETE FROM msgs WHERE seq = ? RETURNING size, key", func(st *sqlite.Stmt) error {
			rs.addRow(seq, columnKey(st, 1))
			tx.countBlock(seq, -1)
			tx.m.count--
			tx.m.bytes -= st.ColumnInt64(0)
			return nil
		}, seq)
		if err != nil {
			return err
		}
	}
	return nil
}

func (tx *txn) deleteKey(key string, rs *rangeSet) error {
	return tx.s.exec("DELETE FROM msgs WHERE key = ? RETURNING seq, size", func(st *sqlite.Stmt) error {
		rs.addRow(uint64(st.ColumnInt64(0)), key)
		tx.countBlock(uint64(st.ColumnInt64(0)), -1)
		tx.m.count--
		tx.m.bytes -= st.ColumnInt64(1)
		return nil
	}, key)
}

// setConfig records c and applies its limits to what is stored.
func (tx *txn) setConfig(c Config) error {
	tx.cfg, tx.cfgDirty = c, true
	cc := c
	tx.emit(Event{Op: subjects.OpConfig, Config: &cc})
	if err := tx.sweep(); err != nil {
		return err
	}
	var byMsgs, byBytes rangeSet
	if err := tx.evict(&byMsgs, &byBytes); err != nil {
		return err
	}
	tx.emitDelete(subjects.ReasonMaxMsgs, &byMsgs)
	tx.emitDelete(subjects.ReasonMaxBytes, &byBytes)
	return nil
}

// maxBytes is the effective byte limit (-1: none). A memory stream behaves
// as if max_bytes were at most subjects.MemoryStreamMaxBytes.
func (tx *txn) maxBytes() int64 {
	if tx.s.memory && (tx.cfg.MaxBytes < 0 || tx.cfg.MaxBytes > subjects.MemoryStreamMaxBytes) {
		return subjects.MemoryStreamMaxBytes
	}
	return tx.cfg.MaxBytes
}

// evict removes the oldest messages until the stream is within max_msgs and
// max_bytes, whatever the discard policy.
func (tx *txn) evict(byMsgs, byBytes *rangeSet) error {
	maxMsgs, maxBytes := tx.cfg.MaxMsgs, tx.maxBytes()
	overMsgs := func() bool { return maxMsgs > 0 && tx.m.count > maxMsgs }
	overBytes := func() bool { return maxBytes >= 0 && tx.m.bytes > maxBytes }
	if !overMsgs() && !overBytes() {
		return nil
	}
	return tx.removeFront(func(rowInfo) *rangeSet {
		switch {
		case overMsgs():
			return byMsgs
		case overBytes():
			return byBytes
		}
		return nil
	})
}

// rateWindow counts what was written in the current second.
type rateWindow struct {
	second int64
	msgs   int64
	bytes  int64
}

// Append writes ws in order in one transaction. Each item either is written
// completely or leaves nothing behind; its outcome, including why it was
// refused, is in its WriteResult. The error is for the whole call (the
// stream is closed or damaged, I/O failed): then nothing was written.
//
// Events: one subjects.OpSet per written item in order, then, if keeping max_msgs
// or max_bytes removed older messages, one subjects.OpDelete per reason (max_msgs
// first) covering every removal of the call. Anything that had expired
// is removed first, with its own events before the set events.
func (s *Stream) Append(ws []Write) ([]WriteResult, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if len(ws) == 0 {
		return nil, nil
	}
	res := make([]WriteResult, len(ws))
	err := s.update(func(tx *txn) error {
		if err := tx.sweepIfDue(); err != nil {
			return err
		}
		if len(ws) > 1 {
			// One set event per item and a delete or two: one
			// allocation instead of a slice grown item by item.
			tx.events = slices.Grow(tx.events, len(ws)+2)
		}
		for i := range ws {
			r, err := tx.appendOne(&ws[i])
			if err != nil && !itemError(err) {
				return err
			}
			r.Err = err
			res[i] = r
		}
		for _, rs := range []*rangeSet{&tx.byMaxMsgs, &tx.byMaxBytes} {
			if err := tx.dropRewrittenKeys(rs); err != nil {
				return err
			}
		}
		tx.emitDelete(subjects.ReasonMaxMsgs, &tx.byMaxMsgs)
		tx.emitDelete(subjects.ReasonMaxBytes, &tx.byMaxBytes)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// dropRewrittenKeys drops from the removals of a batch the keys that an
// item of the batch wrote again after their message was removed. The
// batch's delete events come after its set events, so in the order of
// revisions such a key's new message is set before the delete: a delete
// change naming the key (see Stream.Changes) would drop that message from
// a copy, while the set already dropped the older one. A key whose
// message at the end of the batch is older than the batch was not written
// again since it was removed.
func (tx *txn) dropRewrittenKeys(rs *rangeSet) error {
	if len(rs.keys) == 0 {
		return nil
	}
	keys := rs.keys[:0]
	for _, k := range sortedKeys(rs.keys) {
		var seq uint64
		if err := tx.s.exec("SELECT seq FROM msgs WHERE key = ?", func(st *sqlite.Stmt) error {
			seq = uint64(st.ColumnInt64(0))
			return nil
		}, k); err != nil {
			return err
		}
		if seq <= tx.s.m.lastSeq {
			keys = append(keys, k)
		}
	}
	rs.keys = keys
	return nil
}

// itemError reports whether err refuses one item rather than the call.
func itemError(err error) bool {
	for _, e := range []error{ErrWrongLastSequence, ErrMsgTooLarge, ErrRateLimited, ErrLimitReached, ErrTTLDisabled, ErrInvalid} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// maxMsgIDBytes bounds a message id, which is stored for the duplicate
// window.
const maxMsgIDBytes = 1024

func (tx *txn) appendOne(w *Write) (WriteResult, error) {
	cfg := tx.cfg
	if w.Key != "" {
		if err := subjects.ValidateKey(w.Key); err != nil {
			return WriteResult{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	switch {
	case w.PreviousSeq != nil && w.Key == "":
		return WriteResult{}, fmt.Errorf("%w: previous seq needs a key", ErrInvalid)
	case w.TTL < 0:
		return WriteResult{}, fmt.Errorf("%w: negative TTL", ErrInvalid)
	case w.TTL > 0 && !cfg.AllowMsgTTL:
		return WriteResult{}, ErrTTLDisabled
	case w.TTL.Milliseconds() > subjects.MaxDurationMs:
		return WriteResult{}, fmt.Errorf("%w: TTL too long", ErrInvalid)
	case len(w.MsgID) > maxMsgIDBytes:
		return WriteResult{}, fmt.Errorf("%w: message id longer than %d bytes", ErrInvalid, maxMsgIDBytes)
	}
	if err := validHeader(w.Header); err != nil {
		return WriteResult{}, err
	}
	dedup := w.MsgID != "" && cfg.DuplicateWindow > 0
	if dedup {
		var dup *WriteResult
		err := tx.s.exec("SELECT seq, time FROM msg_ids WHERE id = ? AND time > ?", func(st *sqlite.Stmt) error {
			dup = &WriteResult{Seq: uint64(st.ColumnInt64(0)), Time: st.ColumnInt64(1), Duplicate: true}
			return nil
		}, w.MsgID, tx.now-cfg.DuplicateWindow)
		if err != nil || dup != nil {
			return deref(dup), err
		}
	}
	size := MsgSize(w.Data, w.Key, w.Header)
	maxBytes := tx.maxBytes()
	if cfg.MaxMsgSize > 0 && size > cfg.MaxMsgSize || maxBytes >= 0 && size > maxBytes {
		return WriteResult{}, ErrMsgTooLarge
	}
	var oldSeq uint64
	var oldSize int64
	if w.Key != "" {
		err := tx.s.exec("SELECT seq, size FROM msgs WHERE key = ?", func(st *sqlite.Stmt) error {
			oldSeq, oldSize = uint64(st.ColumnInt64(0)), st.ColumnInt64(1)
			return nil
		}, w.Key)
		if err != nil {
			return WriteResult{}, err
		}
	}
	if w.PreviousSeq != nil && *w.PreviousSeq != oldSeq {
		return WriteResult{}, ErrWrongLastSequence
	}
	rate := tx.rate
	if sec := tx.now / 1000; rate.second != sec {
		rate = rateWindow{second: sec}
	}
	rate.msgs++
	rate.bytes += size
	if cfg.MaxMsgsPerSecond > 0 && rate.msgs > cfg.MaxMsgsPerSecond || cfg.MaxBytesPerSecond > 0 && rate.bytes > cfg.MaxBytesPerSecond {
		return WriteResult{}, ErrRateLimited
	}
	if cfg.DiscardPolicy == subjects.DiscardNew {
		count, bytes := tx.m.count+1, tx.m.bytes+size-oldSize
		if oldSeq != 0 {
			count--
		}
		if cfg.MaxMsgs > 0 && count > cfg.MaxMsgs || maxBytes >= 0 && bytes > maxBytes {
			return WriteResult{}, ErrLimitReached
		}
	}

	// Everything that can refuse the item without writing has been
	// checked. Only the memory quota is checked after the writes, so only
	// then do the writes need a savepoint to undo; any other failure from
	// here on fails the whole call.
	quota := tx.s.memory && tx.s.opts.Quota != nil
	if quota {
		if err := tx.s.exec("SAVEPOINT item", nil); err != nil {
			return WriteResult{}, err
		}
	}
	saved := tx.m
	var savedBlocks []blockDelta
	if quota {
		savedBlocks = slices.Clone(tx.blocks)
	}
	byMsgs, byBytes := &tx.itemMsgs, &tx.itemBytes
	*byMsgs, *byBytes = rangeSet{}, rangeSet{}
	msg, err := tx.writeItem(w, oldSeq, oldSize, size, byMsgs, byBytes)
	if err != nil {
		return WriteResult{}, err
	}
	if need := tx.m.bytes - tx.s.held; quota && need > 0 {
		if !tx.s.opts.Quota.Reserve(need) {
			tx.m, tx.blocks = saved, savedBlocks
			if err := tx.s.exec("ROLLBACK TO item", nil); err != nil {
				return WriteResult{}, err
			}
			if err := tx.s.exec("RELEASE item", nil); err != nil {
				return WriteResult{}, err
			}
			return WriteResult{}, fmt.Errorf("%w: memory quota is full", ErrLimitReached)
		}
		tx.s.held += need
	}
	if quota {
		if err := tx.s.exec("RELEASE item", nil); err != nil {
			return WriteResult{}, err
		}
	}
	tx.rate = rate
	tx.emit(Event{Op: subjects.OpSet, Msg: msg, MsgID: w.MsgID})
	tx.byMaxMsgs.merge(byMsgs)
	tx.byMaxBytes.merge(byBytes)
	if msg.Expires != 0 {
		tx.lowerDeadline(msg.Expires)
	}
	if dedup {
		tx.lowerDeadline(msg.Time + cfg.DuplicateWindow)
	}
	if cfg.MaxAge > 0 {
		tx.lowerDeadline(msg.Time + cfg.MaxAge + 1)
	}
	return WriteResult{Seq: msg.Seq, Time: msg.Time}, nil
}

func deref(r *WriteResult) WriteResult {
	if r == nil {
		return WriteResult{}
	}
	return *r
}

// writeItem stores one checked message: it replaces the key's message,
// inserts the row, remembers the message id and evicts what no longer fits.
func (tx *txn) writeItem(w *Write, oldSeq uint64, oldSize, size int64, byMsgs, byBytes *rangeSet) (*Message, error) {
	if oldSeq != 0 {
		if err := tx.s.exec("DELETE FROM msgs WHERE seq = ?", nil, oldSeq); err != nil {
			return nil, err
		}
		tx.countBlock(oldSeq, -1)
		tx.m.count--
		tx.m.bytes -= oldSize
	}
	msg := &Message{
		Seq:  tx.m.lastSeq + 1,
		Time: max(tx.now, tx.m.lastTime), // times never go backwards
		Key:  w.Key,
		Data: w.Data,
	}
	if msg.Data == nil {
		msg.Data = []byte{}
	}
	if len(w.Header) > 0 {
		msg.Header = make(map[string][]string, len(w.Header))
		for name, vals := range w.Header {
			msg.Header[name] = slices.Clone(vals)
		}
	}
	if w.TTL > 0 {
		ms := (w.TTL.Nanoseconds() + 999_999) / 1_000_000 // round up: never expire early
		msg.Expires = msg.Time + ms
	}
	data, flags := encodeData(msg.Data, tx.cfg)
	st, err := tx.s.prep("INSERT INTO msgs (seq, time, key, expires, size, flags, header, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
	if err != nil {
		return nil, err
	}
	st.BindInt64(1, int64(msg.Seq))
	st.BindInt64(2, msg.Time)
	if msg.Key != "" {
		st.BindText(3, msg.Key)
	} else {
		st.BindNull(3)
	}
	if msg.Expires != 0 {
		st.BindInt64(4, msg.Expires)
	} else {
		st.BindNull(4)
	}
	st.BindInt64(5, size)
	st.BindInt64(6, flags)
	bindBytes(st, 7, encodeHeader(msg.Header))
	bindBytes(st, 8, data)
	if err := step(st, nil); err != nil {
		return nil, err
	}
	tx.countBlock(msg.Seq, 1)
	tx.m.lastSeq, tx.m.lastTime = msg.Seq, msg.Time
	tx.m.count++
	tx.m.bytes += size
	if w.MsgID != "" && tx.cfg.DuplicateWindow > 0 {
		if err := tx.s.exec("INSERT OR REPLACE INTO msg_ids (id, seq, time) VALUES (?, ?, ?)", nil, w.MsgID, msg.Seq, msg.Time); err != nil {
			return nil, err
		}
	}
	if err := tx.evict(byMsgs, byBytes); err != nil {
		return nil, err
	}
	return msg, nil
}
