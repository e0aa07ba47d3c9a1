package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nats-persist/persist/subjects"
)

const testPartitions = 8

// clusterNode is one server of a test cluster, with what it takes to
// restart it.
type clusterNode struct {
	srv  *server.Server
	opts *server.Options
}

// startPartitionCluster starts three routed servers with JetStream and
// the mappings of subjects.PartitionMappings for testPartitions, in the
// global account, and waits for the routes.
func startPartitionCluster(tb testing.TB) []*clusterNode {
	tb.Helper()
	block, err := subjects.PartitionMappingsBlock(subjects.DefaultPrefix, testPartitions)
	if err != nil {
		tb.Fatal(err)
	}
	// The route ports are free when picked, not always still when the
	// servers listen (other tests run beside): a cluster that does not
	// start is started again on other ports.
	for attempt := 1; ; attempt++ {
		nodes, err := tryPartitionCluster(tb, block)
		if err == nil {
			waitFor(tb, "the routes between the three servers", func() bool {
				for _, n := range nodes {
					if n.srv.NumRemotes() != 2 {
						return false
					}
				}
				return true
			})
			return nodes
		}
		if attempt == 3 {
			tb.Fatal(err)
		}
		tb.Logf("cluster not started (%v): again on other ports", err)
	}
}

// tryPartitionCluster starts three routed servers with JetStream and the
// mappings block on free ports; on an error none is left running.
func tryPartitionCluster(tb testing.TB, block string) ([]*clusterNode, error) {
	var ports []int
	var routes []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[len(ports)-1]))
	}
	var nodes []*clusterNode
	for i := range 3 {
		dir := tb.TempDir()
		text := fmt.Sprintf("server_name: n%d\njetstream { store_dir: %q }\ncluster { name: persist }\n%s", i, filepath.Join(dir, "js"), block)
		path := filepath.Join(dir, "server.conf")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			tb.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			tb.Fatalf("loading %s: %v", text, err)
		}
		opts.Host, opts.Port = "127.0.0.1", -1
		opts.NoSigs, opts.NoLog = true, true
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", ports[i]
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		n := &clusterNode{opts: opts}
		if err := n.tryStart(); err != nil {
			for _, n := range nodes {
				n.srv.Shutdown()
			}
			return nil, err
		}
		tb.Cleanup(n.srv.Shutdown)
		nodes = append(nodes, n)
	}
	return nodes, nil
}

