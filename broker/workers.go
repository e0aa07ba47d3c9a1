package broker

import (
	"runtime/debug"
	"sync"

	"github.com/nats-persist/persist/subjects"
)

// Sizes of the goroutine pools.
const (
	// runWorkers apply requests. Most of their time is SQLite's CPU, but a
	// commit with sync on waits for its fsync: more workers than cores
	// keep the disk busy with several streams' commits at once.
	runWorkers = 32
	// closers close, trim and evict idle streams off the request path.
	closers = 4
	// fairBatches is how many batches a worker applies on one stream
	// before the stream goes to the back of the run queue, so that a
	// stream with a long queue does not hold a worker from the others.
	fairBatches = 8
)

// fifo is an unbounded queue of entries shared by a pool of goroutines.
// It holds at most one element per stream with queued requests (run
// queue) or per stream taken for closing (close queue), both bounded.
type fifo[T any] struct {
	mu     sync.Mutex
	cond   sync.Cond
	items  []T
	head   int
	closed bool
}

func newFIFO[T any]() *fifo[T] {
	q := &fifo[T]{}
	q.cond.L = &q.mu
	return q
}

func (q *fifo[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.cond.Signal()
}

// pop waits for an element; false once the queue is closed and empty.
func (q *fifo[T]) pop() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) && !q.closed {
		q.cond.Wait()
	}
	var v T
	if q.head == len(q.items) {
		return v, false
	}
	v = q.items[q.head]
	var zero T
	q.items[q.head] = zero
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return v, true
}

