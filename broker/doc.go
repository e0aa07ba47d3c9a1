// Package broker is the persist worker's NATS service: it answers the
// requests of the Persist wire protocol (PROTOCOL.md sections 1–5) on
// <prefix>.api.<op>.<stream> and publishes each stream's change events on
// <prefix>.ev.<stream>, keeping the streams themselves in package store.
//
// [New] registers a nats.go micro service with one endpoint per operation,
// in a queue group (workers in one group share the request subjects; each
// stream file must still be served by one worker only). The endpoint
// handler validates the subject and the request, then appends the request
// to its stream's queue. One goroutine per stream with queued work applies
// the requests in arrival order and exits when the queue is empty, so one
// stream's requests keep their order while different streams proceed in
// parallel. Consecutive writes at the head of a queue are committed
// together in one store transaction (group commit), and each request is
// still answered with its own results only after that commit.
//
// Streams are opened on first use and kept open in a cache: files idle for
// [Options.IdleTimeout] are closed, and at most [Options.MaxOpen] files stay
// open, the least recently used idle ones being closed first. Memory streams
// are not files; they live until destroyed, until [Broker.Shutdown], or
// until idle for [Options.MemoryIdleTimeout], and publish a destroy event
// when they go. [Options.MaxStreamsPerNamespace] and [Options.MaxStreams]
// are counted from disk the first time a stream is created under them, so
// that start-up never scans the data directory.
//
// Store errors become wire errors in exactly one table (see wireError);
// anything unexpected is answered 500 internal and logged. A panic while
// serving one request is recovered, answered 500 and logged with its stack.
//
// [Broker.Shutdown] stops the service, answers every request already
// received, closes every stream and flushes the connection, so no
// acknowledged write is lost.
package broker
