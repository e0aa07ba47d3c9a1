package store

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"

	"github.com/nats-persist/persist/subjects"
)

// The property test drives a stream and a plain in-memory model of the
// protocol's stream semantics with the same random operations, and after
// every step compares everything a client can read. A second model, the
// mirror, is built only from the events the stream published, as the
// protocol's live mirror would; it must hold the same messages. Copies of
// the model taken at past revisions are brought up to date with Changes,
// page by page, and must then hold the same messages too (or be answered
// ErrRevisionGone exactly when the model's window has dropped a change
// after their revision).

// propModel is the reference: a map of messages and the counters of
// PROTOCOL.md sections 3 and 4, with none of the store's machinery.
type propModel struct {
	msgs     map[uint64]*Message
	lastSeq  uint64
	lastTime int64
	revision uint64
	cfg      Config
	ids      map[string]WriteResult // msg id -> first write
	revs     map[uint64]uint64      // seq -> revision of its set
	msgIDs   map[uint64]string      // seq -> message id of its write, also after it is gone

	// The delete and config changes kept for Changes: at least window
	// of them, as Options.ChangesWindow; goneRev is the newest dropped.
	changes []propChange
	window  int
	goneRev uint64

	// Removals made while writing the current batch, per reason: each
	// gives one delete event after the batch's set events; batchSeq is
	// the last seq before the batch.
	evictedMsgs, evictedBytes []*Message
	batchSeq                  uint64
}

// propChange is a delete or config change as Changes must answer it.
type propChange struct {
	rev    uint64
	op     string
	reason string   // delete
	seqs   []uint64 // delete: the seqs removed, ascending
	keys   []string // delete: the keys removed, sorted, once each
	cfg    Config   // config: the config it set
}

func newPropModel(window int) *propModel {
	return &propModel{msgs: map[uint64]*Message{}, cfg: subjects.DefaultConfig(), ids: map[string]WriteResult{},
		revs: map[uint64]uint64{}, msgIDs: map[uint64]string{}, window: window}
}

// removed records the removal of msgs (already gone from m.msgs) as one
// delete change.
func (m *propModel) removed(reason string, msgs []*Message) {
	if len(msgs) == 0 {
		return
	}
	m.revision++
	c := propChange{rev: m.revision, op: subjects.OpDelete, reason: reason}
	for _, msg := range msgs {
		c.seqs = append(c.seqs, msg.Seq)
		if msg.Key != "" {
			c.keys = append(c.keys, msg.Key)
		}
	}
	slices.Sort(c.seqs)
	slices.Sort(c.keys)
	c.keys = slices.Compact(c.keys)
	m.changes = append(m.changes, c)
}

// configured records a config change.
func (m *propModel) configured() {
	m.revision++
	m.changes = append(m.changes, propChange{rev: m.revision, op: subjects.OpConfig, cfg: m.cfg})
}

// trim drops the oldest changes once more than a sixteenth over the
// window are kept, at the end of each transaction, as the store does.
func (m *propModel) trim() {
	if len(m.changes) <= m.window+m.window/16 {
		return
	}
	drop := len(m.changes) - m.window
	m.goneRev = m.changes[drop-1].rev
	m.changes = slices.Delete(m.changes, 0, drop)
}

// expired reports whether msg has expired at now (its TTL passed, or
// older than max_age).
func (m *propModel) expired(msg *Message, now int64) bool {
	return msg.Expires != 0 && msg.Expires <= now || m.cfg.MaxAge > 0 && msg.Time < now-m.cfg.MaxAge
}

// live is the seqs a reader sees at now, ascending.
func (m *propModel) live(now int64) []uint64 {
	var seqs []uint64
	for _, seq := range m.seqs() {
		if !m.expired(m.msgs[seq], now) {
			seqs = append(seqs, seq)
		}
	}
	return seqs
}

// sweep removes what has expired at now: one delete for the TTLs, then
// one for max_age.
func (m *propModel) sweep(now int64) {
	var byTTL, byAge []*Message
	for _, seq := range m.seqs() {
		if msg := m.msgs[seq]; msg.Expires != 0 && msg.Expires <= now {
			byTTL = append(byTTL, msg)
			delete(m.msgs, seq)
		}
	}
	m.removed(subjects.ReasonTTL, byTTL)
	for _, seq := range m.seqs() {
		if msg := m.msgs[seq]; m.cfg.MaxAge > 0 && msg.Time < now-m.cfg.MaxAge {
			byAge = append(byAge, msg)
			delete(m.msgs, seq)
		}
	}
	m.removed(subjects.ReasonMaxAge, byAge)
}

func (m *propModel) seqs() []uint64 { return slices.Sorted(maps.Keys(m.msgs)) }

func (m *propModel) keySeq(key string) uint64 {
	for seq, msg := range m.msgs {
		if msg.Key == key {
			return seq
		}
	}
	return 0
}

