package broker

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// changesPage requests one changes page: its changes and the terminator
// (or the error reply that ended it).
func (f *fixture) changesPage(tb testing.TB, stream, body string) (changes []*nats.Msg, end *nats.Msg) {
	tb.Helper()
	return f.pagedReply(tb, subjects.OpChanges, stream, body)
}

// allChanges reads every page of the changes after revision after, pages
// of at most pageMsgs, checking each terminator, and returns the changes
// and the revision of the last terminator.
func (f *fixture) allChanges(tb testing.TB, stream string, after uint64, pageMsgs int) ([]*nats.Msg, uint64) {
	tb.Helper()
	var all []*nats.Msg
	for {
		page, end := f.changesPage(tb, stream, fmt.Sprintf(`{"after_revision":%d,"max_msgs":%d}`, after, pageMsgs))
		if werr := replyError(end); werr != nil {
			tb.Fatalf("changes %s after %d: %v", stream, after, werr)
		}
		rev := headerUint(tb, end, subjects.HeaderRevision)
		pending := headerUint(tb, end, subjects.HeaderNumPending)
		if len(end.Data) != 0 || end.Header.Get(subjects.HeaderNextSeq) != "" || end.Header.Get(subjects.HeaderLastSeq) != "" {
			tb.Fatalf("changes terminator %v %q: want only End, Revision and Num-Pending", end.Header, end.Data)
		}
		if len(page) > pageMsgs || pending > 0 && len(page) == 0 {
			tb.Fatalf("changes page of %d changes (%d pending), asked for %d", len(page), pending, pageMsgs)
		}
		for _, m := range page {
			r := headerUint(tb, m, subjects.HeaderRevision)
			if r <= after || r > rev {
				tb.Fatalf("change with revision %d after %d, terminator at %d", r, after, rev)
			}
			if m.Header.Get(subjects.HeaderMsgID) != "" {
				tb.Fatalf("change %d carries %s: only live events do", r, subjects.HeaderMsgID)
			}
			after = r
			all = append(all, m)
		}
		if pending == 0 {
			return all, rev
		}
	}
}

func headerUint(tb testing.TB, m *nats.Msg, name string) uint64 {
	tb.Helper()
	n, err := strconv.ParseUint(m.Header.Get(name), 10, 64)
	if err != nil {
		tb.Fatalf("header %s = %q in %v: %v", name, m.Header.Get(name), m.Header, err)
	}
	return n
}

// wireMirror is a live mirror as a client keeps it (PROTOCOL.md section 5):
// messages by seq, as they came from getall, events or changes.
type wireMirror map[uint64]*nats.Msg

// applyMsg applies an event or a change by the rules of section 5.
func (mi wireMirror) applyMsg(tb testing.TB, m *nats.Msg) {
	tb.Helper()
	switch op := m.Header.Get(subjects.HeaderOp); op {
	case subjects.OpSet:
		mi.add(tb, m)
	case subjects.OpDelete:
		var body subjects.DeleteEvent
		if err := json.Unmarshal(m.Data, &body); err != nil || len(body.Ranges) == 0 {
			tb.Fatalf("delete body %q: %v", m.Data, err)
		}
		for _, r := range body.Ranges {
			for seq := r[0]; seq <= r[1]; seq++ {
				delete(mi, seq)
			}
		}
		for seq, held := range mi {
			if k := held.Header.Get(subjects.HeaderKey); k != "" && slices.Contains(body.Keys, k) {
				delete(mi, seq)
			}
		}
	case subjects.OpConfig:
		var cfg subjects.Config
		if err := json.Unmarshal(m.Data, &cfg); err != nil {
			tb.Fatalf("config body %q: %v", m.Data, err)
		}
	default:
		tb.Fatalf("change with op %q", op)
	}
}

// add adds a message as a set does: a seq held changes nothing, a key
// drops the other message of that key.
func (mi wireMirror) add(tb testing.TB, m *nats.Msg) {
	tb.Helper()
	seq := headerUint(tb, m, subjects.HeaderSeq)
	if _, ok := mi[seq]; ok {
		return
	}
	if k := m.Header.Get(subjects.HeaderKey); k != "" {
		for s, held := range mi {
			if held.Header.Get(subjects.HeaderKey) == k {
				delete(mi, s)
			}
		}
	}
	mi[seq] = m
}

