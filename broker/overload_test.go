package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// logBuffer collects JSON log lines for a test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(l, nil)) }

// lines returns the log lines whose msg contains msg.
func (l *logBuffer) lines(tb testing.TB, msg string) []map[string]any {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			tb.Fatalf("log line %q: %v", line, err)
		}
		if s, _ := m["msg"].(string); strings.Contains(s, msg) {
			out = append(out, m)
		}
	}
	return out
}

// serviceStats asks for the micro stats from the wire, as nats micro
// stats does.
func (f *fixture) serviceStats(tb testing.TB) map[string]micro.EndpointStats {
	tb.Helper()
	m, err := f.nc.Request("$SRV.STATS.persist", nil, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	var st micro.Stats
	if err := json.Unmarshal(m.Data, &st); err != nil {
		tb.Fatalf("stats %q: %v", m.Data, err)
	}
	out := map[string]micro.EndpointStats{}
	for _, ep := range st.Endpoints {
		out[ep.Name] = *ep
	}
	return out
}

func TestBroker_NoStream(t *testing.T) {
	f := newFixture(t, Options{})
	for _, subj := range []string{"persist.api.get", "persist.api.setmany", "persist.api.nosuchop"} {
		m, err := f.nc.Request(subj, []byte("x"), 5*time.Second)
		if err != nil {
			t.Fatalf("request %s: %v", subj, err)
		}
		if got := replyError(m); got == nil || got.Code != 400 || got.Reason != "invalid_stream" {
			t.Fatalf("request %s: error %v, want 400 invalid_stream", subj, got)
		}
	}
	// A valid request is delivered to its own endpoint only.
	inbox := nats.NewInbox()
	sub, _ := f.nc.SubscribeSync(inbox)
	f.nc.PublishRequest("persist.api.set.acme.ns", inbox, []byte("x"))
	if m, err := sub.NextMsg(5 * time.Second); err != nil || replyError(m) != nil {
		t.Fatalf("set: %v %v", err, m)
	}
	f.call(t, subjects.OpInventory, "acme.ns", ``, nil) // after the set's replies
	if m, err := sub.NextMsg(50 * time.Millisecond); err == nil {
		t.Fatalf("second reply to one set: %q", m.Data)
	}
	st := f.serviceStats(t)
	if got := st[noStream]; got.NumRequests != 3 || got.NumErrors != 3 {
		t.Errorf("%s stats = %d requests %d errors, want 3 and 3", noStream, got.NumRequests, got.NumErrors)
	}
	if got := st[subjects.OpSet]; got.NumRequests != 1 || got.NumErrors != 0 {
		t.Errorf("set stats = %d requests %d errors, want 1 and 0", got.NumRequests, got.NumErrors)
	}
}

func TestBroker_StatsCountErrorReplies(t *testing.T) {
	f := newFixture(t, Options{})
	f.set(t, "acme.er", "x", hdr(subjects.HeaderKey, "k"))
	f.callErr(t, subjects.OpGet, "acme.er", `{"seq":9}`, nil, subjects.ErrNotFound)   // answered by a worker or inline
	f.callErr(t, subjects.OpGet, "acme.none", `{"seq":1}`, nil, subjects.ErrNotFound) // no such stream
	f.callErr(t, subjects.OpSet, "acme.er", "y", hdr(subjects.HeaderKey, "k", subjects.HeaderPreviousSeq, "7"), subjects.ErrWrongLastSequence)
	f.callErr(t, subjects.OpSet, "acme.er", "y", hdr(subjects.HeaderPreviousSeq, "x"), subjects.ErrBadRequest)
	f.set(t, "acme.er", "z", nil)
	st := f.serviceStats(t)
	for op, want := range map[string]int{subjects.OpGet: 2, subjects.OpSet: 2, subjects.OpInventory: 0} {
		if got := st[op].NumErrors; got != want {
			t.Errorf("%s NumErrors = %d, want %d (last error %q)", op, got, want, st[op].LastError)
		}
	}
	if got := st[subjects.OpSet].LastError; !strings.Contains(got, "bad_request") {
		t.Errorf("set LastError = %q, want the last error reply", got)
	}
	var data EndpointStats
	if err := json.Unmarshal(st[subjects.OpGet].Data, &data); err != nil {
		t.Fatal(err)
	}
	if data.Errors != 2 {
		t.Errorf("get stats data = %+v, want 2 errors", data)
	}
	var worker Stats
	if err := json.Unmarshal(st[WorkerStatsEndpoint].Data, &worker); err != nil {
		t.Fatal(err)
	}
	if worker.Errors != 2 || worker.Goroutines == 0 {
		t.Errorf("%s stats data = %+v, want its 2 errors and the goroutines", WorkerStatsEndpoint, worker)
	}
}

// TestBroker_ShedByAge: requests that waited longer than MaxWait behind
// a held stream are answered 429 overloaded and not applied; a request
// that did not is applied.
func TestBroker_ShedByAge(t *testing.T) {
	f := newFixture(t, Options{})
	f.b.Shutdown(context.Background())
	release := make(chan struct{})
	held := make(chan struct{})
	var once sync.Once
	f.start(t, Options{MaxWait: time.Second}, hooks{now: f.clock.now, noJanitor: true, beforeJob: func(op, stream string) {
		if stream == "acme.shed" {
			once.Do(func() { close(held); <-release })
		}
	}})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the broker's shutdown, should the test fail
	inbox := nats.NewInbox()
	sub, _ := f.nc.SubscribeSync(inbox)
	send := func(op, body string) {
		f.nc.PublishMsg(&nats.Msg{Subject: subjects.APISubject(subjects.DefaultPrefix, op, "acme.shed"), Reply: inbox, Data: []byte(body)})
	}
	send(subjects.OpSet, "first")
	f.nc.Flush()
	<-held
	const late = 5
	for i := range late {
		send(subjects.OpSet, fmt.Sprint("late", i))
	}
	send(subjects.OpSetMany, `[{"data":"bGF0ZQ=="},{"data":"bGF0ZQ=="}]`)
	send(subjects.OpDelete, `{"all":true}`)
	f.nc.Flush()
	waitFor(t, "the late requests to queue", func() bool { return f.b.queued.Load() == late+2 })
	f.clock.advance(1500 * time.Millisecond)
	// Queued now, after the clock moved: this one waits less than MaxWait.
	send(subjects.OpSet, "fresh")
	f.nc.Flush()
	waitFor(t, "the fresh request to queue", func() bool { return f.b.queued.Load() == late+3 })
	releaseOnce()
	var ok, shed int
	for range late + 4 {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d ok and %d shed: %v", ok, shed, err)
		}
		switch werr := replyError(m); {
		case werr == nil:
			ok++
		case werr.Code == 429 && werr.Reason == "overloaded":
			shed++
		default:
			t.Fatalf("reply %v, want a set reply or 429 overloaded", werr)
		}
	}
	if ok != 2 || shed != late+2 {
		t.Fatalf("%d applied and %d shed, want 2 and %d", ok, shed, late+2)
	}
	var inv store.Inventory
	f.call(t, subjects.OpInventory, "acme.shed", ``, &inv)
	if inv.Count != 2 || inv.LastSeq != 2 {
		t.Fatalf("inventory %+v, want the first and the fresh message only", inv)
	}
	for seq, want := range map[int]string{1: "first", 2: "fresh"} {
		if m := f.call(t, subjects.OpGet, "acme.shed", fmt.Sprintf(`{"seq":%d}`, seq), nil); string(m.Data) != want {
			t.Fatalf("get %d = %q, want %q", seq, m.Data, want)
		}
	}
	s := f.stats(t)
	if s.Shed != late+2 || s.Overloaded != late+2 {
		t.Fatalf("stats shed %d overloaded %d, want %d", s.Shed, s.Overloaded, late+2)
	}
	if s.WaitMax < 1500 || s.WaitP99 < 1000 || s.WaitP50 > s.WaitP99 || s.WaitP99 > s.WaitMax {
		t.Fatalf("wait p50 %v p99 %v max %v ms, want the 1.5 s waits", s.WaitP50, s.WaitP99, s.WaitMax)
	}
	if got := f.serviceStats(t)[subjects.OpSet].NumErrors; got != late {
		t.Fatalf("set NumErrors = %d, want %d", got, late)
	}
}

