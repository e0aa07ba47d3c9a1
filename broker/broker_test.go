package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

func TestNew_Options(t *testing.T) {
	srv := runServer(t)
	nc := connect(t, srv)
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"NoDataDir", Options{}},
		{"BadPrefix", Options{DataDir: t.TempDir(), Prefix: "a.>"}},
		{"NegativeMaxOpen", Options{DataDir: t.TempDir(), MaxOpen: -1}},
		{"NegativeIdle", Options{DataDir: t.TempDir(), IdleTimeout: -time.Second}},
		{"LongDataDir", Options{DataDir: "/" + strings.Repeat("d", MaxDirLen)}},
		{"LongArchiveDir", Options{DataDir: t.TempDir(), ArchiveDir: "/" + strings.Repeat("d", MaxDirLen)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := New(nc, tc.opts); err == nil {
				b.Shutdown(context.Background())
				t.Fatalf("New(%+v) = nil error, want an error", tc.opts)
			}
		})
	}
	t.Run("Endpoints", func(t *testing.T) {
		b, err := New(nc, Options{DataDir: t.TempDir(), Name: "px"})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Shutdown(context.Background())
		info := b.Service().Info()
		if got, want := info.Name, "px"; got != want {
			t.Fatalf("Info().Name = %q, want %q", got, want)
		}
		var subs []string
		for _, ep := range info.Endpoints {
			subs = append(subs, ep.Subject)
			if ep.QueueGroup != DefaultQueueGroup {
				t.Errorf("endpoint %s queue group %q, want %q", ep.Name, ep.QueueGroup, DefaultQueueGroup)
			}
		}
		for _, op := range subjects.Ops {
			if !slices.Contains(subs, "persist.api."+op+".>") {
				t.Errorf("no endpoint for %s in %v", op, subs)
			}
		}
	})
}

func TestBroker_InvalidSubject(t *testing.T) {
	f := newFixture(t, Options{})
	for _, subj := range []string{"persist.api.get.a%41", "persist.api.get.a%2e", "persist.api.set.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q", "persist.api.get." + strings.Repeat("x", 201)} {
		m, err := f.nc.Request(subj, nil, 5*time.Second)
		if err != nil {
			t.Fatalf("request %s: %v", subj, err)
		}
		if got := replyError(m); got == nil || got.Reason != "invalid_stream" || got.Code != 400 {
			t.Errorf("request %s: error %v, want invalid_stream", subj, got)
		}
	}
}

func TestBroker_Set(t *testing.T) {
	f := newFixture(t, Options{})
	t.Run("Plain", func(t *testing.T) {
		r := f.set(t, "acme.s", "hello", hdr("X-A", "1", "X-A", "2", "Nats-Msg-Id", "dropped", "persist-seq", "99"))
		if r.Seq != 1 || r.Time == 0 || r.Duplicate {
			t.Fatalf("set = %+v, want seq 1 with a time", r)
		}
		m := f.call(t, subjects.OpGet, "acme.s", `{"seq":1}`, nil)
		if got, want := string(m.Data), "hello"; got != want {
			t.Fatalf("get data = %q, want %q", got, want)
		}
		if got, want := m.Header.Values("X-A"), []string{"1", "2"}; !slices.Equal(got, want) {
			t.Fatalf("get X-A = %q, want %q", got, want)
		}
		if got := m.Header.Get(subjects.HeaderSeq); got != "1" {
			t.Fatalf("get Persist-Seq = %q, want 1", got)
		}
		if got, want := m.Header.Get(subjects.HeaderTime), strconv.FormatInt(r.Time, 10); got != want {
			t.Fatalf("get Persist-Time = %q, want %q", got, want)
		}
		for _, name := range []string{"Nats-Msg-Id", "persist-seq", subjects.HeaderKey, subjects.HeaderExpires} {
			if v := m.Header.Values(name); len(v) > 0 {
				t.Errorf("get header %s = %q, want none", name, v)
			}
		}
	})
	t.Run("EmptyPayload", func(t *testing.T) {
		if r := f.set(t, "acme.s", "", nil); r.Seq != 2 {
			t.Fatalf("set seq = %d, want 2", r.Seq)
		}
	})
	t.Run("Keyed", func(t *testing.T) {
		r1 := f.set(t, "acme.k", "v1", hdr(subjects.HeaderKey, "a/b c"))
		r2 := f.set(t, "acme.k", "v2", hdr(subjects.HeaderKey, "a/b c", subjects.HeaderPreviousSeq, strconv.FormatUint(r1.Seq, 10)))
		m := f.call(t, subjects.OpGet, "acme.k", `{"key":"a/b c"}`, nil)
		if string(m.Data) != "v2" || m.Header.Get(subjects.HeaderSeq) != strconv.FormatUint(r2.Seq, 10) || m.Header.Get(subjects.HeaderKey) != "a/b c" {
			t.Fatalf("get key = %q %v, want v2 at seq %d", m.Data, m.Header, r2.Seq)
		}
		f.callErr(t, subjects.OpSet, "acme.k", "v3", hdr(subjects.HeaderKey, "a/b c", subjects.HeaderPreviousSeq, "1"), subjects.ErrWrongLastSequence)
		f.callErr(t, subjects.OpSet, "acme.k", "v3", hdr(subjects.HeaderKey, "a/b c", subjects.HeaderPreviousSeq, "0"), subjects.ErrWrongLastSequence)
		f.set(t, "acme.k", "new", hdr(subjects.HeaderKey, "fresh", subjects.HeaderPreviousSeq, "0"))
	})
	t.Run("MsgID", func(t *testing.T) {
		r1 := f.set(t, "acme.d", "x", hdr(subjects.HeaderMsgID, "id-1"))
		r2 := f.set(t, "acme.d", "y", hdr(subjects.HeaderMsgID, "id-1"))
		if !r2.Duplicate || r2.Seq != r1.Seq || r2.Time != r1.Time {
			t.Fatalf("second set = %+v, want duplicate of %+v", r2, r1)
		}
	})
	t.Run("TTL", func(t *testing.T) {
		f.callErr(t, subjects.OpSet, "acme.t", "x", hdr(subjects.HeaderTTL, "1h"), subjects.ErrTTLDisabled)
		f.call(t, subjects.OpConfig, "acme.t", `{"allow_msg_ttl":true}`, nil)
		r := f.set(t, "acme.t", "x", hdr(subjects.HeaderTTL, "1h"))
		m := f.call(t, subjects.OpGet, "acme.t", `{"seq":`+strconv.FormatUint(r.Seq, 10)+`}`, nil)
		exp, err := strconv.ParseInt(m.Header.Get(subjects.HeaderExpires), 10, 64)
		if err != nil || exp != r.Time+time.Hour.Milliseconds() {
			t.Fatalf("Persist-Expires = %q, want %d", m.Header.Get(subjects.HeaderExpires), r.Time+time.Hour.Milliseconds())
		}
	})
	t.Run("BadRequests", func(t *testing.T) {
		for _, h := range []nats.Header{
			hdr(subjects.HeaderKey, ""),
			hdr(subjects.HeaderKey, strings.Repeat("k", 1025)),
			hdr(subjects.HeaderPreviousSeq, "1"),
			hdr(subjects.HeaderKey, "k", subjects.HeaderPreviousSeq, "-1"),
			hdr(subjects.HeaderKey, "k", subjects.HeaderPreviousSeq, "1.5"),
			hdr(subjects.HeaderMsgID, ""),
			hdr(subjects.HeaderMsgID, strings.Repeat("i", 1025)),
			hdr(subjects.HeaderTTL, "-1s"),
			hdr(subjects.HeaderTTL, "soon"),
			hdr("Persist-Other", "x"),
			hdr("persist-key", "x"),
			hdr(subjects.HeaderKey, "a", subjects.HeaderKey, "b"),
		} {
			f.callErr(t, subjects.OpSet, "acme.bad", "x", h, subjects.ErrBadRequest)
		}
		if got := files(t, filepath.Join(f.dir, "acme")); slices.Contains(got, "bad.db") {
			t.Fatalf("bad requests created a stream: %v", got)
		}
	})
	t.Run("Limits", func(t *testing.T) {
		f.call(t, subjects.OpConfig, "acme.l", `{"max_msg_size":4,"max_msgs":1,"discard_policy":"new"}`, nil)
		f.callErr(t, subjects.OpSet, "acme.l", "12345", nil, subjects.ErrMsgTooLarge)
		f.set(t, "acme.l", "1", nil)
		f.callErr(t, subjects.OpSet, "acme.l", "2", nil, subjects.ErrLimitReached)
		f.call(t, subjects.OpConfig, "acme.r", `{"max_msgs_per_second":1}`, nil)
		// Of three quick writes at one per second, two share a second
		// whatever the clock does.
		limited := 0
		for range 3 {
			m := f.request(t, subjects.OpSet, "acme.r", []byte("x"), nil)
			if werr := replyError(m); werr != nil {
				if werr.Code != 429 || werr.Reason != "rate_limited" {
					t.Fatalf("set error %v, want rate_limited", werr)
				}
				limited++
			}
		}
		if limited == 0 {
			t.Fatal("three writes in a row at max_msgs_per_second 1 were all accepted")
		}
	})
}

