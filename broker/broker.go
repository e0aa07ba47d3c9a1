package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// Version is the micro service version the worker announces.
const Version = "1.0.0"

// Defaults for the zero values of [Options].
const (
	// DefaultName is the micro service name.
	DefaultName = "persist"
	// DefaultQueueGroup is the queue group workers share requests in.
	DefaultQueueGroup = "persist"
	// DefaultArchiveInterval is the least time between archive snapshots.
	DefaultArchiveInterval = 30 * time.Second
	// DefaultIdleTimeout is how long a stream file stays open unused.
	DefaultIdleTimeout = time.Minute
	// DefaultMaxOpen is the most stream files open at once.
	DefaultMaxOpen = 10000
	// DefaultMemoryQuota is the bytes all memory streams may hold.
	DefaultMemoryQuota = 1 << 30
)

// MaxDirLen is the longest absolute path of a data, archive or backup
// directory: with the longest stream path under it, a file path stays
// within what SQLite accepts (PROTOCOL.md section 1).
const MaxDirLen = 160

// queueLimits bound the requests waiting to be applied, so that a flood
// cannot take all the worker's memory; more are answered 503.
type queueLimits struct {
	perStream int // requests waiting for one stream
	all       int // requests waiting for all streams together
	allBytes  int // and their bytes
}

var defaultQueueLimits = queueLimits{perStream: 10_000, all: 100_000, allBytes: 256 << 20}

// shutdownClosers is how many streams Shutdown closes at once.
const shutdownClosers = 16

// flushTimeout bounds waiting for the server to confirm what was sent,
// when the caller gives no deadline.
const flushTimeout = 10 * time.Second

// maxBatchItems bounds the writes committed in one group commit.
const maxBatchItems = 1000

// Options configures a [Broker]. The zero value of every field but DataDir
// means its documented default.
type Options struct {
	DataDir                string        // required: where stream files live
	Prefix                 string        // subject prefix; "" is subjects.DefaultPrefix
	Name                   string        // micro service name; "" is DefaultName
	QueueGroup             string        // "" is DefaultQueueGroup
	ArchiveDir             string        // tiered storage archive; "" is off
	BackupDir              string        // copies written on close; "" is off
	ArchiveInterval        time.Duration // 0 is DefaultArchiveInterval
	IdleTimeout            time.Duration // close file streams idle this long; 0 is DefaultIdleTimeout
	MemoryIdleTimeout      time.Duration // drop memory streams idle this long; 0 is never
	MaxOpen                int           // cap on open stream files; 0 is DefaultMaxOpen
	MaxStreamsPerNamespace int           // 0 is unlimited
	MaxStreams             int           // streams in all, memory streams included; 0 is unlimited
	MemoryQuota            int64         // bytes of all memory streams; 0 is DefaultMemoryQuota
	Logger                 *slog.Logger  // nil discards logs
}

// streamAPI is what the broker uses of a [store.Stream].
type streamAPI interface {
	Append(ws []store.Write) ([]store.WriteResult, error)
	Get(seq uint64) (*store.Message, error)
	GetKey(key string) (*store.Message, error)
	Read(q store.ReadQuery, fn func(*store.Message) error) (store.ReadResult, error)
	DeleteSeqs(seqs ...uint64) (int64, error)
	DeleteThrough(seq uint64) (int64, error)
	DeleteKey(key string) (int64, error)
	DeleteAll() (int64, error)
	Config() store.Config
	SetConfig(c store.Config) (store.Config, error)
	Inventory() (store.Inventory, error)
	Keys(after string, limit int) ([]string, bool, error)
	Revision() uint64
	Close() error
	Destroy() error
}

// hooks lets the package's tests drive time and inject faults.
type hooks struct {
	now       func() time.Time
	noJanitor bool
	onRequest func(op, stream string) // called by the handler for every valid subject
	beforeJob func(op, stream string) // called before a job is applied
	retired   func(stream string)     // called when a stream was ended, before its quota count is given back
	queues    queueLimits             // zero: defaultQueueLimits
}

