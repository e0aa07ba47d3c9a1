package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// The crash and outage tests share one load and one checker. The load is
// crashWriters writers on crashStreams streams (the first crashSyncStreams
// with sync on), and a ledger of every write they sent. The checker reads
// every stream from the wire and compares it with the ledger and with the
// events seen on persist.ev.>.
const (
	crashStreams     = 50
	crashSyncStreams = 5
	crashCounterKeys = 8 // each written by two writers, so that some writes meet a 409
	crashBigItems    = 1000

	crashPlainWriters   = 24
	crashManyWriters    = 12
	crashDeleteWriters  = 12
	crashCounterWriters = 2 * crashCounterKeys
	crashWriters        = crashPlainWriters + crashManyWriters + crashDeleteWriters + crashCounterWriters // 64
	crashBigWriters     = 4

	crashTimeout    = 3 * time.Second  // one request of the load
	crashBigTimeout = 10 * time.Second // one large setmany
	crashGiveUp     = 2 * time.Minute  // a check's read retried this long fails the test
	crashIDHeader   = "Crash-Id"       // a user header carrying the msg id, stored with the message
)

// crashStreamName names stream i of the load.
func crashStreamName(i int) string { return fmt.Sprintf("crash.s%02d", i) }

// crashPayload is the body written under msg id id: the id, a space and a
// filler of a length derived from the id, mostly short, one in ten above
// the compression threshold. The checker compares stored bytes with it.
func crashPayload(id string) []byte {
	h := fnv.New32a()
	h.Write([]byte(id))
	n := int(h.Sum32() % 100)
	if h.Sum32()%10 == 0 {
		n = 1000 + int(h.Sum32()%2000)
	}
	b := make([]byte, 0, len(id)+1+n)
	b = append(b, id...)
	b = append(b, ' ')
	for len(b) < cap(b) {
		b = append(b, "0123456789abcdef"[len(b)%16])
	}
	return b
}

// crashCounterPayload is the body of counter key's message holding value.
func crashCounterPayload(key string, value uint64) []byte {
	return fmt.Appendf(nil, "%s=%d", key, value)
}

// crashCounterValue parses a counter message written by crashCounterPayload.
func crashCounterValue(key string, data []byte) (uint64, bool) {
	v, ok := bytes.CutPrefix(data, []byte(key+"="))
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	return n, err == nil
}

// crashState is what the ledger knows of one write.
type crashState int

const (
	crashPending  crashState = iota // sent, never acknowledged: may or may not be stored, at most once
	crashAcked                      // acknowledged: must be readable with its bytes
	crashDeleting                   // a delete of it was sent: may or may not be readable
	crashDeleted                    // the delete was acknowledged: must not be readable
)

// crashWrite is one write with a msg id.
type crashWrite struct {
	stream int
	seq    uint64 // the acknowledged seq; 0 before
	state  crashState
	floor  uint64 // the stream's highest acknowledged seq when the write was first sent
}

// crashCounter is the highest value of a counter key the worker
// acknowledged, the seq of that write, and every acknowledged value's seq.
type crashCounter struct {
	stream int
	key    string
	value  uint64
	seq    uint64
	acks   map[uint64]uint64
}

// crashLedger records every write of the load. Writers tell it what they
// send and what was acknowledged; the checker compares the streams with it.
type crashLedger struct {
	mu         sync.Mutex
	writes     [crashStreams]map[string]*crashWrite // by msg id
	maxAcked   [crashStreams]uint64
	counters   []*crashCounter // by counter number
	acked      int             // writes acknowledged, counter increments included
	deletes    int             // deletes acknowledged
	violations []string        // what the writers saw that the protocol forbids
}

func newCrashLedger() *crashLedger {
	l := &crashLedger{}
	for i := range l.writes {
		l.writes[i] = map[string]*crashWrite{}
	}
	for k := range crashCounterKeys {
		l.counters = append(l.counters, &crashCounter{stream: (k * 7) % crashStreams, key: fmt.Sprintf("ctr%d", k), acks: map[uint64]uint64{}})
	}
	return l
}

// violate records a protocol violation; the test fails on any.
func (l *crashLedger) violate(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addViolation(format, args...)
}

// begin records that the write id is about to be sent to stream.
func (l *crashLedger) begin(stream int, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes[stream][id] = &crashWrite{stream: stream, floor: l.maxAcked[stream]}
}

// ack records the acknowledgement of the write id. retried says an
// earlier attempt of it went unanswered.
func (l *crashLedger) ack(stream int, id string, a client.Ack, retried bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.writes[stream][id]
	switch {
	case a.Duplicate && !retried:
		l.addViolation("%s %s: first attempt answered duplicate (seq %d)", crashStreamName(stream), id, a.Seq)
	case !a.Duplicate && a.Seq <= w.floor:
		l.addViolation("%s %s: new seq %d not above %d, acknowledged before it was sent", crashStreamName(stream), id, a.Seq, w.floor)
	}
	if w.seq != 0 && w.seq != a.Seq {
		l.addViolation("%s %s: acknowledged at seq %d and at seq %d", crashStreamName(stream), id, w.seq, a.Seq)
	}
	if w.state == crashPending {
		w.seq, w.state = a.Seq, crashAcked
		l.acked++
	}
	l.maxAcked[stream] = max(l.maxAcked[stream], a.Seq)
}

