package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

func TestIsRetryable(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{client.ErrOverloaded, true},
		{client.ErrRateLimited, true},
		{client.ErrUnavailable, true},
		{fmt.Errorf("x: %w", client.ErrNoWorker), true},
		{nats.ErrTimeout, true},
		{context.DeadlineExceeded, true},
		{nats.ErrReconnectBufExceeded, true},
		{client.ErrDamaged, false},
		{client.ErrTooManyStreams, false},
		{client.ErrWrongLastSequence, false},
		{client.ErrBadRequest, false},
		{client.ErrLimitReached, false},
		{client.ErrInternal, false},
		{client.ErrRevisionGone, false},
		{&client.Error{Code: 503, Reason: "unknown"}, false},
		{context.Canceled, false},
		{nats.ErrConnectionClosed, false},
		{nil, false},
	} {
		if got := client.IsRetryable(tt.err); got != tt.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// fastRetry retries quickly and often, for tests that provoke failures.
var fastRetry = client.WithRetry(client.Retry{Attempts: 100, Min: 5 * time.Millisecond, Max: 50 * time.Millisecond})

// TestClient_RetryLostReply puts a relay between the client and a real
// worker that swallows the first reply of every request: the client
// times out, retries with the same msg id, and gets the first write's seq
// back as a duplicate, so each write is stored once.
func TestClient_RetryLostReply(t *testing.T) {
	ctx := context.Background()
	s := runServer(t)
	startWorker(t, s, t.TempDir())
	relay := connect(t, s)
	var mu sync.Mutex
	seen := map[string]int{} // request body+msg id → times forwarded
	fakeWorker(t, relay, "relay.api.>", func(req *nats.Msg) {
		fwd := &nats.Msg{Subject: "persist" + req.Subject[len("relay"):], Header: req.Header, Data: req.Data}
		reply, err := relay.RequestMsg(fwd, 5*time.Second)
		if err != nil {
			return
		}
		id := req.Header.Get(subjects.HeaderMsgID) + string(req.Data)
		mu.Lock()
		seen[id]++
		first := seen[id] == 1
		mu.Unlock()
		if first {
			return // the write happened; its reply is lost
		}
		req.RespondMsg(&nats.Msg{Header: reply.Header, Data: reply.Data})
	})
	c := client.New(connect(t, s), client.WithPrefix("relay"), client.WithTimeout(300*time.Millisecond), fastRetry)
	st := c.Stream("acme.retry")

	ack, err := st.Set(ctx, []byte("once"), client.WithKey("k"), client.WithPreviousSeq(0))
	if err != nil {
		t.Fatalf("Set() through a lossy relay error = %v", err)
	}
	if want := uint64(1); ack.Seq != want || !ack.Duplicate {
		t.Fatalf("Set() = %+v, want seq %d acknowledged as a duplicate of the lost first attempt", ack, want)
	}
	res, err := st.SetMany(ctx, []client.Item{{Data: []byte("a")}, {Data: []byte("b"), Key: "k2"}})
	if err != nil {
		t.Fatalf("SetMany() through a lossy relay error = %v", err)
	}
	for i, r := range res {
		if r.Err != nil || r.Seq != uint64(i+2) || !r.Duplicate {
			t.Fatalf("SetMany()[%d] = %+v, want seq %d as a duplicate", i, r, i+2)
		}
	}
	direct := client.New(connect(t, s)).Stream("acme.retry")
	inv, err := direct.Inventory(ctx)
	if err != nil || inv.Count != 3 || inv.LastSeq != 3 {
		t.Fatalf("Inventory() = %+v, %v; want each write stored once: 3 messages", inv, err)
	}

	t.Run("WithoutMsgIDs", func(t *testing.T) {
		c := client.New(connect(t, s), client.WithPrefix("relay"), client.WithTimeout(300*time.Millisecond), client.WithoutMsgIDs(), fastRetry)
		if _, err := c.Stream("acme.retry").Set(ctx, []byte("unsafe")); !client.IsRetryable(err) {
			t.Fatalf("Set() without msg id through a lossy relay error = %v, want the timeout, not a retry", err)
		}
	})
}

// TestClient_RetryWorkerRestart stops the worker, lets a write fail
// while nobody listens, and starts the worker again: the write goes
// through once.
func TestClient_RetryWorkerRestart(t *testing.T) {
	ctx := context.Background()
	s := runServer(t)
	dir := t.TempDir()
	b := startWorker(t, s, dir)
	nc := connect(t, s)
	st := client.New(nc, fastRetry).Stream("acme.restart")
	if _, err := st.Set(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	out := nc.Stats().OutMsgs
	done := make(chan error, 1)
	var ack client.Ack
	go func() {
		var err error
		ack, err = st.Set(ctx, []byte("during"))
		done <- err
	}()
	// Wait until two attempts went out and failed.
	waitFor(t, "two attempts", func() bool { return nc.Stats().OutMsgs >= out+2 })
	startWorker(t, s, dir)
	if err := <-done; err != nil {
		t.Fatalf("Set() across a worker restart error = %v", err)
	}
	if ack.Seq != 2 || ack.Duplicate {
		t.Fatalf("Set() = %+v, want seq 2, written once", ack)
	}
	if inv, err := st.Inventory(ctx); err != nil || inv.Count != 2 {
		t.Fatalf("Inventory() = %+v, %v; want 2 messages", inv, err)
	}
	t.Run("NoWorkerGivesUp", func(t *testing.T) {
		c := client.New(connect(t, runServer(t)), client.WithRetry(client.Retry{Attempts: 3, Min: time.Millisecond}))
		if _, err := c.Stream("acme").Set(ctx, nil); !errors.Is(err, client.ErrNoWorker) {
			t.Fatalf("Set() with no worker error = %v, want ErrNoWorker after the attempts", err)
		}
	})
}

// TestClient_RetryPolicy checks with a scripted worker which failures
// are retried, that a retry carries the same msg id, and that a
// failure for good is not retried.
func TestClient_RetryPolicy(t *testing.T) {
	ctx := context.Background()
	s := runServer(t)
	fake := connect(t, s)
	var ids []string
	var mu sync.Mutex
	var fails atomic.Int64
	fail := func(req *nats.Msg, e *subjects.Error) {
		req.RespondMsg(&nats.Msg{Header: nats.Header{"Nats-Service-Error": {e.Description}, "Nats-Service-Error-Code": {fmt.Sprint(e.Code)}},
			Data: fmt.Appendf(nil, `{"error":{"code":%d,"reason":%q,"description":"x"}}`, e.Code, e.Reason)})
	}
	fakeWorker(t, fake, "persist.api.set.>", func(req *nats.Msg) {
		mu.Lock()
		ids = append(ids, req.Header.Get(subjects.HeaderMsgID))
		mu.Unlock()
		switch req.Subject {
		case "persist.api.set.flaky":
			if fails.Add(1) <= 2 {
				fail(req, subjects.ErrOverloaded)
				return
			}
			req.Respond([]byte(`{"seq":7,"time":1}`))
		case "persist.api.set.damaged":
			fail(req, subjects.ErrDamaged)
		}
	})
	c := client.New(connect(t, s), fastRetry)
	ack, err := c.Stream("flaky").Set(ctx, nil)
	if err != nil || ack.Seq != 7 {
		t.Fatalf("Set() after two 429s = %+v, %v; want seq 7", ack, err)
	}
	if len(ids) != 3 || len(ids[0]) != 22 || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("msg ids of the attempts = %q, want three times one 22-byte id", ids)
	}
	ids = nil
	if _, err := c.Stream("damaged").Set(ctx, nil, client.WithMsgID("mine")); !errors.Is(err, client.ErrDamaged) {
		t.Fatalf("Set() on a damaged stream error = %v, want damaged", err)
	}
	if len(ids) != 1 || ids[0] != "mine" {
		t.Fatalf("msg ids sent = %q, want one attempt with the caller's id", ids)
	}
	ids = nil
	if _, err := client.New(connect(t, s), client.WithoutMsgIDs()).Stream("damaged").Set(ctx, nil); err == nil || len(ids) != 1 || ids[0] != "" {
		t.Fatalf("Set() WithoutMsgIDs sent ids %q, err %v; want one attempt without an id", ids, err)
	}
	t.Run("ContextEndsRetries", func(t *testing.T) {
		fails.Store(-1 << 40) // fail for long
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		slow := client.New(connect(t, s), client.WithRetry(client.Retry{Attempts: 1000, Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}))
		if _, err := slow.Stream("flaky").Set(ctx, nil); !errors.Is(err, client.ErrOverloaded) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Set() error = %v, want overloaded or the deadline once the context ended", err)
		}
	})
}