// close lets the goroutines waiting in pop return once the queue is empty.
func (q *fifo[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// worker applies the requests of the streams on the run queue.
func (b *Broker) worker() {
	for {
		e, ok := b.runq.pop()
		if !ok {
			return
		}
		b.run(e)
		b.trimExcess()
	}
}

// run applies e's queued requests in order, up to fairBatches batches,
// then hands e back. The caller owns e.
func (b *Broker) run(e *entry) {
	for range fairBatches {
		batch := b.takeBatch(e)
		if batch == nil {
			return
		}
		b.applyRequests(e, batch)
	}
	b.handBack(e, false)
}

// takeBatch removes the requests to apply next from e's queue: the
// consecutive writes at its head (group commit; applyRequests splits them
// by items), or the one request at its head. With the queue empty it
// releases e and returns nil.
func (b *Broker) takeBatch(e *entry) []*request {
	e.sh.mu.Lock()
	defer e.sh.mu.Unlock()
	if len(e.queue) == 0 {
		b.release(e, false)
		return nil
	}
	n := 1
	if e.queue[0].isWrite() {
		for n < len(e.queue) && n < maxBatchItems && e.queue[n].isWrite() {
			n++
		}
	}
	batch := make([]*request, n)
	copy(batch, e.queue)
	clear(e.queue[:n])
	e.queue = e.queue[n:]
	if len(e.queue) == 0 {
		e.queue = nil
	}
	size := 0
	for _, r := range batch {
		size += r.size
	}
	b.queued.Add(int64(-n))
	b.queuedBytes.Add(int64(-size))
	return batch
}

// applyRequests parses and applies a batch taken by takeBatch. A request
// that waited longer than Options.MaxWait is refused 429 overloaded and
// not applied (its client has likely given up); a request that does not
// parse is answered at once; the writes are committed in groups of at most
// maxBatchItems items.
func (b *Broker) applyRequests(e *entry, batch []*request) {
	if b.aborted.Load() {
		for _, r := range batch {
			b.replyErrorSince(r.op, e.name, r.reply, errStopping, r.at)
		}
		return
	}
	now := b.hooks.now()
	jobs := make([]*job, 0, len(batch))
	items := 0
	for _, r := range batch {
		j := b.parse(e.name, r)
		if j == nil {
			continue
		}
		if len(jobs) > 0 && items+len(j.items) > maxBatchItems {
			b.applyDone(e, jobs)
			jobs, items = jobs[:0], 0
			// The next requests are about to be applied now.
			now = b.hooks.now()
		}
		waited := now.Sub(r.at)
		b.stats.wait.add(waited)
		if b.opts.MaxWait > 0 && waited > b.opts.MaxWait {
			b.stats.shed.Add(1)
			b.replyErrorSince(j.op, e.name, j.reply, errWaited, j.at)
			putJob(j)
			continue
		}
		jobs = append(jobs, j)
		items += len(j.items)
	}
	if len(jobs) > 0 {
		b.applyDone(e, jobs)
	}
}

// applyDone applies batch, then gives its jobs back to the pool: apply
// answered every one of them and nothing keeps them.
func (b *Broker) applyDone(e *entry, batch []*job) {
	b.apply(e, batch)
	for _, j := range batch {
		putJob(j)
	}
}

// parse parses r, a request for stream, into a job, or answers it and
// returns nil.
func (b *Broker) parse(stream string, r *request) (j *job) {
	defer func() {
		if p := recover(); p != nil {
			b.log.Error("panic while parsing request", "op", r.op, "stream", stream, "panic", p, "stack", string(debug.Stack()))
			b.replyErrorSince(r.op, stream, r.reply, subjects.ErrInternal, r.at)
			j = nil
		}
	}()
	j, err := parseJob(r.op, r.data, r.hdr)
	if err != nil {
		b.replyErrorSince(r.op, stream, r.reply, err, r.at)
		return nil
	}
	if j.isWrite() {
		refuseUnsendable(j.items, b.nc.MaxPayload())
	}
	j.reply, j.at = r.reply, r.at
	return j
}

// apply runs one batch of jobs on e, answering every job of it exactly once
// even if applying panics.
func (b *Broker) apply(e *entry, batch []*job) {
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("panic while applying request", "stream", e.name, "op", batch[0].op, "panic", r, "stack", string(debug.Stack()))
			for _, j := range batch {
				if !j.answered {
					b.replyErrorSince(j.op, e.name, j.reply, subjects.ErrInternal, j.at)
				}
			}
		}
	}()
	if err := b.mayApply(e.name); err != nil {
		for _, j := range batch {
			b.replyError(j.op, e.name, j.reply, err)
		}
		return
	}
	if h := b.hooks.beforeJob; h != nil {
		h(batch[0].op, e.name)
	}
	if batch[0].isWrite() {
		b.applyWrites(e, batch)
		return
	}
	b.applyOne(e, batch[0])
}

// closeTask is work for the closer pool on an entry it owns.
type closeTask struct {
	e     *entry
	trim  bool            // trim the stream instead of closing it
	frees bool            // closes a file: counted in Broker.closing
	done  *sync.WaitGroup // if not nil, Done when finished
}

// closer closes and trims the streams on the close queue.
func (b *Broker) closer() {
	for {
		t, ok := b.closeq.pop()
		if !ok {
			return
		}
		b.runClose(t)
	}
}

func (b *Broker) runClose(t closeTask) {
	e := t.e
	if t.trim {
		if err := e.st.Trim(); err != nil {
			b.log.Warn("trim stream", "stream", e.name, "err", err)
		}
		b.stats.trims.Add(1)
		b.handBack(e, true)
	} else {
		if err := b.closeStream(e); err != nil {
			b.log.Error("close stream", "stream", e.name, "err", err)
		}
		if t.frees {
			b.closing.Add(-1)
		}
		b.handBack(e, false)
	}
	if t.done != nil {
		t.done.Done()
	}
}

// evict hands the least recently used idle file stream to the closer
// pool; false when every open stream is busy.
func (b *Broker) evict() bool {
	e := b.takeIdle(b.reg.lruTail, stateClosing)
	if e == nil {
		return false
	}
	b.closing.Add(1)
	b.stats.evictions.Add(1)
	b.closeq.push(closeTask{e: e, frees: true})
	return true
}