func TestBroker_SetMany(t *testing.T) {
	f := newFixture(t, Options{})
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	t.Run("Items", func(t *testing.T) {
		body := `[
			{"data":"` + b64("a") + `"},
			{"data":"` + b64("b") + `","key":"k","headers":{"X-H":["1","2"],"Nats-Expected":["x"]},"msg_id":"m1"},
			5,
			{"data":"` + b64("c") + `","key":""},
			{"data":"` + b64("d") + `","ttl":1.5},
			{"data":"` + b64("e") + `","ttl":60000},
			{"data":"` + b64("f") + `","nope":1},
			{"data":"` + b64("g") + `","key":"k","previous_seq":1},
			{"data":"` + b64("h") + `","headers":{"Persist-Key":["x"]}},
			{"key":"nodata"},
			{"data":"` + b64("i") + `","previous_seq":0},
			{"data":"` + b64("j") + `","key":"k","previous_seq":2}
		]`
		var got []json.RawMessage
		f.call(t, subjects.OpSetMany, "acme.m", body, &got)
		if len(got) != 12 {
			t.Fatalf("setmany reply has %d entries, want 12: %s", len(got), got)
		}
		wantErr := map[int]string{2: "bad_request", 3: "bad_request", 4: "bad_request", 5: "ttl_disabled", 6: "bad_request", 7: "wrong_last_sequence", 8: "bad_request", 9: "bad_request", 10: "bad_request"}
		var seqs []uint64
		for i, raw := range got {
			var e struct {
				Seq   uint64          `json:"seq"`
				Error *subjects.Error `json:"error"`
			}
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Fatal(err)
			}
			if reason, bad := wantErr[i]; bad {
				if e.Error == nil || e.Error.Reason != reason {
					t.Errorf("item %d = %s, want error %s", i, raw, reason)
				}
				continue
			}
			if e.Error != nil || e.Seq == 0 {
				t.Errorf("item %d = %s, want a seq", i, raw)
			}
			seqs = append(seqs, e.Seq)
		}
		if want := []uint64{1, 2, 3}; !slices.Equal(seqs, want) {
			t.Fatalf("seqs = %v, want %v", seqs, want)
		}
		m := f.call(t, subjects.OpGet, "acme.m", `{"key":"k"}`, nil)
		if string(m.Data) != "j" || !slices.Equal(m.Header.Values("X-H"), nil) {
			t.Fatalf("get k = %q %v, want j without X-H", m.Data, m.Header)
		}
	})
	t.Run("WholeBodyRefused", func(t *testing.T) {
		items := make([]string, 1001)
		for i := range items {
			items[i] = `{"data":""}`
		}
		for _, body := range []string{`{"data":""}`, `nope`, ``, `null`, `[{"data":""}] x`, "[" + strings.Join(items, ",") + "]"} {
			f.callErr(t, subjects.OpSetMany, "acme.w", body, nil, subjects.ErrBadRequest)
		}
		if _, err := os.Stat(filepath.Join(f.dir, "acme", "w.db")); !os.IsNotExist(err) {
			t.Fatalf("refused setmany created a file: %v", err)
		}
	})
	t.Run("NothingWrittenCreatesNothing", func(t *testing.T) {
		var got []json.RawMessage
		f.call(t, subjects.OpSetMany, "acme.none", `[{"data":"!!"}]`, &got)
		f.call(t, subjects.OpSetMany, "acme.none", `[]`, &got)
		f.call(t, subjects.OpSetMany, "acme.none", `[{"data":"","key":"k","previous_seq":4}]`, &got)
		if len(got) != 1 || !strings.Contains(string(got[0]), "wrong_last_sequence") {
			t.Fatalf("reply = %s, want one wrong_last_sequence", got)
		}
		f.callErr(t, subjects.OpGet, "acme.none", `{"seq":1}`, nil, subjects.ErrNotFound)
		for _, name := range files(t, f.dir) {
			if strings.HasPrefix(name, filepath.Join("acme", "none")) {
				t.Fatalf("setmany that wrote nothing left %s", name)
			}
		}
	})
}

func TestBroker_Get(t *testing.T) {
	f := newFixture(t, Options{})
	f.callErr(t, subjects.OpGet, "acme.g", `{"seq":1}`, nil, subjects.ErrNotFound)
	f.set(t, "acme.g", "one", hdr(subjects.HeaderKey, "k"))
	f.callErr(t, subjects.OpGet, "acme.g", `{"seq":2}`, nil, subjects.ErrNotFound)
	f.callErr(t, subjects.OpGet, "acme.g", `{"key":"other"}`, nil, subjects.ErrNotFound)
	for _, body := range []string{``, `{}`, `{"seq":1,"key":"k"}`, `{"seq":-1}`, `{"seq":1.5}`, `{"seq":"1"}`, `{"seq":1}{}`, `{"seq":1,"x":1}`, `{"key":""}`, `[1]`} {
		f.callErr(t, subjects.OpGet, "acme.g", body, nil, subjects.ErrBadRequest)
	}
	if m := f.call(t, subjects.OpGet, "acme.g", ` {"seq":1} `, nil); string(m.Data) != "one" {
		t.Fatalf("get = %q, want one", m.Data)
	}
}

