package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-persist/persist/cmd/internal/command"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// Sizes of the side-by-side scenarios that are not flags.
const (
	setManyItems   = 100  // messages per setmany request
	getAllPage     = 1000 // max_msgs of each getall page
	asyncPending   = 256  // PublishAsyncMaxPending of every JetStream publisher
	listPage       = 1000 // names per list page of the huge row
	listTries      = 5    // list requests timed per page position
	fillLoops      = 4    // concurrent setmany loops that fill a stream
	copyLoops      = 8    // concurrent file copies that create the huge streams
	pollEvery      = 5 * time.Millisecond
	workerReady    = 2 * time.Minute // a worker must answer this soon after its start
	reconnectDelay = 20 * time.Millisecond
)

// runner is one side-by-side run: its settings, its children and the rows
// measured so far.
type runner struct {
	cfg      config
	stdout   io.Writer
	stderr   io.Writer
	progress bool   // stderr is a terminal
	self     string // this binary, started as the nats-server children
	worker   string // the persist-worker binary
	payload  []byte
	procs    children
	machine  machine
	rows     map[string]*row
	notes    []string
}

// env is a nats-server child, a worker child connected to it, and the
// bench's client connections to that server.
type env struct {
	r      *runner
	name   string
	jsDir  string
	data   string // the worker's --data
	server *child
	url    string
	port   int
	worker *child
	conns  []*nats.Conn
	jss    []jetstream.JetStream // one per conn
}

// sideBySide runs every selected scenario, Persist and JetStream
// alternating, and prints the table. Whatever ends the run (an error,
// ctx), the rows measured so far are printed, the children are stopped
// and, unless --keep, the data directory is cleaned up.
func sideBySide(ctx context.Context, cfg config, stdout, stderr io.Writer) (err error) {
	r := &runner{cfg: cfg, stdout: stdout, stderr: stderr, progress: isTerminal(stderr), rows: map[string]*row{}}
	r.payload = make([]byte, cfg.Payload)
	for i := range r.payload {
		r.payload[i] = 'a' + byte(i%26)
	}
	if r.self, err = os.Executable(); err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	if err := os.MkdirAll(r.path("logs"), 0o755); err != nil {
		return fmt.Errorf("create --data: %w", err)
	}
	defer func() {
		err = errors.Join(err, r.procs.stopAll(stopTimeout))
		if !cfg.Keep {
			err = errors.Join(err, r.cleanData())
		}
	}()
	if r.worker, err = r.findWorker(ctx); err != nil {
		return err
	}
	r.machine = describeMachine(cfg.args, r.worker, cfg.Data)
	if cfg.Worker == "" && !strings.Contains(r.machine.WorkerInfo, command.VCSMark) {
		// The build was not stamped (GOFLAGS=-buildvcs=false, say):
		// name the checkout's commit instead.
		r.machine.WorkerInfo = strings.TrimSpace(r.machine.WorkerInfo + " " + checkoutCommit(ctx))
	}

	err = r.runAll(ctx)
	r.machine.LoadEnd = loadAvg()
	if perr := r.print(); perr != nil {
		err = errors.Join(err, perr)
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("interrupted, the table shows the rows measured so far: %w", ctx.Err())
	}
	return err
}

func (r *runner) runAll(ctx context.Context) error {
	sc := r.cfg.scenarios
	if sc[scEcho] || sc[scSet] || sc[scSetSync] || sc[scSetMany] || sc[scGet] || sc[scGetAll] {
		if err := r.throughput(ctx); err != nil {
			return err
		}
	}
	if sc[scCreate] || sc[scRSS] || sc[scRestart] || sc[scSetRandom] {
		for rep := range r.cfg.ManyReps {
			if err := r.many(ctx, rep); err != nil {
				return err
			}
		}
	}
	if sc[scHuge] && r.cfg.HugeStreams > 0 {
		if err := r.huge(ctx); err != nil {
			return err
		}
	}
	if sc[scClusterSet] || sc[scClusterSetMany] {
		return r.clusterRows(ctx)
	}
	return nil
}

// path is a file or directory under --data.
func (r *runner) path(elem ...string) string {
	return filepath.Join(append([]string{r.cfg.Data}, elem...)...)
}

// cleanData removes what the run wrote under --data, and --data itself
// when nothing else is left in it.
func (r *runner) cleanData() error {
	entries, _ := os.ReadDir(r.cfg.Data)
	var errs []error
	for _, e := range entries {
		if isOurs(e.Name()) {
			errs = append(errs, os.RemoveAll(r.path(e.Name())))
		}
	}
	if rest, _ := os.ReadDir(r.cfg.Data); len(rest) == 0 {
		_ = os.Remove(r.cfg.Data)
	}
	return errors.Join(errs...)
}

// isOurs tells the entries of --data that a run creates.
func isOurs(name string) bool {
	return name == "logs" || name == "main" || name == "sync" || name == "huge" ||
		name == "cluster" ||
		name == "persist-worker" || strings.HasPrefix(name, "many-")
}

// findWorker is --worker, or a persist-worker built from this checkout
// into --data.
func (r *runner) findWorker(ctx context.Context) (string, error) {
	if r.cfg.Worker != "" {
		p, err := filepath.Abs(r.cfg.Worker)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("--worker: %w", err)
		}
		return p, nil
	}
	out := r.path("persist-worker")
	r.logf("building persist-worker into %s", out)
	cmd := exec.CommandContext(ctx, "go", "build", "-buildvcs=auto", "-o", out, "github.com/nats-persist/persist/cmd/persist-worker")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build persist-worker (run from a checkout of the module, or pass --worker): %v\n%s", err, msg)
	}
	return out, nil
}

