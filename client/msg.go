package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/subjects"
)

// Msg is one stored message.
type Msg struct {
	Seq     uint64
	Time    int64 // Unix ms
	Key     string
	Header  nats.Header // user headers only
	Data    []byte
	Expires int64 // Unix ms; 0 when the message has no TTL
}

// DecodeMsg reads a message as the worker sends it (get, getall, set
// events): payload as body, Persist-Seq, Persist-Time and the optional
// Persist-Key and Persist-Expires headers, the rest user headers.
func DecodeMsg(m *nats.Msg) (*Msg, error) {
	seq, err := uintHeader(m.Header, subjects.HeaderSeq)
	if err != nil {
		return nil, err
	}
	if seq == 0 {
		return nil, fmt.Errorf("client: message without %s", subjects.HeaderSeq)
	}
	t, err := intHeader(m.Header, subjects.HeaderTime)
	if err != nil {
		return nil, err
	}
	exp, err := intHeader(m.Header, subjects.HeaderExpires)
	if err != nil {
		return nil, err
	}
	out := &Msg{Seq: seq, Time: t, Key: m.Header.Get(subjects.HeaderKey), Data: m.Data, Expires: exp}
	for name, vs := range m.Header {
		if protocolHeader(name) {
			continue
		}
		if out.Header == nil {
			out.Header = nats.Header{}
		}
		out.Header[name] = vs
	}
	return out, nil
}

// protocolHeader reports whether name belongs to the protocol or to NATS
// rather than to the message's user.
func protocolHeader(name string) bool {
	l := strings.ToLower(name)
	return strings.HasPrefix(l, "persist-") || strings.HasPrefix(l, "nats-")
}

// uintHeader parses an optional unsigned header; absent is 0.
func uintHeader(h nats.Header, name string) (uint64, error) {
	v := h.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("client: header %s: %w", name, err)
	}
	return n, nil
}

// intHeader parses an optional signed header; absent is 0.
func intHeader(h nats.Header, name string) (int64, error) {
	v := h.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("client: header %s: %w", name, err)
	}
	return n, nil
}

// Query selects messages for [Stream.GetAll] and [Stream.GetAllPage]. Zero
// fields mean "from the start", "to the end" and the worker's page bounds
// (1000 messages, 8 MiB).
type Query struct {
	StartSeq  uint64 `json:"start_seq,omitempty"`
	EndSeq    uint64 `json:"end_seq,omitempty"`    // inclusive
	StartTime int64  `json:"start_time,omitempty"` // Unix ms: messages with time >= StartTime
	MaxMsgs   int    `json:"max_msgs,omitempty"`   // bound on one page
	MaxBytes  int64  `json:"max_bytes,omitempty"`  // bound on one page
}

// MaxPageMsgs is the most messages a worker sends in one getall page; a
// page that goes on beyond it is refused rather than buffered.
const MaxPageMsgs = 10000

// Page is one getall answer: its messages and the stream as it was when
// the page was read.
type Page struct {
	Msgs       []*Msg
	LastSeq    uint64 // the stream's last seq
	Revision   uint64 // the stream's revision
	NumPending int64  // messages in the range not in this page
	NextSeq    uint64 // where the next page starts, when NumPending > 0
}

// GetAllPage reads one page of the range q selects. The page's Revision
// is the point a mirror applies events after.
func (s *Stream) GetAllPage(ctx context.Context, q Query) (Page, error) {
	subj, err := s.c.subject(subjects.OpGetAll, s.name)
	if err != nil {
		return Page{}, err
	}
	body, err := json.Marshal(q)
	if err != nil {
		return Page{}, err
	}
	ctx, cancel := s.c.withTimeout(ctx)
	defer cancel()
	// The answer is several messages, so it goes to a fresh inbox of its
	// own rather than through the connection's request multiplexer.
	inbox := s.c.nc.NewInbox()
	sub, err := s.c.nc.SubscribeSync(inbox)
	if err != nil {
		return Page{}, err
	}
	defer sub.Unsubscribe()
	if err := s.c.nc.PublishMsg(&nats.Msg{Subject: subj, Reply: inbox, Data: body}); err != nil {
		return Page{}, requestError(subj, err)
	}
	var p Page
	for {
		if len(p.Msgs) > MaxPageMsgs {
			return Page{}, fmt.Errorf("client: getall of %s: more than %d messages without a terminator", s.name, MaxPageMsgs)
		}
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return Page{}, requestError(subj, err)
		}
		if err := replyError(m); err != nil {
			return Page{}, err
		}
		if m.Header.Get(subjects.HeaderEnd) == "true" {
			return p, decodeTerminator(m.Header, &p)
		}
		msg, err := DecodeMsg(m)
		if err != nil {
			return Page{}, err
		}
		p.Msgs = append(p.Msgs, msg)
	}
}