func TestBroker_GetAll(t *testing.T) {
	f := newFixture(t, Options{})
	t.Run("Missing", func(t *testing.T) {
		msgs, end := f.getAll(t, "acme.ga", ``)
		if len(msgs) != 0 || replyError(end) != nil {
			t.Fatalf("getall on missing stream: %d msgs, end %v", len(msgs), end.Header)
		}
		for _, h := range []string{subjects.HeaderLastSeq, subjects.HeaderRevision, subjects.HeaderNumPending} {
			if got := end.Header.Get(h); got != "0" {
				t.Errorf("terminator %s = %q, want 0", h, got)
			}
		}
		if got := end.Header.Get(subjects.HeaderNextSeq); got != "" {
			t.Errorf("terminator Next-Seq = %q, want none", got)
		}
	})
	for i := range 25 {
		f.set(t, "acme.ga", fmt.Sprintf("m%d", i+1), hdr("X-I", strconv.Itoa(i+1)))
	}
	t.Run("Pages", func(t *testing.T) {
		var got []string
		next := "1"
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("too many pages")
			}
			msgs, end := f.getAll(t, "acme.ga", `{"start_seq":`+next+`,"max_msgs":10}`)
			if werr := replyError(end); werr != nil {
				t.Fatal(werr)
			}
			for _, m := range msgs {
				if m.Header.Get("X-I") != m.Header.Get(subjects.HeaderSeq) {
					t.Fatalf("message headers %v", m.Header)
				}
				got = append(got, string(m.Data))
			}
			if end.Header.Get(subjects.HeaderLastSeq) != "25" || end.Header.Get(subjects.HeaderRevision) != "25" || len(end.Data) != 0 {
				t.Fatalf("terminator %v %q", end.Header, end.Data)
			}
			if end.Header.Get(subjects.HeaderNumPending) == "0" {
				if end.Header.Get(subjects.HeaderNextSeq) != "" {
					t.Fatalf("terminator %v has Next-Seq without pending", end.Header)
				}
				break
			}
			next = end.Header.Get(subjects.HeaderNextSeq)
		}
		if len(got) != 25 || got[0] != "m1" || got[24] != "m25" {
			t.Fatalf("read %v", got)
		}
	})
	t.Run("Range", func(t *testing.T) {
		msgs, end := f.getAll(t, "acme.ga", `{"start_seq":5,"end_seq":7,"max_bytes":1}`)
		if len(msgs) != 1 || string(msgs[0].Data) != "m5" {
			t.Fatalf("getall max_bytes 1 = %d msgs", len(msgs))
		}
		if end.Header.Get(subjects.HeaderNumPending) != "2" || end.Header.Get(subjects.HeaderNextSeq) != "6" {
			t.Fatalf("terminator %v, want 2 pending from 6", end.Header)
		}
		msgs, _ = f.getAll(t, "acme.ga", `{"max_msgs":1000000}`)
		if len(msgs) != 25 {
			t.Fatalf("getall capped = %d msgs, want 25", len(msgs))
		}
	})
	t.Run("BadBody", func(t *testing.T) {
		for _, body := range []string{`{"max_msgs":-1}`, `{"start_seq":1.5}`, `{"x":1}`, `[]`} {
			_, end := f.getAll(t, "acme.ga", body)
			if got := replyError(end); got == nil || got.Reason != "bad_request" {
				t.Errorf("getall %s: end %v, want bad_request", body, end.Header)
			}
		}
	})
}

func TestBroker_Delete(t *testing.T) {
	f := newFixture(t, Options{})
	var c struct{ Count int64 }
	f.call(t, subjects.OpDelete, "acme.del", `{"all":true}`, &c)
	if c.Count != 0 {
		t.Fatalf("delete on missing stream = %d", c.Count)
	}
	for i := range 10 {
		f.set(t, "acme.del", "x", hdr(subjects.HeaderKey, fmt.Sprintf("k%d", i)))
	}
	for _, tc := range []struct {
		body string
		want int64
	}{
		{`{"seq":1}`, 1}, {`{"seq":1}`, 0}, {`{"seqs":[2,3,99]}`, 2}, {`{"seqs":[]}`, 0},
		{`{"last_seq":5}`, 2}, {`{"key":"k9"}`, 1}, {`{"key":"k9"}`, 0}, {`{"all":true}`, 4},
	} {
		f.call(t, subjects.OpDelete, "acme.del", tc.body, &c)
		if c.Count != tc.want {
			t.Fatalf("delete %s = %d, want %d", tc.body, c.Count, tc.want)
		}
	}
	seqs := make([]string, 10001)
	for i := range seqs {
		seqs[i] = strconv.Itoa(i + 1)
	}
	for _, body := range []string{``, `{}`, `{"seq":1,"all":true}`, `{"all":false}`, `{"seq":-1}`, `{"key":""}`, `{"seqs":[` + strings.Join(seqs, ",") + `]}`} {
		f.callErr(t, subjects.OpDelete, "acme.del", body, nil, subjects.ErrBadRequest)
	}
	if r := f.set(t, "acme.del", "after", nil); r.Seq != 11 {
		t.Fatalf("set after delete all: seq %d, want 11", r.Seq)
	}
}

func TestBroker_Config(t *testing.T) {
	f := newFixture(t, Options{})
	var cfg store.Config
	f.call(t, subjects.OpConfig, "acme.c", ``, &cfg)
	if !sameConfig(cfg, subjects.DefaultConfig()) {
		t.Fatalf("config of missing stream = %+v, want defaults", cfg)
	}
	f.call(t, subjects.OpConfig, "acme.c", `{"max_msgs":-1,"sync":false}`, &cfg)
	if len(files(t, f.dir)) != 0 {
		t.Fatalf("config that changes nothing created %v", files(t, f.dir))
	}
	f.callErr(t, subjects.OpConfig, "acme.c", `{"max_msgs":"x"}`, nil, subjects.ErrBadRequest)
	f.callErr(t, subjects.OpConfig, "acme.c", `{"unknown":1}`, nil, subjects.ErrBadRequest)
	f.callErr(t, subjects.OpConfig, "acme.c", `{"max_msgs":0}`, nil, subjects.ErrBadRequest)
	if len(files(t, f.dir)) != 0 {
		t.Fatalf("bad config created %v", files(t, f.dir))
	}
	f.call(t, subjects.OpConfig, "acme.c", `{"max_msgs":5,"desc":{"a":1}}`, &cfg)
	if cfg.MaxMsgs != 5 || string(cfg.Desc) != `{"a":1}` {
		t.Fatalf("config = %+v", cfg)
	}
	var inv store.Inventory
	f.call(t, subjects.OpInventory, "acme.c", ``, &inv)
	if inv.Revision != 1 || inv.Limits["max_msgs"] != float64(5) {
		t.Fatalf("inventory after config = %+v", inv)
	}
	f.call(t, subjects.OpConfig, "acme.c", `{"max_msgs":5}`, &cfg)
	f.call(t, subjects.OpInventory, "acme.c", ``, &inv)
	if inv.Revision != 1 {
		t.Fatalf("unchanged config moved revision to %d", inv.Revision)
	}
	f.callErr(t, subjects.OpConfig, "acme.c", `{"storage":"memory"}`, nil, subjects.ErrBadRequest)
	var raw map[string]any
	f.call(t, subjects.OpConfig, "acme.c", ``, &raw)
	if len(raw) != 14 {
		t.Fatalf("config reply has %d fields, want 14: %v", len(raw), raw)
	}
}

func TestBroker_MemoryStream(t *testing.T) {
	f := newFixture(t, Options{MemoryQuota: 1000})
	var cfg store.Config
	f.call(t, subjects.OpConfig, "mem.a", `{"storage":"memory"}`, &cfg)
	if cfg.Storage != subjects.StorageMemory {
		t.Fatalf("storage = %q", cfg.Storage)
	}
	f.set(t, "mem.a", strings.Repeat("x", 600), nil)
	if got := files(t, f.dir); len(got) != 0 {
		t.Fatalf("memory stream wrote files %v", got)
	}
	var l subjects.ListReply
	f.call(t, subjects.OpList, "mem", ``, &l)
	if !slices.Equal(l.Streams, []string{"mem.a"}) {
		t.Fatalf("list = %v", l.Streams)
	}
	f.call(t, subjects.OpConfig, "mem.b", `{"storage":"memory"}`, nil)
	f.callErr(t, subjects.OpSet, "mem.b", strings.Repeat("y", 600), nil, subjects.ErrLimitReached)
	f.call(t, subjects.OpDestroy, "mem.a", ``, nil)
	f.set(t, "mem.b", strings.Repeat("y", 600), nil)
	f.callErr(t, subjects.OpGet, "mem.a", `{"seq":1}`, nil, subjects.ErrNotFound)
	if got := files(t, f.dir); len(got) != 0 {
		t.Fatalf("memory streams wrote files %v", got)
	}
}

