package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

// writeLoad is a set of writers appending to one stream until stopped,
// and the writes the worker acknowledged. Errors are expected while the
// worker goes away; only an error reply that is not "unavailable" fails
// the test.
type writeLoad struct {
	mu     sync.Mutex
	acked  []ackedWrite
	failed error
	stop   chan struct{}
	wg     sync.WaitGroup
}

// startLoad starts writers on st, each request bounded by a short
// timeout.
func startLoad(st *client.Stream, writers int) *writeLoad {
	l := &writeLoad{stop: make(chan struct{})}
	for w := range writers {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				data := fmt.Sprintf("w%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				ack, err := st.Set(ctx, []byte(data))
				cancel()
				var perr *subjects.Error
				switch {
				case err == nil:
					l.mu.Lock()
					l.acked = append(l.acked, ackedWrite{ack.Seq, data})
					l.mu.Unlock()
				case errors.As(err, &perr) && !errors.Is(err, subjects.ErrUnavailable):
					l.mu.Lock()
					l.failed = err
					l.mu.Unlock()
					return
				default:
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	return l
}

func (l *writeLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// waitAcked waits until n writes are acknowledged.
func (l *writeLoad) waitAcked(tb testing.TB, n int) {
	tb.Helper()
	waitFor(tb, 30*time.Second, func() bool { return l.count() >= n })
}

// finish stops the writers and returns the acknowledged writes.
func (l *writeLoad) finish(tb testing.TB) []ackedWrite {
	tb.Helper()
	close(l.stop)
	l.wg.Wait()
	if l.failed != nil {
		tb.Fatalf("write refused: %v", l.failed)
	}
	return l.acked
}

// checkDurable restarts a worker on dir and checks that every
// acknowledged write is there and seqs are unique.
func checkDurable(tb testing.TB, url, dir string, acked []ackedWrite) {
	tb.Helper()
	startWorker(tb, url, "--data", dir)
	st := client.New(connect(tb, url)).Stream("acme.durable")
	msgs := readAll(tb, st)
	checkAcked(tb, acked, msgs)
	seen := map[uint64]bool{}
	for _, a := range acked {
		if seen[a.seq] {
			tb.Fatalf("seq %d acknowledged twice", a.seq)
		}
		seen[a.seq] = true
	}
	tb.Logf("%d acknowledged writes, %d messages after restart", len(acked), len(msgs))
}

func TestWorker_DrainOnSIGTERM(t *testing.T) {
	s := runServer(t, -1)
	dir := t.TempDir()
	w := startWorker(t, s.ClientURL(), "--data", dir)
	st := client.New(connect(t, s.ClientURL())).Stream("acme.durable")
	load := startLoad(st, 16)
	load.waitAcked(t, 500)
	code := w.signal(t, syscall.SIGTERM)
	acked := load.finish(t)
	if code != 0 {
		t.Fatalf("worker exit code after SIGTERM = %d, want 0\n%s", code, w.stderr.String())
	}
	checkDurable(t, s.ClientURL(), dir, acked)
}

func TestWorker_CrashSIGKILL(t *testing.T) {
	s := runServer(t, -1)
	dir := t.TempDir()
	w := startWorker(t, s.ClientURL(), "--data", dir)
	st := client.New(connect(t, s.ClientURL())).Stream("acme.durable")
	load := startLoad(st, 16)
	load.waitAcked(t, 500)
	w.signal(t, os.Kill)
	acked := load.finish(t)
	checkDurable(t, s.ClientURL(), dir, acked)
}

func TestWorker_NATSServerRestart(t *testing.T) {
	s := runServer(t, -1)
	port := s.Addr().(*net.TCPAddr).Port
	url := s.ClientURL()
	dir := t.TempDir()
	startWorker(t, url, "--data", dir)
	st := client.New(connect(t, url)).Stream("acme.retry")

	// Each writer retries every write with its msg id until it is
	// acknowledged, so a write whose reply was lost is not written twice.
	var (
		mu    sync.Mutex
		acked []ackedWrite
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					ack, err := st.Set(ctx, []byte(id), client.WithMsgID(id))
					cancel()
					if err == nil {
						mu.Lock()
						acked = append(acked, ackedWrite{ack.Seq, id})
						mu.Unlock()
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	waitFor(t, 30*time.Second, func() bool { return count() >= 300 })
	s.Shutdown()
	s.WaitForShutdown()
	before := count()
	restartServer(t, port)
	waitFor(t, 60*time.Second, func() bool { return count() >= before+300 })
	close(stop)
	wg.Wait()

	msgs := readAll(t, st)
	checkAcked(t, acked, msgs)
	seen := map[string]uint64{}
	for seq, m := range msgs {
		if other, ok := seen[string(m.Data)]; ok {
			t.Fatalf("%s written twice, at seqs %d and %d", m.Data, other, seq)
		}
		seen[string(m.Data)] = seq
	}
	t.Logf("%d acknowledged writes (%d before the restart), %d messages", len(acked), before, len(msgs))
}

// restartServer starts a NATS server on port, retrying while the old
// server's listener is still being released.
func restartServer(tb testing.TB, port int) *server.Server {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, MaxPayload: 8 << 20})
		if err != nil {
			tb.Fatal(err)
		}
		go s.Start()
		if s.ReadyForConnections(2 * time.Second) {
			tb.Cleanup(s.Shutdown)
			return s
		}
		s.Shutdown()
		if time.Now().After(deadline) {
			tb.Fatalf("could not restart the NATS server on port %d", port)
		}
	}
}

func TestWorker_EmbeddedServer(t *testing.T) {
	ctx := context.Background()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	url := "nats://" + addr
	dir := t.TempDir()
	w := spawnWorker(t, url, "--listen", addr, "--data", dir)
	st := client.New(connect(t, url)).Stream("acme.embedded")
	ack, err := st.Set(ctx, []byte("x"), client.WithKey("k"))
	if err != nil {
		t.Fatal(err)
	}
	if code := w.signal(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit code after SIGINT = %d, want 0", code)
	}
	spawnWorker(t, url, "--listen", addr, "--data", dir)
	m, err := st.GetKey(ctx, "k")
	if err != nil {
		t.Fatalf("GetKey() after restart error = %v", err)
	}
	if m.Seq != ack.Seq || string(m.Data) != "x" {
		t.Fatalf("GetKey() after restart = %+v, want seq %d", m, ack.Seq)
	}
}
