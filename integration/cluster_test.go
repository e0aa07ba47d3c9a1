package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// clusterPartitions is the number of partitions of testdata/cluster.
const clusterPartitions = 8

// startTestdataCluster starts the three nodes of testdata/cluster, with
// their accounts, mappings and permissions as shipped, on free ports and
// with their store directories in the test's temporary directory, and
// returns their client URLs without credentials.
func startTestdataCluster(tb testing.TB) []string {
	tb.Helper()
	var ports []int
	var routes []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[len(ports)-1]))
	}
	var servers []*server.Server
	for i, node := range []string{"node-a", "node-b", "node-c"} {
		opts, err := server.ProcessConfigFile(filepath.Join("..", "testdata", "cluster", node+".conf"))
		if err != nil {
			tb.Fatal(err)
		}
		opts.Port = -1
		opts.NoSigs, opts.NoLog = true, true
		opts.StoreDir = tb.TempDir()
		opts.Cluster.Port = ports[i]
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		s, err := server.NewServer(opts)
		if err != nil {
			tb.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			tb.Fatalf("%s did not start", node)
		}
		tb.Cleanup(s.Shutdown)
		servers = append(servers, s)
	}
	var urls []string
	for _, s := range servers {
		eventuallyFor(tb, 20*time.Second, "the routes", func() bool { return s.NumRemotes() == 2 })
		urls = append(urls, s.ClientURL())
	}
	return urls
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

// servedPartitions asks every worker ($SRV.STATS.persist, on a worker's
// connection: a client may not) which partitions it serves now, by
// service id.
func servedPartitions(tb testing.TB, nc *nats.Conn) map[string][]int {
	tb.Helper()
	inbox := "$SRV._persist_reply." + nats.NewInbox()[len("_INBOX."):]
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		tb.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SRV.STATS.persist", inbox, nil); err != nil {
		tb.Fatal(err)
	}
	got := map[string][]int{}
	for {
		m, err := sub.NextMsg(300 * time.Millisecond)
		if err != nil {
			return got
		}
		var st struct {
			ID        string `json:"id"`
			Endpoints []struct {
				Name string `json:"name"`
				Data struct {
					Partitions string `json:"partitions"`
				} `json:"data"`
			} `json:"endpoints"`
		}
		if err := json.Unmarshal(m.Data, &st); err != nil {
			tb.Fatalf("stats reply %q: %v", m.Data, err)
		}
		got[st.ID] = nil
		for _, ep := range st.Endpoints {
			if ep.Data.Partitions != "" {
				parts, err := subjects.ParsePartitions(ep.Data.Partitions, clusterPartitions)
				if err != nil {
					tb.Fatalf("stats partitions %q: %v", ep.Data.Partitions, err)
				}
				got[st.ID] = parts
			}
		}
	}
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

// ackedSet is one acknowledged set.
type ackedSet struct {
	seq  uint64
	data string
}

// clusterWriter sets on its streams in turn until stop, through nc,
// retrying what a partition on the move answers (503, no responders, a
// timeout), and records what was acknowledged.
type clusterWriter struct {
	mu    sync.Mutex
	acked map[string][]ackedSet
	fails []string
	quit  chan struct{}
	wg    sync.WaitGroup
}

func (w *clusterWriter) run(nc *nats.Conn, streams []string, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		s := streams[i%len(streams)]
		data := fmt.Sprintf("w%d", i)
		m, err := nc.Request("persist.api.set."+s, []byte(data), 2*time.Second)
		if err != nil {
			if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, nats.ErrNoResponders) {
				w.fail(fmt.Sprintf("set %s: %v", s, err))
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
			if code != "503" {
				w.fail(fmt.Sprintf("set %s: %s %s", s, code, m.Data))
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		var r subjects.SetReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			w.fail(fmt.Sprintf("set %s: %q: %v", s, m.Data, err))
			continue
		}
		w.mu.Lock()
		w.acked[s] = append(w.acked[s], ackedSet{r.Seq, data})
		w.mu.Unlock()
	}
}

func (w *clusterWriter) fail(s string) {
	w.mu.Lock()
	w.fails = append(w.fails, s)
	w.mu.Unlock()
}

