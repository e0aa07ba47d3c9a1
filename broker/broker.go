package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
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
	// DefaultIdleTimeout is how long a stream file stays open unused. Opening
	// a closed stream costs about 0.2 ms and no fsync, so an idle stream need
	// not hold its memory and descriptors for long.
	DefaultIdleTimeout = 5 * time.Second
	// DefaultMemoryBudget is the memory open file streams may take; with
	// the descriptors left to the worker, it bounds how many are open.
	DefaultMemoryBudget = 256 << 20
	// DefaultTrimDelay is how long an open stream is idle before it gives
	// back the memory it does not need (see [store.Stream.Trim]).
	DefaultTrimDelay = 2 * time.Second
	// DefaultMemoryQuota is the bytes all memory streams may hold.
	DefaultMemoryQuota = 1 << 30
	// DefaultMaxWait is how long a request may wait in the worker before
	// it is refused 429 overloaded instead of applied: longer than a
	// client usually waits for a reply, short enough that a worker behind
	// on its work does not apply writes whose clients gave up long ago.
	DefaultMaxWait = 5 * time.Second
	// DefaultSummaryInterval is how often the summary line is logged.
	DefaultSummaryInterval = time.Minute
)

// MaxDirLen is the longest absolute path of a data, archive or backup
// directory: with the longest stream path under it, a file path stays
// within what SQLite accepts (PROTOCOL.md section 1).
const MaxDirLen = 160

// queueLimits bound the requests waiting to be applied, so that a flood
// cannot take all the worker's memory; more are answered 429 overloaded.
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
	MaxOpen                int           // extra cap on open stream files; 0: the budgets alone
	MemoryBudget           int64         // memory of open file streams; 0 is DefaultMemoryBudget
	TrimDelay              time.Duration // trim file streams idle this long; 0 is DefaultTrimDelay
	MaxStreamsPerNamespace int           // 0 is unlimited
	MaxStreams             int           // streams in all, memory streams included; 0 is unlimited
	MemoryQuota            int64         // bytes of all memory streams; 0 is DefaultMemoryQuota
	MaxWait                time.Duration // refuse requests waiting longer (429 overloaded); 0 is DefaultMaxWait, negative is no bound
	ChangesWindow          int           // delete and config changes each stream keeps for changes; 0 is subjects.DefaultChangesWindow
	Logger                 *slog.Logger  // nil discards logs

	// SummaryInterval is how often the broker logs its one-line summary
	// at info (open streams, requests per second, errors, requests
	// refused overloaded), skipped when nothing happened since the last
	// one; 0 is DefaultSummaryInterval, negative is never. At debug it
	// also logs every failed request and every stream opened, trimmed
	// and closed; it never logs a request that succeeded.
	SummaryInterval time.Duration

	// Metadata is added to the micro service's info metadata (nats micro
	// info), e.g. the build of the program; the broker's own keys win.
	Metadata map[string]string

	// InstanceCheckInterval is how often the broker looks for another
	// live worker serving the same prefix (any micro service with an
	// endpoint under <prefix>.api.), besides the check in New and at
	// every (re)connect; 0 is DefaultInstanceCheckInterval. Negative turns
	// every check off: only for tests that run two brokers on one prefix
	// on purpose, since two workers on a prefix split its streams.
	InstanceCheckInterval time.Duration

	// Partitioning turns on partitioned serving: this worker serves some
	// of the prefix's partitions, others the rest (partition.go). The
	// zero value is off.
	Partitioning Partitioning

	// SharedDataDir lets several workers claiming partitions through
	// leases use one data directory on shared storage: the directory is
	// not locked (each stream file is, by the worker that has it open),
	// and a partition's new owner opens the very files the old one wrote,
	// so that a worker that dies loses no acknowledged write. It needs
	// Partitioning with leases (New fails otherwise) and storage whose
	// POSIX locks work across machines (NFSv4, CephFS).
	SharedDataDir bool
}