func (n *clusterNode) start(tb testing.TB) {
	tb.Helper()
	if err := n.tryStart(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(n.srv.Shutdown)
}

// tryStart starts n's server and waits until it accepts clients.
func (n *clusterNode) tryStart() error {
	s, err := server.NewServer(n.opts)
	if err != nil {
		return err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return errors.New("nats server did not start")
	}
	n.srv = s
	return nil
}

// connectNode connects to n only: discovered servers are ignored, so a
// broker whose node stops stays cut off.
func connectNode(tb testing.TB, n *clusterNode) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(n.srv.ClientURL(), nats.IgnoreDiscoveredServers(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// startPartitioned starts a broker on node n with p.
func startPartitioned(tb testing.TB, n *clusterNode, p Partitioning, archive string, h hooks) *Broker {
	tb.Helper()
	nc := connectNode(tb, n)
	b, err := newBroker(nc, Options{DataDir: tb.TempDir(), ArchiveDir: archive, ArchiveInterval: time.Hour, Partitioning: p}, h)
	if err != nil {
		tb.Fatalf("New() = %v", err)
	}
	tb.Cleanup(func() { b.Shutdown(context.Background()) })
	return b
}

// testStreams are streams of many namespaces, so that every partition of
// testPartitions has some.
func testStreams(tb testing.TB) []string {
	var streams []string
	seen := map[int]bool{}
	for i := 0; len(seen) < testPartitions || len(streams) < 24; i++ {
		s := fmt.Sprintf("ns%d.docs", i)
		seen[subjects.Partition(s, testPartitions)] = true
		streams = append(streams, s)
	}
	return streams
}

// setOn sends a set of stream through nc (to persist.api.set.<stream>:
// the node maps it) and returns its seq, or the error reply.
func setOn(tb testing.TB, nc *nats.Conn, stream, data string) (uint64, error) {
	tb.Helper()
	m, err := nc.Request(subjects.DefaultPrefix+".api.set."+stream, []byte(data), 5*time.Second)
	if err != nil {
		return 0, err
	}
	if we := replyError(m); we != nil {
		return 0, we
	}
	var r subjects.SetReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		tb.Fatalf("set %s: %v: %q", stream, err, m.Data)
	}
	return r.Seq, nil
}

// owners returns, for each partition, the brokers serving it now.
func owners(bs ...*Broker) map[int][]int {
	got := map[int][]int{}
	for i, b := range bs {
		for _, n := range b.parts.owned() {
			got[n] = append(got[n], i)
		}
	}
	return got
}

// evenlyServed reports whether every partition is served by exactly one
// of bs and each serves its fair share (ceil or floor of P/len(bs)).
func evenlyServed(bs ...*Broker) bool {
	got := owners(bs...)
	if len(got) != testPartitions {
		return false
	}
	for _, o := range got {
		if len(o) != 1 {
			return false
		}
	}
	lo, hi := testPartitions/len(bs), (testPartitions+len(bs)-1)/len(bs)
	for _, b := range bs {
		if n := len(b.parts.owned()); n < lo || n > hi {
			return false
		}
	}
	return true
}

// TestPartitioned_Static runs three workers with static partitions on a
// three-node cluster: every stream is reachable through every node, its
// file is in its partition's worker only, a request on the wrong
// partition or on one not served now is refused unapplied, and the
// one-worker check refuses only the workers that cannot share.
func TestPartitioned_Static(t *testing.T) {
	nodes := startPartitionCluster(t)
	sets := [][]int{{0, 1, 2}, {3, 4, 5}, {6, 7}}
	var bs []*Broker
	for i, set := range sets {
		bs = append(bs, startPartitioned(t, nodes[i], Partitioning{Count: testPartitions, Static: set}, "", hooks{}))
	}
	clients := []*nats.Conn{connectNode(t, nodes[0]), connectNode(t, nodes[1]), connectNode(t, nodes[2])}
	// The subscriptions reach the other nodes through the routes.
	probe := subjects.PartitionAPISubject(subjects.DefaultPrefix, 7, subjects.OpGet, "x")
	waitFor(t, "the partition subscriptions on every node", func() bool {
		for _, n := range nodes {
			for p := range testPartitions {
				probe = subjects.PartitionAPISubject(subjects.DefaultPrefix, p, subjects.OpGet, "x")
				if !n.srv.GlobalAccount().SubscriptionInterest(probe) {
					return false
				}
			}
		}
		return true
	})

	streams := testStreams(t)
	for round := range 3 {
		for i, s := range streams {
			nc := clients[(i+round)%3]
			seq, err := setOn(t, nc, s, "v")
			if err != nil {
				t.Fatalf("set %s through node %d: %v", s, (i+round)%3, err)
			}
			if got, want := seq, uint64(round+1); got != want {
				t.Fatalf("set %s round %d: seq %d, want %d", s, round, got, want)
			}
		}
	}
	// Each stream's file is in the data directory of its partition's
	// worker only.
	for _, s := range streams {
		p := subjects.Partition(s, testPartitions)
		for i, b := range bs {
			_, err := os.Stat(b.streamPath(s))
			if has, want := err == nil, slices.Contains(sets[i], p); has != want {
				t.Errorf("stream %s (partition %d): file in worker %d (partitions %v): %v, want %v", s, p, i, sets[i], has, want)
			}
		}
	}

	t.Run("WrongPartition", func(t *testing.T) {
		// Published past the mapping, on partition 0's subject: worker 0
		// receives it and must not apply it.
		s := streams[slices.IndexFunc(streams, func(s string) bool { return subjects.Partition(s, testPartitions) != 0 })]
		m, err := clients[0].Request(subjects.PartitionAPISubject(subjects.DefaultPrefix, 0, subjects.OpSet, s), []byte("x"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if we := replyError(m); we == nil || we.Reason != subjects.ErrUnavailable.Reason {
			t.Fatalf("set on the wrong partition: %q, want 503 unavailable", m.Data)
		}
		if seq, err := setOn(t, clients[1], s, "v"); err != nil || seq != 4 {
			t.Fatalf("set %s after the refused one: seq %d, %v; want 4", s, seq, err)
		}
		if got := bs[0].parts.refused.Load(); got == 0 {
			t.Errorf("refused = %d, want > 0", got)
		}
	})

	t.Run("NotOwnedNow", func(t *testing.T) {
		// A request already queued when its partition stops being served
		// is refused before it is applied.
		b := bs[2]
		s := streams[slices.IndexFunc(streams, func(s string) bool { return subjects.Partition(s, testPartitions) == 6 })]
		b.parts.until[6].Store(0)
		defer b.parts.until[6].Store(forever)
		if err := b.mayApply(s); !errors.Is(err, errNotServed) {
			t.Fatalf("mayApply(%s) = %v, want errNotServed", s, err)
		}
		_, err := setOn(t, clients[0], s, "v")
		var we *subjects.Error
		if !errors.As(err, &we) || we.Reason != subjects.ErrUnavailable.Reason {
			t.Fatalf("set on a partition not served now: %v, want 503 unavailable", err)
		}
	})

	t.Run("Overlap", func(t *testing.T) {
		nc := connectNode(t, nodes[0])
		_, err := New(nc, Options{DataDir: t.TempDir(), Partitioning: Partitioning{Count: testPartitions, Static: []int{5, 6}}})
		if !errors.Is(err, ErrPrefixInUse) || !strings.Contains(err.Error(), "partitions 5 too") && !strings.Contains(err.Error(), "partitions 6 too") {
			t.Fatalf("New(partitions 5-6) = %v, want ErrPrefixInUse naming the overlap", err)
		}
		_, err = New(nc, Options{DataDir: t.TempDir()})
		if !errors.Is(err, ErrPrefixInUse) {
			t.Fatalf("New(unpartitioned) beside partitioned workers = %v, want ErrPrefixInUse", err)
		}
		_, err = New(nc, Options{DataDir: t.TempDir(), Partitioning: Partitioning{Count: 16, Static: []int{9}}})
		if !errors.Is(err, ErrPrefixInUse) {
			t.Fatalf("New(16 partitions) beside 8 = %v, want ErrPrefixInUse", err)
		}
	})

	t.Run("Metadata", func(t *testing.T) {
		md := bs[1].Service().Info().Metadata
		if md["partitions"] != "3-5" || md["partition_count"] != "8" {
			t.Errorf("metadata = %v, want partitions 3-5 of 8", md)
		}
		st := bs[1].statsData(&micro.Endpoint{Name: noStream}).(Stats)
		if st.Partitions != "3-5" {
			t.Errorf("stats partitions = %q, want 3-5", st.Partitions)
		}
		if st.PartitionRequests == 0 {
			t.Error("stats partition_requests = 0, want the requests received")
		}
	})
}

// TestPartitioned_Leases runs leasing workers on a three-node cluster:
// three spread the partitions evenly, a fourth gets its share moving only
// what it takes, one stopped hands its partitions over with every stream
// restored from the archive, and one cut off from the cluster (its node
// stops) stops serving before any of its partitions is claimed elsewhere.
func TestPartitioned_Leases(t *testing.T) {
	nodes := startPartitionCluster(t)
	archive := t.TempDir()
	lease := Partitioning{Count: testPartitions, LeaseTTL: 2 * time.Second, Replicas: 3}
	var mu sync.Mutex
	claimedAt := map[int][]time.Time{}
	h := hooks{claimed: func(n int) {
		mu.Lock()
		claimedAt[n] = append(claimedAt[n], time.Now())
		mu.Unlock()
	}}
	var bs []*Broker
	for i := range 3 {
		bs = append(bs, startPartitioned(t, nodes[i], lease, archive, h))
	}
	sampler := startSampler(t, bs...)
	waitFor30(t, "the partitions spread evenly over three workers", func() bool { return evenlyServed(bs...) })
	client := connectNode(t, nodes[0])
	streams := testStreams(t)
	for _, s := range streams {
		if _, err := retrySet(t, client, s); err != nil {
			t.Fatalf("set %s: %v", s, err)
		}
	}

	// A fourth worker gets its share, and only the partitions it takes
	// move.
	was := owners(bs...)
	bs = append(bs, startPartitioned(t, nodes[0], lease, archive, h))
	sampler.add(bs[3])
	waitFor30(t, "the partitions spread evenly over four workers", func() bool { return evenlyServed(bs...) })
	for n, o := range owners(bs...) {
		if o[0] != 3 && o[0] != was[n][0] {
			t.Errorf("partition %d moved from worker %d to %d, not to the new one", n, was[n][0], o[0])
		}
	}

	// A worker that stops gives its partitions up; the others take them,
	// restore the streams from the archive and go on with the next seq.
	moved := bs[0].parts.owned()
	shutdown := func(b *Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown() = %v", err)
		}
	}
	shutdown(bs[0])
	waitFor30(t, "the partitions spread over three workers", func() bool { return evenlyServed(bs[1:]...) })
	for _, s := range streams {
		seq, err := retrySet(t, client, s)
		if err != nil {
			t.Fatalf("set %s after the move: %v", s, err)
		}
		if seq != 2 {
			t.Errorf("set %s (partition %d, moved: %v) after the move: seq %d, want 2", s, subjects.Partition(s, testPartitions),
				slices.Contains(moved, subjects.Partition(s, testPartitions)), seq)
		}
	}

	// A worker cut off from the bucket (its node stops) stops serving its
	// partitions before anyone else can claim them.
	cut := bs[2]
	last := map[int]time.Time{} // the latest deadline seen of each partition it served
	watch := func() {
		for n := range testPartitions {
			if u := cut.parts.until[n].Load(); u > 0 {
				if d := cut.parts.base.Add(time.Duration(u)); d.After(last[n]) {
					last[n] = d
				}
			}
		}
	}
	watch()
	held := cut.parts.owned()
	if len(held) == 0 {
		t.Fatal("the worker to cut off serves no partition")
	}
	mu.Lock()
	clear(claimedAt)
	mu.Unlock()
	nodes[2].srv.Shutdown()
	waitFor30(t, "the cut-off worker to stop serving", func() bool {
		watch()
		return len(cut.parts.owned()) == 0
	})
	waitFor30(t, "the partitions taken over by the two workers left", func() bool { return evenlyServed(bs[1], bs[3]) })
	mu.Lock()
	defer mu.Unlock()
	for _, n := range held {
		if len(claimedAt[n]) == 0 {
			t.Errorf("partition %d: never claimed after the cut", n)
			continue
		}
		if c := claimedAt[n][0]; !c.After(last[n]) {
			t.Errorf("partition %d claimed at %v, before the cut-off worker's deadline %v", n, c, last[n])
		}
	}
	// The cut-off worker abandoned its streams when it stopped serving
	// them: with the archive interval an hour, what it acknowledged
	// since the streams moved to it is lost, and its seqs are not given
	// again (the fence makes the next owner jump past them). The other
	// streams go on.
	for _, s := range streams {
		seq, err := retrySet(t, client, s)
		if err != nil {
			t.Fatalf("set %s after the cut: %v", s, err)
		}
		p := subjects.Partition(s, testPartitions)
		if moved := slices.Contains(held, p); moved && seq <= 2 || !moved && seq != 3 {
			t.Errorf("set %s (partition %d, on the cut-off worker: %v) after the cut: seq %d, want 3, or more than 2 on the cut-off worker",
				s, p, moved, seq)
		}
	}
}

// ownerSampler checks, every millisecond until the test ends, that no
// partition is served by two of its brokers at once. Each sample reads
// the brokers one after the other; a later broker may claim a partition
// only well after an earlier one stopped serving it, so a sample never
// sees two owners unless two served at once.
type ownerSampler struct {
	mu  sync.Mutex
	bs  []*Broker
	err error
}

func startSampler(t *testing.T, bs ...*Broker) *ownerSampler {
	s := &ownerSampler{bs: slices.Clone(bs)}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			s.mu.Lock()
			for n, o := range owners(s.bs...) {
				if len(o) > 1 && s.err == nil {
					s.err = fmt.Errorf("partition %d served by workers %v at once", n, o)
				}
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		if s.err != nil {
			t.Error(s.err)
		}
	})
	return s
}

func (s *ownerSampler) add(b *Broker) {
	s.mu.Lock()
	s.bs = append(s.bs, b)
	s.mu.Unlock()
}

// TestPartitioned_NodeRestart restarts the node of one of two leasing
// workers: it reconnects to another node and the two serve every
// partition again, never one partition both at once, and writes go on.
func TestPartitioned_NodeRestart(t *testing.T) {
	nodes := startPartitionCluster(t)
	lease := Partitioning{Count: testPartitions, LeaseTTL: 2 * time.Second, Replicas: 3}
	var bs []*Broker
	for i := range 2 {
		nc, err := nats.Connect(nodes[i].srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		b, err := newBroker(nc, Options{DataDir: t.TempDir(), Partitioning: lease}, hooks{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Shutdown(context.Background()) })
		bs = append(bs, b)
	}
	startSampler(t, bs...)
	waitFor30(t, "the partitions spread over two workers", func() bool { return evenlyServed(bs...) })
	client := connectNode(t, nodes[2])
	streams := testStreams(t)
	for _, s := range streams {
		if _, err := retrySet(t, client, s); err != nil {
			t.Fatalf("set %s: %v", s, err)
		}
	}
	nodes[0].srv.Shutdown()
	nodes[0].srv.WaitForShutdown()
	nodes[0].start(t)
	waitFor30(t, "the partitions served by the two workers again", func() bool {
		return evenlyServed(bs...) && bs[0].nc.IsConnected()
	})
	for _, s := range streams {
		if _, err := retrySet(t, client, s); err != nil {
			t.Fatalf("set %s after the restart: %v", s, err)
		}
	}
}

// waitFor30 is waitFor with the time leases take to move.
func waitFor30(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// retrySet sets on stream until a worker serves it: 503 (not served
// here) and no responders are a partition on the move.
func retrySet(tb testing.TB, nc *nats.Conn, stream string) (uint64, error) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		seq, err := setOn(tb, nc, stream, "v")
		var we *subjects.Error
		retry := errors.Is(err, nats.ErrNoResponders) || errors.As(err, &we) && we.Reason == subjects.ErrUnavailable.Reason
		if !retry || time.Now().After(deadline) {
			return seq, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPartitioned_YieldStopsPartitions: a worker that finds an older one
// serving some of its static partitions stops its partition
// subscriptions, not only its endpoints.
func TestPartitioned_YieldStopsPartitions(t *testing.T) {
	s := runServer(t)
	older, err := newBroker(connect(t, s), Options{DataDir: t.TempDir(), InstanceCheckInterval: -1,
		Partitioning: Partitioning{Count: testPartitions, Static: []int{3, 4}}}, hooks{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { older.Shutdown(context.Background()) })
	// Started with its checks off, so that it starts beside the older one.
	younger, err := newBroker(connect(t, s), Options{DataDir: t.TempDir(), InstanceCheckInterval: -1,
		Partitioning: Partitioning{Count: testPartitions, Static: []int{0, 1, 2, 3}}}, hooks{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { younger.Shutdown(context.Background()) })
	if !younger.yield() {
		t.Fatal("yield() = false beside an older worker serving partition 3")
	}
	select {
	case err := <-younger.Conflict():
		if !errors.Is(err, ErrPrefixInUse) || !strings.Contains(err.Error(), "partitions 3 too") {
			t.Errorf("Conflict() = %v, want ErrPrefixInUse naming partition 3", err)
		}
	default:
		t.Error("no error on Conflict()")
	}
	younger.parts.mu.Lock()
	subs := len(younger.parts.subs)
	younger.parts.mu.Unlock()
	if subs != 0 {
		t.Errorf("%d partition subscriptions left after yield, want 0", subs)
	}
	if older.yield() {
		t.Error("the older worker yielded")
	}
}
