package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/nats-persist/persist/subjects"
)

// clientsPerConn is how many request loops share one NATS connection, as
// an application with many goroutines would share a few connections.
const clientsPerConn = 16

// prefillMsgs is how many messages an empty stream gets before the get
// phase, so that every get finds a message.
const prefillMsgs = 100

// errorCodeHeader marks an error reply of a NATS service.
const errorCodeHeader = "Nats-Service-Error-Code"

// bench is one run: its configuration and the client connections that
// every phase shares.
type bench struct {
	cfg      config
	conns    []*nats.Conn
	payload  []byte
	streams  []string
	echoSubj string
	stderr   io.Writer
	progress bool // stderr is a terminal

	prepared bool       // the streams got their config request
	seqs     []seqRange // per stream, filled before the get phase
}

// seqRange is the messages a stream holds, all of which get may ask for.
type seqRange struct{ first, last int64 }

// result is one row of the table.
type result struct {
	op       string
	clients  int
	ops      uint64 // requests that succeeded
	items    uint64 // what they did: messages for setmany, else = ops
	errors   uint64
	elapsed  time.Duration
	hist     histogram
	firstErr error
}

// benchmark connects, runs every op of cfg in order, prints the table and
// destroys the streams unless cfg.Keep. Interrupted by ctx, it still
// prints what was measured and cleans up.
func benchmark(ctx context.Context, cfg config, stdout, stderr io.Writer) (err error) {
	b := &bench{
		cfg:      cfg,
		payload:  make([]byte, cfg.Payload),
		echoSubj: cfg.StreamPrefix + ".echo." + nuid.Next(),
		stderr:   stderr,
		progress: isTerminal(stderr),
	}
	for i := range b.payload {
		b.payload[i] = 'a' + byte(i%26)
	}
	for i := range cfg.Streams {
		b.streams = append(b.streams, streamName(cfg.StreamPrefix, i))
	}
	for i := 0; i < (cfg.Clients+clientsPerConn-1)/clientsPerConn; i++ {
		nc, err := nats.Connect(cfg.NATSURL, nats.Name("persist-bench"))
		if err != nil {
			return fmt.Errorf("connect to %s: %w", cfg.NATSURL, err)
		}
		defer nc.Close()
		b.conns = append(b.conns, nc)
	}
	defer func() {
		if b.prepared && !cfg.Keep {
			err = errors.Join(err, b.destroy())
		}
	}()

	var results []result
	for _, op := range cfg.ops {
		if ctx.Err() != nil {
			break
		}
		var r result
		switch op {
		case "echo":
			r, err = b.runEcho(ctx)
		case "set":
			r, err = b.runSet(ctx)
		case "get":
			r, err = b.runGet(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		results = append(results, r)
	}
	b.printTable(stdout, results)
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted, the table shows the ops measured so far: %w", ctx.Err())
	}
	return nil
}

// runEcho measures a bare NATS responder: the floor that NATS and these
// clients set for any service on this machine.
func (b *bench) runEcho(ctx context.Context) (result, error) {
	rc, err := nats.Connect(b.cfg.NATSURL, nats.Name("persist-bench-echo"))
	if err != nil {
		return result{}, fmt.Errorf("connect to %s: %w", b.cfg.NATSURL, err)
	}
	defer rc.Close()
	// One subscription per CPU: each has its own delivery goroutine, as a
	// service with several workers in a queue group would.
	for range runtime.NumCPU() {
		if _, err := rc.QueueSubscribe(b.echoSubj, "persist-bench", func(m *nats.Msg) {
			_ = m.Respond(m.Data)
		}); err != nil {
			return result{}, fmt.Errorf("subscribe: %w", err)
		}
	}
	if err := rc.Flush(); err != nil {
		return result{}, fmt.Errorf("subscribe: %w", err)
	}
	return b.phase(ctx, "echo", func(nc *nats.Conn, _ int, _ *rand.Rand) error {
		return b.request(nc, &nats.Msg{Subject: b.echoSubj, Data: b.payload})
	}), nil
}

// runSet measures appends: client i writes to stream i mod --streams.
func (b *bench) runSet(ctx context.Context) (result, error) {
	if err := b.prepare(); err != nil {
		return result{}, err
	}
	subjs := make([]string, len(b.streams))
	for i, s := range b.streams {
		subjs[i] = subjects.APISubject(b.cfg.Prefix, "set", s)
	}
	return b.phase(ctx, "set", func(nc *nats.Conn, client int, _ *rand.Rand) error {
		return b.request(nc, &nats.Msg{Subject: subjs[client%len(subjs)], Data: b.payload})
	}), nil
}

// runGet measures reads of random messages that exist: client i reads
// stream i mod --streams, which is filled first if it is empty.
func (b *bench) runGet(ctx context.Context) (result, error) {
	if err := b.prepare(); err != nil {
		return result{}, err
	}
	if err := b.fill(); err != nil {
		return result{}, err
	}
	subjs := make([]string, len(b.streams))
	for i, s := range b.streams {
		subjs[i] = subjects.APISubject(b.cfg.Prefix, "get", s)
	}
	return b.phase(ctx, "get", func(nc *nats.Conn, client int, rng *rand.Rand) error {
		i := client % len(subjs)
		r := b.seqs[i]
		seq := r.first + rng.Int64N(r.last-r.first+1)
		body := strconv.AppendInt([]byte(`{"seq":`), seq, 10)
		body = append(body, '}')
		return b.request(nc, &nats.Msg{Subject: subjs[i], Data: body})
	}), nil
}

// prepare sends every stream its config once, which sets sync as asked
// (also off, in case a kept stream of an earlier run has it on). It is also
// the check that a worker answers at all.
func (b *bench) prepare() error {
	if b.prepared {
		return nil
	}
	body := []byte(`{"sync":` + strconv.FormatBool(b.cfg.Sync) + `}`)
	for _, s := range b.streams {
		subj := subjects.APISubject(b.cfg.Prefix, "config", s)
		err := b.request(b.conns[0], &nats.Msg{Subject: subj, Data: body})
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("no persist worker answers on %s (is it running, with --prefix %s?)", subj, b.cfg.Prefix)
		}
		if err != nil {
			return fmt.Errorf("config %s: %w", s, err)
		}
		// From the first stream on, there is something to clean up.
		b.prepared = true
	}
	return nil
}

