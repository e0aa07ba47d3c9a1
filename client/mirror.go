package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/subjects"
)

// Mirror is a live in-memory copy of one stream, kept by the recipe of
// PROTOCOL.md section 5: it subscribes to the stream's events first, reads
// the stream with getall, noting the first page's revision R, and then
// applies the events above R. It keeps itself exact afterwards:
//
//   - an event whose revision is not the next one (events were dropped
//     because the mirror fell behind, or lost while the connection was
//     down) makes it catch up with [Stream.Changes] from its revision;
//   - so do, even when no later event arrives, the subscription's slow
//     consumer signal (events dropped in this process), a reconnect of
//     the NATS connection, and an inventory check on a quiet stream every
//     check interval (see [WithCheckInterval]) that finds another
//     revision. The check is for a loss nobody signals: NATS delivers at
//     most once, and a server or a route between servers of a cluster
//     may drop a message without the client knowing; without it, such a
//     loss with nothing after it would go unnoticed until the next event;
//   - [ErrRevisionGone] (the changes are no longer kept, or the stream
//     was destroyed and created again unseen), or a worker without the
//     changes operation, makes it read the whole stream again.
//
// Reads ([Mirror.Get], [Mirror.Keys], …) are snapshots taken under a
// lock, safe from any goroutine; the messages they return are shared and
// must not be modified. Until [Mirror.Ready] is closed the copy is
// incomplete.
type Mirror struct {
	s    *Stream
	opts mirrorOptions
	sub  *nats.Subscription

	mu     sync.RWMutex
	msgs   map[uint64]*Msg   // by seq
	byKey  map[string]uint64 // key → seq of its message
	rev    uint64
	synced bool // exact as of rev, not catching up

	ready     chan struct{}
	readyOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
	err       error // why the mirror stopped; read after done

	events, gaps, catchUps, reloads atomic.Uint64
}

// MirrorStats counts what a [Mirror] did.
type MirrorStats struct {
	Events   uint64 // live events applied
	Gaps     uint64 // revision gaps and dropped events noticed
	CatchUps uint64 // catch-ups with changes
	Reloads  uint64 // full reads of the stream, the first one included
}

// Update is one change of a [Mirror]'s content, as given to the function
// of [WithOnUpdate].
type Update struct {
	Op       string // subjects.OpSet (Msg added) or subjects.OpDelete (Msg removed)
	Msg      *Msg   // the message added or removed
	Replaced *Msg   // set: the message of the same key it replaced, if held
	Revision uint64 // the mirror's revision once the change is applied
}

type mirrorOptions struct {
	onUpdate      func(Update)
	onReady       func()
	checkInterval time.Duration
	pollInterval  time.Duration
	pendingMsgs   int
	pendingBytes  int
}

// MirrorOption configures a [Mirror].
type MirrorOption func(*mirrorOptions)

// WithOnUpdate calls fn for every message the mirror adds or removes, in
// order, on the mirror's own goroutine, after the change is visible to
// reads: during the first read too, so that fn sees every message. A
// keyed set that replaces a message is one Update with Replaced set. fn
// must not block for long: while it runs, events wait in the
// subscription, and beyond its pending limits they are dropped (the
// mirror then catches up, correctly but with more work).
func WithOnUpdate(fn func(Update)) MirrorOption {
	return func(o *mirrorOptions) { o.onUpdate = fn }
}

// DefaultCheckInterval is how often a quiet [Mirror] compares its
// revision with the stream's.
const DefaultCheckInterval = 10 * time.Second

// WithCheckInterval sets how often a mirror that receives no event asks
// the stream's inventory whether it missed one; the default is
// [DefaultCheckInterval], a negative d turns the check off.
func WithCheckInterval(d time.Duration) MirrorOption {
	return func(o *mirrorOptions) { o.checkInterval = d }
}

// WithPendingLimits bounds the events waiting to be applied (see
// [nats.Subscription.SetPendingLimits]); beyond them events are dropped
// and the mirror catches up. The default is nats.go's.
func WithPendingLimits(msgs, bytes int) MirrorOption {
	return func(o *mirrorOptions) { o.pendingMsgs, o.pendingBytes = msgs, bytes }
}

