package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

// TestCrash_KillLoop runs the crash load against a worker child process
// and SIGKILLs it at random moments (4 times, 20 with PERSIST_LONG=1),
// once while large setmany requests are in flight, every fourth time
// while it is stopping on SIGTERM. After each restart and
// at the end the load's check reads every stream from the wire; after
// each kill and after the final stop every stream file passes PRAGMA
// integrity_check.
func TestCrash_KillLoop(t *testing.T) {
	s := runServer(t, -1)
	url := s.ClientURL()
	dir := t.TempDir()
	w := startWorker(t, url, "--data", dir)
	workers := []*worker{w}
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
		duringStop      int // kills during a graceful stop
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
		if k != bigKill && k%4 == 3 {
			// Every fourth kill lands while the worker is stopping on
			// SIGTERM: answering what is in flight, closing its files.
			crashKillStopping(t, w, time.Duration(r.IntN(300))*time.Millisecond)
			duringStop++
		} else {
			w.signal(t, os.Kill)
		}
		done++
		integrity += crashIntegrity(t, dir)
		t0 := time.Now()
		w = startWorker(t, url, "--data", dir)
		workers = append(workers, w)
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
	logLines, slow, sample := crashWorkerLog(workers)
	fig["worker_log_lines"], fig["worker_slow_consumer"] = logLines, slow
	for _, line := range sample {
		t.Logf("worker log: %s", line)
	}
	fig["kills"] = done
	fig["kills_during_stop"] = duringStop
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

// crashKillStopping sends SIGTERM to w and SIGKILL after d, unless it has
// exited by then, and waits for it to exit.
func crashKillStopping(tb testing.TB, w *worker, d time.Duration) {
	tb.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-w.done:
		return
	case <-time.After(d):
	}
	if err := w.cmd.Process.Signal(os.Kill); err != nil && !errors.Is(err, os.ErrProcessDone) {
		tb.Fatal(err)
	}
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		tb.Fatalf("worker did not exit after SIGKILL\n%s", w.stderr.String())
	}
}

// TestCrash_CheckerFlags feeds the crash load's checker what a broken
// worker would show, so that the crash and outage tests can fail.
func TestCrash_CheckerFlags(t *testing.T) {
	ev := func(op, seq, msgID string, rev int, body string) *nats.Msg {
		m := nats.NewMsg("persist.ev.crash.s01")
		m.Header.Set(subjects.HeaderOp, op)
		m.Header.Set(subjects.HeaderRevision, strconv.Itoa(rev))
		m.Header.Set(subjects.HeaderSeq, seq)
		m.Header.Set(crashIDHeader, msgID)
		m.Data = []byte(body)
		return m
	}
	e := newCrashEvents()
	e.handle(ev("set", "1", "a", 1, "a "))
	e.handle(ev("set", "1", "a", 1, "a ")) // the same event again
	e.handle(ev("set", "2", "b", 2, "b "))
	e.handle(ev("set", "2", "c", 2, "c ")) // revision 2 reused
	e.handle(ev("set", "9", "a", 5, "a ")) // msg id a committed again
	n, missed, repeats, reused, twice := e.summary()
	if n != 5 || missed != 2 || repeats != 1 || len(reused) != 1 || len(twice) != 1 || e.noMsgIDs() != 3 {
		t.Errorf("summary() = %d events, %d missed, %d repeated, reused %q, twice %q; want 5, 2, 1, one, one (and 3 new set events without Persist-Msg-Id)", n, missed, repeats, reused, twice)
	}

	led := newCrashLedger()
	led.begin(1, "x")
	led.ack(1, "x", client.Ack{Seq: 7, Duplicate: true}, false) // a first attempt cannot be a duplicate
	led.begin(2, "y")
	led.ack(2, "y", client.Ack{Seq: 3}, false)
	led.begin(2, "z") // sent after seq 3 was acknowledged
	led.ack(2, "z", client.Ack{Seq: 3}, false)
	led.ack(2, "z", client.Ack{Seq: 4, Duplicate: true}, true) // its retry names another seq
	if got := len(led.violations); got != 3 {
		t.Errorf("ledger violations = %q, want 3", led.violations)
	}

	m := &client.Msg{Seq: 1, Header: nats.Header{crashIDHeader: {"x"}}, Data: crashPayload("x")}
	if err := crashSame(m, "x"); err != nil {
		t.Errorf("crashSame(the written message) = %v", err)
	}
	for _, bad := range []*client.Msg{
		{Seq: 1, Header: nats.Header{crashIDHeader: {"y"}}, Data: crashPayload("x")},
		{Seq: 1, Header: nats.Header{crashIDHeader: {"x"}}, Data: append(crashPayload("x"), '!')},
		{Seq: 1, Header: nats.Header{crashIDHeader: {"x"}, "Other": {"1"}}, Data: crashPayload("x")},
	} {
		if crashSame(bad, "x") == nil {
			t.Errorf("crashSame(%+v) = nil, want a difference", bad)
		}
	}
}