// fill writes prefillMsgs messages to every empty stream, all streams at
// once, and records the seqs each stream holds.
func (b *bench) fill() error {
	b.seqs = make([]seqRange, len(b.streams))
	var wg sync.WaitGroup
	errs := make([]error, len(b.streams))
	for i, s := range b.streams {
		wg.Go(func() {
			errs[i] = b.fillStream(i, s)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (b *bench) fillStream(i int, stream string) error {
	nc := b.conns[i%len(b.conns)]
	r, err := b.inventory(nc, stream)
	if err != nil {
		return err
	}
	if r.last == 0 {
		subj := subjects.APISubject(b.cfg.Prefix, "set", stream)
		for range prefillMsgs {
			if err := b.request(nc, &nats.Msg{Subject: subj, Data: b.payload}); err != nil {
				return fmt.Errorf("fill %s: %w", stream, err)
			}
		}
		if r, err = b.inventory(nc, stream); err != nil {
			return err
		}
	}
	if r.first < 1 || r.last < r.first {
		return fmt.Errorf("inventory %s: no messages to read (first_seq %d, last_seq %d)", stream, r.first, r.last)
	}
	b.seqs[i] = r
	return nil
}

// inventory asks which seqs stream holds. Nothing deletes during the run,
// so every seq from first to last exists.
func (b *bench) inventory(nc *nats.Conn, stream string) (seqRange, error) {
	m, err := nc.Request(subjects.APISubject(b.cfg.Prefix, "inventory", stream), nil, b.cfg.Timeout)
	if err = replyError(m, err); err != nil {
		return seqRange{}, fmt.Errorf("inventory %s: %w", stream, err)
	}
	var inv struct {
		Count    int64 `json:"count"`
		FirstSeq int64 `json:"first_seq"`
		LastSeq  int64 `json:"last_seq"`
	}
	if err := json.Unmarshal(m.Data, &inv); err != nil {
		return seqRange{}, fmt.Errorf("inventory %s: %w", stream, err)
	}
	if inv.Count == 0 {
		return seqRange{}, nil
	}
	return seqRange{first: inv.FirstSeq, last: inv.LastSeq}, nil
}

// destroy removes every benchmark stream; one that was never created
// answers 404, which is fine.
func (b *bench) destroy() error {
	var errs []error
	for _, s := range b.streams {
		m, err := b.conns[0].Request(subjects.APISubject(b.cfg.Prefix, "destroy", s), nil, b.cfg.Timeout)
		if err == nil && m.Header.Get(errorCodeHeader) == "404" {
			continue
		}
		if err = replyError(m, err); err != nil {
			errs = append(errs, fmt.Errorf("destroy %s: %w", s, err))
		}
	}
	return errors.Join(errs...)
}

// request sends one request and reports a timeout, a missing responder or
// an error reply as an error.
func (b *bench) request(nc *nats.Conn, msg *nats.Msg) error {
	m, err := nc.RequestMsg(msg, b.cfg.Timeout)
	return replyError(m, err)
}

func replyError(m *nats.Msg, err error) error {
	if err != nil {
		return err
	}
	if code := m.Header.Get(errorCodeHeader); code != "" {
		return fmt.Errorf("error reply %s: %s", code, m.Header.Get("Nats-Service-Error"))
	}
	return nil
}

// phase runs --clients request loops of do for --duration and collects
// their counts and latencies.
func (b *bench) phase(ctx context.Context, op string, do func(nc *nats.Conn, client int, rng *rand.Rand) error) result {
	var progress io.Writer
	if b.progress {
		progress = b.stderr
	}
	return runLoops(ctx, loopSpec{
		op: op, conns: b.conns, clients: b.cfg.Clients, duration: b.cfg.Duration, progress: progress,
		do: func(nc *nats.Conn, client int, rng *rand.Rand) (int, error) { return 1, do(nc, client, rng) },
	})
}

// errLoopDone ends one request loop early without counting an error: it
// has no more work (a fixed number of streams to create is used up).
var errLoopDone = errors.New("loop done")

// loopSpec is one measurement of concurrent request loops.
type loopSpec struct {
	op       string
	conns    []*nats.Conn // loop c uses conns[c/perConn]
	perConn  int          // loops per connection; 0 is clientsPerConn
	clients  int
	duration time.Duration
	progress io.Writer // a terminal for the progress line, or nil
	// do sends one request and returns how many items it did (1, or a
	// setmany's messages); errLoopDone ends the loop.
	do func(nc *nats.Conn, client int, rng *rand.Rand) (int, error)
}

// runLoops runs spec.clients request loops of spec.do for spec.duration
// (or until every loop is done) and collects their counts and latencies.
// A request in flight at the end is waited for and counted, so the
// elapsed time is measured until the last one ends.
func runLoops(ctx context.Context, spec loopSpec) result {
	var (
		done    atomic.Uint64 // requests finished, for the progress line
		wg      sync.WaitGroup
		mu      sync.Mutex
		total   = result{op: spec.op, clients: spec.clients}
		start   = time.Now()
		stopAt  = start.Add(spec.duration)
		stopped = make(chan struct{})
	)
	if spec.progress != nil {
		progressDone := make(chan struct{})
		defer func() { <-progressDone }()
		go func() {
			defer close(progressDone)
			showProgress(spec.progress, spec.op, start, &done, stopped)
		}()
	}
	perConn := spec.perConn
	if perConn <= 0 {
		perConn = clientsPerConn
	}
	for c := range spec.clients {
		wg.Go(func() {
			nc := spec.conns[(c/perConn)%len(spec.conns)]
			rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(c)))
			var r result
			for ctx.Err() == nil && time.Now().Before(stopAt) {
				t0 := time.Now()
				n, err := spec.do(nc, c, rng)
				if errors.Is(err, errLoopDone) {
					break
				}
				lat := time.Since(t0)
				done.Add(1)
				if err != nil && ctx.Err() != nil {
					break // cut short by the interrupt, not a failure
				}
				if err != nil {
					r.errors++
					if r.firstErr == nil {
						r.firstErr = err
					}
					continue
				}
				r.ops++
				r.items += uint64(n)
				r.hist.add(lat)
			}
			mu.Lock()
			total.ops += r.ops
			total.items += r.items
			total.errors += r.errors
			if total.firstErr == nil {
				total.firstErr = r.firstErr
			}
			total.hist.merge(&r.hist)
			mu.Unlock()
		})
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	close(stopped)
	return total
}

// showProgress rewrites one line on w every second until stopped, then
// clears it so the table starts on a clean screen.
func showProgress(w io.Writer, op string, start time.Time, done *atomic.Uint64, stopped <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last, lastAt := uint64(0), start
	for {
		select {
		case <-stopped:
			fmt.Fprintf(w, "\r%70s\r", "")
			return
		case now := <-t.C:
			n := done.Load()
			rate := float64(n-last) / now.Sub(lastAt).Seconds()
			last, lastAt = n, now
			fmt.Fprintf(w, "\r%-24s %6.1fs %10d ops %10.0f ops/s ", op, now.Sub(start).Seconds(), n, rate)
		}
	}
}

// printTable writes the results and the machine they were measured on.
func (b *bench) printTable(w io.Writer, results []result) {
	sync := "off"
	if b.cfg.Sync {
		sync = "on"
	}
	fmt.Fprintf(w, "persist-bench: %s, %d clients on %d connections, %d streams, %d-byte payload, sync %s, %v per op\n",
		b.cfg.NATSURL, b.cfg.Clients, len(b.conns), b.cfg.Streams, b.cfg.Payload, sync, b.cfg.Duration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// The op column is padded by hand so that it reads left-aligned while
	// the numbers align right.
	fmt.Fprintln(tw, "op   \tclients\tops\tops/s\tp50\tp99\terrors\t")
	for _, r := range results {
		rate := float64(r.ops) / r.elapsed.Seconds()
		fmt.Fprintf(tw, "%-5s\t%d\t%d\t%.0f\t%v\t%v\t%d\t\n", r.op, r.clients, r.ops, rate,
			fmtLatency(r.hist.quantile(0.50)), fmtLatency(r.hist.quantile(0.99)), r.errors)
	}
	tw.Flush()
	fmt.Fprintf(w, "machine: %d CPUs, %s/%s, %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel())
	for _, r := range results {
		if r.firstErr != nil {
			fmt.Fprintf(w, "%s: %d errors, the first: %v\n", r.op, r.errors, r.firstErr)
		}
	}
}

// fmtLatency shows three significant digits at most, about what the
// histogram can tell apart, in a unit that keeps a column readable.
func fmtLatency(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
	default:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	}
}

// cpuModel is the CPU's name from /proc/cpuinfo, or "unknown CPU" where
// there is none (other systems, containers that hide it).
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		}
	}
	return "unknown CPU"
}

// isTerminal reports whether w is a terminal, where a progress line that
// rewrites itself makes sense; in a file or pipe it would be noise.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// histogram counts latencies in microseconds in buckets about 1.6% wide
// (exact below 128µs), so a client needs a fixed 11 KiB however long it
// runs, and quantiles stay within that precision.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
}

const (
	histSub     = 64              // buckets per power of two
	histBuckets = histSub * 21    // up to 2^26 µs, over a minute: --timeout's bound
	histMaxIdx  = histBuckets - 1 // slower values are counted here
)

func bucketOf(us uint64) int {
	if us < 2*histSub {
		return int(us)
	}
	e := bits.Len64(us) - 7 // us>>e is in [64, 128)
	return min(e*histSub+int(us>>e), histMaxIdx)
}

// bucketValue is the middle of bucket i.
func bucketValue(i int) time.Duration {
	if i < 2*histSub {
		return time.Duration(i) * time.Microsecond
	}
	e := i/histSub - 1
	lo := uint64(i%histSub+histSub) << e
	return time.Duration(lo+(uint64(1)<<e)/2) * time.Microsecond
}

func (h *histogram) add(d time.Duration) {
	h.counts[bucketOf(uint64(max(d, 0)/time.Microsecond))]++
	h.n++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile is the latency that a fraction q of the requests did not
// exceed; 0 without requests.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	target := uint64(q*float64(h.n) + 0.5)
	target = max(target, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= target {
			return bucketValue(i)
		}
	}
	return bucketValue(histMaxIdx)
}
