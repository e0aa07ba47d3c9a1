package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"

	"github.com/nats-persist/persist/subjects"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.UnixMilli(1_700_000_000_000)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder collects the events a stream publishes.
type recorder struct {
	mu  sync.Mutex
	evs []Event
}

func (r *recorder) notify(evs []Event) {
	r.mu.Lock()
	r.evs = append(r.evs, evs...)
	r.mu.Unlock()
}

// take returns the events so far and forgets them.
func (r *recorder) take() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.evs
	r.evs = nil
	return evs
}

type testStream struct {
	*Stream
	path  string
	clock *fakeClock
	rec   *recorder
	opts  Options
}

// openTest opens a new stream in a temporary directory with a fake clock
// and no background sweeping; cfg may be nil.
func openTest(tb testing.TB, cfg *Config) *testStream {
	tb.Helper()
	ts := &testStream{path: filepath.Join(tb.TempDir(), "acme", "s.db"), clock: newClock(), rec: &recorder{}}
	ts.opts = Options{Create: true, Config: cfg, Now: ts.clock.Now, NoSweep: true, Notify: ts.rec.notify}
	ts.reopen(tb)
	tb.Cleanup(func() {
		if ts.Stream != nil {
			ts.Close()
		}
	})
	return ts
}

// reopen closes the stream (if open) and opens it again.
func (ts *testStream) reopen(tb testing.TB) {
	tb.Helper()
	if ts.Stream != nil {
		if err := ts.Close(); err != nil {
			tb.Fatalf("Close() = %v", err)
		}
	}
	s, err := Open(ts.path, ts.opts)
	if err != nil {
		tb.Fatalf("Open(%s) = %v", ts.path, err)
	}
	ts.Stream = s
}

func (ts *testStream) mustAppend(tb testing.TB, ws ...Write) []WriteResult {
	tb.Helper()
	res, err := ts.Append(ws)
	if err != nil {
		tb.Fatalf("Append() = %v", err)
	}
	if len(res) != len(ws) {
		tb.Fatalf("Append() returned %d results, want %d", len(res), len(ws))
	}
	return res
}

// put appends one message and fails the test if it is refused.
func (ts *testStream) put(tb testing.TB, w Write) WriteResult {
	tb.Helper()
	r := ts.mustAppend(tb, w)[0]
	if r.Err != nil {
		tb.Fatalf("Append(%+v) item error = %v", w, r.Err)
	}
	return r
}

func (ts *testStream) seqs(tb testing.TB) []uint64 {
	tb.Helper()
	var got []uint64
	if _, err := ts.Read(ReadQuery{}, func(m *Message) error {
		got = append(got, m.Seq)
		return nil
	}); err != nil {
		tb.Fatalf("Read() = %v", err)
	}
	return got
}

func (ts *testStream) inventory(tb testing.TB) Inventory {
	tb.Helper()
	inv, err := ts.Inventory()
	if err != nil {
		tb.Fatalf("Inventory() = %v", err)
	}
	return inv
}

func u64(v uint64) *uint64 { return &v }

func data(s string) Write { return Write{Data: []byte(s)} }

func keyed(k, s string) Write { return Write{Key: k, Data: []byte(s)} }

// summary renders events without payloads, for comparison.
func summary(evs []Event) []string {
	var out []string
	for _, e := range evs {
		switch e.Op {
		case subjects.OpSet:
			out = append(out, fmt.Sprintf("%d set %d %q", e.Revision, e.Msg.Seq, e.Msg.Key))
		case subjects.OpDelete:
			out = append(out, fmt.Sprintf("%d delete %s %v", e.Revision, e.Reason, e.Ranges))
		default:
			out = append(out, fmt.Sprintf("%d %s", e.Revision, e.Op))
		}
	}
	return out
}

func wantEvents(tb testing.TB, got []Event, want ...string) {
	tb.Helper()
	if s := summary(got); !reflect.DeepEqual(s, want) && !(len(s) == 0 && len(want) == 0) {
		tb.Fatalf("events =\n%q\nwant\n%q", s, want)
	}
}

func TestStream_Seq(t *testing.T) {
	ts := openTest(t, nil)
	for i := 1; i <= 3; i++ {
		if got, want := ts.put(t, data("x")).Seq, uint64(i); got != want {
			t.Fatalf("seq = %d, want %d", got, want)
		}
	}
	t.Run("AfterDeleteAll", func(t *testing.T) {
		if n, err := ts.DeleteAll(); err != nil || n != 3 {
			t.Fatalf("DeleteAll() = %d, %v, want 3", n, err)
		}
		if got, want := ts.put(t, data("x")).Seq, uint64(4); got != want {
			t.Fatalf("seq = %d, want %d", got, want)
		}
	})
	t.Run("AfterReopen", func(t *testing.T) {
		ts.DeleteAll()
		ts.reopen(t)
		if got, want := ts.LastSeq(), uint64(4); got != want {
			t.Fatalf("LastSeq() = %d, want %d", got, want)
		}
		if got, want := ts.put(t, data("x")).Seq, uint64(5); got != want {
			t.Fatalf("seq = %d, want %d", got, want)
		}
	})
	t.Run("TimeNeverGoesBack", func(t *testing.T) {
		t1 := ts.put(t, data("a")).Time
		ts.clock.Add(-time.Hour)
		if t2 := ts.put(t, data("b")).Time; t2 < t1 {
			t.Fatalf("time went back: %d after %d", t2, t1)
		}
	})
}

func TestStream_Revision(t *testing.T) {
	ts := openTest(t, nil)
	if got := ts.Revision(); got != 0 {
		t.Fatalf("Revision() of a new stream = %d, want 0", got)
	}
	ts.mustAppend(t, data("a"), data("b"))
	ts.DeleteSeqs(1)
	wantEvents(t, ts.rec.take(), `1 set 1 ""`, `2 set 2 ""`, "3 delete request [[1 1]]")
	ts.reopen(t)
	if got, want := ts.Revision(), uint64(3); got != want {
		t.Fatalf("Revision() after reopen = %d, want %d", got, want)
	}
	ts.put(t, data("c"))
	wantEvents(t, ts.rec.take(), `4 set 3 ""`)
}