// streamAPI is what the broker uses of a [store.Stream].
type streamAPI interface {
	Append(ws []store.Write) ([]store.WriteResult, error)
	Get(seq uint64) (*store.Message, error)
	GetKey(key string) (*store.Message, error)
	Read(q store.ReadQuery, fn func(*store.Message) error) (store.ReadResult, error)
	Changes(q store.ChangesQuery, fn func(*store.Event) error) (store.ChangesResult, error)
	DeleteSeqs(seqs ...uint64) (int64, error)
	DeleteThrough(seq uint64) (int64, error)
	DeleteKey(key string) (int64, error)
	DeleteAll() (int64, error)
	Config() store.Config
	SetConfig(c store.Config) (store.Config, error)
	Inventory() (store.Inventory, error)
	Keys(after string, limit int) ([]string, bool, error)
	Revision() uint64
	Trim() error
	Close() error
	Abandon() error
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
	nofile    uint64                  // zero: the process's RLIMIT_NOFILE
	tick      <-chan time.Time        // the janitor's ticks; nil: a ticker
	// summaryTick drives the summary line; nil: a ticker of
	// Options.SummaryInterval.
	summaryTick <-chan time.Time

	// mayServe, when set, is asked before a stream is opened whether
	// this worker may serve it; an error is answered instead. (The
	// partition check, mayApply, runs before every batch.)
	mayServe func(stream string) error

	// claimed, when set, is called when a lease of partition n was
	// created, before n is served.
	claimed func(n int)
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
	budget Budget

	reg     *registry
	runq    *fifo[*entry]    // streams with work, owned, waiting for a worker
	closeq  *fifo[closeTask] // streams owned by the closer pool
	pools   sync.WaitGroup   // the workers and the closers
	held    sync.WaitGroup   // entries owned by anyone (busy)
	slots   chan struct{}    // one element per open file stream; cap is the budget
	closed  atomic.Bool      // no more requests are accepted
	aborted atomic.Bool      // requests not yet started are answered 503

	queued      atomic.Int64 // requests waiting in all queues
	queuedBytes atomic.Int64 // and their bytes
	closing     atomic.Int64 // closes handed to the closer pool, not yet done
	slotWaiters atomic.Int64 // opens waiting for a slot
	openStreams atomic.Int64 // open streams, memory streams included

	// mu guards streams: the open memory streams, which list shows
	// (memory streams have no file to find).
	mu      sync.Mutex
	streams map[string]*entry

	// dirMu orders what creates, opens or removes streams (read lock:
	// they run together) against what must see the directories still:
	// removing the directories a removed stream left empty, so that no
	// creation loses its directory, and counting a quota's streams, so
	// that no count misses a stream whose count is then given back (write
	// lock). Plain closes do not take it. Taken before nsMu.
	dirMu sync.RWMutex

	nsMu    sync.Mutex
	nsCount map[string]int // namespace -> streams, counted lazily; "" -> all streams

	names nameIndex // stream files of the listed prefixes (names.go)
	ahead readAhead // getall pages read ahead (prefetch.go)

	janitorStop chan struct{} // also stops the summary
	janitorDone chan struct{}
	summaryDone chan struct{}

	dirLock  *os.File    // the data directory's lock (dirlock.go); nil: shared
	dataID   string      // the data directory's id, for the fence (partitioned, with an archive)
	single   singleCheck // the periodic check for another worker (single.go)
	conflict chan error  // see Conflict

	shutdownOnce sync.Once
	shutdownDone chan struct{}
	shutdownErr  error

	stats counters
	self  self                 // the worker's id and its reply header (reply.go)
	eps   map[string]*endpoint // by endpoint name: each op, and noStream
	parts *partitions          // nil: not partitioned

	damaged sync.Map // stream -> struct{}: damaged files already logged

	slowLog     logEvery // slow consumers
	badReplyLog logEvery // requests with a reply subject under the prefix
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
	if opts.MemoryBudget == 0 {
		opts.MemoryBudget = DefaultMemoryBudget
	}
	if opts.TrimDelay == 0 {
		opts.TrimDelay = DefaultTrimDelay
	}
	if opts.MemoryQuota == 0 {
		opts.MemoryQuota = DefaultMemoryQuota
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = DefaultMaxWait
	}
	if opts.SummaryInterval == 0 {
		opts.SummaryInterval = DefaultSummaryInterval
	}
	switch {
	case opts.ArchiveInterval < 0, opts.IdleTimeout < 0, opts.MemoryIdleTimeout < 0, opts.TrimDelay < 0:
		return nil, errors.New("broker: negative duration option")
	case opts.MaxOpen < 0, opts.MaxStreamsPerNamespace < 0, opts.MaxStreams < 0, opts.MemoryQuota < 0, opts.MemoryBudget < 0:
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
	dirLock, dataID, err := prepareDirs(opts)
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			dirLock.Close()
		}
	}()
	b := &Broker{
		nc:           nc,
		opts:         opts,
		prefix:       opts.Prefix,
		log:          log,
		quota:        store.NewQuota(opts.MemoryQuota),
		hooks:        h,
		budget:       newBudget(opts, h.nofile),
		reg:          newRegistry(),
		runq:         newFIFO[*entry](),
		closeq:       newFIFO[closeTask](),
		streams:      make(map[string]*entry),
		nsCount:      make(map[string]int),
		janitorStop:  make(chan struct{}),
		janitorDone:  make(chan struct{}),
		summaryDone:  make(chan struct{}),
		shutdownDone: make(chan struct{}),
		dirLock:      dirLock,
		dataID:       dataID,
		conflict:     make(chan error, 1),
		eps:          make(map[string]*endpoint, len(subjects.Ops)+1),
	}
	if opts.InstanceCheckInterval == 0 {
		b.opts.InstanceCheckInterval = DefaultInstanceCheckInterval
	}
	if b.parts, err = newPartitions(opts.Partitioning, opts.Prefix); err != nil {
		return nil, err
	}
	if err := b.checkAlone(); err != nil {
		return nil, err
	}
	for _, op := range subjects.Ops {
		b.eps[op] = new(endpoint)
	}
	b.eps[noStream] = new(endpoint)
	b.slots = make(chan struct{}, b.budget.MaxOpen)
	log.Info("open stream budget", "max_open", b.budget.MaxOpen, "bound_by", b.budget.BoundBy,
		"memory_cap", b.budget.MemoryCap, "descriptor_cap", b.budget.DescriptorCap, "nofile", b.budget.NoFile)
	// Before micro hooks the connection's error handler, which then calls
	// this one after its own.
	prevErr := nc.ErrorHandler()
	nc.SetErrorHandler(func(c *nats.Conn, sub *nats.Subscription, err error) {
		if !b.AsyncError(sub, err) && prevErr != nil {
			prevErr(c, sub, err)
		}
	})
	metadata := b.serviceMetadata(opts.Metadata)
	if b.parts != nil {
		maps.Copy(metadata, b.parts.metadata())
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:         opts.Name,
		Version:      Version,
		Description:  "Persist: durable message streams",
		QueueGroup:   opts.QueueGroup,
		StatsHandler: b.statsData,
		Metadata:     metadata,
	})
	if err != nil {
		nc.SetErrorHandler(prevErr)
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.setSelf(svc.Info().ID)
	fail := func(name string, err error) (*Broker, error) {
		_ = svc.Stop()
		nc.SetErrorHandler(prevErr)
		return nil, fmt.Errorf("broker: endpoint %s: %w", name, err)
	}
	// An endpoint's subscription may hold as many requests as the queues
	// (and at least the client library's defaults): a flood fills the
	// queues, which answer 429 overloaded, before the subscription's
	// pending limit drops requests without a reply.
	pending := micro.WithEndpointPendingLimits(max(h.queues.all, nats.DefaultSubPendingMsgsLimit),
		max(h.queues.allBytes, nats.DefaultSubPendingBytesLimit))
	for _, op := range subjects.Ops {
		if b.parts != nil {
			break // the partitions' subscriptions take the requests
		}
		subj := b.prefix + ".api." + op + ".>"
		ep := b.eps[op]
		handler := func(req micro.Request) {
			ep.sawRequest(req)
			b.handle(req)
		}
		if err := svc.AddEndpoint(op, micro.HandlerFunc(handler), micro.WithEndpointSubject(subj), pending); err != nil {
			return fail(op, err)
		}
	}
	// <prefix>.api.* matches only the subjects that name no stream, so no
	// valid request is delivered twice.
	if err := svc.AddEndpoint(noStream, micro.HandlerFunc(b.handleNoStream), micro.WithEndpointSubject(b.prefix+".api.*")); err != nil {
		return fail(noStream, err)
	}
	b.svc = svc
	if b.parts != nil {
		if err := b.startPartitions(); err != nil {
			b.stopPartitionSubs()
			b.releasePartitions()
			_ = svc.Stop()
			nc.SetErrorHandler(prevErr)
			return nil, err
		}
	}
	for range runWorkers {
		b.pools.Go(b.worker)
	}
	for range closers {
		b.pools.Go(b.closer)
	}
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
	if opts.SummaryInterval < 0 && h.summaryTick == nil {
		close(b.summaryDone)
	} else {
		go b.summaries()
	}
	b.startSingle()
	started = true
	return b, nil
}

