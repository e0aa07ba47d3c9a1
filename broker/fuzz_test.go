package broker

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/textproto"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// The fuzz targets of this file check every decoder of a request body or
// header against the protocol's rules (PROTOCOL.md section 4), written
// again here as an oracle that shares no code with the decoders: a body
// or header the oracle accepts must be accepted with the same meaning,
// and one it refuses must be answered 400 bad_request. The oracle's JSON
// rules are those of RFC 8259 read strictly: UTF-8, one value, names
// spelled exactly as the protocol spells them and each at most once, no
// null where a number, string or bool is expected.

// oracleFields reads body as a request object: valid UTF-8 JSON holding
// one object and nothing after it, each name one of names and present at
// most once, no value null. It returns the raw values by name.
func oracleFields(body []byte, names ...string) (map[string]json.RawMessage, bool) {
	return oracleObject(body, "", names)
}

// oracleObject is oracleFields where the field nullable may be null.
func oracleObject(body []byte, nullable string, names []string) (map[string]json.RawMessage, bool) {
	if !utf8.Valid(body) || !json.Valid(body) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false
		}
		if _, dup := out[name]; dup || !slices.Contains(names, name) || string(raw) == "null" && name != nullable {
			return nil, false
		}
		out[name] = raw
	}
	return out, true
}

// oracleEmpty reports whether body holds nothing but JSON white space,
// which an optional body treats as absent.
func oracleEmpty(body []byte) bool {
	return len(bytes.Trim(body, " \t\r\n")) == 0
}

// oracleUint reads a JSON number that is an integer in [0, 2^64).
func oracleUint(raw json.RawMessage) (uint64, bool) {
	n, err := strconv.ParseUint(string(raw), 10, 64)
	return n, err == nil
}

// oracleInt reads a JSON number that is an integer of int64.
func oracleInt(raw json.RawMessage) (int64, bool) {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}

