package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/broker"
)

// defaultConfig is the config reply of a stream with no changes, field by
// field as PROTOCOL.md section 4 lists them.
const defaultConfig = `{"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msg_size":-1,"max_msgs_per_second":-1,
	"max_bytes_per_second":-1,"discard_policy":"old","allow_msg_ttl":false,"duplicate_window":120000,"sync":false,
	"storage":"file","compression":"zstd","compression_threshold":1024,"desc":null}`

func api(op, stream string) string { return "persist.api." + op + "." + stream }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// wireStep is one raw request and what its reply must be: an error with
// code and reason, or a success whose normalized JSON body is want (unless
// want is empty), followed by an optional check of the whole reply.
type wireStep struct {
	name    string
	subject string
	header  nats.Header
	body    string
	code    int
	reason  string
	want    string
	check   func(t *testing.T, m *nats.Msg)
}

func (st wireStep) run(t *testing.T, nc *nats.Conn) {
	t.Helper()
	m, err := nc.RequestMsg(&nats.Msg{Subject: st.subject, Header: st.header, Data: []byte(st.body)}, 10*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", st.subject, err)
	}
	code := m.Header.Get("Nats-Service-Error-Code")
	if st.code != 0 {
		if got, want := code, strconv.Itoa(st.code); got != want {
			t.Fatalf("Nats-Service-Error-Code = %q, want %q (body %s)", got, want, m.Data)
		}
		if m.Header.Get("Nats-Service-Error") == "" {
			t.Fatalf("error reply without Nats-Service-Error header")
		}
		want := fmt.Sprintf(`{"error":{"code":%d,"reason":%q,"description":""}}`, st.code, st.reason)
		if got := normalize(t, m.Data); got != canonical(t, want) {
			t.Fatalf("error body = %s, want %s", m.Data, want)
		}
		if !bytes.Contains(m.Data, []byte(`"description":"`)) || bytes.Contains(m.Data, []byte(`"description":""`)) {
			t.Fatalf("error body %s has no description", m.Data)
		}
	} else {
		if code != "" {
			t.Fatalf("error reply %s %s, want success", code, m.Data)
		}
		if st.want != "" {
			if got, want := normalize(t, m.Data), canonical(t, st.want); got != want {
				t.Fatalf("reply = %s, want %s", got, want)
			}
		}
	}
	if st.check != nil {
		st.check(t, m)
	}
}

func runSteps(t *testing.T, nc *nats.Conn, steps []wireStep) {
	t.Helper()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) { st.run(t, nc) })
	}
}

func errItem(code int, reason string) string {
	return fmt.Sprintf(`{"error":{"code":%d,"reason":%q,"description":""}}`, code, reason)
}

// header builds a nats.Header from name, value pairs, keeping the names
// exactly as spelled.
func header(kv ...string) nats.Header {
	h := nats.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return h
}

func TestWire_MissingStream(t *testing.T) {
	s := runServer(t, -1)
	dir := t.TempDir()
	startBroker(t, s, broker.Options{DataDir: dir})
	nc := connect(t, s.ClientURL())
	const ghost = "acme.ghost"

	runSteps(t, nc, []wireStep{
		{name: "GetSeq", subject: api("get", ghost), body: `{"seq":1}`, code: 404, reason: "not_found"},
		{name: "GetKey", subject: api("get", ghost), body: `{"key":"k"}`, code: 404, reason: "not_found"},
		{name: "Destroy", subject: api("destroy", ghost), code: 404, reason: "not_found"},
		{name: "Inventory", subject: api("inventory", ghost), want: `{"count":0,"bytes":0,"first_seq":0,"last_seq":0,"revision":0,"limits":{}}`},
		{name: "Keys", subject: api("keys", ghost), want: `{"keys":[],"more":false}`},
		{name: "ConfigRead", subject: api("config", ghost), want: defaultConfig},
		{name: "ConfigNoChange", subject: api("config", ghost), body: `{"max_msgs":-1,"sync":false}`, want: defaultConfig},
		{name: "DeleteSeq", subject: api("delete", ghost), body: `{"seq":1}`, want: `{"count":0}`},
		{name: "DeleteAll", subject: api("delete", ghost), body: `{"all":true}`, want: `{"count":0}`},
		{name: "SetManyNothingWritten", subject: api("setmany", ghost), body: `[{"key":""},{"data":"","ttl":-1}]`,
			want: "[" + errItem(400, "bad_request") + "," + errItem(400, "bad_request") + "]"},
		{name: "SetManyEmpty", subject: api("setmany", ghost), body: `[]`, want: `[]`},
		{name: "List", subject: api("list", "acme"), want: `{"streams":[],"more":false}`},
		{name: "BadConfigCreatesNothing", subject: api("config", ghost), body: `{"max_msgs":5,"bogus":1}`, code: 400, reason: "bad_request"},
		{name: "BadSetCreatesNothing", subject: api("set", ghost), header: header("Persist-Key", "k", "Persist-Previous-Seq", "3"), code: 409, reason: "wrong_last_sequence"},
	})

	t.Run("GetAll", func(t *testing.T) {
		msgs, end := getAllRaw(t, nc, api("getall", ghost), nil)
		if len(msgs) != 0 {
			t.Fatalf("getall of a missing stream sent %d messages", len(msgs))
		}
		checkTerminator(t, end, 0, 0, 0, 0)
	})
	if files := dbFiles(t, dir); len(files) != 0 {
		t.Fatalf("reads of a missing stream created files %v", files)
	}
}

