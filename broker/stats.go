package broker

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"math/bits"
	"reflect"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nats-persist/persist/subjects"
)

// counters are the broker's own statistics, served with micro's stats.
type counters struct {
	cacheHits, cacheMisses          atomic.Uint64
	trims, earlyTrims, evictions    atomic.Uint64
	eventsPublished, eventErrors    atomic.Uint64
	commits, commitItems, commitReq atomic.Uint64
	maxBatch                        atomic.Uint64
	overloaded, shed                atomic.Uint64
	slowConsumers                   atomic.Uint64
	badReplies                      atomic.Uint64
	wait                            waitHistogram
}

// WorkerStatsEndpoint is the endpoint whose micro stats data is the
// worker-wide [Stats] (with that endpoint's own error replies); every
// other endpoint's data is its own [EndpointStats] only, so that nats
// micro info shows the worker's figures once. The service's info metadata
// names it under the key "worker_stats_endpoint".
const WorkerStatsEndpoint = subjects.OpSet

// statsData is the micro StatsHandler: the worker's figures for
// WorkerStatsEndpoint, the endpoint's own for the others.
func (b *Broker) statsData(ep *micro.Endpoint) any {
	var own EndpointStats
	if e := b.eps[ep.Name]; e != nil {
		own.Errors = e.errors.Load()
	}
	if ep.Name != b.workerStatsEndpoint() {
		return own
	}
	s := b.workerStats()
	s.Errors = own.Errors
	b.partitionStats(&s)
	return s
}

// workerStats collects the worker-wide figures of [Stats].
func (b *Broker) workerStats() Stats {
	p50, p99, maxWait := b.stats.wait.summary()
	return Stats{
		OpenStreams:       int(b.openStreams.Load()),
		OpenFiles:         len(b.slots),
		MaxOpen:           b.budget.MaxOpen,
		IdleStreams:       b.reg.idleCount(),
		MemoryBytes:       b.quota.Used(),
		CacheHits:         b.stats.cacheHits.Load(),
		CacheMisses:       b.stats.cacheMisses.Load(),
		Trims:             b.stats.trims.Load(),
		EarlyTrims:        b.stats.earlyTrims.Load(),
		Evictions:         b.stats.evictions.Load(),
		EventsPublished:   b.stats.eventsPublished.Load(),
		EventErrors:       b.stats.eventErrors.Load(),
		Commits:           b.stats.commits.Load(),
		CommittedItems:    b.stats.commitItems.Load(),
		CommittedRequests: b.stats.commitReq.Load(),
		MaxBatchItems:     b.stats.maxBatch.Load(),
		Overloaded:        b.stats.overloaded.Load(),
		Shed:              b.stats.shed.Load(),
		SlowConsumers:     b.stats.slowConsumers.Load(),
		BadReplies:        b.stats.badReplies.Load(),
		WaitP50:           millis(p50),
		WaitP99:           millis(p99),
		WaitMax:           millis(maxWait),
		Goroutines:        runtime.NumGoroutine(),
	}
}

// serviceMetadata is the micro service's info metadata: what does not
// change while the worker runs, with extra (Options.Metadata) added.
func (b *Broker) serviceMetadata(extra map[string]string) map[string]string {
	md := map[string]string{
		"prefix":                b.prefix,
		"max_open":              strconv.Itoa(b.budget.MaxOpen),
		"max_open_bound_by":     b.budget.BoundBy,
		"worker_stats_endpoint": WorkerStatsEndpoint,
	}
	for k, v := range extra {
		if _, ok := md[k]; !ok {
			md[k] = v
		}
	}
	return md
}

// summaryCounts is what one summary line compares with the last.
type summaryCounts struct {
	at               time.Time
	requests, errors uint64
	overloaded, shed uint64
	open             int64
}

// summaries logs the summary line until Shutdown; see
// Options.SummaryInterval.
func (b *Broker) summaries() {
	defer close(b.summaryDone)
	tick := b.hooks.summaryTick
	if tick == nil {
		t := time.NewTicker(b.opts.SummaryInterval)
		defer t.Stop()
		tick = t.C
	}
	last := b.summaryCounts()
	for {
		select {
		case <-b.janitorStop:
			return
		case <-tick:
			last = b.logSummary(last)
		}
	}
}

// summaryCounts reads the counters the summary line is made of. The
// requests are micro's, counted as the endpoints receive them: the
// broker counts none of its own on the way of a request.
func (b *Broker) summaryCounts() summaryCounts {
	c := summaryCounts{
		at:         b.hooks.now(),
		overloaded: b.stats.overloaded.Load(),
		shed:       b.stats.shed.Load(),
		open:       b.openStreams.Load(),
	}
	if b.svc != nil {
		for _, ep := range b.svc.Stats().Endpoints {
			c.requests += uint64(ep.NumRequests)
		}
	}
	c.requests += b.partitionRequests()
	for _, ep := range b.eps {
		c.errors += ep.errors.Load()
	}
	return c
}

