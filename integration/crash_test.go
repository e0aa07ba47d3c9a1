package integration

import (
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestCrash_KillLoop runs the crash load against a worker child process
// and SIGKILLs it at random moments (4 times, 20 with PERSIST_LONG=1),
// once while large setmany requests are in flight. After each restart and
// at the end the load's check reads every stream from the wire; after
// each kill and after the final stop every stream file passes PRAGMA
// integrity_check.
func TestCrash_KillLoop(t *testing.T) {
	s := runServer(t, -1)
	url := s.ClientURL()
	dir := t.TempDir()
	w := startWorker(t, url, "--data", dir)
	load := crashStartLoad(t, url)
	r := rand.New(rand.NewPCG(load.seed, 1))
	kills := pick(4, 20)
	const bigKill = 1 // the kill that lands among large setmany requests
	var (
		answer, streams []time.Duration
		res             crashCheckResult
		bigInFlight     int64
		integrity       int // files that passed integrity_check, after every kill and at the end
		done            int
	)
	start := time.Now()
	for k := range kills {
		load.waitAcked(t, 200)
		if k == bigKill {
			load.startBig()
			waitFor(t, 2*time.Minute, func() bool { return load.bigAcked.Load() >= 1 && load.bigInFlight.Load() >= 2 })
			bigInFlight = load.bigInFlight.Load()
		} else {
			// The moment of the kill is random; nothing waits for it.
			time.Sleep(time.Duration(300+r.IntN(2700)) * time.Millisecond)
		}
		w.signal(t, os.Kill)
		done++
		integrity += crashIntegrity(t, dir)
		t0 := time.Now()
		w = startWorker(t, url, "--data", dir)
		answer = append(answer, time.Since(t0))
		load.waitStreams(t)
		streams = append(streams, time.Since(t0))
		if k == bigKill {
			load.endBig()
		}
		load.waitAcked(t, 200)
		t1 := time.Now()
		res = load.check(t)
		t.Logf("kill %d: answering after %v, every stream after %v; check read %d messages in %v", k+1, answer[k], streams[k], res.msgs, time.Since(t1))
		if len(load.failures(res)) > 0 {
			break
		}
	}
	load.halt()
	if len(load.failures(res)) == 0 {
		res = load.check(t)
	}
	code := w.signal(t, syscall.SIGTERM)
	files := crashIntegrity(t, dir)
	integrity += files

	fig := load.figures()
	fig["kills"] = done
	fig["answer_ms_p50"], fig["answer_ms_max"] = crashMillis(answer)
	fig["all_streams_ms_p50"], fig["all_streams_ms_max"] = crashMillis(streams)
	fig["big_inflight_at_kill"] = bigInFlight
	fig["big_requests_acked"] = load.bigAcked.Load()
	fig["files"] = files
	fig["integrity_checks_ok"] = integrity
	fig["messages_read_last_check"] = res.msgs
	fig["seconds"] = int(time.Since(start).Seconds())
	report(t, "crash", fig)

	if code != 0 {
		t.Errorf("worker exit code after SIGTERM = %d, want 0", code)
	}
	if bigInFlight == 0 {
		t.Error("no large setmany was in flight at the kill meant for it")
	}
	load.verdict(t, fig, res)
}