// addViolation is violate with l.mu held.
func (l *crashLedger) addViolation(format string, args ...any) {
	l.violations = crashAppend(l.violations, format, args...)
}

// setState moves the write id to state s (deleting or deleted).
func (l *crashLedger) setState(stream int, id string, s crashState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes[stream][id].state = s
	if s == crashDeleted {
		l.deletes++
	}
}

// counterFloor returns the highest acknowledged value of counter k.
func (l *crashLedger) counterFloor(k int) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counters[k].value
}

// counterAck records that counter k was acknowledged at value, seq.
func (l *crashLedger) counterAck(k int, value, seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counters[k]
	// Two writers share a key, so acknowledgements may be recorded out
	// of order; but a value is written by one successful compare-and-set
	// only.
	if other, ok := c.acks[value]; ok && other != seq {
		l.addViolation("counter %s: value %d acknowledged at seqs %d and %d", c.key, value, other, seq)
	}
	c.acks[value] = seq
	if value > c.value {
		c.value, c.seq = value, seq
	}
	l.maxAcked[c.stream] = max(l.maxAcked[c.stream], seq)
	l.acked++
}

// counts returns the writes and deletes acknowledged so far.
func (l *crashLedger) counts() (acked, deletes int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked, l.deletes
}

// snapshot copies the state of every write of stream.
func (l *crashLedger) snapshot(stream int) map[string]crashWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]crashWrite, len(l.writes[stream]))
	for id, w := range l.writes[stream] {
		out[id] = *w
	}
	return out
}

// state returns the current state of the write id, and whether it was
// ever sent.
func (l *crashLedger) state(stream int, id string) (crashState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.writes[stream][id]
	if !ok {
		return 0, false
	}
	return w.state, true
}

// crashEvents follows persist.ev.crash.> on a plain NATS subscription
// across crashes and outages. It records, per stream, an identity of the
// event seen at each revision, and flags a revision seen twice with
// different content. A crash may lose events (a change committed but not
// yet published, or published but still in the worker's buffer), so gaps
// are counted, not failed; what it must never do is give one revision to
// two different changes, or publish a change that is then not durable.
type crashEvents struct {
	sub *nats.Subscription

	mu       sync.Mutex
	revs     map[string]map[uint64]uint64 // stream -> revision -> identity hash
	sets     map[string]crashEventSet     // msg id -> the set event of that write
	counters map[string]uint64            // stream/key -> highest value seen in a set event
	n        int                          // events received
	reused   []string                     // revisions seen with two different contents
	twice    map[string]string            // stream/msg id -> the two seqs it was committed at
	repeats  int                          // revisions seen twice with the same content
	noMsgID  int                          // set events of writes with a msg id that did not carry it
}

// crashEventSet is the stream, seq and revision of a write's set event.
type crashEventSet struct {
	stream string
	seq    uint64
	rev    uint64
}

// newCrashEvents returns an empty record of events.
func newCrashEvents() *crashEvents {
	return &crashEvents{revs: map[string]map[uint64]uint64{}, sets: map[string]crashEventSet{}, counters: map[string]uint64{}, twice: map[string]string{}}
}

// crashFollowEvents subscribes to the load's events on nc.
func crashFollowEvents(tb testing.TB, nc *nats.Conn) *crashEvents {
	tb.Helper()
	e := newCrashEvents()
	sub, err := nc.Subscribe("persist.ev.crash.>", e.handle)
	if err != nil {
		tb.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		tb.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	e.sub = sub
	tb.Cleanup(func() { sub.Unsubscribe() })
	return e
}

func (e *crashEvents) handle(m *nats.Msg) {
	stream := strings.TrimPrefix(m.Subject, "persist.ev.")
	rev, err := strconv.ParseUint(m.Header.Get(subjects.HeaderRevision), 10, 64)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if err != nil || rev == 0 {
		e.reused = crashAppend(e.reused, "%s: event without a revision: %v", stream, m.Header)
		return
	}
	h := fnv.New64a()
	for _, name := range []string{subjects.HeaderOp, subjects.HeaderSeq, subjects.HeaderTime, subjects.HeaderKey, subjects.HeaderMsgID, subjects.HeaderReason} {
		fmt.Fprintf(h, "%s=%s\n", name, m.Header.Get(name))
	}
	h.Write(m.Data)
	id := h.Sum64()
	revs := e.revs[stream]
	if revs == nil {
		revs = map[uint64]uint64{}
		e.revs[stream] = revs
	}
	if old, ok := revs[rev]; ok {
		if old != id {
			e.reused = crashAppend(e.reused, "%s: revision %d reused for a different event (%s seq %s)", stream, rev, m.Header.Get(subjects.HeaderOp), m.Header.Get(subjects.HeaderSeq))
		} else {
			e.repeats++
		}
		return
	}
	revs[rev] = id
	if m.Header.Get(subjects.HeaderOp) != subjects.OpSet {
		return
	}
	seq, _ := strconv.ParseUint(m.Header.Get(subjects.HeaderSeq), 10, 64)
	// The load's own header names the write; Persist-Msg-Id (protocol
	// 1.1) is only counted, as not every worker sends it.
	if msgID := m.Header.Get(crashIDHeader); msgID != "" {
		if m.Header.Get(subjects.HeaderMsgID) != msgID {
			e.noMsgID++
		}
		if old, ok := e.sets[msgID]; ok && (old.stream != stream || old.seq != seq) {
			e.twice[stream+"/"+msgID] = fmt.Sprintf("set events at %s seq %d (rev %d) and %s seq %d (rev %d)", old.stream, old.seq, old.rev, stream, seq, rev)
		}
		e.sets[msgID] = crashEventSet{stream, seq, rev}
	}
	if key := m.Header.Get(subjects.HeaderKey); key != "" {
		if v, ok := crashCounterValue(key, m.Data); ok {
			ck := stream + "/" + key
			e.counters[ck] = max(e.counters[ck], v)
		}
	}
}

// noMsgIDs returns how many set events of writes with a msg id did not
// carry Persist-Msg-Id.
func (e *crashEvents) noMsgIDs() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.noMsgID
}