// checkTerminator checks a getall terminator's headers; nextSeq 0 means
// the header must be absent.
func checkTerminator(tb testing.TB, end *nats.Msg, lastSeq, revision uint64, pending int, nextSeq uint64) {
	tb.Helper()
	if code := end.Header.Get("Nats-Service-Error-Code"); code != "" {
		tb.Fatalf("getall ended with error %s %s", code, end.Data)
	}
	if len(end.Data) != 0 {
		tb.Fatalf("terminator body = %q, want empty", end.Data)
	}
	want := map[string]string{
		"Persist-End":         "true",
		"Persist-Last-Seq":    itoa(lastSeq),
		"Persist-Revision":    itoa(revision),
		"Persist-Num-Pending": strconv.Itoa(pending),
	}
	if nextSeq != 0 {
		want["Persist-Next-Seq"] = itoa(nextSeq)
	}
	for k, v := range want {
		if got := end.Header.Get(k); got != v {
			tb.Fatalf("terminator %s = %q, want %q (headers %v)", k, got, v, end.Header)
		}
	}
	if nextSeq == 0 && end.Header.Get("Persist-Next-Seq") != "" {
		tb.Fatalf("terminator has Persist-Next-Seq %q with nothing pending", end.Header.Get("Persist-Next-Seq"))
	}
}