// checkoutCommit describes the commit of the checkout the worker was
// built from: "built from <rev>" and "+dirty" with uncommitted changes.
func checkoutCommit(ctx context.Context) string {
	rev, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	v := "built from " + strings.TrimSpace(string(rev))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		v += "+dirty"
	}
	return v
}

// logf writes one line on stderr: one line per phase, so that a run in a
// pipe or a file shows where it is.
func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.stderr, "persist-bench: "+format+"\n", args...)
}

// progressTo is where runLoops draws its progress line: stderr when it is
// a terminal.
func (r *runner) progressTo() io.Writer {
	if r.progress {
		return r.stderr
	}
	return nil
}

// startServer starts a nats-server child with JetStream in jsDir; port 0
// picks a free port.
func (r *runner) startServer(name, jsDir string, port int, syncAlways bool) (*child, string, error) {
	args := []string{serveNATSMode, "--port", strconv.Itoa(port), "--js-dir", jsDir}
	if syncAlways {
		args = append(args, "--sync-always")
	}
	c, url, err := startChild("nats-server "+name, r.path("logs", "nats-"+name+".log"), r.self, args, readyPrefix, serverStartTimeout)
	if err != nil {
		return nil, "", err
	}
	r.procs.add(c)
	return c, url, nil
}

// startWorker starts a worker child on url with its streams in data, and
// waits until it answers.
func (r *runner) startWorker(ctx context.Context, name, url, data string, nc *nats.Conn) (*child, error) {
	args := []string{"--nats-url", url, "--data", data, "--prefix", r.cfg.Prefix, "--log-format", "json"}
	args = append(args, r.cfg.WorkerArgs...)
	logPath := r.path("logs", "worker-"+name+".log")
	c, _, err := startChild("persist-worker "+name, logPath, r.worker, args, "", 0)
	if err != nil {
		return nil, err
	}
	r.procs.add(c)
	subj := subjects.APISubject(r.cfg.Prefix, "inventory", "bench.ready")
	if _, err := r.pollUntil(ctx, c, func() error { return r.request(nc, &nats.Msg{Subject: subj}) }); err != nil {
		return nil, fmt.Errorf("persist-worker %s: %w; its log: %s%s", name, err, logPath, tail(logPath))
	}
	return c, nil
}

