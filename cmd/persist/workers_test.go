package main

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

// runPartitionedServer runs a server that maps the requests of prefix
// persist to 8 partitions.
func runPartitionedServer(tb testing.TB) *server.Server {
	tb.Helper()
	conf, err := subjects.PartitionMappingsBlock(subjects.DefaultPrefix, 8)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server did not start")
	}
	tb.Cleanup(s.Shutdown)
	return s
}

func TestWorkers(t *testing.T) {
	w := startWorker(t, nil)
	ws, err := w.cl.Workers(context.Background())
	if err != nil || len(ws) != 1 {
		t.Fatalf("Workers() = %+v, %v; want one", ws, err)
	}
	id := ws[0].ID
	if got, want := w.ok(t, "", "workers"), id+"  "+broker.Version+"  every stream (not partitioned)\n"; got != want {
		t.Fatalf("workers printed %q, want %q", got, want)
	}
	got := jsonLines[client.Worker](t, w.ok(t, "", "--json", "workers"))
	if len(got) != 1 || got[0].ID != id || got[0].Version != broker.Version || got[0].Partitions != nil {
		t.Fatalf("workers --json = %+v, want worker %s", got, id)
	}
	for _, args := range [][]string{{"--prefix", "other", "workers"}, {"workers", "--name", "docs"}} {
		if r := w.run(t, "", args...); r.code != 1 || !strings.Contains(r.stderr, "no worker") || r.stdout != "" {
			t.Errorf("persist %s = %+v, want exit 1, no worker", strings.Join(args, " "), r)
		}
	}
	if r := w.run(t, "", "workers", "--name", "a.b"); r.code != 1 || !strings.Contains(r.stderr, "a.b") {
		t.Errorf("workers --name a.b = %+v, want exit 1", r)
	}
}

// TestWorkers_Partitioned runs two workers of static partitions: each
// line names its partitions.
func TestWorkers_Partitioned(t *testing.T) {
	isolate(t)
	s := runPartitionedServer(t)
	lines := map[string]string{}
	for _, static := range [][]int{{0, 1, 2, 3, 6}, {4, 5, 7}} {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		b, err := broker.New(nc, broker.Options{DataDir: t.TempDir(), Partitioning: broker.Partitioning{Count: 8, Static: static}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Shutdown(context.Background()) })
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		id := b.Service().Info().ID
		lines[id] = id + "  " + broker.Version + "  partitions " + subjects.FormatPartitions(static) + " of 8\n"
	}
	var want string
	for _, id := range slices.Sorted(maps.Keys(lines)) {
		want += lines[id]
	}
	r := invocation{}.run(context.Background(), "--server", s.ClientURL(), "workers")
	if r.code != 0 || r.stdout != want {
		t.Fatalf("workers = %+v, want stdout\n%s", r, want)
	}
	r = invocation{}.run(context.Background(), "--server", s.ClientURL(), "--json", "workers")
	got := jsonLines[client.Worker](t, r.stdout)
	if r.code != 0 || len(got) != 2 || got[0].PartitionCount != 8 || len(got[0].Partitions)+len(got[1].Partitions) != 8 {
		t.Fatalf("workers --json = %+v, %+v", r, got)
	}
}
