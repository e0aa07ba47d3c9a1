package subjects_test

// The configurations of testdata/cluster, loaded as nats-server loads
// them, started as a three-node cluster on free ports, and used the way
// partitioned workers and their clients will use them.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-persist/persist/subjects"
)

// clusterPartitions is the number of partitions testdata/cluster is
// configured for.
const clusterPartitions = 8

var clusterNodes = []string{"node-a", "node-b", "node-c"}

func clusterConfig(node string) string {
	return filepath.Join("..", "testdata", "cluster", node+".conf")
}

// TestClusterConfig_Mappings fails when the mappings of a configuration
// in testdata/cluster are not PartitionMappings("persist", 8), and prints
// the block to paste.
func TestClusterConfig_Mappings(t *testing.T) {
	want, err := subjects.PartitionMappings(subjects.DefaultPrefix, clusterPartitions)
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range clusterNodes {
		tree, err := conf.ParseFile(clusterConfig(node))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		accounts, _ := tree["accounts"].(map[string]any)
		account, _ := accounts["PERSIST"].(map[string]any)
		mappings, _ := account["mappings"].(map[string]any)
		for src, dest := range mappings {
			got[src] = fmt.Sprint(dest)
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: accounts.PERSIST.mappings = %v, want\n%s", clusterConfig(node), got,
				mappingsBlock(t, subjects.DefaultPrefix, clusterPartitions, "    "))
		}
	}
}

// TestClusterConfig_Alike fails when the three configurations differ in
// anything but the node's name, its ports and its store directory.
func TestClusterConfig_Alike(t *testing.T) {
	var first string
	for i, node := range clusterNodes {
		b, err := os.ReadFile(clusterConfig(node))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.NewReplacer(
			"# Node "+node[len(node)-1:]+" of", "# Node ? of",
			"server_name: "+node+"\n", "server_name: NAME\n",
			"/tmp/persist-cluster/"+node, "/tmp/persist-cluster/NAME",
			fmt.Sprintf("listen: 127.0.0.1:%d\n", 4222+i), "listen: CLIENT\n",
			fmt.Sprintf("listen: 127.0.0.1:%d\n", 6222+i), "listen: ROUTE\n",
		).Replace(string(b))
		if i == 0 {
			first = text
		} else if text != first {
			t.Errorf("%s differs from %s in more than its name, ports and store directory", clusterConfig(node), clusterConfig(clusterNodes[0]))
		}
	}
}

// loadClusterNode loads a configuration of testdata/cluster with its
// documented fixed values checked, and points its store directory into
// the test's temporary directory.
func loadClusterNode(tb testing.TB, i int) *server.Options {
	tb.Helper()
	node := clusterNodes[i]
	opts, err := server.ProcessConfigFile(clusterConfig(node))
	if err != nil {
		tb.Fatal(err)
	}
	if opts.ServerName != node || opts.Port != 4222+i || opts.Cluster.Name != "persist" || opts.Cluster.Port != 6222+i ||
		len(opts.Routes) != 3 || !opts.JetStream || opts.StoreDir != "/tmp/persist-cluster/"+node {
		tb.Fatalf("%s: server %q, port %d, cluster %q on %d with %d routes, jetstream %v in %q: not what its comments say",
			node, opts.ServerName, opts.Port, opts.Cluster.Name, opts.Cluster.Port, len(opts.Routes), opts.JetStream, opts.StoreDir)
	}
	opts.StoreDir = tb.TempDir()
	return opts
}

// TestClusterConfig_Cluster starts the three nodes of testdata/cluster
// and checks what partitioned workers rely on: a request published on
// any node reaches the worker subscribed to its partition on another,
// and its reply comes back; requests that name no stream and events pass
// unmapped; a client may address a partition directly, which the worker
// detects; and the worker can keep leases in a key/value bucket
// replicated over the three nodes.
func TestClusterConfig_Cluster(t *testing.T) {
	servers := startCluster(t, func(i int) *server.Options { return loadClusterNode(t, i) })

	// The worker, on node c: it answers each request with the subject it
	// arrived on, and what ParsePartitionAPI makes of it.
	worker := connect(t, servers[2], "worker", "worker-secret")
	answer := func(m *nats.Msg) {
		_, _, _, err := subjects.ParsePartitionAPI(subjects.DefaultPrefix, m.Subject, clusterPartitions)
		if err := m.Respond(fmt.Appendf(nil, "%s %v", m.Subject, errors.Is(err, subjects.ErrWrongPartition))); err != nil {
			t.Error(err)
		}
	}
	for _, subj := range []string{"persist.part.*.api.>", "persist.api.*"} {
		if _, err := worker.Subscribe(subj, answer); err != nil {
			t.Fatal(err)
		}
	}
	if err := worker.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the worker's subscriptions on every node", func() bool {
		for _, s := range servers {
			acc, err := s.LookupAccount("PERSIST")
			if err != nil || !acc.SubscriptionInterest("persist.part.0.api.get.x") || !acc.SubscriptionInterest("persist.api.get") {
				return false
			}
		}
		return true
	})

	request := func(nc *nats.Conn, subject string) string {
		t.Helper()
		m, err := nc.Request(subject, nil, 10*time.Second)
		if err != nil {
			t.Fatalf("request %q: %v", subject, err)
		}
		return string(m.Data)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i, s := range servers {
		client := connect(t, s, "client", "client-secret")
		for range 100 {
			op, stream := subjects.Ops[r.IntN(len(subjects.Ops))], subjects.RandomName(r)
			want := subjects.PartitionAPISubject(subjects.DefaultPrefix, subjects.Partition(stream, clusterPartitions), op, stream) + " false"
			if got := request(client, subjects.APISubject(subjects.DefaultPrefix, op, stream)); got != want {
				t.Fatalf("node %d: request for %s %s answered %q, want %q", i, op, stream, got, want)
			}
		}
		if got, want := request(client, "persist.api.get"), "persist.api.get false"; got != want {
			t.Fatalf("node %d: request naming no stream answered %q, want %q", i, got, want)
		}
		// acme is in partition 7; on 3 it is on the wrong partition.
		if got, want := request(client, "persist.part.3.api.get.acme"), "persist.part.3.api.get.acme true"; got != want {
			t.Fatalf("node %d: request on partition 3 answered %q, want %q", i, got, want)
		}
	}

	// Events go out on persist.ev.<stream> as they are.
	events, err := connect(t, servers[0], "client", "client-secret").SubscribeSync("persist.ev.>")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the event subscription on node c", func() bool {
		acc, err := servers[2].LookupAccount("PERSIST")
		return err == nil && acc.SubscriptionInterest("persist.ev.acme.docs")
	})
	if err := worker.Publish("persist.ev.acme.docs", []byte("e")); err != nil {
		t.Fatal(err)
	}
	if m, err := events.NextMsg(10 * time.Second); err != nil || m.Subject != "persist.ev.acme.docs" {
		t.Fatalf("event: %v, %v", m, err)
	}

	checkLeaseBucket(t, worker)
}

