package broker

import (
	"context"
	"errors"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Keys of the lease bucket: "p.<n>" is the lease of partition n, its
// value the id (micro service id) of the worker holding it; "w.<id>" says
// that worker id is alive. Both expire with the bucket's TTL unless
// rewritten.
const (
	leaseKeyPrefix  = "p."
	memberKeyPrefix = "w."
)

// leases claims, renews and gives up partitions through revision-checked
// writes to a JetStream key/value bucket (replicated by JetStream's own
// Raft). Every round (a third of the TTL) the worker renews what it holds,
// reads the bucket's latest values (never relying on having seen every
// change: a watch may skip revisions) and moves towards an even spread,
// partitions / live workers or one more each ([fairShare]): it gives up
// partitions beyond its share and creates the leases of free ones below
// it.
//
// Fencing: a renewal or a claim sent at time t makes the partition served
// until t + TTL - TTL/4 (partitions.until). The server stamps the write no
// earlier than t and keeps it for TTL, so the lease cannot expire, nor be
// claimed elsewhere, before this worker stopped serving: a worker that
// cannot renew (cut off from the bucket) stops by itself, and a renewal
// refused for its revision (someone else holds it) stops it at once.
type leases struct {
	ps       *partitions
	bucket   string
	ttl      time.Duration // the bucket's, once bound
	replicas int

	id string // this worker's micro id
	kv jetstream.KeyValue

	mu       sync.Mutex     // held for a round: draining and held
	draining bool           // Shutdown: renew only, claim and give up nothing
	held     map[int]uint64 // partition -> revision of its lease
	member   uint64         // revision of w.<id>; 0: not written
	renewed  int64          // when the last renewal began (partitions.now)

	quit     chan struct{}
	stopOnce sync.Once
	done     sync.WaitGroup
}

// margin is how long before a lease's expiry the worker stops serving it.
func (l *leases) margin() time.Duration { return l.ttl / 4 }

// interval is the time between rounds.
func (l *leases) interval() time.Duration { return l.ttl / 3 }

// start begins the rounds. The bucket is opened (or created) in them, so
// that a worker starting before JetStream is ready (a cluster electing
// its leaders) keeps trying instead of failing.
func (l *leases) start(b *Broker) error {
	l.id = b.svc.Info().ID
	l.held = map[int]uint64{}
	l.quit = make(chan struct{})
	b.log.Info("claiming partitions through leases", "bucket", l.bucket, "partition_count", l.ps.count, "lease_ttl", l.ttl)
	l.done.Go(func() {
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-l.quit:
				return
			case <-t.C:
			}
			l.round(b)
			t.Reset(l.nextRound())
		}
	})
	return nil
}

// opCtx bounds one key/value operation: a round must end well within the
// time its renewals buy.
func (l *leases) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), max(l.interval()/2, 100*time.Millisecond))
}

// open binds to the bucket, creating it when missing, and takes its TTL.
func (l *leases) open(b *Broker) error {
	js, err := jetstream.New(b.nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: l.bucket, TTL: l.ttl, History: 1, Replicas: l.replicas})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, l.bucket)
	}
	if err != nil {
		return err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return err
	}
	if st.TTL() <= 0 {
		return errors.New("lease bucket " + l.bucket + " has no TTL: leases would never expire")
	}
	if st.TTL() != l.ttl {
		b.log.Warn("the lease bucket has its own TTL; using it", "bucket", l.bucket, "ttl", st.TTL(), "wanted", l.ttl)
		l.ttl = st.TTL()
	}
	l.kv = kv
	return nil
}

// round renews, then (unless draining) balances.
func (l *leases) round(b *Broker) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kv == nil {
		if err := l.open(b); err != nil {
			b.log.Warn("open the lease bucket", "bucket", l.bucket, "err", err)
			return
		}
	}
	l.expire(b)
	l.renew(b)
	if l.draining {
		return
	}
	l.balance(b)
}