func TestBroker_ReadsCreateNothing(t *testing.T) {
	f := newFixture(t, Options{})
	f.callErr(t, subjects.OpGet, "acme.x.y", `{"seq":1}`, nil, subjects.ErrNotFound)
	f.callErr(t, subjects.OpDestroy, "acme.x.y", ``, nil, subjects.ErrNotFound)
	f.getAll(t, "acme.x.y", ``)
	var inv map[string]any
	f.call(t, subjects.OpInventory, "acme.x.y", ``, &inv)
	want := map[string]any{"count": 0.0, "bytes": 0.0, "first_seq": 0.0, "last_seq": 0.0, "revision": 0.0, "limits": map[string]any{}}
	if fmt.Sprint(inv) != fmt.Sprint(want) {
		t.Fatalf("inventory = %v, want %v", inv, want)
	}
	m := f.call(t, subjects.OpKeys, "acme.x.y", ``, nil)
	if got := string(m.Data); got != `{"keys":[],"more":false}` {
		t.Fatalf("keys = %s", got)
	}
	m = f.call(t, subjects.OpDelete, "acme.x.y", `{"seq":1}`, nil)
	if got := string(m.Data); got != `{"count":0}` {
		t.Fatalf("delete = %s", got)
	}
	f.call(t, subjects.OpConfig, "acme.x.y", ``, nil)
	m = f.call(t, subjects.OpList, "acme", ``, nil)
	if got := string(m.Data); got != `{"streams":[],"more":false}` {
		t.Fatalf("list = %s", got)
	}
	if entries, _ := os.ReadDir(f.dir); len(entries) != 0 {
		t.Fatalf("reads created %v", entries)
	}
	if s := f.stats(t); s.OpenStreams != 0 {
		t.Fatalf("reads left %d streams open", s.OpenStreams)
	}
}

func TestBroker_InventoryKeys(t *testing.T) {
	f := newFixture(t, Options{})
	for _, k := range []string{"b", "a", "c", "d"} {
		f.set(t, "acme.ik", "12345", hdr(subjects.HeaderKey, k))
	}
	f.call(t, subjects.OpDelete, "acme.ik", `{"seq":1}`, nil)
	var inv store.Inventory
	f.call(t, subjects.OpInventory, "acme.ik", ``, &inv)
	if inv.Count != 3 || inv.Bytes != 18 || inv.FirstSeq != 2 || inv.LastSeq != 4 || inv.Revision != 5 || len(inv.Limits) != 0 {
		t.Fatalf("inventory = %+v", inv)
	}
	var k subjects.KeysReply
	f.call(t, subjects.OpKeys, "acme.ik", `{"limit":2}`, &k)
	if !slices.Equal(k.Keys, []string{"a", "c"}) || !k.More {
		t.Fatalf("keys = %+v", k)
	}
	f.call(t, subjects.OpKeys, "acme.ik", `{"after":"c"}`, &k)
	if !slices.Equal(k.Keys, []string{"d"}) || k.More {
		t.Fatalf("keys after c = %+v", k)
	}
	f.callErr(t, subjects.OpKeys, "acme.ik", `{"limit":-1}`, nil, subjects.ErrBadRequest)
}

func TestBroker_List(t *testing.T) {
	f := newFixture(t, Options{})
	for _, s := range []string{"acme", "acme.b", "acme.a", "acme.a.deep", "acmecorp.x", "other"} {
		f.set(t, s, "x", nil)
	}
	// Files that are not streams are ignored.
	os.WriteFile(filepath.Join(f.dir, "acme", "tmp.db.tmp"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(f.dir, "acme", "a.b.db"), []byte("x"), 0o644)
	var l subjects.ListReply
	f.call(t, subjects.OpList, "acme", ``, &l)
	if want := []string{"acme", "acme.a", "acme.a.deep", "acme.b"}; !slices.Equal(l.Streams, want) || l.More {
		t.Fatalf("list acme = %+v, want %v", l, want)
	}
	f.call(t, subjects.OpList, "acme", `{"after":"acme.a","limit":1}`, &l)
	if want := []string{"acme.a.deep"}; !slices.Equal(l.Streams, want) || !l.More {
		t.Fatalf("list acme after acme.a = %+v, want %v", l, want)
	}
	f.call(t, subjects.OpList, "acme.a", ``, &l)
	if want := []string{"acme.a", "acme.a.deep"}; !slices.Equal(l.Streams, want) {
		t.Fatalf("list acme.a = %+v, want %v", l, want)
	}
	f.callErr(t, subjects.OpList, "acme", `{"limit":"x"}`, nil, subjects.ErrBadRequest)
}

func TestBroker_Destroy(t *testing.T) {
	f := newFixture(t, Options{})
	f.set(t, "acme.d", "1", nil)
	f.set(t, "acme.d", "2", nil)
	m := f.call(t, subjects.OpDestroy, "acme.d", ``, nil)
	if string(m.Data) != `{"ok":true}` {
		t.Fatalf("destroy = %s", m.Data)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "acme", "d.db")); !os.IsNotExist(err) {
		t.Fatalf("file after destroy: %v", err)
	}
	f.callErr(t, subjects.OpDestroy, "acme.d", ``, nil, subjects.ErrNotFound)
	if r := f.set(t, "acme.d", "again", nil); r.Seq != 1 {
		t.Fatalf("set after destroy: seq %d, want 1", r.Seq)
	}
	var inv store.Inventory
	f.call(t, subjects.OpInventory, "acme.d", ``, &inv)
	if inv.Revision != 1 {
		t.Fatalf("revision after destroy and set = %d, want 1", inv.Revision)
	}
}

func TestBroker_Events(t *testing.T) {
	f := newFixture(t, Options{})
	sub, err := f.nc.SubscribeSync("persist.ev.acme.e")
	if err != nil {
		t.Fatal(err)
	}
	f.nc.Flush()
	f.call(t, subjects.OpConfig, "acme.e", `{"max_msgs":2}`, nil)
	f.set(t, "acme.e", "a", hdr("X-U", "u", subjects.HeaderKey, "k"))
	f.call(t, subjects.OpSetMany, "acme.e", `[{"data":"Yg=="},{"data":"Yw=="}]`, nil)
	f.call(t, subjects.OpDelete, "acme.e", `{"all":true}`, nil)
	f.call(t, subjects.OpDestroy, "acme.e", ``, nil)
	type ev struct{ op, body, reason string }
	want := []ev{
		{"config", "", ""},
		{"set", "a", ""},
		{"set", "b", ""},
		{"set", "c", ""},
		{"delete", `{"ranges":[[1,1]]}`, "max_msgs"},
		{"delete", `{"ranges":[[2,3]]}`, "request"},
		{"destroy", "", ""},
	}
	var got []ev
	for i := range want {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got := m.Header.Get(subjects.HeaderRevision); got != strconv.Itoa(i+1) {
			t.Fatalf("event %d revision %q, want %d", i, got, i+1)
		}
		e := ev{m.Header.Get(subjects.HeaderOp), string(m.Data), m.Header.Get(subjects.HeaderReason)}
		switch e.op {
		case "config":
			var cfg store.Config
			if err := json.Unmarshal(m.Data, &cfg); err != nil || cfg.MaxMsgs != 2 {
				t.Fatalf("config event body %s", m.Data)
			}
			e.body = ""
		case "set":
			if m.Header.Get(subjects.HeaderSeq) == "" || m.Header.Get(subjects.HeaderTime) == "" {
				t.Fatalf("set event without seq or time: %v", m.Header)
			}
		}
		if i == 1 && (m.Header.Get("X-U") != "u" || m.Header.Get(subjects.HeaderKey) != "k" || m.Header.Get(subjects.HeaderSeq) != "1") {
			t.Fatalf("set event headers %v", m.Header)
		}
		got = append(got, e)
	}
	// The set of c and the removal it causes are one commit; the store
	// decides their order within it.
	if got[3].op == "delete" {
		got[3], got[4] = got[4], got[3]
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events\n%v\nwant\n%v", got, want)
	}
	if s := f.stats(t); s.EventsPublished != uint64(len(want)) {
		t.Fatalf("events published = %d, want %d", s.EventsPublished, len(want))
	}
}

