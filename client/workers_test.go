package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

// startWorkerOpts runs a worker on its own connection to url with opts.
func startWorkerOpts(tb testing.TB, url string, opts broker.Options) *broker.Broker {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	opts.DataDir = tb.TempDir()
	b, err := broker.New(nc, opts)
	if err != nil {
		tb.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Shutdown(context.Background()) })
	return b
}

func TestClient_Workers(t *testing.T) {
	ctx := context.Background()
	s := runServer(t)
	c := client.New(connect(t, s))
	if ws, err := c.Workers(ctx); err != nil || len(ws) != 0 {
		t.Fatalf("Workers() with no worker = %+v, %v; want none", ws, err)
	}
	b := startWorkerOpts(t, s.ClientURL(), broker.Options{})
	startWorkerOpts(t, s.ClientURL(), broker.Options{Prefix: "other"})                         // not the client's prefix
	startWorkerOpts(t, s.ClientURL(), broker.Options{Name: "docs", InstanceCheckInterval: -1}) // not the client's service
	ws, err := c.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []client.Worker{{ID: b.Service().Info().ID, Name: "persist", Version: broker.Version}}
	if len(ws) == 1 && ws[0].Started.IsZero() {
		t.Errorf("Workers() = %+v, want its start time", ws)
	}
	if !workersEqual(ws, want) {
		t.Fatalf("Workers() = %+v, want %+v", ws, want)
	}
	ws, err = client.New(c.Conn(), client.WithServiceName("docs")).Workers(ctx)
	if err != nil || len(ws) != 1 || ws[0].Name != "docs" {
		t.Fatalf("Workers() of service docs = %+v, %v; want one", ws, err)
	}
	if _, err := client.New(c.Conn(), client.WithServiceName("a.b")).Workers(ctx); err == nil {
		t.Fatal("Workers() of service a.b: no error")
	}
}

// workersEqual compares workers but for their start time and open
// streams, which a real worker's stats give and which the test does not
// know.
func workersEqual(a, b []client.Worker) bool {
	return slices.EqualFunc(a, b, func(x, y client.Worker) bool {
		return x.ID == y.ID && x.Name == y.Name && x.Version == y.Version &&
			x.PartitionCount == y.PartitionCount && x.Leases == y.Leases &&
			(x.Partitions == nil) == (y.Partitions == nil) && slices.Equal(x.Partitions, y.Partitions)
	})
}

// runPartitionedServer runs a server with the partition mappings of
// prefix persist, 8 partitions, and three users: worker (every
// permission), monitor (may ask $SRV, and receive only under
// $SRV._persist_reply.) and app (the API only).
func runPartitionedServer(tb testing.TB) *server.Server {
	tb.Helper()
	block, err := subjects.PartitionMappingsBlock(subjects.DefaultPrefix, 8)
	if err != nil {
		tb.Fatal(err)
	}
	var conf strings.Builder
	conf.WriteString(block)
	conf.WriteString(`authorization {
  users: [
    {user: worker, password: w}
    {user: monitor, password: m, permissions: {publish: ["$SRV.>"], subscribe: ["$SRV._persist_reply.>"]}}
    {user: app, password: a, permissions: {publish: ["persist.>"], subscribe: ["_INBOX.>"]}}
  ]
}
`)
	path := filepath.Join(tb.TempDir(), "server.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	return runServerOpts(tb, opts)
}

func TestClient_WorkersPartitioned(t *testing.T) {
	ctx := context.Background()
	s := runPartitionedServer(t)
	url := func(user, password string) string {
		return strings.Replace(s.ClientURL(), "nats://", "nats://"+user+":"+password+"@", 1)
	}
	b1 := startWorkerOpts(t, url("worker", "w"), broker.Options{Partitioning: broker.Partitioning{Count: 8, Static: []int{4, 5, 6}}})
	b2 := startWorkerOpts(t, url("worker", "w"), broker.Options{Partitioning: broker.Partitioning{Count: 8, Static: []int{0, 1, 2, 3, 7}}})
	want := []client.Worker{
		{ID: b1.Service().Info().ID, Name: "persist", Version: broker.Version, Partitions: []int{4, 5, 6}, PartitionCount: 8},
		{ID: b2.Service().Info().ID, Name: "persist", Version: broker.Version, Partitions: []int{0, 1, 2, 3, 7}, PartitionCount: 8},
	}
	slices.SortFunc(want, func(a, b client.Worker) int { return strings.Compare(a.ID, b.ID) })

	// A user that may receive replies only under $SRV._persist_reply.
	// asks with that inbox prefix.
	mon, err := nats.Connect(url("monitor", "m"), nats.CustomInboxPrefix("$SRV._persist_reply"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mon.Close)
	ws, err := client.New(mon).Workers(ctx)
	if err != nil || !workersEqual(ws, want) {
		t.Fatalf("Workers() = %+v, %v; want %+v", ws, err, want)
	}

	// Without the permissions: an error, not an empty list.
	for _, tc := range []struct {
		name string
		opts []nats.Option
	}{
		{"app", nil},     // may not publish on $SRV
		{"monitor", nil}, // may not receive on _INBOX.
		{"monitor", []nats.Option{nats.CustomInboxPrefix("$SRV._persist_reply")}}, // control
	} {
		password := map[string]string{"app": "a", "monitor": "m"}[tc.name]
		nc, err := nats.Connect(url(tc.name, password), append(tc.opts, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))...)
		if err != nil {
			t.Fatal(err)
		}
		ws, err := client.New(nc).Workers(ctx)
		nc.Close()
		if tc.opts != nil {
			if err != nil || len(ws) != 2 {
				t.Errorf("Workers() as %s with the inbox prefix = %+v, %v; want 2", tc.name, ws, err)
			}
		} else if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("Workers() as %s = %+v, %v; want a permission violation", tc.name, ws, err)
		}
	}
}