// readAll is the stream as getall pages of 2 give it, and its revision.
func (f *fixture) readAll(tb testing.TB, stream string) (wireMirror, uint64) {
	tb.Helper()
	mi := wireMirror{}
	var rev uint64
	for next := uint64(1); ; {
		msgs, end := f.getAll(tb, stream, fmt.Sprintf(`{"start_seq":%d,"max_msgs":2}`, next))
		if werr := replyError(end); werr != nil {
			tb.Fatalf("getall %s: %v", stream, werr)
		}
		if rev == 0 {
			rev = headerUint(tb, end, subjects.HeaderRevision)
		}
		for _, m := range msgs {
			if m.Header.Get(subjects.HeaderMsgID) != "" {
				tb.Fatalf("getall message carries %s", subjects.HeaderMsgID)
			}
			mi.add(tb, m)
		}
		if headerUint(tb, end, subjects.HeaderNumPending) == 0 {
			return mi, rev
		}
		next = headerUint(tb, end, subjects.HeaderNextSeq)
	}
}

// sameMirror compares a mirror with the stream as getall reads it: the
// same seqs, each with the same payload and headers.
func (f *fixture) sameMirror(tb testing.TB, what string, mi wireMirror, stream string) {
	tb.Helper()
	want, _ := f.readAll(tb, stream)
	if !slices.Equal(slices.Sorted(maps.Keys(mi)), slices.Sorted(maps.Keys(want))) {
		tb.Fatalf("%s holds %v, getall %v", what, slices.Sorted(maps.Keys(mi)), slices.Sorted(maps.Keys(want)))
	}
	for seq, w := range want {
		g := mi[seq]
		if string(g.Data) != string(w.Data) {
			tb.Fatalf("%s: seq %d data %q, want %q", what, seq, g.Data, w.Data)
		}
		for name, vals := range w.Header {
			if !slices.Equal(g.Header[name], vals) {
				tb.Fatalf("%s: seq %d header %s = %q, want %q", what, seq, name, g.Header[name], vals)
			}
		}
	}
}