// pollUntil calls try every pollEvery until it succeeds, c exits, ctx ends
// or workerReady passes, and returns how long that took.
func (r *runner) pollUntil(ctx context.Context, c *child, try func() error) (time.Duration, error) {
	t0 := time.Now()
	var err error
	for time.Since(t0) < workerReady {
		if err = try(); err == nil {
			return time.Since(t0), nil
		}
		if c != nil && c.exited() {
			return 0, fmt.Errorf("exited: %v", c.err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
	return 0, fmt.Errorf("no answer after %v: %w", workerReady, err)
}

// newEnv starts a nats-server and a worker on it under dir, and connects
// the clients.
func (r *runner) newEnv(ctx context.Context, name string) (*env, error) {
	dir := r.path(name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	e := &env{r: r, name: name, jsDir: filepath.Join(dir, "jetstream"), data: filepath.Join(dir, "persist")}
	var err error
	if e.server, e.url, err = r.startServer(name, e.jsDir, 0, false); err != nil {
		return nil, err
	}
	if i := strings.LastIndexByte(e.url, ':'); i >= 0 {
		e.port, _ = strconv.Atoi(e.url[i+1:])
	}
	if e.conns, e.jss, err = r.connect(e.url); err != nil {
		e.close()
		return nil, err
	}
	if e.worker, err = r.startWorker(ctx, name, e.url, e.data, e.conns[0]); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// close stops the worker, then the server, and closes the connections.
func (e *env) close() error {
	var errs []error
	for _, nc := range e.conns {
		nc.Close()
	}
	if e.worker != nil {
		_, err := e.worker.stop(stopTimeout)
		errs = append(errs, err)
	}
	if e.server != nil {
		_, err := e.server.stop(stopTimeout)
		errs = append(errs, err)
	}
	if !e.r.cfg.Keep {
		errs = append(errs, os.RemoveAll(e.r.path(e.name)))
	}
	return errors.Join(errs...)
}

// connect opens one connection per clientsPerConn clients, each with a
// JetStream context. They reconnect quickly and forever, as the
// JetStream server is restarted under them.
func (r *runner) connect(url string) ([]*nats.Conn, []jetstream.JetStream, error) {
	var conns []*nats.Conn
	var jss []jetstream.JetStream
	fail := func(err error) ([]*nats.Conn, []jetstream.JetStream, error) {
		for _, c := range conns {
			c.Close()
		}
		return nil, nil, err
	}
	for range (r.cfg.Clients + clientsPerConn - 1) / clientsPerConn {
		nc, err := nats.Connect(url, nats.Name("persist-bench"), nats.MaxReconnects(-1), nats.ReconnectWait(reconnectDelay))
		if err != nil {
			return fail(fmt.Errorf("connect to %s: %w", url, err))
		}
		conns = append(conns, nc)
		js, err := jetstream.New(nc)
		if err != nil {
			return fail(err)
		}
		jss = append(jss, js)
	}
	return conns, jss, nil
}

// jsFor is the JetStream context of the connection that loop client uses.
func (e *env) jsFor(nc *nats.Conn) jetstream.JetStream {
	return e.jss[max(0, slices.Index(e.conns, nc))]
}

// request sends one request and reports a timeout, a missing responder or
// an error reply as an error.
func (r *runner) request(nc *nats.Conn, msg *nats.Msg) error {
	m, err := nc.RequestMsg(msg, r.cfg.Timeout)
	return replyError(m, err)
}

func (r *runner) api(op, stream string) string { return subjects.APISubject(r.cfg.Prefix, op, stream) }

// loops measures request loops of do with --clients on e's connections
// for d, and logs the phase.
func (r *runner) loops(ctx context.Context, label string, conns []*nats.Conn, d time.Duration, do func(nc *nats.Conn, client int, rng *rand.Rand) (int, error)) result {
	res := runLoops(ctx, loopSpec{op: label, conns: conns, clients: r.cfg.Clients, duration: d, progress: r.progressTo(), do: do})
	r.logPhase(label, res)
	return res
}

func (r *runner) logPhase(label string, res result) {
	line := fmt.Sprintf("%s: %.0f/s, %d in %.2fs, p99 %s, %d errors", label, rate(res), res.items, res.elapsed.Seconds(), fmtLatency(res.hist.quantile(0.99)), res.errors)
	if res.firstErr != nil {
		line += fmt.Sprintf(" (first: %v)", res.firstErr)
	}
	r.logf("%s", line)
}

// measure runs one measurement while sampling the RSS of process pid,
// and adds it to s: its rate, and the largest RSS of any repetition and
// the one at the end of the last.
func measure(pid int, s *side, f func() result) result {
	smp := sampleRSS(pid)
	res := f()
	s.addRSS(smp.stop())
	s.add(rate(res), res)
	return res
}

// addRSS records the RSS sampled during one repetition: the largest of
// every repetition, and the last one's value at its end.
func (s *side) addRSS(peak, end int64) {
	s.RSSMaxMB, s.RSSEndMB = max(s.RSSMaxMB, mb(peak)), mb(end)
}

// rate is a result's items per second.
func rate(res result) float64 { return float64(res.items) / max(res.elapsed.Seconds(), 1e-9) }

// setManyBody is a setmany request of n copies of payload.
func setManyBody(payload []byte, n int) []byte {
	item := []byte(`{"data":"` + base64.StdEncoding.EncodeToString(payload) + `"}`)
	b := append(make([]byte, 0, n*(len(item)+1)+2), '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, item...)
	}
	return append(b, ']')
}

// setManyReply checks a setmany reply: the items that failed are counted
// by their error objects.
func setManyReply(m *nats.Msg, err error, n int) (int, error) {
	if err := replyError(m, err); err != nil {
		return 0, err
	}
	if bad := bytes.Count(m.Data, []byte(`{"error"`)); bad > 0 {
		return n - bad, fmt.Errorf("setmany: %d of %d items failed: %.200s", bad, n, m.Data)
	}
	return n, nil
}

// fillPersist appends n messages to stream with setmany requests and
// checks that it holds them.
func (r *runner) fillPersist(ctx context.Context, nc *nats.Conn, stream string, n int) error {
	chunk := max(1, min(1000, 600_000/(base64.StdEncoding.EncodedLen(len(r.payload))+16)))
	body := setManyBody(r.payload, chunk)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, fillLoops)
	for l := range fillLoops {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := next.Add(int64(chunk)) - int64(chunk)
				if start >= int64(n) {
					return
				}
				k := min(chunk, n-int(start))
				b := body
				if k < chunk {
					b = setManyBody(r.payload, k)
				}
				m, err := nc.Request(r.api("setmany", stream), b, 4*r.cfg.Timeout)
				if _, err := setManyReply(m, err, k); err != nil {
					errs[l] = fmt.Errorf("fill %s: %w", stream, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return err
	}
	m, err := nc.Request(r.api("inventory", stream), nil, r.cfg.Timeout)
	if err = replyError(m, err); err != nil {
		return fmt.Errorf("inventory %s: %w", stream, err)
	}
	var inv struct {
		Count int64 `json:"count"`
	}
	if err := json.Unmarshal(m.Data, &inv); err != nil || inv.Count != int64(n) {
		return fmt.Errorf("inventory %s: %s, want %d messages", stream, m.Data, n)
	}
	return nil
}

// asyncPublisher counts the acks and errors of a JetStream context's
// asynchronous publishes.
type asyncPublisher struct {
	js          jetstream.JetStream
	acked, errs atomic.Uint64
	firstErr    atomic.Value
}

func newAsyncPublisher(nc *nats.Conn) (*asyncPublisher, error) {
	p := &asyncPublisher{}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(asyncPending),
		jetstream.WithPublishAsyncAckHandler(func(jetstream.JetStream, *nats.Msg, *jetstream.PubAck) { p.acked.Add(1) }),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			p.errs.Add(1)
			p.firstErr.CompareAndSwap(nil, err)
		}),
	)
	p.js = js
	return p, err
}

// wait waits until every publish is acknowledged or failed.
func (p *asyncPublisher) wait(timeout time.Duration) error {
	select {
	case <-p.js.PublishAsyncComplete():
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%d async publishes not acknowledged after %v", p.js.PublishAsyncPending(), timeout)
	}
}

// fillJetStream publishes n messages to subj asynchronously.
func (r *runner) fillJetStream(ctx context.Context, nc *nats.Conn, subj string, n int) error {
	p, err := newAsyncPublisher(nc)
	if err != nil {
		return err
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		_, err := p.js.PublishAsync(subj, r.payload)
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			i-- // back-pressure: asyncPending in flight for the stall wait
			continue
		}
		if err != nil {
			return fmt.Errorf("fill %s: %w", subj, err)
		}
	}
	if err := p.wait(time.Minute); err != nil {
		return fmt.Errorf("fill %s: %w", subj, err)
	}
	if e := p.errs.Load(); e > 0 {
		return fmt.Errorf("fill %s: %d publishes failed, the first: %v", subj, e, p.firstErr.Load())
	}
	return ctx.Err()
}

// createJSStream creates a file stream with direct get on one subject.
func createJSStream(ctx context.Context, js jetstream.JetStream, name, subj string) error {
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Storage: jetstream.FileStorage, AllowDirect: true})
	if err != nil {
		return fmt.Errorf("create JetStream stream %s: %w", name, err)
	}
	return nil
}