// Broker serves the Persist protocol on one NATS connection.
type Broker struct {
	nc     *nats.Conn
	opts   Options
	prefix string
	log    *slog.Logger
	quota  *store.Quota
	hooks  hooks
	svc    micro.Service
	owned  int // subscriptions the service added to nc

	mu          sync.Mutex
	streams     map[string]*entry // open streams and streams with work
	openFiles   int
	queued      int  // requests waiting in all queues
	queuedBytes int  // and their bytes
	closed      bool // no more jobs are accepted
	aborted     atomic.Bool
	wg          sync.WaitGroup // per-stream goroutines

	// dirMu orders what creates, opens or retires streams (read lock:
	// they run together) against what must see the directories still:
	// removing the directories a removed stream left empty, so that no
	// creation loses its directory, and counting a quota's streams, so
	// that no count misses a stream whose count is then given back (write
	// lock). Taken before nsMu.
	dirMu sync.RWMutex

	nsMu    sync.Mutex
	nsCount map[string]int // namespace -> streams, counted lazily; "" -> all streams

	names nameIndex // stream files of the listed prefixes (names.go)
	ahead readAhead // getall pages read ahead (prefetch.go)

	janitorStop chan struct{}
	janitorDone chan struct{}

	shutdownOnce sync.Once
	shutdownDone chan struct{}
	shutdownErr  error

	stats counters
}

// entry is one stream known to the broker: open, or with work queued.
type entry struct {
	name     string
	path     string
	queue    []*job
	running  bool // a goroutine owns st and drains queue
	st       streamAPI
	memory   bool
	lastUsed time.Time
}

// counters are the broker's own statistics, served with micro's stats.
type counters struct {
	cacheHits, cacheMisses          atomic.Uint64
	eventsPublished, eventErrors    atomic.Uint64
	commits, commitItems, commitReq atomic.Uint64
	maxBatch                        atomic.Uint64
	errors                          sync.Map // op -> *atomic.Uint64
}

// New validates opts, registers the micro service on nc and starts serving.
// The caller keeps nc and closes it after [Broker.Shutdown].
func New(nc *nats.Conn, opts Options) (*Broker, error) {
	return newBroker(nc, opts, hooks{})
}