func (m *propModel) bytes() int64 {
	var n int64
	for _, msg := range m.msgs {
		n += msg.Size()
	}
	return n
}

// evict drops the oldest messages while a limit is exceeded, noting for
// which limit, max_msgs first.
func (m *propModel) evict() {
	for _, seq := range m.seqs() {
		switch {
		case m.cfg.MaxMsgs > 0 && int64(len(m.msgs)) > m.cfg.MaxMsgs:
			m.evictedMsgs = append(m.evictedMsgs, m.msgs[seq])
		case m.cfg.MaxBytes >= 0 && m.bytes() > m.cfg.MaxBytes:
			m.evictedBytes = append(m.evictedBytes, m.msgs[seq])
		default:
			return
		}
		delete(m.msgs, seq)
	}
}

// endBatch makes the delete changes of the removals evict made, and ends
// the transaction. The batch's deletes come after its sets, so a delete
// does not name a key the batch wrote again after removing its message:
// the set of the new message drops the old ones from a copy, and the
// delete would drop the new one.
func (m *propModel) endBatch() {
	for _, gone := range []*[]*Message{&m.evictedMsgs, &m.evictedBytes} {
		n := len(m.changes)
		reason := subjects.ReasonMaxMsgs
		if gone == &m.evictedBytes {
			reason = subjects.ReasonMaxBytes
		}
		m.removed(reason, *gone)
		if len(m.changes) > n {
			c := &m.changes[n]
			c.keys = slices.DeleteFunc(c.keys, func(k string) bool { return m.keySeq(k) > m.batchSeq })
		}
	}
	m.evictedMsgs, m.evictedBytes = nil, nil
	m.batchSeq = m.lastSeq
	m.trim()
}

// write applies one item as the protocol describes it: deduplication
// first, then size, previous seq and the discard policy, then the write and
// the removals that keep the limits.
func (m *propModel) write(w Write, now int64) (WriteResult, error) {
	if w.TTL > 0 && !m.cfg.AllowMsgTTL {
		return WriteResult{}, ErrTTLDisabled
	}
	if w.MsgID != "" && m.cfg.DuplicateWindow > 0 {
		if first, ok := m.ids[w.MsgID]; ok && first.Time > now-m.cfg.DuplicateWindow {
			first.Duplicate = true
			return first, nil
		}
	}
	size := MsgSize(w.Data, w.Key, w.Header)
	if m.cfg.MaxBytes >= 0 && size > m.cfg.MaxBytes {
		return WriteResult{}, ErrMsgTooLarge
	}
	var old *Message
	if w.Key != "" {
		old = m.msgs[m.keySeq(w.Key)]
	}
	if w.PreviousSeq != nil {
		cur := uint64(0)
		if old != nil {
			cur = old.Seq
		}
		if *w.PreviousSeq != cur {
			return WriteResult{}, ErrWrongLastSequence
		}
	}
	if m.cfg.DiscardPolicy == subjects.DiscardNew {
		count, bytes := int64(len(m.msgs))+1, m.bytes()+size
		if old != nil {
			count, bytes = count-1, bytes-old.Size()
		}
		if m.cfg.MaxMsgs > 0 && count > m.cfg.MaxMsgs || m.cfg.MaxBytes >= 0 && bytes > m.cfg.MaxBytes {
			return WriteResult{}, ErrLimitReached
		}
	}
	if old != nil {
		delete(m.msgs, old.Seq)
	}
	m.lastSeq++
	m.lastTime = max(now, m.lastTime)
	msg := &Message{Seq: m.lastSeq, Time: m.lastTime, Key: w.Key, Data: bytes.Clone(w.Data)}
	if len(w.Header) > 0 {
		msg.Header = map[string][]string{}
		for k, v := range w.Header {
			msg.Header[k] = slices.Clone(v)
		}
	}
	if w.TTL > 0 {
		msg.Expires = msg.Time + w.TTL.Milliseconds()
	}
	m.msgs[msg.Seq] = msg
	res := WriteResult{Seq: msg.Seq, Time: msg.Time}
	if w.MsgID != "" && m.cfg.DuplicateWindow > 0 {
		m.ids[w.MsgID] = res
	}
	m.revision++ // the set event
	m.revs[msg.Seq] = m.revision
	m.msgIDs[msg.Seq] = w.MsgID
	m.evict()
	return res, nil
}

// remove deletes, after a sweep, the messages pick picks and reports how
// many there were.
func (m *propModel) remove(now int64, pick func(*Message) bool) int64 {
	m.sweep(now)
	var gone []*Message
	for seq, msg := range m.msgs {
		if pick(msg) {
			delete(m.msgs, seq)
			gone = append(gone, msg)
		}
	}
	m.removed(subjects.ReasonRequest, gone)
	m.trim()
	return int64(len(gone))
}

// propMirror is what a subscriber rebuilds from events alone, applied the
// way PROTOCOL.md section 5 prescribes.
type propMirror struct {
	msgs    map[uint64]*Message
	lastRev uint64
}

