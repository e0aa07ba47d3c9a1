package client

import (
	"context"
	"encoding/json"
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
		return nil, fmt.Errorf("%w: message without %s", ErrBadReply, subjects.HeaderSeq)
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
		return 0, fmt.Errorf("%w: header %s: %w", ErrBadReply, name, err)
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
		return 0, fmt.Errorf("%w: header %s: %w", ErrBadReply, name, err)
	}
	return n, nil
}

// Query selects messages for [Stream.GetAll] and [Stream.GetAllPage]:
// StartSeq, EndSeq (inclusive), StartTime (Unix ms, time ≥ it) and the
// bounds of one page, MaxMsgs and MaxBytes. Zero fields mean "from the
// start", "to the end" and the worker's page bounds (1000 messages, 8
// MiB).
type Query = subjects.GetAllRequest

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
// is the point a mirror applies events after. A retryable failure is
// retried (see [WithRetry]).
func (s *Stream) GetAllPage(ctx context.Context, q Query) (Page, error) {
	body, err := json.Marshal(q)
	if err != nil {
		return Page{}, err
	}
	var p Page
	err = s.c.retrying(ctx, true, func() error {
		p = Page{}
		term, err := s.c.stream(ctx, subjects.OpGetAll, s.name, body, func(m *nats.Msg) error {
			msg, err := DecodeMsg(m)
			if err == nil {
				p.Msgs = append(p.Msgs, msg)
			}
			return err
		})
		if err != nil {
			return err
		}
		return decodeTerminator(term.Header, &p)
	})
	if err != nil {
		return Page{}, err
	}
	return p, nil
}

// stream sends a request answered by several messages and a terminator
// (getall, changes), hands each message to fn and returns the terminator.
func (c *Client) stream(ctx context.Context, op, stream string, body []byte, fn func(*nats.Msg) error) (*nats.Msg, error) {
	subj, err := c.subject(op, stream)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	// The answer is several messages, so it goes to a fresh inbox of its
	// own rather than through the connection's request multiplexer.
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishMsg(&nats.Msg{Subject: subj, Reply: inbox, Data: body}); err != nil {
		return nil, requestError(subj, err)
	}
	for n := 0; ; n++ {
		if n > MaxPageMsgs {
			return nil, fmt.Errorf("%w: %s of %s: more than %d messages without a terminator", ErrBadReply, op, stream, MaxPageMsgs)
		}
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, requestError(subj, err)
		}
		if err := replyError(m); err != nil {
			return nil, err
		}
		if m.Header.Get(subjects.HeaderEnd) == "true" {
			return m, nil
		}
		if err := fn(m); err != nil {
			return nil, err
		}
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
		return fmt.Errorf("%w: negative %s", ErrBadReply, subjects.HeaderNumPending)
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
				yield(nil, fmt.Errorf("%w: getall of %s: next seq %d does not continue from %d", ErrBadReply, s.name, p.NextSeq, q.StartSeq))
				return
			}
			q.StartSeq = p.NextSeq
		}
	}
}
