package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

// Sizes of the cluster rows that are not flags.
const (
	clusterNodes = 3
	// clusterPartitions is the number of partitions of the cluster's
	// mappings: that of testdata/cluster and of the worker's default
	// --partition-count.
	clusterPartitions = 8
	// leaseReplicas of the workers' lease bucket, one per node.
	leaseReplicas = clusterNodes
)

// cluster is the three nats-server nodes of the cluster rows, routed to
// one another, with JetStream (the lease bucket) and the partition
// mappings; the workers started on them, one node each in turn; and the
// bench's connections, spread over the nodes.
type cluster struct {
	r       *runner
	dir     string
	servers []*child
	urls    []string
	conns   []*nats.Conn // conns[j] is connected to node j mod clusterNodes
	workers []*child     // in the order started
	started int          // workers started so far, for their names
}

// clusterRow is the name of the row of scenario sc with n workers.
func clusterRow(sc string, n int) string { return sc + "-" + strconv.Itoa(n) }

// clusterRowNames lists the cluster rows in table order: per scenario,
// each worker count and, after each but the smallest, its ratio to the
// smallest.
func clusterRowNames(workers []int) []string {
	var out []string
	for _, sc := range []string{scClusterSet, scClusterSetMany} {
		for i, n := range workers {
			out = append(out, clusterRow(sc, n))
			if i > 0 {
				out = append(out, clusterRow(sc, n)+"/"+strconv.Itoa(workers[0]))
			}
		}
	}
	return out
}

// clusterStream is the name of stream i of the cluster rows: a namespace
// of its own, so that the streams spread over the partitions
// (subjects.Partition hashes the namespace).
func clusterStream(i int) string { return "c" + strconv.Itoa(i) + ".s" }

// freePorts returns n TCP ports that were free a moment ago. The route
// ports must be known before the nodes start, since each lists them all.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	return ports, nil
}