// Service returns the micro service, for its info and stats.
func (b *Broker) Service() micro.Service { return b.svc }

// Shutdown stops taking requests, answers every request already received,
// closes every stream and flushes the connection. Requests still waiting
// to start when ctx is done are answered 503 unavailable. When NATS is not
// reachable (never reached, or lost before or during Shutdown), nothing
// could be answered: requests not yet started are not applied, every stream
// is closed at once and Shutdown returns nil without waiting for ctx, since
// every write that was acknowledged is on disk. It is idempotent: later
// calls wait for the first and return its result.
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

// errNATSUnreachable is the cause of shutdown's live context when the
// connection is not (or no longer) connected.
var errNATSUnreachable = errors.New("NATS unreachable")

func (b *Broker) shutdown(ctx context.Context) error {
	parent := ctx
	var errs []error
	// live is ctx, also done once the connection is not connected: then
	// no reply can leave, and waiting for anything on the wire is waiting
	// for ctx's deadline.
	live, cancelLive := context.WithCancelCause(ctx)
	status := b.nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	go func() {
		select {
		case <-status:
			cancelLive(errNATSUnreachable)
		case <-live.Done():
		}
	}()
	defer func() {
		cancelLive(nil)
		b.nc.RemoveStatusListener(status)
	}()
	if !b.nc.IsConnected() {
		cancelLive(errNATSUnreachable)
	}
	b.stopSingle()
	// Stopping drains the endpoint subscriptions: the server stops sending
	// and the messages already received are still handed to the handler.
	if err := b.svc.Stop(); err != nil {
		errs = append(errs, err)
	}
	b.stopPartitionSubs()
	b.waitDrained(ctx, live)
	// From here on, a request not yet started when live is done is
	// answered 503 (a reply that goes nowhere once NATS is gone) and not
	// applied: its client cannot learn the outcome, and a request is
	// applied whole or not at all.
	stop := context.AfterFunc(live, func() { b.aborted.Store(true) })
	defer stop()
	if live.Err() != nil {
		b.aborted.Store(true)
	}
	b.closed.Store(true)
	close(b.janitorStop)
	<-b.janitorDone
	<-b.summaryDone
	// Every request received is queued now; once no entry is held, every
	// one was answered and every stream is idle.
	b.held.Wait()
	b.runq.close()
	b.closeq.close()
	b.pools.Wait()

	var entries []*entry
	for i := range b.reg.shards {
		sh := &b.reg.shards[i]
		sh.mu.Lock()
		for _, e := range sh.streams {
			if e.state == stateOpen {
				entries = append(entries, e)
			}
		}
		sh.mu.Unlock()
	}
	// Closing a stream that changed checkpoints its WAL with an fsync:
	// with thousands open, closing them side by side keeps the disk busy
	// instead of waiting for each fsync in turn. Nothing else runs now, so
	// the entries are this goroutine's.
	var (
		closing sync.WaitGroup
		errMu   sync.Mutex
		slots   = make(chan struct{}, shutdownClosers)
	)
	for _, e := range entries {
		slots <- struct{}{}
		closing.Go(func() {
			defer func() { <-slots }()
			if err := b.closeStream(e); err != nil {
				b.log.Error("close stream", "stream", e.name, "err", err)
				errMu.Lock()
				errs = append(errs, fmt.Errorf("broker: close %s: %w", e.name, err))
				errMu.Unlock()
			}
		})
	}
	closing.Wait()
	b.releasePartitions()
	b.releaseDir()
	if live.Err() == nil {
		fctx := live
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			fctx, cancel = context.WithTimeout(live, flushTimeout)
			defer cancel()
		}
		if err := b.nc.FlushWithContext(fctx); err != nil && context.Cause(live) != errNATSUnreachable {
			errs = append(errs, fmt.Errorf("broker: flush: %w", err))
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	if context.Cause(live) == errNATSUnreachable && parent.Err() == nil {
		b.log.Warn("stopped with NATS unreachable: requests not yet started were not applied and replies not yet sent are lost; every acknowledged write is on disk")
		return nil
	}
	// A flush with a done context may still see its reply first: the
	// deadline's error does not depend on that race.
	return parent.Err()
}

// waitDrained waits until the handlers have returned for every request the
// server sent before the service stopped, or ctx is done. A flush (given
// up when live is done: NATS unreachable) makes sure that all of them were
// read from the connection; then a barrier, queued behind them on every
// asynchronous subscription of the connection, fires once each
// subscription handled what it had.
func (b *Broker) waitDrained(ctx, live context.Context) {
	if b.nc.IsClosed() {
		return
	}
	if live.Err() == nil {
		fctx := live
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			fctx, cancel = context.WithTimeout(live, flushTimeout)
			defer cancel()
		}
		if err := b.nc.FlushWithContext(fctx); err != nil && context.Cause(live) != errNATSUnreachable {
			b.log.Warn("flush while stopping", "err", err)
		}
	}
	drained := make(chan struct{})
	if err := b.nc.Barrier(func() { close(drained) }); err != nil {
		return
	}
	select {
	case <-drained:
	case <-ctx.Done():
	}
}