// logSummary logs the summary line of what happened since last, unless
// nothing did (no request arrived, no stream opened or closed), and
// returns the counts of now.
func (b *Broker) logSummary(last summaryCounts) summaryCounts {
	now := b.summaryCounts()
	if now.requests == last.requests && now.open == last.open {
		return now
	}
	elapsed := now.at.Sub(last.at)
	n := now.requests - last.requests
	rate := 0.0
	if elapsed > 0 {
		rate = math.Round(float64(n)/elapsed.Seconds()*10) / 10
	}
	b.log.LogAttrs(context.Background(), slog.LevelInfo, "summary",
		slog.Int64("open_streams", now.open),
		slog.Uint64("requests", n),
		slog.Float64("requests_per_sec", rate),
		slog.Uint64("errors", now.errors-last.errors),
		slog.Uint64("overloaded", now.overloaded-last.overloaded),
		slog.Uint64("shed", now.shed-last.shed),
		slog.Duration("interval", elapsed.Round(time.Millisecond)))
	return now
}

// millis is d in milliseconds, to the microsecond.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// EndpointStats is the custom data of an endpoint in the micro service's
// stats ($SRV.STATS, nats micro info): its own figures.
type EndpointStats struct {
	Errors uint64 `json:"errors"` // error replies of this endpoint
}

// Stats is the custom data of [WorkerStatsEndpoint] in the micro service's
// stats ($SRV.STATS, nats micro info): the worker's stream cache, events
// and group commits, its back-pressure, and the endpoint's own error
// replies.
type Stats struct {
	OpenStreams       int     `json:"open_streams"`
	OpenFiles         int     `json:"open_files"`
	MaxOpen           int     `json:"max_open"`     // the open-file budget
	IdleStreams       int     `json:"idle_streams"` // open files nobody uses now
	MemoryBytes       int64   `json:"memory_bytes"`
	CacheHits         uint64  `json:"cache_hits"`
	CacheMisses       uint64  `json:"cache_misses"`
	Trims             uint64  `json:"trims"`       // idle streams trimmed
	EarlyTrims        uint64  `json:"early_trims"` // of them, trimmed before the trim delay to keep the memory budget
	Evictions         uint64  `json:"evictions"`   // idle streams closed to free a slot
	EventsPublished   uint64  `json:"events_published"`
	EventErrors       uint64  `json:"event_errors"`
	Commits           uint64  `json:"commits"`            // group commits
	CommittedItems    uint64  `json:"committed_items"`    // writes in them
	CommittedRequests uint64  `json:"committed_requests"` // set and setmany requests in them
	MaxBatchItems     uint64  `json:"max_batch_items"`
	Overloaded        uint64  `json:"overloaded"`     // requests answered 429 overloaded, all endpoints
	Shed              uint64  `json:"shed"`           // of them, refused for waiting longer than Options.MaxWait
	SlowConsumers     uint64  `json:"slow_consumers"` // times a subscription of the connection dropped messages
	BadReplies        uint64  `json:"bad_replies"`    // requests refused for a reply subject under the prefix
	WaitP50           float64 `json:"wait_p50_ms"`    // time requests waited in the worker before being applied, since start
	WaitP99           float64 `json:"wait_p99_ms"`
	WaitMax           float64 `json:"wait_max_ms"`
	Goroutines        int     `json:"goroutines"` // of the whole process
	Errors            uint64  `json:"errors"`     // error replies of this endpoint

	// Partitioned mode only (see Options.Partitioning): the partitions
	// served now ("0-3,7"), the requests refused for a partition not
	// served here, and the requests the partitions' subscriptions
	// received (micro counts only its endpoints').
	Partitions        string `json:"partitions,omitempty"`
	NotServed         uint64 `json:"not_served,omitempty"`
	PartitionRequests uint64 `json:"partition_requests,omitempty"`
}

// noStream is the endpoint of subjects that name an operation but no
// stream (<prefix>.api.<op>): a name no operation has.
const noStream = "no_stream"

// endpoint is what the broker keeps of one micro endpoint: its error
// replies, and its subscription, so that error replies sent after the
// handler returned still count in micro's own stats (the Errors column of
// nats micro stats).
type endpoint struct {
	errors atomic.Uint64
	sub    atomic.Pointer[nats.Subscription]
}

// sawRequest remembers the subscription req came on, once.
func (ep *endpoint) sawRequest(req micro.Request) {
	if ep.sub.Load() == nil {
		ep.sub.Store(requestSub(req))
	}
}

var msgType = reflect.TypeFor[*nats.Msg]()