// TestClient_WorkersUntrusted answers the stats ask with replies that
// are not a persist worker's: each is skipped.
func TestClient_WorkersUntrusted(t *testing.T) {
	s := runServer(t)
	b := startWorkerOpts(t, s.ClientURL(), broker.Options{})
	fake := connect(t, s)
	good := `{"type":"io.nats.micro.v1.stats_response","name":"persist","id":"%s","version":"1","metadata":{"prefix":"persist","worker_stats_endpoint":"no_stream"%s},"endpoints":[{"name":"no_stream","data":%s}]}`
	replies := []string{
		`not json`,
		`null`,
		`[]`,
		fmt.Sprintf(good, "", "", `{}`), // no id
		strings.Replace(fmt.Sprintf(good, "F1", "", `{}`), "stats_response", "info_response", 1), // another type
		strings.Replace(fmt.Sprintf(good, "F2", "", `{}`), `"prefix":"persist"`, `"prefix":"other"`, 1),
		strings.Replace(fmt.Sprintf(good, "F3", "", `{}`), `"name":"persist"`, `"name":"docs"`, 1),
		fmt.Sprintf(good, "F4", "", `"text"`),                                                       // stats data of another shape
		strings.Replace(fmt.Sprintf(good, "F5", "", `{}`), `"name":"no_stream"`, `"name":"set"`, 1), // no stats endpoint
		fmt.Sprintf(good, "F6", `,"partition_count":"x"`, `{}`),
		fmt.Sprintf(good, "F7", `,"partition_count":"0"`, `{}`),
		fmt.Sprintf(good, "F8", `,"partition_count":"8"`, `{"partitions":"0-9"}`),
		fmt.Sprintf(good, "F9", `,"partition_count":"8"`, `{"partitions":"a"}`),
		fmt.Sprintf(good, "FA", "", `{"x":"`+strings.Repeat("y", 300<<10)+`"}`), // too large
		fmt.Sprintf(good, "OK", `,"partition_count":"8","partitions":"leases"`, `{"partitions":"5,1-2","open_streams":3}`),
		fmt.Sprintf(good, "OK", "", `{}`), // the same id again
	}
	sub, err := fake.Subscribe("$SRV.STATS.persist", func(m *nats.Msg) {
		for _, r := range replies {
			fake.Publish(m.Reply, []byte(r))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
	ws, err := client.New(connect(t, s)).Workers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []client.Worker{
		{ID: b.Service().Info().ID, Name: "persist", Version: broker.Version},
		{ID: "OK", Name: "persist", Version: "1", Partitions: []int{1, 2, 5}, PartitionCount: 8, Leases: true, OpenStreams: 3},
	}
	slices.SortFunc(want, func(a, b client.Worker) int { return strings.Compare(a.ID, b.ID) })
	if !workersEqual(ws, want) || ws[slices.IndexFunc(ws, func(w client.Worker) bool { return w.ID == "OK" })].OpenStreams != 3 {
		t.Fatalf("Workers() = %+v, want %+v", ws, want)
	}

	// A caller's context that ends first is the error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := client.New(connect(t, s)).Workers(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Workers(canceled) error = %v, want context.Canceled", err)
	}
}
