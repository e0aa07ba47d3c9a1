package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

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
