package broker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// startMover starts a leasing broker on node n with opts (DataDir: a new
// temporary directory; ArchiveInterval: an hour, so that only closes write
// the archive; a lease TTL of 2 s unless opts has one) and h.
func startMover(tb testing.TB, n *clusterNode, opts Options, h hooks) *Broker {
	tb.Helper()
	if opts.DataDir == "" {
		opts.DataDir = tb.TempDir()
	}
	if opts.ArchiveInterval == 0 {
		opts.ArchiveInterval = time.Hour
	}
	opts.Partitioning = Partitioning{Count: testPartitions, LeaseTTL: cmp.Or(opts.Partitioning.LeaseTTL, 2*time.Second), Replicas: 3}
	b, err := newBroker(connectNode(tb, n), opts, h)
	if err != nil {
		tb.Fatalf("New() = %v", err)
	}
	tb.Cleanup(func() { b.Shutdown(context.Background()) })
	return b
}

func stat(tb testing.TB, path string) os.FileInfo {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi
}

// streamOpen reports whether b has stream's file open, or is closing it.
func streamOpen(b *Broker, stream string) bool {
	sh := b.reg.shard(stream)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.streams[stream]
	return e != nil && e.state != stateClosed
}

// getOn reads seq of stream through nc: its data, or the error reply.
func getOn(tb testing.TB, nc *nats.Conn, stream string, seq uint64) (string, error) {
	tb.Helper()
	m, err := nc.Request(subjects.DefaultPrefix+".api.get."+stream, fmt.Appendf(nil, `{"seq":%d}`, seq), 5*time.Second)
	if err != nil {
		return "", err
	}
	if we := replyError(m); we != nil {
		return "", we
	}
	return string(m.Data), nil
}

