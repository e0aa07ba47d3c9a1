package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-persist/persist/subjects"
)

// Benchmarks of the store alone (no NATS). Each reports its throughput as
// a metric so that the README's table can quote it:
//
//	go test ./store -run '^$' -bench . -benchtime 2s

// benchPayload is a 100-byte message body that zstd would not shrink much.
var benchPayload = func() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 100)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return b
}()

func benchOpen(b *testing.B, cfg *Config) *Stream {
	b.Helper()
	return benchOpenOpts(b, Options{Config: cfg})
}

// benchOpenOpts is benchOpen with more options.
func benchOpenOpts(b *testing.B, opts Options) *Stream {
	b.Helper()
	dir := b.TempDir()
	opts.Create, opts.NoSweep, opts.Name = true, true, "bench.s"
	s, err := Open(filepath.Join(dir, "bench", "s.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// benchFill appends n messages of benchPayload in batches of 1000.
func benchFill(b *testing.B, s *Stream, n int) {
	b.Helper()
	ws := make([]Write, 1000)
	for i := range ws {
		ws[i] = Write{Data: benchPayload}
	}
	for n > 0 {
		k := min(n, len(ws))
		if _, err := s.Append(ws[:k]); err != nil {
			b.Fatal(err)
		}
		n -= k
	}
}

// benchName is the stream name of a benchmark's stream file at path, as
// the broker passes it to Open.
func benchName(path string) string {
	return "bench." + strings.TrimSuffix(filepath.Base(path), ".db")
}

func benchRate(b *testing.B, n int, unit string) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unit)
}

// benchCPU returns a function that reports the CPU time (user and system,
// all threads) the process used since benchCPU was called, per iteration:
// on a shared machine it varies much less than the elapsed time. Call it
// right before the loop and the function right after.
func benchCPU(b *testing.B) func() {
	b.Helper()
	start := cpuTime(b)
	return func() {
		b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAppendBatch100Sync appends 100 messages per call with sync on:
// one transaction and one fsync per call.
func BenchmarkAppendBatch100Sync(b *testing.B) {
	cfg := subjects.DefaultConfig()
	cfg.Sync = true
	benchAppendBatch100(b, benchOpen(b, &cfg))
}

// BenchmarkAppendBatch100SyncFence is BenchmarkAppendBatch100Sync with a
// fence: one fence write per 10 or 11 calls.
func BenchmarkAppendBatch100SyncFence(b *testing.B) {
	cfg := subjects.DefaultConfig()
	cfg.Sync = true
	opts := benchFenceOpts(b)
	opts.Config = &cfg
	benchAppendBatch100(b, benchOpenOpts(b, opts))
}

func benchAppendBatch100(b *testing.B, s *Stream) {
	ws := make([]Write, 100)
	for i := range ws {
		ws[i] = Write{Data: benchPayload}
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := s.Append(ws); err != nil {
			b.Fatal(err)
		}
		n += len(ws)
	}
	benchRate(b, n, "msgs/s")
}

// BenchmarkAppendSingle appends one message per call with sync off.
func BenchmarkAppendSingle(b *testing.B) {
	benchAppendSingle(b, benchOpen(b, nil))
}

// BenchmarkAppendSingleFence is BenchmarkAppendSingle on a stream with a
// fence (the default Ahead) beside an archive copy on the same disk: one
// fence write (two fsyncs) per 1025 appends.
func BenchmarkAppendSingleFence(b *testing.B) {
	benchAppendSingle(b, benchOpenOpts(b, benchFenceOpts(b)))
}

// benchFenceOpts are the options of a stream with an archive path that
// its snapshots never reach in a benchmark, and a fence.
func benchFenceOpts(b *testing.B) Options {
	return Options{
		ArchivePath:     filepath.Join(b.TempDir(), "archive", "s.db"),
		ArchiveInterval: time.Hour,
		Fence:           &Fence{Owner: "bench"},
	}
}

func benchAppendSingle(b *testing.B, s *Stream) {
	ws := []Write{{Data: benchPayload}}
	b.ReportAllocs()
	cpu := benchCPU(b)
	n := 0
	for b.Loop() {
		if _, err := s.Append(ws); err != nil {
			b.Fatal(err)
		}
		n++
	}
	cpu()
	benchRate(b, n, "msgs/s")
}

// BenchmarkAppendMaxMsgs appends one message per call to a stream at its
// max_msgs: every call also removes the oldest message (a delete event).
func BenchmarkAppendMaxMsgs(b *testing.B) {
	cfg := subjects.DefaultConfig()
	cfg.MaxMsgs = 1000
	s := benchOpen(b, &cfg)
	benchFill(b, s, 1000)
	ws := []Write{{Data: benchPayload}}
	b.ReportAllocs()
	cpu := benchCPU(b)
	n := 0
	for b.Loop() {
		if _, err := s.Append(ws); err != nil {
			b.Fatal(err)
		}
		n++
	}
	cpu()
	benchRate(b, n, "msgs/s")
}

// BenchmarkAppendKeyed replaces the messages of 1000 keys, one per call.
func BenchmarkAppendKeyed(b *testing.B) {
	s := benchOpen(b, nil)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := s.Append([]Write{{Key: "key" + strconv.Itoa(n%1000), Data: benchPayload}}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	benchRate(b, n, "msgs/s")
}

// BenchmarkGet reads random messages of a stream of 100,000.
func BenchmarkGet(b *testing.B) {
	const total = 100_000
	s := benchOpen(b, nil)
	benchFill(b, s, total)
	r := rand.New(rand.NewPCG(3, 4))
	b.ReportAllocs()
	cpu := benchCPU(b)
	n := 0
	for b.Loop() {
		if _, err := s.Get(1 + r.Uint64N(total)); err != nil {
			b.Fatal(err)
		}
		n++
	}
	cpu()
	benchRate(b, n, "msgs/s")
}

// BenchmarkRead reads pages of 1000 messages (a getall page) from random
// places in a stream of 100,000.
func BenchmarkRead(b *testing.B) {
	const total, page = 100_000, 1000
	s := benchOpen(b, nil)
	benchFill(b, s, total)
	r := rand.New(rand.NewPCG(5, 6))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		q := ReadQuery{StartSeq: 1 + r.Uint64N(total-page), MaxMsgs: page}
		if _, err := s.Read(q, func(*Message) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	benchRate(b, n, "msgs/s")
}

// BenchmarkCreate creates new stream files: Open with Create, then Close.
func BenchmarkCreate(b *testing.B) {
	dir := b.TempDir()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		// Spread over directories as stream names spread over namespaces.
		path := filepath.Join(dir, strconv.Itoa(n%100), strconv.Itoa(n)+".db")
		s, err := Open(path, Options{Create: true, NoSweep: true, Name: benchName(path)})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	benchRate(b, n, "streams/s")
}

// benchClosedStreams creates n streams spread over directories, each
// holding ws, and closes them; it returns their paths.
func benchClosedStreams(b *testing.B, n int, ws ...Write) []string {
	b.Helper()
	return benchClosedStreamsConfig(b, n, nil, ws...)
}

// benchClosedStreamsConfig is benchClosedStreams with streams created with
// cfg (nil: the defaults).
func benchClosedStreamsConfig(b *testing.B, n int, cfg *Config, ws ...Write) []string {
	b.Helper()
	dir := b.TempDir()
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, strconv.Itoa(i%10), fmt.Sprintf("s%d.db", i))
		s, err := Open(paths[i], Options{Create: true, Config: cfg, NoSweep: true, Name: benchName(paths[i])})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Append(ws); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	return paths
}

// BenchmarkOpenGet opens an existing, closed stream, reads one message and
// closes it again: what a request costs on a stream that is not open.
func BenchmarkOpenGet(b *testing.B) {
	paths := benchClosedStreams(b, 100, Write{Data: benchPayload})
	benchOpenCycles(b, paths, "opens/s", func(s *Stream) error {
		_, err := s.Get(1)
		return err
	})
}

// BenchmarkOpenGetArchive is BenchmarkOpenGet on streams with an archive
// copy (on the same disk), which each open reads the revision of.
func BenchmarkOpenGetArchive(b *testing.B) {
	benchOpenGetTiered(b, false)
}

// BenchmarkOpenGetFence is BenchmarkOpenGetArchive with a fence, marked
// clean: each open reads it, and so does each close, which writes nothing.
func BenchmarkOpenGetFence(b *testing.B) {
	benchOpenGetTiered(b, true)
}

func benchOpenGetTiered(b *testing.B, fence bool) {
	paths := benchClosedStreams(b, 100, Write{Data: benchPayload})
	archive := b.TempDir()
	opts := func(p string) Options {
		o := Options{NoSweep: true, Name: benchName(p), ArchivePath: filepath.Join(archive, filepath.Base(p)), ArchiveInterval: time.Hour}
		if fence {
			o.Fence = &Fence{Owner: "bench"}
		}
		return o
	}
	for _, p := range paths { // the archive copies and clean fences
		s, err := Open(p, opts(p))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	benchOpenCyclesOpts(b, paths, "opens/s", opts, func(s *Stream) error {
		_, err := s.Get(1)
		return err
	})
}

// benchOpenCycles opens each of paths in turn, runs use on it and closes
// it again, and reports the cycles per second and their CPU time.
func benchOpenCycles(b *testing.B, paths []string, unit string, use func(*Stream) error) {
	b.Helper()
	benchOpenCyclesOpts(b, paths, unit, func(p string) Options { return Options{NoSweep: true, Name: benchName(p)} }, use)
}

// benchOpenCyclesOpts is benchOpenCycles opening path with opts(path).
func benchOpenCyclesOpts(b *testing.B, paths []string, unit string, opts func(string) Options, use func(*Stream) error) {
	b.Helper()
	b.ReportAllocs()
	cpu := benchCPU(b)
	n := 0
	for b.Loop() {
		p := paths[n%len(paths)]
		s, err := Open(p, opts(p))
		if err != nil {
			b.Fatal(err)
		}
		if err := use(s); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	cpu()
	benchRate(b, n, unit)
}

// BenchmarkOpenCloseCycle opens a closed stream, writes one message and
// closes it again: what a write costs on a stream that is not open. Run it
// under strace -c -f to count the fsyncs of a cycle. Each of its 100
// streams gets one write per 100 iterations, so its WAL, and what an open
// reads back, grows with the iterations until a close checkpoints it:
// compare runs of the same -benchtime Nx.
func BenchmarkOpenCloseCycle(b *testing.B) {
	benchOpenCloseCycle(b, nil)
}

// BenchmarkOpenCloseCycleSync is BenchmarkOpenCloseCycle on streams with
// sync on: every commit, and every checkpoint, is fsynced.
func BenchmarkOpenCloseCycleSync(b *testing.B) {
	cfg := subjects.DefaultConfig()
	cfg.Sync = true
	benchOpenCloseCycle(b, &cfg)
}

func benchOpenCloseCycle(b *testing.B, cfg *Config) {
	paths := benchClosedStreamsConfig(b, 100, cfg, Write{Data: benchPayload})
	ws := []Write{{Data: benchPayload}}
	benchOpenCycles(b, paths, "cycles/s", func(s *Stream) error {
		_, err := s.Append(ws)
		return err
	})
}

// BenchmarkOpenManyOpen measures opening (and closing) one more stream
// while many others are open: the cost of an open must not grow with the
// streams already open.
func BenchmarkOpenManyOpen(b *testing.B) {
	for _, open := range []int{0, 1000, 4000} {
		b.Run(fmt.Sprintf("open=%d", open), func(b *testing.B) {
			const cycled = 100
			paths := benchClosedStreams(b, open+cycled, Write{Data: benchPayload})
			for _, p := range paths[:open] {
				s, err := Open(p, Options{NoSweep: true})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
			}
			benchOpenCycles(b, paths[open:], "opens/s", func(*Stream) error { return nil })
		})
	}
}

// BenchmarkOpenStreamMemory measures what an open stream costs in resident
// memory, as [OpenStreamBytes] states it: 2000 streams are opened one after
// another, each written, read and trimmed before the next is opened (as a
// worker trims idle streams, so that what one gives back serves the next),
// and the growth of the process's RSS is divided among them. Then each is
// used again without Trim, for the cost of a warm stream. It also reports
// the growth that remains once they are all closed: memory SQLite's
// allocator keeps for reuse.
func BenchmarkOpenStreamMemory(b *testing.B) {
	const streams = 2000
	paths := benchClosedStreams(b, streams, Write{Data: benchPayload}, Write{Key: "k", Data: bytes.Repeat(benchPayload, 20)})
	use := func(s *Stream) {
		if _, err := s.Append([]Write{{Data: benchPayload}}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Read(ReadQuery{}, func(*Message) error { return nil }); err != nil {
			b.Fatal(err)
		}
		if _, err := s.GetKey("k"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	var warm, trimmed, heapTrimmed, afterClose float64
	var ms runtime.MemStats
	for b.Loop() {
		base := benchRSS(b)
		runtime.ReadMemStats(&ms)
		heapBase := ms.HeapInuse
		open := make([]*Stream, streams)
		for i, p := range paths {
			s, err := Open(p, Options{NoSweep: true})
			if err != nil {
				b.Fatal(err)
			}
			open[i] = s
			use(s)
			if err := s.Trim(); err != nil {
				b.Fatal(err)
			}
		}
		trimmed = float64(benchRSS(b)-base) / streams
		runtime.ReadMemStats(&ms)
		heapTrimmed = (float64(ms.HeapInuse) - float64(heapBase)) / streams
		for _, s := range open {
			use(s)
		}
		warm = float64(benchRSS(b)-base) / streams
		for _, s := range open {
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
		afterClose = float64(benchRSS(b) - base)
	}
	b.ReportMetric(trimmed, "bytes/stream")
	b.ReportMetric(warm, "warm-bytes/stream")
	b.ReportMetric(heapTrimmed, "go-heap-bytes/stream") // the rest is SQLite's C heap
	b.ReportMetric(afterClose, "bytes-after-close")
}

// benchRSS returns the resident set size of the process after giving back
// the memory that garbage collection can free.
func benchRSS(b *testing.B) int64 {
	b.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Fatal(err) // Linux only, as the deployment is
	}
	fields := strings.Fields(string(raw))
	if len(fields) < 2 {
		b.Fatalf("unexpected /proc/self/statm: %q", raw)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}