// handle is the handler of every endpoint: it checks the subject and hands
// the raw request to its stream, where it is parsed and applied. It runs on
// the endpoint subscription's goroutine, one message at a time, which keeps
// arrival order. A get on an open idle stream is answered right here.
func (b *Broker) handle(req micro.Request) {
	reply := req.Reply()
	if b.badReply(req.Subject(), reply) {
		return
	}
	var op, name string
	var err error
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("panic while handling request", "subject", req.Subject(), "panic", r, "stack", string(debug.Stack()))
			b.replyError(op, name, reply, subjects.ErrInternal)
		}
	}()
	op, name, err = b.parseSubject(req.Subject())
	if err != nil {
		b.replyError(op, name, reply, err)
		return
	}
	if h := b.hooks.onRequest; h != nil {
		h(op, name)
	}
	if op == subjects.OpList {
		b.list(reply, name, req.Data())
		return
	}
	if op == subjects.OpLocate {
		b.locate(reply, name)
		return
	}
	hdr := nats.Header(req.Headers())
	r := request{op: op, reply: reply, data: req.Data(), hdr: hdr, size: requestSize(reply, req.Data(), hdr)}
	if op == subjects.OpGet && b.inline(name, &r) {
		return
	}
	// Only a queued request needs memory of its own.
	q := new(request)
	*q = r
	b.enqueue(name, q)
}