func (mi *propMirror) apply(tb testing.TB, evs []Event) {
	tb.Helper()
	for _, ev := range evs {
		if ev.Revision != mi.lastRev+1 {
			tb.Fatalf("event %s has revision %d after %d: events must count 1, 2, 3, ...", ev.Op, ev.Revision, mi.lastRev)
		}
		mi.lastRev = ev.Revision
		if len(ev.Keys) != 0 {
			tb.Fatalf("live event %d has keys %q: only changes have them", ev.Revision, ev.Keys)
		}
		applyChange(tb, mi.msgs, &ev)
	}
}

// applyChange applies one event or change to msgs by the rules of
// PROTOCOL.md section 5.
func applyChange(tb testing.TB, msgs map[uint64]*Message, ev *Event) {
	tb.Helper()
	switch ev.Op {
	case subjects.OpSet:
		if ev.Msg == nil {
			tb.Fatalf("set event %d without a message", ev.Revision)
		}
		if _, ok := msgs[ev.Msg.Seq]; ok {
			return
		}
		if ev.Msg.Key != "" {
			for seq, msg := range msgs {
				if msg.Key == ev.Msg.Key {
					delete(msgs, seq)
				}
			}
		}
		msgs[ev.Msg.Seq] = ev.Msg
	case subjects.OpDelete:
		if len(ev.Ranges) == 0 {
			tb.Fatalf("delete event %d without ranges", ev.Revision)
		}
		for _, r := range ev.Ranges {
			for seq := r[0]; seq <= r[1]; seq++ {
				delete(msgs, seq)
			}
		}
		for seq, msg := range msgs {
			if msg.Key != "" && slices.Contains(ev.Keys, msg.Key) {
				delete(msgs, seq)
			}
		}
	case subjects.OpConfig:
		if ev.Config == nil {
			tb.Fatalf("config event %d without a config", ev.Revision)
		}
	default:
		tb.Fatalf("unexpected event op %q", ev.Op)
	}
}

// propRun is one random run against one stream.
type propRun struct {
	tb     testing.TB
	rng    *rand.Rand
	s      *Stream
	path   string
	opts   Options
	now    time.Time
	model  *propModel
	mirror *propMirror
	events []Event
	step   int
	op     string

	live  map[uint64]Event // every live event, by revision
	pasts []*propPast      // copies of the model at past revisions
}

// propPast is a copy of the stream's messages, exact at revision rev.
type propPast struct {
	rev  uint64
	msgs map[uint64]*Message
}

var propKeys = []string{"a", "b", "c", "d", "e", "key with spaces", "é"}

func (r *propRun) fatalf(format string, args ...any) {
	r.tb.Helper()
	r.tb.Fatalf("step %d (%s): %s", r.step, r.op, fmt.Sprintf(format, args...))
}

func (r *propRun) randWrite() Write {
	var w Write
	switch n := r.rng.IntN(10); {
	case n < 7:
		w.Data = make([]byte, r.rng.IntN(40))
		for i := range w.Data {
			w.Data[i] = byte('a' + r.rng.IntN(26))
		}
	case n < 9:
		// Above the compression threshold, and compressible.
		w.Data = bytes.Repeat(fmt.Appendf(nil, "block %d ", r.rng.IntN(100)), 150+r.rng.IntN(200))
	}
	if r.rng.IntN(4) == 0 {
		w.Header = map[string][]string{"X-Trace": {fmt.Sprint(r.rng.IntN(1000))}}
		if r.rng.IntN(2) == 0 {
			w.Header["Multi"] = []string{"one", "two", ""}
		}
	}
	if r.rng.IntN(2) == 0 {
		w.Key = propKeys[r.rng.IntN(len(propKeys))]
		if r.rng.IntN(3) == 0 {
			prev := r.model.keySeq(w.Key)
			if r.rng.IntN(3) == 0 {
				prev = uint64(r.rng.IntN(int(r.model.lastSeq) + 2))
			}
			w.PreviousSeq = &prev
		}
	}
	if r.rng.IntN(4) == 0 {
		w.MsgID = fmt.Sprintf("id%d", r.rng.IntN(8))
	}
	if r.rng.IntN(5) == 0 {
		w.TTL = time.Duration(1+r.rng.IntN(120_000)) * time.Millisecond
	}
	return w
}

func (r *propRun) randSeq() uint64 { return uint64(r.rng.IntN(int(r.model.lastSeq) + 3)) }

