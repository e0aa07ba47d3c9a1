package broker

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/store"
)

// TestShutdown_NATSGone stops a broker whose NATS server went away with
// one setmany being applied and more queued behind it: Shutdown returns
// nil at once (no flush waited for), the setmany in progress is committed
// whole, and none of the queued ones, which could not be answered, is
// applied.
func TestShutdown_NATSGone(t *testing.T) {
	s := runServer(t)
	dir := t.TempDir()
	bnc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bnc.Close)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	b, err := newBroker(bnc, Options{DataDir: dir}, hooks{noJanitor: true, beforeJob: func(op, stream string) {
		once.Do(func() {
			close(entered)
			<-release
		})
	}})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	if err := bnc.Flush(); err != nil {
		t.Fatal(err)
	}

	const items, queued = 5, 10
	body := []byte("[" + strings.TrimSuffix(strings.Repeat(`{"data":""},`, items), ",") + "]")
	nc := connect(t, s)
	inbox := nats.NewInbox()
	if err := nc.PublishRequest("persist.api.setmany.acme.q", inbox, body); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the first setmany was not taken")
	}
	for range queued {
		if err := nc.PublishRequest("persist.api.setmany.acme.q", inbox, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the setmany requests queued", func() bool { return b.queued.Load() == queued })

	s.Shutdown()
	waitFor(t, "the broker's connection lost", func() bool { return !bnc.IsConnected() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Shutdown(ctx) }()
	waitFor(t, "requests not yet started aborted", b.aborted.Load)
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown() with NATS gone = %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown() with NATS gone still waiting after 20s of a one-minute deadline")
	}

	st, err := store.Open(filepath.Join(dir, "acme", "q.db"), store.Options{})
	if err != nil {
		t.Fatalf("open the stream file: %v", err)
	}
	defer st.Close()
	inv, err := st.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if inv.Count != items {
		t.Errorf("stream holds %d messages, want %d: the setmany in progress whole, none of the %d queued", inv.Count, items, queued)
	}
}