// crashAppend appends a formatted line to list, which it keeps short.
func crashAppend(list []string, format string, args ...any) []string {
	if len(list) >= 50 {
		return list
	}
	return append(list, fmt.Sprintf(format, args...))
}

// snapshot returns the set events and counter values seen for stream, and
// its highest revision seen.
func (e *crashEvents) snapshot(stream string) (sets map[string]crashEventSet, counters map[string]uint64, maxRev uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	sets = map[string]crashEventSet{}
	for id, s := range e.sets {
		if s.stream == stream {
			sets[id] = s
		}
	}
	counters = map[string]uint64{}
	for k, v := range e.counters {
		if name, key, _ := strings.Cut(k, "/"); name == stream {
			counters[key] = v
		}
	}
	for rev := range e.revs[stream] {
		maxRev = max(maxRev, rev)
	}
	return sets, counters, maxRev
}

// summary returns the events received, the revisions missed (gaps below
// the highest revision seen), the revisions seen twice with the same
// content, the revisions reused for different events and the msg ids
// committed twice.
func (e *crashEvents) summary() (n, missed, repeats int, reused []string, twice map[string]string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, revs := range e.revs {
		var top uint64
		for rev := range revs {
			top = max(top, rev)
		}
		missed += int(top) - len(revs)
	}
	return e.n, missed, e.repeats, slices.Clone(e.reused), maps.Clone(e.twice)
}

// crashLoad is the running load: its writers, ledger and event follower,
// and what the checks found.
type crashLoad struct {
	seed    uint64
	clients []*client.Client
	led     *crashLedger
	ev      *crashEvents
	stop    chan struct{}
	wg      sync.WaitGroup
	pause   sync.RWMutex // held by each step of a writer, and by a check to stop them
	retries atomic.Int64 // attempts that timed out or met a retryable error

	asyncErrors atomic.Int64 // asynchronous errors of the load's connections

	big         chan struct{} // closed to end the large setmany writers
	bigWG       sync.WaitGroup
	bigInFlight atomic.Int64
	bigAcked    atomic.Int64

	// What the checks found, by msg id or counter (a write found lost
	// by several checks counts once).
	lost      map[string]string
	dups      map[string]string
	revived   map[string]string // acknowledged-deleted and readable again
	committed map[string]string // seen in a set event, never acknowledged to the load, and gone
	checks    int
}

// crashStartLoad starts the load against the worker at url.
func crashStartLoad(tb testing.TB, url string) *crashLoad {
	tb.Helper()
	l := crashNewLoad(tb, url)
	w := 0
	start := func(n int, f func(w int, r *rand.Rand, c *client.Client)) {
		for range n {
			id, r, c := w, rand.New(rand.NewPCG(l.seed, uint64(w))), l.clients[w%len(l.clients)]
			l.wg.Go(func() { f(id, r, c) })
			w++
		}
	}
	start(crashPlainWriters, l.plainWriter)
	start(crashManyWriters, l.manyWriter)
	start(crashDeleteWriters, l.deleteWriter)
	start(crashCounterWriters, l.counterWriter)
	return l
}

// crashNewLoad connects the load to the worker at url, starts following
// the events and turns sync on for the sync streams; no writer runs yet.
func crashNewLoad(tb testing.TB, url string) *crashLoad {
	tb.Helper()
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("PERSIST_CRASH_SEED"), 10, 64); err == nil {
		seed = s
	}
	tb.Logf("load seed %d (PERSIST_CRASH_SEED repeats the writers' choices)", seed)
	l := &crashLoad{
		seed: seed, led: newCrashLedger(), stop: make(chan struct{}),
		lost: map[string]string{}, dups: map[string]string{}, revived: map[string]string{}, committed: map[string]string{},
	}
	for range 8 {
		// The load retries by itself, to tell a first attempt from a retry.
		l.clients = append(l.clients, client.New(l.connect(tb, url), client.WithRetry(client.Retry{Attempts: 1})))
	}
	l.ev = crashFollowEvents(tb, l.connect(tb, url))
	on := true
	for i := range crashSyncStreams {
		if _, err := l.clients[0].Stream(crashStreamName(i)).UpdateConfig(context.Background(), client.ConfigPatch{Sync: &on}); err != nil {
			tb.Fatalf("UpdateConfig(%s, sync) error = %v", crashStreamName(i), err)
		}
	}
	tb.Cleanup(l.halt)
	return l
}

