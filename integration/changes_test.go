package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// wireMirror is a live mirror of one stream kept by the recipe of
// PROTOCOL.md section 5, on raw NATS: events, getall, and changes to
// catch up after a gap (getall again after a 410).
type wireMirror struct {
	tb     testing.TB
	nc     *nats.Conn
	stream string
	ids    *idLog // the message ids of the writes, to check the events by

	msgs map[uint64]*nats.Msg
	rev  uint64
	sub  *nats.Subscription
	evs  chan *nats.Msg

	catchUps, rereads int // how the mirror got past its gaps
}

func newWireMirror(tb testing.TB, nc *nats.Conn, stream string, ids *idLog) *wireMirror {
	m := &wireMirror{tb: tb, nc: nc, stream: stream, ids: ids}
	m.subscribe()
	m.reread()
	return m
}

// subscribe starts buffering events; unsubscribe stops it, and what is
// published meanwhile is lost to the mirror.
func (m *wireMirror) subscribe() {
	m.tb.Helper()
	m.evs = make(chan *nats.Msg, 1<<16)
	sub, err := m.nc.ChanSubscribe(subjects.EventSubject(subjects.DefaultPrefix, m.stream), m.evs)
	if err != nil {
		m.tb.Fatal(err)
	}
	if err := m.nc.Flush(); err != nil {
		m.tb.Fatal(err)
	}
	m.sub = sub
}

func (m *wireMirror) unsubscribe() {
	m.tb.Helper()
	if err := m.sub.Unsubscribe(); err != nil {
		m.tb.Fatal(err)
	}
}

// reread reads the stream with getall: the first page's terminator gives
// the revision the mirror is exact at once every page is applied with the
// events after it.
func (m *wireMirror) reread() {
	m.tb.Helper()
	m.rereads++
	m.msgs = map[uint64]*nats.Msg{}
	m.rev = 0
	first := true
	for next := uint64(1); ; {
		page, end := getAllRaw(m.tb, m.nc, subjects.APISubject(subjects.DefaultPrefix, subjects.OpGetAll, m.stream), fmt.Appendf(nil, `{"start_seq":%d,"max_msgs":7}`, next))
		m.checkEnd(end)
		if first {
			m.rev, first = mustUint(m.tb, end, subjects.HeaderRevision), false
		}
		for _, msg := range page {
			if msg.Header.Get(subjects.HeaderMsgID) != "" {
				m.tb.Fatalf("getall message carries %s", subjects.HeaderMsgID)
			}
			m.add(msg)
		}
		if mustUint(m.tb, end, subjects.HeaderNumPending) == 0 {
			return
		}
		next = mustUint(m.tb, end, subjects.HeaderNextSeq)
	}
}

// catchUp applies the changes after the mirror's revision, page by page;
// false when the answer is 410 revision_gone.
func (m *wireMirror) catchUp() bool {
	m.tb.Helper()
	after := m.rev
	for {
		page, end := getAllRaw(m.tb, m.nc, subjects.APISubject(subjects.DefaultPrefix, subjects.OpChanges, m.stream), fmt.Appendf(nil, `{"after_revision":%d,"max_msgs":5}`, after))
		if end.Header.Get("Nats-Service-Error-Code") == "410" {
			if len(page) != 0 {
				m.tb.Fatalf("410 after %d changes of a page", len(page))
			}
			return false
		}
		m.checkEnd(end)
		for _, c := range page {
			if c.Header.Get(subjects.HeaderMsgID) != "" {
				m.tb.Fatalf("change carries %s", subjects.HeaderMsgID)
			}
			rev := mustUint(m.tb, c, subjects.HeaderRevision)
			if rev <= after {
				m.tb.Fatalf("change %d after %d", rev, after)
			}
			m.apply(c)
			after = rev
		}
		if mustUint(m.tb, end, subjects.HeaderNumPending) == 0 {
			m.rev = mustUint(m.tb, end, subjects.HeaderRevision)
			m.catchUps++
			return true
		}
	}
}

func (m *wireMirror) checkEnd(end *nats.Msg) {
	m.tb.Helper()
	if code := end.Header.Get("Nats-Service-Error-Code"); code != "" {
		m.tb.Fatalf("%s: error %s %q", m.stream, code, end.Data)
	}
}

