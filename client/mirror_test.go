package client_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
)

// snapshot is a stream's content as "seq key data" lines.
func snapshot(msgs []*client.Msg) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "%d %q %q\n", m.Seq, m.Key, m.Data)
	}
	return b.String()
}

// streamSnapshot reads the whole stream and its revision; it retries
// until two reads agree, so that a read between writes is not taken for
// the content.
func streamSnapshot(tb testing.TB, st *client.Stream) (string, uint64) {
	tb.Helper()
	ctx := context.Background()
	var msgs []*client.Msg
	for m, err := range st.GetAll(ctx, client.Query{}) {
		if err != nil {
			tb.Fatalf("GetAll() error = %v", err)
		}
		msgs = append(msgs, m)
	}
	inv, err := st.Inventory(ctx)
	if err != nil {
		tb.Fatalf("Inventory() error = %v", err)
	}
	return snapshot(msgs), inv.Revision
}

// waitMirrored waits until m holds exactly what st holds, at its revision.
func waitMirrored(tb testing.TB, m *client.Mirror, st *client.Stream) {
	tb.Helper()
	want, rev := streamSnapshot(tb, st)
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := snapshot(m.Msgs())
		if got == want && m.Revision() == rev && m.Synced() {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("mirror at revision %d holds\n%s\nwant revision %d with\n%s(stats %+v)", m.Revision(), got, rev, want, m.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// churn writes a mix of every kind of change to st.
func churn(tb testing.TB, st *client.Stream, round, n int) {
	tb.Helper()
	ctx := context.Background()
	for i := range n {
		var err error
		switch i % 6 {
		case 0, 1:
			_, err = st.Set(ctx, fmt.Appendf(nil, "r%d-%d", round, i))
		case 2, 3:
			_, err = st.Set(ctx, fmt.Appendf(nil, "r%d-%d", round, i), client.WithKey(fmt.Sprintf("k%d", i%5)))
		case 4:
			_, err = st.DeleteKey(ctx, fmt.Sprintf("k%d", (i+1)%5))
		case 5:
			var inv client.Inventory
			if inv, err = st.Inventory(ctx); err == nil && inv.FirstSeq > 0 {
				_, err = st.DeleteSeq(ctx, inv.FirstSeq)
			}
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

func TestMirror(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClient(t)
	st := c.Stream("acme.mirror")
	churn(t, st, 0, 2500) // more than a page
	var updates atomic.Int64
	m, err := st.Mirror(ctx, client.WithOnUpdate(func(client.Update) { updates.Add(1) }))
	if err != nil {
		t.Fatalf("Mirror() error = %v", err)
	}
	defer m.Close()
	if err := m.Wait(ctx); err != nil {
		t.Fatalf("Wait() error = %v", err)
	}
	waitMirrored(t, m, st)
	select {
	case <-m.Ready():
	default:
		t.Fatal("Ready() not closed after Wait")
	}
	for _, msg := range m.Msgs() {
		if got, ok := m.Get(msg.Seq); !ok || got != msg {
			t.Fatalf("Get(%d) = %v, %v; want the message Msgs holds", msg.Seq, got, ok)
		}
	}
	if _, ok := m.Get(1 << 40); ok {
		t.Fatal("Get(absent seq) ok")
	}
	if _, ok := m.GetKey("absent"); ok {
		t.Fatal("GetKey(absent) ok")
	}
	if got, want := updates.Load(), int64(m.Len()); got != want {
		t.Fatalf("updates during the first read = %d, want one per message, %d", got, want)
	}

	churn(t, st, 1, 300)
	waitMirrored(t, m, st)
	if m.Stats().Events == 0 {
		t.Fatalf("stats %+v: no live event applied", m.Stats())
	}
	if msg, ok := m.GetKey("k2"); ok {
		if got, err := st.GetKey(ctx, "k2"); err != nil || got.Seq != msg.Seq {
			t.Fatalf("GetKey(k2) = %d, stream has %+v, %v", msg.Seq, got, err)
		}
	}
	keys := m.Keys()
	var want []string
	for k, err := range st.Keys(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, k)
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("Keys() = %v, want %v", keys, want)
	}

	t.Run("Destroy", func(t *testing.T) {
		if err := st.Destroy(ctx); err != nil {
			t.Fatal(err)
		}
		churn(t, st, 2, 10)
		waitMirrored(t, m, st)
	})
	t.Run("Close", func(t *testing.T) {
		m.Close()
		select {
		case <-m.Done():
		default:
			t.Fatal("Done() not closed after Close")
		}
		if err := m.Err(); err == nil {
			t.Fatal("Err() after Close = nil")
		}
		if m.Len() == 0 {
			t.Fatal("content gone after Close")
		}
	})
}

// TestMirror_DroppedEvents holds the mirror back while the stream
// changes, with room for five waiting events: the rest are dropped, and
// the mirror must notice and catch up.
func TestMirror_DroppedEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClient(t)
	st := c.Stream("acme.slow")
	churn(t, st, 0, 20)
	var hold atomic.Bool
	release := make(chan struct{})
	m, err := st.Mirror(ctx, client.WithPendingLimits(5, -1), client.WithCheckInterval(200*time.Millisecond),
		client.WithOnUpdate(func(client.Update) {
			if hold.Load() {
				<-release
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	waitMirrored(t, m, st)
	hold.Store(true)
	churn(t, st, 1, 200)
	hold.Store(false)
	close(release)
	waitMirrored(t, m, st)
	if s := m.Stats(); s.Gaps == 0 || s.CatchUps == 0 || s.Reloads != 1 {
		t.Fatalf("stats %+v: want a gap noticed and caught up with changes, not read again", s)
	}

	t.Run("NothingAfter", func(t *testing.T) {
		// Nothing follows the dropped events, so no revision gap shows:
		// the subscription's slow-consumer signal must make the mirror
		// notice.
		before := m.Stats()
		hold.Store(true)
		release = make(chan struct{})
		churn(t, st, 2, 60)
		hold.Store(false)
		close(release)
		waitMirrored(t, m, st)
		if s := m.Stats(); s.Gaps == before.Gaps {
			t.Fatalf("stats %+v after %+v: want the gap noticed", s, before)
		}
	})
	t.Run("Recreated", func(t *testing.T) {
		// The stream is destroyed and written again while the mirror is
		// held back: its revisions start again lower than the mirror's.
		hold.Store(true)
		release = make(chan struct{})
		churn(t, st, 3, 30)
		if err := st.Destroy(ctx); err != nil {
			t.Fatal(err)
		}
		before := m.Stats()
		churn(t, st, 4, 40)
		hold.Store(false)
		close(release)
		waitMirrored(t, m, st)
		if s := m.Stats(); s.Reloads == before.Reloads {
			t.Fatalf("stats %+v after %+v: want the stream read again (revision_gone)", s, before)
		}
	})
}

func TestMirror_WorkerRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := runServer(t)
	dir := t.TempDir()
	b := startWorker(t, s, dir)
	st := client.New(connect(t, s), fastRetry).Stream("acme.wr")
	churn(t, st, 0, 50)
	m, err := st.Mirror(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitMirrored(t, m, st)
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	startWorker(t, s, dir)
	churn(t, st, 1, 50)
	waitMirrored(t, m, st)
}

// TestMirror_NATSRestart restarts the NATS server. The worker and the
// writer reconnect at once; the mirror's connection comes back later, so
// it misses the writes made meanwhile, with no event after them: the
// reconnect alone must make it catch up.
func TestMirror_NATSRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true}
	s := runServerOpts(t, opts)
	opts.Port = s.Addr().(*net.TCPAddr).Port
	url := s.ClientURL()
	dial := func(wait time.Duration) *nats.Conn {
		nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(wait), nats.ReconnectJitter(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	startWorkerConn(t, dial(20*time.Millisecond), t.TempDir())
	writer := dial(20 * time.Millisecond)
	st := client.New(writer, fastRetry).Stream("acme.nr")
	churn(t, st, 0, 30)
	mnc := dial(2 * time.Second)
	m, err := client.New(mnc).Stream("acme.nr").Mirror(ctx, client.WithCheckInterval(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitMirrored(t, m, st)

	s.Shutdown()
	runServerOpts(t, opts)
	waitFor(t, "the writer to reconnect", writer.IsConnected)
	churn(t, st, 1, 30) // retried until the worker is back
	if mnc.IsConnected() {
		t.Log("the mirror's connection came back before the writes; the test proves less")
	}
	waitMirrored(t, m, st)
	if s := m.Stats(); s.CatchUps == 0 || s.Reloads != 1 {
		t.Fatalf("stats %+v: want a catch-up with changes, not a second read", s)
	}
}

// TestMirror_ChangesWindow lets more deletes go by a held-back mirror
// than the worker keeps: changes answers revision_gone, and the mirror
// reads the stream again.
func TestMirror_ChangesWindow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := runServer(t)
	nc := connect(t, s)
	b, err := broker.New(nc, broker.Options{DataDir: t.TempDir(), ChangesWindow: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(context.Background()) })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	st := client.New(connect(t, s)).Stream("acme.window")
	churn(t, st, 0, 12)
	var hold atomic.Bool
	release := make(chan struct{})
	m, err := st.Mirror(ctx, client.WithPendingLimits(2, -1), client.WithOnUpdate(func(client.Update) {
		if hold.Load() {
			<-release
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitMirrored(t, m, st)
	hold.Store(true)
	churn(t, st, 1, 60) // 20 deletes, far more than the window
	hold.Store(false)
	close(release)
	waitMirrored(t, m, st)
	if s := m.Stats(); s.CatchUps == 0 || s.Reloads < 2 {
		t.Fatalf("stats %+v: want a catch-up answered revision_gone, then a second read", s)
	}
}
