package broker

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"unsafe"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// Header values that never change, built once. nats.go only reads a
// message's header while it encodes it, so one slice can serve every
// message.
var (
	valTrue     = []string{"true"}
	eventOpVals = map[string][]string{
		subjects.OpSet:     {subjects.OpSet},
		subjects.OpDelete:  {subjects.OpDelete},
		subjects.OpConfig:  {subjects.OpConfig},
		subjects.OpDestroy: {subjects.OpDestroy},
	}
)

// encoder builds the messages one goroutine sends: a header map, value
// slots, a buffer for the digits of the header's numbers and a buffer for
// bodies, all reused from one message to the next.
//
// Reuse is safe because nats.go's PublishMsg encodes the header and copies
// header and body into its write buffer before it returns (nats.go
// v1.55.0: headerBytes, then publish appends to nc.bw, also while
// reconnecting); nothing of a sent message is kept. A message's numbers are
// strings that point into num (see str), so the header of one message must
// be sent before the next one is built.
type encoder struct {
	h    nats.Header
	num  []byte
	body []byte
	// A JSON encoder without HTML escaping (as jsonMarshal) writing to
	// jbuf, for the replies not written by hand.
	jbuf bytes.Buffer
	jenc *json.Encoder
	// One slot per header value the worker sets, so that h's values need
	// no slice of their own.
	op, seq, time, key, expires, rev, lastSeq, pending, next, reason, code, desc, msgID [1]string
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{h: make(nats.Header, 8), num: make([]byte, 0, 128), body: make([]byte, 0, 256)}
	e.jenc = json.NewEncoder(&e.jbuf)
	e.jenc.SetEscapeHTML(false)
	return e
}}

// getEncoder takes an encoder from the pool; putEncoder gives it back.
func getEncoder() *encoder { return encoders.Get().(*encoder) }

// maxPooledBody bounds the body buffer an encoder keeps between uses.
const maxPooledBody = 64 << 10

func putEncoder(e *encoder) {
	if cap(e.body) > maxPooledBody {
		e.body = make([]byte, 0, 256)
	}
	if e.jbuf.Cap() > maxPooledBody {
		e.jbuf = bytes.Buffer{}
	}
	clear(e.h)
	encoders.Put(e)
}

// reset starts a new message: no header, no numbers.
func (e *encoder) reset() {
	clear(e.h)
	e.num = e.num[:0]
}

// str appends the digits written by appendNum and returns them as a string
// that shares num's memory: valid until the next reset, which is after the
// message that uses it was sent. A copy (string(e.num[start:])) costs an
// allocation per number: BenchmarkPublishEvents goes from 75 to 149
// allocations per commit, and getall replays lose about a quarter.
func (e *encoder) str(start int) string {
	return unsafe.String(&e.num[start], len(e.num)-start)
}

func (e *encoder) uint(slot *[1]string, v uint64) []string {
	n := len(e.num)
	e.num = strconv.AppendUint(e.num, v, 10)
	slot[0] = e.str(n)
	return slot[:]
}

func (e *encoder) int(slot *[1]string, v int64) []string {
	n := len(e.num)
	e.num = strconv.AppendInt(e.num, v, 10)
	slot[0] = e.str(n)
	return slot[:]
}

func (e *encoder) text(slot *[1]string, s string) []string {
	slot[0] = s
	return slot[:]
}

// message sets the header of a message leaving the worker (PROTOCOL.md
// section 3): its user headers plus its seq, time, key and expiry. It adds
// to what is in e.h already.
func (e *encoder) message(m *store.Message) {
	h := e.h
	for name, vals := range m.Header {
		h[name] = vals
	}
	h[subjects.HeaderSeq] = e.uint(&e.seq, m.Seq)
	h[subjects.HeaderTime] = e.int(&e.time, m.Time)
	if m.Key != "" {
		h[subjects.HeaderKey] = e.text(&e.key, m.Key)
	}
	if m.Expires != 0 {
		h[subjects.HeaderExpires] = e.int(&e.expires, m.Expires)
	}
}

// event sets the header of an event (PROTOCOL.md section 5), or of a
// change of a changes answer, which is the same but for a delete's keys
// and a set's message id (the store gives a change none), and returns its
// body: the payload, the delete's ranges (and keys) or the config. The
// body may be in e's buffers: valid until the next use of e.
func (e *encoder) event(ev *store.Event) []byte {
	h := e.h
	if v, ok := eventOpVals[ev.Op]; ok {
		h[subjects.HeaderOp] = v
	} else {
		h[subjects.HeaderOp] = e.text(&e.op, ev.Op)
	}
	h[subjects.HeaderRevision] = e.uint(&e.rev, ev.Revision)
	switch ev.Op {
	case subjects.OpSet:
		if ev.Msg == nil {
			return nil
		}
		e.message(ev.Msg)
		if ev.MsgID != "" {
			h[subjects.HeaderMsgID] = e.text(&e.msgID, ev.MsgID)
		}
		return ev.Msg.Data
	case subjects.OpDelete:
		h[subjects.HeaderReason] = e.text(&e.reason, ev.Reason)
		e.body = appendDeleteEvent(e.body[:0], ev.Ranges, ev.Keys)
		return e.body
	case subjects.OpConfig:
		if ev.Config != nil {
			body, _ := e.marshal(ev.Config)
			return body
		}
	}
	return nil
}