// handleNoStream answers a subject with nothing after the operation
// (<prefix>.api.<op>), known operation or not: 400 invalid_stream.
func (b *Broker) handleNoStream(req micro.Request) {
	b.eps[noStream].sawRequest(req)
	if b.badReply(req.Subject(), req.Reply()) {
		return
	}
	desc := "the subject names no stream"
	if op := strings.TrimPrefix(req.Subject(), b.prefix+".api."); !subjects.ValidOp(op) {
		desc = "unknown operation and no stream"
	}
	b.replyError(noStream, "", req.Reply(), subjects.ErrInvalidStream.WithDescription(desc))
}

// badReply reports whether a request names a reply subject under the
// worker's own prefix, and then refuses it unanswered and unapplied: the
// worker's reply would be published there as a request of another stream
// or as an event, with the worker's permissions, so that a client allowed
// only its own streams could write into, or fake events of, any other. A
// NATS user's reply subject is an inbox; the worker counts such requests
// in its stats and logs them at most once per interval.
func (b *Broker) badReply(subject, reply string) bool {
	if len(reply) <= len(b.prefix) || reply[len(b.prefix)] != '.' || reply[:len(b.prefix)] != b.prefix {
		return false
	}
	total := b.stats.badReplies.Add(1)
	if since, ok := b.badReplyLog.due(total); ok {
		b.log.Warn("requests refused: their reply subject is under the worker's prefix",
			"requests", since, "requests_total", total, "subject", subject, "reply", reply)
	}
	return true
}

