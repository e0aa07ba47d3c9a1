package integration

import (
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestOutage_NATSRestart runs the crash load against a worker child
// process joined to a NATS server that is stopped and started again on the
// same port (3 times, 10 with PERSIST_LONG=1). The worker must reconnect
// and serve again, and the load's check must find every acknowledged write
// after each outage and at the end; the worker is stopped for the last
// time during an outage, and a new worker must find everything.
func TestOutage_NATSRestart(t *testing.T) {
	s := runServer(t, -1)
	port := s.Addr().(*net.TCPAddr).Port
	url := s.ClientURL()
	dir := t.TempDir()
	w := startWorker(t, url, "--data", dir)
	workers := []*worker{w}
	load := crashStartLoad(t, url)
	r := rand.New(rand.NewPCG(load.seed, 2))
	restarts := pick(3, 10)
	var (
		serve, streams []time.Duration
		res            crashCheckResult
		done           int
	)
	start := time.Now()
	for range restarts {
		load.waitAcked(t, 200)
		// The outage starts at a random moment and lasts a random time;
		// nothing waits for either.
		time.Sleep(time.Duration(300+r.IntN(2700)) * time.Millisecond)
		s.Shutdown()
		s.WaitForShutdown()
		time.Sleep(time.Duration(200+r.IntN(pick(1800, 4800))) * time.Millisecond)
		s = restartServer(t, port)
		done++
		t0 := time.Now()
		load.waitServing(t)
		serve = append(serve, time.Since(t0))
		load.waitStreams(t)
		streams = append(streams, time.Since(t0))
		select {
		case <-w.done:
			t.Fatalf("worker exited during the outage: %v\n%s", w.err, w.stderr.String())
		default:
		}
		load.waitAcked(t, 200)
		if res = load.check(t); len(load.failures(res)) > 0 {
			break
		}
	}
	load.halt()
	if len(load.failures(res)) == 0 {
		res = load.check(t)
	}
	// The last stop comes while NATS is down: nothing can be answered,
	// so the worker closes its files at once and exits 0, and a new
	// worker finds everything.
	s.Shutdown()
	s.WaitForShutdown()
	t0 := time.Now()
	codeDown := w.signal(t, syscall.SIGTERM)
	stopDown := time.Since(t0)
	integrity := crashIntegrity(t, dir)
	restartServer(t, port)
	w = startWorker(t, url, "--data", dir)
	workers = append(workers, w)
	if len(load.failures(res)) == 0 {
		res = load.check(t)
	}
	code := w.signal(t, syscall.SIGTERM)
	files := crashIntegrity(t, dir)
	integrity += files

	fig := load.figures()
	logLines, slow, sample := crashWorkerLog(workers)
	fig["worker_log_lines"], fig["worker_slow_consumer"] = logLines, slow
	for _, line := range sample {
		t.Logf("worker log: %s", line)
	}
	fig["restarts"] = done
	fig["serve_ms_p50"], fig["serve_ms_max"] = crashMillis(serve)
	fig["all_streams_ms_p50"], fig["all_streams_ms_max"] = crashMillis(streams)
	fig["files"] = files
	fig["integrity_checks_ok"] = integrity
	fig["stop_nats_down_ms"] = stopDown.Milliseconds()
	fig["messages_read_last_check"] = res.msgs
	fig["seconds"] = int(time.Since(start).Seconds())
	report(t, "outage", fig)

	if codeDown != 0 {
		t.Errorf("worker exit code after SIGTERM with NATS down = %d, want 0", codeDown)
	}
	if code != 0 {
		t.Errorf("worker exit code after SIGTERM = %d, want 0", code)
	}
	load.verdict(t, fig, res)
}