// decodeTerminator fills p from the headers of a getall terminator.
func decodeTerminator(h nats.Header, p *Page) error {
	var err error
	if p.LastSeq, err = uintHeader(h, subjects.HeaderLastSeq); err != nil {
		return err
	}
	if p.Revision, err = uintHeader(h, subjects.HeaderRevision); err != nil {
		return err
	}
	if p.NumPending, err = intHeader(h, subjects.HeaderNumPending); err != nil {
		return err
	}
	if p.NextSeq, err = uintHeader(h, subjects.HeaderNextSeq); err != nil {
		return err
	}
	if p.NumPending < 0 {
		return fmt.Errorf("client: negative %s", subjects.HeaderNumPending)
	}
	return nil
}

// GetAll reads the whole range q selects, page after page, and yields
// each message in seq order. It stops at the first error, which it yields
// with a nil message. The pages are read at different moments, so with
// writes flowing the result is not one snapshot; a mirror uses
// [Stream.GetAllPage] and events instead.
func (s *Stream) GetAll(ctx context.Context, q Query) iter.Seq2[*Msg, error] {
	return func(yield func(*Msg, error) bool) {
		for {
			p, err := s.GetAllPage(ctx, q)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, m := range p.Msgs {
				if !yield(m, nil) {
					return
				}
			}
			if p.NumPending == 0 {
				return
			}
			// A worker must move forward; anything else would loop forever.
			if p.NextSeq <= q.StartSeq || (q.EndSeq != 0 && p.NextSeq > q.EndSeq) {
				yield(nil, fmt.Errorf("client: getall of %s: next seq %d does not continue from %d", s.name, p.NextSeq, q.StartSeq))
				return
			}
			q.StartSeq = p.NextSeq
		}
	}
}

// Event is one change of a stream, as published after its commit.
type Event struct {
	Op       string      // subjects.OpSet, OpDelete, OpConfig or OpDestroy
	Revision uint64      // the stream's revision after the change
	Msg      *Msg        // set: the written message
	Ranges   [][2]uint64 // delete: inclusive seq ranges removed
	Reason   string      // delete: request, max_msgs, max_bytes, max_age or ttl
	Config   *Config     // config: the full new configuration
}

// ErrBadEvent is wrapped by the error of an event that does not decode.
var ErrBadEvent = errors.New("client: malformed event")

// DecodeEvent reads an event message.
func DecodeEvent(m *nats.Msg) (Event, error) {
	rev, err := uintHeader(m.Header, subjects.HeaderRevision)
	if err != nil || rev == 0 {
		return Event{}, fmt.Errorf("%w: revision %q", ErrBadEvent, m.Header.Get(subjects.HeaderRevision))
	}
	ev := Event{Op: m.Header.Get(subjects.HeaderOp), Revision: rev}
	switch ev.Op {
	case subjects.OpSet:
		ev.Msg, err = DecodeMsg(m)
	case subjects.OpDelete:
		var body struct {
			Ranges [][2]uint64 `json:"ranges"`
		}
		err = json.Unmarshal(m.Data, &body)
		ev.Ranges = body.Ranges
		ev.Reason = m.Header.Get(subjects.HeaderReason)
	case subjects.OpConfig:
		ev.Config = new(Config)
		err = json.Unmarshal(m.Data, ev.Config)
	case subjects.OpDestroy:
	default:
		err = fmt.Errorf("op %q", ev.Op)
	}
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrBadEvent, err)
	}
	return ev, nil
}

// Watcher receives a stream's events in the order they were published.
// Events that arrive while nobody calls [Watcher.Next] are buffered up to
// the NATS client's pending limits; a watcher that falls further behind
// gets [nats.ErrSlowConsumer] from Next and then a revision gap, the sign
// to read the stream again.
type Watcher struct {
	sub *nats.Subscription
}

// Watch subscribes to the stream's events. When it returns, the
// subscription is in place at the server, so every change committed after
// this point is seen.
func (s *Stream) Watch(ctx context.Context) (*Watcher, error) {
	if err := s.c.check(s.name); err != nil {
		return nil, err
	}
	sub, err := s.c.nc.SubscribeSync(subjects.EventSubject(s.c.prefix, s.name))
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.c.withTimeout(ctx)
	defer cancel()
	if err := s.c.nc.FlushWithContext(ctx); err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	return &Watcher{sub: sub}, nil
}

// Next returns the next event, waiting until one arrives or ctx ends. An
// event that does not decode is returned as an error wrapping
// [ErrBadEvent]; the watcher stays usable.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	m, err := w.sub.NextMsgWithContext(ctx)
	if err != nil {
		return Event{}, err
	}
	return DecodeEvent(m)
}

// Stop ends the subscription.
func (w *Watcher) Stop() error { return w.sub.Unsubscribe() }