// requestSize is what a request holds while it waits in a queue, counted
// in the queue's byte bound: its body, its headers and its reply subject
// (the stream name is kept once per entry, not per request).
func requestSize(reply string, data []byte, hdr nats.Header) int {
	n := len(reply) + len(data)
	for k, vs := range hdr {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return n
}

// overloaded is the answer to a request past a queue bound.
func overloaded(desc string) error { return subjects.ErrOverloaded.WithDescription(desc) }

// Answers of requests the worker does not apply.
var (
	errStopping = subjects.ErrUnavailable.WithDescription("the worker is stopping")
	errWaited   = overloaded("the request waited too long in the worker")
)

// enqueue appends r to its stream's queue and puts the stream on the run
// queue when nobody owns it.
func (b *Broker) enqueue(name string, r *request) {
	if b.closed.Load() {
		b.replyError(r.op, name, r.reply, errStopping)
		return
	}
	lim := b.hooks.queues
	now := b.hooks.now()
	if b.queued.Add(1) > int64(lim.all) {
		b.queued.Add(-1)
		b.replyErrorSince(r.op, name, r.reply, overloaded("too many requests waiting in the worker"), now)
		return
	}
	if b.queuedBytes.Add(int64(r.size)) > int64(lim.allBytes) {
		b.queued.Add(-1)
		b.queuedBytes.Add(-int64(r.size))
		b.replyErrorSince(r.op, name, r.reply, overloaded("too many requests waiting in the worker"), now)
		return
	}
	sh := b.reg.shard(name)
	sh.mu.Lock()
	e := sh.streams[name]
	if e == nil {
		e = &entry{name: name, path: b.streamPath(name), sh: sh}
		sh.streams[name] = e
	}
	if len(e.queue) >= lim.perStream {
		sh.mu.Unlock()
		b.queued.Add(-1)
		b.queuedBytes.Add(-int64(r.size))
		b.replyErrorSince(r.op, name, r.reply, overloaded("too many requests waiting for this stream"), now)
		return
	}
	// One clock read: the request's arrival, for its wait (see
	// Options.MaxWait), is also when its stream was last used.
	r.at = now
	e.queue = append(e.queue, r)
	run := b.own(e)
	e.lastUsed = now // idle means no request for a while
	sh.mu.Unlock()
	if run {
		b.runq.push(e)
	}
}

// inline answers a get on the handler's goroutine when its stream is open
// and idle: nothing queued and nobody owning it, so that no request of the
// stream is passed. It takes ownership for the time of the get, so that
// requests arriving meanwhile queue behind it.
func (b *Broker) inline(name string, r *request) bool {
	sh := b.reg.shard(name)
	sh.mu.Lock()
	e := sh.streams[name]
	ok := e != nil && !e.busy && e.state == stateOpen && len(e.queue) == 0 && !b.closed.Load()
	if ok {
		b.own(e)
		e.lastUsed = b.hooks.now()
	}
	sh.mu.Unlock()
	if !ok {
		return false
	}
	if j := b.parse(name, r); j != nil {
		b.applyDone(e, []*job{j})
	}
	b.handBack(e, false)
	return true
}