// do performs one random operation on the stream and the model.
func (r *propRun) do() {
	r.tb.Helper()
	if r.rng.IntN(5) == 0 {
		r.now = r.now.Add(time.Duration(r.rng.IntN(60_000)) * time.Millisecond)
	}
	nowMs := r.now.UnixMilli()
	switch n := r.rng.IntN(100); {
	case n < 55:
		ws := make([]Write, 1+r.rng.IntN(4))
		for i := range ws {
			ws[i] = r.randWrite()
		}
		r.op = fmt.Sprintf("Append(%d)", len(ws))
		r.model.sweep(nowMs)
		r.model.batchSeq = r.model.lastSeq
		res, err := r.s.Append(ws)
		if err != nil {
			r.fatalf("Append() = %v", err)
		}
		if len(res) != len(ws) {
			r.fatalf("Append() gave %d results for %d writes", len(res), len(ws))
		}
		for i, w := range ws {
			want, wantErr := r.model.write(w, nowMs)
			got := res[i]
			if !errors.Is(got.Err, wantErr) || (wantErr == nil) != (got.Err == nil) {
				r.fatalf("item %d (key %q prev %v id %q size %d): err = %v, want %v", i, w.Key, w.PreviousSeq, w.MsgID, MsgSize(w.Data, w.Key, w.Header), got.Err, wantErr)
			}
			got.Err = nil
			if got != want {
				r.fatalf("item %d: result = %+v, want %+v", i, got, want)
			}
		}
		r.model.endBatch()
	case n < 62:
		seq := r.randSeq()
		r.op = fmt.Sprintf("DeleteSeqs(%d)", seq)
		r.checkCount(r.s.DeleteSeqs(seq))(r.model.remove(nowMs, func(m *Message) bool { return m.Seq == seq }))
	case n < 67:
		seqs := []uint64{r.randSeq(), r.randSeq(), r.randSeq()}
		r.op = fmt.Sprintf("DeleteSeqs(%v)", seqs)
		r.checkCount(r.s.DeleteSeqs(seqs...))(r.model.remove(nowMs, func(m *Message) bool { return slices.Contains(seqs, m.Seq) }))
	case n < 72:
		seq := r.randSeq()
		r.op = fmt.Sprintf("DeleteThrough(%d)", seq)
		r.checkCount(r.s.DeleteThrough(seq))(r.model.remove(nowMs, func(m *Message) bool { return m.Seq <= seq }))
	case n < 78:
		key := propKeys[r.rng.IntN(len(propKeys))]
		r.op = fmt.Sprintf("DeleteKey(%q)", key)
		r.checkCount(r.s.DeleteKey(key))(r.model.remove(nowMs, func(m *Message) bool { return m.Key == key }))
	case n < 80:
		r.op = "DeleteAll"
		r.checkCount(r.s.DeleteAll())(r.model.remove(nowMs, func(*Message) bool { return true }))
	case n < 98:
		c := r.model.cfg
		switch r.rng.IntN(6) {
		case 0:
			c.MaxMsgs = []int64{-1, 1, 3, 8, 20}[r.rng.IntN(5)]
		case 1:
			c.MaxBytes = []int64{-1, 40, 200, 3000, 20000}[r.rng.IntN(5)]
		case 2:
			c.DiscardPolicy = []string{subjects.DiscardOld, subjects.DiscardNew}[r.rng.IntN(2)]
		case 3:
			c = subjects.DefaultConfig()
			c.Storage = r.model.cfg.Storage
		case 4:
			c.AllowMsgTTL = r.rng.IntN(4) != 0
		case 5:
			c.MaxAge = []int64{0, 30_000, 90_000, 300_000}[r.rng.IntN(4)]
		}
		r.op = fmt.Sprintf("SetConfig(max_msgs %d, max_bytes %d, discard %s, ttl %v, max_age %d)", c.MaxMsgs, c.MaxBytes, c.DiscardPolicy, c.AllowMsgTTL, c.MaxAge)
		got, err := r.s.SetConfig(c)
		if err != nil {
			r.fatalf("SetConfig() = %v", err)
		}
		if !got.Equal(c) {
			r.fatalf("SetConfig() = %+v, want %+v", got, c)
		}
		if !c.Equal(r.model.cfg) {
			// What had expired goes first; then the config event, and
			// what the new limits remove.
			r.model.sweep(nowMs)
			r.model.cfg = c
			r.model.configured()
			r.model.sweep(nowMs)
			r.model.evict()
			r.model.endBatch()
		}
	default:
		r.op = "reopen"
		if r.opts.Memory {
			break // a memory stream ends with its Close
		}
		if err := r.s.Close(); err != nil {
			r.fatalf("Close() = %v", err)
		}
		s, err := Open(r.path, r.opts)
		if err != nil {
			r.fatalf("Open() = %v", err)
		}
		r.s = s
	}
}

// checkCount compares a delete's count with the model's.
func (r *propRun) checkCount(got int64, err error) func(want int64) {
	return func(want int64) {
		r.tb.Helper()
		if err != nil {
			r.fatalf("error = %v", err)
		}
		if got != want {
			r.fatalf("count = %d, want %d", got, want)
		}
	}
}

