package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nats-persist/persist/subjects"
)

// Partitioning configures partitioned serving: the streams of a prefix are
// spread over Count partitions by [subjects.Partition], the NATS servers
// map each request to its partition's subject
// (<prefix>.part.<n>.api.<op>.<stream>, [subjects.PartitionMappings]), and
// each partition is served by one worker at a time. The zero value turns
// it off: the worker serves every stream of the prefix, alone.
type Partitioning struct {
	// Count is the number of partitions; it must be the one of the
	// servers' mappings. 0 is partitioned serving off.
	Count int
	// Static lists the partitions this worker serves, for as long as it
	// runs. Nil: the worker claims partitions through leases in the
	// key/value bucket Bucket, sharing them evenly with the other workers.
	Static []int
	// Bucket is the JetStream key/value bucket of the leases; "" is
	// [DefaultLeaseBucket] of the prefix. A bucket that does not exist is
	// created, with LeaseTTL as its TTL and Replicas replicas.
	Bucket string
	// LeaseTTL is how long a lease lasts unrenewed; 0 is
	// [DefaultLeaseTTL]. An existing bucket keeps its own TTL, which is
	// then the one used.
	LeaseTTL time.Duration
	// Replicas of a bucket created; 0 is 1. A cluster wants 3.
	Replicas int
}

// DefaultLeaseTTL is the lifetime of an unrenewed lease: a worker that
// dies leaves its partitions to the others after at most this, plus one
// renewal interval (a third of it).
const DefaultLeaseTTL = 6 * time.Second

// DefaultLeaseBucket is the lease bucket of a prefix: the prefix with its
// dots, which a bucket name may not hold, as underscores, and "-leases".
func DefaultLeaseBucket(prefix string) string {
	b := []byte(prefix)
	for i := range b {
		if b[i] == '.' {
			b[i] = '_'
		}
	}
	return string(b) + "-leases"
}

// errNotServed answers a request of a partition this worker does not
// serve (now): never applied; the client may retry, the partition's owner
// answers once the request reaches it.
var errNotServed = subjects.ErrUnavailable.WithDescription("the stream's partition is not served here")

// forever is the deadline of a partition served statically.
const forever = math.MaxInt64

// partitions is what a partitioned broker knows of its partitions: which
// it serves until when, and their subscriptions. A partition n is held
// while the time since base is below until[n]; a lease sets that deadline
// short of the lease's expiry, so that a worker that cannot renew stops
// on its own, whatever its goroutines are doing. A partition held is
// served unless it is leaving: given up, its streams being closed before
// its lease is deleted.
//
// A stream of partition n is written to its archive copy (closed with
// Close, which snapshots it) only while n is held and the stream was
// opened in the partition's current generation gen[n], which counts the
// times this worker began to serve n; otherwise it is abandoned
// (store.Stream.Abandon): another worker may own the archive copy by now.
type partitions struct {
	count   int
	static  []int
	base    time.Time // monotonic origin of until
	until   []atomic.Int64
	leaving []atomic.Bool
	gen     []atomic.Uint64
	lease   *leases // nil: static

	refused  atomic.Uint64 // requests refused: partition not served here
	requests atomic.Uint64 // requests received on the partition subscriptions
	wrong    atomic.Uint64 // of refused, on the wrong partition's subject
	wrongLog logEvery

	mu   sync.Mutex
	subs map[int]*nats.Subscription
}

// newPartitions checks p for a broker on prefix; nil when partitioned
// serving is off.
func newPartitions(p Partitioning, prefix string) (*partitions, error) {
	if p.Count == 0 {
		if p.Static != nil {
			return nil, errors.New("broker: partitions given without their count")
		}
		return nil, nil
	}
	if err := subjects.ValidatePartitions(p.Count); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	ps := &partitions{count: p.Count, base: time.Now(), until: make([]atomic.Int64, p.Count),
		leaving: make([]atomic.Bool, p.Count), gen: make([]atomic.Uint64, p.Count), subs: map[int]*nats.Subscription{}}
	if p.Static != nil {
		// Through the parser, so that a set that does not read back the
		// same (out of range, repeated) is refused.
		parsed, err := subjects.ParsePartitions(subjects.FormatPartitions(p.Static), p.Count)
		if err != nil || len(parsed) != len(p.Static) {
			return nil, fmt.Errorf("broker: static partitions %v of %d: invalid", p.Static, p.Count)
		}
		ps.static = parsed
		return ps, nil
	}
	if p.LeaseTTL < 0 || p.Replicas < 0 {
		return nil, errors.New("broker: negative lease option")
	}
	if p.Bucket == "" {
		p.Bucket = DefaultLeaseBucket(prefix)
	}
	if p.LeaseTTL == 0 {
		p.LeaseTTL = DefaultLeaseTTL
	}
	ps.lease = &leases{ps: ps, bucket: p.Bucket, ttl: p.LeaseTTL, replicas: max(p.Replicas, 1)}
	return ps, nil
}

