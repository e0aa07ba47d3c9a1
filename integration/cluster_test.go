package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/client"
)

// clusterPartitions is the number of partitions of testdata/cluster.
const clusterPartitions = 8

// testNode is one node of testdata/cluster run in the test process,
// with what it takes to stop and restart it on the same ports.
type testNode struct {
	name string
	opts func() *server.Options // read afresh for every start: a server keeps what it was given
	srv  *server.Server
	url  string // client URL, without credentials
}

// startTestdataNodes starts the three nodes of testdata/cluster, with
// their accounts, mappings and permissions as shipped, on free ports and
// with their store directories in the test's temporary directory. With
// noAdvertise the nodes do not tell clients of each other, so that a
// connection stays on the node of its URL: a worker whose node stops is
// cut off (the one change to the shipped configurations).
func startTestdataNodes(tb testing.TB, noAdvertise bool) []*testNode {
	tb.Helper()
	var routes []string
	var nodes []*testNode
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		port, cport, store := freePort(tb), freePort(tb), tb.TempDir()
		n := &testNode{name: name, url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
		n.opts = func() *server.Options {
			opts, err := server.ProcessConfigFile(filepath.Join("..", "testdata", "cluster", name+".conf"))
			if err != nil {
				tb.Fatal(err)
			}
			opts.Port, opts.Cluster.Port = port, cport
			opts.NoSigs, opts.NoLog = true, true
			opts.StoreDir = store
			opts.Cluster.NoAdvertise = noAdvertise
			opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
			return opts
		}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", cport))
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		n.start(tb)
	}
	for _, n := range nodes {
		eventuallyFor(tb, 20*time.Second, "the routes", func() bool { return n.srv.NumRemotes() == 2 })
	}
	return nodes
}

// start starts (or restarts) n.
func (n *testNode) start(tb testing.TB) {
	tb.Helper()
	s, err := server.NewServer(n.opts())
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatalf("%s did not start", n.name)
	}
	tb.Cleanup(s.Shutdown)
	n.srv = s
}

// stop shuts n down and waits until it is.
func (n *testNode) stop() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

// withUser puts user:password into a client URL.
func withUser(url, user, password string) string {
	return strings.Replace(url, "nats://", "nats://"+user+":"+password+"@", 1)
}

// eventuallyFor polls cond until it holds, failing after d.
func eventuallyFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// monitorConn connects to url, which names a worker's user, for
// servedPartitions: its inbox is under $SRV._persist_reply., where a
// worker's user may receive whatever else it may not.
func monitorConn(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.CustomInboxPrefix("$SRV._persist_reply"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// servedPartitions asks every worker (client.Workers, on a monitorConn:
// a client's user may not) which partitions it serves now, by service id.
func servedPartitions(tb testing.TB, nc *nats.Conn) map[string][]int {
	tb.Helper()
	ws, err := client.New(nc).Workers(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	got := map[string][]int{}
	for _, w := range ws {
		if w.PartitionCount != clusterPartitions {
			tb.Fatalf("worker %s serves %d partitions, want %d", w.ID, w.PartitionCount, clusterPartitions)
		}
		got[w.ID] = w.Partitions
	}
	return got
}

// spreadEvenly reports whether workers workers serve every partition, each
// exactly once, and each its fair share.
func spreadEvenly(served map[string][]int, workers int) bool {
	if len(served) != workers {
		return false
	}
	seen := map[int]bool{}
	lo, hi := clusterPartitions/workers, (clusterPartitions+workers-1)/workers
	for _, parts := range served {
		if len(parts) < lo || len(parts) > hi {
			return false
		}
		for _, n := range parts {
			if seen[n] {
				return false
			}
			seen[n] = true
		}
	}
	return len(seen) == clusterPartitions
}