// Mirror starts a live copy of the stream. It returns once the
// subscription to the stream's events is in place; the copy is complete
// when [Mirror.Ready] is closed. The mirror runs until ctx ends or
// [Mirror.Close] is called.
func (s *Stream) Mirror(ctx context.Context, opts ...MirrorOption) (*Mirror, error) {
	o := mirrorOptions{checkInterval: DefaultCheckInterval, pollInterval: 250 * time.Millisecond}
	for _, opt := range opts {
		opt(&o)
	}
	w, err := s.Watch(ctx)
	if err != nil {
		return nil, err
	}
	if o.pendingMsgs != 0 || o.pendingBytes != 0 {
		if err := w.SetPendingLimits(o.pendingMsgs, o.pendingBytes); err != nil {
			w.Stop()
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &Mirror{
		s: s, opts: o, sub: w.sub,
		msgs: map[uint64]*Msg{}, byKey: map[string]uint64{},
		ready: make(chan struct{}), cancel: cancel, done: make(chan struct{}),
	}
	go m.run(ctx)
	return m, nil
}

// Ready is closed once the mirror first holds the whole stream.
func (m *Mirror) Ready() <-chan struct{} { return m.ready }

// Wait waits until the mirror first holds the whole stream, ctx ends, or
// the mirror stops.
func (m *Mirror) Wait(ctx context.Context) error {
	select {
	case <-m.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return m.err
	}
}

// Done is closed when the mirror has stopped; [Mirror.Err] says why.
func (m *Mirror) Done() <-chan struct{} { return m.done }

// Err returns why the mirror stopped (the context's error, or
// [nats.ErrConnectionClosed]), or nil while it runs.
func (m *Mirror) Err() error {
	select {
	case <-m.done:
		return m.err
	default:
		return nil
	}
}

// Close stops the mirror and waits for it to finish; its content stays
// readable.
func (m *Mirror) Close() error {
	m.cancel()
	<-m.done
	return nil
}

// Revision returns the stream revision the mirror's content is exact at.
func (m *Mirror) Revision() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rev
}

// Synced reports whether the mirror is exact as of its revision: ready and
// not catching up after a gap it noticed.
func (m *Mirror) Synced() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.synced
}

// Len returns how many messages the mirror holds.
func (m *Mirror) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.msgs)
}

// Get returns the message with seq, if held.
func (m *Mirror) Get(seq uint64) (*Msg, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	msg, ok := m.msgs[seq]
	return msg, ok
}

// GetKey returns the message with key, if held.
func (m *Mirror) GetKey(key string) (*Msg, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	seq, ok := m.byKey[key]
	if !ok {
		return nil, false
	}
	return m.msgs[seq], true
}

// Keys returns the keys held, in byte order.
func (m *Mirror) Keys() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Sorted(maps.Keys(m.byKey))
}

// Msgs returns the messages held, in seq order.
func (m *Mirror) Msgs() []*Msg {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.SortedFunc(maps.Values(m.msgs), func(a, b *Msg) int { return cmp.Compare(a.Seq, b.Seq) })
}

// Stats returns the mirror's counters.
func (m *Mirror) Stats() MirrorStats {
	return MirrorStats{Events: m.events.Load(), Gaps: m.gaps.Load(), CatchUps: m.catchUps.Load(), Reloads: m.reloads.Load()}
}

// need says what the mirror must do before it applies further events.
type need int

const (
	needNothing need = iota
	needCatchUp      // changes from the mirror's revision
	needReload       // the whole stream again
)