// sync applies the events buffered, until the mirror is at revision
// target or later: an event right after the mirror's revision is
// applied, an older one skipped, a later one is a gap, closed with
// changes (or with getall after a 410).
func (m *wireMirror) sync(target uint64) {
	m.tb.Helper()
	deadline := time.After(30 * time.Second)
	for m.rev < target {
		var ev *nats.Msg
		select {
		case ev = <-m.evs:
		case <-deadline:
			m.tb.Fatalf("mirror at revision %d, stream at %d: no event for 30s", m.rev, target)
		case <-time.After(200 * time.Millisecond):
			// The events that would close the distance were lost: the
			// mirror asks, as after a reconnect.
			m.gap()
			continue
		}
		rev := mustUint(m.tb, ev, subjects.HeaderRevision)
		switch {
		case rev <= m.rev:
		case rev == m.rev+1:
			m.checkMsgID(ev)
			m.apply(ev)
			m.rev = rev
		default:
			m.gap()
			if rev == m.rev+1 {
				m.apply(ev)
				m.rev = rev
			}
		}
	}
}

func (m *wireMirror) gap() {
	m.tb.Helper()
	if !m.catchUp() {
		m.reread()
	}
}

// checkMsgID checks a live set event's Persist-Msg-Id against the write's.
func (m *wireMirror) checkMsgID(ev *nats.Msg) {
	m.tb.Helper()
	if ev.Header.Get(subjects.HeaderOp) != subjects.OpSet {
		return
	}
	seq := mustUint(m.tb, ev, subjects.HeaderSeq)
	if got, want := ev.Header.Get(subjects.HeaderMsgID), m.ids.of(seq); got != want {
		m.tb.Fatalf("set event of seq %d: %s %q, want %q", seq, subjects.HeaderMsgID, got, want)
	}
}

// apply applies an event or a change by the rules of section 5.
func (m *wireMirror) apply(ev *nats.Msg) {
	m.tb.Helper()
	switch op := ev.Header.Get(subjects.HeaderOp); op {
	case subjects.OpSet:
		m.add(ev)
	case subjects.OpDelete:
		var body subjects.DeleteEvent
		if err := json.Unmarshal(ev.Data, &body); err != nil || len(body.Ranges) == 0 {
			m.tb.Fatalf("delete body %q: %v", ev.Data, err)
		}
		for _, r := range body.Ranges {
			for seq := r[0]; seq <= r[1]; seq++ {
				delete(m.msgs, seq)
			}
		}
		for seq, held := range m.msgs {
			if k := held.Header.Get(subjects.HeaderKey); k != "" && slices.Contains(body.Keys, k) {
				delete(m.msgs, seq)
			}
		}
	case subjects.OpConfig:
	case subjects.OpDestroy:
		m.msgs = map[uint64]*nats.Msg{}
	default:
		m.tb.Fatalf("event op %q", op)
	}
}

func (m *wireMirror) add(msg *nats.Msg) {
	m.tb.Helper()
	seq := mustUint(m.tb, msg, subjects.HeaderSeq)
	if _, ok := m.msgs[seq]; ok {
		return
	}
	if k := msg.Header.Get(subjects.HeaderKey); k != "" {
		for s, held := range m.msgs {
			if held.Header.Get(subjects.HeaderKey) == k {
				delete(m.msgs, s)
			}
		}
	}
	m.msgs[seq] = msg
}

// same compares the mirror with a fresh reading of the stream: the same
// seqs, each with the same payload, time, key, expiry and user headers.
func (m *wireMirror) same(what string) {
	m.tb.Helper()
	fresh := &wireMirror{tb: m.tb, nc: m.nc, stream: m.stream}
	fresh.reread()
	if got, want := slices.Sorted(maps.Keys(m.msgs)), slices.Sorted(maps.Keys(fresh.msgs)); !slices.Equal(got, want) {
		m.tb.Fatalf("%s: mirror holds %v, getall %v", what, got, want)
	}
	for seq, w := range fresh.msgs {
		g := m.msgs[seq]
		if string(g.Data) != string(w.Data) {
			m.tb.Fatalf("%s: seq %d data %q, want %q", what, seq, g.Data, w.Data)
		}
		for name, vals := range w.Header {
			if !slices.Equal(g.Header[name], vals) {
				m.tb.Fatalf("%s: seq %d header %s = %q, want %q", what, seq, name, g.Header[name], vals)
			}
		}
		for name := range g.Header {
			if _, ok := w.Header[name]; !ok && !strings.HasPrefix(name, "Persist-") {
				m.tb.Fatalf("%s: seq %d has header %s, getall has not", what, seq, name)
			}
		}
	}
}

func mustUint(tb testing.TB, m *nats.Msg, name string) uint64 {
	tb.Helper()
	n, err := strconv.ParseUint(m.Header.Get(name), 10, 64)
	if err != nil {
		tb.Fatalf("header %s = %q: %v (headers %v, body %q)", name, m.Header.Get(name), err, m.Header, m.Data)
	}
	return n
}