// newCluster starts the three nodes under --data/cluster, all at once
// (each says it is ready once routed to the others), waits until
// JetStream answers on each, and connects the clients.
func (r *runner) newCluster(ctx context.Context) (*cluster, error) {
	c := &cluster{r: r, dir: r.path("cluster")}
	if err := os.RemoveAll(c.dir); err != nil {
		return nil, err
	}
	ports, err := freePorts(clusterNodes)
	if err != nil {
		return nil, fmt.Errorf("cluster: route ports: %w", err)
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
	}
	// The nodes start at once: each says it is ready once it has its
	// routes to the others.
	type started struct {
		srv *child
		url string
		err error
	}
	results := make([]started, clusterNodes)
	var wg sync.WaitGroup
	for i := range clusterNodes {
		wg.Go(func() {
			name := "node-" + string(rune('a'+i))
			args := []string{serveNATSMode, "--port", "0", "--js-dir", filepath.Join(c.dir, name),
				"--name", name, "--cluster-port", strconv.Itoa(ports[i]), "--routes", strings.Join(routes, ","),
				"--partition-count", strconv.Itoa(clusterPartitions), "--prefix", r.cfg.Prefix}
			srv, url, err := startChild("nats-server cluster "+name, r.path("logs", "nats-cluster-"+name+".log"), r.self, args, readyPrefix, serverStartTimeout)
			results[i] = started{srv, url, err}
		})
	}
	wg.Wait()
	var errs []error
	for _, s := range results {
		if s.srv != nil {
			r.procs.add(s.srv)
			c.servers = append(c.servers, s.srv)
			c.urls = append(c.urls, s.url)
		}
		errs = append(errs, s.err)
	}
	if err := errors.Join(errs...); err != nil {
		c.close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	for j := range max(clusterNodes, (r.cfg.Clients+clientsPerConn-1)/clientsPerConn) {
		url := c.urls[j%clusterNodes]
		nc, err := nats.Connect(url, nats.Name("persist-bench"), nats.MaxReconnects(-1), nats.ReconnectWait(reconnectDelay))
		if err != nil {
			c.close()
			return nil, fmt.Errorf("cluster: connect to %s: %w", url, err)
		}
		c.conns = append(c.conns, nc)
	}
	// The workers' lease bucket needs the JetStream meta leader, elected
	// once the routes are up.
	for _, nc := range c.conns[:clusterNodes] {
		js, err := jetstream.New(nc)
		if err == nil {
			_, err = r.pollUntil(ctx, nil, func() error {
				actx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				_, err := js.AccountInfo(actx)
				return err
			})
		}
		if err != nil {
			c.close()
			return nil, fmt.Errorf("cluster: JetStream on %s: %w", nc.ConnectedUrl(), err)
		}
	}
	return c, nil
}

// close stops the workers, then the nodes, and closes the connections.
func (c *cluster) close() error {
	var errs []error
	for _, nc := range c.conns {
		nc.Close()
	}
	for len(c.workers) > 0 {
		errs = append(errs, c.stopWorker())
	}
	for _, s := range c.servers {
		_, err := s.stop(stopTimeout)
		errs = append(errs, err)
	}
	if !c.r.cfg.Keep {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	return errors.Join(errs...)
}

// startWorker starts one more worker, on the next node in turn, with a
// data directory of its own, claiming partitions through leases.
func (c *cluster) startWorker() error {
	c.started++
	k := c.started
	url := c.urls[(k-1)%clusterNodes]
	args := []string{"--nats-url", url, "--data", filepath.Join(c.dir, "worker-"+strconv.Itoa(k)),
		"--prefix", c.r.cfg.Prefix, "--log-format", "json",
		"--partitions", "auto", "--partition-count", strconv.Itoa(clusterPartitions), "--lease-replicas", strconv.Itoa(leaseReplicas)}
	args = append(args, c.r.cfg.WorkerArgs...)
	w, _, err := startChild("persist-worker cluster-"+strconv.Itoa(k), c.r.path("logs", "worker-cluster-"+strconv.Itoa(k)+".log"), c.r.worker, args, "", 0)
	if err != nil {
		return err
	}
	c.r.procs.add(w)
	c.workers = append(c.workers, w)
	return nil
}

// stopWorker stops the worker started last (SIGTERM: it gives its leases
// up, and the others take its partitions).
func (c *cluster) stopWorker() error {
	w := c.workers[len(c.workers)-1]
	c.workers = c.workers[:len(c.workers)-1]
	_, err := w.stop(stopTimeout)
	return err
}

// scale starts or stops workers until n run, and waits until they serve
// every partition, none beyond its share (spreadEvenly).
func (c *cluster) scale(ctx context.Context, n int) error {
	for len(c.workers) < n {
		if err := c.startWorker(); err != nil {
			return err
		}
	}
	for len(c.workers) > n {
		if err := c.stopWorker(); err != nil {
			return err
		}
	}
	var served map[string][]int
	took, err := c.r.pollUntil(ctx, nil, func() error {
		for _, w := range c.workers {
			if w.exited() {
				return fmt.Errorf("%s exited: %v; its log: %s", w.name, w.err, tail(w.log.Name()))
			}
		}
		var err error
		if served, err = c.servedPartitions(ctx); err != nil {
			return err
		}
		if !spreadEvenly(served, n, clusterPartitions) {
			return fmt.Errorf("%d workers serve %s", n, describeServed(served))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	// The stats say a worker subscribed; the requests of every partition
	// must also reach it from every node, the interest having crossed the
	// routes.
	if _, err := c.r.pollUntil(ctx, nil, c.probe); err != nil {
		return fmt.Errorf("cluster: %d %s: %w", n, plural(n, "worker"), err)
	}
	c.r.logf("cluster: %d %s serving the %d partitions (%s) %.1fs after the change", n, plural(n, "worker"), clusterPartitions, describeServed(served), took.Seconds())
	return nil
}

// probe sends, from every node, an inventory request for one stream of
// each partition (of those that --cluster-streams has streams in) and
// fails unless each is answered by the worker that serves it: a reply, or
// 404 for a stream not written yet.
func (c *cluster) probe() error {
	seen := make([]bool, clusterPartitions)
	for i := range c.r.cfg.ClusterStreams {
		s := clusterStream(i)
		p := subjects.Partition(s, clusterPartitions)
		if seen[p] {
			continue
		}
		seen[p] = true
		for _, nc := range c.conns[:clusterNodes] {
			m, err := nc.Request(c.r.api("inventory", s), nil, c.r.cfg.Timeout)
			if err == nil && m.Header.Get(errorCodeHeader) == "404" {
				continue
			}
			if err = replyError(m, err); err != nil {
				return fmt.Errorf("inventory %s (partition %d) from %s: %w", s, p, nc.ConnectedUrl(), err)
			}
		}
	}
	return nil
}

// warm sets once on every stream, so that a worker that just took a
// partition has created or opened its streams' files before the
// measurement, which would otherwise count that against the larger
// counts (a started worker has an empty data directory).
func (c *cluster) warm(ctx context.Context, subjs []string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.conns))
	for j, nc := range c.conns {
		wg.Go(func() {
			for i := j; i < len(subjs) && ctx.Err() == nil; i += len(c.conns) {
				if err := c.r.request(nc, &nats.Msg{Subject: subjs[i], Data: c.r.payload}); err != nil {
					errs[j] = fmt.Errorf("cluster: warm-up set on %s: %w", subjs[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

// servedPartitions asks every worker (client.Workers) which partitions
// it serves now, by worker id.
func (c *cluster) servedPartitions(ctx context.Context) (map[string][]int, error) {
	ws, err := client.New(c.conns[0], client.WithPrefix(c.r.cfg.Prefix), client.WithTimeout(c.r.cfg.Timeout)).Workers(ctx)
	if err != nil {
		return nil, err
	}
	got := map[string][]int{}
	for _, w := range ws {
		if w.PartitionCount != clusterPartitions {
			return nil, fmt.Errorf("worker %s serves %d partitions, want %d", w.ID, w.PartitionCount, clusterPartitions)
		}
		got[w.ID] = w.Partitions
	}
	return got, nil
}

// spreadEvenly reports whether exactly workers workers serve the
// partitions, each once, none more than its share ceil(partitions /
// workers). The leases go on to partitions/workers or one more each (5
// workers, 8 partitions: 2, 2, 2, 1, 1); this check also accepts the
// state on the way (2, 2, 2, 2, 0), so a measurement may start while one
// worker still waits for its share.
func spreadEvenly(served map[string][]int, workers, partitions int) bool {
	if len(served) != workers {
		return false
	}
	seen := map[int]bool{}
	share := (partitions + workers - 1) / workers
	for _, parts := range served {
		if len(parts) > share {
			return false
		}
		for _, n := range parts {
			if seen[n] {
				return false
			}
			seen[n] = true
		}
	}
	return len(seen) == partitions
}

// describeServed writes each worker's partitions, the workers sorted by
// their first partition: "0-2 / 3-5 / 6-7".
func describeServed(served map[string][]int) string {
	var sets [][]int
	for _, p := range served {
		sets = append(sets, p)
	}
	slices.SortFunc(sets, func(a, b []int) int {
		if len(a) == 0 || len(b) == 0 {
			return len(a) - len(b)
		}
		return slices.Min(a) - slices.Min(b)
	})
	var out []string
	for _, p := range sets {
		out = append(out, orNone(subjects.FormatPartitions(p)))
	}
	if len(out) == 0 {
		return "no worker answers"
	}
	return strings.Join(out, " / ")
}

// clusterRows runs the cluster rows: `set` and `setmany` on a random one
// of --cluster-streams streams, from clients on all three nodes, with each
// count of --cluster-workers, and the bare request/reply ceiling of the
// cluster. Workers are added one by one up to the largest count, then, in
// the next repetition, stopped one by one down to the smallest, and so on,
// so that drift hits every count alike.
func (r *runner) clusterRows(ctx context.Context) (err error) {
	c, err := r.newCluster(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.close()) }()
	var responders []*nats.Conn
	defer func() {
		for _, rc := range responders {
			rc.Close()
		}
	}()
	for _, url := range c.urls {
		rc, err := echoResponder(url, "bench.cluster.echo")
		if err != nil {
			return fmt.Errorf("cluster: echo responder: %w", err)
		}
		responders = append(responders, rc)
	}
	sc, workers := r.cfg.scenarios, r.cfg.workers
	n := r.cfg.ClusterStreams
	setSubj, manySubj := make([]string, n), make([]string, n)
	for i := range n {
		setSubj[i], manySubj[i] = r.api("set", clusterStream(i)), r.api("setmany", clusterStream(i))
	}
	manyBody := setManyBody(r.payload, setManyItems)
	streams := fmt.Sprintf("random one of %s streams", count(n))
	rowFor := func(scn string, k int) *row {
		title := fmt.Sprintf("cluster `set`, %s, %d %s", streams, k, plural(k, "worker"))
		unit := "req/s"
		if scn == scClusterSetMany {
			title = fmt.Sprintf("cluster `setmany` of %d, %s, %d %s", setManyItems, streams, k, plural(k, "worker"))
			unit = "msg/s"
		}
		rw := r.addRow(clusterRow(scn, k), title, unit, false)
		if rw.Persist == nil {
			rw.Persist = &side{Label: fmt.Sprintf("%d %s", k, plural(k, "worker"))}
		}
		return rw
	}
	var echoRow *row
	if sc[scClusterSet] {
		echoRow = rowFor(scClusterSet, workers[0])
		echoRow.Peer = &side{Label: "echo, a responder on each node (ceiling)"}
	}
	perConn := (r.cfg.Clients + len(c.conns) - 1) / len(c.conns)
	loops := func(label string, do func(nc *nats.Conn, client int, rng *rand.Rand) (int, error)) result {
		res := runLoops(ctx, loopSpec{op: label, conns: c.conns, perConn: perConn, clients: r.cfg.Clients, duration: r.cfg.Duration, progress: r.progressTo(), do: do})
		r.logPhase(label, res)
		return res
	}
	groups := func() map[string][]int {
		g := map[string][]int{"bench": {os.Getpid()}}
		for _, s := range c.servers {
			g["nats"] = append(g["nats"], s.pid())
		}
		for _, w := range c.workers {
			g["workers"] = append(g["workers"], w.pid())
		}
		return g
	}
	measure := func(rw *row, s *side, label string, do func(nc *nats.Conn, client int, rng *rand.Rand) (int, error)) {
		measureRow(rw, s, groups, func() result { return loops(label, do) })
	}
	for rep := 0; rep < r.cfg.Reps && ctx.Err() == nil; rep++ {
		if sc[scClusterSet] {
			measure(echoRow, echoRow.Peer, r.label("cluster echo", rep), func(nc *nats.Conn, _ int, _ *rand.Rand) (int, error) {
				return 1, r.request(nc, &nats.Msg{Subject: "bench.cluster.echo", Data: r.payload})
			})
		}
		order := slices.Clone(workers)
		if rep%2 == 1 {
			slices.Reverse(order)
		}
		for _, k := range order {
			if ctx.Err() != nil {
				break
			}
			if err := c.scale(ctx, k); err != nil {
				return err
			}
			if err := c.warm(ctx, setSubj); err != nil {
				return err
			}
			if sc[scClusterSet] {
				rw := rowFor(scClusterSet, k)
				measure(rw, rw.Persist, r.label(fmt.Sprintf("cluster set, %d %s", k, plural(k, "worker")), rep), func(nc *nats.Conn, _ int, rng *rand.Rand) (int, error) {
					return 1, r.request(nc, &nats.Msg{Subject: setSubj[rng.IntN(n)], Data: r.payload})
				})
			}
			if sc[scClusterSetMany] && ctx.Err() == nil {
				rw := rowFor(scClusterSetMany, k)
				measure(rw, rw.Persist, r.label(fmt.Sprintf("cluster setmany, %d %s", k, plural(k, "worker")), rep), func(nc *nats.Conn, _ int, rng *rand.Rand) (int, error) {
					m, err := nc.Request(manySubj[rng.IntN(n)], manyBody, r.cfg.Timeout)
					return setManyReply(m, err, setManyItems)
				})
			}
		}
	}
	r.clusterNotes()
	return ctx.Err()
}

// measureRow runs one measurement and adds it to rw's side s and, for
// the workers' side, the CPU time it took to rw.CPU: a row's CPU is that
// of its workers' measurements alone, not of the echo beside them.
// groups names the processes whose CPU time is read.
func measureRow(rw *row, s *side, groups func() map[string][]int, run func() result) {
	before := readCPU(groups())
	res := run()
	if use := readCPU(groups()).since(before); use != nil && s == rw.Persist {
		use.Items = res.items
		rw.CPU = rw.CPU.add(use)
	}
	s.add(rate(res), res)
}

// clusterNotes adds the notes of the cluster rows: where the CPU went at
// each count, and whether the machine's cores were the limit at the
// largest.
func (r *runner) clusterNotes() {
	cores := float64(runtime.NumCPU())
	for _, name := range clusterRowNames(r.cfg.workers) {
		if rw := r.rows[name]; rw != nil && rw.CPU != nil {
			u, per := rw.CPU, "request"
			if rw.Unit == "msg/s" {
				per = "message"
			}
			r.notes = append(r.notes, fmt.Sprintf("%s: CPU %.2f of %.0f cores busy: nats-servers %.2f, workers %.2f, bench clients %.2f, the rest of the machine %.2f; CPU time per %s: nats-servers %s, workers %s, bench clients %s",
				rw.Title, u.Busy, cores, u.NATS, u.Workers, u.Bench, u.rest(), per, fmtCPUTime(u.perItem(u.NATS)), fmtCPUTime(u.perItem(u.Workers)), fmtCPUTime(u.perItem(u.Bench))))
		}
	}
	for _, sc := range []string{scClusterSet, scClusterSetMany} {
		rw := r.rows[clusterRow(sc, r.cfg.workers[len(r.cfg.workers)-1])]
		if rw == nil || rw.CPU == nil {
			continue
		}
		busy := 100 * rw.CPU.Busy / cores
		if busy >= 90 {
			r.notes = append(r.notes, fmt.Sprintf("%s: what limits scaling here is the CPU: the %.0f cores were %.0f%% busy, shared by the %d nats-servers, the workers, the clients and the rest of the machine (%.2f cores)",
				rw.Title, cores, busy, clusterNodes, rw.CPU.rest()))
		} else {
			r.notes = append(r.notes, fmt.Sprintf("%s: the %.0f cores were %.0f%% busy, under the 90%% at which the bench calls them the limit: more --clients may show more",
				rw.Title, cores, busy))
		}
	}
}

// fmtCPUTime writes a CPU time per item: as a latency, with a decimal
// below 10µs, where a setmany's messages are.
func fmtCPUTime(d time.Duration) string {
	if d < 9950*time.Nanosecond { // what would round to 10.0
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64) + "µs"
	}
	return fmtLatency(d.Round(time.Microsecond))
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