func TestBroker_Changes(t *testing.T) {
	f := newFixture(t, Options{})
	const s = "acme.ch"
	f.set(t, s, "a1", hdr(subjects.HeaderKey, "a", "X-U", "u1"))                  // 1: seq 1
	f.set(t, s, "b1", hdr(subjects.HeaderKey, "b"))                               // 2: seq 2
	f.set(t, s, "x", nil)                                                         // 3: seq 3
	past, rev := f.readAll(t, s)                                                  // exact at revision 3
	f.set(t, s, "a2", hdr(subjects.HeaderKey, "a"))                               // 4: seq 4 replaces seq 1
	f.set(t, s, "c1", hdr(subjects.HeaderKey, "c", subjects.HeaderMsgID, "id-1")) // 5: seq 5
	f.call(t, subjects.OpDelete, s, `{"seqs":[3,4]}`, nil)                        // 6
	f.call(t, subjects.OpConfig, s, `{"max_msgs":2,"desc":{"<&>":"é"}}`, nil)     // 7: seqs 2 and 5 are left
	f.set(t, s, "y", hdr("X-Multi", "1", "X-Multi", "2"))                         // 8: seq 6; 9: seq 2 goes
	if rev != 3 {
		t.Fatalf("getall revision = %d, want 3", rev)
	}

	got, now := f.allChanges(t, s, 3, 1000)
	if now != 9 {
		t.Fatalf("changes terminator revision = %d, want 9", now)
	}
	type change struct{ rev, op, seq, key, reason, body string }
	var sum []change
	for _, m := range got {
		c := change{m.Header.Get(subjects.HeaderRevision), m.Header.Get(subjects.HeaderOp), m.Header.Get(subjects.HeaderSeq),
			m.Header.Get(subjects.HeaderKey), m.Header.Get(subjects.HeaderReason), string(m.Data)}
		if c.op == subjects.OpConfig {
			var cfg subjects.Config
			var desc map[string]string
			if err := json.Unmarshal(m.Data, &cfg); err != nil || cfg.MaxMsgs != 2 || json.Unmarshal(cfg.Desc, &desc) != nil || desc["<&>"] != "é" {
				t.Fatalf("config change %s: %v", m.Data, err)
			}
			c.body = ""
		}
		if c.op == subjects.OpSet && m.Header.Get(subjects.HeaderTime) == "" {
			t.Fatalf("set change without %s: %v", subjects.HeaderTime, m.Header)
		}
		sum = append(sum, c)
	}
	want := []change{
		{"5", "set", "5", "c", "", "c1"},
		{"6", "delete", "", "", "request", `{"ranges":[[3,4]],"keys":["a"]}`},
		{"7", "config", "", "", "", ""},
		{"8", "set", "6", "", "", "y"},
		{"9", "delete", "", "", "max_msgs", `{"ranges":[[2,2]],"keys":["b"]}`},
	}
	if !slices.Equal(sum, want) {
		t.Fatalf("changes after 3:\n%v\nwant\n%v", sum, want)
	}
	if h := got[3].Header["X-Multi"]; !slices.Equal(h, []string{"1", "2"}) {
		t.Fatalf("set change header X-Multi = %q, want [1 2]", h)
	}
	// Seq 1 (key a), held by the mirror, was replaced by seq 4, which is
	// gone: only the delete's keys drop it.
	for _, m := range got {
		past.applyMsg(t, m)
	}
	f.sameMirror(t, "mirror at 3 after changes", past, s)

	t.Run("Pages", func(t *testing.T) {
		for after := uint64(0); after <= 9; after++ {
			all, _ := f.allChanges(t, s, after, 1000)
			paged, _ := f.allChanges(t, s, after, 1)
			if len(paged) != len(all) {
				t.Fatalf("after %d: %d changes in pages of 1, %d in one", after, len(paged), len(all))
			}
			for i := range all {
				if paged[i].Header.Get(subjects.HeaderRevision) != all[i].Header.Get(subjects.HeaderRevision) || string(paged[i].Data) != string(all[i].Data) {
					t.Fatalf("after %d: change %d differs in pages of 1", after, i)
				}
			}
		}
		// One page of two: two pending after it, as of its read.
		page, end := f.changesPage(t, s, `{"after_revision":3,"max_msgs":2}`)
		if len(page) != 2 || end.Header.Get(subjects.HeaderNumPending) != "3" || end.Header.Get(subjects.HeaderRevision) != "9" {
			t.Fatalf("changes after 3, 2 a page: %d changes, terminator %v", len(page), end.Header)
		}
		// However small max_bytes, one change is sent; a set counts its
		// message size, another change its body.
		page, end = f.changesPage(t, s, `{"after_revision":5,"max_bytes":1}`)
		if len(page) != 1 || end.Header.Get(subjects.HeaderNumPending) != "3" {
			t.Fatalf("changes after 5, 1 byte: %d changes, terminator %v", len(page), end.Header)
		}
		body := `{"ranges":[[3,4]],"keys":["a"]}`
		page, _ = f.changesPage(t, s, fmt.Sprintf(`{"after_revision":5,"max_bytes":%d}`, len(body)))
		if len(page) != 1 {
			t.Fatalf("changes after 5 within %d bytes: %d changes, want the delete alone", len(body), len(page))
		}
		page, _ = f.changesPage(t, s, `{"after_revision":7,"max_bytes":1000}`)
		if len(page) != 2 {
			t.Fatalf("changes after 7 within 1000 bytes: %d changes, want 2", len(page))
		}
	})
	t.Run("NothingAfter", func(t *testing.T) {
		page, end := f.changesPage(t, s, `{"after_revision":9}`)
		if len(page) != 0 || end.Header.Get(subjects.HeaderRevision) != "9" || end.Header.Get(subjects.HeaderNumPending) != "0" {
			t.Fatalf("changes after the current revision: %d changes, terminator %v", len(page), end.Header)
		}
		// An empty body is after_revision 0.
		page, end = f.changesPage(t, s, ``)
		if len(page) != 5 || end.Header.Get(subjects.HeaderNumPending) != "0" {
			t.Fatalf("changes with an empty body: %d changes, terminator %v; want the sets of the 2 messages left, 2 deletes and the config", len(page), end.Header)
		}
	})
	t.Run("Ahead", func(t *testing.T) {
		_, end := f.changesPage(t, s, `{"after_revision":10}`)
		if werr := replyError(end); werr == nil || werr.Code != 410 || werr.Reason != "revision_gone" || !strings.Contains(werr.Description, "ahead") {
			t.Fatalf("changes after 10 of a stream at 9 = %v, want 410 revision_gone, ahead", werr)
		}
	})
}

// TestBroker_ChangesWindow checks Options.ChangesWindow: a mirror whose
// revision is older than the changes kept gets 410 revision_gone and
// reads the stream again; one within the window catches up.
func TestBroker_ChangesWindow(t *testing.T) {
	f := newFixture(t, Options{ChangesWindow: 3})
	const s = "acme.win"
	f.set(t, s, "keep", nil) // 1
	old, _ := f.readAll(t, s)
	for range 6 { // 2 … 13: a set and its delete, six times
		r := f.set(t, s, "x", nil)
		f.call(t, subjects.OpDelete, s, fmt.Sprintf(`{"seq":%d}`, r.Seq), nil)
	}
	_, end := f.changesPage(t, s, `{"after_revision":1}`)
	if werr := replyError(end); werr == nil || werr.Code != 410 || werr.Reason != "revision_gone" {
		t.Fatalf("changes after 1 with 6 deletes since and a window of 3 = %v, want 410 revision_gone", werr)
	}
	if !strings.Contains(end.Header.Get("Nats-Service-Error"), "no longer kept") {
		t.Fatalf("410 description %q", end.Header.Get("Nats-Service-Error"))
	}
	// The three newest deletes are kept: revisions 9, 11 and 13.
	got, rev := f.allChanges(t, s, 8, 1000)
	if len(got) != 3 || rev != 13 {
		t.Fatalf("changes after 8 = %d changes at %d, want the 3 deletes kept", len(got), rev)
	}
	for _, m := range got {
		old.applyMsg(t, m)
	}
	f.sameMirror(t, "mirror after the kept changes", old, s)
}

