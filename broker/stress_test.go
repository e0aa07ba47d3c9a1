package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// TestBroker_StressLifecycle hammers a few streams with every kind of
// request while the janitor closes idle streams every few milliseconds and
// MaxOpen forces evictions, then checks the invariants that must hold
// whatever the interleaving: every request answered exactly once, events of
// each stream incarnation gap-free with strictly increasing seqs, as many
// set events as acknowledged writes, and no quota or file count left over.
func TestBroker_StressLifecycle(t *testing.T) {
	srv := runServer(t)
	bnc, nc := connect(t, srv), connect(t, srv)
	dir := t.TempDir()
	b, err := newBroker(bnc, Options{
		DataDir:                dir,
		IdleTimeout:            time.Millisecond,
		MaxOpen:                2,
		MaxStreamsPerNamespace: 100,
		MemoryQuota:            1 << 20,
	}, hooks{now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())

	var evMu sync.Mutex
	events := map[string][]*nats.Msg{}
	evSub, err := nc.Subscribe("persist.ev.>", func(m *nats.Msg) {
		evMu.Lock()
		events[strings.TrimPrefix(m.Subject, "persist.ev.")] = append(events[strings.TrimPrefix(m.Subject, "persist.ev.")], m)
		evMu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	evSub.SetPendingLimits(-1, -1)

	var repMu sync.Mutex
	replies := map[string][]*nats.Msg{}
	repSub, err := nc.Subscribe("_R.>", func(m *nats.Msg) {
		repMu.Lock()
		replies[m.Subject] = append(replies[m.Subject], m)
		repMu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	repSub.SetPendingLimits(-1, -1)
	nc.Flush()

	streams := []string{"acme.a", "acme.b", "acme.c", "acme.d", "acme.m"}
	type sent struct{ op, stream, reply string }
	var sentMu sync.Mutex
	var all []sent
	const workers, perWorker = 8, 250
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range perWorker {
				stream := streams[r.IntN(len(streams))]
				var op, body string
				switch k := r.IntN(20); {
				case stream == "acme.m" && k < 2:
					op, body = subjects.OpConfig, `{"storage":"memory","max_msgs":50}`
				case k < 8:
					op, body = subjects.OpSet, "x"
				case k < 10:
					op, body = subjects.OpSetMany, `[{"data":"eA=="},{"data":"eA==","key":"k"},{"data":"eA==","key":""}]`
				case k < 12:
					op, body = subjects.OpGet, `{"seq":1}`
				case k < 13:
					op = subjects.OpDestroy
				case k < 14:
					op, body = subjects.OpConfig, fmt.Sprintf(`{"max_msgs":%d}`, 5+r.IntN(20))
				case k < 15:
					op, body = subjects.OpDelete, `{"last_seq":3}`
				case k < 16:
					op = subjects.OpInventory
				default:
					op = subjects.OpGetAll
				}
				reply := fmt.Sprintf("_R.%d.%d", w, i)
				sentMu.Lock()
				all = append(all, sent{op, stream, reply})
				sentMu.Unlock()
				if err := nc.PublishRequest(subjects.APISubject(subjects.DefaultPrefix, op, stream), reply, []byte(body)); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					time.Sleep(2 * time.Millisecond) // let streams go idle now and then
				}
			}
		}()
	}
	wg.Wait()
	nc.Flush()
	waitFor(t, "every request answered", func() bool {
		repMu.Lock()
		defer repMu.Unlock()
		n := 0
		for _, s := range all {
			if len(replies[s.reply]) > 0 {
				n++
			}
		}
		return n == len(all)
	})
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Everything the worker sent is delivered before the round trip ends.
	nc.Flush()
	repMu.Lock()
	evMu.Lock()
	defer repMu.Unlock()
	defer evMu.Unlock()

	acked := map[string]int{}
	for _, s := range all {
		ms := replies[s.reply]
		if s.op != subjects.OpGetAll && len(ms) != 1 {
			t.Errorf("%s %s: %d replies, want 1", s.op, s.stream, len(ms))
			continue
		}
		if s.op == subjects.OpGetAll {
			last := ms[len(ms)-1]
			if last.Header.Get(subjects.HeaderEnd) != "true" && replyError(last) == nil {
				t.Errorf("getall %s: page ends without terminator", s.stream)
			}
			continue
		}
		werr := replyError(ms[0])
		switch s.op {
		case subjects.OpSet:
			if werr == nil {
				acked[s.stream]++
			} else if werr.Code >= 500 && werr.Reason != "limit_reached" {
				t.Errorf("set %s: %v", s.stream, werr)
			}
		case subjects.OpSetMany:
			// Back-pressure (a request that waited past MaxWait on a
			// loaded machine) applies nothing; anything else is a failure.
			if werr != nil {
				if werr.Reason != subjects.ErrOverloaded.Reason {
					t.Errorf("setmany %s: %v", s.stream, werr)
				}
				continue
			}
			var items []json.RawMessage
			if err := json.Unmarshal(ms[0].Data, &items); err != nil || len(items) != 3 {
				t.Errorf("setmany %s: reply %q", s.stream, ms[0].Data)
				continue
			}
			for _, it := range items {
				if !strings.Contains(string(it), `"error"`) {
					acked[s.stream]++
				}
			}
		default:
			if werr != nil && werr.Code >= 500 {
				t.Errorf("%s %s: %v", s.op, s.stream, werr)
			}
		}
	}

	for _, stream := range streams {
		evs := events[stream]
		sets := 0
		var rev, seq uint64
		for _, m := range evs {
			r, _ := strconv.ParseUint(m.Header.Get(subjects.HeaderRevision), 10, 64)
			if r != rev+1 {
				t.Errorf("%s: event %s with revision %d after %d", stream, m.Header.Get(subjects.HeaderOp), r, rev)
			}
			rev = r
			switch m.Header.Get(subjects.HeaderOp) {
			case "destroy":
				rev, seq = 0, 0
			case "set":
				sets++
				s, _ := strconv.ParseUint(m.Header.Get(subjects.HeaderSeq), 10, 64)
				if s <= seq {
					t.Errorf("%s: set event seq %d after %d", stream, s, seq)
				}
				seq = s
			}
		}
		if sets != acked[stream] {
			t.Errorf("%s: %d set events, %d writes acknowledged", stream, sets, acked[stream])
		}
	}
	if n := b.quota.Used(); n != 0 {
		t.Errorf("memory quota used after shutdown = %d, want 0", n)
	}
	if n, m := len(b.slots), b.openStreams.Load(); n != 0 || m != 0 {
		t.Errorf("after shutdown: %d open files, %d open streams, want 0", n, m)
	}
	onDisk, err := b.countStreams("acme")
	if err != nil {
		t.Fatal(err)
	}
	// The memory stream, if it lives, is counted but gone from disk.
	if got := b.nsCount["acme"]; got != onDisk && got != onDisk+1 {
		t.Errorf("namespace count = %d, %d streams on disk", got, onDisk)
	}
}