// oracleString reads a JSON string.
func oracleString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// oracleBool reads a JSON bool.
func oracleBool(raw json.RawMessage) (bool, bool) {
	switch string(raw) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// oracleMsgID applies the rules of a Persist-Msg-Id value.
func oracleMsgID(id string) bool {
	return id != "" && len(id) <= subjects.MaxMsgIDLen && !strings.ContainsFunc(id, func(r rune) bool { return r < ' ' || r == 0x7F })
}

// natsHeaderName reports whether a header of this name can be stored and
// sent again: nats.go refuses any other name with ErrBadHeaderMsg
// (makeValidHeaderKeyAsciiSet: printable ASCII without
// `"(),/:;<=>?@[\]{}`), which would make the message unreadable and lose
// its event, and it reads "Status" as the server's status (503 with an
// empty body is "no responders").
func natsHeaderName(name string) bool {
	if name == "" || strings.EqualFold(name, "status") {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// oracleUserHeader reports whether a user header may be stored: a name
// nats.go sends, values that a NATS header carries unchanged (nats.go
// trims white space around a value and turns line breaks into spaces).
func oracleUserHeader(name string, vals []string) bool {
	if !natsHeaderName(name) {
		return false
	}
	for _, v := range vals {
		if strings.ContainsAny(v, "\r\n") || textproto.TrimString(v) != v {
			return false
		}
	}
	return true
}

// isBadRequest fails t unless err is a *subjects.Error 400 bad_request.
func isBadRequest(t *testing.T, what string, err error) {
	t.Helper()
	var we *subjects.Error
	if !errors.As(err, &we) || we.Code != 400 || we.Reason != subjects.ErrBadRequest.Reason {
		t.Fatalf("%s: error %v (%T), want a 400 bad_request", what, err, err)
	}
}

// headerBlocks are header blocks of set requests, as NATS carries them
// after the NATS/1.0 line: the request headers of PROTOCOL.md section 4
// and the edges of their values.
var headerBlocks = []string{
	"", "Persist-Key: k", "Persist-Key: k\r\nPersist-Previous-Seq: 0", "Persist-Key: k\r\nPersist-Previous-Seq: 3",
	"Persist-Previous-Seq: 3", "Persist-Key: k\r\nPersist-Previous-Seq: -1", "Persist-Key: k\r\nPersist-Previous-Seq: 18446744073709551616",
	"Persist-Key: k\r\nPersist-Previous-Seq: 1.0", "Persist-Key: k\r\nPersist-Previous-Seq: +1", "Persist-Key: k\r\nPersist-Previous-Seq: 007",
	"Persist-Key:", "Persist-Key:  padded ", "Persist-Key: a\rb", "Persist-Key: \xff", "Persist-Key: a\x00b", "Persist-Key: é",
	"Persist-Key: a\r\nPersist-Key: b", "persist-key: k", "PERSIST-KEY: k", "Persist-Keys: k", "Persist-Msg-Id: m1",
	"Persist-Msg-Id:", "Persist-Msg-Id: a\x01", "Persist-Msg-Id: " + strings.Repeat("m", subjects.MaxMsgIDLen+1),
	"Persist-TTL: 90", "Persist-TTL: 1500ms", "Persist-TTL: 2h", "Persist-TTL: 0", "Persist-TTL: -1s", "Persist-TTL: 1e3",
	"Persist-TTL: 9223372036854775807", "Persist-TTL: 876001h", "Persist-Sync: true", "Persist-Seq: 5", "persist-revision: 9",
	"Nats-Msg-Id: x", "Nats-Expected-Last-Sequence: 3", "X-A: 1\r\nX-A: 2", "X-A: b ", "X-A: \tb", "X-A: a\rb", "X-A:",
	"X=A: 1", "Status: 503", "status: 200", "Description: x", "X A: 1", "X(A): 1", "X\x7fA: 1", "X\xffA: 1", ": v", "no colon", "X-A: 1\r\n\r\nPersist-Key: k",
}

// FuzzSetHeaders checks the headers of a set as the worker receives them:
// block is decoded by nats.go, as every request is, and parseSet must
// accept exactly what the protocol allows, with the same meaning.
func FuzzSetHeaders(f *testing.F) {
	for _, b := range headerBlocks {
		f.Add([]byte("payload"), b)
	}
	f.Add([]byte{}, "Persist-Key: k\r\nPersist-Msg-Id: m\r\nPersist-TTL: 90s\r\nX-A: b")
	f.Fuzz(func(t *testing.T, body []byte, block string) {
		h, err := nats.DecodeHeadersMsg([]byte("NATS/1.0\r\n" + block + "\r\n\r\n"))
		if err != nil {
			// nats.go then delivers the message without headers.
			h = nil
		}
		got, err := parseSet(body, h)
		want, ok := oracleSet(body, h)
		if !ok {
			if err == nil {
				t.Fatalf("parseSet(%q) accepted headers the protocol refuses: %+v", h, got)
			}
			isBadRequest(t, "parseSet", err)
			return
		}
		if err != nil {
			t.Fatalf("parseSet(%q) = %v, want %+v", h, err, want)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("parseSet(%q) = %+v, want %+v", h, got, want)
		}
	})
}

// oracleSet is the write a set with body and headers h makes, by the rules
// of PROTOCOL.md section 4.
func oracleSet(body []byte, h nats.Header) (store.Write, bool) {
	w := store.Write{Data: body}
	keyed := false
	for name, vals := range h {
		switch name {
		case subjects.HeaderKey, subjects.HeaderPreviousSeq, subjects.HeaderMsgID, subjects.HeaderTTL:
			if len(vals) != 1 {
				return w, false
			}
		}
		v := ""
		if len(vals) > 0 {
			v = vals[0]
		}
		if !natsHeaderName(name) {
			return w, false
		}
		lower := strings.ToLower(name)
		switch {
		case name == subjects.HeaderKey:
			if subjects.ValidateKey(v) != nil {
				return w, false
			}
			w.Key, keyed = v, true
		case name == subjects.HeaderPreviousSeq:
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return w, false
			}
			w.PreviousSeq = &n
		case name == subjects.HeaderMsgID:
			if !oracleMsgID(v) {
				return w, false
			}
			w.MsgID = v
		case name == subjects.HeaderTTL:
			d, err := subjects.ParseTTL(v)
			if err != nil {
				return w, false
			}
			w.TTL = d
		case strings.HasPrefix(lower, "nats-"):
		case strings.HasPrefix(lower, "persist-"):
			switch strings.TrimPrefix(lower, "persist-") {
			case "seq", "time", "expires", "op", "revision", "reason", "end", "last-seq", "num-pending", "next-seq":
			default:
				return w, false
			}
		default:
			if !oracleUserHeader(name, vals) {
				return w, false
			}
			if w.Header == nil {
				w.Header = map[string][]string{}
			}
			w.Header[name] = vals
		}
	}
	if w.PreviousSeq != nil && !keyed {
		return w, false
	}
	return w, true
}

// setManyBodiesHostile add to setManyBodies (fast_test.go) what a hostile
// client sends.
var setManyBodiesHostile = []string{
	`[{"data":"","key":" padded "}]`, `[{"data":"","key":"\u0000"}]`, "[{\"data\":\"\",\"key\":\"\xff\"}]", "[{\"data\":\"\xff\"}]",
	`[{"data":"","ttl":1.5}]`, `[{"data":"","ttl":-0}]`, `[{"data":"","ttl":1e3}]`, `[{"data":"","previous_seq":-1,"key":"k"}]`,
	`[{"data":"","previous_seq":18446744073709551616,"key":"k"}]`, `[{"data":"","key":null}]`, `[{"data":null}]`,
	`[{"data":"","headers":{"Persist-Key":["k"]}}]`, `[{"data":"","headers":{"Nats-Msg-Id":["k"]}}]`, `[{"data":"","headers":{"X-A":"b"}}]`,
	`[{"data":"","headers":{"X=A":["b"]}}]`, `[{"data":"","headers":{"X-A":["b "]}}]`, `[{"data":"","headers":{"X-A":["a\r\nB: c"]}}]`,
	`[{"data":"","headers":{"X-A":[1]}}]`, `[{"data":"","headers":[]}]`, `[{"data":"","Key":"k"}]`, `[{"data":"","key":"a","key":"b"}]`,
	`[[[[[[[[[[]]]]]]]]]]`, `[{"data":"","headers":{"Persist-Seq":["1"]}}]`, `[{"data":"","msg_id":"a\u007f"}]`, "[{\"data\":\"\"}]\v",
}

// FuzzSetMany checks a setmany body against the protocol's rules: a body
// that is not a JSON array of at most 1000 elements is a 400 as a whole;
// otherwise each element gives its write or its own 400.
func FuzzSetMany(f *testing.F) {
	for _, b := range append(slices.Clone(setManyBodies), setManyBodiesHostile...) {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := parseSetMany(body)
		want, ok := oracleSetMany(body)
		if !ok {
			if err == nil {
				t.Fatalf("parseSetMany(%q) accepted a body the protocol refuses", body)
			}
			isBadRequest(t, "parseSetMany", err)
			return
		}
		if err != nil {
			t.Fatalf("parseSetMany(%q) = %v, want %d items", body, err, len(want))
		}
		if len(got) != len(want) {
			t.Fatalf("parseSetMany(%q) = %d items, want %d", body, len(got), len(want))
		}
		for i := range want {
			if want[i].err != nil {
				if got[i].err == nil {
					t.Fatalf("parseSetMany(%q) item %d = %+v, want a 400", body, i, got[i].w)
				}
				isBadRequest(t, "setmany item", got[i].err)
				continue
			}
			if got[i].err != nil {
				t.Fatalf("parseSetMany(%q) item %d = %v, want %+v", body, i, got[i].err, want[i].w)
			}
			if !reflect.DeepEqual(got[i].w, want[i].w) {
				t.Fatalf("parseSetMany(%q) item %d = %+v, want %+v", body, i, got[i].w, want[i].w)
			}
		}
	})
}

// oracleSetMany reads a setmany body; an item whose err is non-nil is
// refused alone.
func oracleSetMany(body []byte) ([]item, bool) {
	if !utf8.Valid(body) || !json.Valid(body) {
		return nil, false
	}
	var raw []json.RawMessage
	if json.Unmarshal(body, &raw) != nil || raw == nil || len(raw) > subjects.MaxSetMany {
		return nil, false
	}
	items := make([]item, len(raw))
	for i, r := range raw {
		w, ok := oracleSetManyItem(r)
		items[i].w = w
		if !ok {
			items[i] = item{err: errors.New("refused")}
		}
	}
	return items, true
}

func oracleSetManyItem(raw json.RawMessage) (store.Write, bool) {
	var w store.Write
	fs, ok := oracleFields(raw, "data", "key", "headers", "msg_id", "ttl", "previous_seq")
	if !ok || fs["data"] == nil {
		return w, false
	}
	s, ok := oracleString(fs["data"])
	if !ok {
		return w, false
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return w, false
	}
	w.Data = data
	if r := fs["key"]; r != nil {
		if w.Key, ok = oracleString(r); !ok || subjects.ValidateKey(w.Key) != nil {
			return w, false
		}
	}
	if r := fs["previous_seq"]; r != nil {
		n, ok := oracleUint(r)
		if !ok || fs["key"] == nil {
			return w, false
		}
		w.PreviousSeq = &n
	}
	if r := fs["msg_id"]; r != nil {
		if w.MsgID, ok = oracleString(r); !ok || !oracleMsgID(w.MsgID) {
			return w, false
		}
	}
	if r := fs["ttl"]; r != nil {
		ms, ok := oracleInt(r)
		if !ok || ms <= 0 || ms > subjects.MaxTTL.Milliseconds() {
			return w, false
		}
		w.TTL = time.Duration(ms) * time.Millisecond
	}
	if r := fs["headers"]; r != nil {
		var hs map[string]json.RawMessage
		if json.Unmarshal(r, &hs) != nil || r[0] != '{' {
			return w, false
		}
		for name, rv := range hs {
			var raws []json.RawMessage
			if rv[0] != '[' || json.Unmarshal(rv, &raws) != nil {
				return w, false
			}
			var vals []string
			for _, e := range raws {
				v, ok := oracleString(e)
				if !ok {
					return w, false
				}
				vals = append(vals, v)
			}
			switch subjects.ClassifyHeader(name) {
			case subjects.HeaderIgnored:
				continue
			case subjects.HeaderUser:
			default:
				return w, false
			}
			if !oracleUserHeader(name, vals) {
				return w, false
			}
			if len(vals) == 0 {
				continue
			}
			if w.Header == nil {
				w.Header = map[string][]string{}
			}
			w.Header[name] = vals
		}
	}
	return w, true
}

// bodiesHostile are bodies of get, getall, delete, keys, list and config
// that a hostile client sends, added to fastBodies (fast_test.go).
var bodiesHostile = []string{
	`{"seq":-0}`, `{"seq":1e400}`, `{"seq":0.5}`, `{"seq":true}`, `{"seq":[1]}`, `{"seq":{}}`, `{"key":1}`, `{"key":null}`,
	`{"key":" padded "}`, `{"key":"a\u0000"}`, "{\"key\":\"\xff\"}", "\xff", "{\"seq\":1}\xff", `{"seq":1,"SEQ":2}`, `{"Seq":1}`,
	`{"seq":null,"key":"k"}`, `{"seqs":[1,2,3]}`, `{"seqs":[]}`, `{"seqs":null}`, `{"seqs":[1,-1]}`, `{"seqs":[1,null]}`,
	`{"seqs":"1"}`, `{"last_seq":5}`, `{"all":true}`, `{"all":false}`, `{"all":1}`, `{"all":true,"seq":1}`, `{"key":"k","key":"k"}`,
	`{"start_seq":null}`, `{"max_bytes":0}`, `{"max_msgs":18446744073709551615,"max_bytes":0}`, `{"end_seq":-1}`,
	`{"start_time":-0}`, `{"start_time":1.5}`, `{"limit":-1}`, `{"after":null}`, `{"after":"\u0000"}`, "\v", "\u00a0", " \r\n\t",
	`[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`, strings.Repeat("[", 10001) + strings.Repeat("]", 10001), `{"seq":1}/**/`,
	`{"desc":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`,
	`{"max_msgs":3}`, `{"max_msgs":-1,"sync":true,"desc":{"a":[1,2]}}`, `{"desc":null}`, `{"max_msgs":null}`, `{"Max_Msgs":3}`,
	`{"max_msgs":3,"max_msgs":4}`, `{"max_msgs":0}`, `{"max_msgs":-2}`, `{"max_age":1125899906842625}`, `{"max_age":-0}`,
	`{"discard_policy":"NEW"}`, `{"storage":"memory"}`, `{"compression":"gzip"}`, `{"desc":"\u00e9"}`, "{\"desc\":\"\xff\"}",
	`{"compression_threshold":-1}`, `{"sync":"true"}`,
	`{"bogus":1}`, `{"max_msgs":1.0}`, `{"max_msgs":9223372036854775808}`, `{"duplicate_window":0}`,
}

// addBodies seeds f with every request body known to the tests.
func addBodies(f *testing.F) {
	for _, b := range append(slices.Clone(fastBodies), bodiesHostile...) {
		f.Add([]byte(b))
	}
}

// checkBody runs body through parseJob for op and compares the outcome
// with the oracle's: got and want extract what the job and the oracle
// decoded.
func checkBody[T any](t *testing.T, op string, body []byte, want T, ok bool, got func(*job) T) {
	t.Helper()
	j, err := parseJob(op, body, nil)
	if !ok {
		if err == nil {
			t.Fatalf("parseJob(%s, %q) accepted a body the protocol refuses: %+v", op, body, got(j))
		}
		isBadRequest(t, "parseJob("+op+")", err)
		return
	}
	if err != nil {
		t.Fatalf("parseJob(%s, %q) = %v, want %+v", op, body, err, want)
	}
	if g := got(j); !reflect.DeepEqual(g, want) {
		t.Fatalf("parseJob(%s, %q) = %+v, want %+v", op, body, g, want)
	}
	putJob(j)
}

// getWant is what a get body means: one of a seq and a key.
type getWant struct {
	Seq *uint64
	Key *string
}

// FuzzGetBody checks get bodies: exactly one of {"seq":N} and {"key":"k"}.
func FuzzGetBody(f *testing.F) {
	addBodies(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		var want getWant
		fs, ok := oracleFields(body, "seq", "key")
		if ok && len(fs) != 1 {
			ok = false
		}
		if r := fs["seq"]; ok && r != nil {
			n, okn := oracleUint(r)
			want.Seq, ok = &n, okn
		}
		if r := fs["key"]; ok && r != nil {
			k, okk := oracleString(r)
			want.Key, ok = &k, okk && subjects.ValidateKey(k) == nil
		}
		checkBody(t, subjects.OpGet, body, want, ok, func(j *job) getWant { return getWant{j.get.Seq, j.get.Key} })
	})
}

