package integration

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// A checker sends sets and records every reply to them, including a
// second reply to one request, which a plain request would drop: each
// request has a reply subject of its own under an inbox prefix the
// checker subscribes to. What it proves, from the record alone
// (analyze):
//
//   - No request was answered by two workers: with plain (non-queue)
//     partition subscriptions, two workers serving one partition at once
//     both receive the requests sent meanwhile, and both answer.
//   - Per partition and window of time, the workers that answered
//     changed at most as the scenario moves the partition: no move in a
//     steady window, at most one, to the expected worker, in a move
//     (see window). A partition answered by A, then B, then A again in
//     a move window fails; so does one answered by two workers in a
//     steady window.
//   - No (stream, seq) was acknowledged with two payloads, and the seqs
//     of a stream, in the order its writes were sent (one writer per
//     stream, one write at a time), strictly increase.
//
// Replies are ordered by the time they were received. The episodes of a
// partition (consecutive replies of one worker) always satisfy "every
// request of an episode was sent before the first reply of the next was
// received", since a reply is received after its request was sent: that
// rule alone cannot fail, which is why the checker counts the changes of
// worker against the scenario's instead, and catches the overlap itself
// as a request answered twice.

// record is one set sent by the checker and what came back.
type record struct {
	id        int
	stream    string
	partition int
	payload   string
	sent      time.Time
	replies   []answer
}

// answer is one reply message to a record's request.
type answer struct {
	worker   string // Persist-Worker; "" for a no-responders status
	code     string // the error code, "" for an acknowledgement
	seq      uint64
	received time.Time
}

func (a answer) ok() bool { return a.code == "" && a.seq > 0 }

// acked returns r's acknowledgement: the first reply that is one.
func (r *record) acked() (answer, bool) {
	for _, a := range r.replies {
		if a.ok() {
			return a, true
		}
	}
	return answer{}, false
}

// window is a span of the test, by the time replies were received, and
// the moves its scenario makes: partition -> from and to workers. A
// partition not in moves keeps its worker. Free windows (node restarts,
// a worker cut off) check nothing but the requests answered twice and
// the seqs: their partitions may move back and forth.
type window struct {
	name     string
	from, to time.Time
	free     bool
	moves    map[int][2]string
}

// checker sends sets on streams through connections, records replies.
type checker struct {
	mu      sync.Mutex
	records []*record
	byID    map[int]*record
	pending map[int]chan struct{}
	windows []window
	subs    []*nats.Subscription
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newChecker() *checker {
	return &checker{byID: map[int]*record{}, pending: map[int]chan struct{}{}, stop: make(chan struct{})}
}

// inbox is the reply prefix of connection i.
func checkInbox(i int) string { return "_INBOX.check" + strconv.Itoa(i) }

// listen subscribes the replies of connection i.
func (c *checker) listen(tb testing.TB, i int, nc *nats.Conn) {
	tb.Helper()
	sub, err := nc.Subscribe(checkInbox(i)+".*", func(m *nats.Msg) {
		received := time.Now()
		id, err := strconv.Atoi(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:])
		if err != nil {
			return
		}
		a := answer{worker: m.Header.Get(subjects.HeaderWorker), code: m.Header.Get("Nats-Service-Error-Code"), received: received}
		if st := m.Header.Get("Status"); st != "" && a.code == "" {
			a.code = "status " + st // no responders
		}
		if a.code == "" {
			var r subjects.SetReply
			if json.Unmarshal(m.Data, &r) != nil || r.Seq == 0 {
				a.code = "bad reply " + string(m.Data)
			}
			a.seq = r.Seq
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		r := c.byID[id]
		if r == nil {
			return
		}
		r.replies = append(r.replies, a)
		if ch := c.pending[id]; ch != nil {
			close(ch)
			delete(c.pending, id)
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		tb.Fatal(err)
	}
	c.subs = append(c.subs, sub)
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// write starts a writer on connection i (listened to): it sets on its
// streams in turn,
// one at a time, waiting up to 2 s for each reply, until stop.
func (c *checker) write(i int, nc *nats.Conn, streams []string) {
	c.wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-c.stop:
				return
			default:
			}
			s := streams[n%len(streams)]
			c.mu.Lock()
			id := len(c.records) + 1
			r := &record{id: id, stream: s, partition: subjects.Partition(s, clusterPartitions), payload: fmt.Sprintf("%s#%d", s, n)}
			c.records = append(c.records, r)
			c.byID[id] = r
			done := make(chan struct{})
			c.pending[id] = done
			r.sent = time.Now()
			c.mu.Unlock()
			err := nc.PublishMsg(&nats.Msg{Subject: subjects.APISubject(subjects.DefaultPrefix, subjects.OpSet, s),
				Reply: checkInbox(i) + "." + strconv.Itoa(id), Data: []byte(r.payload)})
			t := time.NewTimer(2 * time.Second)
			select {
			case <-done:
			case <-t.C:
			case <-c.stop:
			}
			t.Stop()
			c.mu.Lock()
			delete(c.pending, id)
			ok := len(r.replies) > 0 && r.replies[0].ok()
			c.mu.Unlock()
			if err != nil || !ok {
				time.Sleep(20 * time.Millisecond) // a partition on the move
			} else {
				time.Sleep(2 * time.Millisecond)
			}
		}
	})
}