// run is the mirror's goroutine: the only writer of its content.
func (m *Mirror) run(ctx context.Context) {
	defer close(m.done)
	defer m.sub.Unsubscribe()
	nc := m.s.c.nc
	todo := needReload
	reconnects := nc.Stats().Reconnects
	lastCheck := time.Now()
	failures := 0
	for {
		if ctx.Err() != nil {
			m.err = ctx.Err()
			return
		}
		if todo != needNothing {
			m.setSynced(false)
			var err error
			if todo == needCatchUp {
				err = m.catchUp(ctx)
				if errors.Is(err, ErrRevisionGone) || errors.Is(err, ErrNoWorker) {
					todo, err = needReload, nil // reload now, without waiting
					continue
				}
			} else {
				err = m.reload(ctx)
			}
			if err != nil {
				if errors.Is(err, nats.ErrConnectionClosed) {
					m.err = err
					return
				}
				failures++
				if failures >= 3 {
					todo = needReload // a catch-up that keeps failing: start afresh
				}
				m.sleep(ctx, m.s.c.backoff(min(failures, 6)))
				continue
			}
			todo, failures, lastCheck = needNothing, 0, time.Now()
			m.setSynced(true)
			m.readyOnce.Do(func() {
				if m.opts.onReady != nil {
					m.opts.onReady()
				}
				close(m.ready)
			})
		}
		// The wait is bounded so that reconnects and quiet streams are
		// looked at in time.
		pctx, cancel := context.WithTimeout(ctx, m.opts.pollInterval)
		msg, err := m.sub.NextMsgWithContext(pctx)
		cancel()
		switch {
		case err == nil:
			todo = m.event(msg)
			lastCheck = time.Now()
		case errors.Is(err, nats.ErrSlowConsumer):
			m.gaps.Add(1)
			todo = needCatchUp
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			if r := nc.Stats().Reconnects; r != reconnects {
				reconnects, todo = r, needCatchUp
			} else if m.opts.checkInterval > 0 && time.Since(lastCheck) >= m.opts.checkInterval {
				lastCheck = time.Now()
				todo = m.check(ctx)
			}
		case ctx.Err() != nil:
		default: // the connection closed or the subscription ended
			m.err = err
			return
		}
	}
}

// sleep waits d or until ctx ends.
func (m *Mirror) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (m *Mirror) setSynced(v bool) {
	m.mu.Lock()
	m.synced = v
	m.mu.Unlock()
}

// event applies one live event and says whether a catch-up is needed.
func (m *Mirror) event(msg *nats.Msg) need {
	ev, err := DecodeEvent(msg)
	if err != nil {
		// A malformed event cannot be applied: whatever it changed is
		// read back with changes.
		m.gaps.Add(1)
		return needCatchUp
	}
	rev := m.Revision()
	switch {
	case ev.Revision <= rev:
		return needNothing // already in the content (overlap with a read)
	case ev.Revision > rev+1:
		m.gaps.Add(1)
		return needCatchUp
	}
	m.events.Add(1)
	m.apply(ev)
	return needNothing
}

// check compares the mirror's revision with the stream's.
func (m *Mirror) check(ctx context.Context) need {
	inv, err := m.s.Inventory(ctx)
	if err != nil || inv.Revision == m.Revision() {
		return needNothing
	}
	m.gaps.Add(1)
	return needCatchUp
}

// catchUp applies the changes after the mirror's revision.
func (m *Mirror) catchUp(ctx context.Context) error {
	m.catchUps.Add(1)
	ch := m.s.Changes(ctx, m.Revision())
	for ev, err := range ch.All() {
		if err != nil {
			return err
		}
		m.apply(ev)
	}
	m.mu.Lock()
	m.rev = max(m.rev, ch.Revision())
	m.mu.Unlock()
	return nil
}

// reload reads the whole stream and replaces the content with it.
func (m *Mirror) reload(ctx context.Context) error {
	m.reloads.Add(1)
	msgs := map[uint64]*Msg{}
	byKey := map[string]uint64{}
	var rev uint64
	q := Query{}
	for first := true; ; first = false {
		p, err := m.s.GetAllPage(ctx, q)
		if err != nil {
			return err
		}
		if first {
			rev = p.Revision
		}
		for _, msg := range p.Msgs {
			hold(msgs, byKey, msg)
		}
		if p.NumPending == 0 {
			break
		}
		if p.NextSeq <= q.StartSeq {
			return fmt.Errorf("%w: getall of %s: next seq %d does not continue from %d", ErrBadReply, m.s.name, p.NextSeq, q.StartSeq)
		}
		q.StartSeq = p.NextSeq
	}
	m.mu.Lock()
	old := m.msgs
	m.msgs, m.byKey, m.rev = msgs, byKey, rev
	m.mu.Unlock()
	if m.opts.onUpdate != nil {
		m.diff(old, msgs, rev)
	}
	return nil
}