// check compares every read with the model and the mirror with both.
// Reads come first, as they leave what has expired to the next sweep;
// Inventory sweeps.
func (r *propRun) check() {
	r.tb.Helper()
	m := r.model
	now := r.now.UnixMilli()
	if got := r.s.Revision(); got != m.revision {
		r.fatalf("Revision() = %d, want %d", got, m.revision)
	}
	if got := r.s.LastSeq(); got != m.lastSeq {
		r.fatalf("LastSeq() = %d, want %d", got, m.lastSeq)
	}
	seqs := m.live(now)
	// Read below returns every message each step; Get of every one is
	// checked now and then and of a few each step, to keep the run short.
	gets := seqs
	if r.step%10 != 0 && r.op != "reopen" && len(seqs) > 8 {
		gets = make([]uint64, 8)
		for i := range gets {
			gets[i] = seqs[r.rng.IntN(len(seqs))]
		}
	}
	for _, seq := range gets {
		got, err := r.s.Get(seq)
		if err != nil {
			r.fatalf("Get(%d) = %v", seq, err)
		}
		propSameMsg(r, "Get", got, m.msgs[seq])
	}
	for _, seq := range []uint64{0, m.lastSeq + 1, r.randSeq()} {
		if !slices.Contains(seqs, seq) {
			if _, err := r.s.Get(seq); !errors.Is(err, ErrNotFound) {
				r.fatalf("Get(%d) of an absent seq = %v, want ErrNotFound", seq, err)
			}
		}
	}
	var keys []string
	for _, key := range propKeys {
		seq := m.keySeq(key)
		if seq != 0 && m.expired(m.msgs[seq], now) {
			seq = 0
		}
		got, err := r.s.GetKey(key)
		if seq == 0 {
			if !errors.Is(err, ErrNotFound) {
				r.fatalf("GetKey(%q) = %v, want ErrNotFound", key, err)
			}
			continue
		}
		keys = append(keys, key)
		if err != nil {
			r.fatalf("GetKey(%q) = %v", key, err)
		}
		propSameMsg(r, "GetKey", got, m.msgs[seq])
	}
	sort.Strings(keys)

	var read []*Message
	res, err := r.s.Read(ReadQuery{}, func(msg *Message) error {
		read = append(read, msg)
		return nil
	})
	if err != nil {
		r.fatalf("Read() = %v", err)
	}
	if len(read) != len(seqs) {
		r.fatalf("Read() gave %d messages, want %d", len(read), len(seqs))
	}
	for i, msg := range read {
		propSameMsg(r, "Read", msg, m.msgs[seqs[i]])
	}
	if res != (ReadResult{LastSeq: m.lastSeq, Revision: m.revision}) {
		r.fatalf("Read() result = %+v", res)
	}
	r.checkPage(seqs)
	r.checkBlocks()

	inv, err := r.s.Inventory()
	if err != nil {
		r.fatalf("Inventory() = %v", err)
	}
	m.sweep(now)
	m.trim()
	seqs = m.seqs()
	want := Inventory{Count: int64(len(seqs)), Bytes: m.bytes(), LastSeq: m.lastSeq, Revision: m.revision}
	if len(seqs) > 0 {
		want.FirstSeq = seqs[0]
	}
	inv.Limits = nil
	if !propSameInventory(inv, want) {
		r.fatalf("Inventory() = %+v, want %+v", inv, want)
	}

	gotKeys, more, err := r.s.Keys("", 0)
	if err != nil || more || !slices.Equal(gotKeys, keys) {
		r.fatalf("Keys() = %q, %v, %v; want %q", gotKeys, more, err, keys)
	}
	if len(keys) > 1 {
		after := keys[0]
		gotKeys, more, err := r.s.Keys(after, 1)
		if err != nil || more != (len(keys) > 2) || !slices.Equal(gotKeys, keys[1:2]) {
			r.fatalf("Keys(%q, 1) = %q, %v, %v; want %q", after, gotKeys, more, err, keys[1:2])
		}
	}

	for _, ev := range r.events {
		r.checkLiveEvent(&ev)
	}
	r.mirror.apply(r.tb, r.events)
	r.events = r.events[:0]
	if r.mirror.lastRev != m.revision {
		r.fatalf("last event revision %d, want %d", r.mirror.lastRev, m.revision)
	}
	r.sameMsgs("mirror from events", r.mirror.msgs)
	r.checkChanges()
}

// sameMsgs compares a copy of the stream's messages with the model's.
func (r *propRun) sameMsgs(what string, msgs map[uint64]*Message) {
	r.tb.Helper()
	m := r.model
	if len(msgs) != len(m.msgs) {
		r.fatalf("%s holds %v, want %v", what, slices.Sorted(maps.Keys(msgs)), m.seqs())
	}
	for seq, want := range m.msgs {
		got, ok := msgs[seq]
		if !ok {
			r.fatalf("%s lacks seq %d", what, seq)
		}
		propSameMsg(r, what, got, want)
	}
}