// TestBroker_ChangesMissing checks changes on a stream that does not
// exist, before and after it existed: revision 0 is answered with the
// terminator alone, a later one 410, and nothing is created.
func TestBroker_ChangesMissing(t *testing.T) {
	f := newFixture(t, Options{})
	page, end := f.changesPage(t, "acme.none", `{"after_revision":0,"max_msgs":5}`)
	if len(page) != 0 || replyError(end) != nil || end.Header.Get(subjects.HeaderRevision) != "0" || end.Header.Get(subjects.HeaderNumPending) != "0" {
		t.Fatalf("changes of a missing stream: %d changes, terminator %v %q", len(page), end.Header, end.Data)
	}
	_, end = f.changesPage(t, "acme.none", `{"after_revision":4}`)
	if werr := replyError(end); werr == nil || werr.Code != 410 {
		t.Fatalf("changes after 4 of a missing stream = %v, want 410", werr)
	}
	if got := files(t, f.dir); len(got) != 0 {
		t.Fatalf("changes created files %v", got)
	}

	// A mirror of a destroyed stream is ahead of the new one of its name.
	f.set(t, "acme.re", "a", nil)
	f.set(t, "acme.re", "b", nil)
	f.call(t, subjects.OpDestroy, "acme.re", "", nil)
	f.set(t, "acme.re", "c", nil)
	_, end = f.changesPage(t, "acme.re", `{"after_revision":2}`)
	if werr := replyError(end); werr == nil || werr.Code != 410 {
		t.Fatalf("changes after 2 of a stream destroyed at 3 and now at 1 = %v, want 410", werr)
	}
}

// TestBroker_EventMsgID checks that a live set event carries the write's
// Persist-Msg-Id, from set and setmany, and that get, getall and changes
// never do.
func TestBroker_EventMsgID(t *testing.T) {
	f := newFixture(t, Options{})
	const s = "acme.ids"
	sub, err := f.nc.SubscribeSync(subjects.EventSubject(subjects.DefaultPrefix, s))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	f.set(t, s, "a", hdr(subjects.HeaderMsgID, "writer-1/7"))
	f.set(t, s, "b", nil)
	f.call(t, subjects.OpSetMany, s, `[{"data":"Yw==","msg_id":"writer-2/1"},{"data":"ZA=="}]`, nil)
	if r := f.set(t, s, "a", hdr(subjects.HeaderMsgID, "writer-1/7")); !r.Duplicate {
		t.Fatal("second set with the same id is not a duplicate")
	}
	want := []string{"writer-1/7", "", "writer-2/1", ""}
	for i, id := range want {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("event %d: %v", i+1, err)
		}
		if got, ok := m.Header[subjects.HeaderMsgID]; id != "" && !slices.Equal(got, []string{id}) || id == "" && ok {
			t.Fatalf("event %d %s = %q, want %q", i+1, subjects.HeaderMsgID, got, id)
		}
	}
	// The duplicate published nothing.
	if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("event after the duplicate: %v", m.Header)
	}
	m := f.call(t, subjects.OpGet, s, `{"seq":1}`, nil)
	if m.Header.Get(subjects.HeaderMsgID) != "" {
		t.Fatalf("get carries %s", subjects.HeaderMsgID)
	}
	f.readAll(t, s)                                        // checks getall
	if got, _ := f.allChanges(t, s, 0, 2); len(got) != 4 { // checks changes
		t.Fatalf("changes = %d, want 4", len(got))
	}
}