// connect opens a connection of the load that keeps reconnecting; its
// asynchronous errors (a write to a server that went away, a slow
// consumer) are counted instead of printed.
func (l *crashLoad) connect(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				l.led.violate("the load's connection dropped messages: %v", err)
			}
			l.asyncErrors.Add(1)
		}))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// halt stops the writers and waits for them; a write in flight stays
// pending in the ledger. It may be called more than once.
func (l *crashLoad) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.endBig()
	l.wg.Wait()
}

// errCrashStopped ends a write whose writer was told to stop.
var errCrashStopped = errors.New("load stopped")

// crashRetryable reports whether a failed attempt may be sent again:
// the worker was down, stopping or shedding load, or the reply did not
// come in time. Any other error reply is a failure of the test.
func crashRetryable(err error) bool {
	var perr *subjects.Error
	if errors.As(err, &perr) {
		return errors.Is(err, subjects.ErrUnavailable) || errors.Is(err, subjects.ErrOverloaded)
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, nats.ErrConnectionClosed)
}

// retry runs attempt until it succeeds or fails for good, each attempt
// with its own timeout; attempt gets the number of earlier attempts. It
// gives up with errCrashStopped when stop is closed, and after
// crashGiveUp when stop is nil (a check's read).
func (l *crashLoad) retry(stop <-chan struct{}, timeout time.Duration, attempt func(ctx context.Context, n int) error) error {
	deadline := time.Now().Add(crashGiveUp)
	for n := 0; ; n++ {
		select {
		case <-stop:
			return errCrashStopped
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := attempt(ctx, n)
		cancel()
		if err == nil || !crashRetryable(err) {
			return err
		}
		if stop == nil && time.Now().After(deadline) {
			return fmt.Errorf("no answer within %v: %w", crashGiveUp, err)
		}
		l.retries.Add(1)
		time.Sleep(20 * time.Millisecond) // back off; the worker may be down
	}
}

// run calls step with 0, 1, 2, … until it fails or the load stops; a
// check waits until no step is running. A failure other than the load
// stopping is a violation.
func (l *crashLoad) run(step func(i int) error) {
	for i := 0; ; i++ {
		l.pause.RLock()
		err := step(i)
		l.pause.RUnlock()
		if err != nil {
			if !errors.Is(err, errCrashStopped) {
				l.led.violate("%v", err)
			}
			return
		}
	}
}

// set writes the message id to stream with Persist-Msg-Id, retrying with
// the same id until it is acknowledged.
func (l *crashLoad) set(c *client.Client, stream int, id string) (client.Ack, error) {
	l.led.begin(stream, id)
	st := c.Stream(crashStreamName(stream))
	var ack client.Ack
	err := l.retry(l.stop, crashTimeout, func(ctx context.Context, n int) error {
		a, err := st.Set(ctx, crashPayload(id), client.WithMsgID(id), client.WithHeader(nats.Header{crashIDHeader: {id}}))
		if err == nil {
			ack = a
			l.led.ack(stream, id, a, n > 0)
		}
		return err
	})
	if err != nil {
		return ack, fmt.Errorf("set %s: %w", id, err)
	}
	return ack, nil
}

// plainWriter sends single sets with msg ids to random streams.
func (l *crashLoad) plainWriter(w int, r *rand.Rand, c *client.Client) {
	l.run(func(i int) error {
		_, err := l.set(c, r.IntN(crashStreams), fmt.Sprintf("p%02d-%d", w, i))
		return err
	})
}

// setMany writes items with the msg ids ids to stream in one setmany,
// retried with the same ids until it is answered. inflight, when not
// nil, counts the request while it is unanswered.
func (l *crashLoad) setMany(c *client.Client, stream int, ids []string, timeout time.Duration, inflight *atomic.Int64) error {
	items := make([]client.Item, len(ids))
	for i, id := range ids {
		l.led.begin(stream, id)
		items[i] = client.Item{Data: crashPayload(id), MsgID: id, Header: nats.Header{crashIDHeader: {id}}}
	}
	st := c.Stream(crashStreamName(stream))
	err := l.retry(l.stop, timeout, func(ctx context.Context, n int) error {
		if inflight != nil {
			inflight.Add(1)
			defer inflight.Add(-1)
		}
		res, err := st.SetMany(ctx, items)
		if err != nil {
			return err
		}
		if len(res) != len(ids) {
			return fmt.Errorf("%d results", len(res))
		}
		var last uint64
		for i, rs := range res {
			if rs.Err != nil {
				return fmt.Errorf("item %s: %w", ids[i], rs.Err)
			}
			if rs.Seq <= last {
				l.led.violate("%s setmany: item %s seq %d not above the item before it (%d)", st.Name(), ids[i], rs.Seq, last)
			}
			last = rs.Seq
			l.led.ack(stream, ids[i], rs.Ack, n > 0)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("setmany %s… (%d items) to %s: %w", ids[0], len(ids), st.Name(), err)
	}
	return nil
}

// manyWriter sends setmany requests of 10 items with msg ids.
func (l *crashLoad) manyWriter(w int, r *rand.Rand, c *client.Client) {
	l.run(func(i int) error {
		ids := make([]string, 10)
		for j := range ids {
			ids[j] = fmt.Sprintf("m%02d-%d-%d", w, i, j)
		}
		return l.setMany(c, r.IntN(crashStreams), ids, crashTimeout, nil)
	})
}

// deleteWriter writes messages and deletes some of its own by seq.
func (l *crashLoad) deleteWriter(w int, r *rand.Rand, c *client.Client) {
	type own struct {
		stream int
		id     string
		seq    uint64
	}
	var mine []own
	l.run(func(i int) error {
		if len(mine) == 0 || r.IntN(2) == 0 {
			id := fmt.Sprintf("d%02d-%d", w, i)
			stream := r.IntN(crashStreams)
			ack, err := l.set(c, stream, id)
			if err == nil {
				mine = append(mine, own{stream, id, ack.Seq})
			}
			return err
		}
		j := r.IntN(len(mine))
		o := mine[j]
		mine = slices.Delete(mine, j, j+1)
		l.led.setState(o.stream, o.id, crashDeleting)
		st := c.Stream(crashStreamName(o.stream))
		err := l.retry(l.stop, crashTimeout, func(ctx context.Context, n int) error {
			count, err := st.DeleteSeq(ctx, o.seq)
			if err == nil && count != 1 && n == 0 {
				// Only a first attempt knows the message was there.
				l.led.violate("%s: delete of acknowledged seq %d (%s) removed %d messages", st.Name(), o.seq, o.id, count)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("delete %s seq %d: %w", st.Name(), o.seq, err)
		}
		l.led.setState(o.stream, o.id, crashDeleted)
		return nil
	})
}

// counterWriter increments its counter by read-modify-write with
// Persist-Previous-Seq; a 409 or an unanswered write reads again. Every
// read is checked against the highest value acknowledged before it.
func (l *crashLoad) counterWriter(w int, _ *rand.Rand, c *client.Client) {
	k := w % crashCounterKeys
	ctr := l.led.counters[k]
	st := c.Stream(crashStreamName(ctr.stream))
	l.run(func(int) error {
		floor := l.led.counterFloor(k)
		var m *client.Msg
		err := l.retry(l.stop, crashTimeout, func(ctx context.Context, _ int) error {
			var err error
			m, err = st.GetKey(ctx, ctr.key)
			if errors.Is(err, subjects.ErrNotFound) {
				m, err = nil, nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("get %s %s: %w", st.Name(), ctr.key, err)
		}
		var value, prev uint64
		if m != nil {
			var ok bool
			if value, ok = crashCounterValue(ctr.key, m.Data); !ok {
				return fmt.Errorf("%s %s: seq %d holds %q", st.Name(), ctr.key, m.Seq, m.Data)
			}
			prev = m.Seq
		}
		if value < floor {
			l.led.violate("%s %s: read %d, below the acknowledged %d", st.Name(), ctr.key, value, floor)
		}
		ctx, cancel := context.WithTimeout(context.Background(), crashTimeout)
		ack, err := st.Set(ctx, crashCounterPayload(ctr.key, value+1), client.WithKey(ctr.key), client.WithPreviousSeq(prev))
		cancel()
		switch {
		case err == nil:
			l.led.counterAck(k, value+1, ack.Seq)
		case errors.Is(err, subjects.ErrWrongLastSequence):
		case crashRetryable(err):
			l.retries.Add(1)
			time.Sleep(20 * time.Millisecond) // back off; the worker may be down
		default:
			return fmt.Errorf("set %s %s: %w", st.Name(), ctr.key, err)
		}
		return nil
	})
}

// startBig starts the large setmany writers: crashBigItems items with msg
// ids per request, on non-sync streams, until endBig. A request started
// is retried until it is answered, across a kill, unless the load stops.
func (l *crashLoad) startBig() {
	l.big = make(chan struct{})
	for w := range crashBigWriters {
		c := l.clients[w%len(l.clients)]
		l.bigWG.Go(func() {
			l.run(func(i int) error {
				select {
				case <-l.big:
					return errCrashStopped
				default:
				}
				ids := make([]string, crashBigItems)
				for j := range ids {
					ids[j] = fmt.Sprintf("b%d-%d-%d", w, i, j)
				}
				if err := l.setMany(c, crashSyncStreams+w, ids, crashBigTimeout, &l.bigInFlight); err != nil {
					return err
				}
				l.bigAcked.Add(1)
				return nil
			})
		})
	}
}

// endBig lets the large setmany writers finish their current request and
// waits for them.
func (l *crashLoad) endBig() {
	if l.big == nil {
		return
	}
	select {
	case <-l.big:
	default:
		close(l.big)
	}
	l.bigWG.Wait()
}

// waitAcked waits until n more writes are acknowledged than before.
func (l *crashLoad) waitAcked(tb testing.TB, n int) {
	tb.Helper()
	before, _ := l.led.counts()
	waitFor(tb, 2*time.Minute, func() bool {
		acked, _ := l.led.counts()
		return acked >= before+n
	})
}

// readStream reads every message of stream page by page, retrying a page
// that fails as the load's writes do.
func (l *crashLoad) readStream(tb testing.TB, st *client.Stream) (msgs []*client.Msg, inv client.Inventory) {
	tb.Helper()
	err := l.retry(nil, crashTimeout, func(ctx context.Context, _ int) error {
		var err error
		inv, err = st.Inventory(ctx)
		return err
	})
	if err != nil {
		tb.Fatalf("Inventory(%s) error = %v", st.Name(), err)
	}
	q := client.Query{MaxMsgs: client.MaxPageMsgs}
	for {
		var p client.Page
		err := l.retry(nil, 30*time.Second, func(ctx context.Context, _ int) error {
			var err error
			p, err = st.GetAllPage(ctx, q)
			return err
		})
		if err != nil {
			tb.Fatalf("GetAllPage(%s, %+v) error = %v", st.Name(), q, err)
		}
		msgs = append(msgs, p.Msgs...)
		if p.NumPending == 0 {
			return msgs, inv
		}
		q.StartSeq = p.NextSeq
	}
}

// crashCheckResult is what one check found, for the test's failure
// message.
type crashCheckResult struct {
	msgs     int
	problems []string
}

func (r *crashCheckResult) add(format string, args ...any) {
	if len(r.problems) < 30 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
}

// check reads every stream from the wire and compares it with the ledger
// and the events:
//   - every write acknowledged before the read is readable at its seq with
//     identical bytes and header, unless a delete of it was sent since;
//   - no acknowledged-deleted write is readable;
//   - every write never acknowledged but seen in a set event is readable
//     at that seq (an event means committed, and committed means durable
//     across a kill -9 even without sync);
//   - no msg id is stored twice, and every stored message is one the load
//     sent;
//   - seqs are strictly increasing, and last_seq is at least every
//     acknowledged seq;
//   - the revision is at least every revision seen in an event;
//   - each counter is at least its highest acknowledged value and at
//     least every value seen in an event, at a seq not below the
//     acknowledged one; a higher value was acknowledged at a higher seq;
//   - a key is held by one message at most.
//
// The writers wait while it runs, so the streams are read at rest (but a
// request the worker still holds may yet be applied).
func (l *crashLoad) check(tb testing.TB) crashCheckResult {
	tb.Helper()
	l.pause.Lock()
	defer l.pause.Unlock()
	l.checks++
	var res crashCheckResult
	c := l.clients[0]
	for i := range crashStreams {
		name := crashStreamName(i)
		st := c.Stream(name)
		// What was acknowledged, and seen in events, before the read
		// started is what the read must show.
		acked := l.led.snapshot(i)
		l.led.mu.Lock()
		maxAcked := l.led.maxAcked[i]
		l.led.mu.Unlock()
		sets, evCounters, maxRev := l.ev.snapshot(name)
		msgs, inv := l.readStream(tb, st)
		res.msgs += len(msgs)

		if inv.LastSeq < maxAcked {
			res.add("%s: last_seq %d below the acknowledged seq %d", name, inv.LastSeq, maxAcked)
		}
		if inv.Revision < maxRev {
			res.add("%s: revision %d below revision %d seen in an event", name, inv.Revision, maxRev)
		}
		bySeq := make(map[uint64]*client.Msg, len(msgs))
		byID := map[string]uint64{}
		byKey := map[string]uint64{}
		var last uint64
		for _, m := range msgs {
			if m.Seq <= last {
				res.add("%s: seq %d read after seq %d", name, m.Seq, last)
			}
			last = m.Seq
			bySeq[m.Seq] = m
			if m.Key != "" {
				if other, ok := byKey[m.Key]; ok {
					// Pages are read one after the other: the key may have
					// moved between them, but then the older seq is gone.
					if l.getSeq(tb, st, other) != nil {
						res.add("%s: key %s held by seqs %d and %d", name, m.Key, other, m.Seq)
					}
				}
				byKey[m.Key] = m.Seq
				continue
			}
			id := m.Header.Get(crashIDHeader)
			if _, known := l.led.state(i, id); !known {
				res.add("%s: seq %d holds a message the load never sent (id %q)", name, m.Seq, id)
				continue
			}
			if other, ok := byID[id]; ok {
				l.dups[name+"/"+id] = fmt.Sprintf("seqs %d and %d", other, m.Seq)
			}
			byID[id] = m.Seq
		}

		for id, w := range acked {
			now, _ := l.led.state(i, id)
			m, present := bySeq[w.seq]
			switch {
			case w.state == crashAcked && now == crashAcked:
				if !present {
					l.lost[name+"/"+id] = fmt.Sprintf("acknowledged at seq %d, not readable", w.seq)
				} else if err := crashSame(m, id); err != nil {
					l.lost[name+"/"+id] = fmt.Sprintf("acknowledged at seq %d: %v", w.seq, err)
				}
			case w.state == crashDeleted && present:
				l.revived[name+"/"+id] = fmt.Sprintf("seq %d deleted and acknowledged, readable again", w.seq)
			}
		}
		for id, ev := range sets {
			// An acknowledged write is checked above; a pending one whose
			// event was seen has committed, and must stay.
			if now, _ := l.led.state(i, id); now != crashPending {
				continue
			}
			if m, ok := bySeq[ev.seq]; !ok || crashSame(m, id) != nil {
				l.committed[name+"/"+id] = fmt.Sprintf("set event rev %d at seq %d, not readable there", ev.rev, ev.seq)
			}
		}
		for _, ctr := range l.led.counters {
			if ctr.stream != i {
				continue
			}
			l.led.mu.Lock()
			floor := *ctr
			values := slices.Sorted(maps.Keys(ctr.acks))
			var prev uint64
			for _, v := range values {
				// A higher value is written after a lower one.
				if ctr.acks[v] <= prev {
					res.add("%s %s: value %d acknowledged at seq %d, not above the seq of the value before it", name, ctr.key, v, ctr.acks[v])
				}
				prev = ctr.acks[v]
			}
			l.led.mu.Unlock()
			m := l.getKey(tb, st, ctr.key)
			var value uint64
			if m != nil {
				value, _ = crashCounterValue(ctr.key, m.Data)
			}
			switch {
			case value < floor.value:
				l.lost[name+"/"+ctr.key] = fmt.Sprintf("counter %d, acknowledged %d", value, floor.value)
			case value < evCounters[ctr.key]:
				l.committed[name+"/"+ctr.key] = fmt.Sprintf("counter %d, an event showed %d", value, evCounters[ctr.key])
			case m != nil && m.Seq < floor.seq:
				l.lost[name+"/"+ctr.key] = fmt.Sprintf("counter at seq %d, acknowledged at seq %d", m.Seq, floor.seq)
			}
			if m != nil && m.Seq < byKey[ctr.key] {
				res.add("%s: get of key %s answered seq %d after getall read it at %d", name, ctr.key, m.Seq, byKey[ctr.key])
			}
		}
	}
	return res
}

// getKey reads the message with key, nil when there is none.
func (l *crashLoad) getKey(tb testing.TB, st *client.Stream, key string) *client.Msg {
	tb.Helper()
	return l.get(tb, st.Name()+" key "+key, func(ctx context.Context) (*client.Msg, error) { return st.GetKey(ctx, key) })
}

// getSeq reads the message with seq, nil when there is none.
func (l *crashLoad) getSeq(tb testing.TB, st *client.Stream, seq uint64) *client.Msg {
	tb.Helper()
	return l.get(tb, st.Name()+" seq "+itoa(seq), func(ctx context.Context) (*client.Msg, error) { return st.Get(ctx, seq) })
}

// get retries one read until it is answered; not found is nil.
func (l *crashLoad) get(tb testing.TB, what string, read func(context.Context) (*client.Msg, error)) *client.Msg {
	tb.Helper()
	var m *client.Msg
	err := l.retry(nil, crashTimeout, func(ctx context.Context, _ int) error {
		var err error
		m, err = read(ctx)
		if errors.Is(err, subjects.ErrNotFound) {
			m, err = nil, nil
		}
		return err
	})
	if err != nil {
		tb.Fatalf("get %s: %v", what, err)
	}
	return m
}

// crashSame reports how m differs from the write with msg id id.
func crashSame(m *client.Msg, id string) error {
	if got := m.Header.Get(crashIDHeader); got != id {
		return fmt.Errorf("seq %d holds %s", m.Seq, got)
	}
	if !bytes.Equal(m.Data, crashPayload(id)) {
		return fmt.Errorf("seq %d: payload of %d bytes differs from the %d written", m.Seq, len(m.Data), len(crashPayload(id)))
	}
	if len(m.Header) != 1 || len(m.Header[crashIDHeader]) != 1 {
		return fmt.Errorf("seq %d: headers %v, want only %s", m.Seq, m.Header, crashIDHeader)
	}
	return nil
}

// failures lists everything the load and its checks found wrong so far.
func (l *crashLoad) failures(res crashCheckResult) []string {
	l.led.mu.Lock()
	out := slices.Clone(l.led.violations)
	l.led.mu.Unlock()
	out = append(out, res.problems...)
	for _, m := range []struct {
		what string
		set  map[string]string
	}{{"lost", l.lost}, {"duplicated", l.duplicates(nil)}, {"deleted but readable", l.revived}, {"committed but gone", l.committed}} {
		n := 0
		for id, why := range m.set {
			if n++; n > 10 {
				out = append(out, fmt.Sprintf("%s: %d more", m.what, len(m.set)-10))
				break
			}
			out = append(out, fmt.Sprintf("%s %s: %s", m.what, id, why))
		}
	}
	_, _, _, reused, _ := l.ev.summary()
	return append(out, reused...)
}

// duplicates returns the writes stored twice, found by the checks or by
// the events (twice; nil: the events' as of now).
func (l *crashLoad) duplicates(twice map[string]string) map[string]string {
	if twice == nil {
		_, _, _, _, twice = l.ev.summary()
	}
	out := maps.Clone(l.dups)
	for k, v := range twice {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	return out
}

// waitServing waits until the worker answers an inventory of the load's
// first stream, each attempt bounded short so that the wait measures the
// worker, not the timeout.
func (l *crashLoad) waitServing(tb testing.TB) {
	tb.Helper()
	st := l.clients[0].Stream(crashStreamName(0))
	err := l.retry(nil, 250*time.Millisecond, func(ctx context.Context, _ int) error {
		_, err := st.Inventory(ctx)
		return err
	})
	if err != nil {
		tb.Fatalf("Inventory(%s) error = %v", st.Name(), err)
	}
}

// waitStreams waits until every stream of the load answers an inventory.
// The streams are asked all at once, each until it answers; an attempt
// that needed a retry is logged.
func (l *crashLoad) waitStreams(tb testing.TB) {
	tb.Helper()
	errs := make([]error, crashStreams)
	var wg sync.WaitGroup
	for i := range crashStreams {
		st := l.clients[i%len(l.clients)].Stream(crashStreamName(i))
		wg.Go(func() {
			errs[i] = l.retry(nil, crashTimeout, func(ctx context.Context, n int) error {
				t0 := time.Now()
				_, err := st.Inventory(ctx)
				if err != nil && !errors.Is(err, nats.ErrNoResponders) {
					tb.Logf("Inventory(%s) attempt %d: %v after %v", st.Name(), n+1, err, time.Since(t0))
				}
				return err
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("Inventory: %v", err)
	}
}

// crashIntegrity runs PRAGMA integrity_check on every stream file under
// dir, opened read-only, and returns how many files it checked. The
// worker must not be running.
func crashIntegrity(tb testing.TB, dir string) int {
	tb.Helper()
	files := dbFiles(tb, dir)
	for _, rel := range files {
		conn, err := sqlite.OpenConn(filepath.Join(dir, rel), sqlite.OpenReadOnly)
		if err != nil {
			tb.Fatalf("open %s: %v", rel, err)
		}
		var out []string
		err = sqlitex.ExecuteTransient(conn, "PRAGMA integrity_check", &sqlitex.ExecOptions{
			ResultFunc: func(stmt *sqlite.Stmt) error {
				out = append(out, stmt.ColumnText(0))
				return nil
			},
		})
		if cerr := conn.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			tb.Fatalf("integrity_check %s: %v", rel, err)
		}
		if len(out) != 1 || out[0] != "ok" {
			tb.Fatalf("integrity_check %s = %q, want ok", rel, out)
		}
	}
	return len(files)
}

// crashMillis returns the p50 and the max of ds in milliseconds.
func crashMillis(ds []time.Duration) (p50, maxMs int64) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Milliseconds(), s[len(s)-1].Milliseconds()
}

// figures returns the load's figures for report.
func (l *crashLoad) figures() map[string]any {
	acked, deletes := l.led.counts()
	n, missed, repeats, reused, twice := l.ev.summary()
	return map[string]any{
		"acked":            acked,
		"deletes_acked":    deletes,
		"lost":             len(l.lost),
		"duplicated":       len(l.duplicates(twice)),
		"deleted_revived":  len(l.revived),
		"committed_lost":   len(l.committed),
		"retries":          l.retries.Load(),
		"async_errors":     l.asyncErrors.Load(),
		"events":           n,
		"events_missed":    missed,
		"events_repeated":  repeats,
		"events_no_msg_id": l.ev.noMsgIDs(),
		"revisions_reused": len(reused),
		"checks":           l.checks,
		"streams":          crashStreams,
		"writers":          crashWriters,
	}
}

// verdict fails the test on every failure of the load, and names the
// figures that must be zero.
func (l *crashLoad) verdict(tb testing.TB, fig map[string]any, res crashCheckResult) {
	tb.Helper()
	for _, name := range []string{"lost", "duplicated", "deleted_revived", "committed_lost", "revisions_reused"} {
		if n := fig[name].(int); n != 0 {
			tb.Errorf("%s = %d, want 0", name, n)
		}
	}
	for _, f := range l.failures(res) {
		tb.Error(f)
	}
}

// crashWorkerLog counts the warning and error lines the worker processes
// wrote (they run with --log-level warn), and the slow-consumer ones among
// them, and returns a few distinct messages for the test's log.
func crashWorkerLog(workers []*worker) (lines, slow int, sample []string) {
	seen := map[string]bool{}
	for _, w := range workers {
		for line := range strings.Lines(w.stderr.String()) {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			lines++
			if strings.Contains(line, "slow consumer") {
				slow++
			}
			msg := line
			if _, after, ok := strings.Cut(line, "msg="); ok {
				msg = after
			}
			if !seen[msg] && len(sample) < 10 {
				seen[msg] = true
				sample = append(sample, line)
			}
		}
	}
	return lines, slow, sample
}
