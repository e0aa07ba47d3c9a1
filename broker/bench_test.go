package broker

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// requesters is the number of concurrent clients in the benchmarks.
const requesters = 64

// runRequesters runs b.N requests from 64 goroutines, each made by
// do, and reports requests per second.
func runRequesters(b *testing.B, do func(i int) error) {
	b.Helper()
	b.ReportAllocs()
	b.SetParallelism((requesters + 1) / 2)
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := do(int(n.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkEchoParallel64 is the bare NATS request/reply round trip the
// worker's numbers compare with: a responder that echoes the request.
func BenchmarkEchoParallel64(b *testing.B) {
	srv := runServer(b)
	rnc, nc := connect(b, srv), connect(b, srv)
	if _, err := rnc.Subscribe("echo", func(m *nats.Msg) { m.Respond(m.Data) }); err != nil {
		b.Fatal(err)
	}
	rnc.Flush()
	payload := []byte("0123456789abcdef")
	runRequesters(b, func(int) error {
		_, err := nc.Request("echo", payload, 10*time.Second)
		return err
	})
}

// BenchmarkSetParallel64 measures set requests over 64 concurrent
// requesters on 8 streams, with sync off (the default) and on; with sync on
// every commit is fsynced before its replies, so group commit matters. The
// streams=1 case is the one-stream row of cmd/persist-bench.
func BenchmarkSetParallel64(b *testing.B) {
	for _, c := range []struct {
		streams int
		sync    bool
	}{{8, false}, {8, true}, {1, false}, {1, true}} {
		name := "sync=" + strconv.FormatBool(c.sync)
		if c.streams != 8 {
			name = "streams=" + strconv.Itoa(c.streams) + "/" + name
		}
		b.Run(name, func(b *testing.B) {
			f := newFixture(b, Options{})
			subj := make([]string, c.streams)
			for i := range subj {
				name := fmt.Sprintf("bench.s%d", i)
				f.call(b, subjects.OpConfig, name, `{"sync":`+strconv.FormatBool(c.sync)+`,"desc":"bench"}`, nil)
				subj[i] = subjects.APISubject(subjects.DefaultPrefix, subjects.OpSet, name)
			}
			payload := []byte("0123456789abcdef")
			runRequesters(b, func(i int) error {
				m, err := f.nc.Request(subj[i%len(subj)], payload, 10*time.Second)
				if err != nil {
					return err
				}
				if werr := replyError(m); werr != nil {
					return werr
				}
				return nil
			})
			if s := f.stats(b); s.Commits > 0 {
				b.ReportMetric(float64(s.CommittedItems)/float64(s.Commits), "items/commit")
			}
		})
	}
}

// fillBench writes n 16-byte messages (a multiple of 1000) to stream, in
// setmany requests of 1000.
func (f *fixture) fillBench(tb testing.TB, stream string, n int) {
	tb.Helper()
	items := make([]byte, 0, 64<<10)
	for range n / 1000 {
		items = append(items[:0], '[')
		for i := range 1000 {
			if i > 0 {
				items = append(items, ',')
			}
			items = append(items, `{"data":"MDEyMzQ1Njc4OWFiY2RlZg=="}`...)
		}
		items = append(items, ']')
		f.call(tb, subjects.OpSetMany, stream, string(items), nil)
	}
}

// BenchmarkGetParallel64 measures get requests by seq over 64 concurrent
// requesters on one stream of 1000 messages, and of 100,000 read at random
// (the get row of cmd/persist-bench, where most pages are not in SQLite's
// cache).
func BenchmarkGetParallel64(b *testing.B) {
	for _, msgs := range []int{1000, 100_000} {
		b.Run("msgs="+strconv.Itoa(msgs), func(b *testing.B) {
			f := newFixture(b, Options{})
			f.fillBench(b, "bench.g", msgs)
			subj := subjects.APISubject(subjects.DefaultPrefix, subjects.OpGet, "bench.g")
			runRequesters(b, func(i int) error {
				seq := i%msgs + 1
				if msgs != 1000 {
					seq = rand.IntN(msgs) + 1
				}
				m, err := f.nc.Request(subj, []byte(`{"seq":`+strconv.Itoa(seq)+`}`), 10*time.Second)
				if err != nil {
					return err
				}
				if werr := replyError(m); werr != nil {
					return werr
				}
				return nil
			})
		})
	}
}

// BenchmarkSetRandomStream measures set requests over 64 concurrent
// requesters, each on a random one of 2000 existing streams while at most
// 500 may be open, so that streams are opened and closed all the time.
func BenchmarkSetRandomStream(b *testing.B) {
	const streams, maxOpen = 2000, 500
	f := newFixture(b, Options{MaxOpen: maxOpen})
	subj := make([]string, streams)
	for i := range subj {
		name := fmt.Sprintf("bench.r%d", i)
		subj[i] = subjects.APISubject(subjects.DefaultPrefix, subjects.OpSet, name)
		f.set(b, name, "x", nil)
	}
	payload := []byte("0123456789abcdef")
	runRequesters(b, func(i int) error {
		m, err := f.nc.Request(subj[rand.IntN(streams)], payload, 10*time.Second)
		if err != nil {
			return err
		}
		if werr := replyError(m); werr != nil {
			return werr
		}
		return nil
	})
	s := f.stats(b)
	b.ReportMetric(float64(s.CacheMisses)/float64(s.CacheHits+s.CacheMisses), "miss/op")
}