// TestBroker_ChangesBadRequest checks that a changes body is read as
// strictly as every other: 400 bad_request for what is not exactly a
// ChangesRequest.
func TestBroker_ChangesBadRequest(t *testing.T) {
	f := newFixture(t, Options{})
	f.set(t, "acme.bad", "a", nil)
	for _, body := range []string{
		`{"after_revision":-1}`,
		`{"after_revision":"1"}`,
		`{"after_revision":1.5}`,
		`{"after_revision":18446744073709551616}`,
		`{"after":1}`,
		`{"After_Revision":1}`,
		`{"after_revision":1,"after_revision":2}`,
		`{"max_msgs":null}`,
		`null`,
		`[]`,
		`{} {}`,
		`{"after_revision":1`,
		"{\"max_bytes\":1,\"x\xff\":2}",
	} {
		for _, stream := range []string{"acme.bad", "acme.missing"} {
			_, end := f.changesPage(t, stream, body)
			if werr := replyError(end); werr == nil || werr.Code != 400 || werr.Reason != "bad_request" {
				t.Fatalf("changes %s with %q = %v %v, want 400 bad_request", stream, body, werr, end.Header)
			}
		}
	}
	// Bounds over the caps are capped, not refused.
	page, end := f.changesPage(t, "acme.bad", `{"max_msgs":100000000,"max_bytes":100000000000}`)
	if len(page) != 1 || replyError(end) != nil {
		t.Fatalf("changes with huge bounds: %d changes, %v", len(page), end.Header)
	}
}

// TestBroker_ChangesTooLarge checks a delete change whose body (its keys)
// is larger than the NATS max payload: the answer is 410 revision_gone,
// so that the client reads the stream again, not a silent gap.
func TestBroker_ChangesTooLarge(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, MaxPayload: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(srv.Shutdown)
	f := &fixture{srv: srv, clock: &fakeClock{t: time.Unix(1_700_000_000, 0)}, dir: t.TempDir()}
	f.bnc, f.nc = connect(t, srv), connect(t, srv)
	f.start(t, Options{}, hooks{now: f.clock.now, noJanitor: true})
	const s = "acme.keys"
	for i := range 50 {
		f.set(t, s, "v", hdr(subjects.HeaderKey, fmt.Sprintf("%04d-%s", i, strings.Repeat("k", 1000))))
	}
	f.call(t, subjects.OpDelete, s, `{"all":true}`, nil)
	_, end := f.changesPage(t, s, `{"after_revision":50}`)
	if werr := replyError(end); werr == nil || werr.Code != 410 || !strings.Contains(werr.Description, "max payload") {
		t.Fatalf("changes with a delete of 50 KB of keys under a 32 KB max payload = %v, want 410", werr)
	}
	// After the delete there is nothing more to send.
	if got, rev := f.allChanges(t, s, 51, 10); len(got) != 0 || rev != 51 {
		t.Fatalf("changes after 51 = %d changes at %d, want none at 51", len(got), rev)
	}
}

// TestEncode_DeleteEventAsJSON checks that the hand-written body of a
// delete event or change is what jsonMarshal writes for
// subjects.DeleteEvent, which is what the store counts for a page.
func TestEncode_DeleteEventAsJSON(t *testing.T) {
	for _, c := range []subjects.DeleteEvent{
		{Ranges: [][2]uint64{{1, 1}}},
		{Ranges: [][2]uint64{{1, 5}, {7, 1<<64 - 1}}, Keys: []string{"a"}},
		{Ranges: [][2]uint64{{3, 3}}, Keys: []string{"<&>", `q"uote\`, "é", "tab\there", "\u2028"}},
	} {
		want, err := jsonMarshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendDeleteEvent(nil, c.Ranges, c.Keys); string(got) != string(want) {
			t.Errorf("appendDeleteEvent(%v, %q) = %s, want %s", c.Ranges, c.Keys, got, want)
		}
	}
}

// FuzzChangesBody checks changes bodies against the protocol's reading:
// an object of after_revision, max_msgs and max_bytes, each a
// non-negative integer, all optional; anything else is a 400.
func FuzzChangesBody(f *testing.F) {
	addBodies(f)
	f.Add([]byte(`{"after_revision":7,"max_msgs":2,"max_bytes":100}`))
	f.Add([]byte(`{"after_revision":18446744073709551615}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var want subjects.ChangesRequest
		ok := true
		if !oracleEmpty(body) {
			var fs map[string]json.RawMessage
			fs, ok = oracleFields(body, "after_revision", "max_msgs", "max_bytes")
			for name, r := range fs {
				var okv bool
				switch name {
				case "after_revision":
					want.AfterRevision, okv = oracleUint(r)
				case "max_msgs":
					want.MaxMsgs, okv = oracleUint(r)
				case "max_bytes":
					want.MaxBytes, okv = oracleUint(r)
				}
				ok = ok && okv
			}
		}
		checkBody(t, subjects.OpChanges, body, want, ok, func(j *job) subjects.ChangesRequest { return j.changes })
	})
}