// now is the time since base.
func (p *partitions) now() int64 { return int64(time.Since(p.base)) }

// serves reports whether partition n is served now.
func (p *partitions) serves(n int) bool { return p.holds(n) && !p.leaving[n].Load() }

// holds reports whether partition n's lease (or static set) is this
// worker's now: its streams may still be closed with an archive snapshot.
func (p *partitions) holds(n int) bool { return p.now() < p.until[n].Load() }

// stale reports whether e's stream, open, must not be used any more: its
// partition is not served now, or it was opened before the partition's
// current generation. Its owner closes it (see release). The caller owns
// e.
func (b *Broker) stale(e *entry) bool {
	p := b.parts
	if p == nil {
		return false
	}
	n := subjects.Partition(e.name, p.count)
	return e.gen != p.gen[n].Load() || !p.serves(n)
}

// mayArchive reports whether e's file stream may be closed with its
// archive snapshot: not partitioned, or its partition held and e opened in
// its current generation. The caller owns e.
func (b *Broker) mayArchive(e *entry) bool {
	p := b.parts
	if p == nil {
		return true
	}
	n := subjects.Partition(e.name, p.count)
	return e.gen == p.gen[n].Load() && p.holds(n)
}

// owned returns the partitions served now.
func (p *partitions) owned() []int {
	var parts []int
	for n := range p.until {
		if p.serves(n) {
			parts = append(parts, n)
		}
	}
	return parts
}

// metadata is the micro service's metadata in partitioned mode (nats
// micro info): the number of partitions and the static set, or "leases"
// and the bucket. What a leasing worker serves at the moment is in the
// stats ([Stats].Partitions), of the no_stream endpoint: the only one a
// partitioned worker has.
func (p *partitions) metadata() map[string]string {
	md := map[string]string{"partition_count": strconv.Itoa(p.count), "worker_stats_endpoint": noStream}
	if p.lease == nil {
		md["partitions"] = subjects.FormatPartitions(p.static)
	} else {
		md["partitions"] = "leases"
		md["lease_bucket"] = p.lease.bucket
	}
	return md
}

// workerStatsEndpoint is the endpoint whose stats data is the worker's:
// [WorkerStatsEndpoint], or no_stream in partitioned mode, which has no
// endpoint per operation.
func (b *Broker) workerStatsEndpoint() string {
	if b.parts != nil {
		return noStream
	}
	return WorkerStatsEndpoint
}

// partitionStats adds the partitions served now, the requests received
// and those refused to s.
func (b *Broker) partitionStats(s *Stats) {
	if p := b.parts; p != nil {
		s.Partitions, s.NotServed = subjects.FormatPartitions(p.owned()), p.refused.Load()
		s.PartitionRequests = p.requests.Load()
	}
}

// partitionRequests is the number of requests the partition
// subscriptions received, for the summary line (micro counts only its
// endpoints').
func (b *Broker) partitionRequests() uint64 {
	if b.parts == nil {
		return 0
	}
	return b.parts.requests.Load()
}

// partitionInfo is what [Broker.others] reads of another worker's
// metadata: whether it is partitioned, its count and its static set.
type partitionInfo struct {
	count  int
	leases bool
	static []int
}

// readPartitionInfo reads md (untrusted: from the wire); ok is false when
// it names no partitions (an unpartitioned worker) or does not parse.
func readPartitionInfo(md map[string]string) (pi partitionInfo, ok bool) {
	count, err := strconv.Atoi(md["partition_count"])
	if err != nil || subjects.ValidatePartitions(count) != nil {
		return pi, false
	}
	pi.count = count
	if md["partitions"] == "leases" {
		pi.leases = true
		return pi, true
	}
	if pi.static, err = subjects.ParsePartitions(md["partitions"], count); err != nil {
		return pi, false
	}
	return pi, true
}

