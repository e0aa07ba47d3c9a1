package broker

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

func TestEncode_SetReplyAsJSON(t *testing.T) {
	for _, r := range []store.WriteResult{
		{Seq: 1, Time: 1764100000000},
		{Seq: 1<<64 - 1, Time: -1, Duplicate: true},
		{},
	} {
		want, err := jsonMarshal(subjects.SetReply{Seq: r.Seq, Time: r.Time, Duplicate: r.Duplicate})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendSetReply(nil, r); string(got) != string(want) {
			t.Errorf("appendSetReply(%+v) = %s, want %s", r, got, want)
		}
	}
}

func TestEncode_ErrorAsJSON(t *testing.T) {
	for _, we := range []*subjects.Error{
		subjects.ErrNotFound,
		subjects.ErrWrongLastSequence.WithDescription(`key "a<b>&c" has seq 3`),
		badRequest("tab\there, new\nline, \x00, \u2028, é, \xff bad utf-8"),
	} {
		want, err := jsonMarshal(subjects.ErrorReply{Error: we})
		if err != nil {
			t.Fatal(err)
		}
		got := append(appendError([]byte(`{"error":`), we), '}')
		if string(got) != string(want) {
			t.Errorf("appendError(%+v) = %s, want %s", we, got, want)
		}
	}
}

func FuzzEncode_String(f *testing.F) {
	for _, s := range []string{"", "plain", `"quoted"`, `back\slash`, "\x01\x7f", "<&>", "é\u2028\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := jsonMarshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString(nil, s); string(got) != string(want) {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func TestEncode_RangesAsJSON(t *testing.T) {
	for _, ranges := range [][][2]uint64{nil, {}, {{1, 1}}, {{1, 5}, {7, 1<<64 - 1}}} {
		rs := ranges
		if rs == nil {
			rs = [][2]uint64{}
		}
		want, err := json.Marshal(map[string][][2]uint64{"ranges": rs})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendRanges(nil, ranges); string(got) != string(want) {
			t.Errorf("appendRanges(%v) = %s, want %s", ranges, got, want)
		}
	}
}

// TestEncode_ReusedHeader checks that one encoder, reused message after
// message, gives each the header a fresh map would have: nothing of the
// previous message stays.
func TestEncode_ReusedHeader(t *testing.T) {
	msgs := []*store.Message{
		{Seq: 7, Time: 1764100000000, Key: "k", Expires: 1764100090000, Header: map[string][]string{"A": {"1", "2"}}},
		{Seq: 8, Time: 1764100000001},
		{Seq: 123456789012, Time: 5, Header: map[string][]string{"B": {"x"}}},
	}
	want := func(m *store.Message) nats.Header {
		h := nats.Header{}
		for k, v := range m.Header {
			h[k] = v
		}
		h[subjects.HeaderSeq] = []string{strconv.FormatUint(m.Seq, 10)}
		h[subjects.HeaderTime] = []string{strconv.FormatInt(m.Time, 10)}
		if m.Key != "" {
			h[subjects.HeaderKey] = []string{m.Key}
		}
		if m.Expires != 0 {
			h[subjects.HeaderExpires] = []string{strconv.FormatInt(m.Expires, 10)}
		}
		return h
	}
	e := getEncoder()
	defer putEncoder(e)
	for _, m := range msgs {
		e.reset()
		e.message(m)
		if got := e.header(); !reflect.DeepEqual(got, want(m)) {
			t.Errorf("header of %+v = %v, want %v", m, got, want(m))
		}
	}
	r := store.ReadResult{LastSeq: 9, Revision: 12, NumPending: 3, NextSeq: 10}
	e.reset()
	e.terminator(r)
	wantEnd := nats.Header{
		subjects.HeaderEnd:        {"true"},
		subjects.HeaderLastSeq:    {"9"},
		subjects.HeaderRevision:   {"12"},
		subjects.HeaderNumPending: {"3"},
		subjects.HeaderNextSeq:    {"10"},
	}
	if got := e.header(); !reflect.DeepEqual(got, wantEnd) {
		t.Errorf("terminator(%+v) = %v, want %v", r, got, wantEnd)
	}
	e.reset()
	e.errorReply(subjects.ErrOverloaded)
	wantErr := nats.Header{micro.ErrorHeader: {subjects.ErrOverloaded.Description}, micro.ErrorCodeHeader: {"429"}}
	if got := e.header(); !reflect.DeepEqual(got, wantErr) {
		t.Errorf("errorReply header = %v, want %v", got, wantErr)
	}
}

// BenchmarkEncode_GetAllMessage measures building the header of one getall
// message and encoding it as nats.go does.
func BenchmarkEncode_GetAllMessage(b *testing.B) {
	m := &store.Message{Seq: 123456, Time: 1764100000000, Key: "some.key", Data: []byte("0123456789abcdef")}
	e := getEncoder()
	defer putEncoder(e)
	b.ReportAllocs()
	for b.Loop() {
		e.reset()
		e.message(m)
		msg := nats.Msg{Subject: "_INBOX.x", Header: e.h, Data: m.Data}
		_ = msg.Size()
	}
}

// TestEncode_GetAllHeadersFromTheWire checks on the wire that a getall
// page, whose messages share one header map, gives each message exactly
// its own headers: nothing of the message before it.
func TestEncode_GetAllHeadersFromTheWire(t *testing.T) {
	f := newFixture(t, Options{})
	f.call(t, subjects.OpSetMany, "acme.h", `[
		{"data":"","key":"a","headers":{"X-One":["1","2"]}},
		{"data":"eA=="},
		{"data":"","key":"b"},
		{"data":"","headers":{"X-Two":["3"]}}
	]`, nil)
	msgs, end := f.getAll(t, "acme.h", ``)
	want := []map[string][]string{
		{subjects.HeaderKey: {"a"}, "X-One": {"1", "2"}},
		{},
		{subjects.HeaderKey: {"b"}},
		{"X-Two": {"3"}},
	}
	if len(msgs) != len(want) {
		t.Fatalf("getall sent %d messages, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		h := map[string][]string{}
		for k, v := range m.Header {
			h[k] = v
		}
		if got := h[subjects.HeaderSeq]; !reflect.DeepEqual(got, []string{strconv.Itoa(i + 1)}) {
			t.Errorf("message %d: %s = %v", i, subjects.HeaderSeq, got)
		}
		if len(h[subjects.HeaderTime]) != 1 {
			t.Errorf("message %d: %s = %v", i, subjects.HeaderTime, h[subjects.HeaderTime])
		}
		delete(h, subjects.HeaderSeq)
		delete(h, subjects.HeaderTime)
		if !reflect.DeepEqual(h, want[i]) {
			t.Errorf("message %d headers = %v, want %v", i, h, want[i])
		}
	}
	if got := end.Header.Get(subjects.HeaderLastSeq); got != "4" || len(end.Header) != 4 {
		t.Errorf("terminator = %v, want Last-Seq 4 and no Next-Seq", end.Header)
	}
}