// nextRound is the time until the next round: an interval after the last
// renewal began (a round that waited for a partition given up took some
// of it), or sooner when a deadline comes first, so that a partition
// whose lease could not be renewed is given up (its streams abandoned) as
// soon as it is no longer held.
func (l *leases) nextRound() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.ps.now()
	wait := max(time.Duration(l.renewed+int64(l.interval())-now), 0)
	if l.renewed == 0 {
		wait = l.interval()
	}
	for n := range l.held {
		if u := l.ps.until[n].Load(); u > 0 {
			wait = min(wait, max(time.Duration(u-now), 0))
		}
	}
	return wait
}

// expire gives up the partitions whose deadline passed: their leases
// could not be renewed in time.
func (l *leases) expire(b *Broker) {
	for n := range l.held {
		if l.ps.until[n].Load() > 0 && !l.ps.holds(n) {
			b.log.Error("lease not renewed in time: stopped serving it", "partition", n)
			l.lose(b, n)
		}
	}
}

// served marks partition n served until sent + TTL - margin.
func (l *leases) served(n int, sent int64) {
	l.ps.until[n].Store(sent + int64(l.ttl-l.margin()))
}

// renew rewrites this worker's member key and each lease it holds at the
// revision it last wrote. A lease refused for its revision is lost; one
// that could not be written (a timeout) is kept until its deadline runs
// out, and lost then.
func (l *leases) renew(b *Broker) {
	l.renewed = l.ps.now()
	ctx, cancel := l.opCtx()
	defer cancel()
	if rev, err := l.kv.Put(ctx, memberKeyPrefix+l.id, []byte(l.id)); err == nil {
		l.member = rev
	} else {
		b.log.Warn("renew worker key", "err", err)
	}
	for _, n := range slices.Sorted(maps.Keys(l.held)) {
		sent := l.ps.now()
		rev, err := l.kv.Update(ctx, leaseKey(n), []byte(l.id), l.held[n])
		switch {
		case err == nil:
			l.held[n] = rev
			l.serve(b, n, sent)
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound):
			b.log.Error("lease lost: another worker holds it", "partition", n, "err", err)
			l.lose(b, n)
		case !l.ps.holds(n):
			b.log.Error("lease not renewed in time: stopped serving it", "partition", n, "err", err)
			l.lose(b, n)
		default:
			// The write may have been applied all the same: then the
			// key holds this worker's id at a revision it must renew
			// at. Served only until the deadline of the last write
			// known in time.
			b.log.Warn("renew lease", "partition", n, "err", err)
			if e, err := l.kv.Get(ctx, leaseKey(n)); err == nil && string(e.Value()) == l.id {
				l.held[n] = e.Revision()
			}
		}
	}
}

// lose stops serving n, whose lease ran out or was taken: refused from
// now on, unsubscribed, its idle streams abandoned at once and the busy
// ones when their owners let them go (closeStream: n is not held).
func (l *leases) lose(b *Broker, n int) {
	l.ps.until[n].Store(0)
	l.ps.leaving[n].Store(false)
	delete(l.held, n)
	b.unsubscribePartition(n)
	if !l.draining { // Shutdown closes every stream itself
		b.closePartition(n, true)
	}
}

