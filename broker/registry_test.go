package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// checkRegistry checks, on a quiet broker, that the registry agrees with
// itself: nobody owns anything, an entry's state matches its stream, the
// idle lists hold exactly the open file streams, and the slot and stream
// counts match the entries.
func checkRegistry(tb testing.TB, b *Broker) {
	tb.Helper()
	openFiles, open, listed := 0, 0, 0
	for i := range b.reg.shards {
		sh := &b.reg.shards[i]
		sh.mu.Lock()
		for name, e := range sh.streams {
			b.reg.lruMu.Lock()
			onList := e.list != nil
			b.reg.lruMu.Unlock()
			switch {
			case e.busy || len(e.queue) > 0:
				tb.Errorf("%s: busy %v with %d queued on a quiet broker", name, e.busy, len(e.queue))
			case e.state != stateOpen:
				tb.Errorf("%s: state %v kept in the map unowned", name, e.state)
			case e.st == nil:
				tb.Errorf("%s: open without a stream", name)
			case onList == e.memory:
				tb.Errorf("%s: memory %v, on an idle list %v", name, e.memory, onList)
			}
			if e.state == stateOpen {
				open++
				if !e.memory {
					openFiles++
				}
			}
			if onList {
				listed++
			}
		}
		sh.mu.Unlock()
	}
	b.reg.lruMu.Lock()
	walked := 0
	for _, l := range []*idleList{&b.reg.fresh, &b.reg.trimmed} {
		n := 0
		for e := l.head; e != nil; e = e.next {
			if e.list != l {
				tb.Errorf("%s: on a list it does not name", e.name)
			}
			n++
		}
		if n != l.n {
			tb.Errorf("idle list of %d counts %d", n, l.n)
		}
		walked += n
	}
	b.reg.lruMu.Unlock()
	if walked != listed {
		tb.Errorf("%d entries on the idle lists, %d entries say they are", walked, listed)
	}
	if got := len(b.slots); got != openFiles {
		tb.Errorf("%d slots taken, %d open file streams", got, openFiles)
	}
	if got := int(b.openStreams.Load()); got != open {
		tb.Errorf("open stream count %d, %d open entries", got, open)
	}
	if openFiles > b.budget.MaxOpen {
		tb.Errorf("%d open files, cap %d", openFiles, b.budget.MaxOpen)
	}
}

// streamModel is what a stream must hold: its messages by seq, or nothing.
type streamModel struct {
	exists bool
	msgs   []string
}

// TestRegistry_Model runs seeded random operations from several clients at
// once, each on streams of its own, against a model of each stream, with a
// cap of two open files and the idle streams trimmed and closed under
// their feet by a moving clock. Every reply must match the model (429
// overloaded is allowed and changes nothing), and the registry must agree
// with itself once quiet and after shutdown.
func TestRegistry_Model(t *testing.T) {
	seeds, ops := 6, 60
	if testing.Short() {
		seeds, ops = 2, 30
	}
	for seed := range seeds {
		t.Run(fmt.Sprintf("Seed%d", seed), func(t *testing.T) { modelRun(t, uint64(seed), ops) })
	}
}

func modelRun(t *testing.T, seed uint64, ops int) {
	const clients, perClient = 4, 3
	f := newFixture(t, Options{MaxOpen: 2, TrimDelay: time.Second, IdleTimeout: 3 * time.Second})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			model := make([]streamModel, perClient)
			for n := range ops {
				k := rng.IntN(perClient)
				name := fmt.Sprintf("m%d.c%d.s%d", seed, c, k)
				m := &model[k]
				if err := modelStep(f, rng, name, m, n); err != nil {
					t.Errorf("seed %d client %d op %d on %s: %v", seed, c, n, name, err)
					return
				}
				if rng.IntN(4) == 0 {
					f.clock.advance(time.Duration(rng.IntN(2500)) * time.Millisecond)
					f.b.closeIdle()
				}
			}
		})
	}
	wg.Wait()
	f.quiet(t)
	checkRegistry(t, f.b)
	if err := f.b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, m := len(f.b.slots), f.b.openStreams.Load(); n != 0 || m != 0 {
		t.Errorf("after shutdown: %d slots, %d open streams", n, m)
	}
}