// checkLeaseBucket uses, with the worker's permissions, a key/value
// bucket of one key per partition replicated over the three nodes, the
// way leases will: create a key, renew it only at the revision last
// seen, and watch the others' changes.
func checkLeaseBucket(t *testing.T, nc *nats.Conn) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var kv jetstream.KeyValue
	// JetStream answers once the three nodes have elected a leader.
	eventually(t, "the lease bucket", func() bool {
		try, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		kv, err = js.CreateKeyValue(try, jetstream.KeyValueConfig{Bucket: "persist-leases", Replicas: 3, History: 1})
		if err != nil {
			t.Logf("creating the lease bucket: %v", err)
		}
		return err == nil
	})
	// A worker that starts after the bucket exists binds to it.
	if kv, err = js.KeyValue(ctx, "persist-leases"); err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "*")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	select {
	case e := <-w.Updates():
		if e != nil {
			t.Fatalf("the watch of a new bucket gave %v before the end of its initial values", e)
		}
	case <-ctx.Done():
		t.Fatal("the watch gave nothing")
	}
	rev, err := kv.Create(ctx, "7", []byte("worker-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "7", []byte("worker-2")); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("second Create of a lease = %v, want ErrKeyExists", err)
	}
	renewed, err := kv.Update(ctx, "7", []byte("worker-1"), rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, "7", []byte("worker-2"), rev); err == nil || !strings.Contains(err.Error(), "wrong last sequence") {
		t.Fatalf("Update at a stale revision = %v, want wrong last sequence", err)
	}
	if e, err := kv.Get(ctx, "7"); err != nil || string(e.Value()) != "worker-1" || e.Revision() != renewed {
		t.Fatalf("Get of the lease = %v, %v", e, err)
	}
	// A watch gives the latest value of each key: a consumer it had to
	// recreate (the bucket is new, its leader may still move) may skip a
	// revision, never the last one.
	for last := uint64(0); last != renewed; {
		select {
		case e := <-w.Updates():
			if e == nil || e.Key() != "7" || e.Revision() <= last || e.Revision() > renewed {
				t.Fatalf("watch gave %v after revision %d, want key 7 up to revision %d", e, last, renewed)
			}
			last = e.Revision()
		case <-ctx.Done():
			t.Fatalf("watch did not give revision %d", renewed)
		}
	}
}

// TestPartitionMappingsBlock checks that the block reads back, as
// nats-server parses a configuration, as PartitionMappings, and that it
// refuses what PartitionMappings refuses.
func TestPartitionMappingsBlock(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		n      int
	}{{subjects.DefaultPrefix, 8}, {"app.persist", subjects.MaxPartitions}, {"p", 1}} {
		want, err := subjects.PartitionMappings(tc.prefix, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		block, err := subjects.PartitionMappingsBlock(tc.prefix, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		tree, err := conf.Parse(block)
		if err != nil {
			t.Fatalf("PartitionMappingsBlock(%q, %d) does not parse: %v\n%s", tc.prefix, tc.n, err, block)
		}
		got := map[string]string{}
		parsed, _ := tree["mappings"].(map[string]any)
		for src, dest := range parsed {
			got[src] = fmt.Sprint(dest)
		}
		if !maps.Equal(got, want) {
			t.Errorf("PartitionMappingsBlock(%q, %d) reads back as %v, want %v", tc.prefix, tc.n, got, want)
		}
	}
	if b, err := subjects.PartitionMappingsBlock("bad prefix", 8); err == nil {
		t.Errorf("PartitionMappingsBlock(bad prefix) = %q, want an error", b)
	}
	if b, err := subjects.PartitionMappingsBlock(subjects.DefaultPrefix, 0); err == nil {
		t.Errorf("PartitionMappingsBlock(0 partitions) = %q, want an error", b)
	}
}