func TestStream_SetEvent(t *testing.T) {
	ts := openTest(t, &Config{
		MaxMsgs: -1, MaxBytes: -1, MaxMsgSize: -1, MaxMsgsPerSecond: -1, MaxBytesPerSecond: -1,
		DiscardPolicy: subjects.DiscardOld, AllowMsgTTL: true, DuplicateWindow: 1000, Storage: subjects.StorageFile,
		Compression: subjects.CompressionZstd, CompressionThreshold: 4,
	})
	ts.rec.take()
	big := bytes.Repeat([]byte("compressible "), 100)
	r := ts.put(t, Write{Key: "k", Data: big, Header: map[string][]string{"A": {"2", "1"}}, TTL: time.Minute})
	evs := ts.rec.take()
	if len(evs) != 1 || evs[0].Op != subjects.OpSet {
		t.Fatalf("events = %v, want one set", summary(evs))
	}
	want := &Message{Seq: r.Seq, Time: r.Time, Key: "k", Header: map[string][]string{"A": {"2", "1"}}, Data: big, Expires: r.Time + 60000}
	if !reflect.DeepEqual(evs[0].Msg, want) {
		t.Fatalf("event message = %+v, want %+v", evs[0].Msg, want)
	}
	got, err := ts.Get(r.Seq)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Get() = %+v, %v, want %+v", got, err, want)
	}
}

func TestStream_Keyed(t *testing.T) {
	tests := []struct {
		name    string
		prev    *uint64
		key     string
		exists  bool
		wantErr error
	}{
		{"New", nil, "k", false, nil},
		{"Replace", nil, "k", true, nil},
		{"PrevZeroAbsent", u64(0), "k", false, nil},
		{"PrevZeroPresent", u64(0), "k", true, ErrWrongLastSequence},
		{"PrevMatches", u64(1), "k", true, nil},
		{"PrevMismatch", u64(7), "k", true, ErrWrongLastSequence},
		{"PrevWithoutKey", u64(0), "", false, ErrInvalid},
		{"BadKey", nil, " k", false, ErrInvalid},
		{"ControlInKey", nil, "a\x01b", false, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := openTest(t, nil)
			if tt.exists {
				ts.put(t, keyed(tt.key, "old"))
			}
			ts.rec.take()
			r := ts.mustAppend(t, Write{Key: tt.key, PreviousSeq: tt.prev, Data: []byte("new")})[0]
			if !errors.Is(r.Err, tt.wantErr) || (tt.wantErr == nil) != (r.Err == nil) {
				t.Fatalf("Append() item error = %v, want %v", r.Err, tt.wantErr)
			}
			inv := ts.inventory(t)
			if tt.wantErr != nil {
				if evs := ts.rec.take(); len(evs) != 0 {
					t.Fatalf("refused write published %v", summary(evs))
				}
				if want := map[bool]int64{true: 1, false: 0}[tt.exists]; inv.Count != want {
					t.Fatalf("count = %d, want %d", inv.Count, want)
				}
				return
			}
			// Only the set event: it tells which message it replaced.
			wantEvents(t, ts.rec.take(), fmt.Sprintf("%d set %d %q", inv.Revision, r.Seq, tt.key))
			if inv.Count != 1 || inv.Bytes != int64(len(tt.key)+3) {
				t.Fatalf("inventory = %+v, want one message of %d bytes", inv, len(tt.key)+3)
			}
			m, err := ts.GetKey(tt.key)
			if err != nil || string(m.Data) != "new" || m.Seq != r.Seq {
				t.Fatalf("GetKey() = %+v, %v", m, err)
			}
			if tt.exists {
				if _, err := ts.Get(1); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Get(old seq) = %v, want ErrNotFound", err)
				}
			}
		})
	}
}

func TestStream_BatchItems(t *testing.T) {
	cfg := subjects.DefaultConfig()
	cfg.MaxMsgSize = 10
	ts := openTest(t, &cfg)
	ts.rec.take()
	res := ts.mustAppend(t,
		keyed("a", "1"),
		Write{Data: []byte("much too large for the limit")},
		Write{Key: "a", PreviousSeq: u64(99), Data: []byte("x")},
		Write{TTL: time.Second},
		keyed("b", "2"),
	)
	wantErrs := []error{nil, ErrMsgTooLarge, ErrWrongLastSequence, ErrTTLDisabled, nil}
	for i, r := range res {
		if !errors.Is(r.Err, wantErrs[i]) || (wantErrs[i] == nil) != (r.Err == nil) {
			t.Errorf("item %d error = %v, want %v", i, r.Err, wantErrs[i])
		}
	}
	// A refused item consumes no seq and leaves nothing behind.
	if res[0].Seq != 1 || res[4].Seq != 2 {
		t.Fatalf("seqs = %d, %d, want 1, 2", res[0].Seq, res[4].Seq)
	}
	wantEvents(t, ts.rec.take(), `2 set 1 "a"`, `3 set 2 "b"`)
	if got := ts.seqs(t); !reflect.DeepEqual(got, []uint64{1, 2}) {
		t.Fatalf("stored seqs = %v", got)
	}
	t.Run("Empty", func(t *testing.T) {
		res, err := ts.Append(nil)
		if err != nil || len(res) != 0 || ts.Revision() != 3 {
			t.Fatalf("Append(nil) = %v, %v; revision %d", res, err, ts.Revision())
		}
	})
}

