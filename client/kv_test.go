package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-persist/persist/client"
)

func TestKV(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	kv := c.KV("acme.kv")
	if kv.Stream().Name() != "acme.kv" {
		t.Fatalf("Stream().Name() = %q", kv.Stream().Name())
	}
	seq, err := kv.Create(ctx, "a", []byte("1"))
	if err != nil {
		t.Fatalf("Create(a) error = %v", err)
	}
	if _, err := kv.Create(ctx, "a", []byte("again")); !errors.Is(err, client.ErrWrongLastSequence) {
		t.Fatalf("Create(a) again error = %v, want wrong_last_sequence", err)
	}
	e, err := kv.Get(ctx, "a")
	if err != nil || string(e.Value) != "1" || e.Seq != seq || e.Op != client.KVPut || e.Key != "a" || e.Time == 0 {
		t.Fatalf("Get(a) = %+v, %v; want value 1 at seq %d", e, err, seq)
	}
	seq2, err := kv.Update(ctx, "a", []byte("2"), seq)
	if err != nil {
		t.Fatalf("Update(a, %d) error = %v", seq, err)
	}
	if _, err := kv.Update(ctx, "a", []byte("3"), seq); !errors.Is(err, client.ErrWrongLastSequence) {
		t.Fatalf("Update(a, stale %d) error = %v, want wrong_last_sequence", seq, err)
	}
	if _, err := kv.Put(ctx, "b", []byte("x")); err != nil {
		t.Fatalf("Put(b) error = %v", err)
	}
	if e, err := kv.Get(ctx, "a"); err != nil || e.Seq != seq2 || string(e.Value) != "2" {
		t.Fatalf("Get(a) = %+v, %v; want 2 at seq %d", e, err, seq2)
	}
	if err := kv.Delete(ctx, "b"); err != nil {
		t.Fatalf("Delete(b) error = %v", err)
	}
	if err := kv.Delete(ctx, "b"); err != nil {
		t.Fatalf("Delete(b) again error = %v", err)
	}
	if _, err := kv.Get(ctx, "b"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get(b) after Delete error = %v, want not_found", err)
	}
	if _, err := kv.Put(ctx, " padded", nil); !errors.Is(err, client.ErrInvalidHeader) {
		t.Fatalf("Put(padded key) error = %v, want ErrInvalidHeader", err)
	}
	var keys []string
	for k, err := range kv.Keys(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if !slices.Equal(keys, []string{"a"}) {
		t.Fatalf("Keys() = %v, want [a]", keys)
	}
}

func TestKV_Watch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newClient(t)
	kv := c.KV("acme.kvw")
	for _, k := range []string{"x", "y", "z"} {
		if _, err := kv.Put(ctx, k, []byte(k+"0")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Stream().Set(ctx, []byte("unkeyed")); err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch() error = %v", err)
	}
	defer w.Stop()
	next := func() *client.KVEntry {
		t.Helper()
		select {
		case e, ok := <-w.Updates():
			if !ok {
				t.Fatal("Updates() closed")
			}
			return e
		case <-ctx.Done():
			t.Fatal("no update")
		}
		return nil
	}
	show := func(e *client.KVEntry) string {
		if e == nil {
			return "<caught up>"
		}
		return fmt.Sprintf("%s %s=%s", e.Op, e.Key, e.Value)
	}
	var got []string
	for range 4 {
		got = append(got, show(next()))
	}
	if want := []string{"put x=x0", "put y=y0", "put z=z0", "<caught up>"}; !slices.Equal(got, want) {
		t.Fatalf("initial updates = %q, want %q", got, want)
	}
	if _, err := kv.Put(ctx, "y", []byte("y1")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "w", []byte("w0")); err != nil {
		t.Fatal(err)
	}
	got = nil
	for range 3 {
		got = append(got, show(next()))
	}
	if want := []string{"put y=y1", "delete x=", "put w=w0"}; !slices.Equal(got, want) {
		t.Fatalf("updates = %q, want %q", got, want)
	}
	w.Stop()
	for range w.Updates() { // drains, then is closed
	}
}

func TestKV_BadKey(t *testing.T) {
	ctx := context.Background()
	kv := newClient(t).KV("acme.kvbad")
	if _, err := kv.Get(ctx, "k "); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("Get(padded key) error = %v, want bad_request", err)
	}
	if err := kv.Delete(ctx, ""); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("Delete(empty key) error = %v, want bad_request", err)
	}
}