// balance reads the bucket and moves towards this worker's share.
func (l *leases) balance(b *Broker) {
	holders, members, err := l.snapshot()
	if err != nil {
		b.log.Warn("read the lease bucket", "err", err)
		return
	}
	members[l.id] = true
	// A claim whose answer was lost (a timeout) may have been applied:
	// the lease is this worker's, renewed (and so served) from the next
	// round on.
	for n, e := range holders {
		if _, ok := l.held[n]; !ok && string(e.Value()) == l.id {
			l.held[n] = e.Revision()
		}
	}
	counts := map[string]int{}
	for id := range members {
		counts[id] = 0
	}
	for _, e := range holders {
		if id := string(e.Value()); id != l.id && members[id] {
			counts[id]++
		}
	}
	counts[l.id] = len(l.held)
	taken := len(l.held)
	for n := range holders {
		if _, ok := l.held[n]; !ok {
			taken++
		}
	}
	keep, upTo := fairShare(l.ps.count, l.ps.count-taken, l.id, counts)
	if len(l.held) > keep {
		// Give up the highest: the others claim them in their next round.
		mine := slices.Sorted(maps.Keys(l.held))
		l.giveUp(b, mine[keep:], keep, len(members))
		return
	}
	// Start at a point of this worker's own, so that workers claiming at
	// once try different partitions first.
	h := fnv.New32a()
	h.Write([]byte(l.id))
	first := int(h.Sum32() % uint32(l.ps.count))
	for i := 0; i < l.ps.count && len(l.held) < upTo; i++ {
		n := (first + i) % l.ps.count
		if _, taken := holders[n]; taken {
			continue
		}
		l.claim(b, n)
	}
}

// fairShare says how many of count partitions the worker self should
// keep and how many it may hold by claiming free ones, given counts, the
// number of leases each live worker holds (self's included), and free,
// the partitions nobody holds. The partitions spread evenly: every worker
// ends with count/N or one more (N live workers). A worker above one more
// gives up the rest at once. Workers short of count/N take the free
// partitions first; for what these do not cover, the others give one
// each, those with the most first (ties: the lower id). While one is
// short the others claim only up to count/N, so that the partitions freed
// go to it and only those move.
func fairShare(count, free int, self string, counts map[string]int) (keep, upTo int) {
	n := max(len(counts), 1)
	lo, hi := count/n, (count+n-1)/n
	mine := counts[self]
	if mine > hi {
		return hi, hi
	}
	short, ahead := 0, 0
	for id, c := range counts {
		if id == self {
			continue
		}
		short += max(lo-c, 0)
		if c > counts[self] || c == mine && id < self {
			ahead++ // ranked before self among the givers
		}
	}
	switch {
	case short == 0:
		return mine, hi
	case mine > lo && ahead < short-free:
		return mine - 1, mine - 1
	default:
		return mine, max(lo, mine)
	}
}

// giveUp gives up the partitions parts, held: nothing new is served on
// them, their streams are closed with their archive snapshots (the leases
// are still this worker's), and then their leases are deleted, so that
// the next owner restores what was written here, all of it. The closes,
// and the streams busy at the time, are waited for, a quarter of the TTL
// at most from the renewal that began this round (the leases still have
// half the TTL then, and the others are renewed in time: see nextRound);
// a partition whose streams are not all closed by then is dropped
// instead, its remaining streams abandoned, and its lease left to
// expire.
func (l *leases) giveUp(b *Broker, parts []int, share, workers int) {
	for _, n := range parts {
		l.ps.leaving[n].Store(true)
		b.unsubscribePartition(n)
	}
	// The closes (snapshots) run in the closer pool, all partitions at
	// once, within the same bound as the busy streams.
	for _, n := range parts {
		b.closePartition(n, false)
	}
	bound := l.renewed + int64(l.ttl/4)
	for _, n := range parts {
		for b.openIn(n) > 0 && l.ps.now() < bound && l.ps.holds(n) {
			time.Sleep(5 * time.Millisecond)
		}
		rev := l.held[n]
		done := b.openIn(n) == 0 && l.ps.holds(n)
		l.ps.until[n].Store(0)
		l.ps.leaving[n].Store(false)
		delete(l.held, n)
		if !done {
			b.log.Warn("gave up partition with streams still busy: they are abandoned and the lease left to expire",
				"partition", n, "share", share, "workers", workers)
			continue
		}
		ctx, cancel := l.opCtx()
		err := l.kv.Delete(ctx, leaseKey(n), jetstream.LastRevision(rev))
		cancel()
		if err != nil {
			b.log.Warn("give up lease", "partition", n, "err", err)
		} else {
			b.log.Info("gave up partition", "partition", n, "share", share, "workers", workers)
		}
	}
}

