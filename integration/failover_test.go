package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// clusterWorker is a worker process of the failover test and its micro
// instance id.
type clusterWorker struct {
	*worker
	id   string
	node int
}

// owners returns the worker serving each partition now, failing the test
// when a partition is served twice.
func owners(tb testing.TB, monitor *nats.Conn) map[int]string {
	tb.Helper()
	got := map[int]string{}
	for id, parts := range servedPartitions(tb, monitor) {
		for _, p := range parts {
			if other, ok := got[p]; ok {
				tb.Fatalf("partition %d served by %s and %s", p, other, id)
			}
			got[p] = id
		}
	}
	return got
}

// moved returns the partitions whose worker differs between before and
// after, each with its two workers.
func moved(before, after map[int]string) map[int][2]string {
	m := map[int][2]string{}
	for p := range clusterPartitions {
		if before[p] != after[p] {
			m[p] = [2]string{before[p], after[p]}
		}
	}
	return m
}

// failoverStreams returns 24 streams, three in each of the 8 partitions,
// each in a namespace of its own, ordered by partition: stream j is the
// (j mod 3)th of its partition.
func failoverStreams() []string {
	var streams []string
	per := map[int]int{}
	for k := 0; len(streams) < 3*clusterPartitions; k++ {
		s := fmt.Sprintf("f%d.s", k)
		if p := subjects.Partition(s, clusterPartitions); per[p] < 3 {
			per[p]++
			streams = append(streams, s)
		}
	}
	slices.SortStableFunc(streams, func(a, b string) int {
		return subjects.Partition(a, clusterPartitions) - subjects.Partition(b, clusterPartitions)
	})
	return streams
}

