package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
)

// worker is a NATS server and a persist worker in the test process, and
// a client to check what the command did.
type worker struct {
	srv *server.Server
	url string
	cl  *client.Client
}

// startWorker starts an embedded NATS server with opts (a free port, no
// log) and a worker on a fresh data directory; it also clears the
// environment the command reads, so only what a test sets counts.
func startWorker(tb testing.TB, opts *server.Options, natsOpts ...nats.Option) *worker {
	tb.Helper()
	isolate(tb)
	if opts == nil {
		opts = &server.Options{}
	}
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server did not start")
	}
	tb.Cleanup(s.Shutdown)
	connect := func() *nats.Conn {
		nc, err := nats.Connect(s.ClientURL(), natsOpts...)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(nc.Close)
		return nc
	}
	bnc := connect()
	b, err := broker.New(bnc, broker.Options{DataDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	if err := bnc.Flush(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown() error = %v", err)
		}
	})
	return &worker{srv: s, url: s.ClientURL(), cl: client.New(connect())}
}

// isolate gives the test an empty configuration directory and unsets
// the variables the command reads.
func isolate(tb testing.TB) {
	tb.Helper()
	tb.Setenv("XDG_CONFIG_HOME", tb.TempDir())
	tb.Setenv("HOME", tb.TempDir())
	for _, v := range []string{"NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_CREDS", "NATS_NKEY",
		"NATS_CERT", "NATS_KEY", "NATS_CA", "NATS_CONTEXT", "NATS_TIMEOUT", "PERSIST_PREFIX", "PERSIST_RETRIES"} {
		tb.Setenv(v, "") // the parser takes an empty variable as unset
	}
}

// result is what one run of the command printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// invocation runs the command in the test process.
type invocation struct {
	stdin    string
	terminal bool             // stdin and stderr count as a terminal
	now      func() time.Time // nil: time.Now
}

func (inv invocation) run(ctx context.Context, args ...string) result {
	var stdout, stderr bytes.Buffer
	return inv.runTo(ctx, &stdout, &stderr, args...)
}

func (inv invocation) runTo(ctx context.Context, stdout, stderr interface {
	Write([]byte) (int, error)
	String() string
}, args ...string) result {
	now := inv.now
	if now == nil {
		now = time.Now
	}
	c := &cli{
		stdin: strings.NewReader(inv.stdin), stdout: stdout, stderr: stderr,
		isTerminal: func(any) bool { return inv.terminal }, now: now,
	}
	code := c.main(ctx, args)
	return result{stdout.String(), stderr.String(), code}
}

// run runs the command against w with stdin.
func (w *worker) run(tb testing.TB, stdin string, args ...string) result {
	tb.Helper()
	return invocation{stdin: stdin}.run(context.Background(), append([]string{"--server", w.url}, args...)...)
}

// ok runs the command and fails the test unless it succeeds.
func (w *worker) ok(tb testing.TB, stdin string, args ...string) string {
	tb.Helper()
	r := w.run(tb, stdin, args...)
	if r.code != 0 {
		tb.Fatalf("persist %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// jsonLines decodes every line of out into a T.
func jsonLines[T any](tb testing.TB, out string) []T {
	tb.Helper()
	var vs []T
	for line := range strings.Lines(out) {
		var v T
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			tb.Fatalf("line %q: %v", line, err)
		}
		vs = append(vs, v)
	}
	return vs
}

// syncBuffer is a buffer that a running command writes while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond until it holds, failing after a generous time.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// background runs the command until the test stops it, writing to out
// and errOut; stop cancels it and returns its result.
func (w *worker) background(tb testing.TB, args ...string) (out, errOut *syncBuffer, stop func() result) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut = &syncBuffer{}, &syncBuffer{}
	done := make(chan result, 1)
	go func() {
		done <- invocation{}.runTo(ctx, out, errOut, append([]string{"--server", w.url}, args...)...)
	}()
	var once sync.Once
	var res result
	stop = func() result {
		once.Do(func() {
			cancel()
			select {
			case res = <-done:
			case <-time.After(20 * time.Second):
				tb.Fatalf("persist %s did not stop", strings.Join(args, " "))
			}
		})
		return res
	}
	tb.Cleanup(func() { stop() })
	return out, errOut, stop
}