func TestBroker_GroupCommit(t *testing.T) {
	f := newFixture(t, Options{})
	f.call(t, subjects.OpConfig, "acme.gc", `{"sync":true}`, nil)
	const n = 64
	var wg sync.WaitGroup
	replies := make([]subjects.SetReply, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			m, err := f.nc.Request("persist.api.set.acme.gc", []byte(strconv.Itoa(i)), 10*time.Second)
			if err == nil {
				if werr := replyError(m); werr != nil {
					err = werr
				} else {
					err = json.Unmarshal(m.Data, &replies[i])
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	seen := map[uint64]int{}
	for i, r := range replies {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if r.Seq < 1 || r.Seq > n {
			t.Fatalf("request %d: seq %d", i, r.Seq)
		}
		if j, dup := seen[r.Seq]; dup {
			t.Fatalf("requests %d and %d both got seq %d", i, j, r.Seq)
		}
		seen[r.Seq] = i
	}
	for seq, i := range seen {
		m := f.call(t, subjects.OpGet, "acme.gc", fmt.Sprintf(`{"seq":%d}`, seq), nil)
		if string(m.Data) != strconv.Itoa(i) {
			t.Fatalf("seq %d holds %q, want request %d's payload", seq, m.Data, i)
		}
	}
	s := f.stats(t)
	if s.CommittedRequests != n || s.CommittedItems != n {
		t.Fatalf("stats %+v, want %d committed requests and items", s, n)
	}
	t.Logf("group commit: %d requests in %d commits", n, s.Commits)
	if s.Commits >= n {
		t.Fatalf("stats %+v: %d commits for %d requests, want fewer", s, s.Commits, n)
	}
}

func TestBroker_Order(t *testing.T) {
	f := newFixture(t, Options{})
	// Requests published without waiting are applied in arrival order,
	// mixed kinds included.
	inbox := nats.NewInbox()
	sub, _ := f.nc.SubscribeSync(inbox)
	const n = 200
	for i := range n {
		op := subjects.OpSet
		body := strconv.Itoa(i)
		if i%10 == 9 {
			op, body = subjects.OpInventory, ""
		}
		f.nc.PublishRequest("persist.api."+op+".acme.o", inbox, []byte(body))
	}
	var lastSeq uint64
	for range n {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Seq     uint64 `json:"seq"`
			LastSeq uint64 `json:"last_seq"`
		}
		json.Unmarshal(m.Data, &r)
		seq := max(r.Seq, r.LastSeq)
		if seq < lastSeq {
			t.Fatalf("reply seq %d after %d", seq, lastSeq)
		}
		lastSeq = seq
	}
	for i := range n - n/10 {
		m := f.call(t, subjects.OpGet, "acme.o", fmt.Sprintf(`{"seq":%d}`, i+1), nil)
		if want := strconv.Itoa(i + i/9); string(m.Data) != want {
			t.Fatalf("seq %d = %q, want %q", i+1, m.Data, want)
		}
	}
}

func TestBroker_IdleClose(t *testing.T) {
	f := newFixture(t, Options{IdleTimeout: time.Minute})
	f.set(t, "acme.i", "1", nil)
	f.call(t, subjects.OpConfig, "mem.i", `{"storage":"memory"}`, nil)
	if s := f.stats(t); s.OpenStreams != 2 || s.OpenFiles != 1 {
		t.Fatalf("stats %+v, want 2 open streams, 1 file", s)
	}
	f.quiet(t)
	f.clock.advance(30 * time.Second)
	f.b.closeIdle()
	if s := f.stats(t); s.OpenFiles != 1 {
		t.Fatalf("stream closed before its idle timeout: %+v", s)
	}
	f.clock.advance(31 * time.Second)
	f.b.closeIdle()
	if s := f.stats(t); s.OpenStreams != 1 || s.OpenFiles != 0 {
		t.Fatalf("stats %+v after idle timeout, want only the memory stream open", s)
	}
	r := f.set(t, "acme.i", "2", nil)
	var inv store.Inventory
	f.call(t, subjects.OpInventory, "acme.i", ``, &inv)
	if r.Seq != 2 || inv.Revision != 2 || inv.Count != 2 {
		t.Fatalf("after reopen: seq %d, inventory %+v", r.Seq, inv)
	}

	t.Run("Memory", func(t *testing.T) {
		f := newFixture(t, Options{MemoryIdleTimeout: time.Minute})
		sub, err := f.nc.SubscribeSync(subjects.EventSubject(subjects.DefaultPrefix, "mem.i"))
		if err != nil {
			t.Fatal(err)
		}
		f.nc.Flush()
		f.call(t, subjects.OpConfig, "mem.i", `{"storage":"memory"}`, nil)
		f.quiet(t)
		f.clock.advance(time.Minute)
		f.b.closeIdle()
		f.callErr(t, subjects.OpGet, "mem.i", `{"seq":1}`, nil, subjects.ErrNotFound)
		// Mirrors learn that the stream is gone: config (1), destroy (2).
		for _, want := range []struct{ op, rev string }{{"config", "1"}, {"destroy", "2"}} {
			m, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("waiting for the %s event: %v", want.op, err)
			}
			if got := m.Header.Get(subjects.HeaderOp); got != want.op || m.Header.Get(subjects.HeaderRevision) != want.rev {
				t.Fatalf("event %s revision %s, want %s revision %s", got, m.Header.Get(subjects.HeaderRevision), want.op, want.rev)
			}
		}
	})
	t.Run("Janitor", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.b.Shutdown(context.Background())
		f.start(t, Options{IdleTimeout: 20 * time.Millisecond}, hooks{})
		f.set(t, "acme.j", "1", nil)
		waitFor(t, "the janitor to close an idle stream", func() bool { return f.stats(t).OpenFiles == 0 })
		if r := f.set(t, "acme.j", "2", nil); r.Seq != 2 {
			t.Fatalf("seq after reopen = %d", r.Seq)
		}
	})
}

