package broker

import (
	"testing"
	"time"

	"github.com/nats-persist/persist/store"
)

func TestBudget_Caps(t *testing.T) {
	const mib = 1 << 20
	warmExtra := int64(store.ActiveStreamBytes - store.OpenStreamBytes)
	for _, tc := range []struct {
		name    string
		opts    Options
		nofile  uint64
		maxOpen int
		boundBy string
		warmCap int
	}{
		{"Memory", Options{MemoryBudget: 256 * mib}, 1 << 20, int(192 * mib / store.OpenStreamBytes), "memory", int(64 * mib / warmExtra)},
		{"Descriptors", Options{MemoryBudget: 256 * mib}, 1024, (1024 - 256) / store.FilesPerStream, "descriptors", int(64 * mib / warmExtra)},
		{"MaxOpen", Options{MemoryBudget: 256 * mib, MaxOpen: 7}, 1 << 20, 7, "max-open", int(64 * mib / warmExtra)},
		{"Tiny", Options{MemoryBudget: 1}, 1 << 20, 1, "memory", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bg := newBudget(tc.opts, tc.nofile)
			if bg.MaxOpen != tc.maxOpen || bg.BoundBy != tc.boundBy || bg.WarmCap != tc.warmCap {
				t.Fatalf("newBudget() = %+v, want MaxOpen %d bound by %s, WarmCap %d", bg, tc.maxOpen, tc.boundBy, tc.warmCap)
			}
		})
	}
}

// TestBroker_WarmCap: past the budget's WarmCap idle streams that were not
// trimmed yet, the least recently used are trimmed at once, long before
// the trim delay, and stay open.
func TestBroker_WarmCap(t *testing.T) {
	f := newFixture(t, Options{})
	// A quarter of the budget pays for exactly one untrimmed idle stream.
	budget := int64(4 * (store.ActiveStreamBytes - store.OpenStreamBytes))
	f.b.Shutdown(t.Context())
	f.start(t, Options{MemoryBudget: budget, TrimDelay: time.Hour, IdleTimeout: time.Hour}, hooks{now: f.clock.now, noJanitor: true})
	if got := f.b.Budget().WarmCap; got != 1 {
		t.Fatalf("WarmCap = %d, want 1", got)
	}
	open := min(f.b.Budget().MaxOpen, 3)
	for i := range open {
		f.set(t, "acme.w"+string(rune('a'+i)), "x", nil)
	}
	f.quiet(t)
	waitFor(t, "early trims", func() bool { return f.stats(t).EarlyTrims >= uint64(open-1) })
	s := f.stats(t)
	if s.OpenFiles != open || s.Evictions != 0 {
		t.Fatalf("stats %+v: want %d open files and no eviction", s, open)
	}
	if s.EarlyTrims != uint64(open-1) {
		t.Fatalf("early trims = %d, want %d (all idle streams but the newest)", s.EarlyTrims, open-1)
	}
}
