package broker

import (
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

func TestParseJob_Bounds(t *testing.T) {
	for _, tc := range []struct {
		name, op, body string
		want           func(*job) bool
	}{
		{"GetAllDefaults", subjects.OpGetAll, ``, func(j *job) bool { return j.getall == subjects.GetAllRequest{} }},
		{"KeysDefaultLimit", subjects.OpKeys, `{}`, func(j *job) bool { return j.keys.PageLimit() == subjects.DefaultLimit }},
		{"KeysCappedLimit", subjects.OpKeys, `{"limit":99999999}`, func(j *job) bool { return j.keys.PageLimit() == subjects.MaxLimit }},
		{"ConfigRead", subjects.OpConfig, "  \n", func(j *job) bool { return j.config == nil }},
		{"ConfigPatch", subjects.OpConfig, `{"max_msgs":3}`, func(j *job) bool { return string(j.config) == `{"max_msgs":3}` }},
		{"DeleteSeqs", subjects.OpDelete, `{"seqs":[1,2]}`, func(j *job) bool { return len(*j.del.Seqs) == 2 }},
		{"SetManyEmpty", subjects.OpSetMany, `[]`, func(j *job) bool { return len(j.items) == 0 && j.many }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := parseJob(tc.op, []byte(tc.body), nil)
			if err != nil {
				t.Fatalf("parseJob(%s, %s) = %v", tc.op, tc.body, err)
			}
			if !tc.want(j) {
				t.Fatalf("parseJob(%s, %s) = %+v", tc.op, tc.body, j)
			}
		})
	}
}