// logTimes returns, per partition, the times of the worker's JSON log
// lines whose message starts with msg.
func logTimes(tb testing.TB, log string, msg string) map[int][]time.Time {
	tb.Helper()
	got := map[int][]time.Time{}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Time      time.Time `json:"time"`
			Msg       string    `json:"msg"`
			Partition *int      `json:"partition"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Partition == nil || !strings.HasPrefix(line.Msg, msg) {
			continue
		}
		got[*line.Partition] = append(got[*line.Partition], line.Time)
	}
	return got
}

// archived copies the archive copies of streams out of dir and reads
// them: stream -> seq -> payload. Reading a copy, not the file, leaves
// the archive as the next owner finds it.
func archived(tb testing.TB, dir string, streams []string) map[string]map[uint64]string {
	tb.Helper()
	out := map[string]map[uint64]string{}
	tmp := tb.TempDir()
	for _, s := range streams {
		src := filepath.Join(dir, subjects.Path(s))
		f, err := os.Open(src)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		dst := filepath.Join(tmp, strings.ReplaceAll(subjects.Path(s), "/", "_"))
		g, err := os.Create(dst)
		if err != nil {
			tb.Fatal(err)
		}
		_, err = io.Copy(g, f)
		f.Close()
		if cerr := g.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			tb.Fatal(err)
		}
		out[s] = map[uint64]string{}
		dst = filepath.Clean(dst)
		out[s] = readStreamFile(tb, dst, s)
	}
	return out
}

// readStreamFile reads every message of the stream file at path.
func readStreamFile(tb testing.TB, path, name string) map[uint64]string {
	tb.Helper()
	st, err := store.Open(path, store.Options{Name: name})
	if err != nil {
		tb.Fatalf("open the archive copy of %s: %v", name, err)
	}
	defer st.Close()
	msgs := map[uint64]string{}
	if _, err := st.Read(store.ReadQuery{}, func(m *store.Message) error {
		msgs[m.Seq] = string(m.Data)
		return nil
	}); err != nil {
		tb.Fatalf("read the archive copy of %s: %v", name, err)
	}
	return msgs
}

// TestCluster_Failover runs worker processes with --partitions auto on
// the three nodes of testdata/cluster under load from a client on every
// node, and a checker that records every reply (see checker): three
// workers spread 3/3/2, locate answers the owner from every node, a
// fourth worker takes its share and only those partitions move, a worker
// killed (SIGKILL) leaves its partitions to the others, one stopped
// (SIGTERM) too with no acknowledged write lost, a node restarts, and a
// worker cut off from the lease bucket (its node stops) stops serving
// before its partitions are served elsewhere.
func TestCluster_Failover(t *testing.T) {
	nodes := startTestdataNodes(t, true)
	archive := t.TempDir()
	// The long run measures the default TTL's takeover.
	ttl := pick(3*time.Second, broker.DefaultLeaseTTL)
	load := pick(300, 5000) // acknowledged writes after each step
	monitor := monitorConn(t, withUser(nodes[1].url, "worker", "worker-secret"))
	var workers []*clusterWorker
	start := func(node int) *clusterWorker {
		t.Helper()
		known := servedPartitions(t, monitor)
		args := []string{"--nats-url", withUser(nodes[node].url, "worker", "worker-secret"), "--data", t.TempDir(),
			"--archive", archive, "--archive-interval", "500ms", "--partitions", "auto", "--lease-ttl", ttl.String(),
			"--lease-replicas", "3", "--instance-check-interval", "1h", "--log-format", "json", "--log-level", "info"}
		w := &clusterWorker{worker: spawnWorker(t, withUser(nodes[node].url, "client", "client-secret"), args...), node: node}
		eventuallyFor(t, 30*time.Second, "the new worker's stats", func() bool {
			for id := range servedPartitions(t, monitor) {
				if _, ok := known[id]; !ok {
					w.id = id
					return true
				}
			}
			return false
		})
		workers = append(workers, w)
		return w
	}
	spread := func(n int) map[int]string {
		t.Helper()
		eventuallyFor(t, 60*time.Second, fmt.Sprintf("the partitions spread over %d workers", n), func() bool {
			return spreadEvenly(servedPartitions(t, monitor), n)
		})
		return owners(t, monitor)
	}
	for i := range 3 {
		start(i)
	}
	own := spread(3)

	var clients []*nats.Conn
	c := newChecker()
	streams := failoverStreams()
	for i, n := range nodes {
		nc := connect(t, withUser(n.url, "client", "client-secret"))
		clients = append(clients, nc)
		c.listen(t, i, nc)
	}
	// Writer w writes through node w mod 3, so every partition is written
	// through every node.
	for w := range 6 {
		var mine []string
		for j, s := range streams {
			if j%6 == w {
				mine = append(mine, s)
			}
		}
		c.write(w%3, clients[w%3], mine)
	}
	halted := false
	defer func() {
		if !halted {
			c.halt()
		}
	}()
	more := func(what string) {
		t.Helper()
		n := c.acks()
		eventuallyFor(t, 60*time.Second, what, func() bool { return c.acks() >= n+load })
	}

	// Three workers: every stream reachable from every node, each
	// located at its partition's worker.
	end := c.mark("three workers", false, nil)
	more("writes on three workers")
	for _, nc := range clients {
		cl := client.New(nc)
		for _, s := range streams {
			loc, err := cl.Locate(context.Background(), s)
			if err != nil {
				t.Fatalf("Locate(%s) through %s: %v", s, nc.ConnectedUrl(), err)
			}
			if p := subjects.Partition(s, clusterPartitions); loc.Worker != own[p] || loc.Partition == nil || *loc.Partition != p || loc.PartitionCount != clusterPartitions {
				t.Fatalf("Locate(%s) = %+v, want partition %d of worker %s", s, loc, p, own[p])
			}
		}
	}
	end()
	checkWorkers(t, c, "three workers", own)

	// A fourth worker joins: it takes its fair share, and only those
	// partitions move.
	end = c.mark("join", false, nil)
	d := start(0)
	after := spread(4)
	mv := moved(own, after)
	if len(mv) != 2 || slices.ContainsFunc(slices.Collect(maps.Values(mv)), func(m [2]string) bool { return m[1] != d.id }) {
		t.Fatalf("after the join: moves %v, want two partitions to the new worker %s only", mv, d.id)
	}
	for p, m := range mv {
		loc, err := client.New(clients[2]).Locate(context.Background(), streams[slices.IndexFunc(streams, func(s string) bool { return subjects.Partition(s, clusterPartitions) == p })])
		if err != nil || loc.Worker != m[1] {
			t.Fatalf("Locate on moved partition %d = %+v, %v; want worker %s", p, loc, err, m[1])
		}
	}
	more("writes after the join")
	c.setMoves(end(), mv)
	own = after

	// SIGKILL under load.
	victim := workers[1]
	var lost []int
	for p, id := range own {
		if id == victim.id {
			lost = append(lost, p)
		}
	}
	var lostStreams []string
	for _, s := range streams {
		if slices.Contains(lost, subjects.Partition(s, clusterPartitions)) {
			lostStreams = append(lostStreams, s)
		}
	}
	end = c.mark("SIGKILL", false, nil)
	killed := time.Now()
	if code := victim.signal(t, syscall.SIGKILL); code != -1 {
		t.Fatalf("SIGKILL: exit %d", code)
	}
	snap := archived(t, archive, lostStreams)
	copied := time.Now()
	after = spread(3)
	more("writes after the takeover")
	mv = moved(own, after)
	for p, m := range mv {
		if m[0] != victim.id {
			t.Errorf("after the SIGKILL partition %d moved from %s, not from the killed worker", p, m[0])
		}
	}
	var first map[int]time.Time
	defer func() {
		if t.Failed() {
			t.Logf("replies since the SIGKILL on partitions %v: %v", lost, c.summary(killed, lost))
		}
	}()
	eventuallyFor(t, 60*time.Second, "writes on every partition of the killed worker", func() bool {
		first = c.firstAck(killed, lost, func(w string) bool { return w != victim.id })
		return len(first) == len(lost)
	})
	var takeover time.Duration
	for _, p := range lost {
		at := first[p]
		if !at.After(copied) {
			t.Fatalf("partition %d answered by its new worker at %v, before the archive copies were read (%v)", p, at, copied)
		}
		takeover = max(takeover, at.Sub(killed))
	}
	c.setMoves(end(), mv)
	own = after

	// SIGTERM: nothing acknowledged is lost.
	leaving := workers[3]
	end = c.mark("SIGTERM", false, nil)
	stopped := time.Now()
	if code := leaving.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, leaving.stderr.String())
	}
	var left []int
	for p, id := range own {
		if id == leaving.id {
			left = append(left, p)
		}
	}
	after = spread(2)
	more("writes after the SIGTERM")
	mv = moved(own, after)
	var handover time.Duration
	eventuallyFor(t, 60*time.Second, "writes on every partition of the stopped worker", func() bool {
		return len(c.firstAck(stopped, left, func(w string) bool { return w != leaving.id })) == len(left)
	})
	for _, at := range c.firstAck(stopped, left, func(w string) bool { return w != leaving.id }) {
		handover = max(handover, at.Sub(stopped))
	}
	c.setMoves(end(), mv)
	own = after

	// A node restarts: the worker on it, cut off meanwhile, may lose its
	// partitions and take its share back.
	end = c.mark("node restart", true, nil)
	nodes[0].stop()
	time.Sleep(time.Second) // the node is down for a second
	nodes[0].start(t)
	own = spread(2)
	more("writes after the node restart")
	end()

	// A worker cut off from the lease bucket (its node stops) stops
	// serving before its partitions are served elsewhere.
	cut := workers[2]
	var held []int
	for p, id := range own {
		if id == cut.id {
			held = append(held, p)
		}
	}
	end = c.mark("cut off", true, nil)
	isolated := time.Now()
	nodes[2].stop()
	eventuallyFor(t, 60*time.Second, "the other worker serving every partition", func() bool {
		return spreadEvenly(servedPartitions(t, monitor), 1)
	})
	var taken map[int]time.Time
	eventuallyFor(t, 60*time.Second, "writes on every partition the cut off worker held", func() bool {
		taken = c.firstAck(isolated, held, func(w string) bool { return w != cut.id })
		return len(taken) == len(held)
	})
	nodes[2].start(t)
	spread(2)
	more("writes after the node is back")
	end()
	stops := logTimes(t, cut.stderr.String(), "lease not renewed in time")
	claims := map[int][]time.Time{}
	for _, w := range workers {
		if w != cut {
			for p, at := range logTimes(t, w.stderr.String(), "claimed partition") {
				claims[p] = append(claims[p], at...)
			}
		}
	}
	var margin time.Duration = -1
	for _, p := range held {
		var stop time.Time
		for _, at := range stops[p] {
			if at.After(isolated) {
				stop = at
				break
			}
		}
		if stop.IsZero() {
			t.Errorf("partition %d: the cut off worker logged no stop after %v", p, isolated)
			continue
		}
		if !stop.Before(taken[p]) {
			t.Errorf("partition %d: answered by another worker at %v, before the cut off one stopped serving it (%v)", p, taken[p], stop)
		}
		for _, at := range claims[p] {
			if at.After(isolated) && !at.After(stop) {
				t.Errorf("partition %d: claimed by another worker at %v, before the cut off one stopped serving it (%v)", p, at, stop)
			}
		}
		if m := taken[p].Sub(stop); margin < 0 || m < margin {
			margin = m
		}
	}

	c.halt()
	halted = true
	rs, ws := c.snapshot()
	for _, v := range analyze(rs, ws) {
		t.Error(v)
	}
	// Every acknowledged write is stored at its seq, but those the killed
	// worker acknowledged after its last archive snapshot (the loss bound
	// of --archive-interval); every write the snapshot had is there.
	cl := client.New(clients[1])
	stored := map[string]map[uint64]string{}
	for _, s := range streams {
		stored[s] = map[uint64]string{}
		for seq, m := range readAll(t, cl.Stream(s)) {
			stored[s][seq] = string(m.Data)
		}
	}
	lostWrites, acked, missing := 0, 0, 0
	for _, r := range rs {
		a, ok := r.acked()
		if !ok {
			continue
		}
		acked++
		if got := stored[r.stream][a.seq]; got != r.payload {
			if a.worker == victim.id && snap[r.stream][a.seq] != r.payload {
				lostWrites++
				continue
			}
			if missing++; missing <= 10 {
				t.Errorf("stream %s: seq %d acknowledged by %s for %q is stored as %q", r.stream, a.seq, a.worker, r.payload, got)
			}
		}
	}
	for s, msgs := range snap {
		for seq, data := range msgs {
			if got := stored[s][seq]; got != data {
				t.Errorf("stream %s: seq %d of the killed worker's last archive snapshot (%q) is stored as %q", s, seq, data, got)
			}
		}
	}
	if missing > 10 {
		t.Errorf("… %d acknowledged writes missing in all", missing)
	}
	report(t, "cluster-failover", map[string]any{
		"requests": len(rs), "acked": acked, "lost_after_sigkill": lostWrites,
		"takeover_sigkill_ms": takeover.Milliseconds(), "handover_sigterm_ms": handover.Milliseconds(),
		"cutoff_margin_ms": margin.Milliseconds(), "lease_ttl": ttl.String(),
	})
}

// checkWorkers fails the test for an acknowledgement in the window named
// name from a worker other than own's for its partition.
func checkWorkers(t *testing.T, c *checker, name string, own map[int]string) {
	t.Helper()
	rs, ws := c.snapshot()
	i := slices.IndexFunc(ws, func(w window) bool { return w.name == name })
	for _, r := range rs {
		if a, ok := r.acked(); ok && !a.received.Before(ws[i].from) && a.received.Before(ws[i].to) && a.worker != own[r.partition] {
			t.Fatalf("%s: set %s (partition %d) acknowledged by %s, the partition's worker is %s", name, r.stream, r.partition, a.worker, own[r.partition])
		}
	}
}