// halt stops the writers and waits a little for late replies.
func (c *checker) halt() {
	close(c.stop)
	c.wg.Wait()
	time.Sleep(500 * time.Millisecond)
	for _, s := range c.subs {
		s.Unsubscribe()
	}
}

// mark adds a window of the scenario, from now until end is called; end
// returns its index, for setMoves.
func (c *checker) mark(name string, free bool, moves map[int][2]string) (end func() int) {
	c.mu.Lock()
	c.windows = append(c.windows, window{name: name, from: time.Now(), free: free, moves: moves})
	i := len(c.windows) - 1
	c.mu.Unlock()
	return func() int {
		c.mu.Lock()
		c.windows[i].to = time.Now()
		c.mu.Unlock()
		return i
	}
}

// setMoves gives window i the moves its scenario made, once known.
func (c *checker) setMoves(i int, moves map[int][2]string) {
	c.mu.Lock()
	c.windows[i].moves = moves
	c.mu.Unlock()
}

// acks counts the acknowledged writes.
func (c *checker) acks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.records {
		if _, ok := r.acked(); ok {
			n++
		}
	}
	return n
}

// firstAck returns, per partition, when the first write acknowledged by
// a worker in workers was received after t.
func (c *checker) firstAck(after time.Time, parts []int, workers func(string) bool) map[int]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := map[int]time.Time{}
	for _, r := range c.records {
		a, ok := r.acked()
		if !ok || !slices.Contains(parts, r.partition) || !a.received.After(after) || !workers(a.worker) {
			continue
		}
		if t, seen := got[r.partition]; !seen || a.received.Before(t) {
			got[r.partition] = a.received
		}
	}
	return got
}

// summary counts, per partition of parts, the replies received after t
// by worker and code: what a test that waits in vain logs.
func (c *checker) summary(after time.Time, parts []int) map[int]map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := map[int]map[string]int{}
	for _, r := range c.records {
		if !slices.Contains(parts, r.partition) || r.sent.Before(after) {
			continue
		}
		if got[r.partition] == nil {
			got[r.partition] = map[string]int{}
		}
		if len(r.replies) == 0 {
			got[r.partition]["no reply"]++
		}
		for _, a := range r.replies {
			got[r.partition][a.worker+" "+a.code]++
		}
	}
	return got
}

// snapshot returns a copy of the records.
func (c *checker) snapshot() ([]record, []window) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := make([]record, len(c.records))
	for i, r := range c.records {
		rs[i] = *r
		rs[i].replies = slices.Clone(r.replies)
	}
	return rs, slices.Clone(c.windows)
}