func TestWire_Operations(t *testing.T) {
	s := runServer(t, -1)
	dir := t.TempDir()
	startBroker(t, s, broker.Options{DataDir: dir})
	nc := connect(t, s.ClientURL())
	const docs = "acme.docs"
	var dupTime string

	runSteps(t, nc, []wireStep{
		{name: "Set", subject: api("set", docs), body: "hello",
			header: header("X-A", "1", "X-A", "2", "Nats-Msg-Id", "not-dedup", "Persist-Seq", "99", "persist-time", "5"),
			want:   `{"seq":1,"time":0}`,
			check: func(t *testing.T, m *nats.Msg) {
				if strings.Contains(string(m.Data), "duplicate") {
					t.Fatalf("first write reply %s mentions duplicate", m.Data)
				}
			}},
		{name: "SetKeyed", subject: api("set", docs), body: "v1", header: header("Persist-Key", "k"), want: `{"seq":2,"time":0}`},
		{name: "SetPreviousSeq", subject: api("set", docs), body: "v2", header: header("Persist-Key", "k", "Persist-Previous-Seq", "2"), want: `{"seq":3,"time":0}`},
		{name: "SetPreviousSeqStale", subject: api("set", docs), body: "v3", header: header("Persist-Key", "k", "Persist-Previous-Seq", "2"), code: 409, reason: "wrong_last_sequence"},
		{name: "SetPreviousSeqAbsent", subject: api("set", docs), body: "n", header: header("Persist-Key", "new", "Persist-Previous-Seq", "0"), want: `{"seq":4,"time":0}`},
		{name: "SetPreviousSeqAbsentTaken", subject: api("set", docs), body: "n", header: header("Persist-Key", "new", "Persist-Previous-Seq", "0"), code: 409, reason: "wrong_last_sequence"},
		{name: "SetMsgID", subject: api("set", docs), body: "m", header: header("Persist-Msg-Id", "m1"), want: `{"seq":5,"time":0}`,
			check: func(t *testing.T, m *nats.Msg) { dupTime = timeOf(t, m.Data) }},
		{name: "SetMsgIDDuplicate", subject: api("set", docs), body: "other", header: header("Persist-Msg-Id", "m1"), want: `{"seq":5,"time":0,"duplicate":true}`,
			check: func(t *testing.T, m *nats.Msg) {
				if got := timeOf(t, m.Data); got != dupTime {
					t.Fatalf("duplicate time = %s, want the first write's %s", got, dupTime)
				}
			}},
		{name: "Get", subject: api("get", docs), body: `{"seq":1}`, check: func(t *testing.T, m *nats.Msg) {
			if string(m.Data) != "hello" || m.Header.Get("Persist-Seq") != "1" || m.Header.Get("Persist-Time") == "" {
				t.Fatalf("get = %q %v", m.Data, m.Header)
			}
			if got := m.Header.Values("X-A"); !slices.Equal(got, []string{"1", "2"}) {
				t.Fatalf("X-A = %v, want [1 2]", got)
			}
			for _, h := range []string{"Nats-Msg-Id", "Persist-Key", "Persist-Expires", "persist-time"} {
				if v := m.Header.Values(h); len(v) != 0 {
					t.Fatalf("header %s = %v, want absent", h, v)
				}
			}
		}},
		{name: "GetKey", subject: api("get", docs), body: `{"key":"k"}`, check: func(t *testing.T, m *nats.Msg) {
			if string(m.Data) != "v2" || m.Header.Get("Persist-Seq") != "3" || m.Header.Get("Persist-Key") != "k" {
				t.Fatalf("get key = %q %v", m.Data, m.Header)
			}
		}},
		{name: "GetReplaced", subject: api("get", docs), body: `{"seq":2}`, code: 404, reason: "not_found"},
		{name: "GetMissingSeq", subject: api("get", docs), body: `{"seq":99}`, code: 404, reason: "not_found"},
		{name: "SetMany", subject: api("setmany", docs),
			body: `[{"data":"YQ=="},{"data":"Yg==","key":"k2","headers":{"X-B":["x"]}},{"data":"","key":""},{"data":"","ttl":0},
				{"data":"","ttl":1000},{"data":"","key":"k","previous_seq":1},{"data":"","bogus":1},5,{"data":"not base64!"}]`,
			want: `[{"seq":6,"time":0},{"seq":7,"time":0},` + errItem(400, "bad_request") + "," + errItem(400, "bad_request") + "," +
				errItem(400, "ttl_disabled") + "," + errItem(409, "wrong_last_sequence") + "," + errItem(400, "bad_request") + "," +
				errItem(400, "bad_request") + "," + errItem(400, "bad_request") + "]"},
		{name: "Keys", subject: api("keys", docs), want: `{"keys":["k","k2","new"],"more":false}`},
		{name: "KeysPage", subject: api("keys", docs), body: `{"after":"k","limit":1}`, want: `{"keys":["k2"],"more":true}`},
		// Sizes: 5+2*(3+1) for seq 1, 2+1 for seq 3, 1+3 for seq 4, 1 for 5 and 6, 1+2+3+1 for 7.
		{name: "Inventory", subject: api("inventory", docs), want: `{"count":6,"bytes":29,"first_seq":1,"last_seq":7,"revision":7,"limits":{}}`},
		{name: "ConfigChange", subject: api("config", docs), body: `{"max_msg_size":10,"desc":{"team":"docs"}}`,
			want: strings.Replace(strings.Replace(defaultConfig, `"max_msg_size":-1`, `"max_msg_size":10`, 1), `"desc":null`, `"desc":{"team":"docs"}`, 1)},
		{name: "InventoryLimits", subject: api("inventory", docs), want: `{"count":6,"bytes":29,"first_seq":1,"last_seq":7,"revision":8,"limits":{"max_msg_size":10,"desc":{"team":"docs"}}}`},
		{name: "MsgTooLarge", subject: api("set", docs), body: "12345678901", code: 413, reason: "msg_too_large"},
		{name: "MsgTooLargeByKey", subject: api("set", docs), body: "12345678", header: header("Persist-Key", "abc"), code: 413, reason: "msg_too_large"},
		{name: "ConfigStorageChange", subject: api("config", docs), body: `{"storage":"memory"}`, code: 400, reason: "bad_request"},
		{name: "ConfigUnknownField", subject: api("config", docs), body: `{"bogus":1}`, code: 400, reason: "bad_request"},
		{name: "ConfigWrongType", subject: api("config", docs), body: `{"max_msgs":"x"}`, code: 400, reason: "bad_request"},
		{name: "ConfigBadPolicy", subject: api("config", docs), body: `{"discard_policy":"sometimes"}`, code: 400, reason: "bad_request"},
		{name: "ConfigNotJSON", subject: api("config", docs), body: `max_msgs=1`, code: 400, reason: "bad_request"},
		{name: "TTLDisabled", subject: api("set", docs), header: header("Persist-TTL", "1m"), code: 400, reason: "ttl_disabled"},
		{name: "AllowTTL", subject: api("config", docs), body: `{"allow_msg_ttl":true}`},
		{name: "SetTTL", subject: api("set", docs), body: "t", header: header("Persist-TTL", "1500m"), want: `{"seq":8,"time":0}`},
		{name: "SetTTLSeconds", subject: api("set", docs), body: "t", header: header("Persist-TTL", "90"), want: `{"seq":9,"time":0}`},
		{name: "GetTTL", subject: api("get", docs), body: `{"seq":9}`, check: func(t *testing.T, m *nats.Msg) {
			tm, _ := strconv.ParseInt(m.Header.Get("Persist-Time"), 10, 64)
			exp, _ := strconv.ParseInt(m.Header.Get("Persist-Expires"), 10, 64)
			if exp-tm != 90000 {
				t.Fatalf("Persist-Expires - Persist-Time = %d, want 90000 (%v)", exp-tm, m.Header)
			}
		}},
		{name: "TTLBad", subject: api("set", docs), header: header("Persist-TTL", "soon"), code: 400, reason: "bad_request"},
		{name: "TTLNegative", subject: api("set", docs), header: header("Persist-TTL", "-5s"), code: 400, reason: "bad_request"},
		{name: "TTLZero", subject: api("set", docs), header: header("Persist-TTL", "0"), code: 400, reason: "bad_request"},
		{name: "UnknownPersistHeader", subject: api("set", docs), header: header("Persist-Foo", "x"), code: 400, reason: "bad_request"},
		{name: "RequestHeaderWrongCase", subject: api("set", docs), header: header("persist-key", "k"), code: 400, reason: "bad_request"},
		{name: "PreviousSeqWithoutKey", subject: api("set", docs), header: header("Persist-Previous-Seq", "1"), code: 400, reason: "bad_request"},
		{name: "PreviousSeqNotNumber", subject: api("set", docs), header: header("Persist-Key", "k", "Persist-Previous-Seq", "x"), code: 400, reason: "bad_request"},
		{name: "EmptyKey", subject: api("set", docs), header: header("Persist-Key", ""), code: 400, reason: "bad_request"},
		{name: "OutputHeaderIgnored", subject: api("set", docs), body: "o", header: header("PERSIST-REVISION", "1", "Persist-Op", "x"), want: `{"seq":10,"time":0}`},
		{name: "GetEmptyBody", subject: api("get", docs), body: `{}`, code: 400, reason: "bad_request"},
		{name: "GetBoth", subject: api("get", docs), body: `{"seq":1,"key":"k"}`, code: 400, reason: "bad_request"},
		{name: "GetUnknownField", subject: api("get", docs), body: `{"seq":1,"x":1}`, code: 400, reason: "bad_request"},
		{name: "GetNotJSON", subject: api("get", docs), body: `seq=1`, code: 400, reason: "bad_request"},
		{name: "DeleteEmpty", subject: api("delete", docs), body: `{}`, code: 400, reason: "bad_request"},
		{name: "DeleteTwo", subject: api("delete", docs), body: `{"seq":1,"all":true}`, code: 400, reason: "bad_request"},
		{name: "DeleteTooMany", subject: api("delete", docs), body: `{"seqs":[` + strings.Repeat("1,", 10000) + `1]}`, code: 400, reason: "bad_request"},
		{name: "SetManyNotArray", subject: api("setmany", docs), body: `{"data":""}`, code: 400, reason: "bad_request"},
		{name: "SetManyTooMany", subject: api("setmany", docs), body: "[" + strings.Repeat(`{"data":""},`, 1000) + `{"data":""}]`, code: 400, reason: "bad_request"},
		{name: "KeysBadBody", subject: api("keys", docs), body: `{"limit":"x"}`, code: 400, reason: "bad_request"},
		{name: "ListBadBody", subject: api("list", "acme"), body: `{"bogus":true}`, code: 400, reason: "bad_request"},
		{name: "InventoryAfterErrors", subject: api("inventory", docs), want: `{"count":9,"bytes":32,"first_seq":1,"last_seq":10,"revision":12,
			"limits":{"max_msg_size":10,"allow_msg_ttl":true,"desc":{"team":"docs"}}}`},
		{name: "DeleteSeq", subject: api("delete", docs), body: `{"seq":1}`, want: `{"count":1}`},
		{name: "DeleteSeqs", subject: api("delete", docs), body: `{"seqs":[3,4,99]}`, want: `{"count":2}`},
		{name: "DeleteKey", subject: api("delete", docs), body: `{"key":"k2"}`, want: `{"count":1}`},
		{name: "DeleteThrough", subject: api("delete", docs), body: `{"last_seq":6}`, want: `{"count":2}`},
		{name: "DeleteNothing", subject: api("delete", docs), body: `{"last_seq":6}`, want: `{"count":0}`},
		{name: "DeleteAll", subject: api("delete", docs), body: `{"all":true}`, want: `{"count":3}`},
		{name: "SeqNotReused", subject: api("set", docs), want: `{"seq":11,"time":0}`},
		{name: "List", subject: api("list", "acme"), want: `{"streams":["acme.docs"],"more":false}`},
		{name: "ListNoPartialToken", subject: api("list", "acm"), want: `{"streams":[],"more":false}`},
		{name: "Destroy", subject: api("destroy", docs), want: `{"ok":true}`},
		{name: "GetDestroyed", subject: api("get", docs), body: `{"seq":11}`, code: 404, reason: "not_found"},
		{name: "Recreated", subject: api("set", docs), want: `{"seq":1,"time":0}`},
		{name: "RecreatedRevision", subject: api("inventory", docs), want: `{"count":1,"bytes":0,"first_seq":1,"last_seq":1,"revision":1,"limits":{}}`},
	})
}