// hold adds msg to a content being built, a later message of a key
// replacing an earlier one (pages are read at different moments).
func hold(msgs map[uint64]*Msg, byKey map[string]uint64, msg *Msg) {
	if msg.Key != "" {
		if old, ok := byKey[msg.Key]; ok {
			if old > msg.Seq {
				return
			}
			delete(msgs, old)
		}
		byKey[msg.Key] = msg.Seq
	}
	msgs[msg.Seq] = msg
}

// diff reports the change from old to the content now held.
func (m *Mirror) diff(old, now map[uint64]*Msg, rev uint64) {
	oldKeys := map[string]*Msg{}
	for _, msg := range old {
		if msg.Key != "" {
			oldKeys[msg.Key] = msg
		}
	}
	for _, seq := range slices.Sorted(maps.Keys(old)) {
		msg := old[seq]
		if _, ok := now[seq]; ok {
			continue
		}
		if msg.Key != "" {
			if n, ok := m.byKeyNow(msg.Key); ok && n != seq {
				continue // replaced: reported with its new message
			}
		}
		m.opts.onUpdate(Update{Op: subjects.OpDelete, Msg: msg, Revision: rev})
	}
	for _, seq := range slices.Sorted(maps.Keys(now)) {
		msg := now[seq]
		if _, ok := old[seq]; ok {
			continue
		}
		u := Update{Op: subjects.OpSet, Msg: msg, Revision: rev}
		if msg.Key != "" {
			u.Replaced = oldKeys[msg.Key]
		}
		m.opts.onUpdate(u)
	}
}

func (m *Mirror) byKeyNow(key string) (uint64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	seq, ok := m.byKey[key]
	return seq, ok
}

// apply applies one event or change by the rules of PROTOCOL.md section
// 5; applying is idempotent.
func (m *Mirror) apply(ev Event) {
	var updates []Update
	m.mu.Lock()
	switch ev.Op {
	case subjects.OpSet:
		msg := ev.Msg
		if _, ok := m.msgs[msg.Seq]; ok {
			break
		}
		u := Update{Op: subjects.OpSet, Msg: msg, Revision: ev.Revision}
		if msg.Key != "" {
			if old, ok := m.byKey[msg.Key]; ok {
				if old > msg.Seq {
					break // a later write of the key is held already
				}
				u.Replaced = m.msgs[old]
				delete(m.msgs, old)
			}
			m.byKey[msg.Key] = msg.Seq
		}
		m.msgs[msg.Seq] = msg
		updates = append(updates, u)
	case subjects.OpDelete:
		drop := func(seq uint64) {
			if msg, ok := m.msgs[seq]; ok {
				delete(m.msgs, seq)
				if msg.Key != "" && m.byKey[msg.Key] == seq {
					delete(m.byKey, msg.Key)
				}
				updates = append(updates, Update{Op: subjects.OpDelete, Msg: msg, Revision: ev.Revision})
			}
		}
		for _, r := range ev.Ranges {
			if r[1]-r[0] < uint64(len(m.msgs)) {
				for seq := r[0]; ; seq++ { // r[1] may be the largest uint64
					drop(seq)
					if seq == r[1] {
						break
					}
				}
				continue
			}
			for _, seq := range slices.Sorted(maps.Keys(m.msgs)) {
				if seq >= r[0] && seq <= r[1] {
					drop(seq)
				}
			}
		}
		for _, k := range ev.Keys {
			if seq, ok := m.byKey[k]; ok {
				drop(seq)
			}
		}
	case subjects.OpDestroy:
		for _, seq := range slices.Sorted(maps.Keys(m.msgs)) {
			updates = append(updates, Update{Op: subjects.OpDelete, Msg: m.msgs[seq], Revision: 0})
		}
		m.msgs, m.byKey = map[uint64]*Msg{}, map[string]uint64{}
		m.rev = 0 // the next incarnation starts again at revision 1
		m.mu.Unlock()
		m.report(updates)
		return
	}
	m.rev = max(m.rev, ev.Revision)
	m.mu.Unlock()
	m.report(updates)
}

func (m *Mirror) report(updates []Update) {
	if m.opts.onUpdate == nil {
		return
	}
	for _, u := range updates {
		m.opts.onUpdate(u)
	}
}