// directGet reads message seq of a JetStream stream by direct get, the
// request a client without a consumer sends.
func (r *runner) directGet(nc *nats.Conn, stream string, seq int64) error {
	m, err := nc.Request("$JS.API.DIRECT.GET."+stream, getBody(seq), r.cfg.Timeout)
	if err != nil {
		return err
	}
	if st := m.Header.Get("Status"); st != "" || len(m.Data) == 0 {
		return fmt.Errorf("direct get %s %d: status %q %s", stream, seq, st, m.Header.Get("Description"))
	}
	return nil
}

// getBody is the body of a get request for seq.
func getBody(seq int64) []byte {
	return append(strconv.AppendInt([]byte(`{"seq":`), seq, 10), '}')
}

// echoResponder answers every request on subj with its body, on a
// connection of its own, one subscription per CPU in a queue group.
func echoResponder(url, subj string) (*nats.Conn, error) {
	rc, err := nats.Connect(url, nats.Name("persist-bench-echo"))
	if err != nil {
		return nil, err
	}
	for range max(2, runtime.NumCPU()) {
		if _, err := rc.QueueSubscribe(subj, "persist-bench", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
			rc.Close()
			return nil, err
		}
	}
	return rc, rc.Flush()
}

// throughput runs the rows of one stream each, on one server and worker:
// echo, set, set-sync (with a second server, sync always), setmany, get
// and getall, Persist and its peer alternating --reps times.
func (r *runner) throughput(ctx context.Context) error {
	sc := r.cfg.scenarios
	e, err := r.newEnv(ctx, "main")
	if err != nil {
		return err
	}
	defer e.close()
	nc := e.conns[0]
	js := e.jss[0]
	d := r.cfg.Duration

	if sc[scEcho] || sc[scSet] {
		rc, err := echoResponder(e.url, "bench.echo")
		if err != nil {
			return fmt.Errorf("echo responder: %w", err)
		}
		defer rc.Close()
		row := r.addRow(scEcho, "bare NATS request/reply (ceiling)", "req/s", false)
		row.Peer = &side{Label: "echo"}
		for rep := 0; rep < r.cfg.Reps && ctx.Err() == nil; rep++ {
			measure(e.server.pid(), row.Peer, func() result {
				return r.loops(ctx, r.label("echo", rep), e.conns, d, func(nc *nats.Conn, _ int, _ *rand.Rand) (int, error) {
					return 1, r.request(nc, &nats.Msg{Subject: "bench.echo", Data: r.payload})
				})
			})
		}
	}
	if sc[scSet] {
		if err := createJSStream(ctx, js, "ONE", "js.one"); err != nil {
			return err
		}
		subj := r.api("set", "bench.one")
		r.pair(ctx, e, scSet, "`set`, one stream", "JetStream sync publish", "req/s",
			func(nc *nats.Conn, _ int, _ *rand.Rand) (int, error) {
				return 1, r.request(nc, &nats.Msg{Subject: subj, Data: r.payload})
			},
			func(nc *nats.Conn, _ int, _ *rand.Rand) (int, error) {
				_, err := e.jsFor(nc).Publish(ctx, "js.one", r.payload)
				return 1, err
			})
	}
	if ctx.Err() == nil && sc[scSetSync] {
		if err := r.setSync(ctx, e); err != nil {
			return err
		}
	}
	if ctx.Err() == nil && sc[scSetMany] {
		if err := createJSStream(ctx, js, "MANY", "js.many"); err != nil {
			return err
		}
		subj := r.api("setmany", "bench.many")
		body := setManyBody(r.payload, setManyItems)
		pubs := make([]*asyncPublisher, len(e.conns))
		row := r.addRow(scSetMany, fmt.Sprintf("`setmany`, %d per request", setManyItems), "msg/s", false)
		row.Persist, row.Peer = &side{Label: "setmany"}, &side{Label: fmt.Sprintf("JetStream async publish, %d pending", asyncPending)}
		for rep := 0; rep < r.cfg.Reps && ctx.Err() == nil; rep++ {
			measure(e.worker.pid(), row.Persist, func() result {
				return r.loops(ctx, r.label("setmany", rep), e.conns, d, func(nc *nats.Conn, _ int, _ *rand.Rand) (int, error) {
					m, err := nc.Request(subj, body, r.cfg.Timeout)
					return setManyReply(m, err, setManyItems)
				})
			})
			if ctx.Err() != nil {
				break
			}
			for i, c := range e.conns {
				if pubs[i], err = newAsyncPublisher(c); err != nil {
					return err
				}
			}
			measure(e.server.pid(), row.Peer, func() result {
				return r.asyncPublish(ctx, r.label("js async publish", rep), e, pubs, "js.many")
			})
		}
	}
	if ctx.Err() == nil && sc[scGet] {
		if err := r.fillPersist(ctx, nc, "bench.get", r.cfg.GetMsgs); err != nil {
			return err
		}
		if err := createJSStream(ctx, js, "GET", "js.get"); err != nil {
			return err
		}
		if err := r.fillJetStream(ctx, nc, "js.get", r.cfg.GetMsgs); err != nil {
			return err
		}
		n := int64(r.cfg.GetMsgs)
		subj := r.api("get", "bench.get")
		r.pair(ctx, e, scGet, fmt.Sprintf("`get` random seq of %s", count(r.cfg.GetMsgs)), "JetStream direct get", "req/s",
			func(nc *nats.Conn, _ int, rng *rand.Rand) (int, error) {
				return 1, r.request(nc, &nats.Msg{Subject: subj, Data: getBody(1 + rng.Int64N(n))})
			},
			func(nc *nats.Conn, _ int, rng *rand.Rand) (int, error) {
				return 1, r.directGet(nc, "GET", 1+rng.Int64N(n))
			})
	}
	if ctx.Err() == nil && sc[scGetAll] {
		if err := r.getAll(ctx, e); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// label names one measurement in the log: what and which repetition.
func (r *runner) label(what string, rep int) string {
	return fmt.Sprintf("%s %d/%d", what, rep+1, r.cfg.Reps)
}

// pair measures a row of request loops, Persist (a) and its peer (b)
// alternating --reps times.
func (r *runner) pair(ctx context.Context, e *env, name, title, peerLabel, unit string, a, b func(*nats.Conn, int, *rand.Rand) (int, error)) {
	row := r.addRow(name, title, unit, false)
	row.Persist, row.Peer = &side{Label: name}, &side{Label: peerLabel}
	for rep := range r.cfg.Reps {
		if ctx.Err() != nil {
			return
		}
		measure(e.worker.pid(), row.Persist, func() result {
			return r.loops(ctx, r.label(name, rep), e.conns, r.cfg.Duration, a)
		})
		if ctx.Err() != nil {
			return
		}
		measure(e.server.pid(), row.Peer, func() result {
			return r.loops(ctx, r.label(peerLabel, rep), e.conns, r.cfg.Duration, b)
		})
	}
}

// setSync compares set on a stream with sync on with JetStream's sync
// publish on a second server that fsyncs every write.
func (r *runner) setSync(ctx context.Context, e *env) error {
	dir := r.path("sync")
	_ = os.RemoveAll(dir)
	srv, url, err := r.startServer("sync", filepath.Join(dir, "jetstream"), 0, true)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = srv.stop(stopTimeout)
		if !r.cfg.Keep {
			_ = os.RemoveAll(dir)
		}
	}()
	conns, jss, err := r.connect(url)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err := createJSStream(ctx, jss[0], "SYNC", "js.sync"); err != nil {
		return err
	}
	if err := r.request(e.conns[0], &nats.Msg{Subject: r.api("config", "bench.sync"), Data: []byte(`{"sync":true}`)}); err != nil {
		return fmt.Errorf("config bench.sync: %w", err)
	}
	subj := r.api("set", "bench.sync")
	row := r.addRow(scSetSync, "`set`, `sync:true`", "req/s", false)
	row.Persist, row.Peer = &side{Label: "set sync"}, &side{Label: "JetStream sync publish, sync_interval always"}
	for rep := 0; rep < r.cfg.Reps && ctx.Err() == nil; rep++ {
		measure(e.worker.pid(), row.Persist, func() result {
			return r.loops(ctx, r.label("set sync", rep), e.conns, r.cfg.Duration, func(nc *nats.Conn, _ int, _ *rand.Rand) (int, error) {
				return 1, r.request(nc, &nats.Msg{Subject: subj, Data: r.payload})
			})
		})
		if ctx.Err() != nil {
			break
		}
		measure(srv.pid(), row.Peer, func() result {
			return r.loops(ctx, r.label("js sync publish, sync always", rep), conns, r.cfg.Duration, func(nc *nats.Conn, _ int, _ *rand.Rand) (int, error) {
				i := slices.Index(conns, nc)
				if i < 0 {
					return 0, errors.New("no JetStream context")
				}
				_, err := jss[i].Publish(ctx, "js.sync", r.payload)
				return 1, err
			})
		})
	}
	return ctx.Err()
}

// asyncPublish measures --clients loops of asynchronous publishes to subj
// for --duration, each connection's loops sharing one publisher with
// asyncPending in flight; the time runs until the last ack.
func (r *runner) asyncPublish(ctx context.Context, label string, e *env, pubs []*asyncPublisher, subj string) result {
	start := time.Now()
	res := runLoops(ctx, loopSpec{op: label, conns: e.conns, clients: r.cfg.Clients, duration: r.cfg.Duration, progress: r.progressTo(),
		do: func(nc *nats.Conn, _ int, _ *rand.Rand) (int, error) {
			i := slices.Index(e.conns, nc)
			if i < 0 {
				return 0, errors.New("no publisher")
			}
			_, err := pubs[i].js.PublishAsync(subj, r.payload)
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				// The publisher has asyncPending in flight and stayed
				// full for its stall wait: back-pressure, not a failed
				// publish; the loop tries again.
				return 0, nil
			}
			return 0, err
		}})
	var acked, failed uint64
	for _, p := range pubs {
		if err := p.wait(time.Minute); err != nil && res.firstErr == nil {
			res.firstErr = err
		}
		acked += p.acked.Load()
		failed += p.errs.Load()
		if err, ok := p.firstErr.Load().(error); ok && res.firstErr == nil {
			res.firstErr = err
		}
	}
	res.elapsed = time.Since(start)
	res.items, res.ops = acked, acked
	res.errors += failed
	res.hist = histogram{} // an async publish has no latency of its own
	r.logPhase(label, res)
	return res
}