// retryOn sends op on stream through nc until a worker serves it (503 and
// no responders are a partition on the move) and returns the reply.
func retryOn(tb testing.TB, nc *nats.Conn, op, stream, body string) *nats.Msg {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := nc.Request(subjects.DefaultPrefix+".api."+op+"."+stream, []byte(body), 5*time.Second)
		if err == nil {
			if we := replyError(m); we == nil || we.Reason != subjects.ErrUnavailable.Reason {
				return m
			}
		} else if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
			tb.Fatalf("%s %s: %v", op, stream, err)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s %s: not served within 20s", op, stream)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPartitioned_AbandonOnTimeout cuts off a leasing worker (its node
// stops) while a batch of two of its streams is in progress: when the
// batches end after its deadline, the streams are abandoned, not archived,
// whether the new owner has written them by then or not, and the new
// owner's writes are all there after it stops cleanly.
func TestPartitioned_AbandonOnTimeout(t *testing.T) {
	nodes := startPartitionCluster(t)
	archive := t.TempDir()
	var mu sync.Mutex
	hold := map[string]chan struct{}{}
	entered := make(chan string, 2)
	h := hooks{beforeJob: func(op, stream string) {
		mu.Lock()
		ch := hold[stream]
		delete(hold, stream)
		mu.Unlock()
		if ch != nil {
			entered <- stream
			<-ch
		}
	}}
	old := startMover(t, nodes[2], Options{ArchiveDir: archive, IdleTimeout: 300 * time.Millisecond}, h)
	next := startMover(t, nodes[0], Options{ArchiveDir: archive}, hooks{})
	waitFor30(t, "the partitions spread over two workers", func() bool { return evenlyServed(old, next) })
	var streams []string
	for _, s := range testStreams(t) {
		if slices.Contains(old.parts.owned(), subjects.Partition(s, testPartitions)) && len(streams) < 2 {
			streams = append(streams, s)
		}
	}
	if len(streams) < 2 {
		t.Fatalf("fewer than two test streams in the partitions %v", old.parts.owned())
	}
	client := connectNode(t, nodes[0])
	// Seq 1 is archived when the stream closes idle; seq 2 only written.
	for _, s := range streams {
		if seq, err := retrySet(t, client, s); err != nil || seq != 1 {
			t.Fatalf("set %s: seq %d, %v; want 1", s, seq, err)
		}
	}
	archived := map[string]os.FileInfo{}
	waitFor(t, "the archive copies", func() bool {
		for _, s := range streams {
			fi, err := os.Stat(filepath.Join(archive, subjects.Path(s)))
			if err != nil || streamOpen(old, s) {
				return false
			}
			archived[s] = fi
		}
		return true
	})
	held := map[string]chan struct{}{}
	var released sync.Map
	release := func(s string) {
		if _, done := released.LoadOrStore(s, true); !done && held[s] != nil {
			close(held[s])
		}
	}
	// Before the brokers' own cleanups, which wait for the held batches.
	t.Cleanup(func() {
		for _, s := range streams {
			release(s)
		}
	})
	for _, s := range streams {
		if seq, err := retrySet(t, client, s); err != nil || seq != 2 {
			t.Fatalf("set %s: seq %d, %v; want 2", s, seq, err)
		}
		// The third set is held in progress, its stream open.
		held[s] = make(chan struct{})
		mu.Lock()
		hold[s] = held[s]
		mu.Unlock()
		if err := client.PublishRequest(subjects.DefaultPrefix+".api.set."+s, nats.NewInbox(), []byte("held")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("the third set of %s was not held", s)
		}
	}

	nodes[2].srv.Shutdown()
	waitFor30(t, "the cut-off worker to stop serving", func() bool { return len(old.parts.owned()) == 0 })
	if !streamOpen(old, streams[0]) || !streamOpen(old, streams[1]) {
		t.Fatal("a stream held in progress was closed")
	}

	// The first batch ends before the new owner opens the stream: it is
	// abandoned, its archive copy left as it was.
	release(streams[0])
	waitFor(t, "the first stream closed", func() bool { return !streamOpen(old, streams[0]) })
	if fi, was := stat(t, filepath.Join(archive, subjects.Path(streams[0]))), archived[streams[0]]; !fi.ModTime().Equal(was.ModTime()) || fi.Size() != was.Size() {
		t.Errorf("archive copy of %s written after the deadline: %v, %d bytes (was %v, %d bytes)", streams[0], fi.ModTime(), fi.Size(), was.ModTime(), was.Size())
	}
	// Seq 2 was not in the archive: lost, and not given again.
	waitFor30(t, "the new owner serving everything", func() bool { return len(next.parts.owned()) == testPartitions })
	if seq, err := retrySet(t, client, streams[0]); err != nil || seq <= 2 {
		t.Errorf("set %s on the new owner: seq %d, %v; want more than 2", streams[0], seq, err)
	}

	// The second one ends after the new owner wrote.
	var seqs []uint64
	for i := range 3 {
		seq, err := retrySet(t, client, streams[1])
		if err != nil || seq <= 2 {
			t.Fatalf("set %d on %s on the new owner: seq %d, %v; want more than 2", i, streams[1], seq, err)
		}
		seqs = append(seqs, seq)
	}
	release(streams[1])
	waitFor(t, "the second stream closed", func() bool { return !streamOpen(old, streams[1]) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := next.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	last := startMover(t, nodes[1], Options{ArchiveDir: archive}, hooks{})
	waitFor30(t, "the last worker serving everything", func() bool { return len(last.parts.owned()) == testPartitions })
	retryOn(t, client, subjects.OpGet, streams[1], `{"seq":1}`)
	for _, seq := range seqs {
		if data, err := getOn(t, client, streams[1], seq); err != nil || data != "v" {
			t.Errorf("get %s seq %d after the moves: %q, %v; want the new owner's write", streams[1], seq, data, err)
		}
	}
	if seq, err := retrySet(t, client, streams[1]); err != nil || seq != seqs[2]+1 {
		t.Errorf("set %s after a clean move: seq %d, %v; want %d", streams[1], seq, err, seqs[2]+1)
	}
}

// acked is one acknowledged set.
type acked struct {
	seq  uint64
	data string
}

// loadWriter sets on its streams in turn through nc until stop, retrying
// what a partition on the move answers, and records what was
// acknowledged.
type loadWriter struct {
	mu    sync.Mutex
	acked map[string][]acked
	fails []string
	n     int
}

func (w *loadWriter) run(nc *nats.Conn, id int, streams []string, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		s := streams[(i+id)%len(streams)]
		data := fmt.Sprintf("c%d-%d", id, i)
		m, err := nc.Request(subjects.DefaultPrefix+".api.set."+s, []byte(data), 2*time.Second)
		if err == nil && replyError(m) != nil && replyError(m).Reason == subjects.ErrUnavailable.Reason {
			continue
		}
		var r subjects.SetReply
		switch {
		case errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders):
			continue
		case err != nil:
			w.fail(fmt.Sprintf("set %s: %v", s, err))
			continue
		case replyError(m) != nil:
			w.fail(fmt.Sprintf("set %s: %v", s, replyError(m)))
			continue
		case json.Unmarshal(m.Data, &r) != nil:
			w.fail(fmt.Sprintf("set %s: %q", s, m.Data))
			continue
		}
		w.mu.Lock()
		w.acked[s] = append(w.acked[s], acked{r.Seq, data})
		w.n++
		w.mu.Unlock()
	}
}

func (w *loadWriter) fail(s string) {
	w.mu.Lock()
	w.fails = append(w.fails, s)
	w.mu.Unlock()
}

func (w *loadWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// startLoad runs two writers per client on streams until the returned
// stop is called.
func startLoad(clients []*nats.Conn, streams []string) (*loadWriter, func()) {
	w := &loadWriter{acked: map[string][]acked{}}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for i, nc := range clients {
		for j := range 2 {
			wg.Go(func() { w.run(nc, 2*i+j, streams, quit) })
		}
	}
	return w, func() { close(quit); wg.Wait() }
}

// checkAcked checks every stream written by w through nc: each seq was
// acknowledged once, every acknowledged write is there, and the stream's
// seqs and revisions go on without a gap (nothing lost, no jump).
func checkAcked(t *testing.T, nc *nats.Conn, w *loadWriter) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.fails {
		t.Error(f)
	}
	for s, sets := range w.acked {
		seen := map[uint64]string{}
		for _, a := range sets {
			if d, ok := seen[a.seq]; ok {
				t.Errorf("%s: seq %d acknowledged twice, for %q and %q", s, a.seq, d, a.data)
			}
			seen[a.seq] = a.data
		}
		var inv subjects.Inventory
		if err := json.Unmarshal(retryOn(t, nc, subjects.OpInventory, s, "").Data, &inv); err != nil {
			t.Fatal(err)
		}
		if inv.Count != int64(inv.LastSeq) || inv.Revision != inv.LastSeq {
			t.Errorf("%s: count %d, last seq %d, revision %d: want all three equal (no gap, no jump)", s, inv.Count, inv.LastSeq, inv.Revision)
		}
		for seq, data := range seen {
			if got, err := getOn(t, nc, s, seq); err != nil || got != data {
				t.Errorf("%s seq %d: %q, %v; want the acknowledged %q", s, seq, got, err, data)
			}
		}
	}
}

// TestPartitioned_GiveUpUnderLoad has a fourth leasing worker join three
// while clients write: the partitions it takes are given up with their
// streams closed and archived first, busy ones included (a batch of a
// stream of each partition given up is held in progress past the start
// of the give-up), so that every acknowledged write is there after the
// move, each seq was given once and the seqs and revisions go on without
// a jump.
func TestPartitioned_GiveUpUnderLoad(t *testing.T) {
	nodes := startPartitionCluster(t)
	archive := t.TempDir()
	// A longer TTL than the other tests': the give-up waits for a busy
	// stream a quarter of it at most (1.5 s), from the renewal that began
	// its round; the batch below is held 0.7 s from the give-up's start.
	opts := Options{ArchiveDir: archive, Partitioning: Partitioning{LeaseTTL: 6 * time.Second}}
	var mu sync.Mutex
	var all [4]*Broker
	targets := make([]string, 3)
	held := make(chan string, 3)
	hold := func(i int) hooks {
		return hooks{beforeJob: func(op, stream string) {
			mu.Lock()
			armed := targets[i] == stream
			var b *Broker
			if armed {
				targets[i], b = "", all[i]
			}
			mu.Unlock()
			if !armed {
				return
			}
			held <- stream
			n := subjects.Partition(stream, testPartitions)
			for !b.parts.leaving[n].Load() && b.parts.holds(n) {
				time.Sleep(time.Millisecond)
			}
			// In progress after the give-up began, within its wait:
			// no other worker may serve the partition meanwhile.
			for end := time.Now().Add(700 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
				mu.Lock()
				others := all
				mu.Unlock()
				for j, o := range others {
					if j != i && o != nil && o.parts.serves(n) {
						t.Errorf("partition %d served by worker %d while worker %d, giving it up, had a batch in progress", n, j, i)
						return
					}
				}
			}
		}}
	}
	var bs []*Broker
	for i := range 3 {
		bs = append(bs, startMover(t, nodes[i], opts, hold(i)))
	}
	mu.Lock()
	copy(all[:], bs)
	mu.Unlock()
	startSampler(t, bs...)
	waitFor30(t, "the partitions spread over three workers", func() bool { return evenlyServed(bs...) })
	clients := []*nats.Conn{connectNode(t, nodes[0]), connectNode(t, nodes[1])}
	streams := testStreams(t)
	w, stop := startLoad(clients, streams)
	waitFor30(t, "writes acknowledged", func() bool { return w.count() >= 200 })
	// Each worker with three partitions gives its highest up.
	armed := 0
	mu.Lock()
	for i, b := range bs {
		if owned := b.parts.owned(); len(owned) == 3 {
			top := slices.Max(owned)
			targets[i] = streams[slices.IndexFunc(streams, func(s string) bool { return subjects.Partition(s, testPartitions) == top })]
			armed++
		}
	}
	mu.Unlock()
	for range armed {
		select {
		case <-held:
		case <-time.After(10 * time.Second):
			t.Fatal("no batch held")
		}
	}
	was := owners(bs...)
	bs = append(bs, startMover(t, nodes[2], opts, hooks{}))
	mu.Lock()
	all[3] = bs[3]
	mu.Unlock()
	waitFor30(t, "the partitions spread over four workers", func() bool { return evenlyServed(bs...) })
	before := w.count()
	waitFor30(t, "writes after the move", func() bool { return w.count() >= before+200 })
	stop()
	moved := 0
	for n, o := range owners(bs...) {
		if o[0] != was[n][0] {
			moved++
		}
	}
	if moved != armed {
		t.Errorf("%d partitions moved, want %d", moved, armed)
	}
	checkAcked(t, clients[0], w)
}

// TestPartitioned_MemoryStreamsDoNotMove: a memory stream of a partition
// given up is destroyed, with its destroy event, and is not served again
// when the partition comes back.
func TestPartitioned_MemoryStreamsDoNotMove(t *testing.T) {
	nodes := startPartitionCluster(t)
	a := startMover(t, nodes[0], Options{}, hooks{})
	b := startMover(t, nodes[1], Options{}, hooks{})
	waitFor30(t, "the partitions spread over two workers", func() bool { return evenlyServed(a, b) })
	// A third worker takes the highest partition of each.
	top := slices.Max(a.parts.owned())
	var stream string
	for i := 0; stream == ""; i++ {
		if s := "mem" + strconv.Itoa(i) + ".m"; subjects.Partition(s, testPartitions) == top {
			stream = s
		}
	}
	client := connectNode(t, nodes[2])
	events, err := client.SubscribeSync(subjects.DefaultPrefix + ".ev." + stream)
	if err != nil {
		t.Fatal(err)
	}
	if m := retryOn(t, client, subjects.OpConfig, stream, `{"storage":"memory"}`); replyError(m) != nil {
		t.Fatalf("create memory stream %s: %v", stream, replyError(m))
	}
	if m := retryOn(t, client, subjects.OpSet, stream, "x"); replyError(m) != nil {
		t.Fatalf("set %s: %v", stream, replyError(m))
	}
	c := startMover(t, nodes[2], Options{}, hooks{})
	waitFor30(t, "the partitions spread over three workers", func() bool { return evenlyServed(a, b, c) })
	if slices.Contains(a.parts.owned(), top) {
		t.Fatalf("partition %d stayed with its worker", top)
	}
	for {
		m, err := events.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("no destroy event of %s: %v", stream, err)
		}
		if m.Header.Get(subjects.HeaderOp) == subjects.OpDestroy {
			break
		}
	}
	if streamOpen(a, stream) {
		t.Error("the memory stream is still open on the worker that gave its partition up")
	}
	// Back on a worker of the first two: gone, not stale.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor30(t, "the partitions spread over two workers again", func() bool { return evenlyServed(a, b) })
	var inv subjects.Inventory
	if err := json.Unmarshal(retryOn(t, client, subjects.OpInventory, stream, "").Data, &inv); err != nil || inv.LastSeq != 0 {
		t.Errorf("inventory of %s after its partition came back: %+v, %v; want no stream (last seq 0)", stream, inv, err)
	}
}

