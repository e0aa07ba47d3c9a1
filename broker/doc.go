// Package broker is the persist worker's NATS service: it answers the
// requests of the Persist wire protocol (PROTOCOL.md sections 1–5) on
// <prefix>.api.<op>.<stream> and publishes each stream's change events on
// <prefix>.ev.<stream>, keeping the streams themselves in package store.
//
// [New] registers a nats.go micro service with one endpoint per operation,
// in a queue group (one worker serves a prefix, see "Start-up checks";
// several share it in partitions, see "Partitions"). The endpoint
// handler only checks the subject and the queue bounds (which count a
// request's body, headers and reply subject), then appends the raw
// request to its stream's queue; parsing is the stream's work. A list,
// which touches no stream, is answered on its endpoint's goroutine. A pool
// of runWorkers long-lived goroutines takes streams with work from a run
// queue and applies each one's requests in arrival order, so one stream's
// requests keep their order while different streams proceed in parallel;
// after fairBatches batches a stream with more work goes to the back of the
// run queue. Consecutive writes at the head of a queue are committed
// together in one store transaction (group commit), and each request is
// still answered with its own results only after that commit. A get on a
// stream that is open, idle and has nothing queued is answered on the
// handler's goroutine, without the hop to a worker, and without allocating
// its request. Parsed requests (jobs) come from a pool and go back to it
// once applied and answered: nothing keeps a job after its answer.
//
// # The registry
//
// Every stream the worker holds is one entry in a map of 64 shards, keyed
// by a hash of its name. An entry exists while its stream is open, or while
// it has requests queued or an owner. Its state is one of:
//
//	closed   no stream open (st is nil); the entry is forgotten when nobody owns it
//	open     st is open
//	closing  a closer is closing st
//
// Exactly one goroutine at a time owns an entry and alone uses its SQLite
// connection (st): a worker, a closer, or a handler answering a get. An
// entry nobody owns (busy false) whose file stream is open is idle, and is
// on one of two intrusive lists: fresh (idle for less than
// [Options.TrimDelay]) or trimmed (idle for longer, and trimmed: SQLite's
// caches given back). Both are kept most recently used first, and every
// trimmed entry is older than every fresh one, so that the least recently
// used idle stream is the tail of trimmed, else of fresh: finding it, and
// every change of the lists, is O(1). Idle memory streams are on no list;
// they stay until [Options.MemoryIdleTimeout].
//
// Ownership moves only under the entry's shard lock: a request that finds
// its entry unowned takes it (off its idle list) and puts it on the run
// queue; the worker that ends with an empty queue releases it (back to the
// front of fresh); a closer takes an idle entry off the tail of a list
// (takeIdle) and, once the stream is closed or trimmed, releases it, or
// hands it to the run queue when requests came meanwhile. Six ends of a
// stream all go through forget, with the owner's hands on the entry: close
// (idle timeout, eviction, shutdown), a memory stream's close (a destroy),
// destroy, drop (a creation that wrote nothing), and a damaged or closed
// file after a failed request (failAll).
//
// # The open-stream budget
//
// File streams take one slot each, out of [Budget.MaxOpen]: the least of
// three quarters of [Options.MemoryBudget] / [store.OpenStreamBytes] (the
// size of a trimmed stream), the descriptors of
// RLIMIT_NOFILE less a reserve (max(256, 10 %)) / [store.FilesPerStream],
// and [Options.MaxOpen] if set. Opening a file stream with every slot taken
// evicts the least recently used idle stream through the closer pool and
// waits (at most slotWait) for a slot; while opens wait, a stream that goes
// idle is closed at once. With none idle and none closing, every open
// stream is busy: the request is answered 429 overloaded, never 500. The
// janitor trims the streams idle for TrimDelay and closes those idle for
// [Options.IdleTimeout]; a small closer pool does the I/O, never a request.
// A stream used since its last trim holds [store.ActiveStreamBytes]: the
// last quarter of the budget pays for the idle ones among them
// ([Budget.WarmCap]), and past that many on the fresh list its tail is
// trimmed at once (trimExcess), so the open streams stay within the budget
// whatever the trim delay; the ones being worked on are bounded by the
// worker and closer pools.
// Memory streams take no slot: they are bounded by [Options.MemoryQuota].
// [Options.MaxStreamsPerNamespace] and [Options.MaxStreams] are counted
// from disk the first time a stream is created under them, so that
// start-up never scans the data directory. The hooks' mayServe, when set,
// is asked before a stream is opened whether this worker may serve it (a
// fault-injection point for the tests; the partition check is earlier, see
// "Partitions").
//
// # Locks
//
// In the order they are taken; none is held across SQLite or file I/O but
// dirMu, and a holder of a later lock never waits for an earlier one:
//
//	dirMu       read: creating a stream's directory and opening, destroying
//	            or removing a stream; write: removing empty directories,
//	            counting a quota's streams from disk. Never across a plain
//	            close (store's Destroy closes and removes in one call).
//	shard.mu    the shard's map and its entries' queue, busy, state, memory,
//	            lastUsed
//	lruMu       the idle lists (O(1) changes only)
//	mu          the index of open memory streams that list shows
//	nsMu        the quota counts
//
// The run and close queues' locks come last, held for one append or pop;
// the name index's and the read-ahead's locks are leaves, held across no
// I/O; the store's stream lock is taken only by the entry's owner.
//
// # Back-pressure
//
// A request past a queue bound (per stream, or all streams together, in
// requests and bytes) is answered 429 overloaded at once, and so is one
// that waited in the worker longer than [Options.MaxWait] by the time it
// is about to be applied: its arrival is the one clock read the handler
// makes, and a refused request (a whole setmany) changes nothing. Each
// endpoint subscription's pending limit is at least the queue bounds, so
// that a flood is refused with 429s before the NATS client drops requests
// unanswered; a drop that happens anyway (a slow consumer) is counted in
// [Stats] and logged at most once per 10 s ([Broker.AsyncError]).
//
// Store errors become wire errors in exactly one table (see wireError);
// anything unexpected is answered 500 internal and logged with its op and
// stream; a damaged file is logged once per stream, with its path. A panic
// while serving one request is recovered, answered 500 and logged with its
// stack. Every error reply counts in its endpoint's errors, in [Stats] and
// in micro's own (the Errors column of nats micro stats), also when a
// worker sends it after the handler returned. A subject that names an
// operation but no stream (<prefix>.api.<op>, known op or not) is
// answered 400 invalid_stream by one more endpoint, no_stream, on
// <prefix>.api.*, which matches no valid request's subject. A request
// whose reply subject is under the prefix is neither answered nor applied
// (badReply): the worker publishes replies with its own permissions, so
// such a reply would arrive as a request of another stream or as an event.
//
// # Logs and stats
//
// At debug the broker logs every failed request (op, stream, code,
// reason, and its time in the worker where known) and every stream
// opened, trimmed and closed (reason idle, evicted or shutdown); nothing
// is built unless debug is on, and a request that succeeds is never
// logged. At info a summary line comes every [Options.SummaryInterval]
// in which something happened (stats.go). micro's stats data of
// [WorkerStatsEndpoint] is the worker-wide [Stats]; every other
// endpoint's is its own [EndpointStats]; the service's info metadata
// holds the prefix, the open-file budget and where the rest is.
//
// # Start-up checks and one worker per prefix
//
// Before it subscribes anything, [New] creates the data, archive and
// backup directories when missing and writes, syncs and removes a probe
// file in each (an unwritable directory fails the start, not the first
// write), then takes an exclusive flock on the data directory itself
// (unless it is shared, see "Partitions"), held until Shutdown or the
// process's end: a second broker on the directory fails with
// [ErrDataDirLocked] (dirlock.go). It then asks the micro
// services on the connection ($SRV.INFO, and $SRV.STATS of each match,
// with replies under $SRV._persist_reply., which the worker's user may
// subscribe to) whether one serves an endpoint under <prefix>.api.; one
// does: [ErrPrefixInUse], naming it. The same check runs every
// [Options.InstanceCheckInterval] and at every reconnect; of two brokers
// that find each other, the younger (later start in STATS, then greater
// id) stops its endpoints (and partition subscriptions) and sends the
// error on [Broker.Conflict]; the older keeps serving (single.go).
//
// [Broker.Shutdown] stops the service and waits, without polling, until
// the handlers returned for every request received (a flush, then a
// barrier on the connection's subscriptions), answers them, closes every
// stream (16 at once) and flushes the connection, so no acknowledged write
// is lost. It follows the connection's status: once NATS is not
// connected, nothing can be answered, so requests not yet started are not
// applied (answered 503 into nothing), every stream is closed at once, no
// flush is waited for, and it returns nil.
//
// # Partitions
//
// With [Options.Partitioning] (partition.go, lease.go) several workers
// share a prefix: the NATS servers map each request to
// <prefix>.part.<n>.api.<op>.<stream>, n being [subjects.Partition] of
// its namespace, and the worker serving n receives it on a plain (not
// queue) subscription per partition, <prefix>.part.<n>.api.>, instead of
// the per-operation endpoints; the no_stream endpoint stays in the queue
// group. Partition n is served while the time is before its deadline
// (partitions.until): forever for a static set (Partitioning.Static),
// and for a lease the time its latest write was sent plus the TTL less a
// quarter. The handler checks the subject (a stream in another partition
// than the subject's: published past the mapping, or servers with
// another count) and the deadline; a worker checks the deadline again
// before it applies a batch, and so before it opens a stream. Either
// refusal is 503 unavailable, never applied, and counted in [Stats]
// (not_served). A subscription of a partition that leaves is drained
// (what it had is refused) and its streams are closed, the idle ones at
// once and the busy ones when their owner lets them go (release: the
// entry is stale), so that one coming back is opened afresh. A stream
// opened in an earlier generation of its partition (partitions.gen: the
// times this worker began to serve it) is never used again. A file
// stream is closed with its archive snapshot only while its partition is
// held and it is of the current generation; otherwise it is abandoned
// (store.Stream.Abandon): after its lease ran out or was taken, another
// worker may own the archive copy. A memory stream is destroyed, with
// its destroy event: memory streams do not move. With an archive, every
// stream has a fence (store.Fence) naming the data directory's id
// (.persist-id, dirlock.go): the archive copy is the truth for a stream
// another directory wrote last, and its revisions jump past what a lost
// owner may have handed out. With [Options.SharedDataDir] the data
// directory is not locked: each stream file is, by the one worker that
// has it open, and a partition's new owner opens the file the old one
// wrote.
//
// Leases (no Static) are keys of a JetStream key/value bucket whose TTL
// is the lease's: "p.<n>" holds the id of partition n's worker, "w.<id>"
// says worker id is alive. Every third of the TTL a worker rewrites its
// member key, renews each lease at the revision it last wrote, reads the
// latest values (a watch may skip revisions: only the latest value and
// revision-checked writes are relied on), and moves towards an even
// spread, partitions / live workers or one more each (fairShare: a worker
// short of the lower share makes those with the most give one each, and
// takes it): it gives up its highest partitions beyond its share (stop
// serving them, close their streams with their archive
// snapshots, waiting a quarter of the TTL at most for the busy ones, then
// delete at the revision; a partition not closed by then is abandoned and
// its lease left to expire) and creates the leases of free ones below
// it. A renewal refused for its revision stops
// n at once; one that cannot be sent stops it at the deadline, before the
// server can expire the key (it stamps the write no earlier than it was
// sent) and so before another worker can create it. Shutdown drains the
// partition subscriptions with the endpoints, keeps renewing while it
// answers and closes the streams (which writes their archive copies, or
// abandons those of a partition lost meanwhile), and only then deletes
// its keys, so the next owners restore what was acknowledged.
//
// In partitioned mode every reply but the messages of a stream carries
// Persist-Worker, the micro instance id (reply.go); locate answers on
// the handler's goroutine which worker serves a stream, opening none
// (ops.go).
//
// The one-worker check, in partitioned mode, refuses only a worker that
// cannot share the prefix: not partitioned, another number of partitions,
// static beside leasing, or static partitions in common (the service
// metadata partition_count and partitions, "leases" or the static set,
// which nats micro info shows; the partitions served now are in the stats).
package broker