// checkLiveEvent checks a live event against the model: a set carries
// its write's message id, and a delete or config change is as the model
// made it.
func (r *propRun) checkLiveEvent(ev *Event) {
	r.tb.Helper()
	m := r.model
	r.live[ev.Revision] = *ev
	if ev.Op == subjects.OpSet {
		if ev.Msg == nil || ev.MsgID != m.msgIDs[ev.Msg.Seq] {
			r.fatalf("set event %d has msg id %q, want %q", ev.Revision, ev.MsgID, m.msgIDs[ev.Msg.Seq])
		}
		if m.revs[ev.Msg.Seq] != ev.Revision {
			r.fatalf("set event of seq %d has revision %d, want %d", ev.Msg.Seq, ev.Revision, m.revs[ev.Msg.Seq])
		}
		return
	}
	i := slices.IndexFunc(m.changes, func(c propChange) bool { return c.rev == ev.Revision })
	if i < 0 {
		if ev.Revision > m.goneRev {
			r.fatalf("%s event %d is not a change of the model", ev.Op, ev.Revision)
		}
		return // dropped already: the window is smaller than one step's changes
	}
	c := m.changes[i]
	var want Event
	c.event(&want)
	want.Keys = nil
	r.sameChange("live event", ev, &want)
}

// event is the change as Changes answers it.
func (c *propChange) event(ev *Event) {
	*ev = Event{Op: c.op, Revision: c.rev, Reason: c.reason, Keys: c.keys}
	if c.op == subjects.OpConfig {
		cfg := c.cfg
		ev.Config = &cfg
	}
	for _, seq := range c.seqs {
		if k := len(ev.Ranges); k > 0 && ev.Ranges[k-1][1]+1 == seq {
			ev.Ranges[k-1][1] = seq
		} else {
			ev.Ranges = append(ev.Ranges, [2]uint64{seq, seq})
		}
	}
}

// sameChange compares a delete or config change with the model's.
func (r *propRun) sameChange(what string, got, want *Event) {
	r.tb.Helper()
	same := got.Op == want.Op && got.Revision == want.Revision && got.Reason == want.Reason &&
		slices.Equal(got.Ranges, want.Ranges) && slices.Equal(got.Keys, want.Keys) && got.MsgID == ""
	if same && want.Op == subjects.OpConfig {
		same = got.Config != nil && got.Config.Equal(*want.Config)
	}
	if !same {
		r.fatalf("%s: %s", what, propFormatChanges([]Event{*got, *want}))
	}
}

// propFormatChanges lists changes for a failure message.
func propFormatChanges(evs []Event) string {
	var b bytes.Buffer
	for _, ev := range evs {
		fmt.Fprintf(&b, "\n  %d %s", ev.Revision, ev.Op)
		switch ev.Op {
		case subjects.OpSet:
			fmt.Fprintf(&b, " %s id %q", propFormat(ev.Msg), ev.MsgID)
		case subjects.OpDelete:
			fmt.Fprintf(&b, " %s %v keys %q", ev.Reason, ev.Ranges, ev.Keys)
		case subjects.OpConfig:
			fmt.Fprintf(&b, " %+v", ev.Config)
		}
	}
	return b.String()
}

// wantChanges is what Changes must answer after revision after: a set for
// every message set after it, every delete and config change after it,
// by revision.
func (r *propRun) wantChanges(after uint64) []Event {
	m := r.model
	var evs []Event
	for seq, msg := range m.msgs {
		if rev := m.revs[seq]; rev > after {
			evs = append(evs, Event{Op: subjects.OpSet, Revision: rev, Msg: msg})
		}
	}
	for _, c := range m.changes {
		if c.rev > after {
			var ev Event
			c.event(&ev)
			evs = append(evs, ev)
		}
	}
	slices.SortFunc(evs, func(a, b Event) int { return cmp.Compare(a.Revision, b.Revision) })
	return evs
}

// changeSize is what a change counts in a page.
func changeSize(ev *Event) int64 {
	if ev.Op == subjects.OpSet {
		return ev.Msg.Size()
	}
	return changeBodySize(ev)
}

// checkChanges brings every past copy of the model up to date with
// Changes, in pages of random bounds, and compares each page with the
// model's changes; a copy whose changes the window dropped must get
// ErrRevisionGone on its first page. Now and then a copy of the current
// state is added, and some copies stay at their revision.
func (r *propRun) checkChanges() {
	r.tb.Helper()
	m := r.model
	if len(r.pasts) < 6 && r.rng.IntN(3) == 0 {
		r.pasts = append(r.pasts, &propPast{rev: m.revision, msgs: maps.Clone(m.msgs)})
	}
	if _, err := r.s.Changes(ChangesQuery{AfterRevision: m.revision + 1 + uint64(r.rng.IntN(3))}, func(*Event) error {
		r.fatalf("Changes after a revision ahead of the stream's gave a change")
		return nil
	}); !errors.Is(err, ErrRevisionGone) {
		r.fatalf("Changes(after %d, the stream is at %d) = %v, want ErrRevisionGone", m.revision+1, m.revision, err)
	}
	for i := 0; i < len(r.pasts); i++ {
		p := r.pasts[i]
		msgs := maps.Clone(p.msgs)
		if !r.catchUp(p.rev, msgs) {
			// A client reads the stream again; here it starts again
			// from now.
			r.pasts[i] = &propPast{rev: m.revision, msgs: maps.Clone(m.msgs)}
			continue
		}
		if len(msgs) != len(m.msgs) {
			r.tb.Logf("DEBUG copy at %d held %v; changes:%s", p.rev, slices.Sorted(maps.Keys(p.msgs)), propFormatChanges(r.wantChanges(p.rev)))
			for _, seq := range slices.Sorted(maps.Keys(p.msgs)) {
				r.tb.Logf("DEBUG held %s", propFormat(p.msgs[seq]))
			}
		}
		r.sameMsgs(fmt.Sprintf("copy at revision %d after Changes", p.rev), msgs)
		if r.rng.IntN(2) == 0 {
			r.pasts[i] = &propPast{rev: m.revision, msgs: msgs}
		}
	}
}

