package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
)

// workerBin is the persist-worker binary built once for the test binary.
var workerBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "persist-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	workerBin = filepath.Join(dir, "persist-worker")
	build := exec.Command("go", "build", "-o", workerBin, "github.com/nats-persist/persist/cmd/persist-worker")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building persist-worker: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// runServer starts an embedded NATS server on port (-1: a free one).
func runServer(tb testing.TB, port int) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, MaxPayload: 8 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server did not start")
	}
	tb.Cleanup(s.Shutdown)
	return s
}

// connect opens a NATS connection that keeps reconnecting, as a client of
// a long-lived service would.
func connect(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// startBroker runs a worker in the test process on its own connection to
// s, with opts (a fresh data directory when opts.DataDir is empty). The
// worker is shut down at the end of the test unless the test did it.
func startBroker(tb testing.TB, s *server.Server, opts broker.Options) *broker.Broker {
	tb.Helper()
	if opts.DataDir == "" {
		opts.DataDir = tb.TempDir()
	}
	nc := connect(tb, s.ClientURL())
	b, err := broker.New(nc, opts)
	if err != nil {
		tb.Fatalf("broker.New() error = %v", err)
	}
	// The worker's subscriptions travel to the server on its own
	// connection; a request on another one could otherwise overtake them.
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b.Shutdown(ctx)
	})
	return b
}

// shutdown stops b and fails the test if that fails.
func shutdown(tb testing.TB, b *broker.Broker) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		tb.Fatalf("Shutdown() error = %v", err)
	}
}

// worker is a persist-worker child process.
type worker struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error // Wait's result, valid after done
}

// syncBuffer collects a child's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startWorker runs the worker binary joining the NATS server at url, with
// args, and waits until it answers requests. It is killed at the end of
// the test if still running.
func startWorker(tb testing.TB, url string, args ...string) *worker {
	tb.Helper()
	return spawnWorker(tb, url, append([]string{"--nats-url", url}, args...)...)
}

// spawnWorker runs the worker binary with args and waits until it answers
// requests at url.
func spawnWorker(tb testing.TB, url string, args ...string) *worker {
	tb.Helper()
	return startWorkerCmd(tb, url, exec.Command(workerBin, append([]string{"--log-level", "warn"}, args...)...))
}

// startWorkerCmd runs cmd, a worker child process (or a program that
// becomes one), collecting its output, and waits until it answers at url.
// It is killed at the end of the test if still running.
func startWorkerCmd(tb testing.TB, url string, cmd *exec.Cmd) *worker {
	tb.Helper()
	w := &worker{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = w.stderr
	cmd.Stderr = w.stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		w.err = cmd.Wait()
		close(w.done)
	}()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-w.done
		if tb.Failed() {
			tb.Logf("worker output:\n%s", w.stderr.String())
		}
	})
	waitReady(tb, url, w)
	return w
}

// waitReady polls until a worker answers at url.
func waitReady(tb testing.TB, url string, w *worker) {
	tb.Helper()
	var nc *nats.Conn
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-w.done:
			tb.Fatalf("worker exited while starting: %v\n%s", w.err, w.stderr.String())
		default:
		}
		if nc == nil {
			// A worker with its own NATS server may not listen yet.
			nc, _ = nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		}
		if nc != nil {
			m, err := nc.Request("persist.api.inventory.ready", nil, time.Second)
			if err == nil && m.Header.Get("Nats-Service-Error-Code") == "" {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("worker did not answer within 20s\n%s", w.stderr.String())
}

// signal sends sig to the worker and waits for it to exit, returning its
// exit code (-1 when killed by a signal).
func (w *worker) signal(tb testing.TB, sig os.Signal) int {
	tb.Helper()
	if err := w.cmd.Process.Signal(sig); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-w.done:
	case <-time.After(60 * time.Second):
		tb.Fatalf("worker did not exit after %v\n%s", sig, w.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(w.err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return -1
		}
		return ee.ExitCode()
	}
	if w.err != nil {
		tb.Fatal(w.err)
	}
	return 0
}

// freePort returns a TCP port nobody listens on right now.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// dbFiles lists the stream files under dir.
func dbFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".db") {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// getAllRaw sends one getall request to a fresh inbox and collects the
// page's messages and its terminator (or error reply).
func getAllRaw(tb testing.TB, nc *nats.Conn, subject string, body []byte) (msgs []*nats.Msg, end *nats.Msg) {
	tb.Helper()
	return getAllRawWait(tb, nc, subject, body, 10*time.Second)
}

// getAllRawWait is getAllRaw waiting at most wait for each message; a
// no-responders status ends the page too.
func getAllRawWait(tb testing.TB, nc *nats.Conn, subject string, body []byte, wait time.Duration) (msgs []*nats.Msg, end *nats.Msg) {
	tb.Helper()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		tb.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		tb.Fatal(err)
	}
	if err := nc.PublishRequest(subject, inbox, body); err != nil {
		tb.Fatal(err)
	}
	for {
		m, err := sub.NextMsg(wait)
		if err != nil {
			tb.Fatalf("getall %s: %v after %d messages", subject, err, len(msgs))
		}
		if m.Header.Get("Persist-End") != "" || m.Header.Get("Nats-Service-Error-Code") != "" || m.Header.Get("Status") != "" {
			return msgs, m
		}
		msgs = append(msgs, m)
	}
}

// readAll returns every message of a stream, by seq.
func readAll(tb testing.TB, st *client.Stream) map[uint64]*client.Msg {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[uint64]*client.Msg{}
	for m, err := range st.GetAll(ctx, client.Query{MaxMsgs: 10000}) {
		if err != nil {
			tb.Fatalf("GetAll(%s) error = %v", st.Name(), err)
		}
		out[m.Seq] = m
	}
	return out
}

// normalize decodes a JSON body and blanks the fields that vary from run
// to run (times, human descriptions), so bodies compare exactly otherwise.
func normalize(tb testing.TB, body []byte) string {
	tb.Helper()
	var v any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		tb.Fatalf("reply %q is not JSON: %v", body, err)
	}
	var blank func(v any) any
	blank = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				switch k {
				case "time":
					x[k] = 0
				case "description":
					x[k] = ""
				default:
					x[k] = blank(e)
				}
			}
		case []any:
			for i, e := range x {
				x[i] = blank(e)
			}
		}
		return v
	}
	out, err := json.Marshal(blank(v))
	if err != nil {
		tb.Fatal(err)
	}
	return string(out)
}

// canonical re-encodes a JSON literal so that it compares with normalize.
func canonical(tb testing.TB, s string) string {
	tb.Helper()
	return normalize(tb, []byte(s))
}

// ackedWrite is a write the worker acknowledged.
type ackedWrite struct {
	seq  uint64
	data string
}

// checkAcked fails unless every acknowledged write is in msgs at its seq.
func checkAcked(tb testing.TB, acked []ackedWrite, msgs map[uint64]*client.Msg) {
	tb.Helper()
	for _, a := range acked {
		m, ok := msgs[a.seq]
		if !ok {
			tb.Fatalf("acknowledged write seq %d (%s) is missing; %d messages present", a.seq, a.data, len(msgs))
		}
		if string(m.Data) != a.data {
			tb.Fatalf("seq %d = %q, want the acknowledged %q", a.seq, m.Data, a.data)
		}
	}
}

// itoa is strconv.Itoa for uint64 header values.
func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
