package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

func TestClient_Locate(t *testing.T) {
	ctx := context.Background()
	s := runServer(t)
	bnc := connect(t, s)
	dir := t.TempDir()
	b, err := broker.New(bnc, broker.Options{DataDir: dir, Name: "docs"})
	if err != nil {
		t.Fatal(err)
	}
	if err := bnc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(context.Background()) })
	c := client.New(connect(t, s))

	loc, err := c.Locate(ctx, "acme.docs")
	if err != nil {
		t.Fatalf("Locate() error = %v", err)
	}
	if want := (client.Location{Stream: "acme.docs", Worker: b.Service().Info().ID, Name: "docs"}); loc != want {
		t.Fatalf("Locate() = %+v, want %+v", loc, want)
	}
	// Locate creates nothing.
	if inv, err := c.Stream("acme.docs").Inventory(ctx); err != nil || inv.Revision != 0 {
		t.Fatalf("Inventory() after Locate = %+v, %v; want a stream that does not exist", inv, err)
	}
	if _, err := c.Locate(ctx, "acme..docs"); !errors.Is(err, subjects.ErrInvalidName) {
		t.Fatalf("Locate(invalid) error = %v, want ErrInvalidName", err)
	}

	t.Run("NoWorker", func(t *testing.T) {
		c := client.New(connect(t, runServer(t)), client.WithRetry(client.Retry{Attempts: 1}))
		if _, err := c.Locate(ctx, "acme.docs"); !errors.Is(err, client.ErrNoWorker) {
			t.Fatalf("Locate() error = %v, want ErrNoWorker", err)
		}
	})

	t.Run("BadReply", func(t *testing.T) {
		// A reply is untrusted: one that names another stream, no worker,
		// or a partition out of range is refused.
		s := runServer(t)
		nc := connect(t, s)
		replies := make(chan string, 1)
		if _, err := nc.Subscribe("persist.api.locate.>", func(m *nats.Msg) { m.Respond([]byte(<-replies)) }); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		c := client.New(connect(t, s), client.WithTimeout(5*time.Second))
		for _, body := range []string{
			`{"stream":"acme.other","worker":"w"}`,
			`{"stream":"acme.docs","worker":""}`,
			`{"stream":"acme.docs","worker":"w","partition":8,"partition_count":8}`,
			`{"stream":"acme.docs","worker":"w","partition":-1,"partition_count":8}`,
			`{"stream":"acme.docs","worker":"w","partition_count":8}`,
			`{"stream":"acme.docs","worker":"w","partition":0}`,
			`[1]`,
		} {
			replies <- body
			if _, err := c.Locate(ctx, "acme.docs"); !errors.Is(err, client.ErrBadReply) {
				t.Errorf("Locate() of reply %s: error = %v, want ErrBadReply", body, err)
			}
		}
		replies <- `{"stream":"acme.docs","worker":"w","partition":0,"partition_count":8}`
		loc, err := c.Locate(ctx, "acme.docs")
		if err != nil || loc.Partition == nil || *loc.Partition != 0 || loc.PartitionCount != 8 {
			t.Fatalf("Locate() = %+v, %v; want partition 0 of 8", loc, err)
		}
	})
}