func TestParseSet_Headers(t *testing.T) {
	w, err := parseSet([]byte("p"), nats.Header{
		"X-Multi":                  {"a", "b"},
		"X-Empty":                  {},
		"Nats-Msg-Id":              {"x"},
		"PERSIST-REVISION":         {"9"},
		subjects.HeaderKey:         {"k"},
		subjects.HeaderPreviousSeq: {"0"},
		subjects.HeaderMsgID:       {"id"},
		subjects.HeaderTTL:         {"90"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Header) != 1 || len(w.Header["X-Multi"]) != 2 {
		t.Fatalf("stored headers %v, want only X-Multi", w.Header)
	}
	if w.Key != "k" || w.PreviousSeq == nil || *w.PreviousSeq != 0 || w.MsgID != "id" || w.TTL.Seconds() != 90 {
		t.Fatalf("write %+v", w)
	}
	if _, err := parseSet(nil, nats.Header{"X-Bad": {"a\r\nInjected: 1"}}); err == nil {
		t.Fatal("a header value with a line break was accepted")
	}
}

// FuzzParseJob checks that no request body or header makes the parser
// panic, and that every refusal is a 400.
func FuzzParseJob(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"seq":1}`, `{"key":"k"}`, `[{"data":"eA==","key":"k","ttl":5,"headers":{"A":["b"]}}]`, `{"seqs":[1,2]}`, `{"all":true}`, `{"start_seq":1,"max_msgs":5}`, `[1,null,"x",{}]`} {
		for i := range subjects.Ops {
			f.Add(uint8(i), s, subjects.HeaderKey, "k")
		}
	}
	f.Add(uint8(0), "x", subjects.HeaderTTL, "1h")
	f.Add(uint8(0), "x", subjects.HeaderPreviousSeq, "18446744073709551616")
	f.Fuzz(func(t *testing.T, opIdx uint8, body, name, value string) {
		op := subjects.Ops[int(opIdx)%len(subjects.Ops)]
		j, err := parseJob(op, []byte(body), nats.Header{name: {value}})
		if err != nil {
			var we *subjects.Error
			if !errors.As(err, &we) || we.Code != 400 {
				t.Fatalf("parseJob(%s, %q) = %v, want a 400", op, body, err)
			}
			return
		}
		if j.op != op {
			t.Fatalf("job op %q, want %q", j.op, op)
		}
		for _, it := range j.items {
			if it.err != nil {
				var we *subjects.Error
				if !errors.As(it.err, &we) || we.Code != 400 {
					t.Fatalf("item error %v, want a 400", it.err)
				}
				continue
			}
			if it.w.PreviousSeq != nil && it.w.Key == "" {
				t.Fatalf("write %+v has a previous seq without a key", it.w)
			}
			if it.w.Key != "" && subjects.ValidateKey(it.w.Key) != nil {
				t.Fatalf("write has invalid key %q", it.w.Key)
			}
		}
	})
}

func TestParseJob_ErrorsSpeakJSON(t *testing.T) {
	tests := []struct {
		op, body, want string
	}{
		{subjects.OpGet, `{"seq":"1"}`, `field "seq" cannot be a string`},
		{subjects.OpGet, `{"seq":-1}`, `field "seq" cannot be a number -1`},
		{subjects.OpSetMany, `[{"data":"aGk=","ttl":1.5}]`, ""}, // item error, not a body error
		{subjects.OpDelete, `[1]`, `array value where another type is expected`},
	}
	for _, tt := range tests {
		t.Run(tt.op+tt.body, func(t *testing.T) {
			j, err := parseJob(tt.op, []byte(tt.body), nil)
			if tt.want == "" {
				if err != nil || j.items[0].err == nil || strings.Contains(j.items[0].err.Error(), "Go ") {
					t.Fatalf("parseJob(%s) = %v, item error %v; want a plain item error", tt.body, err, j.items[0].err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parseJob(%s) = %v, want it to say %q", tt.body, err, tt.want)
			}
			if strings.Contains(err.Error(), "Go ") || strings.Contains(err.Error(), "broker.") {
				t.Fatalf("parseJob(%s) = %v: names Go internals", tt.body, err)
			}
		})
	}
}

func TestWireError_Description(t *testing.T) {
	b := &Broker{log: slog.New(slog.DiscardHandler)}
	_, err := subjects.ParseConfigPatch(subjects.DefaultConfig(), []byte(`{"max_msgs":0}`))
	we := b.wireError(subjects.OpSet, "acme.s", err)
	if we.Code != 400 || we.Reason != "bad_request" {
		t.Fatalf("wireError(%v) = %+v, want 400 bad_request", err, we)
	}
	if strings.HasPrefix(we.Description, "store:") || strings.HasPrefix(we.Description, "invalid argument") || !strings.Contains(we.Description, "max_msgs") {
		t.Fatalf("description = %q, want the reason without prefixes", we.Description)
	}
	if got := b.wireError(subjects.OpGet, "acme.s", store.ErrNotFound); got.Description != "not found" {
		t.Fatalf("wireError(ErrNotFound).Description = %q, want %q", got.Description, "not found")
	}
}

// A job given back to the pool keeps nothing of its request: the next
// request parsed into it starts from a zero job.
func TestPutJob_Zeroes(t *testing.T) {
	for _, tc := range []struct{ op, body string }{
		{subjects.OpSet, "payload"},
		{subjects.OpSetMany, `[{"data":"eA==","key":"k"}]`},
		{subjects.OpGet, `{"seq":7}`},
		{subjects.OpGet, `{"key":"k"}`},
		{subjects.OpGetAll, `{"start_seq":3,"max_msgs":10}`},
		{subjects.OpDelete, `{"seqs":[1,2]}`},
		{subjects.OpConfig, `{"max_msgs":3}`},
	} {
		j, err := parseJob(tc.op, []byte(tc.body), nats.Header{"Persist-Key": {"k"}})
		if err != nil {
			t.Fatalf("parseJob(%s, %s) = %v", tc.op, tc.body, err)
		}
		j.reply, j.answered = "reply", true
		putJob(j)
		if !reflect.ValueOf(*j).IsZero() {
			t.Fatalf("after putJob, the job of %s %s = %+v, want a zero job", tc.op, tc.body, *j)
		}
	}
}
