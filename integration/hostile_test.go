package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/client"
)

// hostileConn speaks the NATS client protocol over a bare TCP
// connection, so that it can send what nats.go refuses or repairs:
// header values with CR or LF, white space at the ends of a value,
// malformed header blocks, subjects with wildcards and empty tokens.
type hostileConn struct {
	tb    testing.TB
	c     net.Conn
	r     *bufio.Reader
	inbox string
	n     int
}

// hostileDial connects to s as a plain client with headers and no
// responders on, and subscribes to an inbox for the replies.
func hostileDial(tb testing.TB, s *server.Server) *hostileConn {
	tb.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	h := &hostileConn{tb: tb, c: c, r: bufio.NewReaderSize(c, 64<<10), inbox: "_INBOX.hostile"}
	h.deadline()
	if line := h.line(); !strings.HasPrefix(line, "INFO ") {
		tb.Fatalf("server greeting %q, want INFO", line)
	}
	h.write([]byte(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}` + "\r\nSUB " + h.inbox + ".> 1\r\nPING\r\n"))
	for {
		switch line := h.line(); {
		case line == "PONG":
			return h
		case strings.HasPrefix(line, "-ERR"):
			tb.Fatalf("server refused the connection: %s", line)
		}
	}
}

func (h *hostileConn) deadline() {
	if err := h.c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		h.tb.Fatal(err)
	}
}

func (h *hostileConn) write(b []byte) {
	h.tb.Helper()
	if _, err := h.c.Write(b); err != nil {
		h.tb.Fatal(err)
	}
}

// line reads one protocol line without its CRLF.
func (h *hostileConn) line() string {
	h.tb.Helper()
	l, err := h.r.ReadString('\n')
	if err != nil {
		h.tb.Fatalf("reading from the server: %v", err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
}

// publish sends body to subject with reply as reply subject and, when
// hdr is not nil, the header lines hdr (each ending in CRLF) after the
// NATS/1.0 line. The block is sent as given, broken or not.
func (h *hostileConn) publish(subject, reply string, hdr, body []byte) {
	h.tb.Helper()
	h.deadline()
	var b bytes.Buffer
	if hdr == nil {
		fmt.Fprintf(&b, "PUB %s %s %d\r\n", subject, reply, len(body))
	} else {
		block := append(append([]byte("NATS/1.0\r\n"), hdr...), "\r\n"...)
		fmt.Fprintf(&b, "HPUB %s %s %d %d\r\n", subject, reply, len(block), len(block)+len(body))
		b.Write(block)
	}
	b.Write(body)
	b.WriteString("\r\n")
	h.write(b.Bytes())
}

// next returns the next message delivered to the inbox, answering the
// server's pings on the way. A header block that does not decode fails
// the test: the worker always sends good ones.
func (h *hostileConn) next() *nats.Msg {
	h.tb.Helper()
	h.deadline()
	for {
		line := h.line()
		switch {
		case line == "PING":
			h.write([]byte("PONG\r\n"))
			continue
		case line == "PONG" || line == "+OK" || strings.HasPrefix(line, "INFO "):
			continue
		case strings.HasPrefix(line, "-ERR"):
			h.tb.Fatalf("server error: %s", line)
		}
		f := strings.Fields(line)
		var hdrLen, total int
		var err error
		switch {
		case f[0] == "MSG" && (len(f) == 4 || len(f) == 5):
			total, err = strconv.Atoi(f[len(f)-1])
		case f[0] == "HMSG" && (len(f) == 5 || len(f) == 6):
			if hdrLen, err = strconv.Atoi(f[len(f)-2]); err == nil {
				total, err = strconv.Atoi(f[len(f)-1])
			}
		default:
			h.tb.Fatalf("unexpected protocol line %q", line)
		}
		if err != nil {
			h.tb.Fatalf("protocol line %q: %v", line, err)
		}
		buf := make([]byte, total+2)
		if _, err := io.ReadFull(h.r, buf); err != nil {
			h.tb.Fatalf("reading a message: %v", err)
		}
		m := &nats.Msg{Subject: f[1], Data: buf[hdrLen:total]}
		if hdrLen > 0 {
			if m.Header, err = nats.DecodeHeadersMsg(buf[:hdrLen]); err != nil {
				h.tb.Fatalf("reply header %q: %v", buf[:hdrLen], err)
			}
		}
		return m
	}
}

// request publishes one request and returns its first reply, and for a
// getall every reply up to the terminator or error reply.
func (h *hostileConn) request(subject string, hdr, body []byte) []*nats.Msg {
	h.tb.Helper()
	h.n++
	reply := h.inbox + "." + strconv.Itoa(h.n)
	h.publish(subject, reply, hdr, body)
	var out []*nats.Msg
	for {
		m := h.next()
		if m.Subject != reply {
			continue // a late reply of an earlier request
		}
		out = append(out, m)
		if !strings.Contains(subject, ".getall.") || m.Header.Get("Persist-End") != "" ||
			m.Header.Get("Nats-Service-Error-Code") != "" || m.Header.Get("Status") != "" {
			return out
		}
	}
}

// hostileFiles lists every file and directory under dir with the size of
// each file, except the companions of stream files that SQLite creates,
// resizes and removes as a stream is opened, written and closed (-wal,
// -shm, -journal); those are only checked to belong to a listed .db.
func hostileFiles(tb testing.TB, dir string) map[string]int64 {
	tb.Helper()
	out := map[string]int64{}
	var companions []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel+string(filepath.Separator)] = 0
			return nil
		}
		for _, suffix := range []string{"-wal", "-shm", "-journal"} {
			if db, ok := strings.CutSuffix(rel, suffix); ok && strings.HasSuffix(db, ".db") {
				companions = append(companions, db)
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if strings.HasSuffix(rel, ".db") {
			out[rel] = -1 // a .db changes size when its WAL is checkpointed
		} else {
			out[rel] = info.Size()
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	for _, db := range companions {
		if _, ok := out[db]; !ok {
			tb.Fatalf("%s has SQLite companions but no stream file", db)
		}
	}
	return out
}

// hostileState is what the wire tells of a stream: inventory, config,
// keys, and every message with its seq, time, key, expiry, headers and
// payload.
func hostileState(tb testing.TB, h *hostileConn, stream string) string {
	tb.Helper()
	var b strings.Builder
	for _, op := range []string{"inventory", "config", "keys"} {
		var body []byte // an empty config body reads the config
		if op == "keys" {
			body = []byte(`{"limit":10000}`)
		}
		m := h.request(api(op, stream), nil, body)
		if code := m[0].Header.Get("Nats-Service-Error-Code"); code != "" {
			tb.Fatalf("%s of %s: error %s %s", op, stream, code, m[0].Data)
		}
		fmt.Fprintf(&b, "%s %s\n", op, m[0].Data)
	}
	for next := uint64(1); ; {
		page := h.request(api("getall", stream), nil, fmt.Appendf(nil, `{"start_seq":%d,"max_msgs":10000}`, next))
		end := page[len(page)-1]
		if end.Header.Get("Persist-End") == "" {
			tb.Fatalf("getall of %s: %v %s", stream, end.Header, end.Data)
		}
		for _, m := range page[:len(page)-1] {
			names := make([]string, 0, len(m.Header))
			for k := range m.Header {
				names = append(names, k)
			}
			slices.Sort(names)
			for _, k := range names {
				fmt.Fprintf(&b, "%s=%q ", k, m.Header[k])
			}
			fmt.Fprintf(&b, "%q\n", m.Data)
		}
		if end.Header.Get("Persist-Num-Pending") == "0" {
			return b.String()
		}
		n, err := strconv.ParseUint(end.Header.Get("Persist-Next-Seq"), 10, 64)
		if err != nil || n <= next {
			tb.Fatalf("getall of %s: next seq %q after %d", stream, end.Header.Get("Persist-Next-Seq"), next)
		}
		next = n
	}
}

// hostileRow is one malformed request and its documented answer: an error
// reply with code and reason, or no responders (noWorker), or, for the
// few well-formed but extreme requests among them, check.
type hostileRow struct {
	name     string
	subject  string
	hdr      string // header lines after NATS/1.0, each ending in CRLF; "" for none
	body     string
	code     int
	reason   string
	noWorker bool
	check    func(t *testing.T, replies []*nats.Msg)
}

// hostileJunk is binary junk: every byte value, invalid UTF-8 included.
var hostileJunk = func() string {
	b := make([]byte, 512)
	for i := range b {
		b[i] = byte(i*167 + 13)
	}
	return string(b)
}()

// hostileSeqs is a delete body with n seqs.
func hostileSeqs(n int) string {
	return `{"seqs":[` + strings.TrimSuffix(strings.Repeat("7,", n), ",") + `]}`
}

// hostileNest is v nested in n arrays.
func hostileNest(n int, v string) string {
	return strings.Repeat("[", n) + v + strings.Repeat("]", n)
}

// hostileSetManyBad is a setmany whose every item is bad on its own, so
// that the reply is a 400 per item and nothing is written.
const hostileSetManyBad = `[{"data":"","key":" padded "},{"data":"!!"},{"data":"","ttl":1.5},{"data":"","ttl":0},` +
	`{"data":"","previous_seq":1},{"data":"","headers":{"Persist-Key":["k"]}},{"data":"","headers":{"X-A":["a\r\nB: c"]}},` +
	`{"key":"k"},1,null,"x",[],{"data":"","bogus":1},{"data":"","key":"k1","previous_seq":18446744073709551615},` +
	`{"data":"","msg_id":""},{"data":"","key":""}]`

// hostileRows are the malformed requests. The streams acme.docs,
// acme.ttl and acme.big exist; acme.ghost does not.
func hostileRows() []hostileRow {
	const docs, ttl, ghost = "acme.docs", "acme.ttl", "acme.ghost"
	bad := func(name, subject, hdr, body string) hostileRow {
		return hostileRow{name: name, subject: subject, hdr: hdr, body: body, code: 400, reason: "bad_request"}
	}
	invalid := func(name, subject string) hostileRow {
		return hostileRow{name: name, subject: subject, body: "{}", code: 400, reason: "invalid_stream"}
	}
	noWorker := func(name, subject string) hostileRow {
		return hostileRow{name: name, subject: subject, body: "{}", noWorker: true}
	}
	set := api("set", docs)
	rows := []hostileRow{
		// Subjects. A subject with an empty token never reaches the
		// worker: NATS matches no wildcard subscription with it.
		invalid("NoStream/get", "persist.api.get"),
		invalid("NoStream/set", "persist.api.set"),
		invalid("NoStream/setmany", "persist.api.setmany"),
		invalid("NoStream/delete", "persist.api.delete"),
		invalid("NoStream/destroy", "persist.api.destroy"),
		invalid("NoStream/list", "persist.api.list"),
		invalid("NoStream/UnknownOp", "persist.api.bogus"),
		invalid("NoStream/WildcardOp", "persist.api.*"),
		invalid("NoStream/FullWildcardOp", "persist.api.>"),
		noWorker("EmptyToken", "persist.api.get..x"),
		noWorker("EmptyLastToken", "persist.api.get.acme."),
		noWorker("EmptyOp", "persist.api..acme.docs"),
		noWorker("UnknownOp", "persist.api.bogus.acme.docs"),
		noWorker("UpperCaseOp", "persist.api.GET.acme.docs"),
		noWorker("WildcardOp", "persist.api.*.acme.docs"),
		invalid("WildcardStream/get", "persist.api.get.*"),
		invalid("WildcardStream/set", "persist.api.set.>"),
		invalid("WildcardToken/set", "persist.api.set.acme.*"),
		invalid("WildcardToken/delete", "persist.api.delete.acme.>"),
		invalid("WildcardToken/destroy", "persist.api.destroy.acme.*"),
		invalid("WildcardToken/list", "persist.api.list.*"),
		invalid("LowerCaseEscape", "persist.api.set.acme.%2e"),
		invalid("LowerCaseDotDot", "persist.api.set.acme.%2e%2e"),
		invalid("EscapedPlainByte", "persist.api.set.acme.%41"),
		invalid("TruncatedEscape", "persist.api.set.acme.a%2"),
		invalid("PercentAlone", "persist.api.set.acme.%"),
		invalid("Slash", "persist.api.set.acme/etc"),
		invalid("Backslash", `persist.api.set.acme\etc`),
		noWorker("DotDot", "persist.api.set.acme...etc"),
		noWorker("DotDotFirst", "persist.api.set...acme"),
		invalid("InvalidUTF8", "persist.api.set.acme.\xff\xfe"),
		invalid("NonASCII", "persist.api.set.acme.é"),
		invalid("TokenTooLong", "persist.api.set.acme."+strings.Repeat("a", 201)),
		invalid("TooManyTokens", "persist.api.set."+strings.Repeat("a.", 16)+"a"),
		invalid("NameTooLong", "persist.api.set."+strings.Repeat(strings.Repeat("a", 100)+".", 3)+strings.Repeat("a", 20)),
		{name: "EscapedDotDotIsAName", subject: api("get", "acme.%2E%2E"), body: `{"seq":1}`, code: 404, reason: "not_found"},
		{name: "EscapedSlashIsAName", subject: api("get", "acme.%2F.%2E"), body: `{"seq":1}`, code: 404, reason: "not_found"},
		{name: "DestroyMissing", subject: api("destroy", ghost), body: hostileJunk, code: 404, reason: "not_found"},

		// Headers of set, as NATS carries them (nats.go would repair or
		// refuse some of them; a bare connection sends them as they are).
		bad("Key/Empty", set, "Persist-Key:\r\n", "x"),
		bad("Key/Padded", set, "Persist-Key:  padded \r\n", "x"),
		bad("Key/TrailingTab", set, "Persist-Key: k\t\r\n", "x"),
		bad("Key/CR", set, "Persist-Key: a\rb\r\n", "x"),
		bad("Key/NUL", set, "Persist-Key: a\x00b\r\n", "x"),
		bad("Key/InvalidUTF8", set, "Persist-Key: \xff\xfe\r\n", "x"),
		bad("Key/TooLong", set, "Persist-Key: "+strings.Repeat("k", 1025)+"\r\n", "x"),
		bad("Key/Twice", set, "Persist-Key: a\r\nPersist-Key: b\r\n", "x"),
		bad("Key/WrongCase", set, "persist-key: k\r\n", "x"),
		bad("Key/SpaceInName", set, "Persist-Key : k\r\n", "x"),
		bad("PreviousSeq/WithoutKey", set, "Persist-Previous-Seq: 1\r\n", "x"),
		bad("PreviousSeq/Negative", set, "Persist-Key: k1\r\nPersist-Previous-Seq: -1\r\n", "x"),
		bad("PreviousSeq/2^64", set, "Persist-Key: k1\r\nPersist-Previous-Seq: 18446744073709551616\r\n", "x"),
		bad("PreviousSeq/Float", set, "Persist-Key: k1\r\nPersist-Previous-Seq: 1.0\r\n", "x"),
		bad("PreviousSeq/Exponent", set, "Persist-Key: k1\r\nPersist-Previous-Seq: 1e3\r\n", "x"),
		bad("PreviousSeq/Empty", set, "Persist-Key: k1\r\nPersist-Previous-Seq:\r\n", "x"),
		bad("PreviousSeq/Twice", set, "Persist-Key: k1\r\nPersist-Previous-Seq: 4\r\nPersist-Previous-Seq: 4\r\n", "x"),
		{name: "PreviousSeq/Wrong", subject: set, hdr: "Persist-Key: k1\r\nPersist-Previous-Seq: 999\r\n", body: "x", code: 409, reason: "wrong_last_sequence"},
		{name: "PreviousSeq/Absent", subject: set, hdr: "Persist-Key: k1\r\nPersist-Previous-Seq: 0\r\n", body: "x", code: 409, reason: "wrong_last_sequence"},
		bad("MsgID/Empty", set, "Persist-Msg-Id:\r\n", "x"),
		bad("MsgID/TooLong", set, "Persist-Msg-Id: "+strings.Repeat("m", 1025)+"\r\n", "x"),
		bad("MsgID/Control", set, "Persist-Msg-Id: a\x01b\r\n", "x"),
		bad("MsgID/Twice", set, "Persist-Msg-Id: a\r\nPersist-Msg-Id: b\r\n", "x"),
		{name: "TTL/Disabled", subject: set, hdr: "Persist-TTL: 90s\r\n", body: "x", code: 400, reason: "ttl_disabled"},
		bad("TTL/Zero", api("set", ttl), "Persist-TTL: 0\r\n", "x"),
		bad("TTL/Negative", api("set", ttl), "Persist-TTL: -1s\r\n", "x"),
		bad("TTL/Exponent", api("set", ttl), "Persist-TTL: 1e3\r\n", "x"),
		bad("TTL/Fraction", api("set", ttl), "Persist-TTL: 1.5\r\n", "x"),
		bad("TTL/Word", api("set", ttl), "Persist-TTL: forever\r\n", "x"),
		bad("TTL/TooLong", api("set", ttl), "Persist-TTL: 876001h\r\n", "x"),
		bad("TTL/HugeSeconds", api("set", ttl), "Persist-TTL: 99999999999999999999\r\n", "x"),
		bad("TTL/Empty", api("set", ttl), "Persist-TTL:\r\n", "x"),
		bad("UnknownPersistHeader", set, "Persist-Sync: true\r\n", "x"),
		bad("UnknownPersistHeaderCase", set, "PERSIST-FOO: 1\r\n", "x"),
		bad("UserValue/CR", set, "X-A: a\rb\r\n", "x"),
		bad("UserValue/TrailingSpace", set, "X-A: b \r\n", "x"),
		bad("UserName/Space", set, "X A: 1\r\n", "x"),
		bad("UserName/Equals", set, "X=A: 1\r\n", "x"),
		bad("UserName/Parens", set, "X(A): 1\r\n", "x"),
		bad("UserName/InvalidUTF8", set, "X-\xff: 1\r\n", "x"),
		bad("UserName/Status", set, "Status: 503\r\n", ""),
		bad("UserName/Junk", set, "\x01\xfe\x7f: v\r\n", "x"),
		{name: "Oversized", subject: set, hdr: "Persist-Key: " + strings.Repeat("k", 1024) + "\r\n", body: strings.Repeat("x", 8<<20-1100), code: 413, reason: "msg_too_large"},

		// setmany bodies.
		bad("SetMany/Object", api("setmany", docs), "", `{"data":""}`),
		bad("SetMany/Null", api("setmany", docs), "", `null`),
		bad("SetMany/Empty", api("setmany", docs), "", ``),
		bad("SetMany/Truncated", api("setmany", docs), "", `[{"data":""}`),
		bad("SetMany/Trailing", api("setmany", docs), "", `[{"data":""}] []`),
		bad("SetMany/1001", api("setmany", docs), "", "["+strings.TrimSuffix(strings.Repeat(`{"data":""},`, 1001), ",")+"]"),
		bad("SetMany/InvalidUTF8", api("setmany", docs), "", "[{\"data\":\"\",\"key\":\"\xff\"}]"),
		bad("SetMany/TooDeep", api("setmany", docs), "", hostileNest(10001, "")),
		bad("SetMany/Junk", api("setmany", docs), "", hostileJunk),
		{name: "SetMany/EveryItemBad", subject: api("setmany", docs), body: hostileSetManyBad, check: hostileItemsRefused(16, 13, "wrong_last_sequence")},
		{name: "SetMany/Nested", subject: api("setmany", docs), body: hostileNest(50, "1"), check: hostileItemsRefused(1)},
		{name: "SetMany/DuplicateField", subject: api("setmany", docs), body: `[{"data":"","key":"k1","key":"k9"}]`, check: hostileItemsRefused(1)},
		{name: "SetMany/FieldCase", subject: api("setmany", docs), body: `[{"DATA":""}]`, check: hostileItemsRefused(1)},
		{name: "SetMany/NullKey", subject: api("setmany", docs), body: `[{"data":"","key":null}]`, check: hostileItemsRefused(1)},
		{name: "SetMany/PaddedHeaderValue", subject: api("setmany", docs), body: `[{"data":"","headers":{"X-A":["b "]}}]`, check: hostileItemsRefused(1)},
		{name: "SetMany/StatusHeader", subject: api("setmany", docs), body: `[{"data":"","headers":{"Status":["503"]}}]`, check: hostileItemsRefused(1)},
	}
	// get, getall, delete, keys, list and config bodies.
	for _, b := range []string{``, `null`, `[]`, `"seq"`, `{}`, `{"seq":"1"}`, `{"seq":-1}`, `{"seq":1.5}`, `{"seq":1.0}`, `{"seq":1e400}`,
		`{"seq":18446744073709551616}`, `{"seq":-0}`, `{"seq":true}`, `{"seq":[1]}`, `{"seq":{}}`, `{"key":1}`, `{"seq":1,"key":"k1"}`,
		`{"seq":1}{"seq":2}`, `{"seq":1,"seq":2}`, `{"SEQ":1}`, `{"seq":null,"key":"k1"}`, "{\"key\":\"\xff\"}", `{"key":" padded "}`,
		`{"key":""}`, `{"key":"` + strings.Repeat("k", 1025) + `"}`, `{"seq":1,"bogus":2}`, `{"seq":` + hostileNest(20000, "1") + `}`, hostileJunk} {
		rows = append(rows, bad("Get/"+hostileLabel(b), api("get", docs), "", b))
	}
	for _, b := range []string{`null`, `[]`, `{"start_seq":-1}`, `{"max_msgs":1.5}`, `{"max_bytes":"1"}`, `{"start_time":1e400}`,
		`{"end_seq":18446744073709551616}`, `{"bogus":1}`, `{"max_msgs":null}`, `{"Max_Msgs":5}`, `{"max_msgs":1,"max_msgs":2}`, "\v", hostileJunk} {
		rows = append(rows, bad("GetAll/"+hostileLabel(b), api("getall", docs), "", b))
	}
	for _, b := range []string{``, `{}`, hostileSeqs(10001), `{"seqs":[1,-1]}`, `{"seqs":"1"}`, `{"seqs":[1,null]}`, `{"seqs":[1.5]}`,
		`{"seq":1,"all":true}`, `{"all":false}`, `{"all":"true"}`, `{"all":null}`, `{"last_seq":-1}`, `{"key":""}`, `{"key":" padded "}`,
		`{"seq":1,"seq":1}`, `{"Seq":1}`, `{"last_seq":18446744073709551616}`, hostileJunk} {
		rows = append(rows, bad("Delete/"+hostileLabel(b), api("delete", docs), "", b))
	}
	for _, b := range []string{`null`, `[]`, `{"limit":-1}`, `{"limit":1.5}`, `{"after":1}`, `{"bogus":1}`, `{"after":null}`, hostileJunk} {
		rows = append(rows, bad("Keys/"+hostileLabel(b), api("keys", docs), "", b), bad("List/"+hostileLabel(b), api("list", "acme"), "", b))
	}
	for _, b := range []string{`null`, `[]`, `"x"`, `{"max_msgs":"1"}`, `{"max_msgs":1.5}`, `{"max_msgs":1e400}`, `{"max_msgs":9223372036854775808}`,
		`{"max_msgs":0}`, `{"max_msgs":-2}`, `{"max_age":-1}`, `{"discard_policy":"NEW"}`, `{"storage":"memory"}`, `{"storage":"floppy"}`,
		`{"compression":"gzip"}`, `{"sync":"yes"}`, `{"bogus":1}`, `{"Max_Msgs":3}`, `{"max_msgs":null}`, `{"max_msgs":5,"max_msgs":100}`,
		`{"desc":"` + strings.Repeat("d", 70<<10) + `"}`, `{"desc":` + hostileNest(10001, "") + `}`, "{\"desc\":\"\xff\"}",
		`{"max_msgs":5}x`, hostileJunk} {
		rows = append(rows, bad("Config/"+hostileLabel(b), api("config", docs), "", b))
	}
	return rows
}

// hostileLabel names a row after its body, shortened.
func hostileLabel(body string) string {
	if body == hostileJunk {
		return "Junk"
	}
	s := strconv.Quote(body)
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

// hostileItemsRefused checks a setmany reply whose n items are each
// refused with 400 bad_request, but for those with another reason in
// other (by index).
func hostileItemsRefused(n int, other ...any) func(t *testing.T, replies []*nats.Msg) {
	codes := map[string]int{"bad_request": 400, "wrong_last_sequence": 409}
	reasons := make([]string, n)
	for i := range reasons {
		reasons[i] = "bad_request"
	}
	for i := 0; i+1 < len(other); i += 2 {
		reasons[other[i].(int)] = other[i+1].(string)
	}
	return func(t *testing.T, replies []*nats.Msg) {
		t.Helper()
		var items []struct {
			Seq   uint64 `json:"seq"`
			Error *struct {
				Code   int    `json:"code"`
				Reason string `json:"reason"`
			} `json:"error"`
		}
		if err := json.Unmarshal(replies[0].Data, &items); err != nil || len(items) != n {
			t.Fatalf("setmany reply %s, want %d items (%v)", replies[0].Data, n, err)
		}
		for i, it := range items {
			if it.Error == nil || it.Error.Code != codes[reasons[i]] || it.Error.Reason != reasons[i] || it.Seq != 0 {
				t.Fatalf("setmany item %d of %s, want %d %s", i, replies[0].Data, codes[reasons[i]], reasons[i])
			}
		}
	}
}

// hostilePage checks a getall page of n messages starting at first whose
// terminator says pending messages follow from next.
func hostilePage(n int, first uint64, pending int, next uint64) func(t *testing.T, replies []*nats.Msg) {
	return func(t *testing.T, replies []*nats.Msg) {
		t.Helper()
		end := replies[len(replies)-1]
		if end.Header.Get("Persist-End") != "true" {
			t.Fatalf("getall ended with %v %s, want a terminator", end.Header, end.Data)
		}
		if got := len(replies) - 1; got != n {
			t.Fatalf("getall sent %d messages, want %d", got, n)
		}
		if n > 0 && replies[0].Header.Get("Persist-Seq") != strconv.FormatUint(first, 10) {
			t.Fatalf("getall started at seq %s, want %d", replies[0].Header.Get("Persist-Seq"), first)
		}
		if got, want := end.Header.Get("Persist-Num-Pending"), strconv.Itoa(pending); got != want {
			t.Fatalf("Persist-Num-Pending = %s, want %s", got, want)
		}
		if got, want := end.Header.Get("Persist-Next-Seq"), strconv.FormatUint(next, 10); pending > 0 && got != want {
			t.Fatalf("Persist-Next-Seq = %s, want %s", got, want)
		}
	}
}

// TestHostile_MalformedRequests sends every malformed request of
// hostileRows to a worker child process through a real NATS server and
// checks each documented answer, then that nothing changed: the same
// files in the data directory, the same inventory, config, keys and
// messages of every stream, and no event published.
func TestHostile_MalformedRequests(t *testing.T) {
	s := runServer(t, -1)
	dir := t.TempDir()
	w := startWorker(t, s.ClientURL(), "--data", dir)
	h := hostileDial(t, s)

	// The streams the requests aim at, with keys, headers, a TTL and more
	// messages than the largest getall page.
	setup := []struct{ subject, hdr, body string }{
		{api("config", "acme.docs"), "", `{"max_msgs":100,"desc":{"owner":"docs"}}`},
		{api("set", "acme.docs"), "", "one"},
		{api("set", "acme.docs"), "Persist-Key: k1\r\nX-A: a\r\nX-A: b\r\n", "keyed"},
		{api("setmany", "acme.docs"), "", `[{"data":"dHdv","key":"k2","msg_id":"m2"},{"data":"","headers":{"X-B":["c"]}}]`},
		{api("config", "acme.ttl"), "", `{"allow_msg_ttl":true}`},
		{api("set", "acme.ttl"), "Persist-TTL: 24h\r\n", "lives a day"},
		{api("set", "tenant2.x"), "", "elsewhere"},
	}
	for i := 0; i < 10001; i += 1000 {
		var items []string
		for j := i; j < min(i+1000, 10001); j++ {
			items = append(items, fmt.Sprintf(`{"data":"%s"}`, b64(fmt.Sprintf("m%05d", j))))
		}
		setup = append(setup, struct{ subject, hdr, body string }{api("setmany", "acme.big"), "", "[" + strings.Join(items, ",") + "]"})
	}
	for _, st := range setup {
		var hdr []byte
		if st.hdr != "" {
			hdr = []byte(st.hdr)
		}
		if m := h.request(st.subject, hdr, []byte(st.body)); m[0].Header.Get("Nats-Service-Error-Code") != "" || bytes.Contains(m[0].Data, []byte(`"error"`)) {
			t.Fatalf("setup %s: %v %s", st.subject, m[0].Header, m[0].Data)
		}
	}
	streams := []string{"acme.docs", "acme.ttl", "acme.big", "tenant2.x"}
	snapshot := func() (map[string]int64, map[string]string) {
		state := map[string]string{}
		for _, st := range streams {
			state[st] = hostileState(t, h, st)
		}
		for _, ns := range []string{"acme", "tenant2"} {
			state["list "+ns] = string(h.request(api("list", ns), nil, nil)[0].Data)
		}
		return hostileFiles(t, dir), state
	}
	filesBefore, stateBefore := snapshot()

	nc := connect(t, s.ClientURL())
	events, err := nc.SubscribeSync("persist.ev.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	rows := hostileRows()
	rows = append(rows,
		// Well-formed but extreme: pages stay within their bounds.
		hostileRow{name: "GetAll/EverythingMaxBytes0", subject: api("getall", "acme.big"),
			body:  `{"start_seq":0,"end_seq":18446744073709551615,"start_time":0,"max_msgs":18446744073709551615,"max_bytes":0}`,
			check: hostilePage(10000, 1, 1, 10001)},
		hostileRow{name: "GetAll/MaxBytes0", subject: api("getall", "acme.big"), body: `{"max_bytes":0}`, check: hostilePage(1000, 1, 9001, 1001)},
		hostileRow{name: "GetAll/MaxBytes1", subject: api("getall", "acme.big"), body: `{"max_bytes":1}`, check: hostilePage(1, 1, 10000, 2)},
		hostileRow{name: "GetAll/PastTheEnd", subject: api("getall", "acme.big"), body: `{"start_seq":18446744073709551615}`, check: hostilePage(0, 0, 0, 0)},
		hostileRow{name: "Inventory/JunkBodyIgnored", subject: api("inventory", "acme.docs"), body: hostileJunk, check: func(t *testing.T, r []*nats.Msg) {
			if !bytes.Contains(r[0].Data, []byte(`"count":4`)) {
				t.Fatalf("inventory with a junk body = %v %s, want the inventory", r[0].Header, r[0].Data)
			}
		}},
	)
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			var hdr []byte
			if row.hdr != "" {
				hdr = []byte(row.hdr)
			}
			replies := h.request(row.subject, hdr, []byte(row.body))
			m := replies[0]
			code := m.Header.Get("Nats-Service-Error-Code")
			switch {
			case row.noWorker:
				if m.Header.Get("Status") != "503" || code != "" {
					t.Fatalf("reply %v %q, want no responders", m.Header, m.Data)
				}
			case row.check != nil:
				if code != "" || m.Header.Get("Status") != "" {
					t.Fatalf("reply %v %s, want success", m.Header, m.Data)
				}
				row.check(t, replies)
			default:
				var body struct {
					Error struct {
						Code        int    `json:"code"`
						Reason      string `json:"reason"`
						Description string `json:"description"`
					} `json:"error"`
				}
				if err := json.Unmarshal(m.Data, &body); err != nil {
					t.Fatalf("reply %v %q is not an error body: %v", m.Header, m.Data, err)
				}
				if code != strconv.Itoa(row.code) || body.Error.Code != row.code || body.Error.Reason != row.reason {
					t.Fatalf("reply %s %s, want %d %s", code, m.Data, row.code, row.reason)
				}
				if m.Header.Get("Nats-Service-Error") == "" || body.Error.Description == "" {
					t.Fatalf("error reply %v %s without a description", m.Header, m.Data)
				}
				if len(replies) != 1 {
					t.Fatalf("%d replies, want one error reply", len(replies))
				}
			}
		})
	}

	filesAfter, stateAfter := snapshot()
	for p, size := range filesBefore {
		if got, ok := filesAfter[p]; !ok || got != size {
			t.Errorf("data directory: %s was %d bytes, now %d (present %v)", p, size, got, ok)
		}
	}
	for p := range filesAfter {
		if _, ok := filesBefore[p]; !ok {
			t.Errorf("data directory: %s is new", p)
		}
	}
	for k, v := range stateBefore {
		if stateAfter[k] != v {
			t.Errorf("%s changed:\nbefore %.2000s\nafter  %.2000s", k, v, stateAfter[k])
		}
	}
	// A stream's events are published before the worker answers that
	// stream's later requests, the snapshot's among them, and NATS keeps
	// the order of one connection's messages: once the snapshot is
	// answered and nc flushed, any event of a row is pending.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, err := events.Pending(); err != nil || n != 0 {
		m, _ := events.NextMsg(time.Second)
		t.Errorf("%d events published (%v), the first %v", n, err, m)
	}
	select {
	case <-w.done:
		t.Fatalf("the worker exited: %v", w.err)
	default:
	}
	if out := w.stderr.String(); strings.Contains(out, "panic") {
		t.Errorf("the worker logged a panic:\n%s", out)
	}
	report(t, "hostile", map[string]any{"inputs": len(rows)})
}

// TestHostile_StoredHeadersReadBack writes a message with a user header
// of every printable ASCII name of two bytes, and with the names NATS
// clients treat apart, each through a bare connection, and checks that
// each write is either refused with 400 bad_request or read back by the
// Go client, with get, getall and its event, exactly as written: no
// message may be stored that cannot be read.
func TestHostile_StoredHeadersReadBack(t *testing.T) {
	s := runServer(t, -1)
	startWorker(t, s.ClientURL(), "--data", t.TempDir())
	h := hostileDial(t, s)
	st := client.New(connect(t, s.ClientURL())).Stream("acme.names")
	ctx := context.Background()
	watch, err := st.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	names := []string{"Status", "status", "Description", "Nats-Service-Error-Code"}
	for c := byte('!'); c <= '~'; c++ {
		if c != ':' {
			names = append(names, "X"+string(c))
		}
	}
	stored := map[uint64]string{}
	for _, name := range names {
		// An empty payload is what makes a status header read as one.
		m := h.request(api("set", "acme.names"), []byte(name+": 503\r\n"), nil)[0]
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
			if code != "400" || !bytes.Contains(m.Data, []byte(`"bad_request"`)) {
				t.Errorf("set with header %q: %s %s, want success or 400 bad_request", name, code, m.Data)
			}
			continue
		}
		var ack struct{ Seq uint64 }
		if err := json.Unmarshal(m.Data, &ack); err != nil || ack.Seq == 0 {
			t.Fatalf("set with header %q: %s", name, m.Data)
		}
		stored[ack.Seq] = name
	}
	want := func(name string) nats.Header {
		if strings.HasPrefix(strings.ToLower(name), "nats-") {
			return nil // dropped on input
		}
		return nats.Header{name: {"503"}}
	}
	for seq, name := range stored {
		m, err := st.Get(ctx, seq)
		if err != nil {
			t.Errorf("Get(%d) of the message with header %q: %v", seq, name, err)
			continue
		}
		if !hostileEqualHeader(m.Header, want(name)) {
			t.Errorf("Get(%d) header = %v, want %v", seq, m.Header, want(name))
		}
	}
	n := 0
	for m, err := range st.GetAll(ctx, client.Query{}) {
		if err != nil {
			t.Fatalf("GetAll() after %d messages: %v", n, err)
		}
		if name := stored[m.Seq]; !hostileEqualHeader(m.Header, want(name)) {
			t.Errorf("GetAll() seq %d header = %v, want %v", m.Seq, m.Header, want(name))
		}
		n++
	}
	if n != len(stored) {
		t.Errorf("GetAll() read %d messages, %d were stored", n, len(stored))
	}
	for range stored {
		ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ev, err := watch.Next(ectx)
		cancel()
		if err != nil {
			t.Fatalf("Watcher.Next(): %v", err)
		}
		if name := stored[ev.Msg.Seq]; !hostileEqualHeader(ev.Msg.Header, want(name)) {
			t.Errorf("event of seq %d header = %v, want %v", ev.Msg.Seq, ev.Msg.Header, want(name))
		}
	}
	report(t, "hostile_header_names", map[string]any{"names": len(names), "stored": len(stored)})
}

// hostileEqualHeader compares user headers, nil and empty alike.
func hostileEqualHeader(a, b nats.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