// timeOf returns the "time" field of a JSON reply as spelled.
func timeOf(tb testing.TB, body []byte) string {
	tb.Helper()
	_, after, ok := strings.Cut(string(body), `"time":`)
	if !ok {
		tb.Fatalf("reply %s has no time", body)
	}
	end := strings.IndexAny(after, ",}")
	if end < 0 {
		tb.Fatalf("reply %s is cut short", body)
	}
	return after[:end]
}

func TestWire_Limits(t *testing.T) {
	s := runServer(t, -1)
	startBroker(t, s, broker.Options{})
	nc := connect(t, s.ClientURL())
	runSteps(t, nc, []wireStep{
		{name: "RateConfig", subject: api("config", "acme.rate"), body: `{"max_msgs_per_second":1}`},
		{name: "RateFirst", subject: api("set", "acme.rate"), want: `{"seq":1,"time":0}`},
		{name: "RateSecond", subject: api("set", "acme.rate"), code: 429, reason: "rate_limited"},
		{name: "DiscardNewConfig", subject: api("config", "acme.full"), body: `{"max_msgs":1,"discard_policy":"new"}`},
		{name: "DiscardNewFirst", subject: api("set", "acme.full"), want: `{"seq":1,"time":0}`},
		{name: "DiscardNewSecond", subject: api("set", "acme.full"), code: 507, reason: "limit_reached"},
		{name: "DiscardNewSetMany", subject: api("setmany", "acme.full"), body: `[{"data":""}]`, want: "[" + errItem(507, "limit_reached") + "]"},
		{name: "MaxBytesConfig", subject: api("config", "acme.small"), body: `{"max_bytes":4}`},
		{name: "MaxBytesTooLarge", subject: api("set", "acme.small"), body: "12345", code: 413, reason: "msg_too_large"},
		{name: "DiscardOldConfig", subject: api("config", "acme.old"), body: `{"max_msgs":2}`},
		{name: "DiscardOld1", subject: api("set", "acme.old"), want: `{"seq":1,"time":0}`},
		{name: "DiscardOld2", subject: api("set", "acme.old"), want: `{"seq":2,"time":0}`},
		{name: "DiscardOld3", subject: api("set", "acme.old"), want: `{"seq":3,"time":0}`},
		{name: "DiscardOldInventory", subject: api("inventory", "acme.old"), want: `{"count":2,"bytes":0,"first_seq":2,"last_seq":3,"revision":5,"limits":{"max_msgs":2}}`},
	})
}