// requestSub returns the subscription req came on, nil if it cannot be
// found. micro keeps it in its request's unexported *nats.Msg and counts a
// request's error only when the handler itself answered it; the
// broker answers most requests later, from a worker, and reports each
// error reply to micro as an asynchronous error of the endpoint's
// subscription instead (see countError), which micro counts the same way.
func requestSub(req micro.Request) *nats.Subscription {
	v := reflect.ValueOf(req)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	s := v.Elem()
	for i := range s.NumField() {
		if f := s.Field(i); f.Type() == msgType && !f.IsNil() {
			return (*nats.Msg)(f.UnsafePointer()).Sub
		}
	}
	return nil
}

// countError counts an error reply of the endpoint key (an op, or
// noStream) in the broker's stats and in micro's.
func (b *Broker) countError(key string, we *subjects.Error) {
	ep := b.eps[key]
	if ep == nil {
		return
	}
	ep.errors.Add(1)
	if we.Reason == subjects.ErrOverloaded.Reason {
		b.stats.overloaded.Add(1)
	}
	sub := ep.sub.Load()
	if sub == nil {
		return
	}
	// micro's error handler counts it in the endpoint's NumErrors and
	// LastError, then calls the broker's (asyncError), which ignores it.
	if h := b.nc.ErrorHandler(); h != nil {
		h(b.nc, sub, we)
	}
}

// slowLogInterval is the least time between two log lines about slow
// consumers.
const slowLogInterval = 10 * time.Second

// AsyncError is the broker's part of the connection's asynchronous error
// handler. [New] installs it, chained before the handler the connection
// had, so a caller need not call it; it is exported for a caller that
// replaces the connection's error handler later. It counts slow-consumer
// events (a subscription's pending limit was hit and messages were
// dropped) and logs them at most once per 10 s, with the count since the
// last line. It reports whether err was handled: a slow consumer, or an
// error reply the broker reported to micro's stats itself; other errors
// are for the caller to log.
func (b *Broker) AsyncError(sub *nats.Subscription, err error) bool {
	if _, ok := err.(*subjects.Error); ok {
		return true
	}
	if !errors.Is(err, nats.ErrSlowConsumer) {
		return false
	}
	total := b.stats.slowConsumers.Add(1)
	since, ok := b.slowLog.due(total)
	if !ok {
		return true
	}
	subject, dropped := "", 0
	if sub != nil {
		subject = sub.Subject
		dropped, _ = sub.Dropped()
	}
	b.log.Warn("slow consumer: NATS dropped messages the worker could not take in time",
		"events", since, "events_total", total, "subject", subject, "dropped", dropped)
	return true
}

// logEvery lets a line about frequent events be logged at most once per
// slowLogInterval, with the number of events since the last line.
type logEvery struct {
	last  atomic.Int64  // when the line was last logged, Unix ns
	since atomic.Uint64 // events counted up to that line
}

// due reports whether a line about total events so far is due, and how
// many events happened since the last one.
func (l *logEvery) due(total uint64) (uint64, bool) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(slowLogInterval) || !l.last.CompareAndSwap(last, now) {
		return 0, false
	}
	return total - l.since.Swap(total), true
}

// waitBuckets is the number of buckets of a waitHistogram: 4 per power
// of two of microseconds, up to about 2^40 µs.
const waitBuckets = 4 * 40

// waitHistogram counts the time requests waited in the worker, in buckets
// of about 25 % width, without allocating.
type waitHistogram struct {
	n   [waitBuckets]atomic.Uint64
	max atomic.Int64
}

// bucket is the index of the bucket of d.
func waitBucket(d time.Duration) int {
	us := uint64(max(d.Microseconds(), 0))
	if us < 4 {
		return int(us)
	}
	msb := bits.Len64(us) - 1 // >= 2
	i := (msb-1)*4 + int(us>>(msb-2)&3)
	return min(i, waitBuckets-1)
}

// waitBucketLimit is the upper end of bucket i.
func waitBucketLimit(i int) time.Duration {
	if i < 4 {
		return time.Duration(i+1) * time.Microsecond
	}
	msb, sub := i/4+1, i%4
	return time.Duration((4+uint64(sub)+1)<<(msb-2)) * time.Microsecond
}

func (h *waitHistogram) add(d time.Duration) {
	h.n[waitBucket(d)].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// summary returns the median, the 99th percentile (each the upper end of
// its bucket, at most the maximum) and the maximum.
func (h *waitHistogram) summary() (p50, p99, maxWait time.Duration) {
	var counts [waitBuckets]uint64
	total := uint64(0)
	for i := range counts {
		counts[i] = h.n[i].Load()
		total += counts[i]
	}
	maxWait = time.Duration(h.max.Load())
	if total == 0 {
		return 0, 0, maxWait
	}
	at := func(q float64) time.Duration {
		rank := uint64(q*float64(total-1)) + 1
		seen := uint64(0)
		for i, c := range counts {
			if seen += c; seen >= rank {
				return min(waitBucketLimit(i), maxWait)
			}
		}
		return maxWait
	}
	return at(0.50), at(0.99), maxWait
}
