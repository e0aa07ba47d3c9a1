package broker

import (
	"container/list"
	"errors"
	"sync"

	"github.com/nats-persist/persist/store"
)

// defaultAheadBytes bounds the getall pages read ahead in the whole
// worker, counted as the messages' sizes plus aheadMsgCost each.
const defaultAheadBytes = 32 << 20

// aheadMsgCost is what a message read ahead costs beyond its size: its
// struct, header map and slice entry, roughly.
const aheadMsgCost = 128

// readAhead keeps, per stream, the getall page that follows the last one
// sent, read while the client round-trips for it: a client reading a range
// asks for the next page from Persist-Next-Seq with the same bounds. At
// most one page per stream, and all of them within a byte bound; a page
// that does not fit pushes out the oldest, in O(1) each. The zero value is
// ready to use. Its lock is a leaf, never held across a read or a publish.
type readAhead struct {
	mu    sync.Mutex
	pages map[string]*aheadPage // by stream name
	order list.List             // of *aheadPage's stream names, newest first
	bytes int64
	max   int64 // 0 is defaultAheadBytes

	hits, misses uint64 // pages sent from memory, and pages thrown away
}

// aheadPage is one page read ahead and what it answers.
type aheadPage struct {
	// st is the stream it was read from: a stream closed and reopened, or
	// destroyed and created again, is another value and matches no page.
	st    streamAPI
	q     store.ReadQuery
	msgs  []*store.Message
	res   store.ReadResult
	bytes int64
	elem  *list.Element // in readAhead.order
}

// take removes and returns name's page, nil when there is none.
func (r *readAhead) take(name string) *aheadPage {
	r.mu.Lock()
	defer r.mu.Unlock()
	pg := r.pages[name]
	if pg != nil {
		r.drop(name, pg)
	}
	return pg
}

// drop forgets name's page pg. r.mu is held.
func (r *readAhead) drop(name string, pg *aheadPage) {
	delete(r.pages, name)
	r.order.Remove(pg.elem)
	r.bytes -= pg.bytes
}

// put keeps pg as name's page, pushing out the oldest pages to fit it.
func (r *readAhead) put(name string, pg *aheadPage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	max := r.max
	if max == 0 {
		max = defaultAheadBytes
	}
	if pg.bytes > max {
		return
	}
	if r.pages == nil {
		r.pages = make(map[string]*aheadPage)
	}
	if old := r.pages[name]; old != nil {
		r.drop(name, old)
	}
	for r.bytes+pg.bytes > max {
		oldest := r.order.Back().Value.(string)
		r.drop(oldest, r.pages[oldest])
	}
	pg.elem = r.order.PushFront(name)
	r.pages[name] = pg
	r.bytes += pg.bytes
}

// count records whether a page read ahead was sent.
func (r *readAhead) count(hit bool) {
	r.mu.Lock()
	if hit {
		r.hits++
	} else {
		r.misses++
	}
	r.mu.Unlock()
}

// forgetPrefetch drops the page read ahead of stream name, if any. A
// stream that is closed, destroyed or dropped must be forgotten so that
// its page does not hold memory; a page of a stream that was reopened or
// created again is never sent (aheadPage.st), with or without this.
func (b *Broker) forgetPrefetch(name string) { b.ahead.take(name) }

// takeAhead returns the page read ahead for q on e's stream, when there is
// one and the stream has not changed since: same stream value, same
// revision. It is called by getAll, which owns e's stream.
func (b *Broker) takeAhead(e *entry, q store.ReadQuery) *aheadPage {
	pg := b.ahead.take(e.name)
	if pg == nil {
		return nil
	}
	ok := pg.st == e.st && pg.q == q && pg.res.Revision == e.st.Revision()
	b.ahead.count(ok)
	if !ok {
		return nil
	}
	return pg
}

// errNotAhead stops a read ahead that must not be kept.
var errNotAhead = errors.New("page not kept")

// readNext reads the page after the one q answered with res, into memory,
// for the next getall of the stream. A stream that allows message TTLs is
// not read ahead, nor a page with a message that expires: a message may
// expire between the read and the request without a change of revision.
func (b *Broker) readNext(e *entry, q store.ReadQuery, res store.ReadResult) {
	if res.NumPending <= 0 || e.st.Config().AllowMsgTTL {
		return
	}
	q.StartSeq = res.NextSeq
	pg := &aheadPage{st: e.st, q: q}
	max := b.ahead.max
	if max == 0 {
		max = defaultAheadBytes
	}
	next, err := e.st.Read(q, func(m *store.Message) error {
		pg.bytes += m.Size() + aheadMsgCost
		if m.Expires != 0 || pg.bytes > max {
			return errNotAhead
		}
		pg.msgs = append(pg.msgs, m)
		return nil
	})
	if err != nil {
		// A failure to read recurs when the client asks for the page.
		return
	}
	pg.res = next
	b.ahead.put(e.name, pg)
}