// TestPartitioned_ListReadsTheDisk: in leasing mode a page of list sees
// the stream files other workers made meanwhile (here, in the archive),
// which the name index, following this worker alone, would miss.
func TestPartitioned_ListReadsTheDisk(t *testing.T) {
	s := runServer(t)
	archive := t.TempDir()
	b, err := New(connect(t, s), Options{DataDir: t.TempDir(), ArchiveDir: archive, InstanceCheckInterval: -1,
		Partitioning: Partitioning{Count: testPartitions, LeaseTTL: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(context.Background()) })
	nc := connect(t, s)
	list := func() []string {
		inbox := nats.NewInbox()
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		b.list(inbox, "acme", nil)
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r subjects.ListReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("list reply %q: %v", m.Data, err)
		}
		return r.Streams
	}
	var want []string
	for _, name := range []string{"acme.a", "acme.b"} {
		st, err := store.Open(filepath.Join(archive, subjects.Path(name)), store.Options{Create: true, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Append([]store.Write{{Data: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
		if got := list(); !slices.Equal(got, want) {
			t.Errorf("list acme = %v, want %v", got, want)
		}
	}
}

// TestPartitioned_QuotaCountedAgain: a worker that begins to serve a
// partition again counts its namespaces' streams from the disk again,
// since others created some meanwhile (here, one in the archive).
func TestPartitioned_QuotaCountedAgain(t *testing.T) {
	nodes := startPartitionCluster(t)
	archive := t.TempDir()
	b := startMover(t, nodes[0], Options{ArchiveDir: archive, MaxStreamsPerNamespace: 2}, hooks{})
	waitFor30(t, "the worker serving every partition", func() bool { return len(b.parts.owned()) == testPartitions })
	client := connectNode(t, nodes[1])
	if _, err := retrySet(t, client, "quota.a"); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(archive, subjects.Path("quota.b")), store.Options{Create: true, Name: "quota.b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append([]store.Write{{Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// The partition leaves (as if its lease were lost) and comes back.
	p := subjects.Partition("quota.a", testPartitions)
	l := b.parts.lease
	l.mu.Lock()
	l.lose(b, p)
	l.mu.Unlock()
	waitFor30(t, "the partition served again", func() bool { return b.parts.serves(p) })
	_, err = retrySet(t, client, "quota.c")
	var we *subjects.Error
	if !errors.As(err, &we) || we.Reason != subjects.ErrTooManyStreams.Reason {
		t.Errorf("set quota.c, a third stream of a namespace of two: %v, want too_many_streams", err)
	}
}

// TestPartitioned_SharedDataDir: two leasing workers on one data
// directory; one is cut off with a batch of a stream in progress, so
// that it still holds the stream's file when the other takes the
// partition: the new owner answers 503 until the file is free, then
// opens the very file the old one wrote and goes on, nothing lost.
func TestPartitioned_SharedDataDir(t *testing.T) {
	nodes := startPartitionCluster(t)
	dir := t.TempDir()
	var mu sync.Mutex
	var hold chan struct{}
	entered := make(chan struct{}, 1)
	h := hooks{beforeJob: func(op, stream string) {
		mu.Lock()
		ch := hold
		hold = nil
		mu.Unlock()
		if ch != nil {
			entered <- struct{}{}
			<-ch
		}
	}}
	old := startMover(t, nodes[2], Options{DataDir: dir, SharedDataDir: true}, h)
	next := startMover(t, nodes[0], Options{DataDir: dir, SharedDataDir: true}, hooks{})
	waitFor30(t, "the partitions spread over two workers", func() bool { return evenlyServed(old, next) })
	streams := testStreams(t)
	s := streams[slices.IndexFunc(streams, func(s string) bool {
		return slices.Contains(old.parts.owned(), subjects.Partition(s, testPartitions))
	})]
	client := connectNode(t, nodes[0])
	for want := uint64(1); want <= 2; want++ {
		if seq, err := retrySet(t, client, s); err != nil || seq != want {
			t.Fatalf("set %s: seq %d, %v; want %d", s, seq, err, want)
		}
	}
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the brokers' cleanups, which wait for the batch
	mu.Lock()
	hold = release
	mu.Unlock()
	if err := client.PublishRequest(subjects.DefaultPrefix+".api.set."+s, nats.NewInbox(), []byte("held")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the set was not held")
	}

	nodes[2].srv.Shutdown()
	waitFor30(t, "the new owner serving everything", func() bool { return len(next.parts.owned()) == testPartitions })
	if !streamOpen(old, s) {
		t.Fatal("the stream held in progress was closed")
	}
	_, err := setOn(t, client, s, "v")
	var we *subjects.Error
	if !errors.As(err, &we) || we.Reason != subjects.ErrUnavailable.Reason || !strings.Contains(we.Description, "in use by another process") {
		t.Fatalf("set %s while the old owner holds its file: %v, want 503 unavailable, the file in use", s, err)
	}
	free()
	waitFor(t, "the old owner to close the stream", func() bool { return !streamOpen(old, s) })
	if seq, err := retrySet(t, client, s); err != nil || seq != 3 {
		t.Errorf("set %s on the new owner: seq %d, %v; want 3", s, seq, err)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		if data, err := getOn(t, client, s, seq); err != nil || data != "v" {
			t.Errorf("get %s seq %d: %q, %v; want the old owner's write", s, seq, data, err)
		}
	}
}