func TestBroker_NoMaxWait(t *testing.T) {
	f := newFixture(t, Options{})
	f.b.Shutdown(context.Background())
	release := make(chan struct{})
	held := make(chan struct{})
	var once sync.Once
	f.start(t, Options{MaxWait: -1}, hooks{now: f.clock.now, noJanitor: true, beforeJob: func(op, stream string) {
		once.Do(func() { close(held); <-release })
	}})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the broker's shutdown, should the test fail
	inbox := nats.NewInbox()
	sub, _ := f.nc.SubscribeSync(inbox)
	f.nc.PublishRequest("persist.api.set.acme.nw", inbox, []byte("x"))
	f.nc.Flush()
	<-held
	f.nc.PublishRequest("persist.api.set.acme.nw", inbox, []byte("x"))
	f.nc.Flush()
	waitFor(t, "the second request to queue", func() bool { return f.b.queued.Load() == 1 })
	f.clock.advance(time.Hour)
	releaseOnce()
	for range 2 {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil || replyError(m) != nil {
			t.Fatalf("reply %v %v, want a set reply with no bound on waiting", err, m)
		}
	}
}

// TestBroker_SlowConsumer: a subscription past its pending limit is a
// slow consumer: counted in the stats and logged once per interval.
func TestBroker_SlowConsumer(t *testing.T) {
	f := newFixture(t, Options{})
	f.b.Shutdown(context.Background())
	var logs logBuffer
	release := make(chan struct{})
	held := make(chan struct{})
	var once sync.Once
	f.start(t, Options{Logger: logs.logger()}, hooks{now: f.clock.now, noJanitor: true,
		onRequest: func(op, stream string) {
			once.Do(func() { close(held); <-release })
		}})
	inbox := nats.NewInbox()
	sub, _ := f.nc.SubscribeSync(inbox)
	f.nc.PublishRequest("persist.api.set.acme.sc", inbox, []byte("x"))
	f.nc.Flush()
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the broker's shutdown, should the test fail
	// The set endpoint's handler is held.
	<-held
	sc := f.b.eps[subjects.OpSet].sub.Load()
	if msgs, bytes, err := sc.PendingLimits(); err != nil || msgs < defaultQueueLimits.all || bytes < defaultQueueLimits.allBytes {
		t.Fatalf("set pending limits %d msgs %d bytes (%v), want at least the queue bounds", msgs, bytes, err)
	}
	// Far lower limits, to reach them with a few requests.
	if err := sc.SetPendingLimits(4, 1<<20); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		f.nc.PublishRequest("persist.api.set.acme.sc", inbox, []byte("x"))
	}
	f.nc.Flush()
	waitFor(t, "a slow consumer", func() bool { return f.b.stats.slowConsumers.Load() > 0 })
	releaseOnce()
	// Each of the ones kept is answered.
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := f.stats(t).SlowConsumers; got == 0 {
		t.Fatal("stats slow_consumers = 0")
	}
	lines := logs.lines(t, "slow consumer")
	if len(lines) != 1 || lines[0]["subject"] != "persist.api.set.>" {
		t.Fatalf("slow consumer log lines %v, want one naming the set subscription", lines)
	}
	// Within the interval, more events are counted, not logged.
	f.b.AsyncError(nil, nats.ErrSlowConsumer)
	if got := len(logs.lines(t, "slow consumer")); got != 1 {
		t.Fatalf("%d slow consumer lines after a second event, want 1", got)
	}
	if f.b.AsyncError(nil, errors.New("other")) {
		t.Fatal("AsyncError handled an error that is not the broker's")
	}
}