// catchUp applies the changes after revision after to msgs, page by page,
// checking each page; it reports false when the answer is
// ErrRevisionGone, which it must be exactly when the model dropped a
// change after that revision.
func (r *propRun) catchUp(after uint64, msgs map[uint64]*Message) bool {
	r.tb.Helper()
	m := r.model
	want := r.wantChanges(after)
	from := after
	for page := 0; ; page++ {
		q := ChangesQuery{AfterRevision: from, MaxMsgs: r.rng.IntN(4), MaxBytes: int64(r.rng.IntN(3000))}
		var got []Event
		res, err := r.s.Changes(q, func(ev *Event) error {
			got = append(got, *ev)
			return nil
		})
		if after < m.goneRev {
			if !errors.Is(err, ErrRevisionGone) || len(got) != 0 {
				r.fatalf("Changes(%+v) after the window dropped change %d = %d changes, %v; want ErrRevisionGone", q, m.goneRev, len(got), err)
			}
			return false
		}
		if err != nil {
			r.fatalf("Changes(%+v) = %v (model: dropped up to %d)", q, err, m.goneRev)
		}
		// The page is the longest prefix of what is left within the
		// bounds, and at least one change.
		var n int
		var bytes int64
		for n < len(want) {
			size := changeSize(&want[n])
			if n > 0 && (q.MaxMsgs > 0 && n >= q.MaxMsgs || q.MaxBytes > 0 && bytes+size > q.MaxBytes) {
				break
			}
			n++
			bytes += size
		}
		if wantRes := (ChangesResult{Revision: m.revision, NumPending: int64(len(want) - n)}); len(got) != n || res != wantRes {
			r.fatalf("Changes(%+v), page %d after revision %d = %d changes, %+v; want %d, %+v:%s\nwant:%s", q, page, after, len(got), res, n, wantRes, propFormatChanges(got), propFormatChanges(want))
		}
		for i := range got {
			g, w := &got[i], &want[i]
			if g.Op == subjects.OpSet {
				if w.Op != subjects.OpSet || g.Revision != w.Revision || g.MsgID != "" {
					r.fatalf("Changes page %d after revision %d: change %d is%s\nwant%s", page, after, i, propFormatChanges(got[i:i+1]), propFormatChanges(want[i:i+1]))
				}
				propSameMsg(r, "Changes", g.Msg, w.Msg)
			} else {
				r.sameChange(fmt.Sprintf("Changes page %d after revision %d", page, after), g, w)
			}
			applyChange(r.tb, msgs, g)
		}
		want = want[n:]
		if res.NumPending == 0 {
			return true
		}
		from = got[len(got)-1].Revision
	}
}

// checkBlocks checks that the blocks table counts exactly the rows of the
// msgs table in each block before the last seq's (the one it does not
// keep), whichever path inserted or deleted them (expired rows a sweep has
// not removed yet count too).
func (r *propRun) checkBlocks() {
	r.tb.Helper()
	counts := func(query string) map[int64]int64 {
		m := map[int64]int64{}
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		if err := execOnce(r.s.conn, query, func(st *sqlite.Stmt) error {
			m[st.ColumnInt64(0)] = st.ColumnInt64(1)
			return nil
		}); err != nil {
			r.fatalf("%s: %v", query, err)
		}
		return m
	}
	shift := r.s.blockShift
	last := int64(r.s.LastSeq() >> shift) // the last block is not kept
	got := counts(fmt.Sprintf("SELECT block, n FROM blocks WHERE n != 0 AND block < %d", last))
	want := counts(fmt.Sprintf("SELECT seq >> %d, count(*) FROM msgs WHERE seq >> %[1]d < %d GROUP BY 1", shift, last))
	if !maps.Equal(got, want) {
		r.fatalf("blocks = %v, want the counts of msgs %v", got, want)
	}
}

