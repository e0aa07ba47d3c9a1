package broker

import (
	"reflect"
	"testing"

	"github.com/nats-persist/persist/subjects"
)

// fastBodies are bodies of get, getall, keys and list: what clients send,
// and the edges where decodeFast must leave the body to encoding/json.
var fastBodies = []string{
	`{"seq":1}`, `{"seq":0}`, `{"seq":18446744073709551615}`, `{"seq":18446744073709551616}`,
	`{"seq":01}`, `{"seq":-1}`, `{"seq":1e3}`, `{"seq":1.0}`, `{"seq":"1"}`, `{"seq":null}`,
	`{"seq":1,"seq":2}`, `{"SEQ":1}`, `{"s\u0065q":1}`, `{"seq":1}x`, `{"seq":1}{}`, ` {"seq" : 1 } `,
	`{"key":"k"}`, `{"key":"a.b c"}`, `{"key":""}`, `{"key":"\u00e9"}`, `{"key":"é"}`, `{"key":"a\"b"}`,
	`{"seq":1,"key":"k"}`, `{}`, ``, `{`, `{"seq":}`, `{"seq":1,}`, `{,}`, `[]`, `null`,
	`{"start_seq":5,"end_seq":9,"start_time":1764100000000,"max_msgs":10,"max_bytes":4096}`,
	`{"start_time":9223372036854775807}`, `{"start_time":9223372036854775808}`, `{"start_time":-5}`,
	`{"max_msgs":1,"max_msgs":2}`, `{"after":"acme.x","limit":100}`, `{"after":""}`, `{"limit":0}`,
	`{"after":1}`, `{"limit":"1"}`, "{\"after\":\"a\tb\"}", "{\n\t\"limit\": 3\r\n}",
}

// strictTargets are fresh values of every type decodeFast knows.
func strictTargets() []any {
	return []any{new(getReq), new(subjects.GetAllRequest), new(subjects.PageRequest)}
}

// TestDecodeFast_SameAsJSON checks that every body decodeFast accepts is
// one encoding/json accepts with the same value, and that the bodies
// clients send do take the fast path.
func TestDecodeFast_SameAsJSON(t *testing.T) {
	for _, body := range fastBodies {
		checkFast(t, []byte(body))
	}
	for _, tc := range []struct {
		body string
		v    any
	}{
		{`{"seq":42}`, new(getReq)},
		{`{"key":"k"}`, new(getReq)},
		{`{"start_seq":1001}`, new(subjects.GetAllRequest)},
		{`{"start_seq":1,"max_msgs":1000,"max_bytes":1048576}`, new(subjects.GetAllRequest)},
		{`{"after":"acme.s0999","limit":1000}`, new(subjects.PageRequest)},
		{`{}`, new(subjects.PageRequest)},
	} {
		if !decodeFast([]byte(tc.body), tc.v) {
			t.Errorf("decodeFast(%s, %T) = false, want the fast path", tc.body, tc.v)
		}
	}
	for _, body := range []string{`{"seq":01}`, `{"seq":1,"seq":2}`, `{"SEQ":1}`, `{"seq":18446744073709551616}`, `{"key":"é"}`, `{"seq":1}x`} {
		if decodeFast([]byte(body), new(getReq)) {
			t.Errorf("decodeFast(%s) = true, want encoding/json to decide", body)
		}
	}
}

func FuzzDecodeFast(f *testing.F) {
	for _, body := range fastBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkFast(t, body) })
}

// checkFast fails when decodeFast accepts body for a type and
// encoding/json does not, or decodes another value.
func checkFast(t *testing.T, body []byte) {
	t.Helper()
	fast, strict := strictTargets(), strictTargets()
	for i := range fast {
		if !decodeFast(body, fast[i]) {
			if !reflect.DeepEqual(fast[i], reflect.New(reflect.TypeOf(fast[i]).Elem()).Interface()) {
				t.Fatalf("decodeFast(%q, %T) = false but changed the value to %+v", body, fast[i], fast[i])
			}
			continue
		}
		if err := decodeJSON(body, strict[i]); err != nil {
			t.Fatalf("decodeFast(%q, %T) accepted what encoding/json refuses: %v", body, fast[i], err)
		}
		if got, want := comparable(fast[i]), comparable(strict[i]); !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeFast(%q) = %+v, encoding/json gives %+v", body, got, want)
		}
	}
}

// comparable strips what only decodeFast sets (the storage behind
// getReq.Seq and .Key), so that values compare by what they mean.
func comparable(v any) any {
	if g, ok := v.(*getReq); ok {
		c := *g
		c.seq, c.key = 0, ""
		return c
	}
	return v
}

// setManyBodies are setmany bodies around the edges of fastSetMany.
var setManyBodies = []string{
	`[]`, ` [ ] `, `[{"data":""}]`, `[{"data":"eA=="},{"data":"eQ==","key":"k","msg_id":"m","ttl":90000,"previous_seq":3}]`,
	`[{"data":"eA="}]`, `[{"data":"e A=="}]`, `[{"data":"eA==\n"}]`, `[{"data":"eA\u003d\u003d"}]`, `[{"key":"k"}]`,
	`[{"data":"","key":""}]`, `[{"data":"","ttl":0}]`, `[{"data":"","ttl":9223372036854775808}]`, `[{"data":"","previous_seq":1}]`,
	`[{"data":"","msg_id":""}]`, `[{"data":"","data":"eA=="}]`, `[{"data":"","headers":{"A":["b"]}}]`, `[null]`, `[1]`,
	`[{"data":""},]`, `[{"data":""}`, `[{"data":""}]x`, `{"data":""}`, `null`, ``, `[{"data":"","DATA":""}]`,
	`[{"data":"","key":" k"}]`, `[{"data":"","key":"a\u0000"}]`, `[{"data":"","msg_id":"x","key":"k","previous_seq":0}]`,
}

func TestFastSetMany_SameAsJSON(t *testing.T) {
	for _, body := range setManyBodies {
		checkSetMany(t, []byte(body))
	}
	if _, ok := fastSetMany([]byte(setManyBody(1000))); !ok {
		t.Errorf("fastSetMany of 1000 plain items = false, want the fast path")
	}
	if _, ok := fastSetMany([]byte(setManyBody(1001))); ok {
		t.Errorf("fastSetMany of 1001 items = true, want encoding/json's 400")
	}
}

func FuzzFastSetMany(f *testing.F) {
	for _, body := range setManyBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkSetMany(t, body) })
}

// checkSetMany fails when fastSetMany accepts body and parseSetManyJSON
// gives other items or an error.
func checkSetMany(t *testing.T, body []byte) {
	t.Helper()
	got, ok := fastSetMany(body)
	if !ok {
		return
	}
	want, err := parseSetManyJSON(body)
	if err != nil {
		t.Fatalf("fastSetMany(%q) accepted what encoding/json refuses: %v", body, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fastSetMany(%q) = %+v, encoding/json gives %+v", body, got, want)
	}
}