// getAll compares one client replaying a stream page by page with an
// ordered consumer reading the same number of messages.
func (r *runner) getAll(ctx context.Context, e *env) error {
	n := r.cfg.GetAllMsgs
	nc, js := e.conns[0], e.jss[0]
	if err := r.fillPersist(ctx, nc, "bench.getall", n); err != nil {
		return err
	}
	if err := createJSStream(ctx, js, "GETALL", "js.getall"); err != nil {
		return err
	}
	if err := r.fillJetStream(ctx, nc, "js.getall", n); err != nil {
		return err
	}
	row := r.addRow(scGetAll, fmt.Sprintf("`getall` replay of %s, pages of %d", count(n), getAllPage), "msg/s", false)
	row.Persist, row.Peer = &side{Label: "getall"}, &side{Label: "JetStream ordered consumer"}
	for rep := range r.cfg.Reps {
		if ctx.Err() != nil {
			break
		}
		measure(e.worker.pid(), row.Persist, func() result {
			return r.once(r.label("getall", rep), func() (int, error) { return r.replay(nc, "bench.getall") })
		})
		if ctx.Err() != nil {
			break
		}
		measure(e.server.pid(), row.Peer, func() result {
			return r.once(r.label("ordered consumer", rep), func() (int, error) { return orderedRead(ctx, js, "GETALL", n, r.cfg.Timeout) })
		})
	}
	return ctx.Err()
}