// claim creates partition n's lease and, once held, serves it.
func (l *leases) claim(b *Broker, n int) {
	ctx, cancel := l.opCtx()
	defer cancel()
	sent := l.ps.now()
	rev, err := l.kv.Create(ctx, leaseKey(n), []byte(l.id))
	if err != nil {
		if !taken(err) {
			b.log.Warn("claim lease", "partition", n, "err", err)
		}
		return
	}
	l.held[n] = rev
	if h := b.hooks.claimed; h != nil {
		h(n)
	}
	l.serve(b, n, sent)
	b.log.Info("claimed partition", "partition", n)
}

// serve extends n's deadline after a write of its lease sent at sent. A
// partition not served until now has its idle streams closed first, so
// that each is opened afresh (restored from the archive when the archive
// copy is newer), has the stream counts of its namespaces forgotten,
// begins a new generation, so that a stream still open from an earlier
// one is never used again (stale), and is subscribed. While draining,
// only the deadline moves.
func (l *leases) serve(b *Broker, n int, sent int64) {
	if l.draining {
		l.served(n, sent)
		return
	}
	if !l.ps.serves(n) {
		b.closePartition(n, true)
		b.forgetCounts(n)
		l.ps.gen[n].Add(1)
	}
	l.served(n, sent)
	if err := b.subscribePartition(n); err != nil {
		b.log.Error("serve partition", "partition", n, "err", err)
		l.ps.until[n].Store(0)
	}
}

// snapshot reads the latest value of every key: the holder of each
// partition's lease and the live workers.
func (l *leases) snapshot() (holders map[int]jetstream.KeyValueEntry, members map[string]bool, err error) {
	ctx, cancel := l.opCtx()
	defer cancel()
	w, err := l.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, nil, err
	}
	defer w.Stop()
	holders, members = map[int]jetstream.KeyValueEntry{}, map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, nil, errors.New("lease bucket watch ended")
			}
			if e == nil { // the latest values are all in
				return holders, members, nil
			}
			key := e.Key()
			if id, ok := strings.CutPrefix(key, memberKeyPrefix); ok {
				members[id] = true
			} else if s, ok := strings.CutPrefix(key, leaseKeyPrefix); ok {
				if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < l.ps.count {
					holders[n] = e
				}
			}
		}
	}
}

// drain ends claiming and giving up (Shutdown); renewals go on.
func (l *leases) drain() {
	l.mu.Lock()
	l.draining = true
	l.mu.Unlock()
}

// stop ends the rounds and gives up every lease held and the member key,
// each at its revision, so that the others claim them at once instead of
// after the TTL.
func (l *leases) stop(b *Broker) {
	if l.quit == nil {
		return // never started
	}
	l.stopOnce.Do(func() { close(l.quit) })
	l.done.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	for n := range l.ps.count {
		l.ps.until[n].Store(0)
	}
	if l.kv == nil || !b.nc.IsConnected() {
		return
	}
	for n, rev := range l.held {
		ctx, cancel := l.opCtx()
		if err := l.kv.Delete(ctx, leaseKey(n), jetstream.LastRevision(rev)); err != nil {
			b.log.Warn("give up lease", "partition", n, "err", err)
		}
		cancel()
	}
	clear(l.held)
	if l.member != 0 {
		ctx, cancel := l.opCtx()
		_ = l.kv.Delete(ctx, memberKeyPrefix+l.id, jetstream.LastRevision(l.member))
		cancel()
	}
}

// taken reports whether a claim failed because another worker created
// the lease first. Create reports it as ErrKeyExists, but for a key
// deleted before (a lease given up) it retries at the delete's revision,
// and a replicated bucket answers that retry's conflict with a bare
// "wrong last sequence" (JetStream error 10164).
func taken(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// leaseKey is partition n's key.
func leaseKey(n int) string { return leaseKeyPrefix + strconv.Itoa(n) }
