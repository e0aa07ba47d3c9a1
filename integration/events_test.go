package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
)

// nextEvent waits for the next event and fails the test on any error.
func nextEvent(tb testing.TB, w *client.Watcher) client.Event {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := w.Next(ctx)
	if err != nil {
		tb.Fatalf("Watcher.Next() error = %v", err)
	}
	return ev
}

func TestEvents_RevisionAcrossRestart(t *testing.T) {
	ctx := context.Background()
	s := runServer(t, -1)
	dir := t.TempDir()
	c := client.New(connect(t, s.ClientURL()))
	st := c.Stream("acme.events")
	w, err := st.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	var rev, seq uint64
	expect := func(t *testing.T, op string) client.Event {
		t.Helper()
		ev := nextEvent(t, w)
		rev++
		if ev.Revision != rev || ev.Op != op {
			t.Fatalf("event = %s rev %d, want %s rev %d", ev.Op, ev.Revision, op, rev)
		}
		if op == "set" {
			seq++
			if ev.Msg.Seq != seq {
				t.Fatalf("set event seq = %d, want %d", ev.Msg.Seq, seq)
			}
		}
		return ev
	}
	for round := range 3 {
		b := startBroker(t, s, broker.Options{DataDir: dir})
		for i := range 5 {
			if _, err := st.Set(ctx, fmt.Appendf(nil, "r%d-%d", round, i), client.WithKey(fmt.Sprintf("k%d", i%2))); err != nil {
				t.Fatal(err)
			}
			expect(t, "set")
		}
		if _, err := st.DeleteSeq(ctx, seq); err != nil {
			t.Fatal(err)
		}
		if ev := expect(t, "delete"); ev.Reason != "request" || len(ev.Ranges) != 1 || ev.Ranges[0] != [2]uint64{seq, seq} {
			t.Fatalf("delete event = %+v, want [[%d %d]] by request", ev, seq, seq)
		}
		n := int64(100 + round)
		if _, err := st.UpdateConfig(ctx, client.ConfigPatch{MaxMsgs: &n}); err != nil {
			t.Fatal(err)
		}
		if ev := expect(t, "config"); ev.Config.MaxMsgs != n {
			t.Fatalf("config event = %+v, want max_msgs %d", ev.Config, n)
		}
		// A change that changes nothing is no event: the next one must
		// still be rev+1.
		if _, err := st.UpdateConfig(ctx, client.ConfigPatch{MaxMsgs: &n}); err != nil {
			t.Fatal(err)
		}
		inv, err := st.Inventory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if inv.Revision != rev || inv.LastSeq != seq {
			t.Fatalf("Inventory() = rev %d last seq %d, want %d and %d", inv.Revision, inv.LastSeq, rev, seq)
		}
		shutdown(t, b)
	}

	t.Run("Destroy", func(t *testing.T) {
		startBroker(t, s, broker.Options{DataDir: dir})
		if err := st.Destroy(ctx); err != nil {
			t.Fatal(err)
		}
		expect(t, "destroy")
		if _, err := st.Set(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if ev := nextEvent(t, w); ev.Revision != 1 || ev.Msg.Seq != 1 {
			t.Fatalf("first event after destroy = rev %d seq %d, want 1 and 1", ev.Revision, ev.Msg.Seq)
		}
	})
}

// mirror is a live copy of a stream built from getall pages and events,
// as PROTOCOL.md section 5 describes.
type mirror struct {
	msgs map[uint64]*client.Msg
	keys map[string]uint64
	rev  uint64
}

func (m *mirror) put(msg *client.Msg) {
	if old, ok := m.keys[msg.Key]; ok && msg.Key != "" && old != msg.Seq {
		delete(m.msgs, old)
	}
	if _, ok := m.msgs[msg.Seq]; ok {
		return
	}
	m.msgs[msg.Seq] = msg
	if msg.Key != "" {
		m.keys[msg.Key] = msg.Seq
	}
}

func (m *mirror) remove(seq uint64) {
	if msg, ok := m.msgs[seq]; ok {
		if msg.Key != "" && m.keys[msg.Key] == seq {
			delete(m.keys, msg.Key)
		}
		delete(m.msgs, seq)
	}
}

func (m *mirror) apply(tb testing.TB, ev client.Event) {
	tb.Helper()
	if ev.Revision <= m.rev {
		return
	}
	if ev.Revision != m.rev+1 {
		tb.Fatalf("event gap: revision %d after %d", ev.Revision, m.rev)
	}
	m.rev = ev.Revision
	switch ev.Op {
	case "set":
		m.put(ev.Msg)
	case "delete":
		for _, r := range ev.Ranges {
			for seq := r[0]; seq <= r[1]; seq++ {
				m.remove(seq)
			}
		}
	}
}

func TestEvents_LiveMirror(t *testing.T) {
	ctx := context.Background()
	s := runServer(t, -1)
	startBroker(t, s, broker.Options{})
	writer := client.New(connect(t, s.ClientURL())).Stream("acme.live")
	reader := client.New(connect(t, s.ClientURL())).Stream("acme.live")
	// A low max_msgs makes the worker delete messages on its own too.
	limit := int64(300)
	if _, err := writer.UpdateConfig(ctx, client.ConfigPatch{MaxMsgs: &limit}); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if _, err := writer.Set(ctx, fmt.Appendf(nil, "pre%d", i), client.WithKey(fmt.Sprintf("k%d", i%50))); err != nil {
			t.Fatal(err)
		}
	}

	// Writes of every kind keep flowing while the mirror starts.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writeErr error
	wg.Go(func() {
		r := rand.New(rand.NewPCG(1, 2))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var err error
			switch n := r.IntN(10); {
			case n < 5:
				_, err = writer.Set(ctx, fmt.Appendf(nil, "w%d", i))
			case n < 8:
				_, err = writer.Set(ctx, fmt.Appendf(nil, "w%d", i), client.WithKey(fmt.Sprintf("k%d", r.IntN(80))))
			case n < 9:
				_, err = writer.DeleteKey(ctx, fmt.Sprintf("k%d", r.IntN(80)))
			default:
				var inv client.Inventory
				if inv, err = writer.Inventory(ctx); err == nil && inv.FirstSeq > 0 {
					_, err = writer.DeleteSeqs(ctx, inv.FirstSeq, inv.FirstSeq+2)
				}
			}
			if err != nil {
				writeErr = err
				return
			}
		}
	})

	w, err := reader.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	m := &mirror{msgs: map[uint64]*client.Msg{}, keys: map[string]uint64{}}
	q := client.Query{MaxMsgs: 37}
	first := true
	for {
		p, err := reader.GetAllPage(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if first {
			m.rev, first = p.Revision, false
		}
		for _, msg := range p.Msgs {
			m.put(msg)
		}
		if p.NumPending == 0 {
			break
		}
		q.StartSeq = p.NextSeq
	}
	// Pages read after the first one may miss messages deleted in the
	// meantime or hold newer ones; the events above revision R repair
	// both, and applying an event twice changes nothing.
	for range 200 {
		m.apply(t, nextEvent(t, w))
	}
	close(stop)
	wg.Wait()
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	inv, err := reader.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for m.rev < inv.Revision {
		m.apply(t, nextEvent(t, w))
	}

	want := readAll(t, reader)
	if len(m.msgs) != len(want) {
		t.Fatalf("mirror holds %d messages, the stream %d", len(m.msgs), len(want))
	}
	for seq, msg := range want {
		got, ok := m.msgs[seq]
		if !ok || string(got.Data) != string(msg.Data) || got.Key != msg.Key {
			t.Fatalf("mirror seq %d = %+v, want %+v", seq, got, msg)
		}
	}
}