// once measures one call of do, which returns the items it handled.
func (r *runner) once(label string, do func() (int, error)) result {
	t0 := time.Now()
	n, err := do()
	res := result{op: label, clients: 1, items: uint64(n), ops: uint64(n), elapsed: time.Since(t0)}
	if err != nil {
		res.errors, res.firstErr = 1, err
	}
	r.logPhase(label, res)
	return res
}

// replay reads a whole stream with getall pages, following
// Persist-Next-Seq until Persist-Num-Pending is 0, as PROTOCOL.md tells
// a client to.
func (r *runner) replay(nc *nats.Conn, stream string) (int, error) {
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0, err
	}
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, -1)
	subj := r.api("getall", stream)
	n, next := 0, int64(1)
	for {
		body := fmt.Sprintf(`{"start_seq":%d,"max_msgs":%d}`, next, getAllPage)
		if err := nc.PublishRequest(subj, inbox, []byte(body)); err != nil {
			return n, err
		}
		for {
			m, err := sub.NextMsg(r.cfg.Timeout)
			if err != nil {
				return n, fmt.Errorf("getall %s from %d: %w", stream, next, err)
			}
			if err := replyError(m, nil); err != nil {
				return n, err
			}
			if m.Header.Get("Persist-End") != "true" {
				n++
				continue
			}
			if m.Header.Get("Persist-Num-Pending") == "0" {
				return n, nil
			}
			if next, err = strconv.ParseInt(m.Header.Get("Persist-Next-Seq"), 10, 64); err != nil {
				return n, fmt.Errorf("getall %s: bad Persist-Next-Seq: %w", stream, err)
			}
			break
		}
	}
}

// orderedRead reads n messages of a JetStream stream with an ordered
// consumer.
func orderedRead(ctx context.Context, js jetstream.JetStream, stream string, n int, timeout time.Duration) (int, error) {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, err
	}
	it, err := cons.Messages()
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	got := 0
	for got < n {
		if _, err := it.Next(jetstream.NextMaxWait(timeout)); err != nil {
			return got, err
		}
		got++
	}
	return got, nil
}

