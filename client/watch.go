package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/subjects"
)

// Event is one change of a stream: a live event as published after its
// commit (PROTOCOL.md section 5), or a change of a [Stream.Changes] answer.
type Event struct {
	Stream   string      // the stream's name; empty from [DecodeEvent]
	Op       string      // subjects.OpSet, OpDelete, OpConfig or OpDestroy
	Revision uint64      // the stream's revision after the change
	Msg      *Msg        // set: the written message
	MsgID    string      // set: the write's msg id (live events only; "" without)
	Ranges   [][2]uint64 // delete: inclusive seq ranges removed
	Keys     []string    // delete (changes answers only): keys of the keyed messages removed
	Reason   string      // delete: request, max_msgs, max_bytes, max_age or ttl
	Config   *Config     // config: the full new configuration

	// Gap, set by a [Watcher], says that events of this stream were
	// missed just before this one.
	Gap *Gap
}

// Gap describes missed events: a [Watcher] saw the stream at revision
// After last, and this event's revision is not After+1. The revisions
// After+1 up to the event's revision - 1 were missed; an event whose
// revision is at most After means the stream was destroyed and created
// again unseen. A reader catches up with [Stream.Changes] from After (and
// with [Stream.GetAll] after [ErrRevisionGone]); a [Mirror] does so by
// itself.
type Gap struct {
	After uint64
}

// ErrBadEvent is wrapped by the error of an event that does not decode.
var ErrBadEvent = errors.New("client: malformed event")

// DecodeEvent reads an event message, or a change of a changes answer.
func DecodeEvent(m *nats.Msg) (Event, error) {
	rev, err := uintHeader(m.Header, subjects.HeaderRevision)
	if err != nil || rev == 0 {
		return Event{}, fmt.Errorf("%w: revision %q", ErrBadEvent, m.Header.Get(subjects.HeaderRevision))
	}
	ev := Event{Op: m.Header.Get(subjects.HeaderOp), Revision: rev}
	switch ev.Op {
	case subjects.OpSet:
		ev.Msg, err = DecodeMsg(m)
		ev.MsgID = m.Header.Get(subjects.HeaderMsgID)
	case subjects.OpDelete:
		var body subjects.DeleteEvent
		err = json.Unmarshal(m.Data, &body)
		for _, r := range body.Ranges {
			if r[0] == 0 || r[0] > r[1] {
				err = fmt.Errorf("range %v", r)
			}
		}
		ev.Ranges, ev.Keys = body.Ranges, body.Keys
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

// Watcher receives the events of the streams a pattern names, each
// stream's in the order they were published, and marks an event that
// follows missed ones with a [Gap]. Events that arrive while nobody calls
// [Watcher.Next] are buffered up to the subscription's pending limits
// (see [Watcher.SetPendingLimits]); a watcher that falls further behind
// loses events, gets an error wrapping [nats.ErrSlowConsumer] from Next,
// and then a Gap on the next event of each stream that lost some. Events
// lost while the connection was down show as a Gap too. A Watcher
// remembers the last revision of every stream it has seen (a few bytes
// each). It is for one goroutine at a time.
type Watcher struct {
	sub    *nats.Subscription
	prefix string
	mu     sync.Mutex
	last   map[string]uint64 // stream → revision of its last event seen
}

// Watch subscribes to the events of the streams that pattern names: a
// stream name, or a name whose tokens may be "*" (any one token) and whose
// last token may be ">" (one or more tokens): "acme.>" is every stream of
// namespace acme but acme itself, "acme.*" its streams of two tokens.
// When Watch returns, the subscription is in place at the server, so
// every change committed after this point is seen.
func (c *Client) Watch(ctx context.Context, pattern string) (*Watcher, error) {
	if err := subjects.ValidatePrefix(c.prefix); err != nil {
		return nil, fmt.Errorf("client: prefix %q: %w", c.prefix, err)
	}
	if err := validatePattern(pattern); err != nil {
		return nil, fmt.Errorf("client: pattern %q: %w", pattern, err)
	}
	sub, err := c.nc.SubscribeSync(subjects.EventSubject(c.prefix, pattern))
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if err := c.nc.FlushWithContext(ctx); err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	return &Watcher{sub: sub, prefix: c.prefix, last: map[string]uint64{}}, nil
}

// Watch subscribes to the stream's events; see [Client.Watch].
func (s *Stream) Watch(ctx context.Context) (*Watcher, error) {
	if err := s.c.check(s.name); err != nil {
		return nil, err
	}
	return s.c.Watch(ctx, s.name)
}

// validatePattern checks a stream name that may hold NATS wildcards.
func validatePattern(p string) error {
	toks := strings.Split(p, ".")
	for i, t := range toks {
		switch {
		case t == "*":
		case t == ">" && i == len(toks)-1:
		default:
			if err := subjects.ValidateToken(t); err != nil {
				return err
			}
		}
	}
	if len(toks) > subjects.MaxTokens {
		return fmt.Errorf("%w: more than %d tokens", subjects.ErrInvalidName, subjects.MaxTokens)
	}
	return nil
}

// SetPendingLimits bounds how many events (and bytes of them) wait for
// [Watcher.Next] before further ones are dropped; see
// [nats.Subscription.SetPendingLimits].
func (w *Watcher) SetPendingLimits(msgs, bytes int) error {
	return w.sub.SetPendingLimits(msgs, bytes)
}

// Next returns the next event, waiting until one arrives or ctx ends. An
// event that does not decode is returned as an error wrapping
// [ErrBadEvent]; lost events as one wrapping [nats.ErrSlowConsumer]. The
// watcher stays usable after either.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	m, err := w.sub.NextMsgWithContext(ctx)
	if err != nil {
		return Event{}, err
	}
	ev, err := DecodeEvent(m)
	if err != nil {
		return Event{}, err
	}
	ev.Stream, err = subjects.ParseEvent(w.prefix, m.Subject)
	if err != nil {
		return Event{}, fmt.Errorf("%w: subject %q: %w", ErrBadEvent, m.Subject, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if last, ok := w.last[ev.Stream]; ok && ev.Revision != last+1 {
		ev.Gap = &Gap{After: last}
	}
	w.last[ev.Stream] = ev.Revision
	if ev.Op == subjects.OpDestroy {
		w.last[ev.Stream] = 0 // the next incarnation starts at revision 1
	}
	return ev, nil
}

// Events yields events as [Watcher.Next] returns them, errors included,
// until ctx ends or the watcher is stopped.
func (w *Watcher) Events(ctx context.Context) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for {
			ev, err := w.Next(ctx)
			if err != nil && (ctx.Err() != nil || errors.Is(err, nats.ErrBadSubscription) || errors.Is(err, nats.ErrConnectionClosed)) {
				return
			}
			if !yield(ev, err) {
				return
			}
		}
	}
}

// Stop ends the subscription.
func (w *Watcher) Stop() error { return w.sub.Unsubscribe() }