func TestBroker_MaxOpen(t *testing.T) {
	f := newFixture(t, Options{MaxOpen: 2})
	for _, s := range []string{"a.1", "a.2", "a.3"} {
		f.set(t, s, "x", nil)
		f.clock.advance(time.Second)
	}
	waitFor(t, "eviction", func() bool { return f.stats(t).OpenFiles == 2 })
	before := f.stats(t).CacheMisses
	f.set(t, "a.3", "y", nil) // still open
	f.set(t, "a.2", "y", nil) // still open
	if got := f.stats(t).CacheMisses; got != before {
		t.Fatalf("recently used streams were closed: misses %d -> %d", before, got)
	}
	if r := f.set(t, "a.1", "y", nil); r.Seq != 2 { // the least recently used was closed
		t.Fatalf("a.1 seq = %d, want 2", r.Seq)
	}
	if got := f.stats(t).CacheMisses; got != before+1 {
		t.Fatalf("a.1 should have been closed: misses %d -> %d", before, got)
	}
	// Memory streams do not count against MaxOpen.
	f.call(t, subjects.OpConfig, "m.1", `{"storage":"memory"}`, nil)
	f.call(t, subjects.OpConfig, "m.2", `{"storage":"memory"}`, nil)
	f.call(t, subjects.OpConfig, "m.3", `{"storage":"memory"}`, nil)
	waitFor(t, "eviction", func() bool { s := f.stats(t); return s.OpenFiles == 2 && s.OpenStreams == 5 })
}

func TestBroker_StreamQuota(t *testing.T) {
	dir := t.TempDir()
	// Streams left by an earlier run count.
	f := newFixture(t, Options{DataDir: dir})
	f.set(t, "acme", "x", nil)
	f.set(t, "acme.a.b", "x", nil)
	f.set(t, "other.a", "x", nil)
	f.b.Shutdown(context.Background())
	f.start(t, Options{MaxStreamsPerNamespace: 3}, hooks{now: f.clock.now, noJanitor: true})
	f.call(t, subjects.OpConfig, "acme.m", `{"storage":"memory"}`, nil)
	f.callErr(t, subjects.OpSet, "acme.c", "x", nil, subjects.ErrTooManyStreams)
	f.callErr(t, subjects.OpConfig, "acme.c", `{"max_msgs":3}`, nil, subjects.ErrTooManyStreams)
	f.set(t, "acme", "more", nil) // existing streams still take writes
	f.set(t, "other.b", "x", nil)
	f.call(t, subjects.OpDestroy, "acme.m", ``, nil)
	f.set(t, "acme.c", "x", nil)
	f.callErr(t, subjects.OpSet, "acme.d", "x", nil, subjects.ErrTooManyStreams)
	// A setmany that writes nothing does not keep its slot.
	f.call(t, subjects.OpDestroy, "acme.c", ``, nil)
	f.call(t, subjects.OpSetMany, "acme.e", `[{"data":"","key":"k","previous_seq":9}]`, nil)
	f.set(t, "acme.f", "x", nil)
}

func TestBroker_GlobalStreamQuota(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, Options{DataDir: dir})
	f.set(t, "acme", "x", nil)
	f.set(t, "other.a.b", "x", nil)
	f.b.Shutdown(context.Background())
	// Both quotas at once: the namespace's is not used up by a refusal of
	// the worker's.
	f.start(t, Options{MaxStreams: 4, MaxStreamsPerNamespace: 2}, hooks{now: f.clock.now, noJanitor: true})
	f.call(t, subjects.OpConfig, "third.m", `{"storage":"memory"}`, nil)
	f.set(t, "fourth", "x", nil)
	f.callErr(t, subjects.OpSet, "acme.b", "x", nil, subjects.ErrTooManyStreams)
	f.callErr(t, subjects.OpSet, "fifth", "x", nil, subjects.ErrTooManyStreams)
	f.set(t, "acme", "more", nil) // existing streams still take writes
	f.call(t, subjects.OpDestroy, "fourth", ``, nil)
	f.set(t, "acme.b", "x", nil)
	f.callErr(t, subjects.OpSet, "acme.c", "x", nil, subjects.ErrTooManyStreams) // the namespace's quota
	f.call(t, subjects.OpDestroy, "third.m", ``, nil)
	f.callErr(t, subjects.OpSet, "acme.c", "x", nil, subjects.ErrTooManyStreams) // still the namespace's
	f.set(t, "fifth", "x", nil)
}

// TestBroker_QuotaCountDuringDestroy counts a namespace for the first time
// while a destroy in it has removed its file but not yet given its count
// back: the count must not miss the stream and then lose it again.
func TestBroker_QuotaCountDuringDestroy(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, Options{DataDir: dir})
	f.set(t, "acme.a", "x", nil)
	f.b.Shutdown(context.Background())
	var once sync.Once
	done := make(chan error, 1)
	f.start(t, Options{MaxStreamsPerNamespace: 2}, hooks{now: f.clock.now, noJanitor: true, retired: func(string) {
		once.Do(func() {
			// The first creation in acme counts it now, from another
			// connection, while the destroy is between its two steps.
			go func() {
				_, err := f.nc.Request(subjects.APISubject(subjects.DefaultPrefix, subjects.OpSet, "acme.b"), []byte("x"), 5*time.Second)
				done <- err
			}()
			time.Sleep(100 * time.Millisecond)
		})
	}})
	f.call(t, subjects.OpDestroy, "acme.a", ``, nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.set(t, "acme.c", "x", nil) // acme.b and acme.c: the quota is full
	f.callErr(t, subjects.OpSet, "acme.d", "x", nil, subjects.ErrTooManyStreams)
}

func TestBroker_Damaged(t *testing.T) {
	f := newFixture(t, Options{})
	path := filepath.Join(f.dir, "acme", "bad.db")
	os.MkdirAll(filepath.Dir(path), 0o755)
	junk := []byte(strings.Repeat("this is not a database ", 300))
	if err := os.WriteFile(path, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	f.callErr(t, subjects.OpSet, "acme.bad", "x", nil, subjects.ErrDamaged)
	f.callErr(t, subjects.OpSetMany, "acme.bad", `[{"data":""},{"data":""}]`, nil, subjects.ErrDamaged)
	f.callErr(t, subjects.OpGet, "acme.bad", `{"seq":1}`, nil, subjects.ErrDamaged)
	f.callErr(t, subjects.OpInventory, "acme.bad", ``, nil, subjects.ErrDamaged)
	f.callErr(t, subjects.OpConfig, "acme.bad", `{"max_msgs":1}`, nil, subjects.ErrDamaged)
	_, end := f.getAll(t, "acme.bad", ``)
	if got := replyError(end); got == nil || got.Reason != "damaged" {
		t.Fatalf("getall on damaged stream ended with %v", end.Header)
	}
	f.set(t, "acme.good", "x", nil)
	if got, _ := os.ReadFile(path); string(got) != string(junk) {
		t.Fatal("damaged file was changed")
	}
	// The operator removes it; the next request works.
	os.Remove(path)
	if r := f.set(t, "acme.bad", "x", nil); r.Seq != 1 {
		t.Fatalf("set after repair: seq %d", r.Seq)
	}
}

func TestBroker_Panic(t *testing.T) {
	f := newFixture(t, Options{})
	f.b.Shutdown(context.Background())
	f.start(t, Options{}, hooks{noJanitor: true, beforeJob: func(op, stream string) {
		if stream == "acme.boom" {
			panic("boom")
		}
	}})
	f.callErr(t, subjects.OpSet, "acme.boom", "x", nil, subjects.ErrInternal)
	f.callErr(t, subjects.OpGet, "acme.boom", `{"seq":1}`, nil, subjects.ErrInternal)
	f.set(t, "acme.ok", "x", nil)
	f.set(t, "acme.ok", "y", nil)

	t.Run("Handler", func(t *testing.T) {
		f.b.Shutdown(context.Background())
		f.start(t, Options{}, hooks{noJanitor: true, onRequest: func(op, stream string) {
			if stream == "acme.boom" {
				panic("boom")
			}
		}})
		f.callErr(t, subjects.OpSet, "acme.boom", "x", nil, subjects.ErrInternal)
		f.callErr(t, subjects.OpList, "acme.boom", "", nil, subjects.ErrInternal)
		if r := f.set(t, "acme.ok", "z", nil); r.Seq != 3 {
			t.Fatalf("set after panic: seq %d, want 3", r.Seq)
		}
	})
}

func TestBroker_Shutdown(t *testing.T) {
	f := newFixture(t, Options{})
	f.call(t, subjects.OpConfig, "acme.sd", `{"sync":true}`, nil)
	inbox := nats.NewInbox()
	sub, _ := f.nc.SubscribeSync(inbox)
	const n = 300
	for i := range n {
		stream := fmt.Sprintf("acme.sd%d", i%3)
		f.nc.PublishRequest("persist.api.set."+stream, inbox, []byte(strconv.Itoa(i)))
	}
	f.nc.Flush()
	// Wait until the worker has taken at least one request, then stop it
	// with the rest in flight.
	waitFor(t, "a commit", func() bool { return f.stats(t).Commits > 0 })
	if err := f.b.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	if err := f.b.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown() = %v", err)
	}
	acked := 0
	for range n {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d replies: %v", acked, err)
		}
		if werr := replyError(m); werr != nil {
			t.Fatalf("reply %v", werr)
		}
		acked++
	}
	// Every acknowledged write is there after a restart.
	f.start(t, Options{}, hooks{noJanitor: true})
	total := 0
	for i := range 3 {
		var inv store.Inventory
		f.call(t, subjects.OpInventory, fmt.Sprintf("acme.sd%d", i), ``, &inv)
		total += int(inv.Count)
	}
	if total != acked {
		t.Fatalf("%d writes acknowledged, %d stored", acked, total)
	}
}

