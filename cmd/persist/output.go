package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

// failure is a failed verb: the one line the user reads, and the cause
// for errors.Is and the exit code.
type failure struct {
	msg string
	err error
}

func (f *failure) Error() string { return f.msg }
func (f *failure) Unwrap() error { return f.err }

// fail describes err of the verb what ("get acme.docs"): a worker's error
// reply as "description (reason, code)", a missing worker or a timeout in
// words, and a value the client refuses to send as a usage error.
func (c *cli) fail(what string, err error) error {
	if err == nil {
		return nil
	}
	var perr *subjects.Error
	var msg string
	switch {
	case errors.As(err, &perr):
		msg = perr.Error()
	case errors.Is(err, client.ErrNoWorker):
		msg = fmt.Sprintf("no persist worker is listening on prefix %q", c.conn.prefix)
	case errors.Is(err, context.Canceled):
		msg = "interrupted"
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("no reply within %v", c.conn.timeout)
	case errors.Is(err, client.ErrInvalidHeader):
		return command.Usagef("%s: %s", what, strings.TrimPrefix(err.Error(), "client: "))
	default:
		// "client: workers: …" of the verb workers reads "workers: …".
		msg = strings.TrimPrefix(strings.ReplaceAll(err.Error(), "client: ", ""), what+": ")
	}
	return &failure{what + ": " + msg, err}
}

// msgJSON is a message as --json prints it and as export writes it: the
// payload in base64 as setmany takes it, times in Unix ms.
type msgJSON struct {
	Stream  string              `json:"stream"`
	Seq     uint64              `json:"seq"`
	Time    int64               `json:"time"`
	Key     string              `json:"key,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
	Data    []byte              `json:"data"`
	Expires int64               `json:"expires,omitempty"`
}

func toJSON(stream string, m *client.Msg) msgJSON {
	data := m.Data
	if data == nil {
		data = []byte{}
	}
	return msgJSON{Stream: stream, Seq: m.Seq, Time: m.Time, Key: m.Key, Headers: m.Header, Data: data, Expires: m.Expires}
}

// eventJSON is an event (watch, getall --follow, changes) as --json
// prints it: the op and revision, and the fields of its kind.
type eventJSON struct {
	Stream   string `json:"stream"`
	Op       string `json:"op"`
	Revision uint64 `json:"revision"`
	// set
	Seq     uint64              `json:"seq,omitempty"`
	Time    int64               `json:"time,omitempty"`
	Key     string              `json:"key,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
	Data    *[]byte             `json:"data,omitempty"`
	Expires int64               `json:"expires,omitempty"`
	MsgID   string              `json:"msg_id,omitempty"` // live events of writes that had one
	// delete
	Ranges [][2]uint64 `json:"ranges,omitempty"`
	Keys   []string    `json:"keys,omitempty"`
	Reason string      `json:"reason,omitempty"`
	// config
	Config *client.Config `json:"config,omitempty"`
}

// printer writes messages and events, readable or as JSON lines.
type printer struct {
	w    io.Writer
	json bool
}

func (c *cli) printer() *printer { return &printer{w: c.stdout, json: c.json} }

// value writes v as one JSON line.
func (p *printer) value(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = p.w.Write(b)
	return err
}

// msg writes one stored message.
func (p *printer) msg(stream string, m *client.Msg) error {
	if p.json {
		return p.value(toJSON(stream, m))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%d] %s", m.Seq, formatTime(m.Time))
	if m.Key != "" {
		fmt.Fprintf(&b, " key %s", strconv.Quote(m.Key))
	}
	if m.Expires != 0 {
		fmt.Fprintf(&b, " expires %s", formatTime(m.Expires))
	}
	b.WriteByte('\n')
	writeBody(&b, m.Header, m.Data)
	_, err := io.WriteString(p.w, b.String())
	return err
}

// writeBody writes headers, a blank line and the payload, then a blank
// line; a payload that is not text is described instead of printed.
func writeBody(b *strings.Builder, h nats.Header, data []byte) {
	for _, name := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[name] {
			fmt.Fprintf(b, "%s: %s\n", printable(name), printable(v))
		}
	}
	if len(h) > 0 {
		b.WriteByte('\n')
	}
	switch {
	case len(data) == 0:
		b.WriteString("(empty payload)\n")
	case !isText(data):
		fmt.Fprintf(b, "(%d bytes, not text: use --json or get --raw)\n", len(data))
	default:
		b.Write(data)
		if data[len(data)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	b.WriteByte('\n')
}

// isText reports whether a payload can go to a terminal as it is: UTF-8
// without control characters but line breaks and tabs (a stored payload
// is anybody's, and escape sequences would drive the terminal).
func isText(data []byte) bool {
	if !utf8.Valid(data) {
		return false
	}
	for _, r := range string(data) {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' {
			return false
		}
	}
	return true
}

// printable quotes a header name or value that is not plain text.
func printable(s string) string {
	if isText([]byte(s)) && !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strconv.Quote(s)
}

// event writes one change of a stream.
func (p *printer) event(ev client.Event) error {
	stream, keys := ev.Stream, ev.Keys
	if p.json {
		e := eventJSON{Stream: stream, Op: ev.Op, Revision: ev.Revision, Ranges: ev.Ranges, Keys: keys, Reason: ev.Reason, Config: ev.Config}
		if m := ev.Msg; m != nil {
			data := m.Data
			if data == nil {
				data = []byte{}
			}
			e.Seq, e.Time, e.Key, e.Headers, e.Data, e.Expires, e.MsgID = m.Seq, m.Time, m.Key, m.Header, &data, m.Expires, ev.MsgID
		}
		return p.value(e)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%s rev %d] %s", stream, ev.Revision, ev.Op)
	switch ev.Op {
	case subjects.OpSet:
		m := ev.Msg
		fmt.Fprintf(&b, " seq %d %s", m.Seq, formatTime(m.Time))
		if m.Key != "" {
			fmt.Fprintf(&b, " key %s", strconv.Quote(m.Key))
		}
		if m.Expires != 0 {
			fmt.Fprintf(&b, " expires %s", formatTime(m.Expires))
		}
		b.WriteByte('\n')
		writeBody(&b, m.Header, m.Data)
	case subjects.OpDelete:
		fmt.Fprintf(&b, " %s", formatRanges(ev.Ranges))
		if len(keys) > 0 {
			fmt.Fprintf(&b, " keys %s", strings.Join(quoteAll(keys), " "))
		}
		if ev.Reason != "" {
			fmt.Fprintf(&b, " (%s)", ev.Reason)
		}
		b.WriteByte('\n')
	case subjects.OpConfig:
		cfg, _ := json.Marshal(ev.Config)
		fmt.Fprintf(&b, " %s\n", cfg)
	default:
		b.WriteByte('\n')
	}
	_, err := io.WriteString(p.w, b.String())
	return err
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// formatRanges writes seq ranges as "seqs 1-3, 7".
func formatRanges(rs [][2]uint64) string {
	parts := make([]string, len(rs))
	n := uint64(0)
	for i, r := range rs {
		if r[0] == r[1] {
			parts[i] = strconv.FormatUint(r[0], 10)
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r[0], r[1])
		}
		n += r[1] - r[0] + 1
	}
	word := "seqs"
	if n == 1 {
		word = "seq"
	}
	return word + " " + strings.Join(parts, ", ")
}

// formatTime writes Unix ms as an RFC 3339 time in UTC with milliseconds.
func formatTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}