// startWorker starts a worker on dir and stops it at the end of the test.
func startWorker(tb testing.TB, s interface{ ClientURL() string }, dir string) *broker.Broker {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return startWorkerConn(tb, nc, dir)
}

// startWorkerConn starts a worker on nc and dir and stops it at the end
// of the test.
func startWorkerConn(tb testing.TB, nc *nats.Conn, dir string) *broker.Broker {
	tb.Helper()
	b, err := broker.New(nc, broker.Options{DataDir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b.Shutdown(ctx)
	})
	return b
}

// waitFor polls cond until it holds, failing the test after a generous
// time.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClient_RetryRateLimited writes faster than the stream's rate limit
// allows: each refused write is retried until the limit lets it pass,
// and stored once.
func TestClient_RetryRateLimited(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, fastRetry)
	st := c.Stream("acme.rate")
	two := int64(2)
	if _, err := st.UpdateConfig(ctx, client.ConfigPatch{MaxMsgsPerSecond: &two}); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if _, err := st.Set(ctx, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatalf("Set(%d) error = %v, want it retried past the rate limit", i, err)
		}
	}
	if inv, err := st.Inventory(ctx); err != nil || inv.Count != 6 {
		t.Fatalf("Inventory() = %+v, %v; want 6 messages", inv, err)
	}
	once := client.New(c.Conn(), client.WithRetry(client.Retry{Attempts: 1})).Stream("acme.rate")
	var limited bool
	for range 10 {
		if _, err := once.Set(ctx, nil); errors.Is(err, client.ErrRateLimited) {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("without retries, ten writes at once never met the rate limit")
	}
}