// changesTerminator sets the header of the message that ends a changes
// page.
func (e *encoder) changesTerminator(r store.ChangesResult) {
	h := e.h
	h[subjects.HeaderEnd] = valTrue
	h[subjects.HeaderRevision] = e.uint(&e.rev, r.Revision)
	h[subjects.HeaderNumPending] = e.int(&e.pending, r.NumPending)
}

// terminator sets the header of the message that ends a getall page.
func (e *encoder) terminator(r store.ReadResult) {
	h := e.h
	h[subjects.HeaderEnd] = valTrue
	h[subjects.HeaderLastSeq] = e.uint(&e.lastSeq, r.LastSeq)
	h[subjects.HeaderRevision] = e.uint(&e.rev, r.Revision)
	h[subjects.HeaderNumPending] = e.int(&e.pending, r.NumPending)
	if r.NumPending > 0 {
		h[subjects.HeaderNextSeq] = e.uint(&e.next, r.NextSeq)
	}
}

// header is e.h, or nil when it is empty, as a message without headers is
// sent as a plain PUB.
func (e *encoder) header() nats.Header {
	if len(e.h) == 0 {
		return nil
	}
	return e.h
}

// errorReply sets the header and body of the error reply we.
func (e *encoder) errorReply(we *subjects.Error) {
	desc := headerSafe(we.Description)
	if desc == "" {
		desc = we.Reason
	}
	e.h[micro.ErrorHeader] = e.text(&e.desc, desc)
	e.h[micro.ErrorCodeHeader] = e.int(&e.code, int64(we.Code))
	e.body = append(e.body[:0], `{"error":`...)
	e.body = appendError(e.body, we)
	e.body = append(e.body, '}')
}

// marshal encodes v as jsonMarshal does, into e's own buffer: valid until the
// next use of e.
func (e *encoder) marshal(v any) ([]byte, error) {
	e.jbuf.Reset()
	if err := e.jenc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(e.jbuf.Bytes(), []byte("\n")), nil
}

// appendError appends we as the JSON object of the protocol's error.
func appendError(buf []byte, we *subjects.Error) []byte {
	buf = append(buf, `{"code":`...)
	buf = strconv.AppendInt(buf, int64(we.Code), 10)
	buf = append(buf, `,"reason":`...)
	buf = appendString(buf, we.Reason)
	buf = append(buf, `,"description":`...)
	buf = appendString(buf, we.Description)
	return append(buf, '}')
}

// appendSetReply appends the reply to one write: {"seq":N,"time":T} and
// "duplicate":true when it was one, as encoding/json writes subjects.SetReply.
func appendSetReply(buf []byte, r store.WriteResult) []byte {
	buf = append(buf, `{"seq":`...)
	buf = strconv.AppendUint(buf, r.Seq, 10)
	buf = append(buf, `,"time":`...)
	buf = strconv.AppendInt(buf, r.Time, 10)
	if r.Duplicate {
		buf = append(buf, `,"duplicate":true`...)
	}
	return append(buf, '}')
}

// appendRanges appends a delete event's body, {"ranges":[[a,b],…]}.
func appendRanges(buf []byte, ranges [][2]uint64) []byte {
	buf = append(buf, `{"ranges":[`...)
	for i, r := range ranges {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '[')
		buf = strconv.AppendUint(buf, r[0], 10)
		buf = append(buf, ',')
		buf = strconv.AppendUint(buf, r[1], 10)
		buf = append(buf, ']')
	}
	return append(buf, "]}"...)
}

// appendDeleteEvent appends the body of a delete event or change: its
// ranges and, when there are any (a change of a changes answer), its
// keys, as jsonMarshal writes subjects.DeleteEvent.
func appendDeleteEvent(buf []byte, ranges [][2]uint64, keys []string) []byte {
	buf = appendRanges(buf, ranges)
	if len(keys) == 0 {
		return buf
	}
	buf = append(buf[:len(buf)-1], `,"keys":[`...)
	for i, k := range keys {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, k)
	}
	return append(buf, "]}"...)
}

// appendString appends s as a JSON string, byte for byte as jsonMarshal
// writes it (no HTML escaping); strings that need more than the common
// escapes go through jsonMarshal itself.
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == '"' || c == '\\' || c >= 0x80 {
			b, _ := jsonMarshal(s)
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// send publishes one message built in e, logging a failure as respond
// does.
func (b *Broker) send(e *encoder, subject string, data []byte) {
	b.publish(&nats.Msg{Subject: subject, Header: e.header(), Data: data})
}