// TestCrash_CheckFindsDamage changes streams behind the ledger's back, as
// a worker that loses or repeats writes would, and expects the check to
// say so.
func TestCrash_CheckFindsDamage(t *testing.T) {
	ctx := context.Background()
	s := runServer(t, -1)
	startBroker(t, s, broker.Options{})
	load := crashNewLoad(t, s.ClientURL())
	c := load.clients[0]
	for i := range 4 {
		if _, err := load.set(c, 10, fmt.Sprintf("w%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	ack, err := load.set(c, 11, "gone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := load.set(c, 11, "kept"); err != nil {
		t.Fatal(err)
	}
	st := c.Stream(crashStreamName(11))
	if _, err := st.DeleteSeq(ctx, ack.Seq); err != nil { // lost
		t.Fatal(err)
	}
	// A write whose reply never came, seen committed in its event, and
	// then gone.
	load.led.begin(11, "ghost")
	ghost, err := st.Set(ctx, crashPayload("ghost"), client.WithMsgID("ghost"), client.WithHeader(nats.Header{crashIDHeader: {"ghost"}}))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		sets, _, _ := load.ev.snapshot(st.Name())
		_, ok := sets["ghost"]
		return ok
	})
	if _, err := st.DeleteSeq(ctx, ghost.Seq); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Set(ctx, crashPayload("kept"), client.WithHeader(nats.Header{crashIDHeader: {"kept"}})); err != nil { // stored twice
		t.Fatal(err)
	}
	if _, err := st.Set(ctx, crashPayload("stranger"), client.WithHeader(nats.Header{crashIDHeader: {"stranger"}})); err != nil {
		t.Fatal(err)
	}
	res := load.check(t)
	fig := load.figures()
	if fig["lost"] != 1 || fig["duplicated"] != 1 || len(res.problems) != 1 {
		t.Errorf("check found lost=%v duplicated=%v problems %q; want 1, 1 and the message never sent", fig["lost"], fig["duplicated"], res.problems)
	}
	if fig["acked"] != 6 || fig["committed_lost"] != 1 {
		t.Errorf("acked=%v committed_lost=%v, want 6 and 1 (the ghost)", fig["acked"], fig["committed_lost"])
	}
}

// TestCrash_QuietStartAndStop runs a lone worker through a start, a write
// and a SIGTERM: at --log-level warn it has nothing to say, so that the
// warnings the crash and outage tests count are the faults'.
func TestCrash_QuietStartAndStop(t *testing.T) {
	s := runServer(t, -1)
	w := startWorker(t, s.ClientURL(), "--data", t.TempDir())
	st := client.New(connect(t, s.ClientURL())).Stream("crash.quiet")
	if _, err := st.Set(context.Background(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if code := w.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	if out := w.stderr.String(); out != "" {
		t.Errorf("worker wrote at --log-level warn:\n%s", out)
	}
}