// TestCluster_Leases runs three worker processes with --partitions auto
// on the three nodes of testdata/cluster, as shipped (permissions
// included), under load from a client on every node: the partitions
// spread 3/3/2; a worker stopped with SIGTERM leaves its partitions to
// the two others with no acknowledged write lost and no seq given twice;
// a worker killed with SIGKILL leaves them to the last one once its
// leases expire, and writes go on.
func TestCluster_Leases(t *testing.T) {
	urls := startTestdataCluster(t)
	archive := t.TempDir()
	const ttl = 3 * time.Second
	var workers []*worker
	for i, url := range urls {
		args := []string{"--nats-url", withUser(url, "worker", "worker-secret"), "--data", t.TempDir(), "--archive", archive,
			"--partitions", "auto", "--lease-ttl", ttl.String(), "--lease-replicas", "3", "--instance-check-interval", "1h"}
		// Ready once the stream "ready" is served: by the first worker,
		// for the later ones already.
		workers = append(workers, spawnWorker(t, withUser(urls[i], "client", "client-secret"), args...))
	}
	monitor := connect(t, withUser(urls[0], "worker", "worker-secret"))
	eventuallyFor(t, 30*time.Second, "the partitions spread over three workers", func() bool {
		return spreadEvenly(servedPartitions(t, monitor), 3)
	})

	var clients []*nats.Conn
	for _, url := range urls {
		clients = append(clients, connect(t, withUser(url, "client", "client-secret")))
	}
	// Phase one: three workers, then one stops cleanly.
	w := startClusterWriters(clients)
	eventuallyFor(t, 30*time.Second, "writes acknowledged", func() bool { return w.count() >= 100 })
	if code := workers[0].signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, workers[0].stderr.String())
	}
	eventuallyFor(t, 30*time.Second, "the partitions spread over two workers", func() bool {
		return spreadEvenly(servedPartitions(t, monitor), 2)
	})
	before := w.count()
	eventuallyFor(t, 30*time.Second, "writes after the move", func() bool { return w.count() >= before+100 })
	w.stop()
	// Nothing acknowledged was lost and no seq was given twice.
	w.check(t, clients[2], 0)

	// Phase two: one of the two is killed under load.
	w = startClusterWriters(clients)
	eventuallyFor(t, 30*time.Second, "writes acknowledged", func() bool { return w.count() >= 50 })
	killed := time.Now()
	if code := workers[1].signal(t, syscall.SIGKILL); code != -1 {
		t.Fatalf("SIGKILL: exit %d", code)
	}
	eventuallyFor(t, 60*time.Second, "the partitions taken over by the last worker", func() bool {
		return spreadEvenly(servedPartitions(t, monitor), 1)
	})
	t.Logf("partitions taken over %v after SIGKILL (lease TTL %v)", time.Since(killed).Round(100*time.Millisecond), ttl)
	taken := w.marks()
	before = w.count()
	eventuallyFor(t, 30*time.Second, "writes after the takeover", func() bool { return w.count() >= before+100 })
	w.stop()
	// Writes since the killed worker's last archive snapshot may be lost
	// (the loss bound of --archive-interval), and their seqs given again;
	// every write acknowledged after the takeover is there, each seq once.
	w.checkAfter(t, clients[2], taken)
}

// startClusterWriters starts one writer per connection, each on eight
// streams of namespaces of its own.
func startClusterWriters(clients []*nats.Conn) *clusterWriter {
	w := &clusterWriter{acked: map[string][]ackedSet{}, quit: make(chan struct{})}
	for i, nc := range clients {
		var streams []string
		for j := range 8 {
			streams = append(streams, fmt.Sprintf("t%d-%d.s", i, j))
		}
		w.wg.Go(func() { w.run(nc, streams, w.quit) })
	}
	return w
}

func (w *clusterWriter) stop() {
	close(w.quit)
	w.wg.Wait()
}

// count is the number of writes acknowledged.
func (w *clusterWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, a := range w.acked {
		n += len(a)
	}
	return n
}

// marks returns how many writes of each stream were acknowledged so far.
func (w *clusterWriter) marks() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := map[string]int{}
	for s, a := range w.acked {
		m[s] = len(a)
	}
	return m
}

// check fails the test for a write acknowledged (of each stream, from the
// one at index from on) that is not stored with its seq, or a seq
// acknowledged twice; and for the writer's unexpected errors.
func (w *clusterWriter) check(t *testing.T, nc *nats.Conn, from int) {
	t.Helper()
	w.checkAfter(t, nc, map[string]int{"": from})
}

func (w *clusterWriter) checkAfter(t *testing.T, nc *nats.Conn, from map[string]int) {
	t.Helper()
	for _, f := range w.fails {
		t.Error(f)
	}
	for s, sets := range w.acked {
		start, ok := from[s]
		if !ok {
			start = from[""]
		}
		msgs, end := getAllRaw(t, nc, "persist.api.getall."+s, nil)
		if end.Header.Get("Nats-Service-Error-Code") != "" {
			t.Fatalf("getall %s: %s", s, end.Data)
		}
		stored := map[uint64]string{}
		for _, m := range msgs {
			stored[parseSeq(t, m.Header.Get("Persist-Seq"))] = string(m.Data)
		}
		var last uint64
		for _, a := range sets[start:] {
			if a.seq <= last {
				t.Errorf("stream %s: seq %d acknowledged after seq %d", s, a.seq, last)
			}
			last = a.seq
			if got := stored[a.seq]; got != a.data {
				t.Errorf("stream %s: acknowledged seq %d (%q) is stored as %q", s, a.seq, a.data, got)
			}
		}
	}
}

func parseSeq(tb testing.TB, s string) uint64 {
	tb.Helper()
	var n uint64
	if _, err := fmt.Sscan(s, &n); err != nil {
		tb.Fatalf("Persist-Seq %q: %v", s, err)
	}
	return n
}