func TestBroker_ShutdownAnswersQueued(t *testing.T) {
	f := newFixture(t, Options{})
	f.b.Shutdown(context.Background())
	release := make(chan struct{})
	var once sync.Once
	started := make(chan struct{})
	f.start(t, Options{}, hooks{noJanitor: true, beforeJob: func(op, stream string) {
		once.Do(func() { close(started); <-release })
	}})
	inbox := nats.NewInbox()
	sub, _ := f.nc.SubscribeSync(inbox)
	for i := range 50 {
		f.nc.PublishRequest("persist.api.set.acme.q", inbox, []byte(strconv.Itoa(i)))
	}
	f.nc.Flush()
	<-started
	done := make(chan error)
	go func() { done <- f.b.Shutdown(context.Background()) }()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seqs := map[uint64]bool{}
	for range 50 {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d replies: %v", len(seqs), err)
		}
		var r subjects.SetReply
		if werr := replyError(m); werr != nil {
			t.Fatalf("reply %v", werr)
		}
		json.Unmarshal(m.Data, &r)
		seqs[r.Seq] = true
	}
	if len(seqs) != 50 {
		t.Fatalf("%d distinct seqs, want 50", len(seqs))
	}
	f.start(t, Options{}, hooks{noJanitor: true})
	var inv store.Inventory
	f.call(t, subjects.OpInventory, "acme.q", ``, &inv)
	if inv.Count != 50 {
		t.Fatalf("count after restart = %d, want 50", inv.Count)
	}
}

// TestBroker_QueueLimits holds every stream's first job and checks that
// requests past a queue limit are answered 429 at once, and the others
// normally once the work goes on.
func TestBroker_QueueLimits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limits  queueLimits
		streams []string // each request goes to the next, round robin
		hdr     nats.Header
		sent    int
		wantOK  int
	}{
		// The first job of a stream is taken off its queue before it is
		// held, so a stream takes one more than its queue holds.
		{"PerStream", queueLimits{perStream: 3, all: 1000, allBytes: 1 << 20}, []string{"acme.q"}, nil, 10, 4},
		{"All", queueLimits{perStream: 1000, all: 4, allBytes: 1 << 20}, []string{"acme.a", "acme.b"}, nil, 10, 6},
		// 10-byte bodies and the 18-byte reply subject: two fit.
		{"AllBytes", queueLimits{perStream: 1000, all: 1000, allBytes: 61}, []string{"acme.a", "acme.b"}, nil, 10, 4},
		// The headers count too: 28 bytes and a 35-byte header, one fits.
		{"AllBytesHeaders", queueLimits{perStream: 1000, all: 1000, allBytes: 100}, []string{"acme.a", "acme.b"},
			nats.Header{"X-Pad": {"012345678901234567890123456789"}}, 10, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			f.b.Shutdown(context.Background())
			release := make(chan struct{})
			held := make(chan struct{}, len(tc.streams))
			seen := map[string]bool{}
			var mu sync.Mutex
			f.start(t, Options{}, hooks{noJanitor: true, queues: tc.limits, beforeJob: func(op, stream string) {
				mu.Lock()
				first := !seen[stream]
				seen[stream] = true
				mu.Unlock()
				if first {
					held <- struct{}{}
					<-release
				}
			}})
			inbox := "queue.limits.reply"
			sub, _ := f.nc.SubscribeSync(inbox)
			for i := range tc.sent {
				stream := tc.streams[i%len(tc.streams)]
				f.nc.PublishMsg(&nats.Msg{
					Subject: subjects.APISubject(subjects.DefaultPrefix, subjects.OpSet, stream),
					Reply:   inbox, Data: fmt.Appendf(nil, "%010d", i), Header: tc.hdr,
				})
				if i < len(tc.streams) {
					f.nc.Flush()
					<-held // the stream's goroutine holds its first job
				}
			}
			f.nc.Flush()
			busy := 0
			for range tc.sent - tc.wantOK {
				m, err := sub.NextMsg(5 * time.Second)
				if err != nil {
					t.Fatalf("after %d refusals: %v", busy, err)
				}
				if werr := replyError(m); werr == nil || werr.Code != 429 || werr.Reason != "overloaded" {
					t.Fatalf("reply while held = %v, want 429 overloaded", werr)
				}
				busy++
			}
			close(release)
			for range tc.wantOK {
				m, err := sub.NextMsg(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if werr := replyError(m); werr != nil {
					t.Fatalf("reply after release = %v, want a set reply", werr)
				}
			}
		})
	}
}

func TestBroker_ShutdownDeadline(t *testing.T) {
	f := newFixture(t, Options{})
	f.b.Shutdown(context.Background())
	release := make(chan struct{})
	var once sync.Once
	started := make(chan struct{})
	f.start(t, Options{}, hooks{noJanitor: true, beforeJob: func(op, stream string) {
		if op == subjects.OpInventory {
			once.Do(func() { close(started); <-release })
		}
	}})
	inbox := nats.NewInbox()
	sub, _ := f.nc.SubscribeSync(inbox)
	const n = 20
	// Reads are applied one at a time, so the first blocks the others.
	f.set(t, "acme.dl", "x", nil)
	for range n {
		f.nc.PublishRequest("persist.api.inventory.acme.dl", inbox, nil)
	}
	f.nc.Flush()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error)
	go func() { done <- f.b.Shutdown(ctx) }()
	waitFor(t, "Shutdown to stop taking requests", func() bool {
		return f.b.closed.Load()
	})
	close(release)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown(done context) = %v, want context.Canceled", err)
	}
	ok, unavailable := 0, 0
	for range n {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d replies: %v", ok+unavailable, err)
		}
		switch werr := replyError(m); {
		case werr == nil:
			ok++
		case werr.Reason == "unavailable":
			unavailable++
		default:
			t.Fatalf("reply %v", werr)
		}
	}
	if unavailable == 0 {
		t.Fatalf("%d requests answered, none unavailable after the deadline", ok)
	}
}