// hdr builds a header from name/value pairs.
func hdr(kv ...string) nats.Header {
	h := nats.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// idLog remembers the message id of each acknowledged write by seq.
type idLog struct {
	mu  sync.Mutex
	ids map[uint64]string
}

func (l *idLog) put(seq uint64, id string) {
	l.mu.Lock()
	l.ids[seq] = id
	l.mu.Unlock()
}

func (l *idLog) of(seq uint64) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ids[seq]
}

// changesWriter makes random changes to one stream over the wire: plain,
// keyed and id'd sets, short TTLs, deletes by seq, key and last seq, and
// config changes whose max_msgs removes messages.
type changesWriter struct {
	tb      testing.TB
	nc      *nats.Conn
	stream  string
	rng     *rand.Rand
	ids     *idLog
	n       int
	lastSeq uint64
	expires time.Time // when the last TTL given runs out
}

func (w *changesWriter) request(op string, body []byte, h nats.Header) *nats.Msg {
	w.tb.Helper()
	for try := 0; ; try++ {
		m, err := w.nc.RequestMsg(&nats.Msg{Subject: subjects.APISubject(subjects.DefaultPrefix, op, w.stream), Data: body, Header: h}, 10*time.Second)
		if err != nil {
			// The worker restarts between phases, not during one.
			w.tb.Fatalf("%s %s: %v", op, w.stream, err)
		}
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
			if code == "429" && try < 50 {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			w.tb.Fatalf("%s %s %q: error %s %q", op, w.stream, body, code, m.Data)
		}
		return m
	}
}

func (w *changesWriter) step() {
	w.tb.Helper()
	w.n++
	switch n := w.rng.IntN(100); {
	case n < 60:
		h := nats.Header{}
		if w.rng.IntN(2) == 0 {
			h.Set(subjects.HeaderKey, fmt.Sprintf("k%d", w.rng.IntN(6)))
		}
		id := ""
		if w.rng.IntN(3) == 0 {
			id = fmt.Sprintf("w-%d", w.n)
			h.Set(subjects.HeaderMsgID, id)
		}
		if w.rng.IntN(8) == 0 {
			ttl := time.Duration(100+w.rng.IntN(300)) * time.Millisecond
			h.Set(subjects.HeaderTTL, ttl.String())
			if exp := time.Now().Add(ttl); exp.After(w.expires) {
				w.expires = exp
			}
		}
		if w.rng.IntN(4) == 0 {
			h.Set("X-Trace", strconv.Itoa(w.n))
		}
		m := w.request(subjects.OpSet, fmt.Appendf(nil, "data %d", w.n), h)
		var r subjects.SetReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			w.tb.Fatal(err)
		}
		w.ids.put(r.Seq, id)
		w.lastSeq = r.Seq
	case n < 75:
		w.request(subjects.OpDelete, fmt.Appendf(nil, `{"seq":%d}`, w.lastSeq-uint64(w.rng.IntN(5))), nil)
	case n < 85:
		w.request(subjects.OpDelete, fmt.Appendf(nil, `{"key":"k%d"}`, w.rng.IntN(6)), nil)
	case n < 88:
		w.request(subjects.OpDelete, fmt.Appendf(nil, `{"last_seq":%d}`, w.lastSeq-uint64(w.rng.IntN(10))), nil)
	default:
		w.request(subjects.OpConfig, fmt.Appendf(nil, `{"max_msgs":%d}`, []int{-1, 4, 12, 30}[w.rng.IntN(4)]), nil)
	}
}

func (w *changesWriter) steps(n int) {
	w.tb.Helper()
	for range n {
		w.step()
	}
}

// writeMore makes n keyed and plain sets and deletes of stream, for a
// goroutine of its own.
func writeMore(nc *nats.Conn, stream string, n int) error {
	for i := range n {
		op, body, h := subjects.OpSet, fmt.Appendf(nil, "more %d", i), nats.Header{}
		switch i % 4 {
		case 1:
			h.Set(subjects.HeaderKey, fmt.Sprintf("k%d", i%6))
		case 3:
			op, body, h = subjects.OpDelete, fmt.Appendf(nil, `{"key":"k%d"}`, (i+2)%6), nil
		}
		m, err := nc.RequestMsg(&nats.Msg{Subject: subjects.APISubject(subjects.DefaultPrefix, op, stream), Data: body, Header: h}, 10*time.Second)
		if err != nil {
			return fmt.Errorf("%s %s: %w", op, stream, err)
		}
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
			return fmt.Errorf("%s %s: error %s %q", op, stream, code, m.Data)
		}
	}
	return nil
}