func newBroker(nc *nats.Conn, opts Options, h hooks) (*Broker, error) {
	if nc == nil {
		return nil, errors.New("broker: nil NATS connection")
	}
	if opts.DataDir == "" {
		return nil, errors.New("broker: DataDir is required")
	}
	if opts.Prefix == "" {
		opts.Prefix = subjects.DefaultPrefix
	}
	if err := subjects.ValidatePrefix(opts.Prefix); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.QueueGroup == "" {
		opts.QueueGroup = DefaultQueueGroup
	}
	if opts.ArchiveInterval == 0 {
		opts.ArchiveInterval = DefaultArchiveInterval
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxOpen == 0 {
		opts.MaxOpen = DefaultMaxOpen
	}
	if opts.MemoryQuota == 0 {
		opts.MemoryQuota = DefaultMemoryQuota
	}
	switch {
	case opts.ArchiveInterval < 0, opts.IdleTimeout < 0, opts.MemoryIdleTimeout < 0:
		return nil, errors.New("broker: negative duration option")
	case opts.MaxOpen < 0, opts.MaxStreamsPerNamespace < 0, opts.MaxStreams < 0, opts.MemoryQuota < 0:
		return nil, errors.New("broker: negative limit option")
	}
	var err error
	for _, d := range []*string{&opts.DataDir, &opts.ArchiveDir, &opts.BackupDir} {
		if *d == "" {
			continue
		}
		if *d, err = filepath.Abs(*d); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		if len(*d) > MaxDirLen {
			return nil, fmt.Errorf("broker: directory %s is longer than %d bytes", *d, MaxDirLen)
		}
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.queues == (queueLimits{}) {
		h.queues = defaultQueueLimits
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		nc:           nc,
		opts:         opts,
		prefix:       opts.Prefix,
		log:          log,
		quota:        store.NewQuota(opts.MemoryQuota),
		hooks:        h,
		streams:      make(map[string]*entry),
		nsCount:      make(map[string]int),
		janitorStop:  make(chan struct{}),
		janitorDone:  make(chan struct{}),
		shutdownDone: make(chan struct{}),
	}
	before := nc.NumSubscriptions()
	svc, err := micro.AddService(nc, micro.Config{
		Name:         opts.Name,
		Version:      Version,
		Description:  "Persist: durable message streams",
		QueueGroup:   opts.QueueGroup,
		StatsHandler: b.statsData,
	})
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	for _, op := range subjects.Ops {
		subj := b.prefix + ".api." + op + ".>"
		if err := svc.AddEndpoint(op, micro.HandlerFunc(b.handle), micro.WithEndpointSubject(subj)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("broker: endpoint %s: %w", op, err)
		}
	}
	b.svc = svc
	b.owned = nc.NumSubscriptions() - before
	// Serve from the moment New returns: the server has the subscriptions.
	// While disconnected there is nothing to wait for; the subscriptions
	// are sent when the connection is (re)established.
	if nc.IsConnected() {
		if err := nc.FlushTimeout(flushTimeout); err != nil {
			b.log.Warn("flush after subscribing", "err", err)
		}
	}
	if h.noJanitor {
		close(b.janitorDone)
	} else {
		go b.janitor()
	}
	return b, nil
}

// Service returns the micro service, for its info and stats.
func (b *Broker) Service() micro.Service { return b.svc }

// Shutdown stops taking requests, answers every request already received,
// closes every stream and flushes the connection. Requests still waiting
// to start when ctx is done are answered 503 unavailable. It is idempotent:
// later calls wait for the first and return its result.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.shutdownOnce.Do(func() {
		b.shutdownErr = b.shutdown(ctx)
		close(b.shutdownDone)
	})
	select {
	case <-b.shutdownDone:
		return b.shutdownErr
	default:
	}
	select {
	case <-b.shutdownDone:
		return b.shutdownErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Broker) shutdown(ctx context.Context) error {
	var errs []error
	// Stopping drains the endpoint subscriptions: the server stops sending
	// and the messages already received are still handed to the handler.
	// The drain finishes asynchronously, once each subscription is gone.
	before := b.nc.NumSubscriptions()
	if err := b.svc.Stop(); err != nil {
		errs = append(errs, err)
	}
	b.waitDrained(ctx, before-b.owned)
	stop := context.AfterFunc(ctx, func() { b.aborted.Store(true) })
	defer stop()
	if ctx.Err() != nil {
		b.aborted.Store(true)
	}
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	close(b.janitorStop)
	<-b.janitorDone
	b.wg.Wait()

	b.mu.Lock()
	entries := make([]*entry, 0, len(b.streams))
	for _, e := range b.streams {
		entries = append(entries, e)
	}
	b.mu.Unlock()
	// Closing a stream that changed checkpoints its WAL with an fsync:
	// with thousands open, closing them side by side keeps the disk busy
	// instead of waiting for each fsync in turn.
	var (
		closing sync.WaitGroup
		errMu   sync.Mutex
		slots   = make(chan struct{}, shutdownClosers)
	)
	for _, e := range entries {
		if e.st == nil {
			continue
		}
		slots <- struct{}{}
		closing.Go(func() {
			defer func() { <-slots }()
			if err := b.closeStream(e); err != nil {
				b.log.Error("close stream", "stream", e.name, "err", err)
				errMu.Lock()
				errs = append(errs, fmt.Errorf("broker: close %s: %w", e.name, err))
				errMu.Unlock()
			}
			b.forget(e)
		})
	}
	closing.Wait()
	if !b.nc.IsClosed() {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, flushTimeout)
			defer cancel()
		}
		if err := b.nc.FlushWithContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("broker: flush: %w", err))
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// waitDrained waits until the service's subscriptions are gone from the
// connection (nats.go removes a draining subscription once its last
// message was handled), or ctx is done.
func (b *Broker) waitDrained(ctx context.Context, target int) {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !b.nc.IsClosed() && b.nc.NumSubscriptions() > target {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// handle is the handler of every endpoint: it validates the request and
// queues it on its stream. It runs on the endpoint subscription's
// goroutine, one message at a time, which keeps arrival order.
func (b *Broker) handle(req micro.Request) {
	reply := req.Reply()
	op := ""
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("panic while handling request", "subject", req.Subject(), "panic", r, "stack", string(debug.Stack()))
			b.replyError(op, reply, subjects.ErrInternal)
		}
	}()
	op, name, err := subjects.ParseAPI(b.prefix, req.Subject())
	if err != nil {
		b.replyError(op, reply, subjects.ErrInvalidStream.WithDescription(err.Error()))
		return
	}
	if h := b.hooks.onRequest; h != nil {
		h(op, name)
	}
	if op == subjects.OpList {
		b.list(reply, name, req.Data())
		return
	}
	j, err := parseJob(op, req.Data(), nats.Header(req.Headers()))
	if err != nil {
		b.replyError(op, reply, err)
		return
	}
	if j.isWrite() {
		refuseUnsendable(j.items, b.nc.MaxPayload())
	}
	j.reply, j.size = reply, len(req.Data())
	b.enqueue(name, j)
}

