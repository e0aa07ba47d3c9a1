package client

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/subjects"
)

// ChangesQuery selects one page of a [Stream.ChangesPage]: the changes
// after AfterRevision, bounded by MaxMsgs and MaxBytes (zero: the
// worker's defaults, 1000 changes and 8 MiB).
type ChangesQuery = subjects.ChangesRequest

// ChangesPage is one page of a changes answer.
type ChangesPage struct {
	Events     []Event // in increasing revision order, at most one per revision
	Revision   uint64  // the stream's revision when the page was read
	NumPending int64   // changes after this page, as of its read
}

// ChangesPage reads one page of what changed after q.AfterRevision
// (PROTOCOL.md section 4, changes). A revision whose changes are no
// longer kept, or one above the stream's current revision, is
// [ErrRevisionGone]: read the stream again with [Stream.GetAll].
func (s *Stream) ChangesPage(ctx context.Context, q ChangesQuery) (ChangesPage, error) {
	body, err := json.Marshal(q)
	if err != nil {
		return ChangesPage{}, err
	}
	var p ChangesPage
	err = s.c.retrying(ctx, true, func() error {
		p = ChangesPage{}
		last := q.AfterRevision
		term, err := s.c.stream(ctx, subjects.OpChanges, s.name, body, func(m *nats.Msg) error {
			ev, err := DecodeEvent(m)
			if err != nil {
				return err
			}
			if ev.Revision <= last {
				return fmt.Errorf("%w: changes of %s: revision %d after %d", ErrBadReply, s.name, ev.Revision, last)
			}
			last = ev.Revision
			ev.Stream = s.name
			p.Events = append(p.Events, ev)
			return nil
		})
		if err != nil {
			return err
		}
		if p.Revision, err = uintHeader(term.Header, subjects.HeaderRevision); err != nil {
			return err
		}
		if p.NumPending, err = intHeader(term.Header, subjects.HeaderNumPending); err != nil {
			return err
		}
		if p.NumPending < 0 || last > p.Revision {
			return fmt.Errorf("%w: changes of %s: pending %d, revision %d after a change at %d", ErrBadReply, s.name, p.NumPending, p.Revision, last)
		}
		return nil
	})
	if err != nil {
		return ChangesPage{}, err
	}
	return p, nil
}

// Changes is the answer of [Stream.Changes]: everything that changed in a
// stream after a revision, read page by page.
type Changes struct {
	s     *Stream
	ctx   context.Context
	after uint64
	rev   uint64
	done  bool
}

// Changes returns what changed in the stream after revision after. Nothing
// is sent until [Changes.All] is ranged over. Applying the changes in
// order, by the rules of PROTOCOL.md section 5, to a copy that was exact
// at revision after makes it exact at [Changes.Revision].
func (s *Stream) Changes(ctx context.Context, after uint64) *Changes {
	return &Changes{s: s, ctx: ctx, after: after}
}

// All yields every change in revision order, asking page after page, and
// stops at the first error, which it yields with a zero Event;
// [ErrRevisionGone] means the changes are no longer kept.
func (c *Changes) All() iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		after := c.after
		for {
			p, err := c.s.ChangesPage(c.ctx, ChangesQuery{AfterRevision: after})
			if err != nil {
				yield(Event{}, err)
				return
			}
			for _, ev := range p.Events {
				after = ev.Revision
				if !yield(ev, nil) {
					return
				}
			}
			if p.NumPending == 0 {
				c.rev, c.done = max(p.Revision, after), true
				return
			}
			if len(p.Events) == 0 {
				yield(Event{}, fmt.Errorf("%w: changes of %s: an empty page with %d pending", ErrBadReply, c.s.name, p.NumPending))
				return
			}
		}
	}
}

// Revision returns the stream's revision that the changes bring a copy
// to, once [Changes.All] has yielded them all without error, and 0 before.
func (c *Changes) Revision() uint64 {
	if !c.done {
		return 0
	}
	return c.rev
}
