package broker

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// replyError answers reply with err mapped to its wire error, and counts
// it as an error of the endpoint op (an op or noStream). stream is for the
// log ("" when the subject named none).
func (b *Broker) replyError(op, stream, reply string, err error) {
	b.replyErrorSince(op, stream, reply, err, time.Time{})
}

// replyErrorSince is replyError for a request that arrived at since
// (hooks.now), which the debug line shows as its duration; zero: unknown.
func (b *Broker) replyErrorSince(op, stream, reply string, err error, since time.Time) {
	we := b.wireError(op, stream, err)
	b.countError(op, we)
	b.logFailed(op, stream, we, since)
	if reply == "" {
		return
	}
	e := getEncoder()
	e.reset()
	e.errorReply(we)
	b.send(e, reply, e.body)
	putEncoder(e)
}

// replyJSON answers reply with v as JSON.
func (b *Broker) replyJSON(reply string, v any) {
	e := getEncoder()
	defer putEncoder(e)
	body, err := e.marshal(v)
	if err != nil {
		b.log.Error("encode reply", "err", err)
		b.replyError("", "", reply, subjects.ErrInternal)
		return
	}
	b.respond(reply, nil, body)
}

// respond sends one reply message. Replies go out with PublishMsg rather
// than micro's Request methods because they are sent from the stream's
// goroutine after the handler returned.
func (b *Broker) respond(reply string, h nats.Header, data []byte) {
	if reply == "" {
		return
	}
	b.publish(&nats.Msg{Subject: reply, Header: h, Data: data})
}

// publish sends a reply; in partitioned mode it names the worker
// (subjects.HeaderWorker). The messages of a stream (get, the pages of
// getall and changes) do not come this way and do not carry it: a client
// may write such a message into another stream as it is, and a write with
// a Persist- header the protocol does not define is a 400.
func (b *Broker) publish(m *nats.Msg) {
	if b.self.header != nil {
		if m.Header == nil {
			m.Header = b.self.header
		} else {
			m.Header[subjects.HeaderWorker] = b.self.value
		}
	}
	if err := b.nc.PublishMsg(m); err != nil {
		b.log.Warn("send reply", "subject", m.Subject, "err", err)
	}
}

// self is what the worker says of itself: its micro instance id, for
// locate, and in partitioned mode the Persist-Worker header of its
// replies. It is set once, before any endpoint or partition is
// subscribed, and only read afterwards.
type self struct {
	id     string
	value  []string    // {id}
	header nats.Header // {Persist-Worker: {id}}, shared read-only by replies with no other header; nil: unpartitioned
}

// setSelf records the micro instance id of the worker, id.
func (b *Broker) setSelf(id string) {
	b.self = self{id: id, value: []string{id}}
	if b.parts != nil {
		b.self.header = nats.Header{subjects.HeaderWorker: b.self.value}
	}
}

// logFailed writes the debug line of a failed request. Nothing is built
// unless debug is on: an overload answers many requests with errors, and
// must not pay for lines nobody reads.
func (b *Broker) logFailed(op, stream string, we *subjects.Error, since time.Time) {
	ctx := context.Background()
	if !b.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("op", op), slog.String("stream", stream),
		slog.Int("code", we.Code), slog.String("reason", we.Reason))
	if we.Description != "" {
		attrs = append(attrs, slog.String("description", we.Description))
	}
	if !since.IsZero() {
		attrs = append(attrs, slog.Duration("duration", b.hooks.now().Sub(since)))
	}
	b.log.LogAttrs(ctx, slog.LevelDebug, "request failed", attrs...)
}
