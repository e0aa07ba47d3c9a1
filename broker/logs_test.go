package broker

import (
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-persist/persist/subjects"
)

// newLogFixture is newFixture with the broker logging into logs at level,
// and with h's summary tick and queue limits.
func newLogFixture(tb testing.TB, opts Options, level slog.Level, h hooks) (*fixture, *logBuffer) {
	tb.Helper()
	logs := &logBuffer{}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level}))
	f := &fixture{srv: runServer(tb), clock: &fakeClock{t: time.Unix(1_700_000_000, 0)}}
	f.dir = tb.TempDir()
	opts.DataDir = f.dir
	f.bnc = connect(tb, f.srv)
	f.nc = connect(tb, f.srv)
	h.now, h.noJanitor = f.clock.now, true
	f.start(tb, opts, h)
	return f, logs
}

// only returns the one record of lines whose attributes include want, and
// fails unless there is exactly one.
func only(tb testing.TB, lines []map[string]any, want map[string]any) map[string]any {
	tb.Helper()
	var found []map[string]any
	for _, rec := range lines {
		if matches(rec, want) {
			found = append(found, rec)
		}
	}
	if len(found) != 1 {
		tb.Fatalf("%d log records with %v, want 1; records: %v", len(found), want, lines)
	}
	return found[0]
}

// eventually waits until lines(msg) holds exactly one record with want,
// for a line written after the reply that the test waited for.
func eventually(tb testing.TB, logs *logBuffer, msg string, want map[string]any) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		for _, rec := range logs.lines(tb, msg) {
			if matches(rec, want) {
				n++
			}
		}
		if n == 1 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	only(tb, logs.lines(tb, msg), want)
}

func matches(rec, want map[string]any) bool {
	for k, v := range want {
		if rec[k] != v {
			return false
		}
	}
	return true
}

func TestBroker_DebugLog_FailedRequest(t *testing.T) {
	f, logs := newLogFixture(t, Options{}, slog.LevelDebug, hooks{})
	f.set(t, "acme.log", "x", nil)
	f.callErr(t, subjects.OpGet, "acme.log", `{"seq":9}`, nil, subjects.ErrNotFound)
	f.callErr(t, subjects.OpSet, "acme.log", "y", hdr(subjects.HeaderPreviousSeq, "x"), subjects.ErrBadRequest)
	failed := logs.lines(t, "request failed")
	rec := only(t, failed, map[string]any{"op": "get", "stream": "acme.log", "reason": "not_found"})
	if got, want := rec["code"], float64(404); got != want {
		t.Errorf("code = %v, want %v", got, want)
	}
	if got, want := rec["level"], "DEBUG"; got != want {
		t.Errorf("level = %v, want %v", got, want)
	}
	only(t, failed, map[string]any{"op": "set", "stream": "acme.log", "reason": "bad_request", "code": float64(400)})
	if len(failed) != 2 {
		t.Fatalf("%d failed-request lines, want 2 (none for the set that succeeded): %v", len(failed), failed)
	}
}