func TestWire_InvalidStream(t *testing.T) {
	s := runServer(t, -1)
	dir := t.TempDir()
	startBroker(t, s, broker.Options{DataDir: dir})
	nc := connect(t, s.ClientURL())
	var steps []wireStep
	for _, tt := range []struct{ name, stream string }{
		{"LowerCaseEscape", "acme.a%2e"},
		{"EscapedPlainByte", "acme.a%41"},
		{"BadEscape", "acme.a%zz"},
		{"ShortEscape", "acme.a%4"},
		{"ForbiddenByte", "acme.a$b"},
		{"TokenTooLong", "acme." + strings.Repeat("a", 201)},
		{"TooManyTokens", strings.Repeat("a.", 16) + "a"},
		{"NameTooLong", strings.Repeat(strings.Repeat("a", 100)+".", 3) + strings.Repeat("a", 20)},
	} {
		for _, op := range []string{"set", "get", "getall", "delete", "config", "inventory", "keys", "destroy", "setmany", "list"} {
			steps = append(steps, wireStep{name: tt.name + "/" + op, subject: api(op, tt.stream), body: "{}", code: 400, reason: "invalid_stream"})
		}
	}
	steps = append(steps,
		wireStep{name: "LongestValidName", subject: api("set", strings.Repeat(strings.Repeat("b", 100)+".", 3)+strings.Repeat("b", 17)), want: `{"seq":1,"time":0}`},
		wireStep{name: "EscapedName", subject: api("set", "acme.notes%2Etxt"), want: `{"seq":1,"time":0}`},
	)
	runSteps(t, nc, steps)
	files := dbFiles(t, dir)
	slices.Sort(files)
	want := []string{filepath.Join("acme", "notes%2Etxt.db"), filepath.Join(strings.Repeat("b", 100), strings.Repeat("b", 100), strings.Repeat("b", 100), strings.Repeat("b", 17)+".db")}
	slices.Sort(want)
	if !slices.Equal(files, want) {
		t.Fatalf("stream files = %v, want %v", files, want)
	}
}

