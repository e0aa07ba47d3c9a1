package store

import (
	"bytes"
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
// protocol's live mirror would; it must hold the same messages.

// propModel is the reference: a map of messages and the counters of
// PROTOCOL.md sections 3 and 4, with none of the store's machinery.
type propModel struct {
	msgs     map[uint64]*Message
	lastSeq  uint64
	lastTime int64
	revision uint64
	cfg      Config
	ids      map[string]WriteResult // msg id -> first write

	// Reasons for removals made while writing the current batch: each
	// gives one delete event after the batch's set events.
	evictedMsgs, evictedBytes bool
}

func newPropModel() *propModel {
	return &propModel{msgs: map[uint64]*Message{}, cfg: subjects.DefaultConfig(), ids: map[string]WriteResult{}}
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
			m.evictedMsgs = true
		case m.cfg.MaxBytes >= 0 && m.bytes() > m.cfg.MaxBytes:
			m.evictedBytes = true
		default:
			return
		}
		delete(m.msgs, seq)
	}
}

// endBatch counts the delete events of the removals evict made.
func (m *propModel) endBatch() {
	for _, e := range []bool{m.evictedMsgs, m.evictedBytes} {
		if e {
			m.revision++
		}
	}
	m.evictedMsgs, m.evictedBytes = false, false
}

// write applies one item as the protocol describes it: deduplication
// first, then size, previous seq and the discard policy, then the write and
// the removals that keep the limits.
func (m *propModel) write(w Write, now int64) (WriteResult, error) {
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
	m.msgs[msg.Seq] = msg
	res := WriteResult{Seq: msg.Seq, Time: msg.Time}
	if w.MsgID != "" && m.cfg.DuplicateWindow > 0 {
		m.ids[w.MsgID] = res
	}
	m.revision++ // the set event
	m.evict()
	return res, nil
}

// remove deletes the given seqs and reports how many were held.
func (m *propModel) remove(pick func(*Message) bool) int64 {
	var n int64
	for seq, msg := range m.msgs {
		if pick(msg) {
			delete(m.msgs, seq)
			n++
		}
	}
	if n > 0 {
		m.revision++
	}
	return n
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
		switch ev.Op {
		case subjects.OpSet:
			if ev.Msg == nil {
				tb.Fatalf("set event %d without a message", ev.Revision)
			}
			if _, ok := mi.msgs[ev.Msg.Seq]; ok {
				continue
			}
			if ev.Msg.Key != "" {
				for seq, msg := range mi.msgs {
					if msg.Key == ev.Msg.Key {
						delete(mi.msgs, seq)
					}
				}
			}
			mi.msgs[ev.Msg.Seq] = ev.Msg
		case subjects.OpDelete:
			if len(ev.Ranges) == 0 {
				tb.Fatalf("delete event %d without ranges", ev.Revision)
			}
			for _, r := range ev.Ranges {
				for seq := r[0]; seq <= r[1]; seq++ {
					delete(mi.msgs, seq)
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
		r.checkCount(r.s.DeleteSeqs(seq))(r.model.remove(func(m *Message) bool { return m.Seq == seq }))
	case n < 67:
		seqs := []uint64{r.randSeq(), r.randSeq(), r.randSeq()}
		r.op = fmt.Sprintf("DeleteSeqs(%v)", seqs)
		r.checkCount(r.s.DeleteSeqs(seqs...))(r.model.remove(func(m *Message) bool { return slices.Contains(seqs, m.Seq) }))
	case n < 72:
		seq := r.randSeq()
		r.op = fmt.Sprintf("DeleteThrough(%d)", seq)
		r.checkCount(r.s.DeleteThrough(seq))(r.model.remove(func(m *Message) bool { return m.Seq <= seq }))
	case n < 78:
		key := propKeys[r.rng.IntN(len(propKeys))]
		r.op = fmt.Sprintf("DeleteKey(%q)", key)
		r.checkCount(r.s.DeleteKey(key))(r.model.remove(func(m *Message) bool { return m.Key == key }))
	case n < 80:
		r.op = "DeleteAll"
		r.checkCount(r.s.DeleteAll())(r.model.remove(func(*Message) bool { return true }))
	case n < 98:
		c := r.model.cfg
		switch r.rng.IntN(4) {
		case 0:
			c.MaxMsgs = []int64{-1, 1, 3, 8, 20}[r.rng.IntN(5)]
		case 1:
			c.MaxBytes = []int64{-1, 40, 200, 3000, 20000}[r.rng.IntN(5)]
		case 2:
			c.DiscardPolicy = []string{subjects.DiscardOld, subjects.DiscardNew}[r.rng.IntN(2)]
		case 3:
			c = subjects.DefaultConfig()
			c.Storage = r.model.cfg.Storage
		}
		r.op = fmt.Sprintf("SetConfig(max_msgs %d, max_bytes %d, discard %s)", c.MaxMsgs, c.MaxBytes, c.DiscardPolicy)
		got, err := r.s.SetConfig(c)
		if err != nil {
			r.fatalf("SetConfig() = %v", err)
		}
		if !got.Equal(c) {
			r.fatalf("SetConfig() = %+v, want %+v", got, c)
		}
		if !c.Equal(r.model.cfg) {
			r.model.cfg = c
			r.model.revision++ // the config event
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
func (r *propRun) check() {
	r.tb.Helper()
	m := r.model
	r.mirror.apply(r.tb, r.events)
	r.events = r.events[:0]
	if got := r.s.Revision(); got != m.revision || r.mirror.lastRev != m.revision {
		r.fatalf("Revision() = %d, last event revision %d, want %d", got, r.mirror.lastRev, m.revision)
	}
	if got := r.s.LastSeq(); got != m.lastSeq {
		r.fatalf("LastSeq() = %d, want %d", got, m.lastSeq)
	}
	seqs := m.seqs()
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
		if _, ok := m.msgs[seq]; !ok {
			if _, err := r.s.Get(seq); !errors.Is(err, ErrNotFound) {
				r.fatalf("Get(%d) of an absent seq = %v, want ErrNotFound", seq, err)
			}
		}
	}
	var keys []string
	for _, key := range propKeys {
		seq := m.keySeq(key)
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

	if len(r.mirror.msgs) != len(m.msgs) {
		r.fatalf("mirror from events holds %v, want %v", slices.Sorted(maps.Keys(r.mirror.msgs)), seqs)
	}
	for seq, want := range m.msgs {
		got, ok := r.mirror.msgs[seq]
		if !ok {
			r.fatalf("mirror from events lacks seq %d", seq)
		}
		propSameMsg(r, "mirror", got, want)
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
	r := &propRun{
		tb:     tb,
		rng:    rand.New(rand.NewPCG(seed, 0x5eed)),
		path:   filepath.Join(tb.TempDir(), "prop", "s.db"),
		now:    time.UnixMilli(1_700_000_000_000),
		model:  newPropModel(),
		mirror: &propMirror{msgs: map[uint64]*Message{}},
	}
	r.opts = Options{
		Create:  true,
		Memory:  memory,
		NoSweep: true,
		Now:     func() time.Time { return r.now },
		Notify:  func(evs []Event) { r.events = append(r.events, evs...) },
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
		r.model.revision = 1
	}
	r.check()
	for r.step = 1; r.step <= ops; r.step++ {
		r.do()
		r.check()
	}
}
