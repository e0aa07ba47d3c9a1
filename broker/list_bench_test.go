package broker

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-persist/persist/subjects"
)

// list asks for one page of prefix's streams.
func (f *fixture) list(tb testing.TB, prefix, body string) subjects.ListReply {
	tb.Helper()
	var l subjects.ListReply
	f.call(tb, subjects.OpList, prefix, body, &l)
	return l
}

// BenchmarkList100k measures list pages of 1000 names under one namespace
// of 100,000 streams. The stream files are empty placeholders: list reads
// names only.
func BenchmarkList100k(b *testing.B) {
	dir := b.TempDir()
	const n = 100_000
	if err := os.Mkdir(filepath.Join(dir, "big"), 0o755); err != nil {
		b.Fatal(err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("big.s%06d", i)
		if err := os.WriteFile(filepath.Join(dir, subjects.Path(names[i])), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(names)
	f := newFixture(b, Options{DataDir: dir})
	start := time.Now()
	first := f.list(b, "big", `{"limit":1000}`)
	firstPage := time.Since(start)
	if len(first.Streams) != 1000 || first.Streams[0] != names[0] {
		b.Fatalf("first page: %d names from %v", len(first.Streams), first.Streams[:1])
	}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for b.Loop() {
		i := rng.IntN(n - 1000)
		l := f.list(b, "big", `{"after":"`+names[i]+`","limit":1000}`)
		if len(l.Streams) != 1000 || l.Streams[0] != names[i+1] {
			b.Fatalf("page after %s: %d names from %v", names[i], len(l.Streams), l.Streams[:1])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
	b.ReportMetric(float64(firstPage.Microseconds())/1000, "ms/first-page")
}