func TestStream_Dedup(t *testing.T) {
	ts := openTest(t, nil) // duplicate_window 120s
	first := ts.put(t, Write{MsgID: "m1", Data: []byte("a")})
	ts.rec.take()
	ts.clock.Add(time.Second)
	check := func(t *testing.T, wantDup bool) WriteResult {
		t.Helper()
		r := ts.put(t, Write{MsgID: "m1", Data: []byte("b")})
		if r.Duplicate != wantDup {
			t.Fatalf("Duplicate = %v, want %v", r.Duplicate, wantDup)
		}
		evs := ts.rec.take()
		if wantDup {
			if r.Seq != first.Seq || r.Time != first.Time || len(evs) != 0 {
				t.Fatalf("duplicate = %+v with %d events, want seq %d time %d, no events", r, len(evs), first.Seq, first.Time)
			}
		} else if len(evs) != 1 {
			t.Fatalf("events = %v, want one set", summary(evs))
		}
		return r
	}
	t.Run("WithinWindow", func(t *testing.T) { check(t, true) })
	t.Run("SurvivesReopen", func(t *testing.T) {
		ts.reopen(t)
		check(t, true)
	})
	t.Run("InOneBatch", func(t *testing.T) {
		res := ts.mustAppend(t, Write{MsgID: "m2"}, Write{MsgID: "m2"})
		if res[0].Duplicate || !res[1].Duplicate || res[1].Seq != res[0].Seq {
			t.Fatalf("results = %+v", res)
		}
		ts.rec.take()
	})
	t.Run("AfterWindow", func(t *testing.T) {
		ts.clock.Add(2 * time.Minute)
		if err := ts.Sweep(); err != nil {
			t.Fatal(err)
		}
		var n int
		ts.exec("SELECT count(*) FROM msg_ids WHERE id = 'm1'", func(st *sqlite.Stmt) error { n = st.ColumnInt(0); return nil })
		if n != 0 {
			t.Fatalf("expired message id still stored")
		}
		first = check(t, false)
		check(t, true)
	})
}

func TestStream_TTL(t *testing.T) {
	t.Run("Disabled", func(t *testing.T) {
		ts := openTest(t, nil)
		if r := ts.mustAppend(t, Write{TTL: time.Second})[0]; !errors.Is(r.Err, ErrTTLDisabled) {
			t.Fatalf("error = %v, want ErrTTLDisabled", r.Err)
		}
	})
	cfg := subjects.DefaultConfig()
	cfg.AllowMsgTTL = true
	ts := openTest(t, &cfg)
	ts.put(t, Write{Key: "short", TTL: 1500 * time.Millisecond})
	ts.put(t, Write{Key: "forever"})
	ts.put(t, Write{Key: "long", TTL: time.Hour})
	ts.rec.take()
	ts.clock.Add(1499 * time.Millisecond)
	if _, err := ts.GetKey("short"); err != nil {
		t.Fatalf("GetKey(short) before expiry = %v", err)
	}
	ts.clock.Add(time.Millisecond)
	t.Run("HiddenBeforeSweep", func(t *testing.T) {
		if _, err := ts.GetKey("short"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetKey(short) = %v, want ErrNotFound", err)
		}
		if _, err := ts.Get(1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(1) = %v, want ErrNotFound", err)
		}
		if got := ts.seqs(t); !reflect.DeepEqual(got, []uint64{2, 3}) {
			t.Fatalf("Read() seqs = %v", got)
		}
		keys, _, err := ts.Keys("", 0)
		if err != nil || !reflect.DeepEqual(keys, []string{"forever", "long"}) {
			t.Fatalf("Keys() = %v, %v", keys, err)
		}
	})
	t.Run("Sweep", func(t *testing.T) {
		if err := ts.Sweep(); err != nil {
			t.Fatal(err)
		}
		wantEvents(t, ts.rec.take(), "5 delete ttl [[1 1]]")
		if inv := ts.inventory(t); inv.Count != 2 || inv.FirstSeq != 2 {
			t.Fatalf("inventory = %+v", inv)
		}
	})
	t.Run("WriteSweepsFirst", func(t *testing.T) {
		ts.clock.Add(time.Hour)
		ts.put(t, data("x"))
		wantEvents(t, ts.rec.take(), "6 delete ttl [[3 3]]", `7 set 4 ""`)
	})
	t.Run("NegativeTTL", func(t *testing.T) {
		if r := ts.mustAppend(t, Write{TTL: -time.Second})[0]; !errors.Is(r.Err, ErrInvalid) {
			t.Fatalf("error = %v, want ErrInvalid", r.Err)
		}
	})
}

