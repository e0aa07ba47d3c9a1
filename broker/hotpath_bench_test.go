package broker

import (
	"strconv"
	"syscall"
	"testing"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// BenchmarkGetAllReplay measures reading a stream of 10,000 messages page
// after page (1000 per page, the default), as a client replays it.
func BenchmarkGetAllReplay(b *testing.B) {
	f := newFixture(b, Options{})
	for batch := range 10 {
		items := make([]byte, 0, 64<<10)
		items = append(items, '[')
		for i := range 1000 {
			if i > 0 {
				items = append(items, ',')
			}
			items = append(items, `{"data":"MDEyMzQ1Njc4OWFiY2RlZg==","key":"k`+strconv.Itoa(batch*1000+i)+`"}`...)
		}
		items = append(items, ']')
		f.call(b, subjects.OpSetMany, "bench.r", string(items), nil)
	}
	b.ReportAllocs()
	msgs := 0
	for b.Loop() {
		next := "1"
		for {
			page, end := f.getAll(b, "bench.r", `{"start_seq":`+next+`}`)
			msgs += len(page)
			if end.Header.Get(subjects.HeaderNumPending) == "0" {
				break
			}
			next = end.Header.Get(subjects.HeaderNextSeq)
		}
	}
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
	f.b.ahead.mu.Lock()
	b.ReportMetric(float64(f.b.ahead.hits)/float64(msgs/1000), "ahead-hits/page")
	f.b.ahead.mu.Unlock()
}

// BenchmarkPublishEvents measures the worker's side of a commit's events:
// 25 set events of keyed messages with a user header.
func BenchmarkPublishEvents(b *testing.B) {
	f := newFixture(b, Options{})
	evs := make([]store.Event, 25)
	for i := range evs {
		evs[i] = store.Event{Op: subjects.OpSet, Revision: uint64(1000 + i), Msg: &store.Message{
			Seq: uint64(1000 + i), Time: 1764100000000, Key: "key" + strconv.Itoa(i),
			Header: map[string][]string{"Content-Type": {"text/plain"}}, Data: []byte("0123456789abcdef"),
		}}
	}
	b.ReportAllocs()
	for b.Loop() {
		f.b.publishEvents("bench.e", evs)
	}
	b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAnswerWrites measures answering a group commit of 25 set
// requests and one setmany of 25 items.
func BenchmarkAnswerWrites(b *testing.B) {
	f := newFixture(b, Options{})
	var batch []*job
	var res []store.WriteResult
	for i := range 25 {
		batch = append(batch, &job{op: subjects.OpSet, reply: "bench.reply", items: []item{{}}})
		res = append(res, store.WriteResult{Seq: uint64(i + 1), Time: 1764100000000})
	}
	many := &job{op: subjects.OpSetMany, reply: "bench.reply", many: true, items: make([]item, 25)}
	for i := range 25 {
		res = append(res, store.WriteResult{Seq: uint64(100 + i), Time: 1764100000000})
	}
	batch = append(batch, many)
	b.ReportAllocs()
	for b.Loop() {
		for _, j := range batch {
			j.answered = false
		}
		f.b.answerWrites("bench.w", batch, res)
	}
}

// BenchmarkReplyJSON measures a keys reply of 100 keys.
func BenchmarkReplyJSON(b *testing.B) {
	f := newFixture(b, Options{})
	var r subjects.KeysReply
	for i := range 100 {
		r.Keys = append(r.Keys, "key"+strconv.Itoa(i))
	}
	b.ReportAllocs()
	for b.Loop() {
		f.b.replyJSON("bench.reply", r)
	}
}

// BenchmarkReplyError measures an error reply: the 429 of back-pressure.
func BenchmarkReplyError(b *testing.B) {
	f := newFixture(b, Options{})
	b.ReportAllocs()
	for b.Loop() {
		f.b.replyError(subjects.OpSet, "bench.s", "bench.reply", subjects.ErrOverloaded)
	}
}

// BenchmarkGetInline measures the worker's side of a get by seq on an open
// idle stream of 1000 messages, as the handler answers it: parsing, the
// store's read and the reply, with no client waiting for it.
func BenchmarkGetInline(b *testing.B) {
	f := newFixture(b, Options{})
	f.fillBench(b, "bench.g", 1000)
	f.quiet(b)
	bodies := make([][]byte, 1000)
	for i := range bodies {
		bodies[i] = []byte(`{"seq":` + strconv.Itoa(i+1) + `}`)
	}
	b.ReportAllocs()
	cpu0 := processCPU(b)
	i := 0
	for b.Loop() {
		r := request{op: subjects.OpGet, reply: "bench.reply", data: bodies[i%1000], size: len(bodies[i%1000])}
		if !f.b.inline("bench.g", &r) {
			b.Fatal("the get was not answered inline")
		}
		i++
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time the process used so far, in nanoseconds: on a
// shared machine it varies less than the elapsed time.
func processCPU(tb testing.TB) int64 {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
