package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

func TestNewMsgID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := client.NewMsgID()
		if len(id) != 22 || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" || seen[id] {
			t.Fatalf("NewMsgID() = %q: want 22 base64url bytes, never the same", id)
		}
		seen[id] = true
	}
}

func TestStreamName(t *testing.T) {
	for _, tt := range []struct {
		segs []string
		want string
	}{
		{[]string{"acme"}, "acme"},
		{[]string{"acme", "notes.txt"}, "acme.notes%2Etxt"},
		{[]string{"acme", "..", "a b"}, "acme.%2E%2E.a%20b"},
		{[]string{"ns", "100%"}, "ns.100%25"},
	} {
		got := client.StreamName(tt.segs...)
		if got != tt.want {
			t.Errorf("StreamName(%q) = %q, want %q", tt.segs, got, tt.want)
		}
		if err := subjects.ValidateName(got); err != nil {
			t.Errorf("StreamName(%q) = %q, not a valid name: %v", tt.segs, got, err)
		}
	}
}

// fill writes n keyed messages k00000… to st.
func fill(tb testing.TB, st *client.Stream, n int) []string {
	tb.Helper()
	var keys []string
	for start := 0; start < n; start += client.MaxSetMany {
		items := make([]client.Item, min(client.MaxSetMany, n-start))
		for i := range items {
			items[i] = client.Item{Key: fmt.Sprintf("k%05d", start+i), Data: []byte("v")}
			keys = append(keys, items[i].Key)
		}
		if _, err := st.SetMany(context.Background(), items); err != nil {
			tb.Fatal(err)
		}
	}
	return keys
}

func TestClient_KeysAndListIterate(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	st := c.Stream("acme.many")
	want := fill(t, st, 2500)
	var got []string
	for k, err := range st.Keys(ctx) {
		if err != nil {
			t.Fatalf("Keys() error = %v", err)
		}
		got = append(got, k)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Keys() gave %d keys, want the %d written in order", len(got), len(want))
	}
	for k := range st.Keys(ctx) {
		if k != want[0] {
			t.Fatalf("Keys() first = %q, want %q", k, want[0])
		}
		break
	}
	for k, err := range c.Stream("acme.none").Keys(ctx) {
		t.Fatalf("Keys() of a missing stream yields %q, %v", k, err)
	}

	var names []string
	for i := range 1200 {
		names = append(names, fmt.Sprintf("lots.s%04d", i))
	}
	for _, n := range names {
		if _, err := c.Stream(n).Set(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	var listed []string
	for n, err := range c.List(ctx, "lots") {
		if err != nil {
			t.Fatalf("List() error = %v", err)
		}
		listed = append(listed, n)
	}
	if !slices.Equal(listed, names) {
		t.Fatalf("List(lots) gave %d names, want %d in order", len(listed), len(names))
	}
	for n, err := range c.List(ctx, "bad..prefix") {
		if err == nil || !errors.Is(err, subjects.ErrInvalidName) {
			t.Fatalf("List(bad prefix) = %q, %v; want an invalid name error", n, err)
		}
	}
}

func TestClient_UntrustedPages(t *testing.T) {
	ctx := context.Background()
	s := runServer(t)
	fake := connect(t, s)
	c := client.New(connect(t, s))
	fakeWorker(t, fake, "persist.api.keys.loop", func(req *nats.Msg) { req.Respond([]byte(`{"keys":["a"],"more":true}`)) })
	fakeWorker(t, fake, "persist.api.keys.empty", func(req *nats.Msg) { req.Respond([]byte(`{"keys":[],"more":true}`)) })
	for _, name := range []string{"loop", "empty"} {
		var n int
		var last error
		for _, err := range c.Stream(name).Keys(ctx) {
			if n++; n > 5 {
				t.Fatalf("Keys() of %s keeps going", name)
			}
			last = err
		}
		if !errors.Is(last, client.ErrBadReply) {
			t.Fatalf("Keys() of %s ended with %v, want ErrBadReply", name, last)
		}
	}
}

func TestClient_TooLarge(t *testing.T) {
	ctx := context.Background()
	s := runServer(t)
	nc := connect(t, s)
	c := client.New(nc)
	big := strings.Repeat("x", int(nc.MaxPayload()/2+1))
	_, err := c.Stream("acme").SetMany(ctx, []client.Item{{Data: []byte(big)}, {Data: []byte(big)}})
	if !errors.Is(err, client.ErrTooLarge) || !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("SetMany() above max payload error = %v, want ErrTooLarge", err)
	}
	if _, err := c.Stream("acme").Set(ctx, []byte(big+big)); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("Set() above max payload error = %v, want ErrTooLarge", err)
	}
	if _, err := c.Stream("acme").SetMany(ctx, []client.Item{{Key: " k"}}); !errors.Is(err, client.ErrInvalidHeader) {
		t.Fatalf("SetMany() with a padded key error = %v, want ErrInvalidHeader", err)
	}
}

func TestClient_WatchPattern(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newClient(t)
	w, err := c.Watch(ctx, "acme.>")
	if err != nil {
		t.Fatalf("Watch() error = %v", err)
	}
	defer w.Stop()
	for i, name := range []string{"acme.a", "other.x", "acme.b.c", "acme.a"} {
		if _, err := c.Stream(name).Set(ctx, []byte(name), client.WithMsgID(fmt.Sprint("id-", i))); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for ev, err := range w.Events(ctx) {
		if err != nil {
			t.Fatalf("Events() error = %v", err)
		}
		if ev.Gap != nil {
			t.Fatalf("event %+v has a gap", ev)
		}
		got = append(got, fmt.Sprintf("%s@%d", ev.Stream, ev.Revision))
		if len(got) == 3 {
			break
		}
	}
	if want := []string{"acme.a@1", "acme.b.c@1", "acme.a@2"}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	for _, bad := range []string{"acme.>.x", "acme..x", "a b", ""} {
		if _, err := c.Watch(ctx, bad); err == nil {
			t.Errorf("Watch(%q) error = nil", bad)
		}
	}

	t.Run("Gap", func(t *testing.T) {
		st := c.Stream("acme.gap")
		w, err := st.Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		if err := w.SetPendingLimits(2, -1); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Set(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if ev, err := w.Next(ctx); err != nil || ev.Revision != 1 || ev.Gap != nil {
			t.Fatalf("Next() = %+v, %v; want revision 1 without gap", ev, err)
		}
		for range 50 { // unread: most are dropped
			if _, err := st.Set(ctx, nil); err != nil {
				t.Fatal(err)
			}
		}
		var slow, gap bool
		next := func(wait time.Duration) (client.Event, error) {
			ctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			return w.Next(ctx)
		}
		for { // what was kept
			ev, err := next(500 * time.Millisecond)
			if errors.Is(err, context.DeadlineExceeded) {
				break
			}
			if errors.Is(err, nats.ErrSlowConsumer) {
				slow = true
				continue
			}
			if err != nil {
				t.Fatalf("Next() error = %v", err)
			}
			gap = gap || ev.Gap != nil
		}
		if _, err := st.Set(ctx, nil); err != nil {
			t.Fatal(err)
		}
		ev, err := next(10 * time.Second)
		if err != nil || ev.Revision != 52 {
			t.Fatalf("Next() = %+v, %v; want revision 52", ev, err)
		}
		if !gap && (ev.Gap == nil || ev.Gap.After >= 51) {
			t.Fatalf("Next() = %+v, want a gap: events were dropped", ev)
		}
		if !slow {
			t.Fatal("Next() never reported the slow consumer")
		}
	})
}