// many runs the many-streams rows once, on a fresh server and worker:
// create, rss (after --idle), restart and set-random.
func (r *runner) many(ctx context.Context, rep int) (err error) {
	sc := r.cfg.scenarios
	e, err := r.newEnv(ctx, fmt.Sprintf("many-%d", rep))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, e.close()) }()
	n := r.cfg.ManyStreams
	label := func(what string) string { return fmt.Sprintf("%s %d/%d", what, rep+1, r.cfg.ManyReps) }

	// create: one set each on n new streams / n new JetStream streams
	// with one publish each.
	row := r.getRow(scCreate, fmt.Sprintf("create %s streams (one `set` each)", count(n)), "streams/s", false)
	row.Persist.Label, row.Peer.Label = "set on a new stream", "JetStream create stream + publish"
	var next atomic.Int64
	// Which streams were created, so that the restart probes one that
	// exists; each index is written by one loop only.
	created, jsCreated := make([]bool, n), make([]bool, n)
	measure(e.worker.pid(), row.Persist, func() result {
		return r.loops(ctx, label("create persist"), e.conns, maxDuration, func(nc *nats.Conn, _ int, _ *rand.Rand) (int, error) {
			i := next.Add(1) - 1
			if i >= int64(n) {
				return 0, errLoopDone
			}
			err := r.request(nc, &nats.Msg{Subject: r.api("set", streamName("many", int(i))), Data: r.payload})
			created[i] = err == nil
			return 1, err
		})
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	next.Store(0)
	measure(e.server.pid(), row.Peer, func() result {
		return r.loops(ctx, label("create jetstream"), e.conns, maxDuration, func(nc *nats.Conn, _ int, _ *rand.Rand) (int, error) {
			i := next.Add(1) - 1
			if i >= int64(n) {
				return 0, errLoopDone
			}
			js := e.jsFor(nc)
			subj := streamName("jsmany", int(i))
			if err := createJSStream(ctx, js, "M"+strconv.FormatInt(i, 10), subj); err != nil {
				return 0, err
			}
			_, err := js.Publish(ctx, subj, r.payload)
			jsCreated[i] = err == nil
			return 1, err
		})
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}

	if sc[scRSS] {
		if err := r.idleRSS(ctx, e, label); err != nil {
			return err
		}
	}
	if !sc[scRestart] && !sc[scSetRandom] {
		return nil
	}
	// restart, then set-random, Persist first, then JetStream.
	restart := r.getRow(scRestart, fmt.Sprintf("restart until a `get` answers, %s streams", count(n)), "s", true)
	restart.Persist.Label, restart.Peer.Label = "worker SIGTERM, start, get", "JetStream server SIGTERM, start, direct get"
	random := r.getRow(scSetRandom, fmt.Sprintf("`set` on a random one of %s streams, just after a restart", count(n)), "req/s", false)
	random.Persist.Label, random.Peer.Label = "set", "JetStream sync publish"

	stopTook, err := e.worker.stop(stopTimeout)
	if err != nil {
		return err
	}
	probe := streamName("many", pickCreated(created))
	t0 := time.Now()
	if e.worker, err = r.startWorker(ctx, e.name, e.url, e.data, e.conns[0]); err != nil {
		return err
	}
	if _, err := r.pollUntil(ctx, e.worker, func() error {
		return r.request(e.conns[0], &nats.Msg{Subject: r.api("get", probe), Data: getBody(1)})
	}); err != nil {
		return fmt.Errorf("get after restart: %w", err)
	}
	ready := time.Since(t0)
	restart.Persist.add(ready.Seconds(), result{})
	r.logf("%s: worker stopped in %.2fs, answered a get %.3fs after its start", label("restart persist"), stopTook.Seconds(), ready.Seconds())
	r.notes = append(r.notes, fmt.Sprintf("restart %d/%d: the worker took %.2f s to stop", rep+1, r.cfg.ManyReps, stopTook.Seconds()))
	if sc[scSetRandom] {
		measure(e.worker.pid(), random.Persist, func() result {
			return r.loops(ctx, label("set-random persist"), e.conns, r.cfg.Duration, func(nc *nats.Conn, _ int, rng *rand.Rand) (int, error) {
				return 1, r.request(nc, &nats.Msg{Subject: r.api("set", streamName("many", rng.IntN(n))), Data: r.payload})
			})
		})
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	if stopTook, err = e.server.stop(stopTimeout); err != nil {
		return err
	}
	k := pickCreated(jsCreated)
	t0 = time.Now()
	if e.server, _, err = r.startServer(e.name, e.jsDir, e.port, false); err != nil {
		return err
	}
	var pc *nats.Conn
	defer func() {
		if pc != nil {
			pc.Close()
		}
	}()
	if _, err := r.pollUntil(ctx, e.server, func() error {
		if pc == nil {
			c, err := nats.Connect(e.url, nats.Timeout(time.Second), nats.NoReconnect())
			if err != nil {
				return err
			}
			pc = c
		}
		return r.directGet(pc, "M"+strconv.Itoa(k), 1)
	}); err != nil {
		return fmt.Errorf("direct get after JetStream restart: %w", err)
	}
	ready = time.Since(t0)
	restart.Peer.add(ready.Seconds(), result{})
	r.logf("%s: JetStream server stopped in %.2fs, answered a direct get %.3fs after its start", label("restart jetstream"), stopTook.Seconds(), ready.Seconds())
	r.notes = append(r.notes, fmt.Sprintf("restart %d/%d: the JetStream server took %.2f s to stop", rep+1, r.cfg.ManyReps, stopTook.Seconds()))
	if sc[scSetRandom] {
		if err := waitConnected(ctx, e.conns); err != nil {
			return err
		}
		measure(e.server.pid(), random.Peer, func() result {
			return r.loops(ctx, label("set-random jetstream"), e.conns, r.cfg.Duration, func(nc *nats.Conn, _ int, rng *rand.Rand) (int, error) {
				_, err := e.jsFor(nc).Publish(ctx, streamName("jsmany", rng.IntN(n)), r.payload)
				return 1, err
			})
		})
	}
	return ctx.Err()
}

// pickCreated is a random index whose stream was created (0 if none was).
func pickCreated(created []bool) int {
	start := rand.IntN(len(created))
	for j := range created {
		if i := (start + j) % len(created); created[i] {
			return i
		}
	}
	return 0
}

// idleRSS waits --idle and reads both processes' memory, sampling it
// meanwhile.
func (r *runner) idleRSS(ctx context.Context, e *env, label func(string) string) error {
	row := r.getRow(scRSS, fmt.Sprintf("RSS, %s streams, %v idle", count(r.cfg.ManyStreams), r.cfg.Idle), "MB", true)
	row.Persist.Label, row.Peer.Label = "worker VmRSS", "JetStream server VmRSS"
	ws, ss := sampleRSS(e.worker.pid()), sampleRSS(e.server.pid())
	select {
	case <-ctx.Done():
	case <-time.After(r.cfg.Idle):
	}
	wmax, wend := ws.stop()
	smax, send := ss.stop()
	row.Persist.add(mb(wend), result{})
	row.Peer.add(mb(send), result{})
	row.Persist.addRSS(wmax, wend)
	row.Peer.addRSS(smax, send)
	r.logf("%s: worker %.0f MB (max %.0f), JetStream server %.0f MB (max %.0f)", label("rss"), mb(wend), mb(wmax), mb(send), mb(smax))
	return ctx.Err()
}

func mb(b int64) float64 { return float64(b) / 1e6 }

// waitConnected waits until every connection is back after a server
// restart.
func waitConnected(ctx context.Context, conns []*nats.Conn) error {
	deadline := time.Now().Add(time.Minute)
	for _, nc := range conns {
		for !nc.IsConnected() {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("connections not back after the server restart: %w", errors.Join(ctx.Err(), nc.LastError()))
			}
			time.Sleep(pollEvery)
		}
	}
	return nil
}

// huge runs the Persist-only row of --huge-streams streams on disk: they
// are made by copying one stream's file (creating them over the wire takes
// minutes and is what the create row measures), then the worker is
// started on them.
func (r *runner) huge(ctx context.Context) (err error) {
	n := r.cfg.HugeStreams
	e, err := r.newEnv(ctx, "huge")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, e.close()) }()
	nc := e.conns[0]
	what := func(s string) string { return fmt.Sprintf("%s streams: %s", count(n), s) }
	if _, err := e.worker.stop(stopTimeout); err != nil {
		return err
	}
	if err := firstHugeStream(filepath.Join(e.data, "huge", "s0.db"), r.payload); err != nil {
		return fmt.Errorf("huge: first stream: %w", err)
	}
	t0 := time.Now()
	if err := copyStreams(ctx, filepath.Join(e.data, "huge"), n); err != nil {
		return err
	}
	r.logf("huge: %d stream files made by copying in %.1fs", n, time.Since(t0).Seconds())
	r.notes = append(r.notes, fmt.Sprintf("huge: the %s streams were made by copying one stream file (one message each), in %.1f s", count(n), time.Since(t0).Seconds()))

	t0 = time.Now()
	if e.worker, err = r.startWorker(ctx, e.name, e.url, e.data, nc); err != nil {
		return err
	}
	if _, err := r.pollUntil(ctx, e.worker, func() error {
		return r.request(nc, &nats.Msg{Subject: r.api("get", streamName("huge", rand.IntN(n))), Data: getBody(1)})
	}); err != nil {
		return fmt.Errorf("get after start: %w", err)
	}
	ready := time.Since(t0)
	row := r.addRow("huge-ready", what("start until a `get` answers"), "s", true)
	row.Persist = &side{Label: "worker start, get"}
	row.Persist.add(ready.Seconds(), result{})
	r.logf("huge: worker answered a get %.3fs after its start", ready.Seconds())

	ws := sampleRSS(e.worker.pid())
	select {
	case <-ctx.Done():
	case <-time.After(r.cfg.Idle):
	}
	idleMax, idle := ws.stop()
	row = r.addRow("huge-rss-idle", what(fmt.Sprintf("RSS after start and %v idle", r.cfg.Idle)), "MB", true)
	row.Persist = &side{Label: "worker VmRSS", RSSMaxMB: mb(idleMax), RSSEndMB: mb(idle)}
	row.Persist.add(mb(idle), result{})

	set := r.addRow("huge-set", what("`set` on a random one"), "req/s", false)
	set.Persist = &side{Label: "set"}
	measure(e.worker.pid(), set.Persist, func() result {
		return r.loops(ctx, "huge set-random", e.conns, r.cfg.Duration, func(nc *nats.Conn, _ int, rng *rand.Rand) (int, error) {
			return 1, r.request(nc, &nats.Msg{Subject: r.api("set", streamName("huge", rng.IntN(n))), Data: r.payload})
		})
	})
	get := r.addRow("huge-get", what("`get` of a random one"), "req/s", false)
	get.Persist = &side{Label: "get seq 1"}
	measure(e.worker.pid(), get.Persist, func() result {
		return r.loops(ctx, "huge get-random", e.conns, r.cfg.Duration, func(nc *nats.Conn, _ int, rng *rand.Rand) (int, error) {
			return 1, r.request(nc, &nats.Msg{Subject: r.api("get", streamName("huge", rng.IntN(n))), Data: getBody(1)})
		})
	})
	peak, end := max(set.Persist.RSSMaxMB, get.Persist.RSSMaxMB), get.Persist.RSSEndMB
	row = r.addRow("huge-rss-max", what("RSS during the random `set` and `get`"), "MB", true)
	row.Persist = &side{Label: "worker VmRSS, max sampled", RSSMaxMB: peak, RSSEndMB: end}
	row.Persist.add(peak, result{})

	row = r.addRow("huge-list", what(fmt.Sprintf("`list` page of %d names", listPage)), "ms", true)
	row.Persist = &side{Label: "list, first and middle page"}
	for _, after := range []string{"", streamName("huge", n/2)} {
		body := fmt.Sprintf(`{"limit":%d}`, listPage)
		if after != "" {
			body = fmt.Sprintf(`{"after":%q,"limit":%d}`, after, listPage)
		}
		for range listTries {
			t0 := time.Now()
			_, err := r.list(nc, "huge", body)
			res := result{elapsed: time.Since(t0)}
			if err != nil {
				res.errors, res.firstErr = 1, err
			}
			row.Persist.add(ms(res.elapsed), res)
		}
	}
	r.logf("huge: list pages took %s ms", strings.Join(func() []string {
		var v []string
		for _, x := range row.Persist.Samples {
			v = append(v, strconv.FormatFloat(x, 'f', 2, 64))
		}
		return v
	}(), ", "))
	return ctx.Err()
}