// FuzzGetAllBody checks getall bodies: an optional object of five integer
// fields.
func FuzzGetAllBody(f *testing.F) {
	addBodies(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		var want subjects.GetAllRequest
		ok := true
		if !oracleEmpty(body) {
			var fs map[string]json.RawMessage
			fs, ok = oracleFields(body, "start_seq", "end_seq", "start_time", "max_msgs", "max_bytes")
			for name, r := range fs {
				var okv bool
				switch name {
				case "start_seq":
					want.StartSeq, okv = oracleUint(r)
				case "end_seq":
					want.EndSeq, okv = oracleUint(r)
				case "start_time":
					want.StartTime, okv = oracleInt(r)
				case "max_msgs":
					want.MaxMsgs, okv = oracleUint(r)
				case "max_bytes":
					want.MaxBytes, okv = oracleUint(r)
				}
				ok = ok && okv
			}
		}
		checkBody(t, subjects.OpGetAll, body, want, ok, func(j *job) subjects.GetAllRequest { return j.getall })
	})
}

// deleteWant is what a delete body means.
type deleteWant struct {
	Seq, LastSeq *uint64
	Seqs         []uint64
	Key          *string
	All          bool
}

// FuzzDeleteBody checks delete bodies: exactly one of seq, seqs (at most
// 10000), last_seq, key and all (true).
func FuzzDeleteBody(f *testing.F) {
	addBodies(f)
	f.Add([]byte(`{"seqs":[` + strings.TrimSuffix(strings.Repeat("1,", subjects.MaxDeleteSeqs+1), ",") + `]}`))
	f.Add([]byte(`{"seqs":[` + strings.TrimSuffix(strings.Repeat("1,", subjects.MaxDeleteSeqs), ",") + `]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var want deleteWant
		fs, ok := oracleFields(body, "seq", "seqs", "last_seq", "key", "all")
		ok = ok && len(fs) == 1
		for name, r := range fs {
			var okv bool
			switch name {
			case "seq":
				var n uint64
				n, okv = oracleUint(r)
				want.Seq = &n
			case "last_seq":
				var n uint64
				n, okv = oracleUint(r)
				want.LastSeq = &n
			case "key":
				var k string
				k, okv = oracleString(r)
				want.Key, okv = &k, okv && subjects.ValidateKey(k) == nil
			case "all":
				want.All, okv = oracleBool(r)
				okv = okv && want.All
			case "seqs":
				var raws []json.RawMessage
				okv = r[0] == '[' && json.Unmarshal(r, &raws) == nil && len(raws) <= subjects.MaxDeleteSeqs
				want.Seqs = []uint64{}
				for _, e := range raws {
					n, okn := oracleUint(e)
					okv = okv && okn
					want.Seqs = append(want.Seqs, n)
				}
			}
			ok = ok && okv
		}
		checkBody(t, subjects.OpDelete, body, want, ok, func(j *job) deleteWant {
			d := deleteWant{Seq: j.del.Seq, LastSeq: j.del.LastSeq, Key: j.del.Key, All: j.del.All != nil && *j.del.All}
			if j.del.Seqs != nil {
				d.Seqs = append([]uint64{}, *j.del.Seqs...)
			}
			return d
		})
	})
}

// FuzzPageBody checks the bodies of keys and list, which share one
// decoder: an optional {"after":"…","limit":N}. Keys is decoded through
// parseJob, list through the same decodeOptional its handler calls.
func FuzzPageBody(f *testing.F) {
	addBodies(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		var want subjects.PageRequest
		ok := true
		if !oracleEmpty(body) {
			var fs map[string]json.RawMessage
			fs, ok = oracleFields(body, "after", "limit")
			if r := fs["after"]; ok && r != nil {
				want.After, ok = oracleString(r)
			}
			if r := fs["limit"]; ok && r != nil {
				want.Limit, ok = oracleUint(r)
			}
		}
		checkBody(t, subjects.OpKeys, body, want, ok, func(j *job) subjects.PageRequest { return j.keys })
		var list subjects.PageRequest
		err := decodeOptional(body, &list)
		if ok != (err == nil) || ok && list != want {
			t.Fatalf("list body %q = %+v, %v; want %+v, accepted %v", body, list, err, want, ok)
		}
		if n := want.PageLimit(); n < 1 || n > subjects.MaxLimit {
			t.Fatalf("limit %d of %q is out of bounds", want.PageLimit(), body)
		}
	})
}

// FuzzConfigPatch checks a config body as the worker applies it: checked
// by parseJob, then applied onto the defaults by subjects.ParseConfigPatch. The oracle reads the fields of PROTOCOL.md
// section 4 and the limits of store.Config.Validate; what is accepted
// is, encoded as the config reply is, a patch that gives itself back.
func FuzzConfigPatch(f *testing.F) {
	addBodies(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		want, ok := oracleConfig(body)
		j, err := parseJob(subjects.OpConfig, body, nil)
		if err != nil {
			isBadRequest(t, "parseJob(config)", err)
			if ok || oracleEmpty(body) {
				t.Fatalf("parseJob(config, %q) = %v, want %+v", body, err, want)
			}
			return
		}
		patch := j.config
		putJob(j)
		if oracleEmpty(body) != (patch == nil) {
			t.Fatalf("parseJob(config, %q) read it as a patch %v, want %v", body, patch != nil, !oracleEmpty(body))
		}
		if patch == nil {
			return
		}
		got, err := subjects.ParseConfigPatch(subjects.DefaultConfig(), patch)
		if !ok {
			if err == nil {
				t.Fatalf("ParseConfigPatch(%q) accepted a patch the protocol refuses: %+v", body, got)
			}
			if !errors.Is(err, subjects.ErrBadRequest) {
				t.Fatalf("ParseConfigPatch(%q) = %v, want 400 bad_request", body, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseConfigPatch(%q) = %v, want %+v", body, err, want)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseConfigPatch(%q) = %+v, want %+v", body, got, want)
		}
		// The reply's encoding, which a client sends back.
		full, err := jsonMarshal(got)
		if err != nil {
			t.Fatalf("jsonMarshal(%+v) = %v", got, err)
		}
		again, err := subjects.ParseConfigPatch(subjects.DefaultConfig(), full)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("ParseConfigPatch(%s) = %+v, %v; want it back as %+v", full, again, err, got)
		}
	})
}

// oracleConfig applies a config patch onto the defaults.
func oracleConfig(body []byte) (store.Config, bool) {
	c := subjects.DefaultConfig()
	ints := map[string]*int64{
		"max_msgs": &c.MaxMsgs, "max_bytes": &c.MaxBytes, "max_age": &c.MaxAge, "max_msg_size": &c.MaxMsgSize,
		"max_msgs_per_second": &c.MaxMsgsPerSecond, "max_bytes_per_second": &c.MaxBytesPerSecond,
		"duplicate_window": &c.DuplicateWindow, "compression_threshold": &c.CompressionThreshold,
	}
	strs := map[string]*string{"discard_policy": &c.DiscardPolicy, "storage": &c.Storage, "compression": &c.Compression}
	bools := map[string]*bool{"allow_msg_ttl": &c.AllowMsgTTL, "sync": &c.Sync}
	names := []string{"desc"}
	for k := range ints {
		names = append(names, k)
	}
	for k := range strs {
		names = append(names, k)
	}
	for k := range bools {
		names = append(names, k)
	}
	fs, ok := oracleObject(body, "desc", names)
	if !ok {
		return c, false
	}
	for name, r := range fs {
		var okv bool
		switch {
		case ints[name] != nil:
			*ints[name], okv = oracleInt(r)
		case strs[name] != nil:
			*strs[name], okv = oracleString(r)
		case bools[name] != nil:
			*bools[name], okv = oracleBool(r)
		case name == "desc":
			var buf bytes.Buffer
			okv = json.Compact(&buf, r) == nil
			if c.Desc = buf.Bytes(); string(r) == "null" {
				c.Desc = nil
			}
		}
		if !okv {
			return c, false
		}
	}
	return c, c.Validate() == nil
}