func TestBroker_Stats(t *testing.T) {
	f := newFixture(t, Options{})
	f.set(t, "acme.st", "x", nil)
	f.callErr(t, subjects.OpGet, "acme.st", `{}`, nil, subjects.ErrBadRequest)
	// Served to `nats micro stats` through $SRV.STATS.
	m, err := f.nc.Request("$SRV.STATS.persist", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Endpoints []struct {
			Name string `json:"name"`
			Data Stats  `json:"data"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(m.Data, &st); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, ep := range st.Endpoints {
		switch ep.Name {
		case subjects.OpGet:
			found++
			if ep.Data.Errors != 1 {
				t.Errorf("get errors = %d, want 1", ep.Data.Errors)
			}
		case subjects.OpSet:
			found++
			if ep.Data.Commits != 1 || ep.Data.OpenStreams != 1 || ep.Data.CacheMisses != 1 {
				t.Errorf("set stats = %+v", ep.Data)
			}
		}
	}
	if found != 2 {
		t.Fatalf("stats endpoints %s", m.Data)
	}
}

func TestBroker_Tiered(t *testing.T) {
	archive, backup := t.TempDir(), t.TempDir()
	f := newFixture(t, Options{ArchiveDir: archive, BackupDir: backup})
	f.set(t, "acme.t.x", "1", nil)
	f.set(t, "acme.t.x", "2", nil)
	if err := f.b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join("acme", "t", "x.db")
	for _, dir := range []string{archive, backup} {
		if !slices.Contains(files(t, dir), rel) {
			t.Fatalf("%s holds %v, want %s", dir, files(t, dir), rel)
		}
	}
	// The local copy is a cache: without it the stream is listed and
	// restored from the archive.
	if err := os.RemoveAll(filepath.Join(f.dir, "acme")); err != nil {
		t.Fatal(err)
	}
	f.start(t, Options{ArchiveDir: archive, BackupDir: backup}, hooks{noJanitor: true})
	var l subjects.ListReply
	f.call(t, subjects.OpList, "acme", ``, &l)
	if !slices.Equal(l.Streams, []string{"acme.t.x"}) {
		t.Fatalf("list = %v", l.Streams)
	}
	if r := f.set(t, "acme.t.x", "3", nil); r.Seq != 3 {
		t.Fatalf("set after restore: seq %d, want 3", r.Seq)
	}
}

func TestBroker_TooLargeToSend(t *testing.T) {
	f := newFixture(t, Options{})
	max := int(f.bnc.MaxPayload())
	t.Run("Set", func(t *testing.T) {
		// The request fits, but the stored message with Persist-Seq and
		// Persist-Time added would not: it could never be read back.
		data := strings.Repeat("a", max-100)
		f.callErr(t, subjects.OpSet, "acme.big", data, hdr("X-H", strings.Repeat("h", 40)), subjects.ErrMsgTooLarge)
		var inv store.Inventory
		f.call(t, subjects.OpInventory, "acme.big", "", &inv)
		if inv.LastSeq != 0 {
			t.Fatalf("inventory last_seq = %d, want 0 (nothing written)", inv.LastSeq)
		}
		if r := f.set(t, "acme.big", strings.Repeat("a", max-1000), nil); r.Seq != 1 {
			t.Fatalf("set seq = %d, want 1", r.Seq)
		}
	})
	t.Run("SetMany", func(t *testing.T) {
		big := strings.Repeat("h", max-200)
		body := `[{"data":"","headers":{"X-H":["` + big + `"]}},{"data":"YQ=="}]`
		var res []json.RawMessage
		f.call(t, subjects.OpSetMany, "acme.bigmany", body, &res)
		if len(res) != 2 || !strings.Contains(string(res[0]), `"code":413`) || !strings.Contains(string(res[1]), `"seq":1`) {
			t.Fatalf("setmany = %s, want 413 then seq 1", res)
		}
	})
	t.Run("GetStored", func(t *testing.T) {
		// A message stored without the check (by an older worker) is
		// answered with an error instead of no reply at all.
		path := filepath.Join(f.dir, subjects.Path("acme.old"))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(path, store.Options{Create: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Append([]store.Write{{Data: []byte(strings.Repeat("a", max))}}); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		f.callErr(t, subjects.OpGet, "acme.old", `{"seq":1}`, nil, subjects.ErrInternal)
	})
}

func TestBroker_FailedWriteLeavesNoDirectory(t *testing.T) {
	f := newFixture(t, Options{})
	f.set(t, "acme.keep", "x", nil)
	f.callErr(t, subjects.OpSet, "acme.x.y.z", "v", hdr(subjects.HeaderKey, "k", subjects.HeaderPreviousSeq, "5"), subjects.ErrWrongLastSequence)
	f.callErr(t, subjects.OpSet, "other.y", "v", hdr(subjects.HeaderTTL, "5s"), subjects.ErrTTLDisabled)
	var res []json.RawMessage
	f.call(t, subjects.OpSetMany, "third.z", `[{"data":"","key":"k","previous_seq":3}]`, &res)
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got, want := names, []string{"acme"}; !slices.Equal(got, want) {
		t.Fatalf("data dir holds %q, want %q", got, want)
	}
	if got, want := files(t, f.dir), []string{filepath.Join("acme", "keep.db")}; !slices.Equal(slices.DeleteFunc(got, func(s string) bool { return strings.Contains(s, ".db-") }), want) {
		t.Fatalf("files = %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "acme", "x")); !os.IsNotExist(err) {
		t.Fatalf("acme/x after a failed write: %v", err)
	}
	t.Run("Destroy", func(t *testing.T) {
		f.set(t, "gone.a.b", "x", nil)
		f.call(t, subjects.OpDestroy, "gone.a.b", ``, nil)
		if _, err := os.Stat(filepath.Join(f.dir, "gone")); !os.IsNotExist(err) {
			t.Fatalf("gone/ after destroy: %v", err)
		}
		if r := f.set(t, "gone.a.b", "again", nil); r.Seq != 1 {
			t.Fatalf("set after destroy: seq %d, want 1", r.Seq)
		}
	})
}

func TestBroker_FailedWriteLeavesNoArchiveCopy(t *testing.T) {
	archive, backup := t.TempDir(), t.TempDir()
	opts := Options{ArchiveDir: archive, BackupDir: backup}
	f := newFixture(t, opts)
	// A destroyed stream's backup is kept; a later failed write on its name
	// must not overwrite it with an empty copy.
	f.set(t, "acme.gone", "x", nil)
	f.call(t, subjects.OpDestroy, "acme.gone", ``, nil)
	kept, err := os.ReadFile(filepath.Join(backup, subjects.Path("acme.gone")))
	if err != nil {
		t.Fatal(err)
	}
	f.callErr(t, subjects.OpSet, "acme.gone", "v", hdr(subjects.HeaderKey, "k", subjects.HeaderPreviousSeq, "5"), subjects.ErrWrongLastSequence)
	var res []json.RawMessage
	f.call(t, subjects.OpSetMany, "acme.new", `[{"data":"","key":"k","previous_seq":3}]`, &res)
	if got := files(t, archive); len(got) != 0 {
		t.Fatalf("archive holds %v after writes that wrote nothing, want nothing", got)
	}
	if got, err := os.ReadFile(filepath.Join(backup, subjects.Path("acme.gone"))); err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("backup of the destroyed stream changed (err %v)", err)
	}
	if got := files(t, backup); !slices.Equal(got, []string{subjects.Path("acme.gone")}) {
		t.Fatalf("backup holds %v, want only the destroyed stream's copy", got)
	}
	var l subjects.ListReply
	f.call(t, subjects.OpList, "acme", ``, &l)
	if len(l.Streams) != 0 {
		t.Fatalf("list = %v, want no streams", l.Streams)
	}
}