// list requests one page of stream names and returns how many it holds.
func (r *runner) list(nc *nats.Conn, prefix, body string) (int, error) {
	m, err := nc.Request(r.api("list", prefix), []byte(body), r.cfg.Timeout)
	if err = replyError(m, err); err != nil {
		return 0, err
	}
	var reply struct {
		Streams []string `json:"streams"`
	}
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return 0, fmt.Errorf("list reply: %w", err)
	}
	if len(reply.Streams) == 0 {
		return 0, errors.New("list: empty page")
	}
	return len(reply.Streams), nil
}

// copyStreams copies dir/s0.db (and its -wal, if the worker left one) to
// dir/s1.db … dir/s<n-1>.db.
// firstHugeStream writes the stream file the huge row copies, with one
// message. It is written without a stream name (store.Options.Name): a
// stream file records its stream's name at its first write and is damage
// under any other, so only an unnamed file can be copied to other names;
// each copy records its own name at its first write.
func firstHugeStream(path string, payload []byte) error {
	s, err := store.Open(path, store.Options{Create: true, NoSweep: true})
	if err != nil {
		return err
	}
	res, err := s.Append([]store.Write{{Data: payload}})
	if err == nil {
		err = res[0].Err
	}
	return errors.Join(err, s.Close())
}

func copyStreams(ctx context.Context, dir string, n int) error {
	var files [][]byte
	var suffixes []string
	for _, suf := range []string{".db", ".db-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, "s0"+suf))
		if errors.Is(err, os.ErrNotExist) && suf != ".db" {
			continue
		}
		if err != nil {
			return fmt.Errorf("huge: read the first stream: %w", err)
		}
		files, suffixes = append(files, b), append(suffixes, suf)
	}
	var next atomic.Int64
	next.Store(1)
	var wg sync.WaitGroup
	errs := make([]error, copyLoops)
	for l := range copyLoops {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				for j, b := range files {
					if err := os.WriteFile(filepath.Join(dir, "s"+strconv.FormatInt(i, 10)+suffixes[j]), b, 0o640); err != nil {
						errs[l] = err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

// count writes a number of streams or messages the short way: 10k, 100k.
func count(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}