// clash says why another worker, with metadata md, cannot serve the
// prefix beside this partitioned one, or "" when it can: the same count,
// and either both lease, or both are static with no partition in common.
func (p *partitions) clash(md map[string]string) string {
	other, ok := readPartitionInfo(md)
	switch {
	case !ok:
		return "it is not partitioned"
	case other.count != p.count:
		return fmt.Sprintf("it has %d partitions, this one %d", other.count, p.count)
	case (p.lease != nil) != other.leases:
		if p.lease == nil {
			return "it claims partitions through leases, this one serves them statically"
		}
		return "it serves partitions " + subjects.FormatPartitions(other.static) + " statically, this one claims them through leases"
	case p.lease != nil:
		return ""
	}
	var both []int
	for _, n := range other.static {
		if slices.Contains(p.static, n) {
			both = append(both, n)
		}
	}
	if len(both) > 0 {
		return "it serves partitions " + subjects.FormatPartitions(both) + " too"
	}
	return ""
}

// startPartitions subscribes the static partitions, or starts the leases.
func (b *Broker) startPartitions() error {
	p := b.parts
	if p.lease == nil {
		for _, n := range p.static {
			p.until[n].Store(forever)
			if err := b.subscribePartition(n); err != nil {
				return err
			}
		}
		b.log.Info("serving partitions", "partitions", subjects.FormatPartitions(p.static), "of", p.count)
		return nil
	}
	if b.opts.ArchiveDir == "" && !b.opts.SharedDataDir {
		b.log.Warn("partitions claimed through leases without an archive or a shared data directory: " +
			"streams do not move with their partitions (a partition's new owner starts them empty); " +
			"give every worker the same --archive, or --shared-data-dir")
	}
	return p.lease.start(b)
}

// subscribePartition subscribes partition n's requests,
// <prefix>.part.<n>.api.>, on a plain subscription: the one worker that
// serves n receives them, none other.
func (b *Broker) subscribePartition(n int) error {
	p := b.parts
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.subs[n] != nil {
		return nil
	}
	sub, err := b.nc.Subscribe(subjects.PartitionSubject(b.prefix, n)+".api.>", func(m *nats.Msg) {
		p.requests.Add(1)
		b.handle(msgRequest{m})
	})
	if err != nil {
		return fmt.Errorf("broker: subscribe partition %d: %w", n, err)
	}
	// As the endpoints' (see New): the queues refuse a flood before the
	// subscription drops requests unanswered.
	_ = sub.SetPendingLimits(max(b.hooks.queues.all, nats.DefaultSubPendingMsgsLimit),
		max(b.hooks.queues.allBytes, nats.DefaultSubPendingBytesLimit))
	p.subs[n] = sub
	return nil
}

// unsubscribePartition ends partition n's subscription. Drained: the
// requests already received are still handled (and refused if n is no
// longer served).
func (b *Broker) unsubscribePartition(n int) {
	p := b.parts
	p.mu.Lock()
	sub := p.subs[n]
	delete(p.subs, n)
	p.mu.Unlock()
	if sub != nil {
		if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			b.log.Warn("unsubscribe partition", "partition", n, "err", err)
		}
	}
}

// stopPartitionSubs drains every partition subscription, for Shutdown
// and for a worker that found another it cannot share the prefix with
// (yield): the partitions are still served (leases renewed) until their
// requests were answered and their streams closed.
func (b *Broker) stopPartitionSubs() {
	if b.parts == nil {
		return
	}
	if l := b.parts.lease; l != nil {
		l.drain()
	}
	for n := range b.parts.count {
		b.unsubscribePartition(n)
	}
}

// releasePartitions gives up the leases, once Shutdown closed the streams
// (and so wrote their archive copies): the next owner restores from there.
func (b *Broker) releasePartitions() {
	if b.parts != nil && b.parts.lease != nil {
		b.parts.lease.stop(b)
	}
}