func TestWire_DamagedFile(t *testing.T) {
	s := runServer(t, -1)
	dir := t.TempDir()
	bad := filepath.Join(dir, "acme", "bad.db")
	if err := os.MkdirAll(filepath.Dir(bad), 0o755); err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte("this is not a stream file. "), 200)
	if err := os.WriteFile(bad, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	startBroker(t, s, broker.Options{DataDir: dir})
	nc := connect(t, s.ClientURL())
	runSteps(t, nc, []wireStep{
		{name: "Get", subject: api("get", "acme.bad"), body: `{"seq":1}`, code: 503, reason: "damaged"},
		{name: "Set", subject: api("set", "acme.bad"), body: "x", code: 503, reason: "damaged"},
		{name: "SetMany", subject: api("setmany", "acme.bad"), body: `[{"data":""},{"data":""}]`, code: 503, reason: "damaged"},
		{name: "Inventory", subject: api("inventory", "acme.bad"), code: 503, reason: "damaged"},
		{name: "Config", subject: api("config", "acme.bad"), body: `{"max_msgs":3}`, code: 503, reason: "damaged"},
		{name: "Destroy", subject: api("destroy", "acme.bad"), code: 503, reason: "damaged"},
		{name: "OtherStreamWorks", subject: api("set", "acme.good"), want: `{"seq":1,"time":0}`},
	})
	t.Run("GetAll", func(t *testing.T) {
		msgs, end := getAllRaw(t, nc, api("getall", "acme.bad"), nil)
		if len(msgs) != 0 || end.Header.Get("Nats-Service-Error-Code") != "503" {
			t.Fatalf("getall of a damaged stream = %d messages, end %v %s; want a 503", len(msgs), end.Header, end.Data)
		}
	})
	got, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, junk) {
		t.Fatal("the damaged file was changed")
	}
}

