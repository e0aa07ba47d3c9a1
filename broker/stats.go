package broker

import (
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/micro"
)

// counters are the broker's own statistics, served with micro's stats.
type counters struct {
	cacheHits, cacheMisses          atomic.Uint64
	trims, earlyTrims, evictions    atomic.Uint64
	eventsPublished, eventErrors    atomic.Uint64
	commits, commitItems, commitReq atomic.Uint64
	maxBatch                        atomic.Uint64
	errors                          sync.Map // op -> *atomic.Uint64
}

// statsData is the micro StatsHandler: the broker's counters, and the
// number of error replies of the endpoint.
func (b *Broker) statsData(ep *micro.Endpoint) any {
	return Stats{
		OpenStreams:       int(b.openStreams.Load()),
		OpenFiles:         len(b.slots),
		MaxOpen:           b.budget.MaxOpen,
		IdleStreams:       b.reg.idleCount(),
		MemoryBytes:       b.quota.Used(),
		CacheHits:         b.stats.cacheHits.Load(),
		CacheMisses:       b.stats.cacheMisses.Load(),
		Trims:             b.stats.trims.Load(),
		EarlyTrims:        b.stats.earlyTrims.Load(),
		Evictions:         b.stats.evictions.Load(),
		EventsPublished:   b.stats.eventsPublished.Load(),
		EventErrors:       b.stats.eventErrors.Load(),
		Commits:           b.stats.commits.Load(),
		CommittedItems:    b.stats.commitItems.Load(),
		CommittedRequests: b.stats.commitReq.Load(),
		MaxBatchItems:     b.stats.maxBatch.Load(),
		Errors:            b.stats.errorCount(ep.Name).Load(),
	}
}

// Stats is the custom data of every endpoint in the micro service's stats
// (nats micro stats): the worker's stream cache, events and group commits,
// and the endpoint's own error replies.
type Stats struct {
	OpenStreams       int    `json:"open_streams"`
	OpenFiles         int    `json:"open_files"`
	MaxOpen           int    `json:"max_open"`     // the open-file budget
	IdleStreams       int    `json:"idle_streams"` // open files nobody uses now
	MemoryBytes       int64  `json:"memory_bytes"`
	CacheHits         uint64 `json:"cache_hits"`
	CacheMisses       uint64 `json:"cache_misses"`
	Trims             uint64 `json:"trims"`       // idle streams trimmed
	EarlyTrims        uint64 `json:"early_trims"` // of them, trimmed before the trim delay to keep the memory budget
	Evictions         uint64 `json:"evictions"`   // idle streams closed to free a slot
	EventsPublished   uint64 `json:"events_published"`
	EventErrors       uint64 `json:"event_errors"`
	Commits           uint64 `json:"commits"`            // group commits
	CommittedItems    uint64 `json:"committed_items"`    // writes in them
	CommittedRequests uint64 `json:"committed_requests"` // set and setmany requests in them
	MaxBatchItems     uint64 `json:"max_batch_items"`
	Errors            uint64 `json:"errors"` // error replies of this endpoint
}

func (c *counters) errorCount(op string) *atomic.Uint64 {
	if v, ok := c.errors.Load(op); ok {
		return v.(*atomic.Uint64)
	}
	v, _ := c.errors.LoadOrStore(op, new(atomic.Uint64))
	return v.(*atomic.Uint64)
}