// TestBroker_ErrorLogs: a damaged file is logged once with its path, and
// an internal error names the op and the stream.
func TestBroker_ErrorLogs(t *testing.T) {
	f := newFixture(t, Options{})
	f.b.Shutdown(context.Background())
	var logs logBuffer
	f.start(t, Options{Logger: logs.logger()}, hooks{now: f.clock.now, noJanitor: true})
	path := f.b.streamPath("acme.bad")
	f.set(t, "acme.bad", "x", nil)
	f.b.Shutdown(context.Background()) // closes acme.bad
	if err := os.WriteFile(path, []byte(strings.Repeat("this is not a database ", 300)), 0o644); err != nil {
		t.Fatal(err)
	}
	f.start(t, Options{Logger: logs.logger()}, hooks{now: f.clock.now, noJanitor: true})
	for range 3 {
		f.callErr(t, subjects.OpGet, "acme.bad", `{"seq":1}`, nil, subjects.ErrDamaged)
		f.callErr(t, subjects.OpSet, "acme.bad", "x", nil, subjects.ErrDamaged)
	}
	lines := logs.lines(t, "damaged stream file")
	if len(lines) != 1 || lines[0]["path"] != path || lines[0]["stream"] != "acme.bad" {
		t.Fatalf("damaged log lines %v, want one with stream and path %s", lines, path)
	}
	f.b.Shutdown(context.Background())
	f.start(t, Options{Logger: logs.logger()}, hooks{now: f.clock.now, noJanitor: true, mayServe: func(stream string) error {
		return errors.New("boom")
	}})
	f.callErr(t, subjects.OpSet, "acme.boom", "x", nil, subjects.ErrInternal)
	lines = logs.lines(t, "internal error")
	if len(lines) != 1 || lines[0]["op"] != "set" || lines[0]["stream"] != "acme.boom" {
		t.Fatalf("internal error log lines %v, want one naming op set and stream acme.boom", lines)
	}
}