func TestWire_GetAllPages(t *testing.T) {
	s := runServer(t, -1)
	startBroker(t, s, broker.Options{})
	nc := connect(t, s.ClientURL())
	var items []string
	for i := 1; i <= 25; i++ {
		items = append(items, fmt.Sprintf(`{"data":"%s"}`, b64(fmt.Sprintf("m%d", i))))
	}
	m, err := nc.Request(api("setmany", "acme.pages"), []byte("["+strings.Join(items, ",")+"]"), 10*time.Second)
	if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
		t.Fatalf("setmany: %v %s", err, m.Data)
	}
	for _, tt := range []struct {
		name     string
		body     string
		seqs     [2]uint64 // first and last seq sent, 0 for none
		pending  int
		nextSeq  uint64
		errCode  string
		revision uint64
	}{
		{name: "FirstPage", body: `{"max_msgs":10}`, seqs: [2]uint64{1, 10}, pending: 15, nextSeq: 11},
		{name: "NextPage", body: `{"start_seq":11,"max_msgs":10}`, seqs: [2]uint64{11, 20}, pending: 5, nextSeq: 21},
		{name: "LastPage", body: `{"start_seq":21,"max_msgs":10}`, seqs: [2]uint64{21, 25}},
		{name: "Default", body: ``, seqs: [2]uint64{1, 25}},
		{name: "EmptyObject", body: `{}`, seqs: [2]uint64{1, 25}},
		{name: "Range", body: `{"start_seq":5,"end_seq":7}`, seqs: [2]uint64{5, 7}},
		{name: "RangePaged", body: `{"start_seq":5,"end_seq":9,"max_msgs":2}`, seqs: [2]uint64{5, 6}, pending: 3, nextSeq: 7},
		{name: "MaxBytesAtLeastOne", body: `{"max_bytes":1}`, seqs: [2]uint64{1, 1}, pending: 24, nextSeq: 2},
		{name: "MaxBytes", body: `{"max_bytes":6}`, seqs: [2]uint64{1, 3}, pending: 22, nextSeq: 4},
		{name: "HugeMaxMsgsCapped", body: `{"max_msgs":1000000,"max_bytes":1000000000}`, seqs: [2]uint64{1, 25}},
		{name: "StartTimeFuture", body: fmt.Sprintf(`{"start_time":%d}`, time.Now().Add(time.Hour).UnixMilli())},
		{name: "StartTimePast", body: `{"start_time":1}`, seqs: [2]uint64{1, 25}},
		{name: "PastTheEnd", body: `{"start_seq":26}`},
		{name: "UnknownField", body: `{"bogus":1}`, errCode: "400"},
		{name: "NotJSON", body: `[1]`, errCode: "400"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msgs, end := getAllRaw(t, nc, api("getall", "acme.pages"), []byte(tt.body))
			if tt.errCode != "" {
				if got := end.Header.Get("Nats-Service-Error-Code"); got != tt.errCode || len(msgs) != 0 {
					t.Fatalf("getall %s ended with %q after %d messages, want error %s", tt.body, got, len(msgs), tt.errCode)
				}
				return
			}
			var want []string
			if tt.seqs[0] != 0 {
				for seq := tt.seqs[0]; seq <= tt.seqs[1]; seq++ {
					want = append(want, fmt.Sprintf("%d=m%d", seq, seq))
				}
			}
			var got []string
			for _, m := range msgs {
				got = append(got, m.Header.Get("Persist-Seq")+"="+string(m.Data))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("getall %s = %v, want %v", tt.body, got, want)
			}
			checkTerminator(t, end, 25, 25, tt.pending, tt.nextSeq)
		})
	}
}