// revision waits until every TTL given has run out and returns the
// stream's revision, once inventory (which sweeps first) has removed
// what expired: nothing changes after it until the next write.
func (w *changesWriter) revision() uint64 {
	w.tb.Helper()
	for time.Now().Before(w.expires.Add(10 * time.Millisecond)) {
		time.Sleep(10 * time.Millisecond)
	}
	m := w.request(subjects.OpInventory, nil, nil)
	var inv subjects.Inventory
	if err := json.Unmarshal(m.Data, &inv); err != nil {
		w.tb.Fatal(err)
	}
	return inv.Revision
}

// TestChanges_MirrorCatchesUp keeps a mirror of a stream by the recipe of
// section 5 against a worker child process, drops its events for a while
// (unsubscribed), and checks that changes brings it back to what getall
// reads: with writes going on meanwhile, across a worker restart, and,
// once --changes-window is passed, by reading the stream again after 410.
func TestChanges_MirrorCatchesUp(t *testing.T) {
	s := runServer(t, -1)
	dir := t.TempDir()
	args := []string{"--data", dir, "--changes-window", "20"}
	w := startWorker(t, s.ClientURL(), args...)
	nc := connect(t, s.ClientURL())
	const stream = "acme.mirror"
	ids := &idLog{ids: map[uint64]string{}}
	wr := &changesWriter{tb: t, nc: nc, stream: stream, rng: rand.New(rand.NewPCG(8, 1)), ids: ids}
	wr.request(subjects.OpConfig, []byte(`{"allow_msg_ttl":true}`), nil)
	wr.steps(30)

	mi := newWireMirror(t, connect(t, s.ClientURL()), stream, ids)
	wr.steps(50)
	mi.sync(wr.revision())
	mi.same("live mirror")

	// A gap while writes go on: changes closes it.
	{
		catchUps, rereads := mi.catchUps, mi.rereads
		// The one subtle case: the mirror holds a keyed message that a
		// set in the gap replaced, and that set's message is gone too.
		wr.request(subjects.OpConfig, []byte(`{"max_msgs":-1}`), nil)
		wr.request(subjects.OpSet, []byte("held"), hdr(subjects.HeaderKey, "subtle"))
		mi.sync(wr.revision())
		mi.unsubscribe()
		m := wr.request(subjects.OpSet, []byte("replaced, then deleted"), hdr(subjects.HeaderKey, "subtle"))
		var r subjects.SetReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		ids.put(r.Seq, "")
		wr.request(subjects.OpDelete, fmt.Appendf(nil, `{"seq":%d}`, r.Seq), nil)
		wr.steps(15) // fewer deletes than the window
		mi.subscribe()
		// The mirror meets the gap at the first event after it, while
		// the writes go on.
		errc := make(chan error, 1)
		go func() { errc <- writeMore(nc, stream, 20) }()
		mi.sync(mi.rev + 1)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		mi.sync(wr.revision())
		mi.same("mirror after a gap")
		if mi.catchUps == catchUps || mi.rereads != rereads {
			t.Fatalf("catch-ups %d -> %d, re-reads %d -> %d: want changes to close the gap, not getall", catchUps, mi.catchUps, rereads, mi.rereads)
		}
	}
	// A gap across a worker restart: the changes are kept in the files.
	{
		rereads := mi.rereads
		mi.unsubscribe()
		wr.steps(8)
		if code := w.signal(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("worker exit code %d after SIGTERM", code)
		}
		w = startWorker(t, s.ClientURL(), args...)
		wr.steps(8)
		mi.subscribe()
		wr.steps(3)
		mi.sync(wr.revision())
		mi.same("mirror after a gap across a restart")
		if mi.rereads != rereads {
			t.Fatalf("re-reads %d -> %d: the changes kept before the restart should close the gap", rereads, mi.rereads)
		}
	}
	// A gap of more deletes than --changes-window: 410, and getall.
	{
		rereads := mi.rereads
		mi.unsubscribe()
		for range 30 { // 30 deletes, the window is 20
			r := wr.request(subjects.OpSet, []byte("x"), nil)
			var sr subjects.SetReply
			if err := json.Unmarshal(r.Data, &sr); err != nil {
				t.Fatal(err)
			}
			ids.put(sr.Seq, "")
			wr.lastSeq = sr.Seq
			wr.request(subjects.OpDelete, fmt.Appendf(nil, `{"seq":%d}`, sr.Seq), nil)
		}
		mi.subscribe()
		wr.steps(10)
		mi.sync(wr.revision())
		mi.same("mirror after a gap longer than the window")
		if mi.rereads != rereads+1 {
			t.Fatalf("re-reads %d -> %d: want one getall after the 410", rereads, mi.rereads)
		}
	}
	if code := w.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("worker exit code %d after SIGTERM", code)
	}
}