func TestStream_BackgroundSweep(t *testing.T) {
	cfg := subjects.DefaultConfig()
	cfg.AllowMsgTTL = true
	done := make(chan []Event, 10)
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, Options{Create: true, Config: &cfg, Notify: func(evs []Event) { done <- evs }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	<-done // the config event of the creation
	if _, err := s.Append([]Write{{TTL: 20 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	<-done
	select {
	case evs := <-done:
		wantEvents(t, evs, "3 delete ttl [[1 1]]")
	case <-time.After(10 * time.Second):
		t.Fatal("no ttl delete event from the background sweep")
	}
}

func TestStream_MaxAge(t *testing.T) {
	cfg := subjects.DefaultConfig()
	cfg.MaxAge = 1000
	ts := openTest(t, &cfg)
	ts.rec.take()
	ts.put(t, data("a"))
	ts.put(t, data("b"))
	ts.clock.Add(600 * time.Millisecond)
	ts.put(t, data("c"))
	ts.rec.take()
	ts.clock.Add(500 * time.Millisecond)
	if err := ts.Sweep(); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, ts.rec.take(), "5 delete max_age [[1 2]]")
	if got := ts.seqs(t); !reflect.DeepEqual(got, []uint64{3}) {
		t.Fatalf("seqs = %v, want [3]", got)
	}
}

// TestOpen_MaxAgeDeadline checks that an open finds the expiry deadline
// that max_age gives the first message, which the open reads only for
// streams with max_age.
func TestOpen_MaxAgeDeadline(t *testing.T) {
	cfg := subjects.DefaultConfig()
	cfg.MaxAge = 1000
	ts := openTest(t, &cfg)
	ts.put(t, data("a"))
	first := ts.nowMs()
	ts.clock.Add(300 * time.Millisecond)
	ts.put(t, data("b"))
	ts.reopen(t)
	ts.mu.Lock()
	got := ts.deadline
	ts.mu.Unlock()
	if want := first + cfg.MaxAge + 1; got != want {
		t.Fatalf("deadline after reopen = %d, want %d (the first message's time + max_age + 1)", got, want)
	}
}

func TestStream_Limits(t *testing.T) {
	type step struct {
		w       Write
		wantErr error
	}
	tests := []struct {
		name     string
		cfg      func(*Config)
		steps    []step
		wantSeqs []uint64
		wantEvs  []string
	}{
		{
			name:     "MaxMsgsOld",
			cfg:      func(c *Config) { c.MaxMsgs = 2 },
			steps:    []step{{data("a"), nil}, {data("b"), nil}, {data("c"), nil}},
			wantSeqs: []uint64{2, 3},
			wantEvs:  []string{`2 set 1 ""`, `3 set 2 ""`, `4 set 3 ""`, "5 delete max_msgs [[1 1]]"},
		},
		{
			name:     "MaxMsgsNew",
			cfg:      func(c *Config) { c.MaxMsgs = 2; c.DiscardPolicy = subjects.DiscardNew },
			steps:    []step{{data("a"), nil}, {data("b"), nil}, {data("c"), ErrLimitReached}},
			wantSeqs: []uint64{1, 2},
			wantEvs:  []string{`2 set 1 ""`, `3 set 2 ""`},
		},
		{
			name:     "KeyedReplaceDoesNotGrow",
			cfg:      func(c *Config) { c.MaxMsgs = 2; c.DiscardPolicy = subjects.DiscardNew },
			steps:    []step{{keyed("a", "1"), nil}, {keyed("b", "1"), nil}, {keyed("a", "2"), nil}, {keyed("c", "1"), ErrLimitReached}},
			wantSeqs: []uint64{2, 3},
			wantEvs:  []string{`2 set 1 "a"`, `3 set 2 "b"`, `4 set 3 "a"`},
		},
		{
			name:     "MaxBytesOld",
			cfg:      func(c *Config) { c.MaxBytes = 10 },
			steps:    []step{{data("aaaa"), nil}, {data("bbbb"), nil}, {data("cccc"), nil}},
			wantSeqs: []uint64{2, 3},
			wantEvs:  []string{`2 set 1 ""`, `3 set 2 ""`, `4 set 3 ""`, "5 delete max_bytes [[1 1]]"},
		},
		{
			name:     "MaxBytesNew",
			cfg:      func(c *Config) { c.MaxBytes = 10; c.DiscardPolicy = subjects.DiscardNew },
			steps:    []step{{data("aaaa"), nil}, {data("bbbb"), nil}, {data("cccc"), ErrLimitReached}, {data("dd"), nil}},
			wantSeqs: []uint64{1, 2, 3},
			wantEvs:  []string{`2 set 1 ""`, `3 set 2 ""`, `4 set 3 ""`},
		},
		{
			name:     "LargerThanMaxBytes",
			cfg:      func(c *Config) { c.MaxBytes = 3 },
			steps:    []step{{data("aaaa"), ErrMsgTooLarge}, {data("aaa"), nil}},
			wantSeqs: []uint64{1},
			wantEvs:  []string{`2 set 1 ""`},
		},
		{
			name:     "MaxMsgSizeCountsKeyAndHeaders",
			cfg:      func(c *Config) { c.MaxMsgSize = 5 },
			steps:    []step{{Write{Key: "kk", Data: []byte("123"), Header: map[string][]string{"H": {"v"}}}, ErrMsgTooLarge}, {Write{Key: "kk", Data: []byte("123")}, nil}},
			wantSeqs: []uint64{1},
			wantEvs:  []string{`2 set 1 "kk"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := subjects.DefaultConfig()
			tt.cfg(&cfg)
			ts := openTest(t, &cfg)
			for i, st := range tt.steps {
				r := ts.mustAppend(t, st.w)[0]
				if !errors.Is(r.Err, st.wantErr) || (st.wantErr == nil) != (r.Err == nil) {
					t.Fatalf("step %d error = %v, want %v", i, r.Err, st.wantErr)
				}
			}
			if got := ts.seqs(t); !reflect.DeepEqual(got, tt.wantSeqs) {
				t.Fatalf("seqs = %v, want %v", got, tt.wantSeqs)
			}
			wantEvents(t, ts.rec.take(), append([]string{"1 config"}, tt.wantEvs...)...)
			inv := ts.inventory(t)
			var bytes int64
			ts.Read(ReadQuery{}, func(m *Message) error { bytes += m.Size(); return nil })
			if inv.Count != int64(len(tt.wantSeqs)) || inv.Bytes != bytes {
				t.Fatalf("inventory = %+v, want count %d bytes %d", inv, len(tt.wantSeqs), bytes)
			}
		})
	}
	t.Run("BatchEvictionsAfterSets", func(t *testing.T) {
		cfg := subjects.DefaultConfig()
		cfg.MaxMsgs = 1
		ts := openTest(t, &cfg)
		ts.rec.take()
		ts.mustAppend(t, data("a"), data("b"), data("c"))
		wantEvents(t, ts.rec.take(), `2 set 1 ""`, `3 set 2 ""`, `4 set 3 ""`, "5 delete max_msgs [[1 2]]")
	})
}

func TestStream_RateLimit(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		ws   []Write
		want []error
	}{
		{"Msgs", func(c *Config) { c.MaxMsgsPerSecond = 2 }, []Write{data("a"), data("b"), data("c")}, []error{nil, nil, ErrRateLimited}},
		{"Bytes", func(c *Config) { c.MaxBytesPerSecond = 5 }, []Write{data("aaa"), data("bbb"), data("cc")}, []error{nil, ErrRateLimited, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := subjects.DefaultConfig()
			tt.cfg(&cfg)
			ts := openTest(t, &cfg)
			ts.clock.Add(-ts.clock.Now().Sub(ts.clock.Now().Truncate(time.Second)))
			for i, w := range tt.ws {
				if r := ts.mustAppend(t, w)[0]; !errors.Is(r.Err, tt.want[i]) || (tt.want[i] == nil) != (r.Err == nil) {
					t.Fatalf("write %d error = %v, want %v", i, r.Err, tt.want[i])
				}
			}
			ts.clock.Add(time.Second)
			ts.put(t, tt.ws[0])
		})
	}
}

func TestStream_Memory(t *testing.T) {
	q := NewQuota(100)
	open := func(t *testing.T, name string) *Stream {
		t.Helper()
		s, err := Open(name, Options{Memory: true, Create: true, Quota: q, NoSweep: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dir := t.TempDir()
	s1 := open(t, filepath.Join(dir, "m1.db"))
	s2 := open(t, filepath.Join(dir, "m2.db"))
	mustWrite := func(s *Stream, n int, wantErr error) {
		t.Helper()
		res, err := s.Append([]Write{{Data: make([]byte, n)}})
		if err != nil || !errors.Is(res[0].Err, wantErr) || (wantErr == nil) != (res[0].Err == nil) {
			t.Fatalf("Append(%d bytes) = %v, %v; want %v", n, res, err, wantErr)
		}
	}
	mustWrite(s1, 60, nil)
	mustWrite(s2, 30, nil)
	if got := q.Used(); got != 90 {
		t.Fatalf("quota used = %d, want 90", got)
	}
	mustWrite(s2, 20, ErrLimitReached)
	if got := q.Used(); got != 90 {
		t.Fatalf("quota used after refusal = %d, want 90", got)
	}
	if _, err := s1.DeleteAll(); err != nil {
		t.Fatal(err)
	}
	if got := q.Used(); got != 30 {
		t.Fatalf("quota used after delete = %d, want 30", got)
	}
	mustWrite(s2, 20, nil)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := q.Used(); got != 0 {
		t.Fatalf("quota used after close = %d, want 0", got)
	}
	if cfg := s1.Config(); cfg.Storage != subjects.StorageMemory {
		t.Fatalf("storage = %q", cfg.Storage)
	}
	if _, err := s1.SetConfig(subjects.DefaultConfig()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetConfig(storage file) = %v, want ErrInvalid", err)
	}
	if err := s1.Destroy(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("memory streams wrote files: %v", entries)
	}
	t.Run("NotFoundWithoutCreate", func(t *testing.T) {
		if _, err := Open(filepath.Join(dir, "m3.db"), Options{Memory: true}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open() = %v, want ErrNotFound", err)
		}
	})
	t.Run("KeyedReplace", func(t *testing.T) {
		q := NewQuota(10)
		s, err := Open("kv", Options{Memory: true, Create: true, Quota: q, NoSweep: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for i := 0; i < 3; i++ {
			res, err := s.Append([]Write{{Key: "k", Data: make([]byte, 8)}})
			if err != nil || res[0].Err != nil {
				t.Fatalf("write %d = %v, %v", i, res, err)
			}
			if got := q.Used(); got != 9 {
				t.Fatalf("quota used = %d, want 9", got)
			}
		}
	})
	t.Run("EffectiveMaxBytes", func(t *testing.T) {
		s := open(t, "big")
		defer s.Close()
		res, err := s.Append([]Write{{Data: make([]byte, subjects.MemoryStreamMaxBytes+1)}})
		if err != nil || !errors.Is(res[0].Err, ErrMsgTooLarge) {
			t.Fatalf("Append(64 MiB + 1) = %v, %v; want ErrMsgTooLarge", res, err)
		}
	})
}

func TestStream_Compression(t *testing.T) {
	cfg := subjects.DefaultConfig()
	cfg.CompressionThreshold = 10
	ts := openTest(t, &cfg)
	big := bytes.Repeat([]byte("abc"), 1000)
	flags := func(seq uint64) (flags, stored int64) {
		ts.exec("SELECT flags, length(data) FROM msgs WHERE seq = ?", func(st *sqlite.Stmt) error {
			flags, stored = st.ColumnInt64(0), st.ColumnInt64(1)
			return nil
		}, seq)
		return
	}
	tests := []struct {
		name     string
		data     []byte
		cfg      string
		wantFlag int64
	}{
		{"Small", []byte("0123456789"), subjects.CompressionZstd, 0},
		{"Large", big, subjects.CompressionZstd, flagZstd},
		{"Incompressible", []byte("0123456789a"), subjects.CompressionZstd, 0},
		{"Off", big, subjects.CompressionNone, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ts.Config()
			c.Compression = tt.cfg
			if _, err := ts.SetConfig(c); err != nil {
				t.Fatal(err)
			}
			r := ts.put(t, Write{Data: tt.data})
			if f, n := flags(r.Seq); f != tt.wantFlag || (f == flagZstd) != (n < int64(len(tt.data))) {
				t.Fatalf("flags = %d, stored %d bytes; want flags %d", f, n, tt.wantFlag)
			}
			m, err := ts.Get(r.Seq)
			if err != nil || !bytes.Equal(m.Data, tt.data) {
				t.Fatalf("Get() = %v, %v", m, err)
			}
			if m.Size() != int64(len(tt.data)) {
				t.Fatalf("size = %d, want the uncompressed %d", m.Size(), len(tt.data))
			}
		})
	}
}

func TestStream_Read(t *testing.T) {
	ts := openTest(t, nil)
	for i := 0; i < 10; i++ {
		ts.put(t, Write{Data: []byte(fmt.Sprint(i)), Header: map[string][]string{"I": {fmt.Sprint(i)}}})
		ts.clock.Add(time.Second)
	}
	ts.DeleteSeqs(5)
	t0 := ts.clock.Now().Add(-10 * time.Second).UnixMilli()
	tests := []struct {
		name        string
		q           ReadQuery
		wantSeqs    []uint64
		wantPending int64
		wantNext    uint64
	}{
		{"All", ReadQuery{}, []uint64{1, 2, 3, 4, 6, 7, 8, 9, 10}, 0, 0},
		{"MaxMsgs", ReadQuery{MaxMsgs: 3}, []uint64{1, 2, 3}, 6, 4},
		{"StartSeqInGap", ReadQuery{StartSeq: 5, MaxMsgs: 2}, []uint64{6, 7}, 3, 8},
		{"EndSeq", ReadQuery{StartSeq: 3, EndSeq: 6, MaxMsgs: 2}, []uint64{3, 4}, 1, 6},
		{"MaxBytes", ReadQuery{MaxBytes: 8}, []uint64{1, 2}, 7, 3}, // each message is 3 bytes
		{"MaxBytesAtLeastOne", ReadQuery{MaxBytes: 1}, []uint64{1}, 8, 2},
		{"StartTime", ReadQuery{StartTime: t0 + 7000}, []uint64{8, 9, 10}, 0, 0},
		{"Empty", ReadQuery{StartSeq: 11}, nil, 0, 0},
		{"EndBeforeStart", ReadQuery{StartSeq: 4, EndSeq: 3}, nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			res, err := ts.Read(tt.q, func(m *Message) error {
				if m.Header["I"][0] != string(m.Data) {
					t.Fatalf("message %d: header %v, data %q", m.Seq, m.Header, m.Data)
				}
				got = append(got, m.Seq)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.wantSeqs) {
				t.Fatalf("seqs = %v, want %v", got, tt.wantSeqs)
			}
			want := ReadResult{LastSeq: 10, Revision: 11, NumPending: tt.wantPending, NextSeq: tt.wantNext}
			if res != want {
				t.Fatalf("result = %+v, want %+v", res, want)
			}
		})
	}
	t.Run("CallbackError", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		_, err := ts.Read(ReadQuery{}, func(*Message) error { n++; return stop })
		if err != stop || n != 1 {
			t.Fatalf("Read() = %v after %d calls, want stop after 1", err, n)
		}
	})
}

func TestStream_Delete(t *testing.T) {
	tests := []struct {
		name    string
		del     func(s *Stream) (int64, error)
		want    int64
		wantEvs []string
		left    []uint64
	}{
		{"Seqs", func(s *Stream) (int64, error) { return s.DeleteSeqs(4, 2, 3, 3, 99, 0, 6) }, 4, []string{"7 delete request [[2 4] [6 6]]"}, []uint64{1, 5}},
		{"Absent", func(s *Stream) (int64, error) { return s.DeleteSeqs(99) }, 0, nil, []uint64{1, 2, 3, 4, 5, 6}},
		{"Through", func(s *Stream) (int64, error) { return s.DeleteThrough(3) }, 3, []string{"7 delete request [[1 3]]"}, []uint64{4, 5, 6}},
		{"ThroughNothing", func(s *Stream) (int64, error) { return s.DeleteThrough(0) }, 0, nil, []uint64{1, 2, 3, 4, 5, 6}},
		{"Key", func(s *Stream) (int64, error) { return s.DeleteKey("k") }, 1, []string{"7 delete request [[6 6]]"}, []uint64{1, 2, 3, 4, 5}},
		{"KeyAbsent", func(s *Stream) (int64, error) { return s.DeleteKey("nope") }, 0, nil, []uint64{1, 2, 3, 4, 5, 6}},
		{"All", func(s *Stream) (int64, error) { return s.DeleteAll() }, 6, []string{"7 delete request [[1 6]]"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := openTest(t, nil)
			ts.mustAppend(t, data("a"), data("b"), data("c"), data("d"), data("e"), keyed("k", "f"))
			ts.rec.take()
			n, err := tt.del(ts.Stream)
			if err != nil || n != tt.want {
				t.Fatalf("delete = %d, %v, want %d", n, err, tt.want)
			}
			wantEvents(t, ts.rec.take(), tt.wantEvs...)
			if got := ts.seqs(t); !reflect.DeepEqual(got, tt.left) {
				t.Fatalf("left = %v, want %v", got, tt.left)
			}
			inv := ts.inventory(t)
			var bytes int64
			ts.Read(ReadQuery{}, func(m *Message) error { bytes += m.Size(); return nil })
			if inv.Count != int64(len(tt.left)) || inv.Bytes != bytes {
				t.Fatalf("inventory = %+v, want %d messages", inv, len(tt.left))
			}
			if len(tt.left) == 0 && inv.FirstSeq != 0 {
				t.Fatalf("first seq of an empty stream = %d, want 0", inv.FirstSeq)
			}
		})
	}
}

func TestStream_SetConfig(t *testing.T) {
	ts := openTest(t, nil)
	ts.mustAppend(t, data("aa"), data("bb"), data("cc"), data("dd"))
	ts.rec.take()
	t.Run("Unchanged", func(t *testing.T) {
		if _, err := ts.SetConfig(subjects.DefaultConfig()); err != nil {
			t.Fatal(err)
		}
		if evs := ts.rec.take(); len(evs) != 0 || ts.Revision() != 4 {
			t.Fatalf("unchanged config published %v", summary(evs))
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		for _, mut := range []func(*Config){
			func(c *Config) { c.Storage = subjects.StorageMemory },
			func(c *Config) { c.MaxMsgs = 0 },
		} {
			c := subjects.DefaultConfig()
			mut(&c)
			if _, err := ts.SetConfig(c); !errors.Is(err, ErrInvalid) {
				t.Fatalf("SetConfig(%+v) = %v, want ErrInvalid", c, err)
			}
		}
	})
	t.Run("LowerLimits", func(t *testing.T) {
		c := subjects.DefaultConfig()
		c.MaxMsgs = 3
		c.MaxBytes = 4
		c.DiscardPolicy = subjects.DiscardNew
		got, err := ts.SetConfig(c)
		if err != nil || !got.Equal(c) {
			t.Fatalf("SetConfig() = %+v, %v", got, err)
		}
		wantEvents(t, ts.rec.take(), "5 config", "6 delete max_msgs [[1 1]]", "7 delete max_bytes [[2 2]]")
		if got := ts.seqs(t); !reflect.DeepEqual(got, []uint64{3, 4}) {
			t.Fatalf("seqs = %v", got)
		}
	})
	t.Run("Persists", func(t *testing.T) {
		ts.reopen(t)
		if c := ts.Config(); c.MaxMsgs != 3 || c.DiscardPolicy != subjects.DiscardNew {
			t.Fatalf("config after reopen = %+v", c)
		}
		if inv := ts.inventory(t); !reflect.DeepEqual(inv.Limits, map[string]any{"max_msgs": int64(3), "max_bytes": int64(4), "discard_policy": subjects.DiscardNew}) {
			t.Fatalf("limits = %v", inv.Limits)
		}
	})
	t.Run("Sync", func(t *testing.T) {
		mode := func() int {
			var m int
			ts.exec("PRAGMA synchronous", func(st *sqlite.Stmt) error { m = st.ColumnInt(0); return nil })
			return m
		}
		if got := mode(); got != 1 {
			t.Fatalf("synchronous = %d, want 1 (NORMAL)", got)
		}
		c := ts.Config()
		c.Sync = true
		if _, err := ts.SetConfig(c); err != nil {
			t.Fatal(err)
		}
		if got := mode(); got != 2 {
			t.Fatalf("synchronous = %d, want 2 (FULL)", got)
		}
		ts.reopen(t)
		if got := mode(); got != 2 {
			t.Fatalf("synchronous after reopen = %d, want 2 (FULL)", got)
		}
	})
}

func TestOpen_Create(t *testing.T) {
	t.Run("NotFound", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := Open(filepath.Join(dir, "a", "b.db"), Options{}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open() = %v, want ErrNotFound", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("Open without Create made %v", entries)
		}
	})
	t.Run("ConfigEvent", func(t *testing.T) {
		cfg := subjects.DefaultConfig()
		cfg.MaxMsgs = 5
		ts := openTest(t, &cfg)
		evs := ts.rec.take()
		wantEvents(t, evs, "1 config")
		if evs[0].Config.MaxMsgs != 5 {
			t.Fatalf("config event = %+v", evs[0].Config)
		}
	})
	t.Run("DefaultNoEvent", func(t *testing.T) {
		ts := openTest(t, nil)
		if evs := ts.rec.take(); len(evs) != 0 || ts.Revision() != 0 {
			t.Fatalf("creation with defaults published %v", summary(evs))
		}
	})
	t.Run("InvalidConfig", func(t *testing.T) {
		cfg := subjects.DefaultConfig()
		cfg.DiscardPolicy = "sometimes"
		path := filepath.Join(t.TempDir(), "s.db")
		if _, err := Open(path, Options{Create: true, Config: &cfg}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Open() = %v, want ErrInvalid", err)
		}
		if _, err := os.Stat(path); err == nil {
			t.Fatal("invalid config created a file")
		}
	})
	t.Run("ExistingIgnoresConfig", func(t *testing.T) {
		ts := openTest(t, nil)
		ts.Close()
		cfg := subjects.DefaultConfig()
		cfg.MaxMsgs = 5
		s, err := Open(ts.path, Options{Create: true, Config: &cfg})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.Config().MaxMsgs != -1 {
			t.Fatal("config of an existing stream was replaced")
		}
	})
}

func TestOpen_Corrupt(t *testing.T) {
	streamFile := func(t *testing.T) string {
		ts := openTest(t, nil)
		for i := 0; i < 200; i++ {
			ts.put(t, Write{Data: bytes.Repeat([]byte{byte(i)}, 500)})
		}
		// Checkpointed, so that the damage below hits the only copy of
		// each page (with commits pending in a -wal, a truncated file is
		// legitimate after a crash in a checkpoint, and only a read of a
		// missing page finds the damage).
		ts.mu.Lock()
		err := ts.checkpoint(true)
		ts.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if err := ts.Close(); err != nil {
			t.Fatal(err)
		}
		return ts.path
	}
	setUint32 := func(t *testing.T, path string, off int64, v uint32) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}, off); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		make func(t *testing.T) string
	}{
		{"Empty", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "s.db")
			os.WriteFile(p, nil, 0o644)
			return p
		}},
		{"RandomBytes", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "s.db")
			b := make([]byte, 8192)
			for i := range b {
				b[i] = byte(i*7 + i/13)
			}
			os.WriteFile(p, b, 0o644)
			return p
		}},
		{"ForeignSQLite", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "s.db")
			conn, err := sqlite.OpenConn(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := execScript(conn, "PRAGMA journal_mode=DELETE; CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('x')"); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			return p
		}},
		{"MissingTables", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "s.db")
			conn, err := sqlite.OpenConn(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := execScript(conn, fmt.Sprintf("PRAGMA journal_mode=DELETE; PRAGMA application_id=%d; PRAGMA user_version=1; CREATE TABLE other (x)", applicationID)); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			return p
		}},
		{"Truncated", func(t *testing.T) string {
			p := streamFile(t)
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()/2); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"MissingTableCurrent", func(t *testing.T) string {
			// A file of the current version in WAL mode, found damaged
			// only by the query that loads it.
			p := streamFile(t)
			conn, err := sqlite.OpenConn(p, sqlite.OpenReadWrite)
			if err != nil {
				t.Fatal(err)
			}
			if err := execScript(conn, "DROP TABLE msg_ids"); err != nil {
				t.Fatal(err)
			}
			if err := conn.Close(); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"MissingBlocksTable", func(t *testing.T) string {
			// The one table the loading query does not read.
			p := streamFile(t)
			conn, err := sqlite.OpenConn(p, sqlite.OpenReadWrite)
			if err != nil {
				t.Fatal(err)
			}
			if err := execScript(conn, "DROP TABLE blocks"); err != nil {
				t.Fatal(err)
			}
			if err := conn.Close(); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"NewerSchema", func(t *testing.T) string {
			p := streamFile(t)
			setUint32(t, p, 60, uint32(len(migrations)+1))
			return p
		}},
		{"WrongApplicationID", func(t *testing.T) string {
			p := streamFile(t)
			setUint32(t, p, 68, 1234)
			return p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.make(t)
			before, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			// A closed stream keeps its -wal: it is part of the file and
			// must stay as it is too.
			walBefore, walErr := os.ReadFile(p + "-wal")
			for _, create := range []bool{false, true} {
				if s, err := Open(p, Options{Create: create}); !errors.Is(err, ErrCorrupt) {
					if s != nil {
						s.Close()
					}
					t.Fatalf("Open(create=%v) = %v, want ErrCorrupt", create, err)
				}
			}
			after, _ := os.ReadFile(p)
			if !bytes.Equal(before, after) {
				t.Fatal("the damaged file was changed")
			}
			walAfter, walErrAfter := os.ReadFile(p + "-wal")
			if !bytes.Equal(walBefore, walAfter) || (walErr == nil) != (walErrAfter == nil) {
				t.Fatal("the damaged file's -wal was changed")
			}
			entries, _ := os.ReadDir(filepath.Dir(p))
			if want := 1 + btoi(walErr == nil); len(entries) != want {
				t.Fatalf("files beside the damaged file: %v", entries)
			}
		})
	}
	t.Run("DamagedPage", func(t *testing.T) {
		p := streamFile(t)
		b, _ := os.ReadFile(p)
		for i := 4096; i < len(b); i++ { // everything but the header page
			b[i] ^= 0x5a
		}
		os.WriteFile(p, b, 0o644)
		s, err := Open(p, Options{})
		if err == nil {
			defer s.Close()
			_, err = s.Read(ReadQuery{}, func(*Message) error { return nil })
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("reading a damaged file = %v, want ErrCorrupt", err)
		}
	})
}

func TestStream_Closed(t *testing.T) {
	ts := openTest(t, nil)
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ts.Close(); err != nil {
		t.Fatalf("second Close() = %v", err)
	}
	if _, err := ts.Append([]Write{data("x")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append() after Close = %v", err)
	}
	if _, err := ts.Get(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get() after Close = %v", err)
	}
	if err := ts.Destroy(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Destroy() after Close = %v", err)
	}
}

func TestStream_Destroy(t *testing.T) {
	dir := t.TempDir()
	ts := openTest(t, nil)
	ts.opts.ArchivePath = filepath.Join(dir, "archive", "s.db")
	ts.opts.BackupPath = filepath.Join(dir, "backup", "s.db")
	ts.reopen(t)
	ts.put(t, data("x"))
	ts.rec.take()
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ts.opts.ArchivePath); err != nil {
		t.Fatalf("no archive copy after Close: %v", err)
	}
	ts.reopen(t)
	if err := ts.Destroy(); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, ts.rec.take(), "2 destroy")
	for _, p := range []string{ts.path, ts.path + "-wal", ts.opts.ArchivePath} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s still exists", p)
		}
	}
	if _, err := os.Stat(ts.opts.BackupPath); err != nil {
		t.Fatalf("backup copy removed: %v", err)
	}
	s, err := Open(ts.path, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Revision() != 0 || s.LastSeq() != 0 {
		t.Fatalf("recreated stream starts at revision %d, seq %d", s.Revision(), s.LastSeq())
	}
}

func TestStream_Archive(t *testing.T) {
	dir := t.TempDir()
	ts := openTest(t, nil)
	ts.opts.ArchivePath = filepath.Join(dir, "archive", "s.db")
	ts.reopen(t)
	ts.put(t, data("a"))
	ts.reopen(t) // the close writes the archive copy
	ts.put(t, data("b"))
	ts.Close()
	// The local file is lost: the archive copy comes back.
	if err := Remove(ts.path); err != nil {
		t.Fatal(err)
	}
	ts.Stream = nil
	ts.reopen(t)
	if got := ts.seqs(t); !reflect.DeepEqual(got, []uint64{1, 2}) {
		t.Fatalf("seqs after restore = %v, want [1 2]", got)
	}
	t.Run("Interval", func(t *testing.T) {
		ts.Close()
		ts.opts.ArchiveInterval = time.Millisecond
		ts.Stream = nil
		ts.reopen(t)
		ts.put(t, data("c"))
		deadline := time.Now().Add(10 * time.Second)
		for {
			conn, err := sqlite.OpenConn(ts.opts.ArchivePath, sqlite.OpenReadOnly)
			if err == nil {
				rev, err := readRevision(conn)
				conn.Close()
				if err == nil && rev == ts.Revision() {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("no archive snapshot within 10s of a change")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func TestReadRevision_ReadOnly(t *testing.T) {
	ts := openTest(t, nil)
	ts.put(t, data("a"))
	ts.put(t, data("b"))
	ts.Close()
	conn, err := sqlite.OpenConn(ts.path, sqlite.OpenReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if rev, err := readRevision(conn); err != nil || rev != 2 {
		t.Fatalf("readRevision() = %d, %v, want 2", rev, err)
	}
}

func TestStream_Keys(t *testing.T) {
	ts := openTest(t, nil)
	for _, k := range []string{"b", "a", "B", "é", "a.b", "c"} {
		ts.put(t, keyed(k, "x"))
	}
	ts.put(t, data("unkeyed"))
	tests := []struct {
		after    string
		limit    int
		want     []string
		wantMore bool
	}{
		{"", 0, []string{"B", "a", "a.b", "b", "c", "é"}, false},
		{"", 2, []string{"B", "a"}, true},
		{"a", 2, []string{"a.b", "b"}, true},
		{"c", 10, []string{"é"}, false},
		{"é", 10, []string{}, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.after, tt.limit), func(t *testing.T) {
			keys, more, err := ts.Keys(tt.after, tt.limit)
			if err != nil || !reflect.DeepEqual(keys, tt.want) || more != tt.wantMore {
				t.Fatalf("Keys() = %q, %v, %v; want %q, %v", keys, more, err, tt.want, tt.wantMore)
			}
		})
	}
}

func TestStream_Concurrent(t *testing.T) {
	ts := openTest(t, nil)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if _, err := ts.Append([]Write{data("x")}); err != nil {
					t.Error(err)
				}
				ts.Read(ReadQuery{MaxMsgs: 5}, func(*Message) error { return nil })
			}
		}()
	}
	wg.Wait()
	evs := ts.rec.take()
	for i, e := range evs {
		if e.Revision != uint64(i+1) {
			t.Fatalf("event %d has revision %d", i, e.Revision)
		}
	}
	if got := ts.inventory(t).Count; got != 100 {
		t.Fatalf("count = %d, want 100", got)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