func TestWire_Events(t *testing.T) {
	s := runServer(t, -1)
	startBroker(t, s, broker.Options{})
	nc := connect(t, s.ClientURL())
	sub, err := nc.SubscribeSync("persist.ev.acme.ev")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	runSteps(t, nc, []wireStep{
		{name: "Set", subject: api("set", "acme.ev"), body: "p1", header: header("Persist-Key", "k", "X-A", "1"), want: `{"seq":1,"time":0}`},
		{name: "Replace", subject: api("set", "acme.ev"), body: "p2", header: header("Persist-Key", "k"), want: `{"seq":2,"time":0}`},
		{name: "Plain", subject: api("set", "acme.ev"), body: "p3", want: `{"seq":3,"time":0}`},
		{name: "Delete", subject: api("delete", "acme.ev"), body: `{"seqs":[2,3]}`, want: `{"count":2}`},
		{name: "DeleteNothing", subject: api("delete", "acme.ev"), body: `{"seq":2}`, want: `{"count":0}`},
		{name: "Config", subject: api("config", "acme.ev"), body: `{"max_msgs":9}`},
		{name: "ConfigUnchanged", subject: api("config", "acme.ev"), body: `{"max_msgs":9}`},
		{name: "Destroy", subject: api("destroy", "acme.ev"), want: `{"ok":true}`},
	})
	next := func(t *testing.T, op string, rev int) *nats.Msg {
		t.Helper()
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("event rev %d: %v", rev, err)
		}
		if got := m.Header.Get("Persist-Op"); got != op {
			t.Fatalf("Persist-Op = %q, want %q (%v)", got, op, m.Header)
		}
		if got, want := m.Header.Get("Persist-Revision"), strconv.Itoa(rev); got != want {
			t.Fatalf("Persist-Revision = %q, want %q", got, want)
		}
		return m
	}
	m := next(t, "set", 1)
	if string(m.Data) != "p1" || m.Header.Get("Persist-Seq") != "1" || m.Header.Get("Persist-Key") != "k" ||
		m.Header.Get("X-A") != "1" || m.Header.Get("Persist-Time") == "" {
		t.Fatalf("set event = %q %v", m.Data, m.Header)
	}
	if m := next(t, "set", 2); string(m.Data) != "p2" || m.Header.Get("Persist-Seq") != "2" {
		t.Fatalf("replacing set event = %q %v; want only the set, no delete", m.Data, m.Header)
	}
	next(t, "set", 3)
	m = next(t, "delete", 4)
	if got, want := normalize(t, m.Data), canonical(t, `{"ranges":[[2,3]]}`); got != want || m.Header.Get("Persist-Reason") != "request" {
		t.Fatalf("delete event = %s %v, want %s by request", m.Data, m.Header, want)
	}
	m = next(t, "config", 5)
	if got, want := normalize(t, m.Data), canonical(t, strings.Replace(defaultConfig, `"max_msgs":-1`, `"max_msgs":9`, 1)); got != want {
		t.Fatalf("config event = %s, want %s", got, want)
	}
	if m := next(t, "destroy", 6); len(m.Data) != 0 {
		t.Fatalf("destroy event body = %q, want empty", m.Data)
	}
	if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("unexpected event %v %q", m.Header, m.Data)
	}
}

func TestWire_Service(t *testing.T) {
	s := runServer(t, -1)
	startBroker(t, s, broker.Options{})
	nc := connect(t, s.ClientURL())
	m, err := nc.Request("$SRV.INFO.persist", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Name      string `json:"name"`
		Endpoints []struct {
			Name    string `json:"name"`
			Subject string `json:"subject"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "persist" {
		t.Fatalf("service name = %q, want persist", info.Name)
	}
	var subs []string
	for _, e := range info.Endpoints {
		subs = append(subs, e.Subject)
	}
	for _, op := range []string{"set", "setmany", "get", "getall", "delete", "config", "inventory", "keys", "list", "destroy"} {
		if !slices.ContainsFunc(subs, func(s string) bool { return strings.HasPrefix(s, "persist.api."+op+".") }) {
			t.Fatalf("no endpoint for %s among %v", op, subs)
		}
	}
}