// modelStep applies one random operation to stream name and checks its
// reply against m, which it updates.
func modelStep(f *fixture, rng *rand.Rand, name string, m *streamModel, n int) error {
	req := func(op, body string) (*nats.Msg, *subjects.Error, error) {
		msg, err := f.nc.Request(subjects.APISubject(subjects.DefaultPrefix, op, name), []byte(body), 10*time.Second)
		if err != nil {
			return nil, nil, err
		}
		return msg, replyError(msg), nil
	}
	switch op := rng.IntN(10); {
	case op < 5: // set
		data := fmt.Sprintf("v%d", n)
		msg, werr, err := req(subjects.OpSet, data)
		if err != nil {
			return err
		}
		if werr != nil {
			if werr.Reason == "overloaded" {
				return nil
			}
			return fmt.Errorf("set: %v", werr)
		}
		var r subjects.SetReply
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			return err
		}
		if want := uint64(len(m.msgs) + 1); r.Seq != want {
			return fmt.Errorf("set seq %d, want %d", r.Seq, want)
		}
		m.exists, m.msgs = true, append(m.msgs, data)
	case op < 8: // get
		seq := 1
		if len(m.msgs) > 0 {
			seq = rng.IntN(len(m.msgs)) + 1
		}
		msg, werr, err := req(subjects.OpGet, `{"seq":`+strconv.Itoa(seq)+`}`)
		if err != nil {
			return err
		}
		switch {
		case werr != nil && werr.Reason == "overloaded":
		case !m.exists || len(m.msgs) == 0:
			if werr == nil || werr.Code != 404 {
				return fmt.Errorf("get on an empty stream: %v %q, want 404", werr, msg.Data)
			}
		case werr != nil:
			return fmt.Errorf("get %d: %v", seq, werr)
		case string(msg.Data) != m.msgs[seq-1]:
			return fmt.Errorf("get %d = %q, want %q", seq, msg.Data, m.msgs[seq-1])
		}
	case op < 9: // inventory
		msg, werr, err := req(subjects.OpInventory, "")
		if err != nil {
			return err
		}
		if werr != nil {
			if werr.Reason == "overloaded" {
				return nil
			}
			return fmt.Errorf("inventory: %v", werr)
		}
		var inv store.Inventory
		if err := json.Unmarshal(msg.Data, &inv); err != nil {
			return err
		}
		if inv.Count != int64(len(m.msgs)) {
			return fmt.Errorf("inventory count %d, want %d", inv.Count, len(m.msgs))
		}
	default: // destroy
		_, werr, err := req(subjects.OpDestroy, "")
		if err != nil {
			return err
		}
		switch {
		case werr != nil && werr.Reason == "overloaded":
		case !m.exists:
			if werr == nil || werr.Code != 404 {
				return fmt.Errorf("destroy of a missing stream: %v, want 404", werr)
			}
		case werr != nil:
			return fmt.Errorf("destroy: %v", werr)
		default:
			*m = streamModel{}
		}
	}
	return nil
}