// TestBroker_DebugLog_FailedRequestDuration: a request refused at a queue
// bound has its time in the worker in its line.
func TestBroker_DebugLog_FailedRequestDuration(t *testing.T) {
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	f, logs := newLogFixture(t, Options{}, slog.LevelDebug, hooks{
		queues: queueLimits{perStream: 1, all: 100, allBytes: 1 << 20},
		beforeJob: func(op, stream string) {
			if stream == "acme.held" {
				held <- struct{}{}
				<-release
			}
		},
	})
	first := f.nc.NewRespInbox()
	sub, err := f.nc.SubscribeSync(first)
	if err != nil {
		t.Fatal(err)
	}
	// The first set is held in beforeJob, the second waits in the queue,
	// the third is refused.
	if err := f.nc.PublishRequest(subjects.APISubject(subjects.DefaultPrefix, subjects.OpSet, "acme.held"), first, []byte("1")); err != nil {
		t.Fatal(err)
	}
	<-held
	if err := f.nc.PublishRequest(subjects.APISubject(subjects.DefaultPrefix, subjects.OpSet, "acme.held"), first, []byte("2")); err != nil {
		t.Fatal(err)
	}
	// Once the queued set counts, the next one is past the bound.
	deadline := time.Now().Add(10 * time.Second)
	for f.b.queued.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	f.callErr(t, subjects.OpSet, "acme.held", "3", nil, subjects.ErrOverloaded)
	close(release)
	for range 2 {
		if _, err := sub.NextMsg(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	rec := only(t, logs.lines(t, "request failed"), map[string]any{"op": "set", "stream": "acme.held", "reason": "overloaded"})
	if d, ok := rec["duration"].(float64); !ok || d < 0 {
		t.Fatalf("duration = %v, want a duration", rec["duration"])
	}
}

func TestBroker_DebugLog_Streams(t *testing.T) {
	f, logs := newLogFixture(t, Options{MaxOpen: 1}, slog.LevelDebug, hooks{})
	f.set(t, "acme.a", "x", nil)
	f.set(t, "acme.b", "x", nil) // the one slot: a is evicted
	opened := logs.lines(t, "stream opened")
	only(t, opened, map[string]any{"stream": "acme.a", "created": true, "memory": false})
	only(t, opened, map[string]any{"stream": "acme.b", "created": true})
	// a's line is written once its close returned, after its slot went
	// to b.
	eventually(t, logs, "stream closed", map[string]any{"stream": "acme.a", "reason": "evicted"})

	// Idle past the trim delay, then past the idle timeout.
	f.clock.advance(DefaultTrimDelay)
	f.b.closeIdle()
	// closeIdle hands trims and closes to the closing goroutines.
	eventually(t, logs, "stream trimming", map[string]any{"stream": "acme.b", "reason": "idle"})
	f.clock.advance(DefaultIdleTimeout)
	f.b.closeIdle()
	eventually(t, logs, "stream closed", map[string]any{"stream": "acme.b", "reason": "idle"})

	// Opened again (not created), and closed by the shutdown.
	f.call(t, subjects.OpGet, "acme.a", `{"seq":1}`, nil)
	only(t, logs.lines(t, "stream opened"), map[string]any{"stream": "acme.a", "created": false})
	if err := f.b.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	only(t, logs.lines(t, "stream closed"), map[string]any{"stream": "acme.a", "reason": "shutdown"})
}

// TestBroker_InfoLog_NoRequestLines: at info, requests, failed or not,
// and streams opening and closing write nothing.
func TestBroker_InfoLog_NoRequestLines(t *testing.T) {
	f, logs := newLogFixture(t, Options{MaxOpen: 1}, slog.LevelInfo, hooks{})
	before := len(logs.lines(t, ""))
	for i := range 20 {
		f.set(t, "acme.quiet"+string(rune('a'+i%3)), "x", nil)
		f.call(t, subjects.OpGet, "acme.quieta", `{"seq":1}`, nil)
	}
	f.callErr(t, subjects.OpGet, "acme.quieta", `{"seq":99}`, nil, subjects.ErrNotFound)
	if got := logs.lines(t, ""); len(got) != before {
		t.Fatalf("log at info grew by %v", got[before:])
	}
}

func TestBroker_Summary(t *testing.T) {
	tick := make(chan time.Time)
	f, logs := newLogFixture(t, Options{}, slog.LevelInfo, hooks{summaryTick: tick})
	// An unbuffered send returns once the loop took it: two sends make
	// sure the first tick was handled.
	ticks := func(n int) {
		for range n {
			tick <- time.Time{}
		}
	}
	ticks(2)
	if got := logs.lines(t, "summary"); len(got) != 0 {
		t.Fatalf("summary lines with nothing done: %v", got)
	}
	f.set(t, "acme.s", "1", nil)
	f.set(t, "acme.s", "2", nil)
	f.callErr(t, subjects.OpGet, "acme.s", `{"seq":9}`, nil, subjects.ErrNotFound)
	// micro counts a request once its handler returned, which may be
	// after the reply.
	deadline := time.Now().Add(10 * time.Second)
	for f.b.summaryCounts().requests < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	f.clock.advance(2 * time.Second)
	ticks(2)
	lines := logs.lines(t, "summary")
	if len(lines) != 1 {
		t.Fatalf("summary lines = %v, want 1", lines)
	}
	want := map[string]any{"level": "INFO", "open_streams": float64(1), "requests": float64(3),
		"requests_per_sec": 1.5, "errors": float64(1), "overloaded": float64(0), "shed": float64(0)}
	for k, v := range want {
		if got := lines[0][k]; got != v {
			t.Errorf("summary %s = %v, want %v (line %v)", k, got, v, lines[0])
		}
	}
	ticks(2)
	if got := logs.lines(t, "summary"); len(got) != 1 {
		t.Fatalf("summary lines = %v, want no second one with nothing done", got)
	}
}

// TestBroker_ServiceInfo: nats micro info shows the worker-wide figures
// once: in the stats data of one endpoint, named by the service's info
// metadata; every other endpoint's data holds its own figures only.
func TestBroker_ServiceInfo(t *testing.T) {
	f, _ := newLogFixture(t, Options{Metadata: map[string]string{"build": "v9", "prefix": "not this"}}, slog.LevelInfo, hooks{})
	f.set(t, "acme.i", "x", nil)
	f.callErr(t, subjects.OpGet, "acme.i", `{"seq":9}`, nil, subjects.ErrNotFound)

	m, err := f.nc.Request("$SRV.INFO.persist", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Metadata  map[string]string `json:"metadata"`
		Endpoints []struct {
			Name string `json:"name"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"worker_stats_endpoint": WorkerStatsEndpoint, "prefix": subjects.DefaultPrefix, "build": "v9"} {
		if got := info.Metadata[k]; got != v {
			t.Errorf("info metadata %s = %q, want %q (%v)", k, got, v, info.Metadata)
		}
	}
	if info.Metadata["max_open"] == "" || info.Metadata["max_open_bound_by"] == "" {
		t.Errorf("info metadata %v lacks the open-file budget", info.Metadata)
	}

	m, err = f.nc.Request("$SRV.STATS.persist", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Endpoints []struct {
			Name string                     `json:"name"`
			Data map[string]json.RawMessage `json:"data"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(m.Data, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Endpoints) != len(info.Endpoints) || len(st.Endpoints) < len(subjects.Ops) {
		t.Fatalf("stats of %d endpoints, info of %d", len(st.Endpoints), len(info.Endpoints))
	}
	withOpen := 0
	for _, ep := range st.Endpoints {
		if _, ok := ep.Data["open_streams"]; ok {
			withOpen++
			if ep.Name != WorkerStatsEndpoint {
				t.Errorf("worker-wide figures in the data of %s", ep.Name)
			}
			continue
		}
		keys := slices.Sorted(maps.Keys(ep.Data))
		if strings.Join(keys, ",") != "errors" {
			t.Errorf("%s data = %v, want only its errors", ep.Name, keys)
		}
		if want := map[string]string{"get": "1"}[ep.Name]; want != "" && string(ep.Data["errors"]) != want {
			t.Errorf("%s errors = %s, want %s", ep.Name, ep.Data["errors"], want)
		}
	}
	if withOpen != 1 {
		t.Fatalf("worker-wide figures in %d endpoints' data, want 1: %s", withOpen, m.Data)
	}
}

// TestBroker_LogsCostNothingAtInfo: with debug off, the lines of a failed
// request and of a stream closing build nothing.
func TestBroker_LogsCostNothingAtInfo(t *testing.T) {
	f, logs := newLogFixture(t, Options{}, slog.LevelInfo, hooks{})
	f.set(t, "acme.free", "x", nil)
	sh := f.b.reg.shard("acme.free")
	sh.mu.Lock()
	e := sh.streams["acme.free"]
	sh.mu.Unlock()
	we := subjects.ErrNotFound.WithDescription("no such message")
	since := f.clock.now()
	if n := testing.AllocsPerRun(100, func() { f.b.logFailed(subjects.OpGet, "acme.free", we, since) }); n != 0 {
		t.Errorf("logFailed at info: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { f.b.logTrim(e, "idle") }); n != 0 {
		t.Errorf("logTrim at info: %v allocations, want 0", n)
	}
	if got := logs.lines(t, "request failed"); len(got) != 0 {
		t.Fatalf("request failed lines at info: %v", got)
	}
}