// enqueue appends j to its stream's queue and starts the stream's goroutine
// when none is running.
func (b *Broker) enqueue(name string, j *job) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.replyError(j.op, j.reply, subjects.ErrUnavailable.WithDescription("the worker is stopping"))
		return
	}
	if lim := b.hooks.queues; b.queued >= lim.all || b.queuedBytes+j.size > lim.allBytes {
		b.mu.Unlock()
		b.replyError(j.op, j.reply, subjects.ErrUnavailable.WithDescription("too many requests waiting in the worker"))
		return
	}
	e := b.streams[name]
	if e == nil {
		e = &entry{name: name, path: filepath.Join(b.opts.DataDir, subjects.Path(name))}
		b.streams[name] = e
	}
	if len(e.queue) >= b.hooks.queues.perStream {
		b.mu.Unlock()
		b.replyError(j.op, j.reply, subjects.ErrUnavailable.WithDescription("too many requests waiting for this stream"))
		return
	}
	b.queued++
	b.queuedBytes += j.size
	e.queue = append(e.queue, j)
	e.lastUsed = b.hooks.now() // idle means no request for a while
	if !e.running {
		e.running = true
		b.wg.Add(1)
		go b.run(e)
	}
	b.mu.Unlock()
}

// run applies e's queued jobs in order until the queue is empty.
func (b *Broker) run(e *entry) {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		if len(e.queue) == 0 {
			b.release(e)
			// Streams busy when another was opened may have kept the
			// number of open files above MaxOpen; now one is idle.
			var victims []*entry
			if excess := b.openFiles - b.opts.MaxOpen; excess > 0 {
				victims = b.pickIdle(excess, func(c *entry) bool { return !c.memory })
			}
			b.mu.Unlock()
			b.closeEntries(victims)
			return
		}
		batch := takeBatch(e)
		for _, j := range batch {
			b.queued--
			b.queuedBytes -= j.size
		}
		b.mu.Unlock()
		if b.aborted.Load() {
			for _, j := range batch {
				b.replyError(j.op, j.reply, subjects.ErrUnavailable.WithDescription("the worker is stopping"))
			}
			continue
		}
		b.apply(e, batch)
	}
}

// release gives up ownership of e once its queue is empty; an entry without
// an open stream is forgotten. b.mu is held.
func (b *Broker) release(e *entry) {
	e.running = false
	if e.st == nil && b.streams[e.name] == e {
		delete(b.streams, e.name)
	}
}

// takeBatch removes the jobs to apply next from e's queue: all consecutive
// writes at its head up to maxBatchItems items (group commit), or the one
// job at its head. b.mu is held.
func takeBatch(e *entry) []*job {
	n, items := 1, len(e.queue[0].items)
	if e.queue[0].isWrite() {
		for n < len(e.queue) && e.queue[n].isWrite() && items+len(e.queue[n].items) <= maxBatchItems {
			items += len(e.queue[n].items)
			n++
		}
	}
	batch := make([]*job, n)
	copy(batch, e.queue)
	clear(e.queue[:n])
	e.queue = e.queue[n:]
	if len(e.queue) == 0 {
		e.queue = nil
	}
	return batch
}

// apply runs one batch on e, answering every job of it exactly once even if
// applying panics.
func (b *Broker) apply(e *entry, batch []*job) {
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("panic while applying request", "stream", e.name, "op", batch[0].op, "panic", r, "stack", string(debug.Stack()))
			for _, j := range batch {
				if !j.answered {
					b.replyError(j.op, j.reply, subjects.ErrInternal)
				}
			}
		}
	}()
	if h := b.hooks.beforeJob; h != nil {
		h(batch[0].op, e.name)
	}
	if batch[0].isWrite() {
		b.applyWrites(e, batch)
		return
	}
	b.applyOne(e, batch[0])
}