// parseSubject reads a request subject: <prefix>.api.<op>.<stream>, or in
// partitioned mode <prefix>.part.<n>.api.<op>.<stream>. An error is the
// answer: 400 invalid_stream for a subject that does not parse, and in
// partitioned mode 503 unavailable for a stream that is not in partition
// n (published there past the mapping, or a server with another count) or
// a partition not served here now.
func (b *Broker) parseSubject(subject string) (op, stream string, err error) {
	p := b.parts
	if p == nil {
		op, stream, err = subjects.ParseAPI(b.prefix, subject)
		if err != nil {
			return op, "", subjects.ErrInvalidStream.WithDescription(err.Error())
		}
		return op, stream, nil
	}
	n, op, stream, err := subjects.ParsePartitionAPI(b.prefix, subject, p.count)
	switch {
	case errors.Is(err, subjects.ErrWrongPartition):
		p.refused.Add(1)
		if since, ok := p.wrongLog.due(p.wrong.Add(1)); ok {
			b.log.Warn("requests on the wrong partition: published past the mapping, or the servers map to another number of partitions than --partition-count",
				"requests", since, "subject", subject, "partition_count", p.count, "err", err)
		}
		return op, stream, subjects.ErrUnavailable.WithDescription(err.Error())
	case err != nil:
		return op, "", subjects.ErrInvalidStream.WithDescription(err.Error())
	case !p.serves(n):
		p.refused.Add(1)
		return op, stream, errNotServed
	}
	return op, stream, nil
}

// mayApply is asked before a batch of stream's requests is applied (and
// so before its stream is opened): in partitioned mode, its partition
// must be served now. A lease may have run out while the request waited.
func (b *Broker) mayApply(stream string) error {
	if p := b.parts; p != nil && !p.serves(subjects.Partition(stream, p.count)) {
		p.refused.Add(1)
		return errNotServed
	}
	return nil
}

// closePartition closes the open streams of partition n that nobody
// uses, and with wait waits for that: a partition that leaves must not
// keep a copy open that would be served stale if it came back. A file
// stream is closed with its archive snapshot while the partition is
// still held (a partition given up), abandoned otherwise (its lease ran
// out or was taken); a memory stream is destroyed, with its destroy
// event: memory streams do not move. A stream in use is closed by its
// owner when it lets it go (release: it is stale now). It returns the
// number of those.
func (b *Broker) closePartition(n int, wait bool) (busy int) {
	var wg sync.WaitGroup
	for i := range b.reg.shards {
		sh := &b.reg.shards[i]
		var idle, mem []*entry
		sh.mu.Lock()
		for name, e := range sh.streams {
			if e.state != stateOpen || subjects.Partition(name, b.parts.count) != n {
				continue
			}
			switch {
			case e.busy:
				busy++
			case e.memory:
				// Not on an idle list: taken here, as closeIdle does.
				e.busy, e.state = true, stateClosing
				b.held.Add(1)
				mem = append(mem, e)
			default:
				idle = append(idle, e)
			}
		}
		sh.mu.Unlock()
		for _, e := range mem {
			wg.Add(1)
			b.closeq.push(closeTask{e: e, done: &wg})
		}
		for _, e := range idle {
			t := b.takeIdle(func() *entry {
				if e.list != nil {
					return e
				}
				return nil
			}, stateClosing)
			if t == nil {
				busy++ // taken by someone else meanwhile
				continue
			}
			wg.Add(1)
			b.closing.Add(1)
			b.closeq.push(closeTask{e: t, frees: true, done: &wg})
		}
	}
	if wait {
		wg.Wait()
	}
	return busy
}

// openIn counts partition n's streams that are open or being closed.
func (b *Broker) openIn(n int) int {
	count := 0
	for i := range b.reg.shards {
		sh := &b.reg.shards[i]
		sh.mu.Lock()
		for name, e := range sh.streams {
			if e.state != stateClosed && subjects.Partition(name, b.parts.count) == n {
				count++
			}
		}
		sh.mu.Unlock()
	}
	return count
}

// msgRequest is a message of a partition subscription as the micro
// request the handler takes. Replies go out through the broker, never
// through these methods but Reply.
type msgRequest struct{ m *nats.Msg }

func (r msgRequest) Respond(data []byte, _ ...micro.RespondOpt) error {
	return r.m.Respond(data)
}

func (r msgRequest) RespondJSON(v any, _ ...micro.RespondOpt) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return r.m.Respond(data)
}

func (r msgRequest) Error(code, description string, data []byte, _ ...micro.RespondOpt) error {
	m := nats.NewMsg(r.m.Reply)
	m.Header.Set(micro.ErrorHeader, description)
	m.Header.Set(micro.ErrorCodeHeader, code)
	m.Data = data
	return r.m.RespondMsg(m)
}

func (r msgRequest) Data() []byte           { return r.m.Data }
func (r msgRequest) Headers() micro.Headers { return micro.Headers(r.m.Header) }
func (r msgRequest) Subject() string        { return r.m.Subject }
func (r msgRequest) Reply() string          { return r.m.Reply }
