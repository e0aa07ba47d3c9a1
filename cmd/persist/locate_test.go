package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
)

func TestLocate(t *testing.T) {
	w := startWorker(t, nil)
	m, err := w.cl.Conn().Request("$SRV.INFO.persist", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(m.Data, &info); err != nil || info.ID == "" {
		t.Fatalf("$SRV.INFO.persist = %q, %v", m.Data, err)
	}

	want := "Stream acme.docs\n\n  worker:     " + info.ID + "\n  service:    persist\n  partition:  none (one worker serves every stream)\n\nnats micro info persist " + info.ID + "\n"
	if got := w.ok(t, "", "locate", "acme.docs"); got != want {
		t.Fatalf("locate printed\n%s\nwant\n%s", got, want)
	}
	loc := jsonLines[client.Location](t, w.ok(t, "", "--json", "locate", "acme.docs"))[0]
	if loc != (client.Location{Stream: "acme.docs", Worker: info.ID, Name: "persist"}) {
		t.Fatalf("locate --json = %+v", loc)
	}
	// The stream was not created.
	if inv, err := w.cl.Stream("acme.docs").Inventory(context.Background()); err != nil || inv.Revision != 0 {
		t.Fatalf("Inventory() after locate = %+v, %v; want no stream", inv, err)
	}
	if r := w.run(t, "", "locate", "acme..docs"); r.code != 2 || !strings.Contains(r.stderr, "acme..docs") {
		t.Fatalf("locate of an invalid name = %+v, want a usage error", r)
	}
	if r := w.run(t, "", "--prefix", "other", "--retries", "0", "locate", "acme.docs"); r.code != 1 || !strings.Contains(r.stderr, "no persist worker") {
		t.Fatalf("locate with no worker = %+v, want exit 1", r)
	}
}

// TestLocate_Partitioned runs a worker serving every partition of a
// server that maps requests to partitions: locate prints the partition.
func TestLocate_Partitioned(t *testing.T) {
	isolate(t)
	s := runPartitionedServer(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := broker.New(nc, broker.Options{DataDir: t.TempDir(), Partitioning: broker.Partitioning{Count: 8, Static: []int{0, 1, 2, 3, 4, 5, 6, 7}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(context.Background()) })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	id := b.Service().Info().ID

	r := invocation{}.run(context.Background(), "--server", s.ClientURL(), "locate", "acme.docs")
	want := "Stream acme.docs\n\n  worker:     " + id + "\n  service:    persist\n  partition:  7 of 8\n\nnats micro info persist " + id + "\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("locate = %+v, want stdout\n%s", r, want)
	}
	r = invocation{}.run(context.Background(), "--server", s.ClientURL(), "--json", "locate", "globex.docs")
	if got, want := strings.TrimSpace(r.stdout), `{"stream":"globex.docs","worker":"`+id+`","name":"persist","partition":6,"partition_count":8}`; r.code != 0 || got != want {
		t.Fatalf("locate --json = %+v, want %s", r, want)
	}
}
