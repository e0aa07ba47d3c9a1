package broker

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// shardCount is the number of registry shards; a power of two.
const shardCount = 64

// state is where an entry's stream is in its life (see the package doc).
type state uint8

const (
	stateClosed  state = iota // no stream open: st is nil
	stateOpen                 // st is open
	stateClosing              // a closer is closing st
)

func (s state) String() string {
	return [...]string{"closed", "open", "closing"}[s]
}

// request is a request as it arrived, waiting for its stream: parsing it
// is the stream's work, not the subscription's.
type request struct {
	op    string
	reply string
	data  []byte
	hdr   nats.Header
	size  int       // bytes counted in the queue limits
	at    time.Time // when it was queued (hooks.now)
}

func (r *request) isWrite() bool { return r.op == subjects.OpSet || r.op == subjects.OpSetMany }

// entry is one stream known to the registry: open, or with work queued or
// in hand. Its fields are guarded as marked; st belongs to the entry's
// owner alone (see the package doc).
type entry struct {
	name string
	path string
	sh   *shard

	// Guarded by sh.mu.
	queue    []*request
	busy     bool // owned by a worker, a closer or an inline get
	state    state
	memory   bool
	lastUsed time.Time

	// The idle list e is on, if any: changed under both sh.mu and
	// registry.lruMu, so that either lets one read it.
	list *idleList
	// Guarded by registry.lruMu (neighbours change them).
	prev, next *entry

	// Owned: only the goroutine that holds e (busy, or taken off an idle
	// list) uses them. gen is the generation of st's partition when st
	// was opened (partitioned mode; see partitions).
	st  streamAPI
	gen uint64
}

// shard is one part of the registry's map.
type shard struct {
	mu      sync.Mutex
	streams map[string]*entry
}

// idleList is an intrusive doubly linked list of idle open file streams,
// the most recently used at the front.
type idleList struct {
	head, tail *entry
	n          int
}

func (l *idleList) pushFront(e *entry) {
	e.list, e.prev, e.next = l, nil, l.head
	if l.head != nil {
		l.head.prev = e
	} else {
		l.tail = e
	}
	l.head = e
	l.n++
}

func (l *idleList) remove(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.list, e.prev, e.next = nil, nil, nil
	l.n--
}

// registry is every stream the worker holds: a sharded map of entries and
// the idle lists that make its LRU.
type registry struct {
	seed   maphash.Seed
	shards [shardCount]shard

	// lruMu guards the idle lists, for O(1) changes only. Taken after a
	// shard's mu, never before.
	lruMu sync.Mutex
	fresh idleList // idle, not trimmed yet
	// trimmed holds the streams idle for longer than the trim delay,
	// trimmed; all are older than those of fresh, so that the two lists
	// together are one LRU order: trimmed's tail is the least recently
	// used.
	trimmed idleList
}

func newRegistry() *registry {
	r := &registry{seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].streams = make(map[string]*entry)
	}
	return r
}

func (r *registry) shard(name string) *shard {
	return &r.shards[maphash.String(r.seed, name)&(shardCount-1)]
}

// unidle takes e off its idle list, if on one. e.sh.mu is held, which
// makes reading e.list safe without lruMu.
func (r *registry) unidle(e *entry) {
	if e.list == nil {
		return
	}
	r.lruMu.Lock()
	e.list.remove(e)
	r.lruMu.Unlock()
}

// idle puts e at the front of l. e.sh.mu is held.
func (r *registry) idle(e *entry, l *idleList) {
	r.lruMu.Lock()
	l.pushFront(e)
	r.lruMu.Unlock()
}

// idleCount is the number of idle open file streams.
func (r *registry) idleCount() int {
	r.lruMu.Lock()
	defer r.lruMu.Unlock()
	return r.fresh.n + r.trimmed.n
}

// takeIdle takes ownership of the tail of an idle list chosen by pick
// (called under lruMu; nil: none), marking it busy and in state next. It
// returns nil when pick finds none. The shard lock is taken before lruMu,
// so the tail is read first and checked again under both locks.
func (b *Broker) takeIdle(pick func() *entry, next state) *entry {
	for {
		b.reg.lruMu.Lock()
		e := pick()
		b.reg.lruMu.Unlock()
		if e == nil {
			return nil
		}
		e.sh.mu.Lock()
		b.reg.lruMu.Lock()
		ok := e.list != nil
		if ok {
			e.list.remove(e)
		}
		b.reg.lruMu.Unlock()
		if ok {
			e.busy, e.state = true, next
			b.held.Add(1)
		}
		e.sh.mu.Unlock()
		if ok {
			return e
		}
	}
}

// lruTail is the least recently used idle stream. lruMu is held.
func (r *registry) lruTail() *entry {
	if r.trimmed.tail != nil {
		return r.trimmed.tail
	}
	return r.fresh.tail
}

// own makes the caller e's owner when nobody holds it, taking it off its
// idle list; it reports whether it did. e.sh.mu is held.
func (b *Broker) own(e *entry) bool {
	if e.busy {
		return false
	}
	b.reg.unidle(e)
	e.busy = true
	b.held.Add(1)
	return true
}

// release gives up the ownership of e: an open file stream goes to the
// front of the fresh idle list (trimmed: of the trimmed one), or to the
// closer pool when more opens wait for a slot than closes are under way,
// and an entry without a stream is forgotten. An open stream of a
// partition that left (stale) goes to the closer pool too, memory stream
// or not. e.sh.mu is held and e's queue is empty.
func (b *Broker) release(e *entry, trimmed bool) {
	if e.state == stateOpen && (!e.memory && b.closing.Load() < b.slotWaiters.Load() || b.stale(e)) {
		e.state = stateClosing
		if !e.memory {
			b.closing.Add(1)
		}
		b.closeq.push(closeTask{e: e, frees: !e.memory})
		return
	}
	e.busy = false
	switch {
	case e.state == stateOpen && !e.memory && trimmed:
		b.reg.idle(e, &b.reg.trimmed)
	case e.state == stateOpen && !e.memory:
		b.reg.idle(e, &b.reg.fresh)
	case e.state == stateClosed && e.sh.streams[e.name] == e:
		delete(e.sh.streams, e.name)
	}
	b.held.Done()
}

// handBack ends a piece of work on e by its owner: with requests queued
// meanwhile e goes to the run queue, still owned; otherwise it is
// released.
func (b *Broker) handBack(e *entry, trimmed bool) {
	e.sh.mu.Lock()
	if len(e.queue) > 0 {
		e.sh.mu.Unlock()
		b.runq.push(e)
		return
	}
	b.release(e, trimmed)
	e.sh.mu.Unlock()
	b.trimExcess()
}

// trimExcess hands the least recently used idle streams that are not
// trimmed yet to the closer pool to be trimmed, while there are more of
// them than the budget's WarmCap: an untrimmed stream holds about twice
// the memory of a trimmed one. No shard lock is held.
func (b *Broker) trimExcess() {
	for {
		e := b.takeIdle(func() *entry {
			if b.reg.fresh.n <= b.budget.WarmCap {
				return nil
			}
			return b.reg.fresh.tail
		}, stateOpen)
		if e == nil {
			return
		}
		b.stats.earlyTrims.Add(1)
		b.logTrim(e, "warm_cap")
		b.closeq.push(closeTask{e: e, trim: true})
	}
}

// setState records e's new state for those who look without owning it.
// The caller owns e.
func (e *entry) setState(s state) {
	e.sh.mu.Lock()
	e.state = s
	e.sh.mu.Unlock()
}