// analyze returns every violation the record shows (see checker).
func analyze(rs []record, ws []window) []string {
	var bad []string
	kinds := map[string]int{}
	// At most 10 of each kind, so that one kind does not hide the others.
	add := func(kind, format string, args ...any) {
		if kinds[kind]++; kinds[kind] <= 10 {
			bad = append(bad, fmt.Sprintf(format, args...))
		} else if kinds[kind] == 11 {
			bad = append(bad, "… and more: "+kind)
		}
	}
	// One request, two workers.
	for _, r := range rs {
		var who []string
		for _, a := range r.replies {
			if a.ok() && !slices.Contains(who, a.worker) {
				who = append(who, a.worker)
			}
		}
		if slices.Contains(who, "") {
			add("no worker", "request %d (set %s): acknowledged without %s", r.id, r.stream, subjects.HeaderWorker)
		}
		if len(who) > 1 {
			add("answered twice", "request %d (set %s, partition %d) answered by %d workers at once: %v", r.id, r.stream, r.partition, len(who), who)
		}
	}
	// The workers of each partition, window by window.
	type reply struct {
		worker string
		at     time.Time
	}
	byPart := map[int][]reply{}
	for _, r := range rs {
		if a, ok := r.acked(); ok {
			byPart[r.partition] = append(byPart[r.partition], reply{a.worker, a.received})
		}
	}
	for _, w := range ws {
		if w.free {
			continue
		}
		for p, replies := range byPart {
			slices.SortFunc(replies, func(a, b reply) int { return a.at.Compare(b.at) })
			var episodes []string
			for _, r := range replies {
				if r.at.Before(w.from) || !w.to.IsZero() && !r.at.Before(w.to) {
					continue
				}
				if len(episodes) == 0 || episodes[len(episodes)-1] != r.worker {
					episodes = append(episodes, r.worker)
				}
			}
			mv, moves := w.moves[p]
			switch {
			case len(episodes) <= 1 && !moves:
				// Steady (the worker itself is compared by the test).
			case !moves:
				add("moved", "%s: partition %d answered by %v in turn, and it does not move", w.name, p, episodes)
			case len(episodes) > 2:
				add("moved", "%s: partition %d answered by %v in turn, moving once from %s to %s", w.name, p, episodes, mv[0], mv[1])
			case len(episodes) == 2 && (episodes[0] != mv[0] || episodes[1] != mv[1]),
				len(episodes) == 1 && episodes[0] != mv[0] && episodes[0] != mv[1]:
				add("moved", "%s: partition %d answered by %v, moving from %s to %s", w.name, p, episodes, mv[0], mv[1])
			}
		}
	}
	// Seqs: one payload each, increasing in the order of the writes.
	payloads := map[string]map[uint64]string{}
	last := map[string]uint64{}
	for _, r := range rs { // in the order sent: ids are given in order
		a, ok := r.acked()
		if !ok {
			continue
		}
		if payloads[r.stream] == nil {
			payloads[r.stream] = map[uint64]string{}
		}
		if other, dup := payloads[r.stream][a.seq]; dup && other != r.payload {
			add("seq twice", "stream %s: seq %d acknowledged twice, for %q and %q (the second by %s)", r.stream, a.seq, other, r.payload, a.worker)
		}
		payloads[r.stream][a.seq] = r.payload
		if a.seq <= last[r.stream] {
			add("seq order", "stream %s: seq %d acknowledged (by %s) after seq %d", r.stream, a.seq, a.worker, last[r.stream])
		}
		last[r.stream] = a.seq
	}
	return bad
}

// TestChecker_Fails feeds the checker's analysis crafted records: each
// violation is found, and a record without one passes.
func TestChecker_Fails(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	set := func(id int, stream string, sent int, replies ...answer) record {
		return record{id: id, stream: stream, partition: subjects.Partition(stream, clusterPartitions), payload: fmt.Sprintf("%s#%d", stream, id), sent: at(sent), replies: replies}
	}
	ack := func(worker string, seq uint64, ms int) answer {
		return answer{worker: worker, seq: seq, received: at(ms)}
	}
	p := subjects.Partition("a.s", clusterPartitions)
	move := []window{{name: "move", from: at(0), to: at(1000), moves: map[int][2]string{p: {"A", "B"}}}}
	steady := []window{{name: "steady", from: at(0), to: at(1000)}}
	good := []record{
		set(1, "a.s", 1, ack("A", 1, 2)),
		set(2, "a.s", 3, answer{worker: "A", code: "503", received: at(4)}),
		set(3, "a.s", 5, ack("B", 2, 6)),
		set(4, "a.s", 7, ack("B", 3, 8)),
	}
	if bad := analyze(good, move); len(bad) != 0 {
		t.Fatalf("a clean move: %v", bad)
	}
	for _, c := range []struct {
		name string
		rs   []record
		ws   []window
		want string
	}{
		{"NoWorker", []record{set(1, "a.s", 1, ack("", 1, 2))}, nil, "acknowledged without Persist-Worker"},
		{"AnsweredTwice", []record{set(1, "a.s", 1, ack("A", 1, 2), ack("B", 1, 3))}, nil, "answered by 2 workers at once"},
		{"BackAndForth", []record{
			set(1, "a.s", 1, ack("A", 1, 2)), set(2, "a.s", 3, ack("B", 2, 4)), set(3, "a.s", 5, ack("A", 3, 6)),
		}, move, "moving once from A to B"},
		{"WrongWay", []record{set(1, "a.s", 1, ack("B", 1, 2)), set(2, "a.s", 3, ack("A", 2, 4))}, move, "moving from A to B"},
		{"MovedWhenSteady", []record{set(1, "a.s", 1, ack("A", 1, 2)), set(2, "a.s", 3, ack("B", 2, 4))}, steady, "does not move"},
		{"SeqTwice", []record{set(1, "a.s", 1, ack("A", 1, 2)), set(2, "a.s", 3, ack("B", 1, 4))}, nil, "seq 1 acknowledged twice"},
		{"SeqBack", []record{set(1, "a.s", 1, ack("A", 5, 2)), set(2, "a.s", 3, ack("A", 4, 4))}, nil, "seq 4 acknowledged (by A) after seq 5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := analyze(c.rs, c.ws)
			if !slices.ContainsFunc(bad, func(s string) bool { return strings.Contains(s, c.want) }) {
				t.Fatalf("analyze() = %q, want a violation %q", bad, c.want)
			}
		})
	}
}
