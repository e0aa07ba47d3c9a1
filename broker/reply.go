package broker

import (
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nats-persist/persist/subjects"
)

// replyError answers reply with err mapped to its wire error.
func (b *Broker) replyError(op, reply string, err error) {
	we := b.wireError(err)
	if op != "" {
		b.stats.errorCount(op).Add(1)
	}
	if reply == "" {
		return
	}
	e := getEncoder()
	e.reset()
	e.errorReply(we)
	b.send(e, reply, e.body)
	putEncoder(e)
}

// replyJSON answers reply with v as JSON.
func (b *Broker) replyJSON(reply string, v any) {
	e := getEncoder()
	defer putEncoder(e)
	body, err := e.marshal(v)
	if err != nil {
		b.log.Error("encode reply", "err", err)
		b.replyError("", reply, subjects.ErrInternal)
		return
	}
	b.respond(reply, nil, body)
}

// respond sends one reply message. Replies go out with PublishMsg rather
// than micro's Request methods because they are sent from the stream's
// goroutine after the handler returned.
func (b *Broker) respond(reply string, h nats.Header, data []byte) {
	if reply == "" {
		return
	}
	b.publish(&nats.Msg{Subject: reply, Header: h, Data: data})
}

func (b *Broker) publish(m *nats.Msg) {
	if err := b.nc.PublishMsg(m); err != nil {
		b.log.Warn("send reply", "subject", m.Subject, "err", err)
	}
}

// statsData is the micro StatsHandler: the broker's counters, and the
// number of error replies of the endpoint.
func (b *Broker) statsData(ep *micro.Endpoint) any {
	b.mu.Lock()
	open, files := 0, b.openFiles
	for _, e := range b.streams {
		if e.st != nil {
			open++
		}
	}
	b.mu.Unlock()
	return Stats{
		OpenStreams:       open,
		OpenFiles:         files,
		MemoryBytes:       b.quota.Used(),
		CacheHits:         b.stats.cacheHits.Load(),
		CacheMisses:       b.stats.cacheMisses.Load(),
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
	MemoryBytes       int64  `json:"memory_bytes"`
	CacheHits         uint64 `json:"cache_hits"`
	CacheMisses       uint64 `json:"cache_misses"`
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