// TestBroker_TinyCapNo500 loads a broker that may open three files with
// concurrent requests on twelve streams: no request is answered 500 (an
// open with every slot busy is 429 overloaded), and the process never
// holds more descriptors than three open streams take, each with one more
// for a moment while it opens (the header check, the directory SQLite
// fsyncs when it creates the -wal).
func TestBroker_TinyCapNo500(t *testing.T) {
	const streams, clients, perClient, maxOpen = 12, 8, 40, 3
	f := newFixture(t, Options{MaxOpen: maxOpen})
	fds := func() int {
		des, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd to count descriptors in")
		}
		return len(des)
	}
	// The reading of the directory holds one descriptor itself, counted
	// in both.
	limit := fds() + maxOpen*(store.FilesPerStream+1)
	var (
		mu               sync.Mutex
		maxFDs, ok, busy int
		wg               sync.WaitGroup
	)
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for n := range perClient {
				name := fmt.Sprintf("tiny.s%d", rng.IntN(streams))
				op, body := subjects.OpSet, fmt.Sprintf("c%dn%d", c, n)
				switch rng.IntN(4) {
				case 0:
					op, body = subjects.OpGet, `{"seq":1}`
				case 1:
					op, body = subjects.OpSetMany, `[{"data":"eA=="},{"data":"eQ=="}]`
				}
				m, err := f.nc.Request(subjects.APISubject(subjects.DefaultPrefix, op, name), []byte(body), 10*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				werr := replyError(m)
				// Under mu: each reading of the directory holds a
				// descriptor, and only one may be counted.
				mu.Lock()
				maxFDs = max(maxFDs, fds())
				switch {
				case werr == nil:
					ok++
				case werr.Reason == "overloaded":
					busy++
				case op == subjects.OpGet && werr.Code == 404:
					ok++ // not written yet
				default:
					t.Errorf("%s %s: %v", op, name, werr)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok == 0 {
		t.Fatalf("no request succeeded (%d overloaded)", busy)
	}
	if maxFDs > limit {
		t.Errorf("%d descriptors open at most, want at most %d (cap %d × (%d + 1) per stream)", maxFDs, limit, maxOpen, store.FilesPerStream)
	}
	f.quiet(t)
	checkRegistry(t, f.b)
	t.Logf("%d answered, %d overloaded, %d descriptors at most (limit %d)", ok, busy, maxFDs, limit)
}

// TestBroker_TrimThenClose drives the janitor with a fake clock and its
// own ticks: an idle stream is trimmed once after TrimDelay, stays open
// and answers from the cache, is trimmed again after being used, and is
// closed at IdleTimeout.
func TestBroker_TrimThenClose(t *testing.T) {
	f := newFixture(t, Options{})
	f.b.Shutdown(context.Background())
	tick := make(chan time.Time)
	f.start(t, Options{TrimDelay: 2 * time.Second, IdleTimeout: time.Minute}, hooks{now: f.clock.now, tick: tick})
	// The janitor takes the second tick only once the first one's work is
	// done; the second finds nothing more at the same time.
	step := func(d time.Duration) Stats {
		f.quiet(t)
		f.clock.advance(d)
		tick <- time.Time{}
		tick <- time.Time{}
		return f.stats(t)
	}
	f.set(t, "acme.t", "1", nil)
	if s := step(time.Second); s.Trims != 0 || s.OpenFiles != 1 {
		t.Fatalf("after 1 s idle: %+v, want open and not trimmed", s)
	}
	if s := step(time.Second); s.Trims != 1 || s.OpenFiles != 1 || s.IdleStreams != 1 {
		t.Fatalf("after 2 s idle: %+v, want trimmed once and still open", s)
	}
	if s := step(10 * time.Second); s.Trims != 1 {
		t.Fatalf("trimmed stream trimmed again while idle: %+v", s)
	}
	before := f.stats(t)
	if m := f.call(t, subjects.OpGet, "acme.t", `{"seq":1}`, nil); string(m.Data) != "1" {
		t.Fatalf("get after trim = %q", m.Data)
	}
	if s := f.stats(t); s.CacheMisses != before.CacheMisses {
		t.Fatalf("a trimmed stream was reopened: %+v", s)
	}
	if s := step(2 * time.Second); s.Trims != 2 || s.OpenFiles != 1 {
		t.Fatalf("used, then idle 2 s: %+v, want trimmed again", s)
	}
	if s := step(time.Minute); s.OpenFiles != 0 || s.OpenStreams != 0 {
		t.Fatalf("idle past IdleTimeout: %+v, want closed", s)
	}
	if r := f.set(t, "acme.t", "2", nil); r.Seq != 2 {
		t.Fatalf("seq after reopen = %d, want 2", r.Seq)
	}
}

// TestBroker_MayServe checks the seam for partition ownership: a stream
// the hook refuses is answered with its error before anything is opened
// or created, and the others are served.
func TestBroker_MayServe(t *testing.T) {
	f := newFixture(t, Options{})
	f.b.Shutdown(context.Background())
	f.start(t, Options{}, hooks{noJanitor: true, mayServe: func(stream string) error {
		if stream == "other.s" {
			return subjects.ErrUnavailable.WithDescription("served by another worker")
		}
		return nil
	}})
	f.callErr(t, subjects.OpSet, "other.s", "1", nil, subjects.ErrUnavailable)
	f.callErr(t, subjects.OpGet, "other.s", `{"seq":1}`, nil, subjects.ErrUnavailable)
	if r := f.set(t, "acme.s", "1", nil); r.Seq != 1 {
		t.Fatalf("set on a served stream: seq = %d, want 1", r.Seq)
	}
	for _, name := range files(t, f.dir) {
		if strings.HasPrefix(name, "other") {
			t.Fatalf("refused stream has file %s", name)
		}
	}
}