// checkPage reads one random bounded page and checks the paging contract:
// a prefix of the range, at least one message, NumPending and NextSeq
// telling where the rest is.
func (r *propRun) checkPage(seqs []uint64) {
	r.tb.Helper()
	q := ReadQuery{StartSeq: r.randSeq(), MaxMsgs: r.rng.IntN(4), MaxBytes: int64(r.rng.IntN(3000))}
	if r.rng.IntN(2) == 0 {
		q.EndSeq = r.randSeq()
	}
	var inRange []*Message
	for _, seq := range seqs {
		if seq >= q.StartSeq && (q.EndSeq == 0 || seq <= q.EndSeq) {
			inRange = append(inRange, r.model.msgs[seq])
		}
	}
	var want []*Message
	var bytes int64
	for _, msg := range inRange {
		if len(want) > 0 && (q.MaxMsgs > 0 && len(want) >= q.MaxMsgs || q.MaxBytes > 0 && bytes+msg.Size() > q.MaxBytes) {
			break
		}
		want = append(want, msg)
		bytes += msg.Size()
	}
	wantRes := ReadResult{LastSeq: r.model.lastSeq, Revision: r.model.revision, NumPending: int64(len(inRange) - len(want))}
	if len(want) < len(inRange) {
		wantRes.NextSeq = inRange[len(want)].Seq
	}
	var got []*Message
	res, err := r.s.Read(q, func(msg *Message) error {
		got = append(got, msg)
		return nil
	})
	if err != nil {
		r.fatalf("Read(%+v) = %v", q, err)
	}
	if len(got) != len(want) || res != wantRes {
		r.fatalf("Read(%+v) = %d messages, %+v; want %d, %+v", q, len(got), res, len(want), wantRes)
	}
	for i := range got {
		propSameMsg(r, "Read page", got[i], want[i])
	}
}

func propSameInventory(a, b Inventory) bool {
	return a.Count == b.Count && a.Bytes == b.Bytes && a.FirstSeq == b.FirstSeq && a.LastSeq == b.LastSeq && a.Revision == b.Revision
}

// propSameMsg compares messages as a client sees them: an absent and an
// empty payload or header set are the same on the wire.
func propSameMsg(r *propRun, what string, got, want *Message) {
	r.tb.Helper()
	same := got != nil && got.Seq == want.Seq && got.Time == want.Time && got.Key == want.Key &&
		got.Expires == want.Expires && bytes.Equal(got.Data, want.Data) && len(got.Header) == len(want.Header)
	if same {
		for name, vals := range want.Header {
			if !slices.Equal(got.Header[name], vals) {
				same = false
			}
		}
	}
	if !same {
		r.fatalf("%s: message = %s, want %s", what, propFormat(got), propFormat(want))
	}
}

func propFormat(m *Message) string {
	if m == nil {
		return "nil"
	}
	return fmt.Sprintf("{seq %d time %d key %q header %v data %d bytes %.20q}", m.Seq, m.Time, m.Key, m.Header, len(m.Data), m.Data)
}

func TestStream_Property(t *testing.T) {
	seeds, ops := 20, 300
	if testing.Short() {
		seeds, ops = 5, 200
	}
	for _, memory := range []bool{false, true} {
		for seed := range seeds {
			name := fmt.Sprintf("File/Seed%d", seed)
			if memory {
				name = fmt.Sprintf("Memory/Seed%d", seed)
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel() // most of a file run is spent waiting for fsync
				propRunSeed(t, uint64(seed), ops, memory)
			})
		}
	}
}

func propRunSeed(tb testing.TB, seed uint64, ops int, memory bool) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	// Windows small enough to be passed in a run, so that copies at old
	// revisions get ErrRevisionGone, and one that is not.
	window := []int{1, 2, 5, 16, 40, 1000}[rng.IntN(6)]
	r := &propRun{
		tb:     tb,
		rng:    rng,
		path:   filepath.Join(tb.TempDir(), "prop", "s.db"),
		now:    time.UnixMilli(1_700_000_000_000),
		model:  newPropModel(window),
		mirror: &propMirror{msgs: map[uint64]*Message{}},
		live:   map[uint64]Event{},
	}
	r.opts = Options{
		Create:        true,
		Memory:        memory,
		NoSweep:       true,
		Now:           func() time.Time { return r.now },
		Notify:        func(evs []Event) { r.events = append(r.events, evs...) },
		ChangesWindow: window,
		// Blocks of 4 seqs: a short run spans many, so that the block
		// counts and Num-Pending across blocks are checked.
		blockShift: 2,
	}
	s, err := Open(r.path, r.opts)
	if err != nil {
		tb.Fatalf("Open() = %v", err)
	}
	r.s = s
	defer func() { r.s.Close() }()
	if memory {
		// Creating a stream with a configuration other than the defaults
		// is itself a change: one config event.
		r.model.cfg.Storage = subjects.StorageMemory
		r.model.configured()
	}
	r.check()
	for r.step = 1; r.step <= ops; r.step++ {
		r.do()
		r.check()
	}
}
