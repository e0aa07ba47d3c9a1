package broker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// runServer starts an embedded NATS server for the test.
func runServer(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		tb.Fatalf("NewServer() = %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready")
	}
	tb.Cleanup(s.Shutdown)
	return s
}

// connect opens a client connection to s.
func connect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatalf("nats.Connect() = %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// fakeClock is a settable clock for idle timeouts.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a broker on an embedded server and a client connection.
type fixture struct {
	srv   *server.Server
	b     *Broker
	bnc   *nats.Conn // the broker's connection
	nc    *nats.Conn // the client's connection
	dir   string
	clock *fakeClock
}

// newFixture starts a broker with opts (DataDir defaults to a temp dir)
// and a fake clock, without the janitor.
func newFixture(tb testing.TB, opts Options) *fixture {
	tb.Helper()
	f := &fixture{srv: runServer(tb), clock: &fakeClock{t: time.Unix(1_700_000_000, 0)}}
	if opts.DataDir == "" {
		opts.DataDir = tb.TempDir()
	}
	f.dir = opts.DataDir
	f.bnc = connect(tb, f.srv)
	f.nc = connect(tb, f.srv)
	f.start(tb, opts, hooks{now: f.clock.now, noJanitor: true})
	return f
}

// start (re)starts the broker on the fixture's server.
func (f *fixture) start(tb testing.TB, opts Options, h hooks) {
	tb.Helper()
	if opts.DataDir == "" {
		opts.DataDir = f.dir
	}
	b, err := newBroker(f.bnc, opts, h)
	if err != nil {
		tb.Fatalf("New() = %v", err)
	}
	f.b = b
	tb.Cleanup(func() {
		// A test that shut down with a done context gets its error again.
		if err := b.Shutdown(context.Background()); err != nil && !errors.Is(err, context.Canceled) {
			tb.Errorf("Shutdown() = %v", err)
		}
	})
}

// request sends one request and returns its reply.
func (f *fixture) request(tb testing.TB, op, stream string, body []byte, h nats.Header) *nats.Msg {
	tb.Helper()
	m, err := f.nc.RequestMsg(&nats.Msg{Subject: subjects.APISubject(subjects.DefaultPrefix, op, stream), Data: body, Header: h}, 10*time.Second)
	if err != nil {
		tb.Fatalf("request %s %s: %v", op, stream, err)
	}
	return m
}

// call sends a request, fails on an error reply and decodes the reply
// into v (when v is not nil).
func (f *fixture) call(tb testing.TB, op, stream, body string, v any) *nats.Msg {
	tb.Helper()
	m := f.request(tb, op, stream, []byte(body), nil)
	if werr := replyError(m); werr != nil {
		tb.Fatalf("%s %s %s: error reply %v", op, stream, body, werr)
	}
	if v != nil {
		if err := json.Unmarshal(m.Data, v); err != nil {
			tb.Fatalf("%s %s: reply %q: %v", op, stream, m.Data, err)
		}
	}
	return m
}

// callErr sends a request and checks that it fails with want.
func (f *fixture) callErr(tb testing.TB, op, stream, body string, h nats.Header, want *subjects.Error) *subjects.Error {
	tb.Helper()
	m := f.request(tb, op, stream, []byte(body), h)
	got := replyError(m)
	if got == nil {
		tb.Fatalf("%s %s %s: reply %q, want error %v", op, stream, body, m.Data, want)
	}
	if got.Code != want.Code || got.Reason != want.Reason {
		tb.Fatalf("%s %s %s: error %v, want %v", op, stream, body, got, want)
	}
	return got
}

// replyError decodes an error reply, checking that its headers and body
// agree; nil if m is not an error reply.
func replyError(m *nats.Msg) *subjects.Error {
	code := m.Header.Get("Nats-Service-Error-Code")
	if code == "" {
		return nil
	}
	var body struct {
		Error *subjects.Error `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &body); err != nil || body.Error == nil {
		return &subjects.Error{Code: -1, Reason: "undecodable error body: " + string(m.Data)}
	}
	if strconv.Itoa(body.Error.Code) != code || m.Header.Get("Nats-Service-Error") == "" {
		return &subjects.Error{Code: -1, Reason: "error headers disagree with body: " + code}
	}
	return body.Error
}

// set writes one message and returns its reply.
func (f *fixture) set(tb testing.TB, stream, data string, h nats.Header) subjects.SetReply {
	tb.Helper()
	m := f.request(tb, subjects.OpSet, stream, []byte(data), h)
	if werr := replyError(m); werr != nil {
		tb.Fatalf("set %s: %v", stream, werr)
	}
	var r subjects.SetReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		tb.Fatalf("set reply %q: %v", m.Data, err)
	}
	return r
}

// getAll requests one getall page: its messages and the terminator.
func (f *fixture) getAll(tb testing.TB, stream, body string) (msgs []*nats.Msg, end *nats.Msg) {
	tb.Helper()
	return f.pagedReply(tb, subjects.OpGetAll, stream, body)
}

// pagedReply requests one page of op (getall or changes) on a fresh inbox: its
// messages and the terminator, or the error reply that ended it.
func (f *fixture) pagedReply(tb testing.TB, op, stream, body string) (msgs []*nats.Msg, end *nats.Msg) {
	tb.Helper()
	inbox := nats.NewInbox()
	sub, err := f.nc.SubscribeSync(inbox)
	if err != nil {
		tb.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := f.nc.PublishRequest(subjects.APISubject(subjects.DefaultPrefix, op, stream), inbox, []byte(body)); err != nil {
		tb.Fatal(err)
	}
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			tb.Fatalf("%s %s %s: %v", op, stream, body, err)
		}
		if m.Header.Get(subjects.HeaderEnd) == "true" || replyError(m) != nil {
			return msgs, m
		}
		msgs = append(msgs, m)
	}
}

// stats returns the broker's custom stats, as served by micro.
func (f *fixture) stats(tb testing.TB) Stats {
	tb.Helper()
	for _, ep := range f.b.Service().Stats().Endpoints {
		if ep.Name == subjects.OpSet {
			var s Stats
			if err := json.Unmarshal(ep.Data, &s); err != nil {
				tb.Fatalf("stats data %q: %v", ep.Data, err)
			}
			return s
		}
	}
	tb.Fatal("no set endpoint in stats")
	return Stats{}
}

// files lists the regular files under dir, relative to it.
func files(tb testing.TB, dir string) []string {
	tb.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatal(err)
	}
	return out
}

// hdr builds a header from name/value pairs.
func hdr(kv ...string) nats.Header {
	h := nats.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return h
}

// waitFor polls cond until it holds; for effects of background goroutines
// that have no explicit completion signal.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// quiet waits until no stream has work in flight, so that idle checks see
// every stream that answered as idle.
func (f *fixture) quiet(tb testing.TB) {
	tb.Helper()
	waitFor(tb, "streams to go idle", func() bool {
		for i := range f.b.reg.shards {
			sh := &f.b.reg.shards[i]
			sh.mu.Lock()
			for _, e := range sh.streams {
				if e.busy || len(e.queue) > 0 {
					sh.mu.Unlock()
					return false
				}
			}
			sh.mu.Unlock()
		}
		return true
	})
}
